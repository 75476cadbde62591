"""Model adapters: how a model family wants its input, and how to read its output.

A head knows how an image is fitted into the input (``letterbox`` for YOLO,
``stretch`` for SSD), how pixel values are scaled, and how to turn one
image's slice of the batch outputs into :class:`Detections`: boxes normalized
to the original image, scores and class ids, highest score first.

- ``yolov8`` (also YOLO11): one output ``[B, 4 + classes, anchors]``; rows are
  cx, cy, w, h in input pixels, then one score per class. No NMS inside.
- ``yolov5``: one output ``[B, anchors, 5 + classes]``; cx, cy, w, h,
  objectness, then class probabilities (score = objectness x probability).
- ``ssd``: TensorFlow Object Detection API graphs with NMS inside, either as
  four outputs (boxes ``[B, N, 4]`` as y_min, x_min, y_max, x_max normalized;
  scores; classes; count) or as OpenCV's single ``DetectionOutput``
  ``[1, 1, B*N, 7]`` (image index, class, score, x_min, y_min, x_max, y_max).
  Class numbers are the model's own (1-based COCO-91 for the zoo models) and
  go through a lookup table onto the label list.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from framewire.inference.nms import non_max_suppression
from framewire.inference.preprocess import Fit, Placement, to_normalized
from framewire.inference.signature import TensorInfo

# Output names of the TensorFlow Object Detection API, in its order.
_SSD_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


@dataclass(frozen=True)
class DecodeOptions:
    """What to keep of one image's raw detections."""

    score_threshold: float
    max_detections: int
    iou_threshold: float
    max_candidates: int
    # allowed[class_id] is True for the classes a request asked for; None: every class.
    allowed: npt.NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class Detections:
    """The objects found in one image, highest score first."""

    boxes: npt.NDArray[np.float32]  # [k, 4]: x_min, y_min, x_max, y_max in [0, 1]
    scores: npt.NDArray[np.float32]  # [k]
    class_ids: npt.NDArray[np.int64]  # [k]

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)


class Head(abc.ABC):
    """One output layout: input conventions and output decoding."""

    name: ClassVar[str]
    fit: ClassVar[Fit]
    # Multiplies 0..255 pixel values before they enter the model.
    pixel_scale: ClassVar[float]
    # The input size (width, height) when neither the model nor the config fixes one.
    default_input_size: ClassVar[tuple[int, int]]

    @abc.abstractmethod
    def check_outputs(self, outputs: Sequence[npt.NDArray[np.float32]], batch: int) -> int | None:
        """Checks the outputs of a ``batch``-image run; returns the class count if they tell it.

        Raises :class:`ValueError` explaining the mismatch when the outputs
        do not have this head's layout.
        """

    @abc.abstractmethod
    def decode(
        self,
        outputs: Sequence[npt.NDArray[np.float32]],
        index: int,
        placement: Placement,
        input_size: tuple[int, int],
        options: DecodeOptions,
    ) -> Detections:
        """The detections of image ``index`` of the batch the outputs belong to."""


