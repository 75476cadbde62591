"""The GPU data path against the CPU path's rules: decode, fitting, and YOLO decoding with NMS.

These run on whatever device PyTorch has (the CPU in CI): the code is the
same on CUDA, where tests/inference/test_gpu_cuda.py repeats the comparison.
"""

from __future__ import annotations

import numpy as np
import pytest

from framewire.common.errors import FramewireError
from framewire.inference.heads import DecodeOptions, YoloV5Head, YoloV8Head
from framewire.inference.inputs import decode_rgb
from framewire.inference.preprocess import LETTERBOX_GREY, place
from tests.inference.conftest import encode_jpeg, synthetic_jpeg
from tests.inference.gpu_stack import require_torch


@pytest.fixture(autouse=True)
def _torch() -> None:
    require_torch()


def test_a_batch_decodes_like_opencv_and_a_bad_image_fails_alone() -> None:
    import torch

    from framewire.inference.gpu.pipeline import decode_jpegs

    good = [synthetic_jpeg(64, 48, seed=1), synthetic_jpeg(33, 17, seed=2)]
    truncated = good[0][: len(good[0]) // 3]
    grey = encode_jpeg(np.full((20, 30), 77, np.uint8))  # one channel: decoded to RGB
    decoded = decode_jpegs([good[0], truncated, good[1], grey], torch.device("cpu"))
    assert isinstance(decoded[1], FramewireError)
    assert decoded[1].code.name == "INVALID_ARGUMENT"
    for data, image in ((good[0], decoded[0]), (good[1], decoded[2])):
        assert isinstance(image, torch.Tensor)
        assert np.array_equal(image.permute(1, 2, 0).numpy(), decode_rgb(data))
    assert isinstance(decoded[3], torch.Tensor)
    assert tuple(decoded[3].shape) == (3, 20, 30)


@pytest.mark.parametrize(
    ("layout", "dtype", "fit"),
    [
        ("NCHW", "float32", "letterbox"),
        ("NCHW", "float16", "letterbox"),
        ("NHWC", "uint8", "stretch"),
        ("NCHW", "float32", "stretch"),
    ],
)
def test_fitting_matches_the_cpu_path(layout: str, dtype: str, fit: str) -> None:
    import torch

    from framewire.inference.gpu.pipeline import fit_batch
    from framewire.inference.preprocess import fill_slot

    rng = np.random.default_rng(3)
    # Two frames of one size (resized together) and two of others, one smaller than the input.
    sizes = [(768, 576), (768, 576), (300, 500), (120, 90)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in sizes]
    width, height = 320, 256
    scale = 1.0 if dtype == "uint8" else 1 / 255
    shape = (len(images), 3, height, width) if layout == "NCHW" else (len(images), height, width, 3)
    expected = np.zeros(shape, np.dtype(dtype))
    placements = [place(w, h, width, height, fit) for w, h in sizes]  # type: ignore[arg-type]
    for slot, (image, placement) in enumerate(zip(images, placements, strict=True)):
        fill_slot(expected[slot], image, placement, layout=layout, scale=scale)  # type: ignore[arg-type]
    target = torch.full(shape, 7, dtype=getattr(torch, dtype))  # stale data from a past batch
    fit_batch(
        target,
        [torch.from_numpy(image).permute(2, 0, 1) for image in images],
        placements,
        layout=layout,  # type: ignore[arg-type]
        scale=scale,
        pad_value=LETTERBOX_GREY,
    )
    got = target.float().numpy()
    # OpenCV rounds the resized image to uint8 first: at most one grey level apart.
    tolerance = 1.0 if dtype == "uint8" else 1 / 255 + (2e-3 if dtype == "float16" else 1e-6)
    assert np.abs(got - expected.astype(np.float32)).max() <= tolerance


def _random_prediction(
    rng: np.random.Generator, batch: int, classes: int, anchors: int, v5: bool
) -> np.ndarray:
    """YOLO-like raw outputs: clustered boxes (so NMS has work), distinct scores."""
    centres = rng.uniform(40, 600, (batch, anchors // 8, 2)).repeat(8, axis=1)
    centres += rng.normal(0, 6, centres.shape)
    sizes = rng.uniform(10, 160, (batch, anchors, 2))
    scores = rng.uniform(0, 1, (batch, anchors, classes)) ** 3
    if v5:
        objectness = rng.uniform(0, 1, (batch, anchors, 1))
        return np.concatenate([centres, sizes, objectness, scores], axis=2).astype(np.float32)
    return np.concatenate([centres, sizes, scores], axis=2).transpose(0, 2, 1).astype(np.float32)


@pytest.mark.parametrize("v5", [False, True])
def test_yolo_decoding_on_the_device_equals_the_cpu_head(v5: bool) -> None:
    import torch

    from framewire.inference.gpu.pipeline import yolo_detections

    rng = np.random.default_rng(11)
    classes, anchors = 12, 1600
    prediction = _random_prediction(rng, 5, classes, anchors, v5)
    head = YoloV5Head() if v5 else YoloV8Head()
    allowed = np.zeros(classes, bool)
    allowed[[1, 4, 7]] = True
    options = [
        DecodeOptions(0.25, 100, 0.45, 30000),
        DecodeOptions(0.5, 7, 0.45, 30000),  # capped per image
        DecodeOptions(0.1, 100, 0.45, 40),  # more candidates than it may keep: top-k
        DecodeOptions(0.25, 100, 0.6, 30000, allowed=allowed),  # another IoU, a class filter
        DecodeOptions(1.0, 100, 0.45, 30000),  # nothing passes
    ]
    placements = [
        place(768, 576, 640, 640, "letterbox"),
        place(640, 640, 640, 640, "letterbox"),
        place(300, 500, 640, 640, "letterbox"),
        place(1920, 1080, 640, 640, "letterbox"),
        place(768, 576, 640, 640, "letterbox"),
    ]
    found = yolo_detections(
        torch.from_numpy(prediction), head.name, placements, options, host_rows=None
    )
    for image, (placement, option) in enumerate(zip(placements, options, strict=True)):
        expected = head.decode([prediction], image, placement, (640, 640), option)
        got = found[image]
        assert len(got) == len(expected), f"image {image}"
        assert np.array_equal(got.class_ids, expected.class_ids)
        np.testing.assert_allclose(got.scores, expected.scores, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.boxes, expected.boxes, rtol=0, atol=1e-5)
    assert len(found[0]) > 20
    assert len(found[1]) == 7
    assert len(found[4]) == 0
    assert set(found[3].class_ids.tolist()) <= {1, 4, 7}
