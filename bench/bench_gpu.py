"""The GPU data path against the bare model: ``python -m bench gpu``.

For YOLOv8n and YOLO11n at 640 (Ultralytics TorchScript exports, random
weights from tools/yolo_test_models.py) on the torch backend:

- (a) **bare**: the backend's own run on an input batch already on the
  device (CUDA graph replay where used), synchronised per batch, in img/s;
- (b) **engine**: ``Engine.detect`` from 768x576 JPEG bytes to detections
  (batched decode, fitting, the model, NMS on the device), two calls in
  flight as ingest sends them;
- (c) **service**: ``framewire serve`` with ``--streams`` loopback streams of
  768x576 JPEGs sending flat out within their window;

at batch 1, 8, 32 and 64, with the ratios b/a and c/a, and the end-to-end
p50 at one stream (one frame in flight). Goals (issue #8): b/a >= 0.9 at
batch >= 32, e2e p50 <= 10 ms at one stream on a GPU.

``--json PATH`` writes the figures with the GPU's name and the library
versions. ``--device cpu`` runs the same on the CPU (a smoke test of the
script: CPU figures say nothing about a GPU). ``--models DIR`` takes
prebuilt ``KIND.torchscript`` files (a GPU machine without Ultralytics).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2

from bench.bench_ingest import measure, serve
from framewire.inference.config import EngineConfig
from framewire.inference.engine import Engine
from framewire.inference.gpu.backend import DeviceBackend
from framewire.inference.inputs import decode_rgb
from framewire.v1 import common_pb2, inference_service_pb2
from tests.assets import REPO_ROOT, AssetMissing, vtest_video
from tests.harness import free_port, health_status

KINDS = ("yolov8n", "yolo11n")
BATCHES = (1, 8, 32, 64)
GOAL_ENGINE = 0.9
GOAL_P50_MS = 10.0


def frames_768(count: int) -> list[bytes]:
    """vtest.avi frames as they come (768x576), JPEG quality 80."""
    try:
        video = vtest_video()
    except AssetMissing as missing:
        raise SystemExit(f"bench gpu needs vtest.avi: {missing}") from missing
    capture = cv2.VideoCapture(str(video))
    frames: list[bytes] = []
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    capture.release()
    return frames


def model_file(kind: str, models: Path | None) -> Path:
    if models is not None:
        path = models / f"{kind}.torchscript"
        if not path.is_file():
            raise SystemExit(f"{path} is missing (--models)")
        return path
    from tests.inference.gpu_stack import yolo_models

    return yolo_models(kind, 640)[0]


def timed(run: Any, minimum_seconds: float, minimum_runs: int = 5) -> float:
    """Seconds per call of ``run``, after a warm-up, over at least the given time and runs.

    The warm-up is long (a third of the time, at least 5 runs): TorchScript's profiling
    executor re-optimizes a module over its first runs at each new shape.
    """
    warm_until = time.perf_counter() + minimum_seconds / 3
    warm = 0
    while warm < minimum_runs or time.perf_counter() < warm_until:
        run()
        warm += 1
    runs = 0
    started = time.perf_counter()
    while runs < minimum_runs or time.perf_counter() - started < minimum_seconds:
        run()
        runs += 1
    return (time.perf_counter() - started) / runs


def bare(engine: Engine, frames: list[bytes], batch: int, seconds: float) -> float:
    """(a) img/s of the backend alone, on real frames already prepared on the device."""
    import torch

    backend = engine.backend
    assert isinstance(backend, DeviceBackend)
    images = [decode_rgb(frames[i % len(frames)]) for i in range(batch)]
    target = backend.device_input(0)
    target[:batch].copy_(torch.from_numpy(engine.input_batch(images)))

    def once() -> None:
        with backend.exclusive():
            backend.run_device(0, batch)
            backend.synchronize()

    return batch / timed(once, seconds)


def through_engine(engine: Engine, frames: list[bytes], batch: int, seconds: float) -> float:
    """(b) img/s of Engine.detect from JPEG bytes, two calls in flight."""
    request = inference_service_pb2.DetectRequest(
        images=[
            inference_service_pb2.Image(
                encoding=common_pb2.ENCODING_JPEG, data=frames[i % len(frames)]
            )
            for i in range(batch)
        ]
    )
    timed(lambda: engine.detect(request), seconds / 3)  # warm-up, as for the bare model
    done = [0, 0]
    stop = time.perf_counter() + seconds
    failures: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            while time.perf_counter() < stop:
                response = engine.detect(request)
                assert not any(r.HasField("error") for r in response.results)
                done[slot] += batch
        except BaseException as error:  # reported below, never lost in the thread
            failures.append(error)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sum(done) / (time.perf_counter() - started)


def _load_part(port: int, frames: list[bytes], seconds: float, streams: int, window: int) -> Any:
    """One load process's share of the streams (a top-level function: it runs in a child)."""
    load = [(data, 768, 576) for data in frames]
    outcome = measure(port, load, seconds, streams=streams, rate=None, window=window)
    latencies = sorted(latency for log in outcome.logs for latency in log.latencies)
    return outcome.frames_per_second, latencies, outcome.accounted


