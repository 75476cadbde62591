"""Every flag and default of the edge agent, in one place."""

from __future__ import annotations

import dataclasses
import math
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framewire.common.contract import DEFAULT_MAX_IN_FLIGHT, STREAM_ID_PATTERN, STREAM_ID_RULE
from framewire.common.settings import option, parse_duration
from framewire.common.tls import ClientSecurityConfig
from framewire.common.transport import TransportConfig
from framewire.edge_agent.compression import CompressionConfig

_SERVER = re.compile(r"^(dns:///)?[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")
OUTPUTS = ("auto", "jsonl", "none")


def _default_stream_id() -> str:
    host = re.sub(r"[^A-Za-z0-9._:\-]", "-", socket.gethostname())[:100] or "edge"
    return f"{host}-cam"


@dataclass(frozen=True)
class StreamOptions:
    """What the agent asks of the server and how it talks to it."""

    server: str = option(
        "127.0.0.1:50051", "ingest server as host:port (or dns:///name:port)", metavar="HOST:PORT"
    )
    stream_id: str = option(
        _default_stream_id(), "name of this device's stream (letters, digits, '._:-')"
    )
    model: str = option("", "model the stream asks for; empty: whatever the server runs")
    score_threshold: float | None = option(
        None,
        "drop detections scoring below this, 0..1; none: the server's default",
    )
    classes: tuple[str, ...] = option(
        (),
        "only return these labels, comma-separated (e.g. person,car); empty: all",
    )
    max_in_flight: int = option(
        DEFAULT_MAX_IN_FLIGHT,
        "frames sent and not yet answered at most; a newer capture replaces a waiting one",
    )
    fixed_window: bool = option(
        False,
        "keep --max-in-flight frames unanswered whatever the link, each sent at once; by "
        "default the window adapts (1 while the server is the bottleneck, more while the round "
        "trip dominates) and the next frame is held back while frames queue at the server",
    )
    follow_hints: bool = option(
        False, "follow the server's FlowHints (frame rate, scale, JPEG quality)"
    )
    track: bool = option(
        False,
        "ask the server to track objects: each detection gets a track_id, the same for the "
        "same object across frames (in --output jsonl, --on-detect and --on-enter)",
    )
    connect_timeout: float = option(
        30.0,
        "give up when no connection could be made for this long (also after a lost one)",
        parse=parse_duration,
    )
    report_interval: float = option(
        1.0,
        "how often to send an AgentReport (the server may ask for another)",
        parse=parse_duration,
    )


@dataclass(frozen=True)
class CaptureOptions:
    """Where frames come from and how many."""

    source: str = option(
        "0",
        "camera index, video file, directory of images, rtsp://, http:// URL, "
        "or a GStreamer pipeline (with '!')",
    )
    fps: float | None = option(
        None,
        "frames per second to capture; none: a file's own rate, a camera's full rate",
    )
    loop: bool = option(False, "start a video file or image folder again at its end")
    frames: int | None = option(None, "stop after capturing this many frames")
    duration: float | None = option(
        None, "stop after this long (e.g. 30s, 5m)", parse=parse_duration
    )


@dataclass(frozen=True)
class OutputOptions:
    """What the agent shows and does with results."""

    output: str = option(
        "auto",
        "auto: a live status line when stdout is a terminal; jsonl: one JSON line per "
        "answer on stdout (schema in README); none: only the summary",
        choices=OUTPUTS,
    )
    on_detect: str | None = option(
        None,
        "shell command to run for each result with a matching detection; "
        "gets the result as JSON on stdin; never blocks capture",
        metavar="CMD",
    )
    on_detect_classes: tuple[str, ...] = option(
        (), "labels that trigger --on-detect, comma-separated; empty: any"
    )
    on_enter: str | None = option(
        None,
        "shell command to run when an object is seen for the first time (a new track id, "
        "e.g. a person entered); gets the result as JSON on stdin with the newcomers in "
        "'entered'; needs track ids (--track, or a server tracking every stream)",
        metavar="CMD",
    )
    on_enter_classes: tuple[str, ...] = option(
        ("person",), "labels whose new tracks trigger --on-enter, comma-separated; empty: any"
    )
    record: Path | None = option(
        None,
        "write the frames as sent, with boxes and labels drawn, to this video (.mp4 or .avi)",
        metavar="PATH",
    )
    log_level: str = option("warning", "log level", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class AgentConfig:
    """Everything `edge-agent` takes."""

    stream: StreamOptions = StreamOptions()
    capture: CaptureOptions = CaptureOptions()
    compression: CompressionConfig = CompressionConfig()
    output: OutputOptions = OutputOptions()
    transport: TransportConfig = TransportConfig()
    security: ClientSecurityConfig = ClientSecurityConfig()

    def __post_init__(self) -> None:
        stream, capture = self.stream, self.capture
        if not _SERVER.match(stream.server):
            raise ValueError(f"--server {stream.server!r} must look like host:port")
        if not STREAM_ID_PATTERN.match(stream.stream_id):
            raise ValueError(f"--stream-id {stream.stream_id!r}: use {STREAM_ID_RULE}")
        if stream.score_threshold is not None and not 0.0 <= stream.score_threshold <= 1.0:
            raise ValueError("--score-threshold must be within 0..1")
        if not 1 <= stream.max_in_flight <= 64:
            raise ValueError("--max-in-flight must be within 1..64")
        if stream.connect_timeout <= 0 or stream.report_interval <= 0:
            raise ValueError("--connect-timeout and --report-interval must be positive")
        if capture.fps is not None and not (capture.fps > 0 and math.isfinite(capture.fps)):
            raise ValueError("--fps must be a positive number")
        if capture.frames is not None and capture.frames <= 0:
            raise ValueError("--frames must be positive")
        if capture.duration is not None and capture.duration <= 0:
            raise ValueError("--duration must be positive")


def with_options(config: AgentConfig, options: dict[str, Any]) -> AgentConfig:
    """A copy of ``config`` with options given by field name (``server=``, ``blackout=``...)."""
    if not options:
        return config
    sections = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    remaining = dict(options)
    for name, section in sections.items():
        names = {field.name for field in dataclasses.fields(section)}
        mine = {key: remaining.pop(key) for key in list(remaining) if key in names}
        if mine:
            sections[name] = dataclasses.replace(section, **mine)
    if remaining:
        raise TypeError(f"unknown agent option(s): {', '.join(sorted(remaining))}")
    return AgentConfig(**sections)
