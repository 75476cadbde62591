"""One stream's real-time state: the latest-frame slot, skips, ordered answers.

Pure and synchronous: no gRPC and no event loop, so every rule here is unit
tested directly. The servicer feeds it requests, the batcher takes frames
from its slot and hands results back, and the servicer's writer drains its
outbox.

The rules:

- Every received frame is answered exactly once: by a FrameResult (processed
  or failed) or by being listed as skipped. ``received == processed + failed +
  skipped`` holds at all times once the outbox is drained.
- The slot holds the newest frame not yet taken by a batch. A newer frame
  replaces it (the older one is skipped as ``superseded``); a frame that waited
  longer than the maximum age when its batch comes is skipped as ``stale``.
- Results leave in seq order. Skips ride on the next result; when no result
  is due (nothing pending), they leave at once in a SkipNotice.
- Memory is bounded: frames are read only while fewer than ``max_in_flight``
  are unanswered, so a stream never holds more than that many frames, and
  its outbox never more than that many answers (plus one flow hint).
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from framewire.common import contract
from framewire.common.contract import skip_reason_name
from framewire.common.errors import FramewireError
from framewire.v1 import common_pb2, inference_service_pb2, ingest_service_pb2

SkipReason = ingest_service_pb2.SkipReason


class Outcome(enum.Enum):
    """How a frame's life at ingest ended."""

    PROCESSED = "processed"
    FAILED = "failed"
    SUPERSEDED = skip_reason_name(ingest_service_pb2.SKIP_REASON_SUPERSEDED)
    STALE = skip_reason_name(ingest_service_pb2.SKIP_REASON_STALE)
    # The call ended (client gone, protocol error) before a batch took the
    # frame. Nobody is left to tell; the metrics still count it.
    ABANDONED = contract.ABANDONED


SKIP_REASONS = {
    Outcome.SUPERSEDED: ingest_service_pb2.SKIP_REASON_SUPERSEDED,
    Outcome.STALE: ingest_service_pb2.SKIP_REASON_STALE,
}


@dataclass(frozen=True)
class StreamSettings:
    """A stream's settings after validation: what StreamAccepted reports."""

    stream_id: str
    score_threshold: float
    class_filter: tuple[str, ...]
    max_in_flight: int
    client_version: str
    # Track ids wanted (StreamConfig.track, or the server's --track).
    track: bool = False

    def detect_options(self) -> inference_service_pb2.DetectOptions:
        """The per-image options sent to the model for this stream's frames."""
        return inference_service_pb2.DetectOptions(
            score_threshold=self.score_threshold, class_filter=self.class_filter
        )


@dataclass(eq=False)
class PendingFrame:
    """A frame between receipt and its batch."""

    seq: int
    frame: ingest_service_pb2.Frame
    received_at: float  # monotonic seconds
    session: StreamSession = field(repr=False)


