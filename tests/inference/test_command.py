"""``framewire inference`` as a process: start, serve, stop on SIGTERM, restart on the same port."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framewire.v1 import inference_service_pb2, inference_service_pb2_grpc
from tests.harness import Process, framewire_command
from tests.inference.conftest import jpeg_image, video_frames

READY = r"InferenceService serving on 127\.0\.0\.1:(\d+) \((?:metrics on (\d+)|no metrics)\)"


def inference(*args: str, env: dict[str, str] | None = None) -> Process:
    """``framewire inference ARGS`` through the one harness (tests/harness.py)."""
    return Process(framewire_command("inference", *args), env=env)


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
    first = inference(
        "--host", "127.0.0.1", "--port", "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0"
    )
    processes.append(first)
    ready = first.wait_for_line(READY, timeout=90)
    port = int(ready[1])
    assert ready[2] is not None
    assert serving(port) == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
        street = jpeg_image(video_frames([0])[0])
        request = inference_service_pb2.DetectRequest(images=[street])
        labels = {d.label for d in stub.Detect(request, timeout=30).results[0].detections}
    assert {"person", "car"} <= labels
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0, first.text()
    assert "SIGTERM received" in first.text()

    # The same port again at once, this time configured through the environment.
    second = inference(
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={"FRAMEWIRE_BACKEND": "null", "FRAMEWIRE_METRICS_PORT": "-1"},
    )
    processes.append(second)
    assert int(second.wait_for_line(READY, timeout=90)[1]) == port
    assert serving(port) == health_pb2.HealthCheckResponse.SERVING
    second.signal(signal.SIGINT)
    assert second.wait(timeout=30) == 0, second.text()


def test_a_missing_model_exits_1_with_the_reason(processes: list[Process], tmp_path) -> None:
    process = inference(
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
    assert process.wait(timeout=60) == 1
    assert any(
        "cannot load the model" in line and "nothing.onnx" in line for line in process.output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--max-batch", "0"], "max_batch"), (["--backend", "tensorflow"], "invalid choice")],
)
def test_bad_settings_exit_2(processes: list[Process], args: list[str], message: str) -> None:
    process = inference(*args)
    processes.append(process)
    assert process.wait(timeout=60) == 2
    assert message in process.text()
