"""Reading an ONNX model's inputs, outputs and metadata without onnx or a runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from framewire.inference.signature import TensorInfo, read_onnx_signature
from tests.inference.conftest import model_path


def test_yolo_signature_and_metadata() -> None:
    signature = read_onnx_signature(model_path("yolov8n-untrained.onnx"))
    assert signature.inputs == (TensorInfo("images", (None, 3, None, None), "float32"),)
    assert signature.outputs == (TensorInfo("output0", (None, 84, None), "float32"),)
    assert signature.metadata["imgsz"] == "[640, 640]"
    assert signature.metadata["stride"] == "32"


def test_ssd_signature_matches_onnxruntime() -> None:
    import onnxruntime

    path = model_path("ssd_mobilenet_v2_coco.onnx")
    signature = read_onnx_signature(path)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert [info.name for info in signature.inputs] == [i.name for i in session.get_inputs()]
    assert [info.name for info in signature.outputs] == [o.name for o in session.get_outputs()]
    assert signature.inputs[0].dtype == "uint8"
    assert signature.inputs[0].shape == (None, None, None, 3)
    assert [len(info.shape) for info in signature.outputs] == [3, 2, 2, 1]


def test_non_onnx_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is a JPEG, not a model")
    with pytest.raises(ValueError, match="not an ONNX model"):
        read_onnx_signature(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not an ONNX model"):
        read_onnx_signature(path)
