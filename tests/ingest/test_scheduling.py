"""The deadline-aware batching rules, as pure functions: what the model costs, what to skip."""

from __future__ import annotations

import pytest

from framewire.common.contract import PIPELINE_DEPTH
from framewire.ingest.scheduling import (
    MAX_LEAD,
    MIN_LEAD,
    PIPELINE_LEAD,
    CostModel,
    PipelineLead,
    TargetLoad,
    batch_limit,
    batch_wait,
    misses_deadline,
    pipelined_send_at,
    plan_batch,
    useful_in_flight,
)


def cpu_like() -> CostModel:
    """Each image costs 80 ms: batching saves nothing."""
    cost = CostModel()
    for size in (1, 2, 4):
        cost.observe(size, 0.08 * size)
    return cost


def gpu_like() -> CostModel:
    """A batch costs 10 ms plus 1 ms per image: batching is nearly free."""
    cost = CostModel()
    for size in (1, 2):
        cost.observe(size, 0.010 + 0.001 * size)
    return cost


def test_nothing_known_means_no_cost_and_one_size_scales_proportionally() -> None:
    cost = CostModel()
    assert not cost.known
    assert cost.expected(4) == 0.0
    cost.observe(2, 0.2)
    assert cost.known
    assert cost.expected(2) == pytest.approx(0.2)
    assert cost.expected(4) == pytest.approx(0.4)  # pessimistic until a second size is seen
    assert cost.expected(1) == pytest.approx(0.1)


def test_estimates_follow_observations_smoothly() -> None:
    cost = CostModel(smoothing=0.5)
    cost.observe(1, 0.1)
    cost.observe(1, 0.3)
    assert cost.expected(1) == pytest.approx(0.2)


def test_a_line_through_two_sizes_extrapolates_a_gpu_like_model() -> None:
    cost = gpu_like()
    assert cost.expected(8) == pytest.approx(0.018)
    assert cost.expected(64) == pytest.approx(0.074)


def test_noise_never_makes_a_larger_batch_look_cheaper() -> None:
    cost = CostModel()
    cost.observe(1, 0.05)
    cost.observe(2, 0.04)  # a lucky batch
    assert cost.expected(8) >= cost.expected(2) - 1e-9
    assert cost.expected(8) > 0


def test_bad_observations_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot take"):
        CostModel().observe(0, 0.1)
    with pytest.raises(ValueError, match="cannot take"):
        CostModel().observe(1, -1.0)


@pytest.mark.parametrize(
    ("age", "expected", "budget", "misses"),
    [
        (0.1, 0.3, 0.5, False),
        (0.2, 0.3, 0.5, False),  # exactly on time is on time
        (0.3, 0.3, 0.5, True),
        (0.6, 0.0, 0.5, True),
    ],
)
def test_the_drop_rule_is_age_plus_expected_time_against_the_budget(
    age: float, expected: float, budget: float, misses: bool
) -> None:
    assert misses_deadline(age, expected, budget) is misses


def test_a_frame_that_cannot_make_it_even_alone_is_skipped_before_model_time() -> None:
    plan = plan_batch([0.45, 0.1, 0.0], cpu_like(), budget=0.5, max_batch=8)
    assert plan.skip == (0,)
    assert 1 in plan.send


def test_on_a_cpu_batches_stay_as_small_as_the_budget_needs() -> None:
    # Four frames of 0.2 s: alone each finishes at 0.28 s; two together at
    # 0.36 s; three at 0.44 s; four would end at 0.52 s, past the budget.
    plan = plan_batch([0.2, 0.2, 0.2, 0.2], cpu_like(), budget=0.5, max_batch=8)
    assert plan.send == (0, 1, 2)
    assert plan.skip == ()


def test_on_a_gpu_batches_grow_to_the_limit() -> None:
    plan = plan_batch([0.05] * 40, gpu_like(), budget=0.5, max_batch=32)
    assert len(plan.send) == 32
    assert plan.skip == ()


