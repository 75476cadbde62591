"""Ingest benchmarks: what the real-time machinery costs, measured side by side in one run.

1. transport: `framewire serve --backend null` (streams, validation, slots,
   batcher, routing, metrics; no model) against a bare grpc.aio echo of the
   same StreamFrames messages. Frames/s ratio (goal >= 0.6) and added p50.
2. model-bound: `framewire serve` with SSD MobileNet v2 on ONNX Runtime,
   fed by 4 agent-like streams, against the bare ONNX Runtime session on
   pre-decoded tensors at the batch size ingest formed. Ratio (goal >= 0.9).
3. overload 2x: one stream at half the measured capacity, then four streams
   offering twice the capacity; p99 latency of processed frames over the
   unloaded p99 (goal <= 2.0), and every frame accounted for.

Servers run as subprocesses (`framewire serve`), the load from this process,
so the server has a core of its own as it would in production. Run:
``python -m bench ingest`` or ``python -m bench ingest -- --quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import grpc
from prometheus_client.parser import text_string_to_metric_families

from framewire.common.protoutil import timestamp_from_ns
from framewire.v1 import common_pb2, ingest_service_pb2, ingest_service_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FRAMEWIRE_SHARED", str(REPO_ROOT.parent / "shared")))
SSD_ONNX = SHARED / "models" / "ssd_mobilenet_v2_coco.onnx"
VTEST = SHARED / "media" / "vtest.avi"

EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]


# -- the load ------------------------------------------------------------------


@dataclass
class StreamLog:
    """What one benchmark stream saw."""

    sent: int = 0
    dropped_locally: int = 0  # window full when a frame was due: an edge skip
    results: int = 0
    skipped: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)  # send to result, seconds


def load_frames(count: int = 40) -> list[tuple[bytes, int, int]]:
    """vtest.avi frames at 640x480 as JPEG, or synthetic frames when ../shared is absent."""
    frames: list[tuple[bytes, int, int]] = []
    capture = cv2.VideoCapture(str(VTEST))
    while len(frames) < count and capture.isOpened():
        ok, image = capture.read()
        if not ok:
            break
        image = cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA)
        frames.append(
            (cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(), 640, 480)
        )
    capture.release()
    if not frames:
        raise SystemExit(f"bench ingest needs {VTEST} (see ../shared/ASSETS.md)")
    return frames


async def one_stream(
    port: int,
    name: str,
    frames: list[tuple[bytes, int, int]],
    *,
    rate: float | None,
    window: int,
    duration: float,
) -> StreamLog:
    """An agent-like stream: at most ``window`` unanswered; at ``rate`` fps, or flat out."""
    log = StreamLog()
    sent_at: dict[int, float] = {}
    room = asyncio.Event()
    room.set()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: Any = ingest_service_pb2_grpc.IngestServiceStub(channel).StreamFrames()  # type: ignore[call-arg]
        config = ingest_service_pb2.StreamConfig(stream_id=name, max_in_flight=window)
        await call.write(ingest_service_pb2.StreamFramesRequest(config=config))
        accepted = await call.read()
        assert accepted.HasField("accepted"), accepted

        async def write() -> None:
            started = time.monotonic()
            seq = 0
            while time.monotonic() - started < duration:
                if rate is not None:
                    due = started + (log.sent + log.dropped_locally) / rate
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    if len(sent_at) >= window:
                        log.dropped_locally += 1
                        continue
                else:
                    while len(sent_at) >= window:
                        room.clear()
                        await room.wait()
                seq += 1
                data, width, height = frames[seq % len(frames)]
                frame = ingest_service_pb2.Frame(
                    seq=seq,
                    capture_time=timestamp_from_ns(time.time_ns()),
                    encoding=common_pb2.ENCODING_JPEG,
                    width=width,
                    height=height,
                    data=data,
                )
                sent_at[seq] = time.monotonic()
                log.sent += 1
                await call.write(ingest_service_pb2.StreamFramesRequest(frame=frame))
            await call.done_writing()

        async def read() -> None:
            while (response := await call.read()) is not EOF:
                skipped = []
                if response.HasField("result"):
                    result = response.result
                    started = sent_at.pop(result.seq, None)
                    if result.HasField("error"):
                        log.failed += 1
                    else:
                        log.results += 1
                        if started is not None:
                            log.latencies.append(time.monotonic() - started)
                    skipped = list(result.skipped)
                elif response.HasField("skip_notice"):
                    skipped = list(response.skip_notice.skipped)
                for entry in skipped:
                    sent_at.pop(entry.seq, None)
                    log.skipped += 1
                room.set()

        await asyncio.gather(write(), read())
        code = await call.code()
        assert code == grpc.StatusCode.OK, (code, await call.details())
    return log


def drive(
    port: int,
    frames: list[tuple[bytes, int, int]],
    *,
    streams: int,
    rate: float | None,
    window: int,
    duration: float,
) -> list[StreamLog]:
    async def all_streams() -> list[StreamLog]:
        return list(
            await asyncio.gather(
                *(
                    one_stream(
                        port, f"bench-{n}", frames, rate=rate, window=window, duration=duration
                    )
                    for n in range(streams)
                )
            )
        )

    return asyncio.run(all_streams())


@dataclass(frozen=True)
class Outcome:
    frames_per_second: float
    p50: float
    p99: float
    logs: list[StreamLog]

    @property
    def accounted(self) -> bool:
        """Every frame sent was answered: a result, a failure or a listed skip."""
        return all(log.sent == log.results + log.failed + log.skipped for log in self.logs)


def measure(
    port: int, frames: list[tuple[bytes, int, int]], duration: float, **load: Any
) -> Outcome:
    started = time.monotonic()
    logs = drive(port, frames, duration=duration, **load)
    elapsed = time.monotonic() - started
    latencies = sorted(latency for log in logs for latency in log.latencies)
    answered = sum(log.results for log in logs)
    return Outcome(
        frames_per_second=answered / elapsed,
        p50=statistics.median(latencies),
        p99=latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        logs=logs,
    )


# -- servers -------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def subprocess_server(args: list[str], ready: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if ready in line:
                break
        else:
            raise RuntimeError(f"{' '.join(args)} exited with {process.wait()} before it was ready")
        yield process
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()


def serve(
    port: int, metrics_port: int, *options: str
) -> AbstractContextManager[subprocess.Popen[str]]:
    command = [
        sys.executable, "-m", "framewire.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port), *options,
    ]  # fmt: skip
    return subprocess_server(command, "IngestService serving on")


def scrape(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                values[sample.name] = sample.value
    return values


class EchoServicer(ingest_service_pb2_grpc.IngestServiceServicer):
    """The floor: answers each frame at once, no validation, slots, batching or metrics."""

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


async def run_echo_server(port: int) -> None:
    from framewire.common.transport import TransportConfig, server_options

    server = grpc.aio.server(options=server_options(TransportConfig()))
    ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(EchoServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("echo serving", flush=True)
    await server.wait_for_termination()


def echo(port: int) -> AbstractContextManager[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "bench.bench_ingest", "--echo-server", str(port)]
    return subprocess_server(command, "echo serving")


# -- the three benchmarks -------------------------------------------------------


def verdict(ok: bool) -> str:
    return "meets the goal" if ok else "MISSES the goal"


def transport(frames: list[tuple[bytes, int, int]], duration: float, rounds: int) -> None:
    print("\n== transport: serve --backend null vs a bare grpc.aio echo (4 streams, window 4)")
    load = {"streams": 4, "rate": None, "window": 4}
    echo_port, serve_port = free_port(), free_port()
    ratios, added = [], []
    with echo(echo_port), serve(serve_port, -1, "--backend", "null"):
        measure(echo_port, frames, 1.0, **load)  # warm up both
        measure(serve_port, frames, 1.0, **load)
        for round_ in range(rounds):  # interleaved, so drift hits both alike
            bare = measure(echo_port, frames, duration, **load)
            ours = measure(serve_port, frames, duration, **load)
            ratios.append(ours.frames_per_second / bare.frames_per_second)
            added.append(ours.p50 - bare.p50)
            print(
                f"   round {round_ + 1}: echo {bare.frames_per_second:7.0f} frames/s "
                f"p50 {bare.p50 * 1000:5.1f} ms | serve(null) {ours.frames_per_second:7.0f} "
                f"frames/s p50 {ours.p50 * 1000:5.1f} ms | accounted {ours.accounted}"
            )
    ratio = statistics.median(ratios)
    print(
        f"   serve/echo frames/s ratio {ratio:.2f} (goal >= 0.6: {verdict(ratio >= 0.6)}); "
        f"added p50 latency {statistics.median(added) * 1000:.1f} ms"
    )


def model_bound(frames: list[tuple[bytes, int, int]], duration: float, rounds: int) -> float:
    """Returns the capacity measured (frames/s) for the overload benchmark."""
    print("\n== model-bound: serve (SSD MobileNet v2, ONNX Runtime) vs the bare ORT session")
    from framewire.inference import Engine, EngineConfig
    from framewire.inference.inputs import decode_rgb

    engine = Engine.load(EngineConfig(model=SSD_ONNX, backend="onnxruntime"))
    decoded = [decode_rgb(data) for data, _, _ in frames[:8]]

    def bare_rate(batch: int) -> float:
        tensor = engine.input_batch(decoded[:batch])
        engine.backend.run(tensor)
        runs, started = 0, time.monotonic()
        while time.monotonic() - started < duration:
            engine.backend.run(tensor)
            runs += 1
        return runs * batch / (time.monotonic() - started)

    served, bare, ratios = [], [], []
    port, metrics_port = free_port(), free_port()
    try:
        with serve(port, metrics_port, "--model", str(SSD_ONNX), "--backend", "onnxruntime"):
            measure(port, frames, 2.0, streams=4, rate=None, window=2)
            for round_ in range(rounds):  # interleaved, so drift hits both alike
                before = scrape(metrics_port)
                ours = measure(port, frames, duration, streams=4, rate=None, window=2)
                after = scrape(metrics_port)
                count = after["framewire_batch_size_count"] - before["framewire_batch_size_count"]
                total = after["framewire_batch_size_sum"] - before["framewire_batch_size_sum"]
                batch = max(1, round(total / count))
                # The bare session runs the batch size ingest formed, on the same frames.
                theirs = bare_rate(batch)
                served.append(ours.frames_per_second)
                bare.append(theirs)
                ratios.append(ours.frames_per_second / theirs)
                print(
                    f"   round {round_ + 1}: serve {ours.frames_per_second:5.1f} frames/s "
                    f"(mean batch {total / count:.2f}, p50 {ours.p50 * 1000:.0f} ms, accounted "
                    f"{ours.accounted}) | bare ORT at batch {batch}: {theirs:5.1f} frames/s"
                )
    finally:
        engine.close()
    ratio = statistics.median(ratios)
    print(f"   serve/bare ratio {ratio:.2f} (goal >= 0.9: {verdict(ratio >= 0.9)})")
    return statistics.median(served)


def overload(frames: list[tuple[bytes, int, int]], duration: float, capacity: float) -> None:
    print(f"\n== overload 2x: capacity {capacity:.1f} frames/s (SSD on ONNX Runtime)")
    rate = capacity / 2  # per stream: one stream is half the capacity, four are twice it
    calm_p50 = 0.0
    for tuned in (False, True):
        title = "defaults (max-frame-age 0.5 s, 2 batches in flight, batches up to 8)"
        options: tuple[str, ...] = ()
        if tuned:
            title = "latency-tuned (max-frame-age = unloaded p50, 1 batch in flight, batch 1)"
            options = (
                "--max-frame-age", f"{calm_p50:.3f}", "--batches-in-flight", "1",
                "--max-batch-size", "1",
            )  # fmt: skip
        port = free_port()
        model = ("--model", str(SSD_ONNX), "--backend", "onnxruntime")
        with serve(port, -1, *model, *options):
            measure(port, frames, 2.0, streams=1, rate=rate, window=2)
            calm = measure(port, frames, duration, streams=1, rate=rate, window=2)
            busy = measure(port, frames, duration, streams=4, rate=rate, window=2)
        calm_p50 = calm_p50 or calm.p50
        ratio = busy.p99 / calm.p99
        offered = sum(log.sent + log.dropped_locally for log in busy.logs) / duration
        served = [log.results for log in busy.logs]
        print(f"   {title}:")
        print(
            f"     unloaded: 1 stream at {rate:.1f} fps, p50 {calm.p50 * 1000:.0f} ms, "
            f"p99 {calm.p99 * 1000:.0f} ms"
        )
        print(
            f"     overload: 4 streams offering {offered:.1f} fps, served "
            f"{busy.frames_per_second:.1f} fps (per stream {served}), p50 "
            f"{busy.p50 * 1000:.0f} ms, p99 {busy.p99 * 1000:.0f} ms; skipped at the edge "
            f"{sum(log.dropped_locally for log in busy.logs)}, by the server "
            f"{sum(log.skipped for log in busy.logs)}"
        )
        print(
            f"     p99 overload/unloaded {ratio:.2f} (goal <= 2.0: {verdict(ratio <= 2.0)}); "
            f"every frame accounted for: {busy.accounted and calm.accounted}"
        )


def main(argv: list[str]) -> int:
    if argv[:1] == ["--echo-server"]:
        asyncio.run(run_echo_server(int(argv[1])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench ingest")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    arguments = parser.parse_args(argv)
    duration = 3.0 if arguments.quick else 10.0
    frames = load_frames()
    transport(frames, duration, rounds=1 if arguments.quick else 3)
    if not SSD_ONNX.is_file():
        print(f"\nmodel-bound and overload skipped: {SSD_ONNX} is absent (../shared/ASSETS.md)")
        return 0
    capacity = model_bound(frames, duration, rounds=1 if arguments.quick else 3)
    overload(frames, duration, capacity)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