class _YoloHead(Head):
    fit = "letterbox"
    pixel_scale = 1.0 / 255.0
    default_input_size = (640, 640)
    # Channels before the class scores: cx, cy, w, h (+ objectness for v5).
    box_channels: ClassVar[int]

    def check_outputs(self, outputs: Sequence[npt.NDArray[np.float32]], batch: int) -> int:
        if len(outputs) != 1 or outputs[0].ndim != 3 or outputs[0].shape[0] != batch:
            shapes = [tuple(output.shape) for output in outputs]
            raise ValueError(
                f"the {self.name} head expects one output [batch, ...] of rank 3 for a batch "
                f"of {batch}, but the model gave {shapes}"
            )
        channels = self._channels(outputs[0][0])
        if channels <= self.box_channels:
            raise ValueError(
                f"the {self.name} head expects more than {self.box_channels} values per box, "
                f"but the model output has shape {tuple(outputs[0].shape)}"
            )
        return channels - self.box_channels

    @staticmethod
    @abc.abstractmethod
    def _channels(prediction: npt.NDArray[np.float32]) -> int: ...

    @abc.abstractmethod
    def candidates(
        self, prediction: npt.NDArray[np.float32], options: DecodeOptions
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Boxes (x1, y1, x2, y2 in input pixels), scores and classes at or above the threshold."""

    def decode(
        self,
        outputs: Sequence[npt.NDArray[np.float32]],
        index: int,
        placement: Placement,
        input_size: tuple[int, int],
        options: DecodeOptions,
    ) -> Detections:
        boxes, scores, class_ids = self.candidates(outputs[0][index], options)
        if len(scores) > options.max_candidates:
            top = np.argpartition(-scores, options.max_candidates - 1)[: options.max_candidates]
            boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
        # Clip to the image first: a box that lies in the padding must not use up
        # one of the max_detections places, and IoU is the same in either space.
        found = _without_empty_boxes(Detections(to_normalized(boxes, placement), scores, class_ids))
        kept = non_max_suppression(
            found.boxes,
            found.scores,
            found.class_ids,
            options.iou_threshold,
            options.max_detections,
        )
        return Detections(found.boxes[kept], found.scores[kept], found.class_ids[kept])


def _best_class(
    class_scores: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_] | None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Per anchor, the best class among the allowed ones: (score, class id). ``[classes, n]`` in."""
    if allowed is None:
        best = np.argmax(class_scores, axis=0)
        return class_scores[best, np.arange(class_scores.shape[1])], best.astype(np.int64)
    ids = np.flatnonzero(allowed)
    subset = class_scores[ids]
    best = np.argmax(subset, axis=0)
    return subset[best, np.arange(subset.shape[1])], ids[best].astype(np.int64)


def _corners(centre_size: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``[k, 4]`` cx, cy, w, h to x1, y1, x2, y2."""
    half = np.abs(centre_size[:, 2:4]) / 2
    return np.concatenate([centre_size[:, 0:2] - half, centre_size[:, 0:2] + half], axis=1).astype(
        np.float32, copy=False
    )


class YoloV8Head(_YoloHead):
    """YOLOv8 / YOLO11 ``[B, 4 + classes, anchors]``."""

    name = "yolov8"
    box_channels = 4

    @staticmethod
    def _channels(prediction: npt.NDArray[np.float32]) -> int:
        return int(prediction.shape[0])

    def candidates(
        self, prediction: npt.NDArray[np.float32], options: DecodeOptions
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        scores, class_ids = _best_class(prediction[4:], options.allowed)
        keep = np.flatnonzero(scores >= options.score_threshold)
        boxes = _corners(prediction[:4, keep].T)
        return boxes, scores[keep].astype(np.float32, copy=False), class_ids[keep]


class YoloV5Head(_YoloHead):
    """YOLOv5 ``[B, anchors, 5 + classes]`` with objectness."""

    name = "yolov5"
    box_channels = 5

    @staticmethod
    def _channels(prediction: npt.NDArray[np.float32]) -> int:
        return int(prediction.shape[1])

    def candidates(
        self, prediction: npt.NDArray[np.float32], options: DecodeOptions
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        # A class score is objectness x probability <= objectness: anchors whose
        # objectness is under the threshold can be dropped before the multiply.
        likely = prediction[prediction[:, 4] >= options.score_threshold]
        class_scores = (likely[:, 5:] * likely[:, 4:5]).T
        scores, class_ids = _best_class(class_scores, options.allowed)
        keep = np.flatnonzero(scores >= options.score_threshold)
        boxes = _corners(likely[keep, :4])
        return boxes, scores[keep].astype(np.float32, copy=False), class_ids[keep]


class SsdHead(Head):
    """TensorFlow Object Detection API outputs (NMS already done by the graph)."""

    name = "ssd"
    fit = "stretch"
    pixel_scale = 1.0
    default_input_size = (300, 300)

    def __init__(self, class_table: npt.NDArray[np.int64], output_names: Sequence[str]) -> None:
        """``class_table[model class number]`` is the label index, or -1 to drop the class."""
        self.class_table = class_table
        self._order = _ssd_output_order(output_names)

    def check_outputs(self, outputs: Sequence[npt.NDArray[np.float32]], batch: int) -> int | None:
        if len(outputs) == 1:
            if outputs[0].ndim != 4 or outputs[0].shape[-1] != 7:
                raise ValueError(
                    "the ssd head expects four outputs (boxes, scores, classes, count) or one "
                    f"DetectionOutput [1, 1, N, 7], but the model gave {tuple(outputs[0].shape)}"
                )
            return None
        if len(outputs) != 4:
            raise ValueError(
                f"the ssd head expects four outputs (boxes, scores, classes, count) or one "
                f"DetectionOutput, but the model has {len(outputs)} outputs"
            )
        boxes, scores, classes, count = (outputs[i] for i in self._order)
        if (
            boxes.ndim != 3
            or boxes.shape[0] != batch
            or boxes.shape[2] != 4
            or scores.shape != boxes.shape[:2]
            or classes.shape != boxes.shape[:2]
            or count.shape[0] != batch
        ):
            shapes = [tuple(output.shape) for output in outputs]
            raise ValueError(
                f"the ssd head expects boxes [B, N, 4], scores [B, N], classes [B, N] and "
                f"count [B] for a batch of {batch}, but the model gave {shapes}"
            )
        return None

    def decode(
        self,
        outputs: Sequence[npt.NDArray[np.float32]],
        index: int,
        placement: Placement,
        input_size: tuple[int, int],
        options: DecodeOptions,
    ) -> Detections:
        if len(outputs) == 1:
            rows = outputs[0].reshape(-1, 7)
            rows = rows[rows[:, 0] == index]
            raw_classes, scores = rows[:, 1], rows[:, 2]
            corners = rows[:, 3:7]  # x_min, y_min, x_max, y_max
        else:
            boxes, all_scores, classes, count = (outputs[i] for i in self._order)
            valid = min(int(count[index]), boxes.shape[1])
            raw_classes, scores = classes[index, :valid], all_scores[index, :valid]
            corners = boxes[index, :valid][:, [1, 0, 3, 2]]  # from y_min, x_min, y_max, x_max
        numbers = np.rint(raw_classes).astype(np.int64)
        inside = (numbers >= 0) & (numbers < len(self.class_table))
        class_ids = np.full(len(numbers), -1, dtype=np.int64)
        class_ids[inside] = self.class_table[numbers[inside]]
        keep = (class_ids >= 0) & (scores >= options.score_threshold)
        if options.allowed is not None:
            keep &= options.allowed[np.clip(class_ids, 0, None)]
        keep_indices = np.flatnonzero(keep)
        order = keep_indices[np.argsort(-scores[keep_indices], kind="stable")]
        order = order[: options.max_detections]
        # Normalized to the input; the input pixels are then mapped like any other head's.
        width, height = input_size
        pixels = corners[order].astype(np.float32) * np.array(
            [width, height, width, height], dtype=np.float32
        )
        ordered = np.sort(pixels.reshape(-1, 2, 2), axis=1).reshape(-1, 4)  # x_min <= x_max
        normalized = to_normalized(ordered, placement)
        return _without_empty_boxes(
            Detections(normalized, scores[order].astype(np.float32), class_ids[order])
        )


def _ssd_output_order(names: Sequence[str]) -> tuple[int, int, int, int]:
    """Indices of boxes, scores, classes and count among the outputs, found by name.

    Falls back to the Object Detection API's own order when the names say nothing.
    """
    if len(names) != 4:
        return (0, 1, 2, 3)
    found: list[int] = []
    for wanted in _SSD_OUTPUTS:
        matches = [i for i, name in enumerate(names) if wanted in name]
        if len(matches) != 1:
            return (0, 1, 2, 3)
        found.append(matches[0])
    return (found[0], found[1], found[2], found[3])


def _without_empty_boxes(detections: Detections) -> Detections:
    """Drops boxes that clipping to the image left without area (they lay in the padding)."""
    boxes = detections.boxes
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if keep.all():
        return detections
    return Detections(boxes[keep], detections.scores[keep], detections.class_ids[keep])


def guess_head(outputs: Sequence[TensorInfo]) -> str:
    """The head a model's declared outputs point to: ``ssd``, ``yolov8``, ``yolov5`` or ``yolo``.

    ``yolo`` means a one-output YOLO whose declared shape does not tell v8
    from v5 (both lengths dynamic); :func:`yolo_layout` settles it from a real
    output. Raises :class:`ValueError` for outputs no head reads.
    """
    names = [info.name for info in outputs]
    if len(outputs) == 4 and all(any(w in n for n in names) for w in _SSD_OUTPUTS):
        return "ssd"
    if len(outputs) == 1 and len(outputs[0].shape) == 4 and outputs[0].shape[-1] == 7:
        return "ssd"
    if len(outputs) == 1 and len(outputs[0].shape) == 3:
        _, first, second = outputs[0].shape
        if first is not None and (second is None or first < second):
            return "yolov8"
        if second is not None and (first is None or second < first):
            return "yolov5"
        return "yolo"
    described = ", ".join(f"{info.name} {list(info.shape)}" for info in outputs)
    raise ValueError(
        f"cannot tell the model's output layout from its outputs ({described}); "
        "pass --head yolov8, yolov5 or ssd"
    )


def yolo_layout(shape: Sequence[int]) -> str:
    """``yolov8`` or ``yolov5`` from a real ``[B, x, y]`` output: class rows are the short side."""
    _, first, second = shape
    if first == second:
        raise ValueError(
            f"cannot tell YOLOv8 from YOLOv5 for an output of shape {list(shape)}; "
            "pass --head yolov8 or yolov5, or use another --input-size"
        )
    return "yolov8" if first < second else "yolov5"
