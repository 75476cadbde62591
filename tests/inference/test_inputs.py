"""Settling the model input from the model's signature, the settings and the head."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from framewire.common.errors import FramewireError
from framewire.inference.config import EngineConfig
from framewire.inference.heads import SsdHead, YoloV8Head
from framewire.inference.inputs import InputSpec, decode_rgb, input_spec
from framewire.inference.signature import ModelSignature, TensorInfo
from tests.inference.conftest import encode_jpeg

YOLO_METADATA = {"imgsz": "[480, 640]", "stride": "32"}


def signature(shape: tuple[int | None, ...], dtype: str = "float32", **metadata: str):
    return ModelSignature(
        (TensorInfo("input", shape, dtype),), (TensorInfo("out", (None,), "float32"),), metadata
    )


def test_dynamic_yolo_takes_its_size_from_metadata() -> None:
    spec = input_spec(
        signature((None, 3, None, None), **YOLO_METADATA), YoloV8Head, EngineConfig(), 8
    )
    assert spec == InputSpec("NCHW", "float32", 640, 480, None)
    assert spec.batch_shape(8) == (8, 3, 480, 640)


def test_dynamic_ssd_defaults_to_300_nhwc_uint8() -> None:
    spec = input_spec(signature((None, None, None, 3), "uint8"), SsdHead, EngineConfig(), 8)
    assert spec == InputSpec("NHWC", "uint8", 300, 300, None)
    assert spec.batch_shape(2) == (2, 300, 300, 3)


def test_configured_size_wins_and_must_fit_the_stride() -> None:
    config = EngineConfig(input_size=(320, 256))
    spec = input_spec(signature((None, 3, None, None), **YOLO_METADATA), YoloV8Head, config, 8)
    assert (spec.width, spec.height) == (320, 256)
    with pytest.raises(ValueError, match="stride 32"):
        input_spec(
            signature((None, 3, None, None), **YOLO_METADATA),
            YoloV8Head,
            EngineConfig(input_size=(300, 300)),
            8,
        )


def test_static_exports_fix_size_and_batch() -> None:
    static = signature((1, 3, 640, 640))
    assert input_spec(static, YoloV8Head, EngineConfig(), 1) == InputSpec(
        "NCHW", "float32", 640, 640, 1
    )
    with pytest.raises(ValueError, match="--max-batch 1"):
        input_spec(static, YoloV8Head, EngineConfig(), 8)
    with pytest.raises(ValueError, match="differs from the model's fixed input 640x640"):
        input_spec(static, YoloV8Head, EngineConfig(input_size=(320, 320)), 1)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (signature((None, 1, None, None)), "3-channel"),
        (signature((None, 3, None)), "3-channel"),
        (signature((None, 3, None, None), "int64"), "int64"),
        (
            ModelSignature(
                (TensorInfo("a", (1, 3, 8, 8), "float32"), TensorInfo("b", (1,), "float32")), ()
            ),
            "2 inputs",
        ),
    ],
)
def test_inputs_framewire_cannot_feed(model: ModelSignature, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        input_spec(model, YoloV8Head, EngineConfig(), 8)


def test_decode_rgb_gives_rgb_and_refuses_garbage() -> None:
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    rgb = decode_rgb(encode_jpeg(bgr, quality=100))
    assert rgb.shape == (4, 6, 3)
    assert rgb[..., 0].min() > 240  # red first
    assert rgb[..., 2].max() < 15
    with pytest.raises(FramewireError) as garbage:
        decode_rgb(b"\xff\xd8\xff\xdb garbage")
    assert garbage.value.code == grpc.StatusCode.INVALID_ARGUMENT
