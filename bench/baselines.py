"""Servers framewire is measured against, each run as its own process.

- ``plain``: what users write instead of framewire. A thread-pooled gRPC server
  whose unary Detect runs the same SSD model with the same preprocessing
  (decode, resize to the model's 300x300, RGB) on one shared ONNX Runtime
  session, several calls at once; clients send one frame at a time, always the
  newest (see ``plain_camera``).
- ``simulated-gpu``: an InferenceService whose batches cost a fixed time plus a
  little per image, as on a GPU, and detect nothing; ingest in front of it
  shows whether batches grow when growing them is cheap.

Run as ``python -m bench.baselines plain PORT MODEL`` or
``python -m bench.baselines simulated-gpu PORT``; each prints "serving" when ready.
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from framewire.common.protoutil import duration
from framewire.common.serving import AsyncHealthServicer
from framewire.v1 import common_pb2, inference_service_pb2, inference_service_pb2_grpc
from framewire.v1.inference_service_pb2 import DetectRequest, DetectResponse

PLAIN_THREADS = 4
SCORE_THRESHOLD = 0.5
# The simulated GPU: a batch of n images costs BASE + PER_IMAGE * n seconds.
SIMULATED_BASE = 0.020
SIMULATED_PER_IMAGE = 0.0005
SIMULATED_MAX_BATCH = 64


class PlainDetector(inference_service_pb2_grpc.InferenceServiceServicer):
    """One model call per request, on whichever pool thread took it; no batching, no lock."""

    def __init__(self, model: Path) -> None:
        from framewire.inference import Engine, EngineConfig

        # The engine only lends its loaded ONNX Runtime session (thread-safe).
        self._engine = Engine.load(EngineConfig(model=model, backend="onnxruntime"))
        spec = self._engine.spec
        assert spec is not None
        self._size = (spec.width, spec.height)

    def Detect(self, request: DetectRequest, context: Any) -> DetectResponse:  # noqa: N802
        response = DetectResponse(model_id="plain")
        for image in request.images:
            bgr = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
            assert bgr is not None, "the benchmark sends only valid JPEGs"
            resized = cv2.resize(bgr, self._size, interpolation=cv2.INTER_LINEAR)
            tensor = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)[np.newaxis]
            _boxes, scores, classes, count = self._engine.backend.run(tensor)[:4]
            result = response.results.add()
            for index in range(int(count[0])):
                score = float(scores[0][index])
                if score >= SCORE_THRESHOLD:
                    result.detections.add(class_id=int(classes[0][index]), score=score)
        return response

    def GetModelInfo(  # noqa: N802
        self, request: inference_service_pb2.GetModelInfoRequest, context: Any
    ) -> inference_service_pb2.GetModelInfoResponse:
        return inference_service_pb2.GetModelInfoResponse(model_id="plain", max_batch_size=1)


def serve_plain(port: int, model: Path) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=PLAIN_THREADS))
    inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(PlainDetector(model), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


class SimulatedGpu(inference_service_pb2_grpc.InferenceServiceServicer):
    """Batches that cost SIMULATED_BASE plus SIMULATED_PER_IMAGE per image, one at a time;
    each image's timings say, as the real server's do, how long its batch waited for the
    device (queue), how long it ran there (inference) and the whole call (total)."""

    def __init__(self) -> None:
        self._device = asyncio.Lock()

    async def Detect(self, request: DetectRequest, context: Any) -> DetectResponse:  # noqa: N802
        arrived = time.perf_counter()
        async with self._device:
            started = time.perf_counter()
            await asyncio.sleep(SIMULATED_BASE + SIMULATED_PER_IMAGE * len(request.images))
            ran = time.perf_counter()
        timings = common_pb2.StageTimings(
            queue=duration(started - arrived),
            inference=duration(ran - started),
            total=duration(ran - arrived),
        )
        response = DetectResponse(model_id="simulated-gpu@0")
        for _ in request.images:
            response.results.add(timings=timings)
        return response

    async def GetModelInfo(  # noqa: N802
        self, request: inference_service_pb2.GetModelInfoRequest, context: Any
    ) -> inference_service_pb2.GetModelInfoResponse:
        return inference_service_pb2.GetModelInfoResponse(
            model_id="simulated-gpu@0",
            labels=["thing"],
            max_batch_size=SIMULATED_MAX_BATCH,
            default_score_threshold=0.5,
            input_width=640,
            input_height=640,
        )


async def serve_simulated_gpu(port: int) -> None:
    server = grpc.aio.server()
    inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(SimulatedGpu(), server)
    health = AsyncHealthServicer()
    from grpc_health.v1 import health_pb2_grpc

    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", "framewire.v1.InferenceService"):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("serving", flush=True)
    await server.wait_for_termination()


async def plain_camera(
    port: int, frames: list[tuple[bytes, int, int]], *, fps: float, duration: float
) -> tuple[list[float], int]:
    """One camera against the plain server: send the newest frame, wait, repeat.

    Returns capture-to-answer latencies and the frames captured meanwhile.
    """
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
        started = time.monotonic()
        last = -1
        while (now := time.monotonic()) - started < duration:
            newest = int((now - started) * fps)
            if newest == last:  # answered before the next capture: wait for it
                await asyncio.sleep(started + (newest + 1) / fps - now)
                continue
            last = newest
            data, width, height = frames[newest % len(frames)]
            request = DetectRequest()
            request.images.add(
                encoding=common_pb2.ENCODING_JPEG, data=data, width=width, height=height
            )
            await stub.Detect(request, timeout=30)
            latencies.append(time.monotonic() - (started + newest / fps))
    return latencies, int(duration * fps)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "plain":
        serve_plain(int(argv[1]), Path(argv[2]))
        return 0
    if len(argv) >= 2 and argv[0] == "simulated-gpu":
        asyncio.run(serve_simulated_gpu(int(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
