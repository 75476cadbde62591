"""Fitting an image into the model's input, and mapping boxes back out of it.

Two ways to fit: ``letterbox`` (YOLO) scales the image to fit while keeping
its aspect ratio and pads the rest with grey; ``stretch`` (SSD) resizes it to
the input size whatever its aspect ratio, as the TensorFlow models were
trained. Either way a :class:`Placement` records where the image landed, which
is all :func:`to_normalized` needs to map boxes exactly back to the image as
it was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

Fit = Literal["letterbox", "stretch"]
Layout = Literal["NCHW", "NHWC"]

# The grey YOLO models are trained with around letterboxed images.
LETTERBOX_GREY = 114


@dataclass(frozen=True)
class Placement:
    """Where an image of ``source`` size was drawn inside the model input.

    The image occupies ``[left, left + width) x [top, top + height)`` of the
    input, in input pixels; the rest is padding.
    """

    source_width: int
    source_height: int
    left: int
    top: int
    width: int
    height: int


def place(
    source_width: int, source_height: int, input_width: int, input_height: int, fit: Fit
) -> Placement:
    """Computes where an image lands in the input for a way of fitting it."""
    if min(source_width, source_height, input_width, input_height) < 1:
        raise ValueError("image and input sizes must be positive")
    if fit == "stretch":
        return Placement(source_width, source_height, 0, 0, input_width, input_height)
    scale = min(input_width / source_width, input_height / source_height)
    width = min(input_width, max(1, round(source_width * scale)))
    height = min(input_height, max(1, round(source_height * scale)))
    # Centred; an odd remainder puts the extra pixel right and below, as Ultralytics does.
    left = (input_width - width) // 2
    top = (input_height - height) // 2
    return Placement(source_width, source_height, left, top, width, height)


def to_normalized(boxes: npt.NDArray[np.float32], placement: Placement) -> npt.NDArray[np.float32]:
    """Maps ``[k, 4]`` boxes (x_min, y_min, x_max, y_max in input pixels) to the original image.

    Returns fractions of the original image, clipped to [0, 1]. Because the
    image spans exactly ``placement.width`` input pixels, dividing by that span
    (rather than by a rounded scale factor) makes the mapping exact.
    """
    mapped = np.empty_like(boxes, dtype=np.float32)
    mapped[:, 0::2] = (boxes[:, 0::2] - placement.left) / placement.width
    mapped[:, 1::2] = (boxes[:, 1::2] - placement.top) / placement.height
    np.clip(mapped, 0.0, 1.0, out=mapped)
    return mapped


def to_input_pixels(
    normalized: npt.NDArray[np.float32], placement: Placement
) -> npt.NDArray[np.float32]:
    """The inverse of :func:`to_normalized`, without clipping: fractions to input pixels."""
    pixels = np.empty_like(normalized, dtype=np.float32)
    pixels[:, 0::2] = normalized[:, 0::2] * placement.width + placement.left
    pixels[:, 1::2] = normalized[:, 1::2] * placement.height + placement.top
    return pixels


def fill_slot(
    slot: npt.NDArray[np.generic],
    image: npt.NDArray[np.uint8],
    placement: Placement,
    *,
    layout: Layout,
    scale: float,
    pad_value: int = LETTERBOX_GREY,
) -> None:
    """Draws an RGB ``[h, w, 3]`` uint8 image into one slot of a preallocated input batch.

    ``slot`` is ``[3, H, W]`` (NCHW) or ``[H, W, 3]`` (NHWC) of the model's
    input type; pixel values are multiplied by ``scale`` (1/255 for models
    that take 0..1). Padding outside the placement gets ``pad_value * scale``.
    Writing into the slot, instead of building a new array, is what lets a
    GPU backend keep one pinned buffer per batch.
    """
    resized = cv2.resize(image, (placement.width, placement.height), interpolation=cv2.INTER_LINEAR)
    rows = slice(placement.top, placement.top + placement.height)
    columns = slice(placement.left, placement.left + placement.width)
    if layout == "NCHW":
        pixels = resized.transpose(2, 0, 1)
        region = slot[:, rows, columns]
        spatial = slot.shape[1:]
    else:
        pixels = resized
        region = slot[rows, columns, :]
        spatial = slot.shape[:2]
    if scale == 1.0:
        np.copyto(region, pixels, casting="unsafe")
    else:
        np.multiply(pixels, scale, out=region, casting="unsafe")
    if (placement.width, placement.height) != (spatial[1], spatial[0]):
        _pad(slot, placement, layout, pad_value * scale)


def _pad(slot: npt.NDArray[np.generic], placement: Placement, layout: Layout, value: float) -> None:
    """Fills the part of the slot outside the placement."""
    bottom = placement.top + placement.height
    right = placement.left + placement.width
    if layout == "NCHW":
        slot[:, : placement.top, :] = value
        slot[:, bottom:, :] = value
        slot[:, placement.top : bottom, : placement.left] = value
        slot[:, placement.top : bottom, right:] = value
    else:
        slot[: placement.top, :, :] = value
        slot[bottom:, :, :] = value
        slot[placement.top : bottom, : placement.left, :] = value
        slot[placement.top : bottom, right:, :] = value
