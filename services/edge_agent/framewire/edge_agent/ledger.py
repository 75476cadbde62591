"""The agent's books: every captured frame ends up counted exactly once.

Two levels, matching the server's:

- captured = sent + skipped at the edge (``superseded``: a newer capture
  replaced it while the send window was full; ``disconnected``: captured
  while no stream was up) + at most one frame still waiting;
- sent = answered by a result (processed or failed) + skipped by the server
  (as it listed them) + lost (the connection broke before an answer) +
  frames still in flight.

The capture thread touches only :class:`LatestFrame`; everything else here
belongs to the network thread.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from framewire.common.protoutil import duration
from framewire.edge_agent.sources import CapturedFrame
from framewire.v1 import ingest_service_pb2

SUPERSEDED = ingest_service_pb2.SKIP_REASON_SUPERSEDED
STALE = ingest_service_pb2.SKIP_REASON_STALE
DISCONNECTED = ingest_service_pb2.SKIP_REASON_DISCONNECTED


class LatestFrame:
    """A one-frame handoff from capture to send: a newer frame replaces the waiting one.

    Capture never waits here. The frame it replaces is counted as an edge
    skip, ``superseded`` while connected and ``disconnected`` otherwise.
    """

    def __init__(self, notify: Callable[[], None] = lambda: None) -> None:
        self._lock = threading.Lock()
        self._frame: CapturedFrame | None = None
        self.captured = 0
        self.replaced: collections.Counter[int] = collections.Counter()
        self.connected = False
        self.notify = notify

    def put(self, frame: CapturedFrame) -> None:
        """Offers a new capture, replacing (and counting) a frame still waiting."""
        with self._lock:
            self.captured += 1
            if self._frame is not None:
                self.replaced[SUPERSEDED if self.connected else DISCONNECTED] += 1
            self._frame = frame
        self.notify()

    def take(self) -> CapturedFrame | None:
        """Takes the waiting frame, if any."""
        with self._lock:
            frame, self._frame = self._frame, None
            return frame

    def give_back(self, frame: CapturedFrame) -> None:
        """Returns a taken frame that could not be sent (the stream broke while it was encoded).

        It waits again unless a newer capture arrived meanwhile, which replaces
        it as any newer capture would: either way it stays in the books.
        """
        with self._lock:
            if self._frame is None:
                self._frame = frame
            else:
                self.replaced[SUPERSEDED if self.connected else DISCONNECTED] += 1

    def discard(self) -> bool:
        """Drops a waiting frame that will never be sent (the run is ending); counts it."""
        with self._lock:
            if self._frame is None:
                return False
            self._frame = None
            self.replaced[SUPERSEDED if self.connected else DISCONNECTED] += 1
            return True

    @property
    def waiting(self) -> bool:
        with self._lock:
            return self._frame is not None

    def counts(self) -> tuple[int, collections.Counter[int]]:
        """Frames captured and frames replaced by reason, so far."""
        with self._lock:
            return self.captured, collections.Counter(self.replaced)


@dataclass(eq=False)
class SentFrame:
    """A frame on the wire, waiting for its answer."""

    seq: int
    capture_ns: int
    sent_ns: int
    size: int
    width: int
    height: int
    keyframe: bool
    image: np.ndarray | None = field(default=None, repr=False)  # kept only for --record


@dataclass(frozen=True)
class Answer:
    """What one server message answered."""

    frame: SentFrame | None  # the frame a FrameResult is for (None for a SkipNotice)
    skipped: list[tuple[SentFrame, int]]  # frames the server skipped, with the reason
    unknown: list[int]  # seqs the server named that were not in flight (logged)


class Ledger:
    """Frames in flight and the counts of how each sent frame ended."""

    def __init__(self) -> None:
        self.in_flight: collections.OrderedDict[int, SentFrame] = collections.OrderedDict()
        self.sent = 0
        self.bytes_sent = 0
        self.processed = 0
        self.failed = 0
        self.server_skipped: collections.Counter[int] = collections.Counter()
        self.lost = 0  # sent, then the connection broke before an answer
        self.latencies: collections.deque[float] = collections.deque(maxlen=100_000)
        # Deltas for the next AgentReport.
        self._report_latencies: list[float] = []
        self._report_sent = 0
        self._report_bytes = 0
        self._report_lost = 0
        self._reported_captured = 0
        self._reported_replaced: collections.Counter[int] = collections.Counter()

    @property
    def answered(self) -> int:
        """Sent frames whose fate is known."""
        return self.processed + self.failed + sum(self.server_skipped.values()) + self.lost

    def on_sent(self, frame: SentFrame) -> None:
        self.in_flight[frame.seq] = frame
        self.sent += 1
        self.bytes_sent += frame.size
        self._report_sent += 1
        self._report_bytes += frame.size

    def on_result(self, result: ingest_service_pb2.FrameResult, now_ns: int) -> Answer:
        """Books a FrameResult and the skips it lists."""
        frame = self.in_flight.pop(result.seq, None)
        unknown = [] if frame is not None else [result.seq]
        if frame is not None:
            if result.HasField("error"):
                self.failed += 1
            else:
                self.processed += 1
            latency = (now_ns - frame.capture_ns) / 1e9
            self.latencies.append(latency)
            self._report_latencies.append(latency)
        skipped, missing = self._skips(result.skipped)
        return Answer(frame=frame, skipped=skipped, unknown=unknown + missing)

    def on_skip_notice(self, notice: ingest_service_pb2.SkipNotice) -> Answer:
        skipped, missing = self._skips(notice.skipped)
        return Answer(frame=None, skipped=skipped, unknown=missing)

    def _skips(
        self, listed: Iterable[ingest_service_pb2.SkippedFrame]
    ) -> tuple[list[tuple[SentFrame, int]], list[int]]:
        skipped: list[tuple[SentFrame, int]] = []
        missing: list[int] = []
        for entry in listed:
            frame = self.in_flight.pop(entry.seq, None)
            if frame is None:
                missing.append(entry.seq)
                continue
            self.server_skipped[entry.reason] += 1
            skipped.append((frame, int(entry.reason)))
        return skipped, missing

    def on_disconnect(self) -> list[SentFrame]:
        """The stream broke: every frame in flight is lost."""
        lost = list(self.in_flight.values())
        self.in_flight.clear()
        self.lost += len(lost)
        self._report_lost += len(lost)
        return lost

    def report(
        self, captured: int, replaced: collections.Counter[int], max_samples: int
    ) -> ingest_service_pb2.AgentReport | None:
        """The AgentReport of everything since the previous one (None when nothing happened).

        ``captured`` and ``replaced`` are the capture side's running totals.
        Frames lost in transit are reported as ``disconnected`` skips at the
        edge, like frames captured while no stream was up.
        """
        skips = replaced - self._reported_replaced
        skips[DISCONNECTED] += self._report_lost
        captured_delta = captured - self._reported_captured
        if not (self._report_latencies or +skips or self._report_sent or captured_delta):
            return None
        report = ingest_service_pb2.AgentReport(
            bytes_sent=self._report_bytes,
            frames_captured=captured_delta,
            frames_sent=self._report_sent,
        )
        # The newest samples matter most if there are more than a report may carry.
        for latency in self._report_latencies[-max_samples:]:
            report.end_to_end_latencies.append(duration(latency))
        for reason, count in sorted((+skips).items()):
            report.skips.add(reason=reason, count=count)
        self._report_latencies.clear()
        self._report_sent = self._report_bytes = self._report_lost = 0
        self._reported_captured = captured
        self._reported_replaced = collections.Counter(replaced)
        return report
