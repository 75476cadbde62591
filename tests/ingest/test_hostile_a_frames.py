"""Cheap inputs that used to cost a lot, and the contract's zero sizes, on a real server.

- A few hundred bytes declaring 4096x4096 (at the pixel limit) fail alone
  instead of being decoded into 48 MB.
- A frame without a capture time, or with an impossible one, ends the stream.
- Width and height 0 mean "read them from the JPEG header".
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from framewire.common.transport import TransportConfig
from framewire.inference import EngineConfig
from framewire.ingest.config import IngestConfig
from framewire.ingest.serve_command import ServeConfig, start_serve
from framewire.ingest.server import IngestServer
from framewire.v1 import ingest_service_pb2
from tests.harness import ServerThread
from tests.ingest.conftest import LOCAL
from tests.streaming import Jpeg, SyncStream, config_request, frame_request


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread[IngestServer]]:
    config = ServeConfig(
        engine=EngineConfig(backend="null"),
        ingest=IngestConfig(hint_interval=0),
        listen=LOCAL,
        transport=TransportConfig(),
    )
    thread = ServerThread(lambda: start_serve(config))
    yield thread
    thread.stop()


def small_jpeg() -> Jpeg:
    pixels = np.random.default_rng(5).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return Jpeg(cv2.imencode(".jpg", pixels)[1].tobytes(), 64, 48)


def claims_4096_squared() -> Jpeg:
    """A complete 16x16 JPEG whose frame header says 4096x4096."""
    data = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes()
    start = data.index(b"\xff\xc0")
    patched = bytearray(data)
    patched[start + 5 : start + 9] = (4096).to_bytes(2, "big") * 2
    return Jpeg(bytes(patched), 4096, 4096)


def opened(port: int, name: str) -> SyncStream:
    stream = SyncStream(port)
    stream.send(config_request(name, max_in_flight=1))
    assert stream.read().HasField("accepted")
    return stream


def next_result(stream: SyncStream) -> ingest_service_pb2.FrameResult:
    while True:
        response = stream.read()
        if response.HasField("result"):
            return response.result


def test_a_tiny_body_claiming_4096x4096_fails_alone(server: ServerThread[IngestServer]) -> None:
    stream = opened(server.server.port, "bomb")
    try:
        crafted = claims_4096_squared()
        assert len(crafted.data) < 1000
        stream.send(frame_request(1, crafted))
        failed = next_result(stream)
        assert failed.seq == 1
        assert failed.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "cannot hold a 4096x4096 JPEG" in failed.error.message
        stream.send(frame_request(2, small_jpeg()))
        good = next_result(stream)
        assert good.seq == 2
        assert not good.HasField("error"), good.error
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("capture_time", "words"),
    [
        (None, "no capture_time"),
        (Timestamp(), "after 1970-01-01T00:00:00Z"),
        (Timestamp(seconds=2**62), "before the year 10000"),
        (Timestamp(seconds=1_700_000_000, nanos=-1), "nanos -1"),
    ],
)
def test_a_missing_or_impossible_capture_time_ends_the_stream(
    server: ServerThread[IngestServer], capture_time: Timestamp | None, words: str
) -> None:
    stream = opened(server.server.port, "clockless")
    try:
        request = frame_request(1, small_jpeg())
        if capture_time is None:
            request.frame.ClearField("capture_time")
        else:
            request.frame.capture_time.CopyFrom(capture_time)
        stream.send(request)
        error = stream.error()
    finally:
        stream.close()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert words in error.details()  # type: ignore[attr-defined]


def test_zero_width_and_height_are_read_from_the_header(
    server: ServerThread[IngestServer],
) -> None:
    stream = opened(server.server.port, "no-header-reader")
    try:
        jpeg = small_jpeg()
        stream.send(frame_request(1, Jpeg(jpeg.data, 0, 0)))
        first = next_result(stream)
        stream.send(frame_request(2, Jpeg(jpeg.data, 0, 47)))
        second = next_result(stream)
    finally:
        stream.close()
    assert first.seq == 1
    assert not first.HasField("error"), first.error
    assert second.seq == 2
    assert second.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "declares ?x47 but its JPEG header says 64x48" in second.error.message
