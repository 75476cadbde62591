"""What agents send is checked with the status a client can act on."""

from __future__ import annotations

import time

import cv2
import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from framewire.common.errors import FramewireError
from framewire.common.protoutil import timestamp_from_ns
from framewire.ingest.config import IngestConfig
from framewire.ingest.targets import ModelDescription
from framewire.ingest.validation import (
    check_frame,
    check_image,
    check_report,
    stream_settings,
)
from framewire.v1 import common_pb2, ingest_service_pb2

MODEL = ModelDescription(
    model_id="ssd_mobilenet_v2_coco@0123abcd",
    labels=("person", "bicycle", "car"),
    default_score_threshold=0.4,
    max_batch_size=8,
)
LIMITS = IngestConfig(max_frame_bytes=100_000, max_frame_pixels=640 * 480)


def jpeg(width: int, height: int) -> bytes:
    pixels = np.full((height, width, 3), 127, dtype=np.uint8)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def frame(seq: int = 1, **fields: object) -> ingest_service_pb2.Frame:
    values: dict[str, object] = {
        "seq": seq,
        "capture_time": timestamp_from_ns(time.time_ns()),
        "encoding": common_pb2.ENCODING_JPEG,
        "width": 64,
        "height": 48,
        "data": jpeg(64, 48),
    }
    values.update(fields)
    return ingest_service_pb2.Frame(**values)  # type: ignore[arg-type]


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(FramewireError) as raised:
        call()  # type: ignore[operator]
    return raised.value.code, raised.value.message


def test_defaults_and_caps() -> None:
    settings = stream_settings(ingest_service_pb2.StreamConfig(stream_id="cam-1"), MODEL, LIMITS)
    assert settings.score_threshold == 0.4
    assert settings.max_in_flight == 2
    capped = stream_settings(
        ingest_service_pb2.StreamConfig(stream_id="cam-1", max_in_flight=50), MODEL, LIMITS
    )
    assert capped.max_in_flight == LIMITS.max_in_flight_cap


def test_threshold_zero_is_kept_not_defaulted() -> None:
    config = ingest_service_pb2.StreamConfig(stream_id="cam", score_threshold=0.0)
    assert stream_settings(config, MODEL, LIMITS).score_threshold == 0.0


def test_model_by_id_or_name() -> None:
    for name in ("", "ssd_mobilenet_v2_coco", MODEL.model_id):
        stream_settings(ingest_service_pb2.StreamConfig(stream_id="c", model=name), MODEL, LIMITS)


