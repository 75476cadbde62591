"""Capture pacing: when frames are due, and how the capture thread ends."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from framewire.edge_agent.capture import CaptureThread, Pacer
from framewire.edge_agent.config import CaptureOptions
from framewire.edge_agent.ledger import LatestFrame
from framewire.edge_agent.sources import CapturedFrame, SourceError


def test_a_file_is_read_one_frame_per_slot() -> None:
    pacer = Pacer(10.0, live=False, start=100.0)
    assert pacer.admits(100.0)  # a file's frames are never dropped unseen
    pacer.kept(100.0)
    assert pacer.wait(100.02) == pytest.approx(0.08)
    pacer.kept(100.1)
    assert pacer.due == pytest.approx(100.2)
    # A slot read late by less than one interval keeps the schedule: no drift.
    assert pacer.wait(100.25) == 0.0
    assert pacer.due == pytest.approx(100.2)


def test_a_file_that_fell_behind_does_not_burst_to_catch_up() -> None:
    pacer = Pacer(10.0, live=False, start=0.0)
    pacer.kept(0.0)
    assert pacer.wait(5.0) == 0.0  # stalled for 5 s: 49 slots behind
    assert pacer.due == 5.0  # the schedule restarts from now
    pacer.kept(5.0)
    assert pacer.wait(5.0) == pytest.approx(0.1)


def test_a_camera_faster_than_the_rate_has_its_extra_reads_skipped() -> None:
    pacer = Pacer(5.0, live=True, start=0.0)
    assert pacer.admits(0.0)
    pacer.kept(0.0)
    assert pacer.wait(0.0) == 0.0  # a camera sets its own pace: never waited for
    assert not pacer.admits(0.1)
    assert pacer.admits(0.2)
    pacer.kept(0.2)
    assert pacer.due == pytest.approx(0.4)
    # Nothing read for a second: the missed slots are not owed afterwards.
    pacer.kept(1.4)
    assert pacer.due == 1.4
    pacer.kept(1.4)
    assert pacer.due == pytest.approx(1.6)
    assert not pacer.admits(1.5)


def test_without_a_rate_every_frame_is_taken_at_once() -> None:
    for live in (True, False):
        pacer = Pacer(None, live=live, start=0.0)
        for now in (0.0, 0.0, 0.001):
            assert pacer.admits(now)
            pacer.kept(now)
            assert pacer.wait(now) == 0.0


class ListSource:
    """A file-like source over a list of frames that breaks where told to."""

    name = "frames in memory"
    native_fps: float | None = None
    is_live = False

    def __init__(self, count: int, *, broken_at: int | None = None) -> None:
        self.count = count
        self.broken_at = broken_at
        self.read_so_far = 0

    def read(self) -> CapturedFrame | None:
        if self.read_so_far == self.broken_at:
            raise SourceError("the file is truncated")
        if self.read_so_far >= self.count:
            return None
        self.read_so_far += 1
        return CapturedFrame(
            index=self.read_so_far - 1,
            image=np.zeros((2, 2, 3), np.uint8),
            capture_ns=self.read_so_far,
        )

    def close(self) -> None:
        pass


def run_capture(source: ListSource, options: CaptureOptions) -> tuple[CaptureThread, LatestFrame]:
    handoff = LatestFrame()
    done = threading.Event()
    finished: list[bool] = []
    thread = CaptureThread(
        source,
        options,
        handoff,
        stop=threading.Event(),
        done=done,
        on_done=lambda: finished.append(True),
    )
    thread.start()
    assert done.wait(30)
    thread.join(30)
    assert finished == [True]
    return thread, handoff


def test_the_capture_thread_stops_at_the_frame_limit_and_at_the_end() -> None:
    thread, handoff = run_capture(ListSource(10), CaptureOptions(frames=4))
    assert thread.error is None
    assert handoff.counts()[0] == 4

    thread, handoff = run_capture(ListSource(3), CaptureOptions())
    assert thread.error is None
    assert handoff.counts()[0] == 3


def test_a_broken_source_is_reported_not_swallowed() -> None:
    thread, handoff = run_capture(ListSource(10, broken_at=2), CaptureOptions())
    assert isinstance(thread.error, SourceError)
    assert "truncated" in str(thread.error)
    assert handoff.counts()[0] == 2
