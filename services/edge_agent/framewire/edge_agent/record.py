"""``--record out.mp4``: the frames as sent, with the boxes and labels that came back.

For people who would rather look than read JSON: every frame the agent sent
(blacked-out regions and all) is written with its detections drawn and an
optional note ("keyframe", "skipped") in the top-left corner.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from framewire.v1 import common_pb2

_LOGGER = logging.getLogger(__name__)

# Containers and the codec each gets: both are in every OpenCV build that has
# FFmpeg (the pip wheels included).
CODECS = {".mp4": "mp4v", ".avi": "MJPG"}

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK = (0, 0, 0)
_WHITE = (255, 255, 255)
# Saturated colours that stay distinct after lossy video coding.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0),
    (0, 0, 255),
    (255, 0, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
    (0, 128, 255),
    (255, 0, 128),
)


class RecorderError(Exception):
    """The recording cannot be written; the message says why."""


def box_color(class_id: int) -> tuple[int, int, int]:
    """The BGR colour boxes of a class are drawn in (stable across runs)."""
    return _PALETTE[zlib.crc32(class_id.to_bytes(4, "little")) % len(_PALETTE)]


class Recorder:
    """Writes frames with their detections drawn to a video file.

    The frame size is fixed by the first frame; later frames of another size
    (a FlowHint changed the scale) are resized to it. A file already at
    ``path`` is replaced. Not thread-safe: call it from one thread.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        codec = CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise RecorderError(
                f"cannot record to {str(self.path)!r}: use a name ending in {' or '.join(CODECS)}"
            )
        if not fps > 0:
            raise RecorderError(f"cannot record at {fps} frames per second: must be positive")
        if not self.path.parent.is_dir():
            raise RecorderError(
                f"cannot record to {str(self.path)!r}: folder {str(self.path.parent)!r} "
                "does not exist"
            )
        self.fps = float(fps)
        self._fourcc = cv2.VideoWriter.fourcc(*codec)
        self._codec = codec
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._frames = 0
        self._closed = False
        # Fail now rather than at the first frame: open a writer once, then
        # discard what it wrote (the real one needs the first frame's size).
        self._open((64, 64))
        self._release()
        self.path.unlink(missing_ok=True)

    @property
    def frames_written(self) -> int:
        """How many frames were written so far."""
        return self._frames

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(str(self.path), self._fourcc, self.fps, size)
        if not writer.isOpened():
            writer.release()
            raise RecorderError(
                f"cannot record to {str(self.path)!r}: OpenCV could not open a {self._codec} "
                "video writer there (is the folder writable? is the codec available?)"
            )
        self._writer = writer
        self._size = size
        return writer

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def write(
        self,
        image: np.ndarray,
        detections: Sequence[common_pb2.Detection],
        note: str = "",
    ) -> None:
        """Draws ``detections`` (and ``note``) on a copy of ``image`` and writes it."""
        if self._closed:
            raise RecorderError(f"recording {str(self.path)!r} is already closed")
        height, width = image.shape[:2]
        writer = self._writer
        if writer is None:
            writer = self._open((width, height))
        assert self._size is not None
        if (width, height) != self._size:
            canvas = cv2.resize(image, self._size, interpolation=cv2.INTER_LINEAR)
        else:
            canvas = image.copy()
        if canvas.ndim == 2:
            canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
        draw_detections(canvas, detections)
        if note:
            _label(canvas, note, (4, 4), _WHITE, _BLACK)
        writer.write(canvas)
        self._frames += 1

    def close(self) -> None:
        """Finishes the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._release()
        _LOGGER.info("recorded %d frames to %s", self._frames, self.path)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def draw_detections(canvas: np.ndarray, detections: Sequence[common_pb2.Detection]) -> None:
    """Draws each detection's box and "label score" onto ``canvas`` in place."""
    height, width = canvas.shape[:2]
    thickness = max(2, round(min(width, height) / 200))
    for detection in detections:
        box = detection.box
        x0 = int(np.clip(round(box.x_min * width), 0, width - 1))
        y0 = int(np.clip(round(box.y_min * height), 0, height - 1))
        x1 = int(np.clip(round(box.x_max * width), 0, width - 1))
        y1 = int(np.clip(round(box.y_max * height), 0, height - 1))
        color = box_color(detection.class_id)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, thickness)
        name = detection.label or f"class {detection.class_id}"
        _label(canvas, f"{name} {detection.score:.2f}", (x0, y0), _BLACK, color, above=True)


def _label(
    canvas: np.ndarray,
    text: str,
    origin: tuple[int, int],
    ink: tuple[int, int, int],
    background: tuple[int, int, int],
    *,
    above: bool = False,
) -> None:
    """Writes ``text`` on a filled box at ``origin`` (its top-left, or bottom-left if ``above``)."""
    height, width = canvas.shape[:2]
    scale = max(0.35, min(width, height) / 900)
    (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    box_height = text_height + baseline + 4
    x, y = origin
    top = y - box_height if above and y - box_height >= 0 else y
    x = max(0, min(x, width - text_width - 4))
    cv2.rectangle(canvas, (x, top), (x + text_width + 4, top + box_height), background, -1)
    cv2.putText(
        canvas,
        text,
        (x + 2, top + text_height + 2),
        _FONT,
        scale,
        ink,
        1,
        cv2.LINE_AA,
    )
