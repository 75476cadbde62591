"""The TensorRT backend's own code, run on the CPU against a stand-in for TensorRT.

tests/inference/fake_tensorrt.py offers the TensorRT 10 calls the backend
makes, with ONNX Runtime doing the work, so that building through the cache,
binding buffers by address, dynamic shapes within the profile and the GPU
engine around it all run here. What it cannot show is TensorRT's behaviour
itself, which has never run on this project's machines (docs/gpu.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from framewire.inference.engine import Engine
from tests.inference import fake_tensorrt
from tests.inference.conftest import box, engine_config, iou
from tests.inference.gpu_stack import yolo_models
from tests.inference.test_gpu_backends import _detect, _frames

pytestmark = pytest.mark.slow


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tensorrt.install(monkeypatch)


def test_tensorrt_backend_serves_the_same_detections_as_onnxruntime(
    fake: None, tmp_path: Path
) -> None:
    _, onnx = yolo_models("yolov8n", 640)
    frames = _frames(5)  # an odd count: the engine runs batch 5 of a profile up to 8
    config = engine_config(model=onnx, backend="tensorrt", max_batch=8, engine_cache=tmp_path)
    on_trt = _detect(config, frames, 0.8)
    on_ort = _detect(engine_config(model=onnx, backend="onnxruntime"), frames, 0.8)
    assert len(fake_tensorrt.builds) == 1
    (build,) = fake_tensorrt.builds
    assert build["profile"]["images"] == [[1, 3, 640, 640], [8, 3, 640, 640], [8, 3, 640, 640]]
    assert build["flags"] == []  # fp32: this stand-in's "GPU" is the CPU
    for trt_found, ort_found in zip(on_trt, on_ort, strict=True):
        assert len(trt_found) == len(ort_found) > 0
        for got, want in zip(trt_found, ort_found, strict=True):
            assert got.label == want.label  # type: ignore[attr-defined]
            assert iou(box(got), box(want)) >= 0.99


def test_a_restart_loads_the_cached_engine_and_a_new_max_batch_builds_another(
    fake: None, tmp_path: Path
) -> None:
    _, onnx = yolo_models("yolov8n", 640)
    for max_batch in (4, 4, 2):
        engine = Engine.load(
            engine_config(
                model=onnx, backend="tensorrt", max_batch=max_batch, engine_cache=tmp_path
            )
        )
        assert engine.backend.name == "tensorrt"
        assert engine.model_info().max_batch_size == max_batch
        engine.close()
    assert len(fake_tensorrt.builds) == 2  # batch 4 once, batch 2 once
    assert len(fake_tensorrt.engine_files(tmp_path)) == 2


def test_engine_build_prebuilds_what_the_server_then_loads(
    fake: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from framewire.cli import main

    _, onnx = yolo_models("yolov8n", 640)
    args = ["engine", "build", str(onnx), "--max-batch", "4", "--engine-cache", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "cache key: " in printed
    assert "built in " in printed
    assert main(args) == 0
    assert "already built: loaded from the cache" in capsys.readouterr().out
    engine = Engine.load(
        engine_config(model=onnx, backend="tensorrt", max_batch=4, engine_cache=tmp_path)
    )
    engine.close()
    assert len(fake_tensorrt.builds) == 1  # the server found the prebuilt engine
