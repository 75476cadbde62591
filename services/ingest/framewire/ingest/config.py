"""Every default and limit of the ingest service, in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from framewire.common.contract import DEFAULT_MAX_IN_FLIGHT, MAX_FRAME_PIXELS, MAX_REPORT_SAMPLES
from framewire.common.serving import ListenConfig
from framewire.common.settings import option, parse_duration
from framewire.common.transport import MIB, TransportConfig

_TARGET = re.compile(r"^[A-Za-z0-9._:\-\[\]/]+$")


@dataclass(frozen=True)
class IngestConfig:
    """How ingest keeps streams real-time and batches them for the model."""

    max_streams: int = option(256, "streams served at once; more are refused (RESOURCE_EXHAUSTED)")
    max_batch_size: int = option(
        8, "largest batch sent to a model (capped at the model's own maximum)"
    )
    max_batch_delay: float = option(
        0.004,
        "longest a frame waits for others to fill its batch (250us..): trades latency for batching",
        parse=parse_duration,
    )
    batches_in_flight: int = option(
        2,
        "batches outstanding per inference target; 2 overlaps decoding one batch with "
        "running the model on another",
    )
    max_frame_age: float = option(
        0.5,
        "a frame that waited longer than this at ingest is skipped as stale",
        parse=parse_duration,
    )
    max_frame_bytes: int = option(4 * MIB, "largest encoded frame accepted, in bytes")
    max_frame_pixels: int = option(
        MAX_FRAME_PIXELS, "largest width x height accepted, read from the JPEG header"
    )
    max_frame_pixels_per_byte: int = option(
        1000,
        "a JPEG whose header declares more pixels per byte of data than this fails as "
        "truncated or crafted (real JPEGs: at most about 256, quality 1 of a flat frame)",
    )
    max_capture_time_skew: float = option(
        0.0,
        "refuse frames whose capture time is further than this from the server's clock "
        "(needs synchronized device clocks); 0 turns the check off",
        parse=parse_duration,
    )
    max_in_flight_cap: int = option(
        8, "the most unanswered frames a stream may ask for (StreamConfig.max_in_flight)"
    )
    default_max_in_flight: int = option(
        DEFAULT_MAX_IN_FLIGHT, "unanswered frames granted when a stream does not ask for a number"
    )
    max_report_samples: int = option(
        MAX_REPORT_SAMPLES, "most end-to-end latency samples in one AgentReport"
    )
    report_interval: float = option(
        1.0, "how often agents are asked to send an AgentReport", parse=parse_duration
    )
    config_timeout: float = option(
        10.0, "how long a new stream may take to send its StreamConfig", parse=parse_duration
    )
    inference_timeout: float = option(
        10.0, "deadline for one batch at an inference target", parse=parse_duration
    )
    hint_interval: float = option(
        2.0,
        "how often a stream's load is reviewed for a FlowHint; 0 turns hints off",
        parse=parse_duration,
    )

    def __post_init__(self) -> None:
        positive = {
            "max_streams": self.max_streams,
            "max_batch_size": self.max_batch_size,
            "batches_in_flight": self.batches_in_flight,
            "max_frame_bytes": self.max_frame_bytes,
            "max_frame_pixels": self.max_frame_pixels,
            "max_frame_pixels_per_byte": self.max_frame_pixels_per_byte,
            "max_in_flight_cap": self.max_in_flight_cap,
            "default_max_in_flight": self.default_max_in_flight,
            "max_report_samples": self.max_report_samples,
            "max_frame_age": self.max_frame_age,
            "report_interval": self.report_interval,
            "config_timeout": self.config_timeout,
            "inference_timeout": self.inference_timeout,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        if self.max_batch_delay < 0 or self.hint_interval < 0 or self.max_capture_time_skew < 0:
            raise ValueError(
                "max_batch_delay, hint_interval and max_capture_time_skew must not be negative"
            )
        if self.default_max_in_flight > self.max_in_flight_cap:
            raise ValueError("default_max_in_flight must not exceed max_in_flight_cap")


def _parse_targets(text: str) -> tuple[str, ...]:
    targets = tuple(part.strip() for part in text.split(",") if part.strip())
    for target in targets:
        if not _TARGET.match(target):
            raise ValueError(f"{target!r} is not a gRPC target: use host:port or dns:///name:port")
    return targets


@dataclass(frozen=True)
class TargetsConfig:
    """Where the inference replicas are."""

    inference: tuple[str, ...] = option(
        (),
        "inference targets, comma-separated: host:port,host:port or dns:///name:port "
        "(a headless Kubernetes Service; calls are spread over every address)",
        parse=_parse_targets,
    )

    def __post_init__(self) -> None:
        if not self.inference:
            raise ValueError(
                "--inference is required: give at least one inference target, "
                "for example --inference 127.0.0.1:50052 (or use 'framewire serve')"
            )


@dataclass(frozen=True)
class IngestServerConfig:
    """Everything `framewire ingest` takes."""

    targets: TargetsConfig
    ingest: IngestConfig = IngestConfig()
    listen: ListenConfig = ListenConfig()
    transport: TransportConfig = TransportConfig()
