"""Letterbox and stretch placement, filling input slots, and the exact inverse mapping."""

from __future__ import annotations

import numpy as np
import pytest

from framewire.inference.preprocess import (
    LETTERBOX_GREY,
    Placement,
    fill_slot,
    place,
    to_input_pixels,
    to_normalized,
)

ODD_SIZES = [(1001, 3), (3, 1001), (767, 575), (1, 1), (641, 640), (1352, 900), (333, 777)]


@pytest.mark.parametrize(("width", "height"), ODD_SIZES)
def test_letterbox_keeps_the_aspect_ratio_and_centres(width: int, height: int) -> None:
    placement = place(width, height, 640, 384, "letterbox")
    # One side fills the input; the other is at most the input.
    assert placement.width == 640 or placement.height == 384
    assert placement.width <= 640
    assert placement.height <= 384
    # The aspect ratio is kept up to rounding to whole pixels.
    scale = min(640 / width, 384 / height)
    assert abs(placement.width - width * scale) <= 0.5 or placement.width == 1
    assert abs(placement.height - height * scale) <= 0.5 or placement.height == 1
    # Centred, with any odd pixel right/below.
    assert placement.left == (640 - placement.width) // 2
    assert placement.top == (384 - placement.height) // 2


def test_letterbox_of_a_known_case() -> None:
    # 1280x720 into 640x640: scale 0.5 -> 640x360, 140 rows of grey above and below.
    assert place(1280, 720, 640, 640, "letterbox") == Placement(1280, 720, 0, 140, 640, 360)
    assert place(720, 1280, 640, 640, "letterbox") == Placement(720, 1280, 140, 0, 360, 640)


def test_stretch_fills_the_whole_input() -> None:
    assert place(768, 576, 300, 300, "stretch") == Placement(768, 576, 0, 0, 300, 300)


@pytest.mark.parametrize(("width", "height"), ODD_SIZES)
@pytest.mark.parametrize("fit", ["letterbox", "stretch"])
def test_inverse_mapping_is_exact(width: int, height: int, fit: str) -> None:
    placement = place(width, height, 640, 640, fit)  # type: ignore[arg-type]
    # The image's own rectangle in the input maps to the whole image.
    image_rectangle = np.array(
        [
            [
                placement.left,
                placement.top,
                placement.left + placement.width,
                placement.top + placement.height,
            ]
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(to_normalized(image_rectangle, placement), [[0, 0, 1, 1]])
    # Any box inside the image round-trips.
    rng = np.random.default_rng(width * 7919 + height)
    corners = np.sort(rng.random((50, 2, 2), dtype=np.float32), axis=1).reshape(50, 4)
    corners = corners[:, [0, 2, 1, 3]]  # x_min, y_min, x_max, y_max
    back = to_normalized(to_input_pixels(corners, placement), placement)
    np.testing.assert_allclose(back, corners, atol=1e-5)


def test_boxes_in_the_padding_are_clipped_to_the_image() -> None:
    placement = place(1280, 720, 640, 640, "letterbox")  # 140 grey rows above
    boxes = np.array([[-10, 0, 700, 100], [100, 130, 200, 200]], dtype=np.float32)
    normalized = to_normalized(boxes, placement)
    np.testing.assert_allclose(normalized[0], [0, 0, 1, 0])
    np.testing.assert_allclose(normalized[1], [100 / 640, 0, 200 / 640, 60 / 360], rtol=1e-6)


def test_fill_slot_nchw_letterbox_scales_pixels_and_pads_grey() -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    image[..., 0] = 255  # pure red, RGB
    slot = np.full((3, 64, 64), -1.0, np.float32)
    placement = place(40, 20, 64, 64, "letterbox")
    assert placement == Placement(40, 20, 0, 16, 64, 32)
    fill_slot(slot, image, placement, layout="NCHW", scale=1 / 255)
    inside = slot[:, 16:48, :]
    np.testing.assert_allclose(inside[0], 1.0)
    np.testing.assert_allclose(inside[1:], 0.0)
    grey = LETTERBOX_GREY / 255
    np.testing.assert_allclose(slot[:, :16, :], grey, rtol=1e-6)
    np.testing.assert_allclose(slot[:, 48:, :], grey, rtol=1e-6)


def test_fill_slot_nhwc_uint8_stretch() -> None:
    image = np.zeros((10, 30, 3), np.uint8)
    image[:, :15] = (10, 20, 30)
    image[:, 15:] = (200, 100, 50)
    slot = np.zeros((8, 8, 3), np.uint8)
    fill_slot(slot, image, place(30, 10, 8, 8, "stretch"), layout="NHWC", scale=1.0)
    assert tuple(slot[4, 0]) == (10, 20, 30)
    assert tuple(slot[4, 7]) == (200, 100, 50)


def test_fill_slot_pads_columns_too() -> None:
    image = np.full((40, 10, 3), 255, np.uint8)
    slot = np.zeros((20, 20, 3), np.uint8)
    placement = place(10, 40, 20, 20, "letterbox")
    assert placement == Placement(10, 40, 7, 0, 5, 20)
    fill_slot(slot, image, placement, layout="NHWC", scale=1.0)
    assert (slot[:, 7:12] == 255).all()
    assert (slot[:, :7] == LETTERBOX_GREY).all()
    assert (slot[:, 12:] == LETTERBOX_GREY).all()


def test_place_rejects_empty_sizes() -> None:
    with pytest.raises(ValueError, match="positive"):
        place(0, 10, 640, 640, "letterbox")
