"""What the preview knows about the streams: figures for every stream, frames for watched ones.

:class:`PreviewBoard` is the ingest server's
:class:`~framewire.ingest.observer.StreamObserver` while the preview is on.
Its rules are the issue's cost rules:

- A stream nobody watches costs one dictionary lookup per processed frame:
  no frame is copied, encoded or kept.
- A watched stream has one slot holding references to its newest processed
  frame and result (the messages ingest already has, not copies). Every
  viewer of that stream reads the same slot, so memory is one frame per
  watched stream plus what each viewer's connection is writing (one frame).
- A viewer takes the newest frame when it is ready for one; frames that came
  in meanwhile are never queued for it, so a slow viewer gets fewer frames
  and the stream never waits.

Figures: the frame rates come from the session's own counts, sampled a few
times per window by :meth:`PreviewBoard.sample`; end-to-end latency from the
samples in the stream's AgentReports (the last ``preview_latency_samples``).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from dataclasses import dataclass, field
from typing import Any

from framewire.common.contract import SKIP_REASONS
from framewire.common.protoutil import seconds
from framewire.ingest.observer import StreamObserver
from framewire.ingest.preview.config import PreviewConfig
from framewire.ingest.streams import Outcome, StreamSession
from framewire.v1 import ingest_service_pb2

# The frame-rate window is sampled this many times.
SAMPLES_PER_WINDOW = 5


class Slot:
    """The newest processed frame of one watched stream, and who waits for the next."""

    def __init__(self) -> None:
        self.frame: ingest_service_pb2.Frame | None = None
        self.result: ingest_service_pb2.FrameResult | None = None
        self.version = 0
        self.viewers = 0
        self.closed = False
        self._changed = asyncio.Event()

    def put(self, frame: ingest_service_pb2.Frame, result: ingest_service_pb2.FrameResult) -> None:
        self.frame, self.result = frame, result
        self.version += 1
        self._wake()

    def close(self) -> None:
        """The stream ended: waiting viewers wake and see ``closed``."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_newer(self, version: int) -> None:
        """Returns once the slot holds something newer than ``version``, or is closed."""
        while self.version == version and not self.closed:
            await self._changed.wait()


@dataclass
class _Figures:
    session: StreamSession
    opened_at: float
    latencies: collections.deque[float]
    samples: collections.deque[tuple[float, int, int]]  # (time, received, processed)
    edge_skips: collections.Counter[str] = field(default_factory=collections.Counter)


class PreviewBoard(StreamObserver):
    """Stream figures and watched-stream frames for the preview page."""

    def __init__(self, config: PreviewConfig, *, clock: Any = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._streams: dict[int, _Figures] = {}
        self._slots: dict[int, Slot] = {}
        self.viewers = 0

    # -- StreamObserver -------------------------------------------------------

    def stream_opened(self, session: StreamSession) -> None:
        now = self._clock()
        self._streams[session.key] = _Figures(
            session=session,
            opened_at=now,
            latencies=collections.deque(maxlen=self.config.preview_latency_samples),
            samples=collections.deque([(now, session.received, 0)], maxlen=SAMPLES_PER_WINDOW + 1),
        )

    def stream_closed(self, session: StreamSession) -> None:
        self._streams.pop(session.key, None)
        slot = self._slots.pop(session.key, None)
        if slot is not None:
            slot.close()

    def report_received(
        self, session: StreamSession, report: ingest_service_pb2.AgentReport
    ) -> None:
        figures = self._streams.get(session.key)
        if figures is None:
            return
        figures.latencies.extend(seconds(latency) for latency in report.end_to_end_latencies)
        for skip in report.skips:
            figures.edge_skips[SKIP_REASONS.get(skip.reason, "unknown")] += skip.count

    def frame_processed(
        self,
        session: StreamSession,
        frame: ingest_service_pb2.Frame,
        result: ingest_service_pb2.FrameResult,
    ) -> None:
        slot = self._slots.get(session.key)
        if slot is not None:
            slot.put(frame, result)

    # -- viewers --------------------------------------------------------------

    def stream_key(self, key: int) -> StreamSession | None:
        figures = self._streams.get(key)
        return figures.session if figures else None

    def watch(self, key: int) -> Slot | None:
        """A viewer starts watching stream ``key``; None when there is no such stream."""
        if key not in self._streams:
            return None
        slot = self._slots.setdefault(key, Slot())
        slot.viewers += 1
        self.viewers += 1
        return slot

    def unwatch(self, key: int, slot: Slot) -> None:
        """A viewer left; the slot (and the frame it holds) goes with the last one."""
        slot.viewers -= 1
        self.viewers -= 1
        if slot.viewers == 0 and self._slots.get(key) is slot:
            del self._slots[key]

    @property
    def watched(self) -> int:
        """Streams with at least one viewer (each holds one frame)."""
        return len(self._slots)

    # -- figures --------------------------------------------------------------

    def sample(self) -> None:
        """Records every stream's counts now (for the frame rates)."""
        now = self._clock()
        for figures in self._streams.values():
            session = figures.session
            figures.samples.append((now, session.received, session.outcomes[Outcome.PROCESSED]))

    async def sample_forever(self) -> None:
        """Calls :meth:`sample` a few times per rate window; runs until cancelled."""
        interval = self.config.preview_rate_window / SAMPLES_PER_WINDOW
        while True:
            await asyncio.sleep(interval)
            self.sample()

    def streams(self) -> list[dict[str, Any]]:
        """Every open stream's figures, as the page shows them (JSON-ready)."""
        now = self._clock()
        return [self._describe(key, figures, now) for key, figures in sorted(self._streams.items())]

    def _describe(self, key: int, figures: _Figures, now: float) -> dict[str, Any]:
        session = figures.session
        outcomes = session.outcomes
        first_time, first_received, first_processed = figures.samples[0]
        span = now - first_time
        processed = outcomes[Outcome.PROCESSED]
        latencies = sorted(figures.latencies)
        slot = self._slots.get(key)
        return {
            "key": key,
            "stream_id": session.settings.stream_id,
            "client_version": session.settings.client_version,
            "tracking": session.settings.track,
            "seconds_open": round(now - figures.opened_at, 1),
            "fps_in": round((session.received - first_received) / span, 2) if span > 0 else None,
            "fps_processed": round((processed - first_processed) / span, 2) if span > 0 else None,
            "received": session.received,
            "processed": processed,
            "failed": outcomes[Outcome.FAILED],
            "skipped_server": {
                reason.value: outcomes[reason] for reason in (Outcome.SUPERSEDED, Outcome.STALE)
            },
            "skipped_edge": dict(figures.edge_skips),
            "e2e_ms": {
                "p50": _percentile_ms(latencies, 0.5),
                "p95": _percentile_ms(latencies, 0.95),
                "samples": len(latencies),
            },
            "viewers": slot.viewers if slot else 0,
        }


def _percentile_ms(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    index = max(0, math.ceil(fraction * len(ordered)) - 1)  # nearest rank
    return round(ordered[index] * 1000, 1)
