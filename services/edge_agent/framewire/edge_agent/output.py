"""What the agent shows: result events, JSON lines, the live status line, the summary.

The JSON-lines schema (``--output jsonl``), one object per line:

``{"type": "result", "stream_id": str, "seq": int, "capture_time": RFC 3339 str,
"latency_ms": float (capture to result, agent clock), "detections": [{"class_id": int,
"label": str, "score": float, "box": [x_min, y_min, x_max, y_max] (0..1), "track_id": int |
null (the same for the same object across frames; with --track)}], "skipped":
[{"seq": int, "reason": "superseded"|"stale"}], "error": null | {"code": str, "message":
str}, "server_ms": {"queue", "decode", "preprocess", "inference", "postprocess", "total"},
"batch_size": int, "model_id": str, "frame": {"width": int, "height": int, "bytes": int,
"keyframe": bool}}``

``{"type": "skip_notice", "stream_id": str, "skipped": [{"seq": int, "reason": str}]}``
"""

from __future__ import annotations

import collections
import datetime
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from framewire.common.contract import SKIP_REASONS, STAGES
from framewire.common.errors import status_code_from_number
from framewire.common.protoutil import seconds
from framewire.edge_agent.ledger import SentFrame
from framewire.v1 import common_pb2, ingest_service_pb2


@dataclass(frozen=True)
class ResultEvent:
    """One answer from the server, as the agent's callbacks see it."""

    kind: str  # "result" or "skip_notice"
    stream_id: str
    seq: int | None
    latency: float | None  # seconds, capture to result on the agent's clock
    detections: Sequence[common_pb2.Detection]
    skipped: Sequence[tuple[int, str]]  # (seq, reason)
    error: tuple[str, str] | None  # (status code name, message)
    server_timings: dict[str, float]  # seconds per stage
    batch_size: int
    model_id: str
    frame: SentFrame | None

    @classmethod
    def from_result(
        cls,
        stream_id: str,
        result: ingest_service_pb2.FrameResult,
        frame: SentFrame | None,
        latency: float | None,
    ) -> ResultEvent:
        error = None
        if result.HasField("error"):
            error = (status_code_from_number(result.error.code).name, result.error.message)
        timings = {
            stage: seconds(getattr(result.timings, stage))
            for stage in STAGES
            if result.timings.HasField(stage)  # type: ignore[arg-type]
        }
        return cls(
            kind="result",
            stream_id=stream_id,
            seq=result.seq,
            latency=latency,
            detections=list(result.detections),
            skipped=[
                (entry.seq, SKIP_REASONS.get(entry.reason, "unknown")) for entry in result.skipped
            ],
            error=error,
            server_timings=timings,
            batch_size=result.batch_size,
            model_id=result.model_id,
            frame=frame,
        )

    @classmethod
    def from_skip_notice(cls, stream_id: str, notice: ingest_service_pb2.SkipNotice) -> ResultEvent:
        return cls(
            kind="skip_notice",
            stream_id=stream_id,
            seq=None,
            latency=None,
            detections=[],
            skipped=[
                (entry.seq, SKIP_REASONS.get(entry.reason, "unknown")) for entry in notice.skipped
            ],
            error=None,
            server_timings={},
            batch_size=0,
            model_id="",
            frame=None,
        )

    @property
    def labels(self) -> list[str]:
        """The labels detected, highest score first."""
        return [detection.label for detection in self.detections]

    def to_json(self) -> dict[str, Any]:
        """The event as the documented JSON object (see the module docstring)."""
        skipped = [{"seq": seq, "reason": reason} for seq, reason in self.skipped]
        if self.kind == "skip_notice":
            return {"type": "skip_notice", "stream_id": self.stream_id, "skipped": skipped}
        frame = self.frame
        return {
            "type": "result",
            "stream_id": self.stream_id,
            "seq": self.seq,
            "capture_time": _rfc3339(frame.capture_ns) if frame else None,
            "latency_ms": round(self.latency * 1000, 2) if self.latency is not None else None,
            "detections": [detection_json(detection) for detection in self.detections],
            "skipped": skipped,
            "error": {"code": self.error[0], "message": self.error[1]} if self.error else None,
            "server_ms": {
                stage: round(value * 1000, 3) for stage, value in self.server_timings.items()
            },
            "batch_size": self.batch_size,
            "model_id": self.model_id,
            "frame": (
                {
                    "width": frame.width,
                    "height": frame.height,
                    "bytes": frame.size,
                    "keyframe": frame.keyframe,
                }
                if frame
                else None
            ),
        }


def detection_json(detection: common_pb2.Detection) -> dict[str, Any]:
    """One detection as the documented JSON object (see the module docstring)."""
    box = detection.box
    return {
        "class_id": detection.class_id,
        "label": detection.label,
        "score": round(detection.score, 4),
        "box": [round(value, 5) for value in (box.x_min, box.y_min, box.x_max, box.y_max)],
        "track_id": detection.track_id if detection.HasField("track_id") else None,
    }