def test_the_turn_order_decides_who_waits() -> None:
    # The first two fit; the third would push the batch past the budget and
    # waits, but a later, younger frame is not let in ahead of it either.
    plan = plan_batch([0.3, 0.0, 0.0, 0.0], cpu_like(), budget=0.5, max_batch=8)
    assert plan.send == (0, 1)
    assert plan.skip == ()


def test_with_nothing_learned_every_fresh_frame_is_sent() -> None:
    plan = plan_batch([0.0, 0.1, 0.2], CostModel(), budget=0.5, max_batch=2)
    assert plan.send == (0, 1)
    assert plan.skip == ()


def test_where_batching_saves_little_frames_spread_over_the_slots() -> None:
    assert batch_limit(4, slots=2, cost=cpu_like(), max_batch=8) == 2
    assert batch_limit(5, slots=2, cost=cpu_like(), max_batch=8) == 3
    assert batch_limit(4, slots=1, cost=cpu_like(), max_batch=8) == 4
    # Three waiting and four slots, one of them free: one goes now, the others to the next
    # slots that free, rather than three in one long run.
    assert batch_limit(3, slots=4, cost=cpu_like(), max_batch=8) == 1


def test_where_batching_pays_frames_stay_together() -> None:
    assert batch_limit(40, slots=2, cost=gpu_like(), max_batch=32) == 32
    assert batch_limit(4, slots=4, cost=gpu_like(), max_batch=32) == 4


def test_with_nothing_learned_the_limit_is_the_waiting_frames() -> None:
    assert batch_limit(3, slots=2, cost=CostModel(), max_batch=8) == 3
    assert batch_limit(0, slots=2, cost=CostModel(), max_batch=8) == 1


def test_a_model_slower_than_the_budget_still_gets_fresh_frames_one_at_a_time() -> None:
    # One slow batch (a hiccup, a cold start) must not starve every stream: with the
    # estimate over the budget, fresh frames still go, and their answers correct it.
    slow = CostModel()
    slow.observe(1, 0.9)
    plan = plan_batch([0.01, 0.02, 0.6], slow, budget=0.5, max_batch=8)
    assert plan.send == (0,)
    assert plan.skip == (2,)  # past the budget already
    for _ in range(20):
        slow.observe(1, 0.03)
    plan = plan_batch([0.01, 0.02], slow, budget=0.5, max_batch=8)
    assert plan.send == (0, 1)


def test_singles_measured_beside_another_batch_do_not_make_batching_look_worth_it() -> None:
    """Measured on a 2-core CPU: singles took 39 ms while another batch ran, 18 ms alone;
    judged by wall clock, a batch of four (75 ms alone) looked like a saving and took
    every frame, leaving a core idle. In target time the four cost what four singles do."""
    cost = CostModel()
    cost.observe(1, 0.039, concurrency=2)
    cost.observe(4, 0.075, concurrency=1)
    assert cost.expected(1) == pytest.approx(0.039)  # the deadline rule sees the wall clock
    assert cost.share(1) == pytest.approx(0.0195)
    assert batch_limit(4, slots=2, cost=cost, max_batch=8) == 2
    wall_clock_only = CostModel()
    wall_clock_only.observe(1, 0.039)
    wall_clock_only.observe(4, 0.075)
    assert batch_limit(4, slots=2, cost=wall_clock_only, max_batch=8) == 4


def test_on_a_gpu_overlapping_batches_still_say_batching_pays() -> None:
    """Two overlapping batches on one GPU each take about twice as long: in target time a
    batch of 32 still costs little more than one image."""
    cost = CostModel()
    cost.observe(1, 0.022, concurrency=2)
    cost.observe(32, 0.042, concurrency=2)
    assert batch_limit(40, slots=2, cost=cost, max_batch=32) == 32


def test_a_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="beside"):
        CostModel().observe(1, 0.1, concurrency=0.5)


