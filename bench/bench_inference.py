"""InferenceService throughput and latency, side by side with the bare backend.

For each backend and model, and batch sizes 1, 4 and 8:

- service: a real server on 127.0.0.1 (port 0), called over gRPC with JPEG
  frames from ../shared/media/vtest.avi (768x576), ``--concurrency`` calls in
  flight (2 by default, as ingest sends them, so one batch decodes while the
  other runs on the model);
- bare: the same loaded backend called directly, one call at a time, on
  tensors decoded and preprocessed beforehand.

The ratio service / bare is what the service costs around the model (decode,
preprocess, postprocess, gRPC); the goal is at least 0.9 at batch 8. The
``null`` backend row measures the transport and header checks alone.

Run: ``python -m bench inference`` (all) or ``python -m bench inference -- --quick``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import cv2
import grpc
import numpy as np

from framewire.common.serving import ListenConfig
from framewire.inference.config import EngineConfig, InferenceServerConfig
from framewire.inference.inputs import decode_rgb
from framewire.inference.server import InferenceServer, start_inference_server
from framewire.v1 import common_pb2, inference_service_pb2, inference_service_pb2_grpc
from tests.assets import SHARED, AssetMissing, vtest_video
from tests.harness import ServerThread

T = TypeVar("T")

BATCH_SIZES = (1, 4, 8)
GOAL = 0.9


@dataclass(frozen=True)
class Case:
    """One backend and model to measure."""

    title: str
    engine: EngineConfig
    needs_shared: bool


@dataclass(frozen=True)
class Measurement:
    images_per_second: float
    p50_ms: float
    p95_ms: float


def cases() -> list[Case]:
    models = SHARED / "models"
    return [
        Case("opencv / ssd_mobilenet_v2_coco (default model)", EngineConfig(), False),
        Case(
            "onnxruntime / ssd_mobilenet_v2_coco.onnx",
            EngineConfig(model=models / "ssd_mobilenet_v2_coco.onnx"),
            True,
        ),
        Case(
            "onnxruntime / yolov8n-untrained.onnx (640)",
            EngineConfig(model=models / "yolov8n-untrained.onnx"),
            True,
        ),
        Case(
            "onnxruntime / yolo11n-untrained.onnx (640)",
            EngineConfig(model=models / "yolo11n-untrained.onnx"),
            True,
        ),
        Case(
            "opencv / yolov8n-untrained.onnx (640)",
            EngineConfig(model=models / "yolov8n-untrained.onnx", backend="opencv"),
            True,
        ),
        Case(
            "null (no model: transport and header checks only)", EngineConfig(backend="null"), False
        ),
    ]


def has_vtest() -> bool:
    try:
        vtest_video()
    except AssetMissing:
        return False
    return True


def frames(count: int) -> list[bytes]:
    """JPEG frames (quality 90) from vtest.avi, or synthetic ones where it cannot be had."""
    encoded: list[bytes] = []
    try:
        video: Path | None = vtest_video()
    except AssetMissing as missing:
        print(f"synthetic frames: {missing}")
        video = None
    if video is not None:
        capture = cv2.VideoCapture(str(video))
        try:
            while len(encoded) < count:
                ok, frame = capture.read()
                if not ok:
                    break
                for _ in range(10):  # every 10th frame: more variety, same cost
                    capture.grab()
                ok, data = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
                encoded.append(data.tobytes())
        finally:
            capture.release()
    rng = np.random.default_rng(0)
    while len(encoded) < count:
        noise = cv2.GaussianBlur(rng.integers(0, 255, (576, 768, 3), dtype=np.uint8), (9, 9), 3)
        ok, data = cv2.imencode(".jpg", noise, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
        encoded.append(data.tobytes())
    return encoded


def timed(call: Callable[[], Any], seconds: float, minimum: int, workers: int = 1) -> list[float]:
    """Runs ``call`` from ``workers`` threads for ``seconds`` (and ``minimum`` times each)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def work() -> None:
        done = 0
        try:
            while done < minimum or time.perf_counter() < deadline:
                started = time.perf_counter()
                call()
                with lock:
                    latencies.append(time.perf_counter() - started)
                done += 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return latencies


