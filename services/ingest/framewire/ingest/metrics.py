"""The ingest service's Prometheus metrics.

Names follow Prometheus conventions (``framewire_`` prefix, base units,
``_total`` counters). Labels take only a fixed set of values (stage names,
skip reasons, configured inference targets); nothing per stream or per frame.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from framewire.common.metrics import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS

STAGES = ("queue", "decode", "preprocess", "inference", "postprocess", "total")
INGEST_SKIP_REASONS = ("superseded", "stale", "abandoned")
EDGE_SKIP_REASONS = ("superseded", "stale", "disconnected")


class IngestMetrics:
    """Every metric ingest exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.frames_received = Counter(
            "framewire_frames_received",
            "Frames received from agents.",
            registry=registry,
        )
        self.frames_processed = Counter(
            "framewire_frames_processed",
            "Frames answered with detections.",
            registry=registry,
        )
        self.frames_failed = Counter(
            "framewire_frames_failed",
            "Frames answered with an error (bad image, model unavailable).",
            registry=registry,
        )
        self.frames_skipped = Counter(
            "framewire_frames_skipped",
            "Frames received and never processed, by reason: superseded and stale (dropped "
            "to stay real-time), abandoned (the stream ended before a batch took the frame).",
            ["reason"],
            registry=registry,
        )
        self.frame_bytes = Counter(
            "framewire_received_bytes",
            "Encoded image bytes received.",
            registry=registry,
        )
        self.stage_latency = Histogram(
            "framewire_stage_latency_seconds",
            "Time a processed frame spent in each server stage "
            "(total: receipt at ingest to result ready).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end_latency = Histogram(
            "framewire_end_to_end_latency_seconds",
            "Capture to result on the agent's clock, as reported by agents.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "framewire_batch_size",
            "Frames per batch sent to a model.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.active_streams = Gauge(
            "framewire_active_streams", "Streams open now.", registry=registry
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
        self.targets_usable = Gauge(
            "framewire_inference_targets_usable",
            "Inference targets that are reachable and serving.",
            registry=registry,
        )
        self.edge_frames_captured = Counter(
            "framewire_edge_frames_captured",
            "Frames captured by agents, as reported by them.",
            registry=registry,
        )
        self.edge_frames_sent = Counter(
            "framewire_edge_frames_sent",
            "Frames sent by agents, as reported by them.",
            registry=registry,
        )
        self.edge_bytes_sent = Counter(
            "framewire_edge_sent_bytes",
            "Encoded image bytes sent by agents, as reported by them.",
            registry=registry,
        )
        self.edge_frames_skipped = Counter(
            "framewire_edge_frames_skipped",
            "Frames agents dropped before sending, by reason, as reported by them.",
            ["reason"],
            registry=registry,
        )
        self.flow_hints = Counter(
            "framewire_flow_hints",
            "FlowHints sent to agents.",
            registry=registry,
        )
        # Expose every label value from the start so rates and sums work at once.
        for reason in INGEST_SKIP_REASONS:
            self.frames_skipped.labels(reason=reason)
        for reason in EDGE_SKIP_REASONS:
            self.edge_frames_skipped.labels(reason=reason)
        for stage in STAGES:
            self.stage_latency.labels(stage=stage)
