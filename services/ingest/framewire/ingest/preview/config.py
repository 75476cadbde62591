"""Every default and limit of the live preview page, in one place."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from framewire.common.settings import option, parse_duration

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class PreviewConfig:
    """The live preview: a small web page showing the streams and their detections."""

    preview_port: int = option(
        -1,
        "port of the live preview web page (streams, figures, frames with boxes); "
        "0 picks a free port, -1 turns it off",
    )
    preview_host: str = option(
        "127.0.0.1",
        "address the preview listens on; anything but loopback requires the gRPC port's "
        "tokens (--auth-tokens) or TLS (--tls-cert), or --preview-insecure",
    )
    preview_insecure: bool = option(
        False,
        "allow a non-loopback --preview-host on a server without tokens or TLS (anyone who "
        "reaches the port sees the cameras)",
    )
    preview_max_viewers: int = option(
        8, "frame streams the preview serves at once; more are answered 503"
    )
    preview_max_fps: float = option(
        15.0, "most frames per second sent to one viewer; a slower viewer gets fewer"
    )
    preview_latency_samples: int = option(
        500, "end-to-end latency samples kept per stream for the page's p50 and p95"
    )
    preview_rate_window: float = option(
        5.0, "window over which the page's frames-per-second figures are measured",
        parse=parse_duration,
    )  # fmt: skip
    preview_keepalive: float = option(
        15.0,
        "a viewer with no new frame for this long gets a keep-alive (finds dead connections)",
        parse=parse_duration,
    )
    preview_stall_timeout: float = option(
        30.0,
        "a viewer that accepts no data for this long is disconnected",
        parse=parse_duration,
    )
    preview_request_timeout: float = option(
        5.0, "time a client has to send its request headers", parse=parse_duration
    )
    preview_max_request_bytes: int = option(
        8192, "largest request line plus headers accepted, in bytes"
    )

    def __post_init__(self) -> None:
        if not -1 <= self.preview_port <= 65535:
            raise ValueError(f"preview_port must be within -1..65535, not {self.preview_port}")
        positive = {
            "preview_max_viewers": self.preview_max_viewers,
            "preview_max_fps": self.preview_max_fps,
            "preview_latency_samples": self.preview_latency_samples,
            "preview_rate_window": self.preview_rate_window,
            "preview_keepalive": self.preview_keepalive,
            "preview_stall_timeout": self.preview_stall_timeout,
            "preview_request_timeout": self.preview_request_timeout,
            "preview_max_request_bytes": self.preview_max_request_bytes,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")

    @property
    def enabled(self) -> bool:
        return self.preview_port >= 0
