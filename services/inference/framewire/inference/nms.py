"""Class-aware non-maximum suppression in numpy.

Greedy, highest score first: a box is dropped when it overlaps an already
kept box of the same class by more than the IoU threshold. Boxes of different
classes never suppress each other (a person on a bicycle keeps both). The loop
stops as soon as ``max_keep`` boxes are kept, so its cost is at most
``max_keep`` vectorized passes over the candidates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def iou_one_to_many(
    box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Intersection over union of one ``[4]`` box with each of ``[k, 4]`` boxes (x1, y1, x2, y2)."""
    left = np.maximum(box[0], boxes[:, 0])
    top = np.maximum(box[1], boxes[:, 1])
    right = np.minimum(box[2], boxes[:, 2])
    bottom = np.minimum(box[3], boxes[:, 3])
    intersection = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = max(float(box[2] - box[0]), 0.0) * max(float(box[3] - box[1]), 0.0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    union = area + areas - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / union, 0.0)
    return iou.astype(np.float32, copy=False)


def non_max_suppression(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int64],
    iou_threshold: float,
    max_keep: int,
) -> npt.NDArray[np.int64]:
    """Indices of the boxes kept, highest score first (ties: lower index first).

    A box is suppressed when its IoU with a kept box of the same class is
    strictly greater than ``iou_threshold``.
    """
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < max_keep:
        best = int(order[0])
        kept.append(best)
        rest = order[1:]
        overlap = iou_one_to_many(boxes[best], boxes[rest])
        order = rest[(overlap <= iou_threshold) | (class_ids[rest] != class_ids[best])]
    return np.asarray(kept, dtype=np.int64)