def service(
    model: Path, device: str, frames: list[bytes], *, batch: int, streams: int, window: int,
    seconds: float, workers: int = 1, load_processes: int = 1,
) -> tuple[float, float]:  # fmt: skip
    """(c) frames/s and p50 (ms) of framewire serve with loopback streams.

    The streams are spread over ``load_processes`` processes: one Python process drives
    a few thousand messages a second, less than a GPU model answers.
    """
    port, metrics = free_port(), free_port()
    options = (
        "--backend", "torch", "--model", str(model), "--device", device,
        "--max-batch-size", str(batch), "--max-frame-age", "5", "--workers", str(workers),
    )  # fmt: skip
    parts = max(1, min(load_processes, streams))
    shares = [streams // parts + (1 if index < streams % parts else 0) for index in range(parts)]
    with serve(port, metrics, *options):
        health_deadline = time.monotonic() + 120
        while health_status(port) != "SERVING" and time.monotonic() < health_deadline:
            time.sleep(0.1)  # with --workers, each worker serves once the model process does
        if parts == 1:
            results = [_load_part(port, frames, seconds, streams, window)]
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(parts, mp_context=context) as pool:
                results = list(
                    pool.map(
                        _load_part,
                        [port] * parts,
                        [frames] * parts,
                        [seconds] * parts,
                        shares,
                        [window] * parts,
                    )
                )
    if not all(accounted for _, _, accounted in results):
        raise SystemExit("the service lost frames: sent != answered + skipped")
    latencies = sorted(latency for _, part, _ in results for latency in part)
    return sum(fps for fps, _, _ in results), statistics.median(latencies) * 1000


def versions(device: str) -> dict[str, Any]:
    import torch
    import torchvision

    found: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "framewire_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=REPO_ROOT, check=False,
        ).stdout.strip(),
    }  # fmt: skip
    if device == "cuda":
        found["gpu"] = torch.cuda.get_device_name(0)
        found["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        found["driver_cuda"] = (
            torch.cuda.driver_version() if hasattr(torch.cuda, "driver_version") else None
        )
    else:
        found["gpu"] = None
        found["cpu"] = platform.processor() or platform.machine()
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gpu")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--models", type=Path, help="folder of KIND.torchscript files")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--streams", type=int, default=64, help="streams for (c)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=1, help="framewire serve --workers for (c)")
    parser.add_argument(
        "--load-processes",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 4),
        help="processes driving the streams of (c) (default: a quarter of the cores)",
    )
    parser.add_argument("--quick", action="store_true", help="batch 1 and 8, 1 s each")
    parser.add_argument("--json", type=Path, help="write the figures here")
    arguments = parser.parse_args(argv)
    import torch

    if arguments.device == "cuda" and not torch.cuda.is_available():
        print("bench gpu: no CUDA GPU here; --device cpu runs the script on the CPU")
        return 0
    batches = [int(b) for b in arguments.batches.split(",")]
    seconds = arguments.seconds
    streams = arguments.streams
    if arguments.quick:
        batches, seconds, streams = [b for b in batches if b <= 8] or [1], 1.0, min(streams, 4)
    frames = frames_768(64)
    report: dict[str, Any] = {
        "device": arguments.device,
        "versions": versions(arguments.device),
        "service": {"streams": streams, "workers": arguments.workers,
                    "load_processes": arguments.load_processes},
    }  # fmt: skip
    print(f"bench gpu on {report['versions'].get('gpu') or 'the CPU'}: {report['versions']}")
    rows = []
    for kind in arguments.kinds.split(","):
        model = model_file(kind, arguments.models)
        config = replace(
            EngineConfig(), model=model, backend="torch", device=arguments.device,
            max_batch=max(batches),
        )  # fmt: skip
        engine = Engine.load(config)
        try:
            precision = getattr(engine.backend, "precision", "?")
            for batch in batches:
                a = bare(engine, frames, batch, seconds)
                b = through_engine(engine, frames, batch, seconds)
                rows.append(
                    {"model": kind, "precision": precision, "batch": batch, "bare": a, "engine": b}
                )
                print(
                    f"{kind} {precision} batch {batch:>2}: bare {a:8.1f} img/s  engine {b:8.1f} "
                    f"img/s  engine/bare {b / a:5.2f}"
                    + (f"  (goal >= {GOAL_ENGINE})" if batch >= 32 else ""),
                    flush=True,
                )
        finally:
            engine.close()
        biggest = max(batches)
        top = next(r for r in rows if r["model"] == kind and r["batch"] == biggest)
        fps, _ = service(
            model, arguments.device, frames, batch=biggest, streams=streams, window=2,
            seconds=seconds * 2, workers=arguments.workers,
            load_processes=arguments.load_processes,
        )  # fmt: skip
        top["service"] = fps
        print(
            f"{kind} service, {streams} streams from {arguments.load_processes} processes, "
            f"{arguments.workers} ingest worker(s), max batch {biggest}: {fps:8.1f} frames/s  "
            f"service/bare {fps / top['bare']:5.2f}",
            flush=True,
        )
        _, single_p50 = service(
            model, arguments.device, frames, batch=biggest, streams=1, window=1, seconds=seconds
        )
        report.setdefault("e2e_p50_ms_one_stream", {})[kind] = single_p50
        print(
            f"{kind} one stream, one frame in flight: e2e p50 {single_p50:.1f} ms "
            f"(goal <= {GOAL_P50_MS})"
        )
    report["rows"] = rows
    print("\nmodel    batch   bare img/s  engine img/s  b/a   service/a")
    for row in rows:
        service_ratio = f"{row['service'] / row['bare']:.2f}" if "service" in row else ""
        print(
            f"{row['model']:<8} {row['batch']:>5} {row['bare']:12.1f} {row['engine']:13.1f} "
            f"{row['engine'] / row['bare']:5.2f} {service_ratio:>9}"
        )
    median_ratio = statistics.median(r["engine"] / r["bare"] for r in rows)
    print(f"median engine/bare over every row: {median_ratio:.2f}")
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {arguments.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
