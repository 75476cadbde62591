"""The agent's adaptive window: 1 in front of a busy server, more across a slow link; and the
hold that keeps the next frame back while frames queue at the server."""

from __future__ import annotations

import pytest

from framewire.edge_agent.window import MAX_HOLD, QUEUE_TARGET, AdaptiveWindow


def test_before_any_answer_the_window_is_one() -> None:
    assert AdaptiveWindow(granted=2).size == 1
    assert AdaptiveWindow(granted=0).size == 1


def test_a_fixed_window_is_what_the_server_granted_whatever_was_measured() -> None:
    window = AdaptiveWindow(granted=4, fixed=True)
    assert window.size == 4
    for _ in range(10):
        window.observe(round_trip=0.082, server_total=0.080)
    assert window.size == 4
    assert AdaptiveWindow(granted=0, fixed=True).size == 1


def test_a_busy_server_on_a_fast_link_gets_one_frame_at_a_time() -> None:
    window = AdaptiveWindow(granted=4)
    for _ in range(10):
        window.observe(round_trip=0.082, server_total=0.080)
    assert window.size == 1  # 2 ms of network next to 80 ms of model: a second frame would wait
    for _ in range(10):
        window.observe(round_trip=0.100, server_total=0.080)
    assert window.size == 2  # 20 ms on the wire: one more frame keeps the model busy


def test_a_slow_link_in_front_of_a_fast_server_opens_the_window() -> None:
    window = AdaptiveWindow(granted=8)
    for _ in range(20):
        window.observe(round_trip=0.110, server_total=0.010)
    assert window.size == 8  # 1 + 100 ms / 10 ms, capped at what was granted
    window = AdaptiveWindow(granted=8)
    for _ in range(20):
        window.observe(round_trip=0.050, server_total=0.020)
    assert window.size == 3


def test_clock_noise_never_shrinks_below_one() -> None:
    window = AdaptiveWindow(granted=2)
    window.observe(round_trip=0.010, server_total=0.012)  # server clock ran a bit ahead
    assert window.size == 1


# Sent at once, each frame of a camera that shares a busy model waits this long at the server.
SHARED_QUEUE = 0.030


def hold_against_a_shared_model(window: AdaptiveWindow, answers: int = 30) -> None:
    """Answers whose queue time is what is left of SHARED_QUEUE after the hold in force."""
    for _ in range(answers):
        queued = max(0.0, SHARED_QUEUE - window.hold)
        window.observe(round_trip=0.062, server_total=0.060, queued=queued)


def test_frames_queueing_at_a_shared_model_hold_the_next_one_back_until_about_its_turn() -> None:
    window = AdaptiveWindow(granted=2)
    assert window.hold == 0.0
    hold_against_a_shared_model(window, answers=1)
    assert window.hold == pytest.approx(0.5 * (SHARED_QUEUE - QUEUE_TARGET))
    # Held back by that much, frames queue less; the hold settles where the queue left is
    # the target.
    hold_against_a_shared_model(window)
    assert window.hold == pytest.approx(SHARED_QUEUE - QUEUE_TARGET, abs=1e-4)


def test_a_frame_alone_at_the_model_is_never_held() -> None:
    window = AdaptiveWindow(granted=2)
    for _ in range(10):
        window.observe(round_trip=0.031, server_total=0.030, queued=0.0002)
    assert window.hold == 0.0


def test_the_hold_lets_go_when_the_queue_goes() -> None:
    window = AdaptiveWindow(granted=2)
    hold_against_a_shared_model(window)
    held = window.hold
    # The other cameras left: the frame is taken at once, and the hold shrinks to nothing.
    for _ in range(int(held / (0.5 * QUEUE_TARGET)) + 1):
        window.observe(round_trip=0.031, server_total=0.030, queued=0.0)
    assert window.hold == 0.0


def test_the_hold_is_bounded_and_off_with_a_fixed_window() -> None:
    window = AdaptiveWindow(granted=2)
    for _ in range(100):
        window.observe(round_trip=5.0, server_total=4.9, queued=4.0)
    assert window.hold == MAX_HOLD
    fixed = AdaptiveWindow(granted=2, fixed=True)
    hold_against_a_shared_model(fixed)
    assert fixed.hold == 0.0


def test_nothing_is_held_while_the_server_batches_frames_together() -> None:
    # On a GPU frames wait at ingest to share a batch: held back, they would miss it.
    window = AdaptiveWindow(granted=2)
    hold_against_a_shared_model(window)
    assert window.hold > 0.0
    window.observe(round_trip=0.062, server_total=0.060, queued=SHARED_QUEUE, batch_size=16)
    assert window.hold == 0.0
