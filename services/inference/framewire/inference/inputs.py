"""The model input: its layout and size, the reusable input batches, and decoding into them.

:func:`input_spec` settles what the engine feeds the model from what the model
declares, the settings and the head. :class:`InputBatches` holds the few
preallocated ``[max_batch, ...]`` input arrays that detect calls borrow in
turn, so no call allocates one.
"""

from __future__ import annotations

import ast
import contextlib
import queue
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from framewire.common.errors import invalid_argument
from framewire.inference.backends import Backend
from framewire.inference.config import EngineConfig
from framewire.inference.heads import Head
from framewire.inference.preprocess import Layout
from framewire.inference.signature import ModelSignature, TensorInfo

INPUT_TYPES = ("float32", "float16", "uint8")
# EXIF rotation is ignored so that the pixels match the header's size: boxes
# are relative to the image as sent. OpenCV 4.10+ decodes straight to RGB.
_IMREAD_COLOR_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)


@dataclass(frozen=True)
class InputSpec:
    """The model input the engine fills: layout, element type, size and batch."""

    layout: Layout
    dtype: str
    width: int
    height: int
    # The batch size a model with a fixed batch dimension must always get; None: any.
    fixed_batch: int | None = None

    def batch_shape(self, batch: int) -> tuple[int, int, int, int]:
        if self.layout == "NCHW":
            return (batch, 3, self.height, self.width)
        return (batch, self.height, self.width, 3)


class InputBatches:
    """A fixed set of preallocated input batches, lent to one detect call at a time."""

    def __init__(self, backend: Backend, spec: InputSpec, batch: int, count: int) -> None:
        self._free: queue.Queue[npt.NDArray[Any]] = queue.Queue(maxsize=count)
        shape = spec.batch_shape(batch)
        for _ in range(count):
            self._free.put(backend.allocate_input(shape, np.dtype(spec.dtype)))

    @contextlib.contextmanager
    def borrow(self) -> Iterator[npt.NDArray[Any]]:
        batch = self._free.get()
        try:
            yield batch
        finally:
            self._free.put(batch)


def input_spec(
    signature: ModelSignature, family: type[Head], config: EngineConfig, max_batch: int
) -> InputSpec:
    """Settles the input layout, type and size from the model, the config and the head.

    Size: ``--input-size``, else the model's fixed size, else the size in its
    metadata (Ultralytics ``imgsz``), else the head's default.
    """
    if len(signature.inputs) != 1:
        raise ValueError(
            f"the model has {len(signature.inputs)} inputs; framewire runs models with one "
            "image input"
        )
    info: TensorInfo = signature.inputs[0]
    shape = info.shape
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise ValueError(
            f"the model input {info.name} {list(shape)} is not a batch of 3-channel images "
            "(NCHW or NHWC)"
        )
    layout: Layout = "NCHW" if shape[1] == 3 else "NHWC"
    height, width = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    if info.dtype not in INPUT_TYPES:
        raise ValueError(
            f"the model input {info.name} has type {info.dtype}; framewire feeds "
            + ", ".join(INPUT_TYPES)
        )
    fixed = (width, height) if width is not None and height is not None else None
    if config.input_size is not None:
        if fixed is not None and fixed != config.input_size:
            raise ValueError(
                f"--input-size {config.input_size[0]}x{config.input_size[1]} differs from the "
                f"model's fixed input {fixed[0]}x{fixed[1]}"
            )
        size = config.input_size
    elif fixed is not None:
        size = fixed
    else:
        size = _metadata_size(signature.metadata) or family.default_input_size
    stride = _metadata_int(signature.metadata, "stride")
    if fixed is None and stride and (size[0] % stride or size[1] % stride):
        raise ValueError(
            f"the input size {size[0]}x{size[1]} must be a multiple of the model's stride {stride}"
        )
    batch_dimension = shape[0]
    if batch_dimension is not None and batch_dimension != max_batch:
        raise ValueError(
            f"the model takes batches of exactly {batch_dimension}; set --max-batch "
            f"{batch_dimension} or export it with a dynamic or larger batch"
        )
    return InputSpec(layout, info.dtype, size[0], size[1], batch_dimension)


def _metadata_size(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """Ultralytics ``imgsz`` metadata, ``[height, width]``, as (width, height)."""
    text = metadata.get("imgsz")
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        return (value, value)
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and v > 0 for v in value)
    ):
        return (int(value[1]), int(value[0]))
    return None


def _metadata_int(metadata: Mapping[str, str], key: str) -> int | None:
    text = metadata.get(key)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def decode_rgb(data: bytes) -> npt.NDArray[np.uint8]:
    """Decodes JPEG bytes into an RGB ``[h, w, 3]`` image; INVALID_ARGUMENT when it cannot."""
    encoded = np.frombuffer(data, dtype=np.uint8)
    try:
        if _IMREAD_COLOR_RGB is not None:
            pixels = cv2.imdecode(encoded, _IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
        else:
            pixels = cv2.imdecode(encoded, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            if pixels is not None:
                pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    except cv2.error as error:
        raise invalid_argument(f"the JPEG cannot be decoded: {error.err}") from None
    if pixels is None:
        raise invalid_argument("the JPEG cannot be decoded: its data is corrupt")
    return np.asarray(pixels, dtype=np.uint8)
