"""The server processes' event loop runner."""

from __future__ import annotations

import sys

from framewire.common.serving import EVENT_LOOP_SWITCH_INTERVAL, run


def test_a_server_hands_the_gil_back_to_its_event_loop_within_the_interval() -> None:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # Python's default

    async def interval_inside() -> float:
        return sys.getswitchinterval()

    try:
        assert run(interval_inside) == EVENT_LOOP_SWITCH_INTERVAL
        assert EVENT_LOOP_SWITCH_INTERVAL < 0.005
    finally:
        sys.setswitchinterval(before)
