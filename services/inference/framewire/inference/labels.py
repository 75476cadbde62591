"""Class names: the built-in COCO list, labels files, and the COCO-91 id mapping.

A detection's ``class_id`` always indexes the model's label list. YOLO models
trained on COCO use the contiguous 80-class list directly. SSD models from the
TensorFlow Object Detection API number classes with the 1-based COCO-91 ids of
the original paper (1 person, 3 car, 12 and 26 unused, up to 90 toothbrush);
:data:`COCO91_TO_COCO80` maps those onto the same 80-class list, so every
model with built-in labels reports the same ids.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

# The 80 COCO detection classes, in the order YOLO models and most tools use.
COCO_LABELS: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

# The COCO-91 id of each of the 80 classes above, in the same order. The
# eleven ids missing here (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91) were
# defined by the COCO paper but never annotated.
COCO91_IDS: tuple[int, ...] = (
    *range(1, 12),
    *range(13, 26),
    27,
    28,
    *range(31, 45),
    *range(46, 66),
    67,
    70,
    *range(72, 83),
    *range(84, 91),
)


def coco91_to_coco80() -> npt.NDArray[np.int64]:
    """A lookup table: index a COCO-91 id, get the 80-class index or -1 when it has none."""
    table = np.full(92, -1, dtype=np.int64)
    table[list(COCO91_IDS)] = np.arange(len(COCO91_IDS))
    return table


COCO91_TO_COCO80 = coco91_to_coco80()


def one_based_table(count: int) -> npt.NDArray[np.int64]:
    """A lookup table for models numbering classes from 1 (0 is background): id k -> k - 1."""
    table = np.full(count + 1, -1, dtype=np.int64)
    table[1:] = np.arange(count)
    return table


def read_labels_file(path: Path) -> tuple[str, ...]:
    """Reads one class name per line; line 1 is class 0.

    Trailing blank lines are ignored; a blank line between names is an error,
    because it would silently shift every later class id.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"labels file {path} does not exist") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"labels file {path} has no labels")
    for number, line in enumerate(lines, start=1):
        if not line:
            raise ValueError(f"labels file {path}: line {number} is blank; give every class a name")
    return tuple(lines)


def labels_from_metadata(metadata: Mapping[str, str]) -> tuple[str, ...] | None:
    """The class names an Ultralytics export stores in its ``names`` metadata, if meaningful.

    Returns None when there are none, when they cannot be read, or when they
    are only the placeholders ``"0", "1", ...`` an untrained model carries.
    """
    text = metadata.get("names")
    if not text:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            return None
        values = [names[index] for index in range(len(names))]
    elif isinstance(names, list):
        values = names
    else:
        return None
    labels = tuple(str(value) for value in values)
    if not labels or all(label == str(index) for index, label in enumerate(labels)):
        return None
    return labels


def generic_labels(count: int) -> tuple[str, ...]:
    """Names for a model whose classes have no names: ``class_0``, ``class_1``, ..."""
    return tuple(f"class_{index}" for index in range(count))


def label_indices(labels: Sequence[str]) -> dict[str, list[int]]:
    """Each label's class ids (a labels file may repeat a name)."""
    indices: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        indices.setdefault(label, []).append(index)
    return indices
