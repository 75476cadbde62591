"""Test clients for IngestService: frames from real video, and streams driven by hand."""

from __future__ import annotations

import functools
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import grpc

from framewire.common.protoutil import timestamp_from_ns
from framewire.v1 import common_pb2, ingest_service_pb2, ingest_service_pb2_grpc
from tests.conftest import vtest_path


@dataclass(frozen=True)
class Jpeg:
    data: bytes
    width: int
    height: int


@functools.cache
def vtest_jpegs(
    count: int = 60, width: int = 480, height: int = 360, step: int = 5
) -> tuple[Jpeg, ...]:
    """Every ``step``-th frame of vtest.avi, resized and JPEG-encoded (skips without ../shared)."""
    capture = cv2.VideoCapture(str(vtest_path()))
    frames: list[Jpeg] = []
    index = 0
    try:
        while len(frames) < count:
            ok, image = capture.read()
            if not ok:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            if index % step == 0:
                resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
                data = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
                frames.append(Jpeg(data, width, height))
            index += 1
    finally:
        capture.release()
    return tuple(frames)


def frame_request(seq: int, jpeg: Jpeg, **fields: object) -> ingest_service_pb2.StreamFramesRequest:
    frame = ingest_service_pb2.Frame(
        seq=seq,
        capture_time=timestamp_from_ns(time.time_ns()),
        encoding=common_pb2.ENCODING_JPEG,
        width=jpeg.width,
        height=jpeg.height,
        data=jpeg.data,
    )
    for key, value in fields.items():
        setattr(frame, key, value)
    return ingest_service_pb2.StreamFramesRequest(frame=frame)


def config_request(
    stream_id: str = "test-cam", **fields: object
) -> ingest_service_pb2.StreamFramesRequest:
    config = ingest_service_pb2.StreamConfig(stream_id=stream_id, client_version="tests/1")
    for key, value in fields.items():
        if isinstance(value, list):
            getattr(config, key).extend(value)
        else:
            setattr(config, key, value)
    return ingest_service_pb2.StreamFramesRequest(config=config)


_DONE = object()


@dataclass
class SyncStream:
    """One StreamFrames call with the sync API: send when you like, read what comes."""

    port: int
    # True: a TCP connection of its own, as a separate device would have (gRPC
    # otherwise shares one connection among a process's channels to a target).
    own_connection: bool = False
    channel: grpc.Channel = field(init=False)
    _requests: queue.Queue[object] = field(init=False, default_factory=queue.Queue)

    def __post_init__(self) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)] if self.own_connection else []
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=options)
        stub = ingest_service_pb2_grpc.IngestServiceStub(self.channel)
        self.call = stub.StreamFrames(self._iterate(), timeout=60)

    def _iterate(self) -> Iterator[ingest_service_pb2.StreamFramesRequest]:
        while True:
            item = self._requests.get()
            if item is _DONE:
                return
            assert isinstance(item, ingest_service_pb2.StreamFramesRequest)
            yield item

    def send(self, request: ingest_service_pb2.StreamFramesRequest) -> None:
        self._requests.put(request)

    def close_input(self) -> None:
        self._requests.put(_DONE)

    def read(self) -> ingest_service_pb2.StreamFramesResponse:
        """The next response; raises StopIteration at the end, grpc.RpcError on failure."""
        response: ingest_service_pb2.StreamFramesResponse = next(self.call)
        return response

    def read_all(self) -> list[ingest_service_pb2.StreamFramesResponse]:
        return list(self.call)

    def error(self) -> grpc.RpcError:
        """Reads until the call fails; fails the test if it ends normally."""
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as error:
            return error
        raise AssertionError("the call ended with OK, not an error")

    def close(self) -> None:
        self.close_input()
        self.call.cancel()
        self.channel.close()
