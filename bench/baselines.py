"""Servers framewire is measured against, each run as its own process.

- ``plain``: what users write instead of framewire. A thread-pooled gRPC server
  whose unary Detect runs the same SSD model with the same preprocessing
  (decode, resize to the model's 300x300, RGB) on one shared ONNX Runtime
  session, several calls at once; clients send one frame at a time, always the
  newest (see ``plain_camera``).
- ``echo``: the floor of the transport bench, a bare grpc.aio IngestService that
  answers each frame at once, with no validation, slots, batching or metrics.
- ``minimal``: framewire's shape with none of its duties, the ceiling of that
  shape in Python for the transport bench. Each stream's newest frame waits in
  a slot (an older one is listed as skipped on the stream's next result, as
  framewire answers a superseded frame); one task takes up to ``MINIMAL_MAX_BATCH`` waiting frames
  from different streams and hands them to a worker thread, up to
  ``MINIMAL_WORKERS`` batches at once; each stream's writer sends the answers.
  No validation, limits, ordering, accounting, metrics, hints or timings.
- ``simulated-gpu``: framewire's own InferenceService with an engine whose
  batches cost a fixed time plus a little per image, as on a GPU, and detect
  nothing; ingest in front of it shows whether batches grow when growing them
  is cheap.

Run as ``python -m bench.baselines plain PORT MODEL``,
``python -m bench.baselines echo PORT``, ``python -m bench.baselines minimal PORT`` or
``python -m bench.baselines simulated-gpu PORT [MERGE_CALLS CONCURRENT_BATCHES]``
(the server's settings; by default ``SIMULATED_SERVER``); each prints "serving"
when ready.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
from prometheus_client import CollectorRegistry

from framewire.common.memory import keep_large_buffers
from framewire.common.protoutil import duration
from framewire.common.serving import ListenConfig
from framewire.common.serving import run as run_server
from framewire.common.transport import TransportConfig, server_options
from framewire.inference.backends import Backend
from framewire.inference.config import EngineConfig, InferenceServerConfig
from framewire.inference.engine import Engine
from framewire.inference.signature import ModelSignature
from framewire.v1 import (
    common_pb2,
    inference_service_pb2,
    inference_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
)
from framewire.v1.inference_service_pb2 import DetectRequest, DetectResponse

PLAIN_THREADS = 4
# The minimal batcher: as `serve` runs the null model on this project's 2 cores (one
# batch per core) with ingest's default batch limit.
MINIMAL_WORKERS = 2
MINIMAL_MAX_BATCH = 8
SCORE_THRESHOLD = 0.5
# The simulated GPU: a batch of n images costs BASE + PER_IMAGE * n seconds.
SIMULATED_BASE = 0.020
SIMULATED_PER_IMAGE = 0.0005
SIMULATED_MAX_BATCH = 64
# How the simulated GPU is served (--merge-calls, --concurrent-batches): waiting calls merged,
# and one batch at a time, since it has no preparation to overlap with a run (a second batch
# would only wait at the device, where it can no longer merge with others).
SIMULATED_SERVER = ("auto", 1)
# How it was served before calls could merge: two batches at once, the engine's default.
SIMULATED_SERVER_UNMERGED = ("never", 2)


class PlainDetector(inference_service_pb2_grpc.InferenceServiceServicer):
    """One model call per request, on whichever pool thread took it; no batching, no lock."""

    def __init__(self, model: Path) -> None:
        from framewire.inference import Engine, EngineConfig

        # The engine only lends its loaded ONNX Runtime session (thread-safe). One session
        # with the runtime's defaults, as a user would open it: with concurrent_batches 1
        # the engine opens no second session for runs that overlap (that is framewire's,
        # backends.single_threaded_overlaps).
        self._engine = Engine.load(
            EngineConfig(model=model, backend="onnxruntime", concurrent_batches=1)
        )
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


class SimulatedDevice(Backend):
    """The simulated GPU's runtime: nothing runs, but batching pays, as on a GPU."""

    name = "simulated-gpu"

    def __init__(self) -> None:
        super().__init__(ModelSignature((), ()))

    @property
    def batching_pays(self) -> bool:
        return True

    def run(self, batch: Any) -> list[Any]:
        raise RuntimeError("the simulated GPU runs no model")


class SimulatedGpuEngine(Engine):
    """A batch of n images holds the device for SIMULATED_BASE + SIMULATED_PER_IMAGE * n
    seconds, one batch at a time, and finds nothing. Served by the real InferenceService,
    so its images' timings say, as a real engine's do, how long the batch waited for the
    device (queue) and ran there (inference)."""

    def __init__(self, config: EngineConfig, registry: CollectorRegistry) -> None:
        super().__init__(
            config=config,
            backend=SimulatedDevice(),
            head_name="none",
            labels=("thing",),
            model_id="simulated-gpu@0",
            registry=registry,
        )
        self._device = threading.Lock()

    @property
    def spec(self) -> None:
        return None

    @property
    def input_size(self) -> tuple[int, int]:
        return (640, 640)

    def input_batch(self, images: Any) -> Any:
        raise ValueError("the simulated GPU has no model input")

    def _answer(
        self,
        images: Any,
        options: dict[int, Any],
        errors: list[Any],
        results: list[inference_service_pb2.ImageResult],
    ) -> None:
        waiting = time.perf_counter()
        with self._device:
            started = time.perf_counter()
            time.sleep(SIMULATED_BASE + SIMULATED_PER_IMAGE * len(options))
            ran = time.perf_counter()
        for index in options:
            results[index].timings.queue.CopyFrom(duration(started - waiting))
            results[index].timings.inference.CopyFrom(duration(ran - started))


