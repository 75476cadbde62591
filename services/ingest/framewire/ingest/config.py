"""Every default and limit of the ingest service, in one place."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from framewire.common.contract import DEFAULT_MAX_IN_FLIGHT, MAX_FRAME_PIXELS, MAX_REPORT_SAMPLES
from framewire.common.serving import ListenConfig, SecurityConfig
from framewire.common.settings import option, parse_duration
from framewire.common.tls import ClientTls
from framewire.common.transport import MIB, TransportConfig
from framewire.ingest.preview.config import PreviewConfig
from framewire.ingest.reports import ReportLimits
from framewire.ingest.tracking import TrackingConfig

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
        4,
        "batches outstanding per inference target, at most: all are used where batching "
        "saves little (CPU models: small runs at once keep every core busy; `serve` runs one "
        "per core at most), 2 where it pays (GPUs: one batch runs while the next is prepared)",
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
    max_unread_results: int = option(
        600,
        "FrameResults a stream may leave unacknowledged (AgentReport.results_received); past "
        "it, once the oldest is --max-unread-age old, the stream ends (RESOURCE_EXHAUSTED), "
        "so a client that stops reading stops using the model",
    )
    max_unread_age: float = option(
        5.0,
        "how long the oldest of more than --max-unread-results unacknowledged results may "
        "wait before the stream ends",
        parse=parse_duration,
    )
    report_rate: float = option(
        4.0,
        "most AgentReports per second a stream may send (bursts of twice that); more are "
        "dropped unread and counted",
    )
    max_capture_fps: float = option(
        240.0,
        "most frames per second a device can plausibly capture; AgentReports claiming more "
        "are rejected and counted",
    )
    max_report_latency: float = option(
        600.0,
        "largest plausible end-to-end latency in an AgentReport; a report with a larger one "
        "is rejected and counted",
        parse=parse_duration,
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
    tracking: TrackingConfig = TrackingConfig()
    preview: PreviewConfig = PreviewConfig()

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
            "report_rate": self.report_rate,
            "max_unread_results": self.max_unread_results,
            "max_unread_age": self.max_unread_age,
            "max_capture_fps": self.max_capture_fps,
            "max_report_latency": self.max_report_latency,
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

    def report_limits(self) -> ReportLimits:
        """The bounds AgentReports are held to (see framewire.ingest.reports)."""
        return ReportLimits(
            reports_per_second=self.report_rate,
            burst=max(1, math.ceil(2 * self.report_rate)),
            max_capture_fps=self.max_capture_fps,
            max_latency=self.max_report_latency,
            # A window in flight, plus what a device can capture in two report
            # intervals: a report may carry figures from before a reconnect.
            carryover_frames=self.max_in_flight_cap
            + math.ceil(2 * self.max_capture_fps * self.report_interval),
            max_frame_bytes=self.max_frame_bytes,
        )


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
    inference_tls: bool = option(
        False, "reach the inference targets over TLS (system CA roots unless --inference-tls-ca)"
    )
    inference_tls_ca: Path | None = option(
        None, "PEM CA that signed the inference servers' certificates (implies TLS)", metavar="FILE"
    )
    inference_tls_cert: Path | None = option(
        None, "PEM client certificate ingest presents to inference (mTLS)", metavar="FILE"
    )
    inference_tls_key: Path | None = option(
        None, "PEM private key of --inference-tls-cert", metavar="FILE"
    )
    inference_tls_server_name: str | None = option(
        None,
        "name checked against the inference servers' certificates instead of the target's host",
        metavar="NAME",
    )
    inference_token_file: Path | None = option(
        None,
        "file holding the token ingest sends to inference (read again when it changes)",
        metavar="FILE",
    )

    def __post_init__(self) -> None:
        if not self.inference:
            raise ValueError(
                "--inference is required: give at least one inference target, "
                "for example --inference 127.0.0.1:50052 (or use 'framewire serve')"
            )
        if (self.inference_tls_cert is None) != (self.inference_tls_key is None):
            raise ValueError("--inference-tls-cert and --inference-tls-key go together")

    def client_tls(self) -> ClientTls | None:
        """TLS towards the targets, or None for plaintext."""
        tls = self.inference_tls or self.inference_tls_ca is not None
        if not tls and self.inference_tls_cert is None:
            return None
        return ClientTls(
            ca=self.inference_tls_ca,
            cert=self.inference_tls_cert,
            key=self.inference_tls_key,
            server_name=self.inference_tls_server_name,
        )


MAX_WORKERS = 64


@dataclass(frozen=True)
class WorkersConfig:
    """How many processes serve the port."""

    workers: int = option(
        1,
        "ingest processes serving the gRPC port together (SO_REUSEPORT), one core each; "
        "1 serves from this process",
    )

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be within 1..{MAX_WORKERS}, not {self.workers}")


@dataclass(frozen=True)
class IngestServerConfig:
    """Everything `framewire ingest` takes."""

    targets: TargetsConfig
    ingest: IngestConfig = IngestConfig()
    listen: ListenConfig = ListenConfig()
    transport: TransportConfig = TransportConfig()
    security: SecurityConfig = SecurityConfig()
    workers: WorkersConfig = WorkersConfig()
