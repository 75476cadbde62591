"""Checks on what agents send, each failing with the status a client can act on.

Two kinds of problems. A broken protocol rule or a frame over a limit is the
client's bug: the stream ends with INVALID_ARGUMENT or RESOURCE_EXHAUSTED. A
frame whose bytes are not a usable image (a camera glitch) fails alone: it is
answered with a per-frame error and the stream goes on.

A missing or impossible capture time is a protocol break (every agent sets it
from its clock; without it a client's end-to-end latency comes out decades
off). Image bytes that cannot be what their header claims -- far fewer bytes
than any encoder writes for that many pixels -- are unusable and fail alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import grpc

from framewire.common import errors
from framewire.common.contract import SKIP_REASONS, STREAM_ID_PATTERN, STREAM_ID_RULE
from framewire.common.errors import FramewireError
from framewire.common.images import ImageFormatError, read_jpeg_header
from framewire.ingest.config import IngestConfig
from framewire.ingest.streams import StreamSettings
from framewire.ingest.targets import ModelDescription
from framewire.v1 import common_pb2, ingest_service_pb2

MAX_CLASS_FILTER = 1000
MAX_CLIENT_VERSION = 256
MAX_KEPT_REGIONS = 64
_ENCODINGS = frozenset(common_pb2.Encoding.values())
# google.protobuf.Timestamp's own range ends at 9999-12-31T23:59:59Z.
_LAST_TIMESTAMP_SECOND = 253_402_300_799
_NANOS_PER_SECOND = 1_000_000_000


def stream_settings(
    config: ingest_service_pb2.StreamConfig, model: ModelDescription, limits: IngestConfig
) -> StreamSettings:
    """Validates a StreamConfig and returns the settings in force."""
    if not STREAM_ID_PATTERN.match(config.stream_id):
        raise errors.invalid_argument(
            f"stream_id {config.stream_id!r} is not valid: use {STREAM_ID_RULE}"
        )
    if config.model and config.model not in (model.model_id, model.name):
        raise FramewireError(
            grpc.StatusCode.NOT_FOUND,
            f"model {config.model!r} is not served here; this server runs {model.model_id!r}",
        )
    threshold = model.default_score_threshold
    if config.HasField("score_threshold"):
        threshold = config.score_threshold
        if not (0.0 <= threshold <= 1.0) or math.isnan(threshold):
            raise errors.invalid_argument(
                f"score_threshold must be within [0, 1], not {config.score_threshold}"
            )
    if len(config.class_filter) > MAX_CLASS_FILTER:
        raise errors.invalid_argument(f"class_filter has more than {MAX_CLASS_FILTER} labels")
    unknown = sorted(set(config.class_filter) - set(model.labels))
    if unknown:
        raise errors.invalid_argument(
            f"class_filter names labels the model does not have: {', '.join(unknown)}"
        )
    if len(config.client_version) > MAX_CLIENT_VERSION:
        raise errors.invalid_argument(
            f"client_version is longer than {MAX_CLIENT_VERSION} characters"
        )
    if not config.client_version.isprintable():
        raise errors.invalid_argument(
            "client_version contains control characters (such as a newline); "
            "use printable text, for example 'my-agent/1.2'"
        )
    max_in_flight = config.max_in_flight or limits.default_max_in_flight
    return StreamSettings(
        stream_id=config.stream_id,
        score_threshold=threshold,
        class_filter=tuple(dict.fromkeys(config.class_filter)),
        max_in_flight=min(max_in_flight, limits.max_in_flight_cap),
        client_version=config.client_version,
        track=config.track or limits.tracking.track,
    )


def check_frame(
    frame: ingest_service_pb2.Frame, data: bytes, last_seq: int, limits: IngestConfig
) -> None:
    """Raises the error that ends the stream when a frame breaks a protocol rule or limit.

    ``data`` is ``frame.data``, read once by the caller: every read of a bytes
    field copies it (a 300 kB frame costs about 5 µs a read). A width or height
    of 0 means "read it from the JPEG header" (see check_image).
    """
    if frame.seq <= last_seq:
        raise errors.invalid_argument(
            f"frame seq {frame.seq} is not greater than the previous seq {last_seq}: "
            "seq must increase strictly within a stream"
        )
    if frame.encoding == common_pb2.ENCODING_UNSPECIFIED:
        raise errors.invalid_argument(
            f"frame {frame.seq} has encoding ENCODING_UNSPECIFIED: set it to ENCODING_JPEG"
        )
    if frame.encoding not in _ENCODINGS:
        raise errors.invalid_argument(
            f"frame {frame.seq} has unsupported encoding {frame.encoding}: "
            "this server accepts ENCODING_JPEG"
        )
    if not data:
        raise errors.invalid_argument(f"frame {frame.seq} has no data")
    if len(data) > limits.max_frame_bytes:
        raise errors.resource_exhausted(
            f"frame {frame.seq} is {len(data)} bytes, over the limit of "
            f"{limits.max_frame_bytes}: lower the JPEG quality or the resolution"
        )
    check_capture_time(frame, limits)
    check_regions(frame.seq, frame.kept_regions)


def check_capture_time(frame: ingest_service_pb2.Frame, limits: IngestConfig) -> None:
    """The capture time must be set and a valid Timestamp after 1970.

    With ``max_capture_time_skew`` set, it must also be that near the server's clock.
    """
    if not frame.HasField("capture_time"):
        raise errors.invalid_argument(
            f"frame {frame.seq} has no capture_time: set it to when the frame was captured, "
            "on the device's clock (it is echoed in the result for end-to-end latency)"
        )
    seconds, nanos = frame.capture_time.seconds, frame.capture_time.nanos
    if not 0 <= nanos < _NANOS_PER_SECOND:
        raise errors.invalid_argument(
            f"frame {frame.seq} has capture_time nanos {nanos}: a Timestamp's nanos are "
            "within [0, 999999999]"
        )
    if (seconds, nanos) <= (0, 0) or seconds > _LAST_TIMESTAMP_SECOND:
        raise errors.invalid_argument(
            f"frame {frame.seq} has capture_time {seconds}s since 1970: it must be after "
            "1970-01-01T00:00:00Z and before the year 10000 (an empty Timestamp is not a time)"
        )
    skew = limits.max_capture_time_skew
    if skew > 0:
        off = seconds + nanos / _NANOS_PER_SECOND - time.time()
        if abs(off) > skew:
            raise errors.invalid_argument(
                f"frame {frame.seq} has a capture_time {off:+.1f} s from the server's clock, "
                f"more than the {skew:g} s allowed: synchronize the device's clock"
            )


def check_regions(seq: int, regions: Sequence[common_pb2.BoundingBox]) -> None:
    """Kept regions must be normalized boxes with min <= max."""
    if len(regions) > MAX_KEPT_REGIONS:
        raise errors.invalid_argument(
            f"frame {seq} lists {len(regions)} kept regions; at most {MAX_KEPT_REGIONS}"
        )
    for box in regions:
        values = (box.x_min, box.y_min, box.x_max, box.y_max)
        if not all(0.0 <= value <= 1.0 for value in values) or (
            box.x_min > box.x_max or box.y_min > box.y_max
        ):
            raise errors.invalid_argument(
                f"frame {seq} has a kept region outside [0, 1] or with min > max: {values}"
            )


def check_image(
    frame: ingest_service_pb2.Frame, data: bytes, limits: IngestConfig
) -> FramewireError | None:
    """Reads the JPEG header of ``data`` (``frame.data``, see check_frame); returns the
    per-frame error when the image is unusable.

    A declared width or height of 0 means "read it from the header": it is
    filled in from the header here, so everything after sees the real size.
    """
    try:
        header = read_jpeg_header(data)
    except ImageFormatError as error:
        return errors.invalid_argument(f"frame {frame.seq}: {error}")
    if (frame.width and frame.width != header.width) or (
        frame.height and frame.height != header.height
    ):
        declared = f"{frame.width or '?'}x{frame.height or '?'}"
        return errors.invalid_argument(
            f"frame {frame.seq} declares {declared} but its JPEG header "
            f"says {header.width}x{header.height}"
        )
    frame.width, frame.height = header.width, header.height
    if header.pixels > limits.max_frame_pixels:
        return errors.resource_exhausted(
            f"frame {frame.seq} is {header.width}x{header.height} = {header.pixels} pixels, "
            f"over the limit of {limits.max_frame_pixels}"
        )
    if not header.complete:
        return errors.invalid_argument(f"frame {frame.seq}: the JPEG data is truncated")
    if header.pixels > len(data) * limits.max_frame_pixels_per_byte:
        return errors.invalid_argument(
            f"frame {frame.seq}: {len(data)} bytes cannot hold a "
            f"{header.width}x{header.height} JPEG (more than "
            f"{limits.max_frame_pixels_per_byte} pixels per byte): the data is truncated or crafted"
        )
    return None


def check_report(report: ingest_service_pb2.AgentReport, limits: IngestConfig) -> None:
    """Raises when an AgentReport breaks the documented limits."""
    if len(report.end_to_end_latencies) > limits.max_report_samples:
        raise errors.invalid_argument(
            f"AgentReport carries {len(report.end_to_end_latencies)} latency samples; "
            f"at most {limits.max_report_samples}"
        )
    for latency in report.end_to_end_latencies:
        if latency.seconds < 0 or latency.nanos < 0:
            raise errors.invalid_argument("AgentReport has a negative latency")
    for skip in report.skips:
        if skip.reason not in SKIP_REASONS:
            raise errors.invalid_argument(
                f"AgentReport counts skips with reason {skip.reason}, which is not a known "
                "SkipReason"
            )
