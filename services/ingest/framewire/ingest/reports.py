"""Judging AgentReports: what a device may claim, as pure functions.

Reports are the one place where the server takes a device's word for its
figures (frames captured and sent, bytes, edge skips, end-to-end latency),
and they feed fleet-wide metrics. A report is accepted only when its figures
are plausible next to what the server saw itself, and only at a bounded rate;
a rejected report is counted by reason and otherwise ignored, so one device
can neither poison the metrics nor spend the event loop on them.

Counts are deltas since the agent's previous report, which may have been sent
on an earlier call of the same device (a reconnect), so every bound allows a
*carry-over*: what a device could have captured, sent or received in one
report interval, plus a full window in flight.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field

from framewire.common.protoutil import seconds
from framewire.v1 import ingest_service_pb2


class Rejection(enum.Enum):
    """Why a report was not believed (the metric's ``reason`` label)."""

    RATE = "rate"  # more reports than the per-stream rate allows
    CAPTURED = "captured"  # more frames captured than any camera could in the time
    SENT = "sent"  # more frames sent than the server received
    BYTES = "bytes"  # more bytes than the frames sent could carry
    SKIPS = "skips"  # more frames skipped at the edge than were captured
    LATENCIES = "latencies"  # more samples than results, or an impossible latency
    RESULTS = "results"  # more results acknowledged than were written


@dataclass(frozen=True)
class ReportLimits:
    """The bounds a stream's reports are held to."""

    reports_per_second: float
    burst: int
    max_capture_fps: float
    max_latency: float  # seconds
    carryover_frames: int
    max_frame_bytes: int


@dataclass
class UnreadResults:
    """FrameResults written to a stream and not yet acknowledged, with when each was written."""

    written: int = 0
    acknowledged: int = 0
    _written_at: collections.deque[float] = field(default_factory=collections.deque)

    @property
    def unread(self) -> int:
        return self.written - self.acknowledged

    def wrote(self, now: float) -> None:
        """One more FrameResult went out at ``now`` (monotonic seconds)."""
        self.written += 1
        self._written_at.append(now)

    def acknowledge(self, count: int) -> None:
        """The client says it has read ``count`` results of this call so far."""
        while self.acknowledged < min(count, self.written):
            self._written_at.popleft()
            self.acknowledged += 1

    def oldest_age(self, now: float) -> float:
        """How long the oldest unacknowledged result has waited to be acknowledged."""
        return now - self._written_at[0] if self._written_at else 0.0


@dataclass
class ReportBooks:
    """What one stream's accepted reports have claimed so far, and its rate allowance."""

    opened_at: float
    tokens: float
    last_accepted_at: float | None = None
    last_refill_at: float | None = None
    frames_sent: int = 0
    latency_samples: int = 0
    # The FrameResults written to the stream, and which of them the client
    # has acknowledged reading: the one home of both counts.
    results: UnreadResults = field(default_factory=UnreadResults)


def take_turn(books: ReportBooks, limits: ReportLimits, now: float) -> bool:
    """Whether the stream may send a report now (a token bucket); checked before anything else.

    A report refused here is dropped unread, so a flood costs next to nothing.
    """
    last_refill = books.opened_at if books.last_refill_at is None else books.last_refill_at
    books.tokens = min(
        float(limits.burst), books.tokens + (now - last_refill) * limits.reports_per_second
    )
    books.last_refill_at = now
    if books.tokens < 1.0:
        return False
    books.tokens -= 1.0
    return True


def judge(
    report: ingest_service_pb2.AgentReport,
    books: ReportBooks,
    limits: ReportLimits,
    *,
    now: float,
    received: int,
) -> Rejection | None:
    """Accepts ``report`` into ``books`` (returning None) or says why it is implausible.

    ``now`` is monotonic seconds; ``received`` is the frames the server has
    read from this stream; ``books.results`` counts the FrameResults written.
    An accepted report acknowledges the results it says were read
    (``results_received``), or, from a client that does not send that field,
    one result per latency sample.
    """
    since = books.opened_at if books.last_accepted_at is None else books.last_accepted_at
    carry = limits.carryover_frames
    results = books.results.written
    if report.frames_captured > limits.max_capture_fps * max(0.0, now - since) + carry:
        return Rejection.CAPTURED
    if books.frames_sent + report.frames_sent > received + carry:
        return Rejection.SENT
    if report.bytes_sent > report.frames_sent * limits.max_frame_bytes:
        return Rejection.BYTES
    if sum(skip.count for skip in report.skips) > report.frames_captured + carry:
        return Rejection.SKIPS
    samples = len(report.end_to_end_latencies)
    if books.latency_samples + samples > results + carry:
        return Rejection.LATENCIES
    if any(seconds(latency) > limits.max_latency for latency in report.end_to_end_latencies):
        return Rejection.LATENCIES
    if report.HasField("results_received") and report.results_received > results:
        return Rejection.RESULTS

    books.last_accepted_at = now
    books.frames_sent += report.frames_sent
    books.latency_samples += samples
    books.results.acknowledge(
        report.results_received
        if report.HasField("results_received")
        else min(books.latency_samples, results)
    )
    return None


def too_many_unread(unread: UnreadResults, now: float, *, limit: int, max_age: float) -> bool:
    """Whether a client has stopped reading: more than ``limit`` results unacknowledged, the
    oldest for longer than ``max_age``. A fast client that acknowledges every report interval
    can run far past ``limit`` between reports without ever meeting the age."""
    return unread.unread > limit and unread.oldest_age(now) > max_age