def test_an_alternative_not_seen_for_a_while_is_tried_again() -> None:
    """A cold first batch of one made singles look dear; batching was chosen from then on
    and singles were never measured again. After REFRESH_AFTER batches the spread is tried."""
    from framewire.ingest.scheduling import REFRESH_AFTER

    cost = CostModel()
    cost.observe(1, 0.200)  # the cold first run
    cost.observe(2, 0.040)
    assert batch_limit(2, slots=2, cost=cost, max_batch=8) == 2  # batching "pays"
    for _ in range(REFRESH_AFTER):
        cost.observe(2, 0.040)
    assert cost.stale(1)
    assert batch_limit(2, slots=2, cost=cost, max_batch=8) == 1  # tried once more
    cost.observe(1, 0.019)  # replaces the stale estimate rather than nudging it
    assert not cost.stale(1)
    assert cost.share(1) == pytest.approx(0.019)
    assert batch_limit(2, slots=2, cost=cost, max_batch=8) == 1  # now known: spread


def test_on_a_gpu_the_refresh_costs_one_small_batch_in_fifty() -> None:
    from framewire.ingest.scheduling import REFRESH_AFTER

    cost = gpu_like()
    choices = []
    for _ in range(3 * REFRESH_AFTER):
        limit = batch_limit(32, slots=2, cost=cost, max_batch=32)
        choices.append(limit)
        cost.observe(limit, 0.010 + 0.001 * limit)
    assert choices.count(32) >= len(choices) - 4


def test_a_batch_waits_for_more_frames_only_where_that_pays() -> None:
    # A GPU: a fuller batch is far cheaper per image; wait, but no longer than configured.
    assert batch_wait(3, gpu_like(), max_delay=0.004, max_batch=32) == 0.004
    # A CPU: a fuller batch costs as much per image; waiting only adds latency.
    assert batch_wait(1, cpu_like(), max_delay=0.004, max_batch=8) == 0.0
    # Nothing learned yet: the configured delay.
    assert batch_wait(1, CostModel(), max_delay=0.004, max_batch=8) == 0.004
    # Full already: nothing to wait for.
    assert batch_wait(32, gpu_like(), max_delay=0.004, max_batch=32) == 0.0
    # A model that says how long batches wait for it: as above; one that does not: no wait.
    assert batch_wait(3, gpu_like(), max_delay=0.004, max_batch=32, reports_queue=True) == 0.004
    assert batch_wait(3, gpu_like(), max_delay=0.004, max_batch=32, reports_queue=False) == 0.0
    assert batch_wait(1, CostModel(), max_delay=0.004, max_batch=8, reports_queue=False) == 0.0


def test_a_batch_never_waits_longer_than_it_is_expected_to_run() -> None:
    fast = CostModel()
    fast.observe(1, 0.0002)
    fast.observe(8, 0.0003)  # batching pays, but a batch runs in a fraction of the delay
    assert batch_wait(2, fast, max_delay=0.004, max_batch=8) == pytest.approx(fast.expected(2))
    assert fast.expected(2) < 0.001


def test_every_slot_is_used_where_batching_saves_little_and_two_where_it_pays() -> None:
    assert useful_in_flight(4, cpu_like(), max_batch=8) == 4
    assert useful_in_flight(4, gpu_like(), max_batch=32) == PIPELINE_DEPTH
    assert useful_in_flight(4, CostModel(), max_batch=8) == PIPELINE_DEPTH  # nothing learned
    assert useful_in_flight(1, gpu_like(), max_batch=32) == 1  # never more than the capacity
    assert useful_in_flight(4, gpu_like(), max_batch=1) == 4  # no batching to protect


