"""``framewire inference`` as a process: start, serve, stop on SIGTERM, restart on the same port."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framewire.v1 import inference_service_pb2, inference_service_pb2_grpc
from tests.inference.conftest import jpeg_image, media_bytes

READY = re.compile(
    r"InferenceService serving on 127\.0\.0\.1:(\d+) \((?:metrics on (\d+)|no metrics)\)"
)


class Process:
    """``framewire inference ARGS`` with its stderr collected line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "framewire.cli", "inference", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 90.0) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no {pattern.pattern!r} within {timeout} s: {self.log}"
                ) from None
            if line is None:
                raise AssertionError(f"exited before {pattern.pattern!r}: {''.join(self.log)}")
            self.log.append(line)
            match = pattern.search(line)
            if match:
                return match

    def finish(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=5)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.log.append(line)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.finish()
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def serving(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status)


@pytest.mark.slow
def test_serves_the_default_model_stops_on_sigterm_and_restarts_on_the_same_port(
    processes: list[Process],
) -> None:
    first = Process(
        "--host", "127.0.0.1", "--port", "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0"
    )
    processes.append(first)
    ready = first.wait_for(READY)
    port = int(ready[1])
    assert ready[2] is not None
    assert serving(port) == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
        request = inference_service_pb2.DetectRequest(images=[jpeg_image(media_bytes("dog.jpg"))])
        labels = {d.label for d in stub.Detect(request, timeout=30).results[0].detections}
    assert {"dog", "bicycle", "car"} <= labels
    first.process.send_signal(signal.SIGTERM)
    assert first.finish() == 0, "".join(first.log)
    assert any("SIGTERM received" in line for line in first.log)

    # The same port again at once, this time configured through the environment.
    second = Process(
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={"FRAMEWIRE_BACKEND": "null", "FRAMEWIRE_METRICS_PORT": "-1"},
    )
    processes.append(second)
    assert int(second.wait_for(READY)[1]) == port
    assert serving(port) == health_pb2.HealthCheckResponse.SERVING
    second.process.send_signal(signal.SIGINT)
    assert second.finish() == 0, "".join(second.log)


def test_a_missing_model_exits_1_with_the_reason(processes: list[Process], tmp_path) -> None:
    process = Process(
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--metrics-port",
        "-1",
        "--model",
        str(tmp_path / "nothing.onnx"),
    )
    processes.append(process)
    assert process.finish(timeout=60) == 1
    assert any("cannot load the model" in line and "nothing.onnx" in line for line in process.log)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--max-batch", "0"], "max_batch"), (["--backend", "tensorflow"], "invalid choice")],
)
def test_bad_settings_exit_2(processes: list[Process], args: list[str], message: str) -> None:
    process = Process(*args)
    processes.append(process)
    assert process.finish(timeout=60) == 2
    assert message in "".join(process.log)
