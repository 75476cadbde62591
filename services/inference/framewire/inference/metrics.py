"""The inference engine's Prometheus metrics.

Every name starts with ``framewire_inference_`` (plus ``framewire_model_info``)
because in ``framewire serve`` the ingest service registers its own metrics in
the same registry. Label values are bounded: outcomes, stages and status-code
names are fixed lists.
"""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from framewire.common.contract import MODEL_STAGES
from framewire.common.metrics import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS

OUTCOMES = ("processed", "failed")


class InferenceMetrics:
    """Counters and histograms for one engine, registered on one registry."""

    def __init__(
        self, registry: CollectorRegistry, *, model_id: str, backend: str, head: str
    ) -> None:
        self.images = Counter(
            "framewire_inference_images",
            "Images answered by Detect: processed (detections returned) or failed (an error).",
            ["outcome"],
            registry=registry,
        )
        self.image_errors = Counter(
            "framewire_inference_image_errors",
            "Images answered with an error, by gRPC status code.",
            ["code"],
            registry=registry,
        )
        self.rejected_batches = Counter(
            "framewire_inference_rejected_batches",
            "Detect calls refused as a whole (empty batch or more than max_batch images).",
            registry=registry,
        )
        self.batch_size = Histogram(
            "framewire_inference_batch_size",
            "Images per accepted model batch: one Detect call, or several run together.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "framewire_inference_stage_seconds",
            "Time per stage in seconds: decode, preprocess and postprocess per image; "
            "inference per model batch.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "framewire_inference_batch_seconds",
            "Time to answer one accepted model batch, in seconds.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.merged_calls = Counter(
            "framewire_inference_merged_calls",
            "Detect calls answered by a model batch shared with other calls (--merge-calls).",
            registry=registry,
        )
        self.calls_waiting = Gauge(
            "framewire_inference_calls_waiting",
            "Detect calls waiting for a batch slot (beyond --concurrent-batches).",
            registry=registry,
        )
        self.model = Info(
            "framewire_model",
            "The model this server runs (value is always 1).",
            registry=registry,
        )
        self.model.info({"model_id": model_id, "backend": backend, "head": head})
        # Children exist from the start so dashboards see zeros, not gaps.
        for outcome in OUTCOMES:
            self.images.labels(outcome=outcome)
        # The contract's stages only: a name it lacks fails here instead of adding a label.
        self._stages = {stage: self.stage_seconds.labels(stage=stage) for stage in MODEL_STAGES}

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Observes one of the contract's model stages (``MODEL_STAGES``)."""
        self._stages[stage].observe(seconds)

    def count_images(self, processed: int, errors: list[grpc.StatusCode]) -> None:
        if processed:
            self.images.labels(outcome="processed").inc(processed)
        if errors:
            self.images.labels(outcome="failed").inc(len(errors))
        for code in errors:
            self.image_errors.labels(code=code.name).inc()