class Series:
    """Latencies and busy time accumulated over interleaved rounds."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.latencies: list[float] = []
        self.elapsed = 0.0

    def add(self, call: Callable[[], Any], seconds: float, minimum: int, workers: int) -> None:
        started = time.perf_counter()
        self.latencies += timed(call, seconds, minimum, workers)
        self.elapsed += time.perf_counter() - started

    def result(self) -> Measurement:
        ordered = sorted(self.latencies)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return Measurement(
            self.batch * len(ordered) / self.elapsed, statistics.median(ordered) * 1e3, p95 * 1e3
        )


def run_case(case: Case, arguments: argparse.Namespace, jpegs: list[bytes]) -> list[float]:
    """Measures one case; prints its table; returns the service/bare ratios."""
    engine_config = replace(case.engine, max_batch=max(BATCH_SIZES))
    config = InferenceServerConfig(
        engine=engine_config,
        listen=ListenConfig(host="127.0.0.1", port=0, metrics_port=-1),
    )
    ratios: list[float] = []
    loaded = time.perf_counter()
    running: ServerThread[InferenceServer] = ServerThread(lambda: start_inference_server(config))
    channel: grpc.Channel | None = None
    try:
        server = running.server
        engine = server.engine
        print(
            f"\n== {case.title}\n   model {engine.model_id}, head {engine.head_name}, "
            f"input {engine.input_size[0]}x{engine.input_size[1]}, "
            f"{engine.backend.describe()}, loaded and warmed up in "
            f"{time.perf_counter() - loaded:.1f} s",
            flush=True,
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
        decoded = [decode_rgb(data) for data in jpegs] if engine.spec is not None else []
        print(
            f"   {'batch':>5}  {'service img/s':>13}  {'p50 ms':>8}  {'p95 ms':>8}  "
            f"{'bare img/s':>10}  {'bare p50 ms':>11}  {'service/bare':>12}"
        )
        for batch in BATCH_SIZES:
            images = [
                inference_service_pb2.Image(encoding=common_pb2.ENCODING_JPEG, data=data)
                for data in jpegs[:batch]
            ]
            request = inference_service_pb2.DetectRequest(images=images)

            def detect(request: inference_service_pb2.DetectRequest = request) -> None:
                response = stub.Detect(request, timeout=120)
                failed = [r.error.message for r in response.results if r.HasField("error")]
                if failed:
                    raise RuntimeError(f"the service failed images: {failed}")

            tensor = engine.input_batch(decoded[:batch]) if engine.spec is not None else None

            def bare(tensor: Any = tensor) -> None:
                engine.backend.run(tensor)

            # Interleaved rounds: a machine whose speed drifts (shared CPUs)
            # slows both sides alike instead of whichever ran second.
            service_series, bare_series = Series(batch), Series(batch)
            detect()
            if tensor is not None:
                bare()
            for _ in range(arguments.rounds):
                service_series.add(
                    detect, arguments.seconds, arguments.min_calls, arguments.concurrency
                )
                if tensor is not None:
                    bare_series.add(bare, arguments.seconds, arguments.min_calls, 1)
            service = service_series.result()
            bare_text = f"{'-':>10}  {'-':>11}  {'-':>12}"
            if tensor is not None:
                bare_result = bare_series.result()
                ratio = service.images_per_second / bare_result.images_per_second
                ratios.append(ratio)
                bare_text = (
                    f"{bare_result.images_per_second:>10.1f}  {bare_result.p50_ms:>11.1f}  "
                    f"{ratio:>12.2f}"
                )
            print(
                f"   {batch:>5}  {service.images_per_second:>13.1f}  {service.p50_ms:>8.1f}  "
                f"{service.p95_ms:>8.1f}  {bare_text}",
                flush=True,
            )
    finally:
        if channel is not None:
            channel.close()
        running.stop(grace=1.0)
    return ratios


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench inference", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help="short runs (a minute or two)")
    parser.add_argument(
        "--seconds", type=float, help="seconds per round and side (default 2; quick 1)"
    )
    parser.add_argument(
        "--rounds", type=int, help="interleaved service/bare rounds per row (default 3; quick 1)"
    )
    parser.add_argument(
        "--min-calls", type=int, help="fewest calls per round and client (default 3; quick 2)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=2, help="Detect calls in flight for the service"
    )
    parser.add_argument(
        "--only", default="", help="run only the cases whose title contains this text"
    )
    arguments = parser.parse_args(argv)
    defaults = (1.0, 1, 2) if arguments.quick else (2.0, 3, 3)
    for name, default in zip(("seconds", "rounds", "min_calls"), defaults, strict=True):
        if getattr(arguments, name) is None:
            setattr(arguments, name, default)
    print(
        f"InferenceService vs bare backend: batches {', '.join(map(str, BATCH_SIZES))}; per row "
        f"{arguments.rounds} interleaved rounds of >= {arguments.seconds:g} s and >= "
        f"{arguments.min_calls} calls per client; {arguments.concurrency} Detect calls in "
        f"flight; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; frames: "
        + ("vtest.avi 768x576" if has_vtest() else "synthetic")
    )
    jpegs = frames(max(BATCH_SIZES))
    worst: list[tuple[str, float]] = []
    for case in cases():
        if arguments.only and arguments.only not in case.title:
            continue
        if case.needs_shared and not SHARED.is_dir():
            print(f"\n== {case.title}: skipped, {SHARED} is absent (see ../shared/ASSETS.md)")
            continue
        ratios = run_case(case, arguments, jpegs)
        if ratios:
            worst.append((case.title, ratios[-1]))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (1 min)")
    if worst:
        print(f"\nservice / bare at batch {BATCH_SIZES[-1]} (goal >= {GOAL}):")
        for title, ratio in worst:
            print(f"   {ratio:5.2f}  {'ok  ' if ratio >= GOAL else 'BELOW'}  {title}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
