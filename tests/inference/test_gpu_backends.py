"""The torch backend and GPU engine end to end on the CPU, and the TensorRT backend's start-up.

The torch backend runs an Ultralytics TorchScript export through the GPU data
path (batched decode, fitting on the device, NMS on the device); its
detections must match ONNX Runtime's on the ONNX export of the same network,
on real frames. The frames are cropped to 640x480 so that neither path
resizes: the untrained network amplifies the last grey level of a resize
(OpenCV rounds to uint8, PyTorch does not) into different boxes, which
test_gpu_pipeline.py covers on its own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from framewire.inference.config import EngineConfig
from framewire.inference.engine import Engine
from framewire.v1 import inference_service_pb2
from tests.inference.conftest import (
    RunningServer,
    encode_jpeg,
    engine_config,
    jpeg_image,
    server_config,
)
from tests.inference.gpu_stack import count_matches, require_torch, vtest_rgb, yolo_models

pytestmark = pytest.mark.slow


def _frames(count: int) -> list[bytes]:
    rgb = vtest_rgb(list(range(50, 50 + 40 * count, 40)), size=(640, 480))
    return [encode_jpeg(frame[:, :, ::-1].copy()) for frame in rgb]


def _detect(config: EngineConfig, frames: list[bytes], threshold: float) -> list[list[object]]:
    engine = Engine.load(config)
    try:
        request = inference_service_pb2.DetectRequest(
            images=[
                jpeg_image(
                    frame, options=inference_service_pb2.DetectOptions(score_threshold=threshold)
                )
                for frame in frames
            ]
        )
        response = engine.detect(request)
    finally:
        engine.close()
    for result in response.results:
        assert not result.HasField("error"), result.error.message
    return [list(result.detections) for result in response.results]


@pytest.mark.parametrize("kind", ["yolov8n", "yolo11n"])
def test_torch_backend_detections_match_onnxruntime_on_real_frames(kind: str) -> None:
    torchscript, onnx = yolo_models(kind, 640)
    frames = _frames(6)
    threshold = 0.8
    on_torch = _detect(
        engine_config(model=torchscript, backend="torch", max_batch=8), frames, threshold
    )
    on_onnx = _detect(
        engine_config(model=onnx, backend="onnxruntime", max_batch=8), frames, threshold
    )
    for torch_found, onnx_found in zip(on_torch, on_onnx, strict=True):
        assert len(onnx_found) > 3, "the test model should find boxes on every frame"
        assert len(torch_found) == len(onnx_found)
    matched, total = count_matches(on_torch, on_onnx)
    assert matched == total, f"{total - matched} of {total} detections differ"


def test_torch_engine_serves_detect_over_grpc_with_per_image_errors() -> None:
    torchscript, _ = yolo_models("yolov8n", 640)
    config = server_config(engine_config(model=torchscript, backend="torch", max_batch=4))
    frames = _frames(3)
    with RunningServer(config) as server:
        info = server.stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest(), timeout=30)
        assert info.backend == "torch"
        assert info.head == "yolov8"
        assert (info.input_width, info.input_height) == (640, 640)
        truncated = frames[1][: len(frames[1]) // 4]
        response = server.detect(
            jpeg_image(frames[0]), jpeg_image(truncated), jpeg_image(frames[2])
        )
        first, bad, last = response.results
        assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        for good in (first, last):
            assert not good.HasField("error")
            assert (good.width, good.height) == (640, 480)
            assert good.timings.inference.nanos > 0
            assert all(0 <= d.box.x_min < d.box.x_max <= 1 for d in good.detections)
        with pytest.raises(grpc.RpcError) as too_many:
            server.detect(*(jpeg_image(frames[0]) for _ in range(5)))
        assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _framewire(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framewire.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    """Any file named .onnx: the missing runtime is reported before the model is read."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not read")
    return path


def test_tensorrt_without_tensorrt_stops_at_start_up_saying_how_to_install_it(
    onnx_model: Path,
) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    served = _framewire(
        "serve",
        "--port",
        "0",
        "--metrics-port",
        "-1",
        "--backend",
        "tensorrt",
        "--model",
        str(onnx_model),
    )
    assert served.returncode == 1, served.stderr
    assert "needs NVIDIA TensorRT 10" in served.stderr
    assert "pip install 'framewire[tensorrt-cu13]'" in served.stderr
    built = _framewire("engine", "build", str(onnx_model))
    assert built.returncode == 1, built.stderr
    assert "needs NVIDIA TensorRT 10" in built.stderr


def test_torch_backend_without_pytorch_says_how_to_install_it(tmp_path: Path) -> None:
    """PyTorch hidden from the import system, as on a machine that installed only [server]."""
    model = tmp_path / "model.torchscript"
    model.write_bytes(b"not read")
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    pythonpath = os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))
    served = _framewire(
        "inference",
        "--port",
        "0",
        "--metrics-port",
        "-1",
        "--model",
        str(model),
        env={"PYTHONPATH": pythonpath},
    )
    assert served.returncode == 1, served.stderr
    assert "--backend torch needs PyTorch and torchvision" in served.stderr
    assert "pip install 'framewire[gpu]'" in served.stderr


def test_model_formats_pick_their_backend(tmp_path: Path) -> None:
    from framewire.inference.models import resolve_model

    torchscript = tmp_path / "m.torchscript"
    onnx = tmp_path / "m.onnx"
    for path in (torchscript, onnx):
        path.write_bytes(b"x")
    assert resolve_model(engine_config(model=torchscript)).backend == "torch"  # type: ignore[union-attr]
    assert resolve_model(engine_config(model=onnx, backend="tensorrt")).backend == "tensorrt"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="runs TorchScript"):
        resolve_model(engine_config(model=onnx, backend="torch"))
    with pytest.raises(ValueError, match="only --backend torch"):
        resolve_model(engine_config(model=torchscript, backend="onnxruntime"))


def test_cpu_path_unchanged_when_pytorch_is_installed() -> None:
    """The host engine stays the default for ONNX: installing PyTorch changes nothing there."""
    require_torch()
    from framewire.inference.engine import ModelEngine

    _, onnx = yolo_models("yolov8n", 640)
    engine = Engine.load(engine_config(model=onnx, max_batch=2))
    try:
        assert isinstance(engine, ModelEngine)
        assert engine.backend.name == "onnxruntime"
        assert np.dtype(engine.spec.dtype) == np.float32
    finally:
        engine.close()


def test_torch_backend_on_a_cpu_keeps_to_its_cpu_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    # PyTorch's default pool has a thread per core of the node, whatever the container's
    # CPU limit allows (framewire.common.cpus).
    require_torch()
    import torch

    from framewire.inference.gpu import torch_backend

    torchscript, _ = yolo_models("yolov8n", 640)
    before = torch.get_num_threads()
    monkeypatch.setattr(torch_backend, "quota_cap", lambda: 1)
    try:
        engine = Engine.load(engine_config(model=torchscript, backend="torch", device="cpu"))
        engine.close()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