class StreamSession:
    """The state of one StreamFrames call; see the module docstring for the rules."""

    def __init__(
        self,
        key: int,
        settings: StreamSettings,
        *,
        on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    ) -> None:
        self.key = key
        self.settings = settings
        self.options = settings.detect_options()
        self.slot: PendingFrame | None = None
        self.slot_since = 0.0
        self.last_served = 0.0  # when a batch last took a frame of this stream
        # Seqs received and not yet answered, in seq order; the value is the
        # result once it is known.
        self._order: collections.OrderedDict[int, ingest_service_pb2.FrameResult | None] = (
            collections.OrderedDict()
        )
        self._pending_skips: list[ingest_service_pb2.SkippedFrame] = []
        self.outbox: collections.deque[ingest_service_pb2.StreamFramesResponse] = (
            collections.deque()
        )
        self._hint: ingest_service_pb2.FlowHint | None = None
        self.last_seq = 0
        self.received = 0
        self.delivered = 0  # frames whose answer has been written to the client
        self.outcomes: collections.Counter[Outcome] = collections.Counter()
        self.input_closed = False
        # Set when the server stopped reading (draining), not the client.
        self.stopped_by_server = False
        self.failure: FramewireError | None = None
        self._on_outcome = on_outcome
        # Called when there is something new to write (or the stream ends), and when
        # an answer was written, so the window may have room to read another request.
        # Apart, so that a result leaving the model wakes only the writer.
        self.wake_writer: Callable[[], None] = lambda: None
        self.wake_reader: Callable[[], None] = lambda: None

    # -- what the reader does -------------------------------------------------

    @property
    def unanswered(self) -> int:
        """Frames received whose answer has not been written yet."""
        return self.received - self.delivered

    def may_read(self) -> bool:
        """Whether another request may be read without exceeding the stream's window."""
        return self.unanswered < self.settings.max_in_flight

    def accept(self, frame: ingest_service_pb2.Frame, now: float) -> bool:
        """Puts a validated frame in the slot; returns True when the slot was empty before.

        The frame it replaces, if any, is skipped as superseded.
        """
        self._receive(frame.seq)
        pending = PendingFrame(seq=frame.seq, frame=frame, received_at=now, session=self)
        previous = self.slot
        self.slot = pending
        if previous is not None:
            self._skip(previous.seq, Outcome.SUPERSEDED)
            return False
        self.slot_since = now
        return True

    def reject(self, frame: ingest_service_pb2.Frame, error: FramewireError) -> None:
        """Answers a frame whose content is unusable with a per-frame error."""
        self._receive(frame.seq)
        self.complete(frame.seq, failed_result(frame, error))

    def _receive(self, seq: int) -> None:
        self.received += 1
        self.last_seq = seq
        self._order[seq] = None

    def close_input(self) -> None:
        """The client half-closed, or the server stopped reading: finish what was received."""
        self.input_closed = True
        self._wake_both()

    def fail(self, error: FramewireError) -> None:
        """Ends the stream with ``error``; the servicer aborts the call with it."""
        if self.failure is None:
            self.failure = error
        self.input_closed = True
        self._wake_both()

    def abandon(self) -> None:
        """The call is over: a frame still waiting for a batch will never be processed."""
        if self.slot is not None:
            seq, self.slot = self.slot.seq, None
            del self._order[seq]
            self.outcomes[Outcome.ABANDONED] += 1
            self._on_outcome(Outcome.ABANDONED)

    # -- what the batcher does ------------------------------------------------

    def take_slot(self) -> PendingFrame | None:
        """Empties the slot for a batch that the scheduler says will finish in time."""
        pending, self.slot = self.slot, None
        return pending

    def skip_slot(self) -> None:
        """Skips the waiting frame as stale: it could not be answered within the budget."""
        pending, self.slot = self.slot, None
        if pending is not None:
            self._skip(pending.seq, Outcome.STALE)

    def take(self, now: float, max_age: float) -> PendingFrame | None:
        """Empties the slot for a batch; a frame older than ``max_age`` is skipped as stale."""
        pending = self.slot
        self.slot = None
        if pending is None:
            return None
        if now - pending.received_at > max_age:
            self._skip(pending.seq, Outcome.STALE)
            return None
        return pending

    def complete(self, seq: int, result: ingest_service_pb2.FrameResult) -> None:
        """Records the result of a frame that was taken (or rejected)."""
        if seq not in self._order or self._order[seq] is not None:
            raise ValueError(f"stream {self.settings.stream_id}: no pending frame {seq}")
        self._order[seq] = result
        outcome = Outcome.FAILED if result.HasField("error") else Outcome.PROCESSED
        self.outcomes[outcome] += 1
        self._on_outcome(outcome)
        self._flush()

    # -- what the writer does -------------------------------------------------

    def hint(self, hint: ingest_service_pb2.FlowHint) -> None:
        """Queues a flow hint; a newer hint replaces one not yet sent."""
        self._hint = hint
        self.wake_writer()

    def next_response(self) -> ingest_service_pb2.StreamFramesResponse | None:
        """The next message to write, if any."""
        if self.outbox:
            return self.outbox.popleft()
        if self._hint is not None:
            hint, self._hint = self._hint, None
            return ingest_service_pb2.StreamFramesResponse(hint=hint)
        return None

    def delivered_response(self, response: ingest_service_pb2.StreamFramesResponse) -> None:
        """Counts the frames a written response answered."""
        kind = response.WhichOneof("kind")
        if kind == "result":
            self.delivered += 1 + len(response.result.skipped)
        elif kind == "skip_notice":
            self.delivered += len(response.skip_notice.skipped)
        self.wake_reader()

    @property
    def finished(self) -> bool:
        """True when the input is closed and every received frame has been answered."""
        if self.failure is not None:
            return True
        return (
            self.input_closed
            and not self._order
            and not self.outbox
            and self._hint is None
            and self.slot is None
        )

    @property
    def waiting(self) -> int:
        """Frames received and not yet answered in the outbox (in the slot or a batch)."""
        return len(self._order)

    # -- internals ------------------------------------------------------------

    def _wake_both(self) -> None:
        self.wake_writer()
        self.wake_reader()

    def _skip(self, seq: int, outcome: Outcome) -> None:
        del self._order[seq]
        self._pending_skips.append(
            ingest_service_pb2.SkippedFrame(seq=seq, reason=SKIP_REASONS[outcome])
        )
        self.outcomes[outcome] += 1
        self._on_outcome(outcome)
        self._flush()

    def _flush(self) -> None:
        added = False
        while self._order:
            seq, result = next(iter(self._order.items()))
            if result is None:
                break
            del self._order[seq]
            if self._pending_skips:
                result.skipped.extend(self._pending_skips)
                self._pending_skips.clear()
            self.outbox.append(ingest_service_pb2.StreamFramesResponse(result=result))
            added = True
        if not self._order and self._pending_skips:
            notice = ingest_service_pb2.SkipNotice(skipped=self._pending_skips)
            self._pending_skips = []
            self.outbox.append(ingest_service_pb2.StreamFramesResponse(skip_notice=notice))
            added = True
        if added:
            self.wake_writer()


def failed_result(
    frame: ingest_service_pb2.Frame, error: FramewireError
) -> ingest_service_pb2.FrameResult:
    """A FrameResult saying the frame could not be processed, and why."""
    return ingest_service_pb2.FrameResult(
        seq=frame.seq,
        capture_time=frame.capture_time if frame.HasField("capture_time") else None,
        error=error.to_status(),
        timings=common_pb2.StageTimings(),
    )
