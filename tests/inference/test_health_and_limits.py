"""Health goes SERVING only after load and warm-up; busy servers shed load; the null backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framewire.common.serving import LoopThread
from framewire.inference.server import SERVICE_NAME, InferenceServer
from framewire.v1 import inference_service_pb2, inference_service_pb2_grpc
from tests.inference.conftest import (
    HeldModel,
    RunningServer,
    engine_config,
    jpeg_image,
    media_bytes,
    model_path,
    running_server,
    server_config,
    synthetic_jpeg,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread("test-health")
    yield thread
    thread.close()


def health_of(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(response.status)


@pytest.mark.slow
def test_health_is_not_serving_until_the_model_is_warm(loop: LoopThread) -> None:
    config = server_config(engine_config(model=model_path("yolov8n-untrained.onnx"), max_batch=2))
    server: InferenceServer = loop.run(InferenceServer.start(config))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            # Bound and answering, but the model is loading: NOT_SERVING, calls UNAVAILABLE.
            assert health_of(channel, "") == NOT_SERVING
            assert health_of(channel, SERVICE_NAME) == NOT_SERVING
            stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as loading:
                stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest(), timeout=10)
            assert loading.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(RuntimeError, match="not loaded"):
                _ = server.engine

            engine = loop.run(server.ready())
            # ready() returns only after the warm-up batch ran.
            assert engine.warmup_seconds > 0
            assert health_of(channel, "") == SERVING
            assert health_of(channel, SERVICE_NAME) == SERVING
            info = stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest(), timeout=10)
            assert info.head == "yolov8"
            request = inference_service_pb2.DetectRequest(
                images=[jpeg_image(media_bytes("dog.jpg"))]
            )
            assert len(stub.Detect(request, timeout=30).results) == 1
    finally:
        loop.run(server.stop(1.0))


def test_a_model_that_cannot_load_keeps_health_not_serving(loop: LoopThread, tmp_path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    server: InferenceServer = loop.run(
        InferenceServer.start(server_config(engine_config(model=broken), metrics_port=-1))
    )
    try:
        with pytest.raises(ValueError, match=r"broken\.onnx"):
            loop.run(server.ready())
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert health_of(channel, "") == NOT_SERVING
        assert server.metrics_port is None
    finally:
        loop.run(server.stop(0))


def test_a_busy_server_refuses_calls_beyond_its_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    config = server_config(engine_config(backend="null", concurrent_batches=1), metrics_port=-1)
    with RunningServer(replace(config, max_queued_calls=0)) as server:
        # Hold the first call inside the model until the second has been answered.
        request = inference_service_pb2.DetectRequest(images=[jpeg_image(synthetic_jpeg(64, 48))])
        with HeldModel(server.server.engine, monkeypatch) as model:
            first = server.stub.Detect.future(request, timeout=60)
            model.wait_inside()
            with pytest.raises(grpc.RpcError) as second:
                server.stub.Detect(request, timeout=30)
        assert second.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "busy" in str(second.value.details())
        assert len(first.result().results) == 1
        # Once the first finished there is room again.
        assert len(server.detect(jpeg_image(synthetic_jpeg(64, 48))).results) == 1


@pytest.fixture(scope="module")
def null_server() -> Iterator[RunningServer]:
    yield from running_server(engine_config(backend="null", max_batch=16, max_image_pixels=10_000))


def test_null_backend_checks_headers_and_finds_nothing(null_server: RunningServer) -> None:
    info = null_server.stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest())
    assert (info.model_id, info.backend, info.head) == ("null", "null", "none")
    assert (info.input_width, info.input_height, info.max_batch_size) == (0, 0, 16)
    good = synthetic_jpeg(100, 100)
    results = null_server.detect(
        jpeg_image(good),
        jpeg_image(good, width=99),
        jpeg_image(synthetic_jpeg(101, 100)),
        jpeg_image(good[:-100]),
        *[jpeg_image(good)] * 12,
    ).results
    assert len(results) == 16
    assert not results[0].HasField("error")
    assert len(results[0].detections) == 0
    # No decoding: no decode time and no decoded size, only the total.
    assert not results[0].timings.HasField("decode")
    assert results[0].timings.HasField("total")
    assert (results[0].width, results[0].height) == (0, 0)
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert results[2].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert results[3].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "truncated" in results[3].error.message
