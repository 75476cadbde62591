"""Frame compression on the device: resize, blur, blackout and JPEG, in that order.

The settings follow the Cloud Chaser paper (§V-A3): a smaller frame, a kxk
averaging blur that removes the high frequencies JPEG pays most for, and
*blackout*, which sends only the regions where the previous result found
objects (each box grown by a margin) and blacks out the rest. Black areas cost
almost nothing in JPEG. Objects that appear elsewhere are found again on the
next *keyframe*, a whole frame sent every ``keyframe_interval`` frames and
whenever the last result found nothing.

Everything here is one pass of a few OpenCV calls on a frame already in
memory; at 480x270 JPEG encoding dominates (see docs/edge-compression.md and
``python -m bench edge``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from framewire.common.settings import option, parse_wxh

NormalizedBox = tuple[float, float, float, float]
"""A box as fractions of the image: (x_min, y_min, x_max, y_max), each in [0, 1]."""

# JPEG codes 8x8 blocks: a block that is part black and part picture has a
# sharp edge inside it and costs more than either. Growing kept regions out to
# the block grid saved 6-17 % of a blacked-out frame's bytes on vtest.avi.
JPEG_BLOCK = 8

# Larger kernels only smear the image further; a typo like --blur 55 should be an error.
MAX_BLUR = 31


@dataclass(frozen=True)
class CompressionConfig:
    """How the agent compresses each frame before sending it."""

    resize: tuple[int, int] | None = option(
        None,
        "resize every frame to exactly WIDTHxHEIGHT before encoding, e.g. 480x270",
        parse=parse_wxh,
        metavar="WxH",
    )
    max_width: int | None = option(
        None,
        "shrink frames wider than this many pixels, keeping the aspect ratio",
        metavar="PIXELS",
    )
    blur: int = option(
        0,
        "average each pixel over a KxK square before encoding (0 = off); "
        "smaller JPEGs, slightly softer detections",
        metavar="K",
    )
    jpeg_quality: int = option(80, "JPEG quality, 1 (smallest) to 100 (best)", metavar="1-100")
    blackout: bool = option(
        False,
        "black out everything outside the last result's boxes (plus --blackout-margin), "
        "sending a whole keyframe every --keyframe-interval frames",
    )
    blackout_margin: int = option(
        15, "pixels (of the frame as sent) kept around each box with --blackout", metavar="PIXELS"
    )
    keyframe_interval: int = option(
        10, "with --blackout, send a whole frame every N frames", metavar="N"
    )

    def __post_init__(self) -> None:
        if self.resize is not None and self.max_width is not None:
            raise ValueError("--resize and --max-width cannot be combined: choose one")
        if self.resize is not None:
            width, height = self.resize
            if width <= 0 or height <= 0:
                raise ValueError(f"--resize {width}x{height}: width and height must be positive")
        if self.max_width is not None and self.max_width <= 0:
            raise ValueError(f"--max-width {self.max_width}: must be a positive number of pixels")
        if not 0 <= self.blur <= MAX_BLUR:
            raise ValueError(f"--blur {self.blur}: use 0 (off) or a kernel size 1 to {MAX_BLUR}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"--jpeg-quality {self.jpeg_quality}: must be between 1 and 100")
        if self.blackout_margin < 0:
            raise ValueError(f"--blackout-margin {self.blackout_margin}: must be 0 or more pixels")
        if self.keyframe_interval < 1:
            raise ValueError(f"--keyframe-interval {self.keyframe_interval}: must be 1 or more")


@dataclass(frozen=True, eq=False)
class EncodedFrame:
    """One frame ready to send, and what was done to it."""

    # The JPEG bytes.
    data: bytes
    # The size of the encoded image in pixels.
    width: int
    height: int
    # True when blackout is on and this frame was sent whole.
    keyframe: bool
    # The regions left intact, normalized (x_min, y_min, x_max, y_max); empty
    # means the whole image is real (blackout off, or a keyframe).
    kept_regions: tuple[NormalizedBox, ...]
    # The pixels as sent (after resize, blur and blackout, before JPEG), BGR
    # uint8, for --record. May be the caller's own array when nothing was
    # changed: copy it before drawing on it.
    image: np.ndarray


def target_size(
    width: int, height: int, config: CompressionConfig, scale: float = 1.0
) -> tuple[int, int]:
    """The size a ``width`` x ``height`` frame is sent at under ``config`` and a hint ``scale``."""
    if config.resize is not None:
        width, height = config.resize
    elif config.max_width is not None and width > config.max_width:
        height = max(1, round(height * config.max_width / width))
        width = config.max_width
    if scale != 1.0:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


def expand_boxes(
    boxes: Sequence[NormalizedBox], width: int, height: int, margin: int, align: int = 1
) -> list[tuple[int, int, int, int]]:
    """Pixel rectangles (x0, y0, x1, y1), end-exclusive, of ``boxes`` grown by ``margin``.

    Each box is rounded outwards to whole pixels, grown by ``margin`` pixels on
    every side, rounded outwards to multiples of ``align`` and clipped to the
    frame, so it always contains the box plus the margin (where the frame
    allows). Rectangles left empty by clipping are dropped.
    """
    rectangles = []
    for x_min, y_min, x_max, y_max in boxes:
        x0 = max(0, (math.floor(x_min * width) - margin) // align * align)
        y0 = max(0, (math.floor(y_min * height) - margin) // align * align)
        x1 = min(width, -(-(math.ceil(x_max * width) + margin) // align) * align)
        y1 = min(height, -(-(math.ceil(y_max * height) + margin) // align) * align)
        if x1 > x0 and y1 > y0:
            rectangles.append((x0, y0, x1, y1))
    return rectangles


class Compressor:
    """Turns captured frames into JPEG bytes, with the keyframe and blackout bookkeeping.

    ``compress`` runs on one thread at a time (the one that sends frames);
    ``observe``, ``adjust`` and ``request_keyframe`` may be called from any
    thread, such as the one that receives results. The shared state is a few
    fields behind one lock, so neither side waits on the other for more than a
    field copy.
    """

    def __init__(self, config: CompressionConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._scale = 1.0
        self._jpeg_quality = config.jpeg_quality
        # None until a result is observed; then the boxes of the latest one.
        self._boxes: tuple[NormalizedBox, ...] | None = None
        self._keyframe_requested = False
        # Frames compressed since the last keyframe, the keyframe itself
        # excluded. Only compress() touches this and the decision below.
        self._since_keyframe = 0
        # The boxes and keyframe decision of the last compress(), for retries.
        self._last_decision: tuple[tuple[NormalizedBox, ...] | None, bool] | None = None

    @property
    def scale(self) -> float:
        """The server-advised scale in force, applied on top of resize/max_width."""
        return self._scale

    @property
    def jpeg_quality(self) -> int:
        """The JPEG quality in force (the configured one until a hint changes it)."""
        return self._jpeg_quality

    def observe(self, boxes: Sequence[NormalizedBox]) -> None:
        """Records the boxes (normalized) of the latest result received.

        An empty sequence means that result had no detections: the next frame
        is then a keyframe. Results that failed (no detections because of an
        error) should be observed as empty too, so that blackout never hides
        the picture on stale information.
        """
        snapshot = tuple((float(a), float(b), float(c), float(d)) for a, b, c, d in boxes)
        with self._lock:
            self._boxes = snapshot

    def request_keyframe(self) -> None:
        """Sends the next frame whole, e.g. after a reconnect or when a keyframe was dropped."""
        with self._lock:
            self._keyframe_requested = True

    def adjust(self, *, scale: float | None = None, jpeg_quality: int | None = None) -> None:
        """Follows a server FlowHint: ``scale`` in (0, 1], ``jpeg_quality`` 1 to 100.

        ``None`` leaves a setting as it is; ``adjust(scale=1.0,
        jpeg_quality=config.jpeg_quality)`` returns to the configuration.
        Raises :class:`ValueError` for values outside those ranges.
        """
        if scale is not None and not (0.0 < scale <= 1.0 and math.isfinite(scale)):
            raise ValueError(f"scale {scale} is outside (0, 1]")
        if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
            raise ValueError(f"JPEG quality {jpeg_quality} is outside 1..100")
        with self._lock:
            if scale is not None:
                self._scale = float(scale)
            if jpeg_quality is not None:
                self._jpeg_quality = int(jpeg_quality)

    def compress(self, image: np.ndarray, *, retry: bool = False) -> EncodedFrame:
        """Resizes, blurs, blacks out and JPEG-encodes one BGR uint8 frame.

        ``retry=True`` says this is the previous frame again, e.g. at a lower
        quality because it came out over the server's size limit: it gets the
        previous call's keyframe decision and kept regions and does not count
        as another frame on the keyframe schedule (a keyframe stays one).
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 HxWx3 image, got {image.dtype} {image.shape}")
        config = self.config
        previous = self._last_decision if retry else None
        repeat = previous is not None
        with self._lock:
            scale, quality, boxes = self._scale, self._jpeg_quality, self._boxes
            requested = self._keyframe_requested
            if config.blackout and not repeat:
                self._keyframe_requested = False
        if previous is not None:
            boxes, keyframe_due = previous
        else:
            keyframe_due = (
                requested or not boxes or self._since_keyframe + 1 >= config.keyframe_interval
            )

        height, width = image.shape[:2]
        out_width, out_height = target_size(width, height, config, scale)
        pixels = image
        if (out_width, out_height) != (width, height):
            # INTER_LINEAR: about 6x cheaper than INTER_AREA at these sizes, and
            # the blur (when on) removes the aliasing it leaves.
            pixels = cv2.resize(pixels, (out_width, out_height), interpolation=cv2.INTER_LINEAR)
        if config.blur > 1:
            pixels = cv2.blur(pixels, (config.blur, config.blur))

        keyframe = False
        kept: tuple[NormalizedBox, ...] = ()
        if config.blackout:
            rectangles = []
            if not keyframe_due and boxes:
                rectangles = expand_boxes(
                    boxes, out_width, out_height, config.blackout_margin, JPEG_BLOCK
                )
            # Boxes that all clip away leave nothing to keep: send the whole frame.
            keyframe = not rectangles
            if not keyframe:
                pixels, kept = _black_out(pixels, rectangles)

        ok, encoded = cv2.imencode(".jpg", pixels, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
        if not ok:
            raise RuntimeError(f"OpenCV could not JPEG-encode a {out_width}x{out_height} frame")

        if config.blackout and not repeat:
            self._since_keyframe = 0 if keyframe else self._since_keyframe + 1
        self._last_decision = (boxes, keyframe_due)
        return EncodedFrame(
            data=encoded.tobytes(),
            width=out_width,
            height=out_height,
            keyframe=keyframe,
            kept_regions=kept,
            image=pixels,
        )


def _black_out(
    pixels: np.ndarray, rectangles: Sequence[tuple[int, int, int, int]]
) -> tuple[np.ndarray, tuple[NormalizedBox, ...]]:
    """Copies only ``rectangles`` of ``pixels`` onto black; returns it and the regions kept."""
    height, width = pixels.shape[:2]
    out = np.zeros_like(pixels)
    kept = []
    for x0, y0, x1, y1 in rectangles:
        out[y0:y1, x0:x1] = pixels[y0:y1, x0:x1]
        kept.append((x0 / width, y0 / height, x1 / width, y1 / height))
    return out, tuple(kept)