def _rfc3339(unix_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(unix_ns / 1e9, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of ``values`` (nearest rank), or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[rank]


@dataclass
class Summary:
    """How a run went, frame by frame: every captured frame is in exactly one count."""

    stream_id: str
    seconds: float
    captured: int
    sent: int
    processed: int
    failed: int
    skipped_edge: dict[str, int]  # never sent: replaced while waiting, or no connection
    skipped_server: dict[str, int]  # sent, then skipped by the server as it reported
    lost: int  # sent, then the connection broke before an answer
    bytes_sent: int
    latencies: list[float] = field(repr=False)
    detections: collections.Counter[str] = field(default_factory=collections.Counter)
    reconnects: int = 0
    actions_run: int = 0
    actions_dropped: int = 0
    recorded: int = 0
    # Frames sent, by how many frames the window allowed in flight when each was sent.
    window_sizes: dict[int, int] = field(default_factory=dict)
    # Frames sent while the window held the next frame back after each answer (frames were
    # queueing at the server), and those holds summed (seconds).
    held: int = 0
    held_seconds: float = 0.0
    hints: int = 0  # FlowHints received

    @property
    def answered(self) -> int:
        return self.processed + self.failed

    @property
    def mean_hold(self) -> float | None:
        """The mean hold of the frames sent under one (seconds), None when none was."""
        return self.held_seconds / self.held if self.held else None

    def latency(self, fraction: float) -> float | None:
        return percentile(self.latencies, fraction)

    def check(self) -> list[str]:
        """Broken accounting, if any (empty when every frame is counted once)."""
        problems = []
        unsent = sum(self.skipped_edge.values())
        server = sum(self.skipped_server.values())
        if self.captured != self.sent + unsent:
            problems.append(
                f"captured {self.captured} != sent {self.sent} + skipped before sending {unsent}"
            )
        if self.sent != self.answered + server + self.lost:
            problems.append(
                f"sent {self.sent} != answered {self.answered} + skipped by the server {server} "
                f"+ lost {self.lost}"
            )
        return problems

    def format(self) -> str:
        """The summary for people, several lines."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f} ms"

        per_frame = self.bytes_sent / self.sent if self.sent else 0
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"stream {self.stream_id}: {self.seconds:.1f} s, {rate:.1f} frames/s sent",
            f"  frames   captured {self.captured}, sent {self.sent}, answered {self.answered} "
            f"({self.processed} processed, {self.failed} failed)",
            "  skipped  at the edge: "
            + _counts(self.skipped_edge)
            + "; by the server: "
            + _counts(self.skipped_server)
            + f"; lost in transit: {self.lost}",
            f"  bytes    {self.bytes_sent} sent, {per_frame:,.0f} per frame",
            f"  latency  capture to result p50 {ms(self.latency(0.5))}, "
            f"p95 {ms(self.latency(0.95))}, p99 {ms(self.latency(0.99))} "
            f"({len(self.latencies)} results)",
        ]
        if self.detections:
            top = ", ".join(f"{label} {count}" for label, count in self.detections.most_common(8))
            lines.append(f"  objects  {top}")
        if self.window_sizes:
            shown = ", ".join(
                f"{size} for {count} sent" for size, count in sorted(self.window_sizes.items())
            )
            lines.append(f"  window   frames in flight at most: {shown}")
        if self.held:
            lines.append(
                f"  hold     {self.held} frames held back after an answer, {ms(self.mean_hold)} "
                "on average (frames were queueing at the server)"
            )
        if self.hints:
            lines.append(f"  hints    {self.hints} FlowHint(s) from the server")
        if self.reconnects:
            lines.append(f"  reconnected {self.reconnects} time(s)")
        if self.actions_run or self.actions_dropped:
            lines.append(f"  actions  ran {self.actions_run}, dropped {self.actions_dropped}")
        if self.recorded:
            lines.append(f"  recorded {self.recorded} frames")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "stream_id": self.stream_id,
            "seconds": round(self.seconds, 3),
            "captured": self.captured,
            "sent": self.sent,
            "processed": self.processed,
            "failed": self.failed,
            "skipped_edge": self.skipped_edge,
            "skipped_server": self.skipped_server,
            "lost": self.lost,
            "bytes_sent": self.bytes_sent,
            "latency_ms": {
                name: (None if value is None else round(value * 1000, 2))
                for name, value in (
                    ("p50", self.latency(0.5)),
                    ("p95", self.latency(0.95)),
                    ("p99", self.latency(0.99)),
                )
            },
            "detections": dict(self.detections),
            "reconnects": self.reconnects,
            "window_sizes": {str(size): count for size, count in sorted(self.window_sizes.items())},
            "hints": self.hints,
            "held": self.held,
            "mean_hold_ms": None if self.mean_hold is None else round(self.mean_hold * 1000, 2),
        }


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{count} {reason}" for reason, count in sorted(counts.items()) if count]
    return ", ".join(shown) if shown else "none"


class StatusLine:
    """A one-line live view for people, rewritten in place on a terminal."""

    def __init__(self, stream: TextIO = sys.stdout, interval: float = 0.5) -> None:
        self._stream = stream
        self._interval = interval
        self._last = 0.0
        self._window: collections.deque[tuple[float, int]] = collections.deque(maxlen=50)
        self._width = 0

    def update(
        self,
        *,
        sent: int,
        answered: int,
        skipped_edge: int,
        skipped_server: int,
        bytes_sent: int,
        latencies: Sequence[float],
        connected: bool,
        force: bool = False,
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        self._window.append((now, sent))
        first_time, first_sent = self._window[0]
        fps = (sent - first_sent) / (now - first_time) if now > first_time else 0.0
        recent = list(latencies)[-200:]
        p50, p95 = percentile(recent, 0.5), percentile(recent, 0.95)
        text = (
            f"{'connected' if connected else 'RECONNECTING'} | {fps:4.1f} fps | "
            f"latency p50 {_ms(p50)} p95 {_ms(p95)} | sent {sent} answered {answered} "
            f"skipped {skipped_edge} edge {skipped_server} server | "
            f"{bytes_sent / max(sent, 1) / 1000:.1f} kB/frame"
        )
        padding = max(0, self._width - len(text))
        self._width = len(text)
        self._stream.write("\r" + text + " " * padding)
        self._stream.flush()

    def close(self) -> None:
        if self._width:
            self._stream.write("\n")
            self._stream.flush()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}ms"
