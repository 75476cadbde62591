"""The FlowHint policy: advise only what the server knows and the agent can act on."""

from __future__ import annotations

import pytest

from framewire.common.contract import FLOW_HINT_LIFETIME
from framewire.ingest.hints import REPEAT_AFTER, HintReviewer, StreamLoad, advise, worth_sending
from framewire.v1 import ingest_service_pb2


def load(received: int, answered: int, skipped: int, side: int = 640, size: int = 30_000):
    return StreamLoad(
        received=received,
        answered=answered,
        skipped=skipped,
        largest_side=side,
        largest_bytes=size,
    )


def test_a_stream_that_keeps_up_gets_no_advice() -> None:
    assert (
        advise(load(0, 0, 0), load(40, 40, 0), 2.0, model_side=640, max_frame_bytes=10**6) is None
    )


def test_heavy_skipping_suggests_the_rate_the_server_sustains() -> None:
    hint = advise(load(0, 0, 0), load(60, 20, 40), 2.0, model_side=640, max_frame_bytes=10**6)
    assert hint is not None
    assert hint.target_fps == pytest.approx(10.0)
    assert not hint.HasField("scale")
    assert not hint.HasField("jpeg_quality")
    assert "40 of 60 frames were skipped" in hint.reason


def test_frames_far_larger_than_the_model_input_suggest_scaling() -> None:
    hint = advise(
        load(0, 0, 0), load(10, 10, 0, side=1920), 2.0, model_side=300, max_frame_bytes=10**6
    )
    assert hint is not None
    assert hint.scale == pytest.approx(600 / 1920, abs=0.01)
    assert not hint.HasField("target_fps")


def test_frames_near_the_byte_limit_suggest_lower_quality() -> None:
    hint = advise(
        load(0, 0, 0), load(10, 10, 0, size=700_000), 2.0, model_side=640, max_frame_bytes=10**6
    )
    assert hint is not None
    assert hint.jpeg_quality == 70


def test_repeats_are_suppressed_until_something_changes() -> None:
    first = ingest_service_pb2.FlowHint(target_fps=10)
    assert worth_sending(None, first, 0)
    assert not worth_sending(first, ingest_service_pb2.FlowHint(target_fps=10.5), 5)
    assert worth_sending(first, ingest_service_pb2.FlowHint(target_fps=5), 5)
    assert worth_sending(first, ingest_service_pb2.FlowHint(target_fps=10, scale=0.5), 5)
    assert worth_sending(first, ingest_service_pb2.FlowHint(target_fps=10), 31)


def test_unchanged_advice_that_still_applies_is_repeated_before_agents_let_it_lapse() -> None:
    first = ingest_service_pb2.FlowHint(target_fps=10)
    assert REPEAT_AFTER < FLOW_HINT_LIFETIME
    assert worth_sending(first, ingest_service_pb2.FlowHint(target_fps=10), REPEAT_AFTER)


def test_a_stream_that_speeds_up_again_after_its_hint_lapsed_is_told_again_at_once() -> None:
    # The agent follows the hint (nothing skipped), its hinted rate lapses after
    # FLOW_HINT_LIFETIME, it sends at full rate again and the server skips again:
    # the next review repeats the same advice.
    reviewer = HintReviewer()
    limits = {"model_side": 640, "max_frame_bytes": 10**6}
    assert reviewer.review(0.0, received=0, answered=0, skipped=0, **limits) is None
    hint = reviewer.review(2.0, received=60, answered=20, skipped=40, **limits)
    assert hint is not None
    received = answered = 60
    now = 2.0
    while now < 2.0 + FLOW_HINT_LIFETIME:  # following: 10 fps sent, all of it served
        now += 2.0
        received, answered = received + 20, answered + 20
        following = {"received": received, "answered": answered, "skipped": 40}
        assert reviewer.review(now, **following, **limits) is None
    now += 2.0  # lapsed: 30 fps sent again, 10 fps served
    lapsed = {"received": received + 60, "answered": answered + 20, "skipped": 80}
    again = reviewer.review(now, **lapsed, **limits)
    assert again is not None
    assert again.target_fps == pytest.approx(hint.target_fps)


def test_frames_just_over_the_size_limit_get_no_scale_hint() -> None:
    # Advice to scale by 0.99 would only make agents flap around the limit.
    assert (
        advise(load(0, 0, 0), load(10, 10, 0, side=602), 2.0, model_side=300, max_frame_bytes=10**6)
        is None
    )


def test_the_reviewer_advises_on_each_interval_and_does_not_repeat_itself() -> None:
    reviewer = HintReviewer()
    limits = {"model_side": 640, "max_frame_bytes": 10**6}
    reviewer.saw_frame(640, 480, 30_000)
    # The first review only sets the baseline.
    assert reviewer.review(0.0, received=0, answered=0, skipped=0, **limits) is None
    reviewer.saw_frame(640, 480, 30_000)
    hint = reviewer.review(2.0, received=60, answered=20, skipped=40, **limits)
    assert hint is not None
    assert hint.target_fps == pytest.approx(10.0)
    # The same situation a moment later tells the agent nothing new.
    reviewer.saw_frame(640, 480, 30_000)
    assert reviewer.review(4.0, received=120, answered=40, skipped=80, **limits) is None


def test_the_reviewer_looks_only_at_frames_since_the_last_review() -> None:
    reviewer = HintReviewer()
    limits = {"model_side": 300, "max_frame_bytes": 10**6}
    reviewer.saw_frame(1920, 1080, 30_000)
    assert reviewer.review(0.0, received=10, answered=10, skipped=0, **limits) is None
    # The oversized frame belonged to the previous interval: no scale advice now.
    reviewer.saw_frame(400, 300, 30_000)
    assert reviewer.review(2.0, received=20, answered=20, skipped=0, **limits) is None