@pytest.mark.parametrize(
    ("config", "code", "words"),
    [
        ({"stream_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, "stream_id"),
        ({"stream_id": "has space"}, grpc.StatusCode.INVALID_ARGUMENT, "stream_id"),
        ({"stream_id": "x" * 129}, grpc.StatusCode.INVALID_ARGUMENT, "stream_id"),
        ({"stream_id": "c", "model": "yolo"}, grpc.StatusCode.NOT_FOUND, "not served here"),
        ({"stream_id": "c", "score_threshold": 1.5}, grpc.StatusCode.INVALID_ARGUMENT, "[0, 1]"),
        (
            {"stream_id": "c", "score_threshold": float("nan")},
            grpc.StatusCode.INVALID_ARGUMENT,
            "[0, 1]",
        ),
        (
            {"stream_id": "c", "class_filter": ["person", "unicorn"]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "unicorn",
        ),
    ],
)
def test_bad_configs(config: dict[str, object], code: grpc.StatusCode, words: str) -> None:
    message = ingest_service_pb2.StreamConfig(**config)  # type: ignore[arg-type]
    got_code, text = code_of(lambda: stream_settings(message, MODEL, LIMITS))
    assert got_code == code
    assert words in text


@pytest.mark.parametrize(
    ("bad", "last_seq", "code", "words"),
    [
        (frame(seq=3), 3, grpc.StatusCode.INVALID_ARGUMENT, "not greater than the previous seq 3"),
        (frame(seq=2), 7, grpc.StatusCode.INVALID_ARGUMENT, "not greater"),
        (frame(seq=0), 0, grpc.StatusCode.INVALID_ARGUMENT, "not greater"),
        (
            frame(encoding=common_pb2.ENCODING_UNSPECIFIED),
            0,
            grpc.StatusCode.INVALID_ARGUMENT,
            "ENCODING_UNSPECIFIED",
        ),
        (frame(encoding=42), 0, grpc.StatusCode.INVALID_ARGUMENT, "unsupported encoding 42"),
        (frame(data=b""), 0, grpc.StatusCode.INVALID_ARGUMENT, "no data"),
        (frame(data=b"x" * 100_001), 0, grpc.StatusCode.RESOURCE_EXHAUSTED, "100001 bytes"),
        (frame(capture_time=None), 0, grpc.StatusCode.INVALID_ARGUMENT, "no capture_time"),
        (
            frame(capture_time=Timestamp()),
            0,
            grpc.StatusCode.INVALID_ARGUMENT,
            "after 1970-01-01T00:00:00Z",
        ),
        (
            frame(capture_time=Timestamp(seconds=2**62)),
            0,
            grpc.StatusCode.INVALID_ARGUMENT,
            "before the year 10000",
        ),
        (
            frame(capture_time=Timestamp(seconds=-5)),
            0,
            grpc.StatusCode.INVALID_ARGUMENT,
            "after 1970",
        ),
        (
            frame(capture_time=Timestamp(seconds=1_700_000_000, nanos=-1)),
            0,
            grpc.StatusCode.INVALID_ARGUMENT,
            "nanos -1",
        ),
        (
            frame(capture_time=Timestamp(seconds=1_700_000_000, nanos=10**9)),
            0,
            grpc.StatusCode.INVALID_ARGUMENT,
            "nanos 1000000000",
        ),
        (
            frame(kept_regions=[common_pb2.BoundingBox(x_min=0.5, x_max=0.2, y_max=1)]),
            0,
            grpc.StatusCode.INVALID_ARGUMENT,
            "kept region",
        ),
    ],
)
def test_frames_that_end_the_stream(
    bad: ingest_service_pb2.Frame, last_seq: int, code: grpc.StatusCode, words: str
) -> None:
    got_code, text = code_of(lambda: check_frame(bad, bad.data, last_seq, LIMITS))
    assert got_code == code
    assert words in text


def test_good_frame_passes() -> None:
    good = frame(seq=4, kept_regions=[common_pb2.BoundingBox(x_min=0.1, x_max=0.2, y_max=1)])
    check_frame(good, good.data, 3, LIMITS)
    assert check_image(good, good.data, LIMITS) is None


@pytest.mark.parametrize(
    ("bad", "code", "words"),
    [
        (frame(data=b"GIF89a" + bytes(30)), grpc.StatusCode.INVALID_ARGUMENT, "not a JPEG"),
        (frame(width=65), grpc.StatusCode.INVALID_ARGUMENT, "declares 65x48 but its JPEG"),
        (
            frame(width=800, height=600, data=jpeg(800, 600)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "480000 pixels",
        ),
        (frame(data=jpeg(64, 48)[:-200]), grpc.StatusCode.INVALID_ARGUMENT, "truncated"),
    ],
)
def test_frames_that_fail_alone(
    bad: ingest_service_pb2.Frame, code: grpc.StatusCode, words: str
) -> None:
    problem = check_image(bad, bad.data, LIMITS)
    assert problem is not None
    assert problem.code == code
    assert words in problem.message


def test_reports() -> None:
    report = ingest_service_pb2.AgentReport(frames_sent=3)
    report.end_to_end_latencies.add(nanos=5_000_000)
    report.skips.add(reason=ingest_service_pb2.SKIP_REASON_SUPERSEDED, count=2)
    check_report(report, LIMITS)
    too_many = ingest_service_pb2.AgentReport()
    for _ in range(LIMITS.max_report_samples + 1):
        too_many.end_to_end_latencies.add(nanos=1)
    assert "latency samples" in code_of(lambda: check_report(too_many, LIMITS))[1]
    unspecified = ingest_service_pb2.AgentReport()
    unspecified.skips.add(count=1)
    assert "not a known SkipReason" in code_of(lambda: check_report(unspecified, LIMITS))[1]


def test_zero_width_and_height_mean_read_it_from_the_header() -> None:
    # Issue 11: a client without a JPEG header reader (Node) sends 0; Image does the same.
    undeclared = frame(width=0, height=0)
    check_frame(undeclared, undeclared.data, 0, LIMITS)
    assert check_image(undeclared, undeclared.data, LIMITS) is None
    assert (undeclared.width, undeclared.height) == (64, 48)
    half = frame(width=64, height=0)
    assert check_image(half, half.data, LIMITS) is None
    assert (half.width, half.height) == (64, 48)
    odd = frame(width=0, height=47)
    wrong = check_image(odd, odd.data, LIMITS)
    assert wrong is not None
    assert wrong.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "declares ?x47 but its JPEG header says 64x48" in wrong.message


def test_capture_time_skew_is_checked_only_when_configured() -> None:
    hour_ago = timestamp_from_ns(time.time_ns() - 3600 * 10**9)
    old = frame(capture_time=hour_ago)
    check_frame(old, old.data, 0, LIMITS)  # unsynchronized clocks are fine
    strict = IngestConfig(max_capture_time_skew=60.0)
    now = frame()
    check_frame(now, now.data, 0, strict)
    code, text = code_of(lambda: check_frame(old, old.data, 0, strict))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "-3600" in text
    assert "synchronize" in text
    with pytest.raises(ValueError, match="max_capture_time_skew"):
        IngestConfig(max_capture_time_skew=-1)


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrites the size in a baseline JPEG's frame header (SOF0), leaving the rest alone."""
    start = data.index(b"\xff\xc0")
    patched = bytearray(data)
    patched[start + 5 : start + 7] = height.to_bytes(2, "big")
    patched[start + 7 : start + 9] = width.to_bytes(2, "big")
    return bytes(patched)


def test_a_few_hundred_bytes_claiming_4096x4096_fail_alone() -> None:
    # Issue 15: exactly at the pixel limit, complete with its end marker, and
    # decoded to 48 MB before. No encoder writes 4096x4096 in so few bytes.
    limits = IngestConfig()
    data = with_declared_size(jpeg(16, 16), 4096, 4096)
    assert len(data) < 1000
    crafted = frame(width=4096, height=4096, data=data)
    check_frame(crafted, crafted.data, 0, limits)
    problem = check_image(crafted, crafted.data, limits)
    assert problem is not None
    assert problem.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{len(data)} bytes cannot hold a 4096x4096 JPEG" in problem.message
    assert "truncated or crafted" in problem.message


@pytest.mark.parametrize("channels", [3, 1])
def test_the_densest_real_jpeg_passes(channels: int) -> None:
    # A flat frame at quality 1, progressive with optimized tables: 170 (colour)
    # and 255 (grey) pixels per byte, the densest JPEGs measured (docs/limits.md).
    shape = (4096, 4096, channels) if channels == 3 else (4096, 4096)
    flags = [
        cv2.IMWRITE_JPEG_QUALITY,
        1,
        cv2.IMWRITE_JPEG_PROGRESSIVE,
        1,
        cv2.IMWRITE_JPEG_OPTIMIZE,
        1,
    ]
    data = cv2.imencode(".jpg", np.full(shape, 127, np.uint8), flags)[1].tobytes()
    limits = IngestConfig()
    assert 4096 * 4096 / len(data) > 150  # within a factor of 7 of the limit
    dense = frame(width=4096, height=4096, data=data)
    assert check_image(dense, dense.data, limits) is None
