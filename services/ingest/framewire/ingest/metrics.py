"""The ingest service's Prometheus metrics.

Names follow Prometheus conventions (``framewire_`` prefix, base units,
``_total`` counters). Labels take only a fixed set of values (stage names,
skip reasons, status codes, configured inference targets); nothing per stream
or per frame.

Everything updated per frame lives on the event loop's thread, so those
metrics are :class:`~framewire.common.metrics.LoopMetrics` (plain numbers, no
locks); gauges are read from the live state when scraped.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from framewire.common.contract import (
    EDGE_SKIP_REASONS,
    SERVER_SKIP_REASONS,
    SKIP_REASONS,
    STAGES,
)
from framewire.common.metrics import (
    BATCH_SIZE_BUCKETS,
    LATENCY_BUCKETS,
    LoopCounter,
    LoopHistogram,
    LoopMetrics,
)
from framewire.common.protoutil import seconds
from framewire.ingest.reports import Rejection
from framewire.ingest.streams import Outcome
from framewire.v1 import ingest_service_pb2


def _one(children: dict[tuple[str, ...], LoopCounter]) -> LoopCounter:
    return children[()]


def _by_label(children: dict[tuple[str, ...], LoopCounter]) -> dict[str, LoopCounter]:
    return {values[0]: counter for values, counter in children.items()}


class IngestMetrics:
    """Every metric ingest exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        loop = LoopMetrics(registry)
        self.frames_received = _one(
            loop.counter("framewire_frames_received", "Frames received from agents.")
        )
        self.frames_processed = _one(
            loop.counter("framewire_frames_processed", "Frames answered with detections.")
        )
        self.frames_failed = _one(
            loop.counter(
                "framewire_frames_failed",
                "Frames answered with an error (bad image, model unavailable).",
            )
        )
        self.skipped_by_reason = _by_label(
            loop.counter(
                "framewire_frames_skipped",
                "Frames received and never processed, by reason: superseded and stale "
                "(dropped to stay real-time), abandoned (the stream ended before a batch "
                "took the frame).",
                {"reason": SERVER_SKIP_REASONS},
            )
        )
        self.frame_bytes = _one(
            loop.counter("framewire_received_bytes", "Encoded image bytes received.")
        )
        stages = loop.histogram(
            "framewire_stage_latency_seconds",
            "Time a processed frame spent in each server stage (total: receipt at ingest "
            "to result ready).",
            LATENCY_BUCKETS,
            {"stage": STAGES},
        )
        self.stage: dict[str, LoopHistogram] = {values[0]: h for values, h in stages.items()}
        self.end_to_end_latency = loop.histogram(
            "framewire_end_to_end_latency_seconds",
            "Capture to result on the agent's clock, as reported by agents.",
            LATENCY_BUCKETS,
        )[()]
        self.batch_size = loop.histogram(
            "framewire_batch_size", "Frames per batch sent to a model.", BATCH_SIZE_BUCKETS
        )[()]
        self.edge_frames_captured = _one(
            loop.counter(
                "framewire_edge_frames_captured",
                "Frames captured by agents, as reported by them.",
            )
        )
        self.edge_frames_sent = _one(
            loop.counter(
                "framewire_edge_frames_sent", "Frames sent by agents, as reported by them."
            )
        )
        self.edge_bytes_sent = _one(
            loop.counter(
                "framewire_edge_sent_bytes",
                "Encoded image bytes sent by agents, as reported by them.",
            )
        )
        self.edge_skipped_by_reason = _by_label(
            loop.counter(
                "framewire_edge_frames_skipped",
                "Frames agents dropped before sending or lost in transit, by reason, as "
                "reported by them.",
                {"reason": EDGE_SKIP_REASONS},
            )
        )
        self.reports_rejected = _by_label(
            loop.counter(
                "framewire_agent_reports_rejected",
                "AgentReports not believed, by reason: rate (over the per-stream rate, dropped "
                "unread) or the figure that was implausible (captured, sent, bytes, skips, "
                "latencies).",
                {"reason": tuple(rejection.value for rejection in Rejection)},
            )
        )
        self.active_streams = Gauge(
            "framewire_active_streams", "Streams open now.", registry=registry
        )
        self.open_calls = Gauge(
            "framewire_open_calls",
            "StreamFrames calls open now, configured or still waiting for their StreamConfig "
            "(what --max-streams limits).",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "framewire_queue_depth",
            "Frames waiting in stream slots for a batch.",
            registry=registry,
        )
        self.batches_in_flight = Gauge(
            "framewire_batches_in_flight",
            "Batches sent to a model and not yet answered.",
            registry=registry,
        )
        self.targets_usable = Gauge(
            "framewire_inference_targets_usable",
            "Inference targets that are reachable and serving.",
            registry=registry,
        )
        self.streams_rejected = Counter(
            "framewire_streams_rejected",
            "Streams refused or ended by the server, by status code.",
            ["code"],
            registry=registry,
        )
        self.target_batches = Counter(
            "framewire_target_batches",
            "Batches sent to each inference target, by outcome.",
            ["target", "outcome"],
            registry=registry,
        )
        self.flow_hints = Counter(
            "framewire_flow_hints", "FlowHints sent to agents.", registry=registry
        )

    def follow(
        self,
        *,
        active_streams: Callable[[], float],
        open_calls: Callable[[], float],
        queue_depth: Callable[[], float],
        batches_in_flight: Callable[[], float],
        targets_usable: Callable[[], float],
    ) -> None:
        """Reads the gauges from the live state when scraped, costing nothing per frame."""
        self.active_streams.set_function(active_streams)
        self.open_calls.set_function(open_calls)
        self.queue_depth.set_function(queue_depth)
        self.batches_in_flight.set_function(batches_in_flight)
        self.targets_usable.set_function(targets_usable)

    def count_outcome(self, outcome: Outcome) -> None:
        """Counts how one received frame's life at ingest ended."""
        if outcome is Outcome.PROCESSED:
            self.frames_processed.inc()
        elif outcome is Outcome.FAILED:
            self.frames_failed.inc()
        else:
            self.skipped_by_reason[outcome.value].inc()

    def count_report(self, report: ingest_service_pb2.AgentReport) -> None:
        """Adds a validated AgentReport's figures to the fleet-wide edge metrics."""
        for latency in report.end_to_end_latencies:
            self.end_to_end_latency.observe(seconds(latency))
        for skip in report.skips:
            self.edge_skipped_by_reason[SKIP_REASONS[skip.reason]].inc(skip.count)
        self.edge_frames_captured.inc(report.frames_captured)
        self.edge_frames_sent.inc(report.frames_sent)
        self.edge_bytes_sent.inc(report.bytes_sent)