def test_target_time_adds_up_to_the_time_the_target_was_busy() -> None:
    load = TargetLoad()
    first = load.sent(0.0, 8)
    second = load.sent(0.75, 8)  # sent while the first still ran
    assert load.count == 2
    assert load.ended(first, 1.0) == pytest.approx(0.75 + 0.25 / 2)
    assert load.is_out(second)
    assert load.ended(second, 2.0) == pytest.approx(0.25 / 2 + 1.0)
    assert load.count == 0
    assert not load.is_out(second)
    # 0.875 + 1.125: the 2 s the target was busy. Halving the second's 1.25 s wall time,
    # as if it had shared the target for all of it, said 0.83 s.
    idle_then_alone = load.sent(5.0, 1)
    assert load.ended(idle_then_alone, 5.5) == pytest.approx(0.5)  # idle time is nobody's


def test_side_by_side_batches_each_use_their_share() -> None:
    load = TargetLoad()
    tokens = [load.sent(0.0, 1) for _ in range(4)]
    assert [load.ended(token, 2.0) for token in tokens] == pytest.approx([0.5, 0.5, 0.5, 0.5])


def test_a_gpu_gets_its_next_batch_shortly_before_it_frees() -> None:
    cost = gpu_like()
    load = TargetLoad()
    assert pipelined_send_at(load, cost, max_batch=32) is None  # idle: at once
    load.sent(10.0, 32)
    share = cost.share(32)
    assert pipelined_send_at(load, cost, max_batch=32) == pytest.approx(
        10.0 + share - PIPELINE_LEAD * share
    )


def test_the_wait_counts_from_when_the_target_last_answered() -> None:
    cost = gpu_like()
    load = TargetLoad()
    earlier = load.sent(0.0, 32)
    queued = load.sent(0.01, 32)  # sent while the earlier one ran: it starts when that ends
    load.ended(earlier, 0.05)
    share = cost.share(32)
    assert load.ahead() == [(0.01, 32)]
    assert pipelined_send_at(load, cost, max_batch=32) == pytest.approx(
        0.05 + share - PIPELINE_LEAD * share
    )
    load.ended(queued, 0.09)


def test_where_batching_saves_little_or_nothing_is_known_batches_go_at_once() -> None:
    load = TargetLoad()
    load.sent(0.0, 4)
    assert pipelined_send_at(load, cpu_like(), max_batch=8) is None
    assert pipelined_send_at(load, CostModel(), max_batch=8) is None


def test_the_lead_grows_when_held_batches_barely_wait_and_shrinks_when_they_wait_long() -> None:
    lead = PipelineLead()
    assert lead.reports_queue is None  # nothing answered yet: no batch is held
    lead.answered(0.0, 0.040, timed=True)  # the model may have idled before it came
    assert lead.reports_queue
    assert lead.share == pytest.approx(PIPELINE_LEAD * 1.25)
    lead = PipelineLead()
    lead.answered(0.004, 0.040, timed=True)  # a tenth of a batch: as wanted
    assert lead.share == PIPELINE_LEAD
    lead.answered(0.020, 0.040, timed=True)  # half a batch: it could have left later
    assert lead.share == pytest.approx(PIPELINE_LEAD * 0.9)


def test_the_lead_stays_within_its_bounds() -> None:
    lead = PipelineLead()
    for _ in range(100):
        lead.answered(0.0, 0.040, timed=True)
    assert lead.share == MAX_LEAD
    for _ in range(100):
        lead.answered(0.040, 0.040, timed=True)
    assert lead.share == MIN_LEAD
    lead.answered(0.0, 0.0, timed=True)  # nothing learned about the batch: no change
    lead.answered(0.0, 0.040, timed=False)  # sent with nothing out: not the lead's doing
    assert lead.share == MIN_LEAD
    assert lead.reports_queue
    lead.answered(None, 0.040, timed=True)  # the server stopped reporting its queue
    assert lead.reports_queue is False
    assert lead.share == MIN_LEAD


def test_a_longer_lead_sends_the_held_batch_earlier() -> None:
    cost = gpu_like()
    load = TargetLoad()
    load.sent(0.0, 32)
    share = cost.share(32)
    assert pipelined_send_at(load, cost, max_batch=32, lead=0.5) == pytest.approx(0.5 * share)
