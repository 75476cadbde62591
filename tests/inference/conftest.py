"""Fixtures for the inference tests: real servers on port 0, real images, gRPC clients."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np

from framewire.common.serving import ListenConfig
from framewire.inference.config import EngineConfig, InferenceServerConfig
from framewire.inference.engine import Engine
from framewire.inference.server import InferenceServer, start_inference_server
from framewire.v1 import common_pb2, inference_service_pb2, inference_service_pb2_grpc
from tests.conftest import shared_file, vtest_path
from tests.harness import ServerThread


def server_config(engine: EngineConfig, **listen: Any) -> InferenceServerConfig:
    """A config listening on 127.0.0.1, port 0, with metrics on a free port."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
    }
    settings.update(listen)
    return InferenceServerConfig(engine=engine, listen=ListenConfig(**settings))


class RunningServer(ServerThread[InferenceServer]):
    """`framewire inference`'s server through the one harness (tests/harness.py), with a client."""

    def __init__(self, config: InferenceServerConfig) -> None:
        super().__init__(lambda: start_inference_server(config))
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = inference_service_pb2_grpc.InferenceServiceStub(self.channel)

    def detect(self, *images: inference_service_pb2.Image) -> inference_service_pb2.DetectResponse:
        return self.stub.Detect(inference_service_pb2.DetectRequest(images=images), timeout=60)

    def stop(self, grace: float = 1.0) -> None:
        self.channel.close()
        super().stop(grace)


class HeldModel:
    """Holds every Detect batch inside ``engine`` until the block ends (or :meth:`release`),
    so that "busy" does not depend on how long a batch takes; records each batch's size."""

    def __init__(self, engine: Engine, monkeypatch: Any) -> None:
        self.sizes: list[int] = []
        self._inside, self._released = threading.Event(), threading.Event()
        detect = engine.detect

        def held(
            request: inference_service_pb2.DetectRequest,
        ) -> inference_service_pb2.DetectResponse:
            self.sizes.append(len(request.images))
            self._inside.set()
            if not self._released.wait(60):
                raise TimeoutError("the test never released the model")
            return detect(request)

        monkeypatch.setattr(engine, "detect", held)

    def __enter__(self) -> HeldModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def wait_inside(self) -> None:
        assert self._inside.wait(30), "no call reached the model"

    def release(self) -> None:
        self._released.set()


def running_server(engine: EngineConfig, **listen: Any) -> Iterator[RunningServer]:
    """Generator body for module-scoped server fixtures."""
    with RunningServer(server_config(engine, **listen)) as server:
        yield server


def model_path(name: str) -> Path:
    """A model under ../shared/models (skips when absent)."""
    return shared_file(f"models/{name}")


def media_bytes(name: str) -> bytes:
    """The bytes of a file under ../shared/media (skips when absent)."""
    return shared_file(f"media/{name}").read_bytes()


def jpeg_image(data: bytes, **fields: Any) -> inference_service_pb2.Image:
    """A JPEG Image message."""
    return inference_service_pb2.Image(encoding=common_pb2.ENCODING_JPEG, data=data, **fields)


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", pixels, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    assert ok
    return bytes(data.tobytes())


def synthetic_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A noisy JPEG of a given size (content irrelevant)."""
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8))


def video_frames(indices: list[int]) -> list[bytes]:
    """Frames of ../shared/media/vtest.avi as JPEG bytes, read in order."""
    path = vtest_path()
    capture = cv2.VideoCapture(str(path))
    frames: dict[int, bytes] = {}
    try:
        for index in range(max(indices) + 1):
            ok, frame = capture.read()
            assert ok, f"vtest.avi ended before frame {index}"
            if index in indices:
                frames[index] = encode_jpeg(frame)
    finally:
        capture.release()
    return [frames[index] for index in indices]


def iou(a: list[float], b: list[float]) -> float:
    """IoU of two x_min, y_min, x_max, y_max boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def box(detection: Any) -> list[float]:
    return [detection.box.x_min, detection.box.y_min, detection.box.x_max, detection.box.y_max]


def engine_config(**fields: Any) -> EngineConfig:
    return replace(EngineConfig(), **fields)