def serve_simulated_gpu(port: int, merge_calls: str, concurrent_batches: int) -> None:
    from framewire.inference.command import serve

    engine = EngineConfig(
        backend="null", max_batch=SIMULATED_MAX_BATCH, concurrent_batches=concurrent_batches
    )
    config = InferenceServerConfig(
        engine=engine,
        listen=ListenConfig(host="127.0.0.1", port=port, metrics_port=-1),
        merge_calls=merge_calls,
    )

    def ready(server: Any) -> None:
        print("serving", flush=True)

    # As `framewire inference` runs (serving.run: uvloop, switch interval, malloc).
    run_server(lambda: serve(config, on_ready=ready, load=SimulatedGpuEngine))


class EchoServicer(ingest_service_pb2_grpc.IngestServiceServicer):
    """The ``echo`` server of the module docstring."""

    async def StreamFrames(  # type: ignore[override]  # noqa: N802
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        async for request in request_iterator:
            if request.HasField("config"):
                accepted = ingest_service_pb2.StreamAccepted(stream_id=request.config.stream_id)
                await context.write(ingest_service_pb2.StreamFramesResponse(accepted=accepted))
            elif request.HasField("frame"):
                result = ingest_service_pb2.FrameResult(
                    seq=request.frame.seq, capture_time=request.frame.capture_time, batch_size=1
                )
                await context.write(ingest_service_pb2.StreamFramesResponse(result=result))


class MinimalBatcher(ingest_service_pb2_grpc.IngestServiceServicer):
    """The ``minimal`` server of the module docstring."""

    def __init__(self) -> None:
        # Per stream (keyed by the id of its _MinimalStream) the newest frame waiting, in
        # the order the streams joined the line.
        self._line: dict[int, tuple[_MinimalStream, ingest_service_pb2.Frame]] = {}
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._pool = ThreadPoolExecutor(MINIMAL_WORKERS)

    async def StreamFrames(  # type: ignore[override]  # noqa: N802
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        first = await anext(request_iterator)
        accepted = ingest_service_pb2.StreamAccepted(stream_id=first.config.stream_id)
        await context.write(ingest_service_pb2.StreamFramesResponse(accepted=accepted))
        stream = _MinimalStream()
        reader = asyncio.create_task(self._read(stream, request_iterator))
        while True:
            while stream.outbox:
                await context.write(stream.outbox.popleft())
            if reader.done() and (stream.unanswered == 0 or reader.exception() is not None):
                break
            stream.ready.clear()
            await stream.ready.wait()
        await reader  # raises what the reader raised

    async def _read(self, stream: _MinimalStream, requests: Any) -> None:
        try:
            async for request in requests:
                if not request.HasField("frame"):
                    continue
                stream.unanswered += 1
                waiting = self._line.get(id(stream))
                if waiting is not None:  # replaced: it rides on the stream's next result
                    stream.skipped.append(
                        ingest_service_pb2.SkippedFrame(
                            seq=waiting[1].seq, reason=ingest_service_pb2.SKIP_REASON_SUPERSEDED
                        )
                    )
                self._line[id(stream)] = (stream, request.frame)
                self._wake.set()
        finally:
            stream.ready.set()  # the writer sees the reader done (and re-raises its error)

    async def run(self) -> None:
        """Sends a batch whenever frames wait and a worker is free; runs until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._line and len(self._in_flight) < MINIMAL_WORKERS:
                keys = list(itertools.islice(self._line, MINIMAL_MAX_BATCH))
                task = asyncio.create_task(self._run([self._line.pop(key) for key in keys]))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        task.result()  # a failure must not pass silently
        self._wake.set()

    async def _run(self, batch: list[tuple[_MinimalStream, ingest_service_pb2.Frame]]) -> None:
        frames = [frame for _, frame in batch]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, _no_model, frames)
        for stream, frame in batch:
            result = ingest_service_pb2.FrameResult(
                seq=frame.seq,
                capture_time=frame.capture_time,
                batch_size=len(batch),
                skipped=stream.skipped,
            )
            stream.unanswered -= 1 + len(stream.skipped)
            stream.skipped.clear()
            stream.outbox.append(ingest_service_pb2.StreamFramesResponse(result=result))
            stream.ready.set()


class _MinimalStream:
    def __init__(self) -> None:
        self.outbox: collections.deque[ingest_service_pb2.StreamFramesResponse] = (
            collections.deque()
        )
        self.ready = asyncio.Event()
        self.unanswered = 0
        self.skipped: list[ingest_service_pb2.SkippedFrame] = []


def _no_model(frames: list[ingest_service_pb2.Frame]) -> int:
    return sum(len(frame.data) for frame in frames)


async def _serve_ingest_baseline(name: str, port: int) -> None:
    """Serves the ``echo`` or ``minimal`` IngestService on loopback ``port`` with the
    malloc setup and transport options of framewire's servers (serving.run), so the
    comparison is like for like; prints "serving" when ready."""
    keep_large_buffers()
    server = grpc.aio.server(options=server_options(TransportConfig()))
    servicer = EchoServicer() if name == "echo" else MinimalBatcher()
    ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    background = []
    if isinstance(servicer, MinimalBatcher):
        background.append(asyncio.create_task(servicer.run()))
    print("serving", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        for task in background:
            task.cancel()


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
    if len(argv) == 2 and argv[0] in ("echo", "minimal"):
        asyncio.run(_serve_ingest_baseline(argv[0], int(argv[1])))
        return 0
    if len(argv) in (2, 4) and argv[0] == "simulated-gpu":
        mode, slots = (argv[2], int(argv[3])) if len(argv) == 4 else SIMULATED_SERVER
        serve_simulated_gpu(int(argv[1]), mode, slots)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
