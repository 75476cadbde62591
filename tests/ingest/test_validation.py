"""What agents send is checked with the status a client can act on."""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pytest

from framewire.common.errors import FramewireError
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
        (frame(width=0), 0, grpc.StatusCode.INVALID_ARGUMENT, "width and height"),
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
    got_code, text = code_of(lambda: check_frame(bad, last_seq, LIMITS))
    assert got_code == code
    assert words in text


def test_good_frame_passes() -> None:
    good = frame(seq=4, kept_regions=[common_pb2.BoundingBox(x_min=0.1, x_max=0.2, y_max=1)])
    check_frame(good, 3, LIMITS)
    assert check_image(good, LIMITS) is None


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
    problem = check_image(bad, LIMITS)
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
