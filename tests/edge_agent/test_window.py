"""The agent's adaptive window: 1 in front of a busy server, more across a slow link."""

from __future__ import annotations

from framewire.edge_agent.window import AdaptiveWindow


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
