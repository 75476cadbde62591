"""Checks on each image of a Detect call, before any pixel is decoded, and its options.

Every problem becomes a :class:`FramewireError` for that image alone: the
rest of the batch is still answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from framewire.common.errors import invalid_argument, resource_exhausted
from framewire.common.images import ImageFormatError, ImageHeader, read_jpeg_header
from framewire.inference.config import EngineConfig
from framewire.inference.heads import DecodeOptions
from framewire.v1 import common_pb2, inference_service_pb2


def check_header(
    image: inference_service_pb2.Image, data: bytes, config: EngineConfig
) -> ImageHeader:
    """Checks an image before decoding it: encoding, format, truncation, size, pixel limits.

    ``data`` is ``image.data``, read once by the caller and then decoded: every
    read of a bytes field copies it (a 300 kB image costs about 5 µs a read).
    A width or height of 0 is "not declared": the header's is taken.
    """
    if image.encoding == common_pb2.ENCODING_UNSPECIFIED:
        raise invalid_argument("the image encoding is ENCODING_UNSPECIFIED: set ENCODING_JPEG")
    if image.encoding != common_pb2.ENCODING_JPEG:
        raise invalid_argument(
            f"image encoding {image.encoding} is not supported: only ENCODING_JPEG is"
        )
    if not data:
        raise invalid_argument("the image data is empty")
    try:
        header = read_jpeg_header(data)
    except ImageFormatError as error:
        raise invalid_argument(str(error)) from None
    if not header.complete:
        raise invalid_argument(
            "truncated JPEG: the data ends before the end-of-image marker; the image was cut short"
        )
    if (image.width and image.width != header.width) or (
        image.height and image.height != header.height
    ):
        declared = f"{image.width or '?'}x{image.height or '?'}"
        raise invalid_argument(
            f"declared {declared} but the JPEG header says {header.width}x{header.height}"
        )
    if header.pixels > config.max_image_pixels:
        raise resource_exhausted(
            f"the image is {header.width}x{header.height} = {header.pixels} pixels, more "
            f"than this server's limit of {config.max_image_pixels} "
            "(GetModelInfo max_image_pixels)"
        )
    if header.pixels > len(data) * config.max_image_pixels_per_byte:
        raise invalid_argument(
            f"{len(data)} bytes cannot hold a {header.width}x{header.height} JPEG "
            f"(more than {config.max_image_pixels_per_byte} pixels per byte): "
            "the data is truncated or crafted"
        )
    return header


def decode_options(
    requested: inference_service_pb2.DetectOptions,
    config: EngineConfig,
    labels: Sequence[str],
    label_indices: Mapping[str, list[int]],
) -> DecodeOptions:
    """A request's per-image options, with the server's defaults and limits applied."""
    threshold = config.score_threshold
    if requested.HasField("score_threshold"):
        threshold = requested.score_threshold
        if not 0.0 <= threshold <= 1.0:  # also rejects NaN
            raise invalid_argument(f"score_threshold must be within [0, 1], not {threshold}")
    most = config.max_detections
    if requested.max_detections:
        most = min(requested.max_detections, most)
    allowed = None
    if requested.class_filter:
        unknown = [name for name in requested.class_filter if name not in label_indices]
        if unknown:
            raise invalid_argument(
                "class_filter names labels this model does not have: "
                + ", ".join(repr(name) for name in unknown)
                + " (GetModelInfo lists the labels)"
            )
        allowed = np.zeros(len(labels), dtype=bool)
        for name in requested.class_filter:
            allowed[label_indices[name]] = True
    return DecodeOptions(
        score_threshold=threshold,
        max_detections=most,
        iou_threshold=config.iou_threshold,
        max_candidates=config.max_nms_candidates,
        allowed=allowed,
    )
