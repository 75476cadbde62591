"""Model heads on synthetic output tensors whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from framewire.inference.heads import (
    DecodeOptions,
    SsdHead,
    YoloV5Head,
    YoloV8Head,
    guess_head,
    yolo_layout,
)
from framewire.inference.labels import COCO91_TO_COCO80, one_based_table
from framewire.inference.preprocess import place
from framewire.inference.signature import TensorInfo

# 1280x720 letterboxed into 640x640: 640x360 at rows 140..500.
PLACEMENT = place(1280, 720, 640, 640, "letterbox")
INPUT = (640, 640)

# (cx, cy, w, h) in input pixels, objectness, class scores for 3 classes.
ANCHORS = {
    "A": ((320, 320, 128, 72), 0.9, (1.0, 0.5, 0.0)),  # -> [0.4, 0.4, 0.6, 0.6]
    "B": ((330, 320, 128, 72), 0.8, (1.0, 0.0, 0.0)),  # overlaps A (IoU 0.86), same class
    "C": ((320, 320, 128, 72), 0.7, (0.0, 0.0, 1.0)),  # same box as A, other class
    "D": ((100, 300, 50, 50), 0.3, (0.0, 1.0, 0.0)),  # under the threshold
    "E": ((320, 50, 100, 40), 0.95, (0.0, 1.0, 0.0)),  # entirely in the grey padding
    "F": ((600, 500, 100, 40), 1.0, (0.0, 0.6, 0.0)),  # crosses the right and bottom edges
    "G": ((200, 200, 20, 20), 0.9, (0.3, 0.3, 0.3)),  # likely object, unlikely classes
}
BOX_A = [0.4, 0.4, 0.6, 0.6]
BOX_F = [550 / 640, (480 - 140) / 360, 1.0, 1.0]


def options(**overrides: object) -> DecodeOptions:
    fields: dict[str, object] = {
        "score_threshold": 0.4,
        "max_detections": 100,
        "iou_threshold": 0.45,
        "max_candidates": 30000,
    }
    fields.update(overrides)
    return DecodeOptions(**fields)  # type: ignore[arg-type]


def yolov8_output(padding_anchors: int = 5) -> np.ndarray:
    """[1, 4 + 3, anchors]: scores are objectness x class score, as a v8 head would give."""
    columns = []
    for (cx, cy, w, h), objectness, classes in ANCHORS.values():
        columns.append([cx, cy, w, h, *(objectness * c for c in classes)])
    columns += [[0, 0, 0, 0, 0, 0, 0]] * padding_anchors
    return np.array(columns, dtype=np.float32).T[None]


def yolov5_output() -> np.ndarray:
    """[1, anchors, 5 + 3] with separate objectness."""
    rows = [
        [cx, cy, w, h, objectness, *classes]
        for (cx, cy, w, h), objectness, classes in ANCHORS.values()
    ]
    return np.array(rows, dtype=np.float32)[None]


def summary(found) -> list[tuple[int, float, list[float]]]:
    return [
        (int(c), round(float(s), 4), [round(float(v), 5) for v in b])
        for b, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)
    ]


EXPECTED = [
    (0, 0.9, BOX_A),
    (2, 0.7, BOX_A),
    (1, 0.6, [round(v, 5) for v in BOX_F]),
]


@pytest.mark.parametrize(
    ("head", "output"), [(YoloV8Head(), yolov8_output()), (YoloV5Head(), yolov5_output())]
)
def test_yolo_nms_merges_same_class_and_keeps_other_classes(head, output) -> None:
    found = head.decode([output], 0, PLACEMENT, INPUT, options())
    assert summary(found) == EXPECTED


@pytest.mark.parametrize(
    ("head", "output"), [(YoloV8Head(), yolov8_output()), (YoloV5Head(), yolov5_output())]
)
def test_yolo_class_filter_picks_the_best_allowed_class(head, output) -> None:
    allowed = np.array([False, True, True])
    found = head.decode([output], 0, PLACEMENT, INPUT, options(allowed=allowed))
    # A's best allowed class is 1 (0.9 x 0.5); it no longer competes with B (class 0, filtered).
    assert summary(found) == [
        (2, 0.7, BOX_A),
        (1, 0.6, [round(v, 5) for v in BOX_F]),
        (1, 0.45, BOX_A),
    ]


def test_yolo_limits_and_thresholds() -> None:
    output = yolov8_output()
    head = YoloV8Head()
    assert (
        summary(head.decode([output], 0, PLACEMENT, INPUT, options(max_detections=2)))
        == (EXPECTED[:2])
    )
    assert len(head.decode([output], 0, PLACEMENT, INPUT, options(score_threshold=0.95))) == 0
    # A looser IoU threshold keeps B next to A.
    loose = head.decode([output], 0, PLACEMENT, INPUT, options(iou_threshold=0.9))
    assert [round(float(s), 2) for s in loose.scores] == [0.9, 0.8, 0.7, 0.6]


def test_yolo_candidate_cap_keeps_the_best() -> None:
    # The two best are E (in the padding, dropped) and A.
    output = yolov8_output()
    found = YoloV8Head().decode([output], 0, PLACEMENT, INPUT, options(max_candidates=2))
    assert summary(found) == EXPECTED[:1]


def test_yolo_reads_the_right_image_of_a_batch() -> None:
    batch = np.concatenate([np.zeros_like(yolov8_output()), yolov8_output()])
    head = YoloV8Head()
    assert len(head.decode([batch], 0, PLACEMENT, INPUT, options())) == 0
    assert summary(head.decode([batch], 1, PLACEMENT, INPUT, options())) == EXPECTED


def test_yolo_check_outputs_counts_classes() -> None:
    assert YoloV8Head().check_outputs([np.zeros((2, 84, 8400), np.float32)], 2) == 80
    assert YoloV5Head().check_outputs([np.zeros((2, 25200, 85), np.float32)], 2) == 80
    with pytest.raises(ValueError, match="rank 3"):
        YoloV8Head().check_outputs([np.zeros((2, 84), np.float32)], 2)
    with pytest.raises(ValueError, match="batch of 4"):
        YoloV8Head().check_outputs([np.zeros((2, 84, 8400), np.float32)], 4)


def ssd_tensors() -> list[np.ndarray]:
    """Two images; image 1 has dog (COCO-91 id 18), an unused id (12), car (3), then padding."""
    boxes = np.zeros((2, 100, 4), np.float32)
    scores = np.zeros((2, 100), np.float32)
    classes = np.zeros((2, 100), np.float32)
    boxes[1, :4] = np.array(
        [[0.5, 0.1, 0.9, 0.4], [0, 0, 1, 1], [0.1, 0.6, 0.3, 0.95], [0, 0, 1, 1]], np.float32
    )
    scores[1, :4] = [0.5, 0.8, 0.9, 0.99]
    classes[1, :4] = [18, 12, 3, 1]
    count = np.array([0, 3], np.float32)  # the 4th row (score 0.99) is past the count
    return [boxes, scores, classes, count]


SSD_PLACEMENT = place(768, 576, 300, 300, "stretch")


def test_ssd_tensors_map_coco91_ids_and_sort_by_score() -> None:
    head = SsdHead(COCO91_TO_COCO80, ["detection_boxes", "detection_scores", "x", "y"])
    head.check_outputs(ssd_tensors(), 2)
    found = head.decode(ssd_tensors(), 1, SSD_PLACEMENT, (300, 300), options())
    # car (80-class id 2) first, then dog (16); the unused id 12 is dropped.
    assert summary(found) == [
        (2, 0.9, [0.6, 0.1, 0.95, 0.3]),
        (16, 0.5, [0.1, 0.5, 0.4, 0.9]),
    ]
    assert len(head.decode(ssd_tensors(), 0, SSD_PLACEMENT, (300, 300), options())) == 0


def test_ssd_outputs_found_by_name_in_any_order() -> None:
    boxes, scores, classes, count = ssd_tensors()
    names = ["num_detections:0", "detection_classes:0", "detection_boxes:0", "detection_scores:0"]
    head = SsdHead(COCO91_TO_COCO80, names)
    found = head.decode([count, classes, boxes, scores], 1, SSD_PLACEMENT, (300, 300), options())
    assert [int(c) for c in found.class_ids] == [2, 16]


def test_ssd_detection_output_layout_and_class_filter() -> None:
    rows = np.array(
        [
            [0, 1, 0.9, 0.1, 0.1, 0.2, 0.2],
            [1, 1, 0.8, 0.1, 0.2, 0.3, 0.9],  # person in image 1
            [1, 18, 0.95, -0.01, 0.5, 0.4, 1.02],  # dog in image 1, slightly outside
            [1, 3, 0.3, 0.5, 0.5, 0.6, 0.6],  # under the threshold
        ],
        np.float32,
    )[None, None]
    head = SsdHead(COCO91_TO_COCO80, ["detection_out"])
    head.check_outputs([rows], 2)
    found = head.decode([rows], 1, SSD_PLACEMENT, (300, 300), options())
    assert summary(found) == [(16, 0.95, [0.0, 0.5, 0.4, 1.0]), (0, 0.8, [0.1, 0.2, 0.3, 0.9])]
    only_people = np.zeros(80, bool)
    only_people[0] = True
    found = head.decode([rows], 1, SSD_PLACEMENT, (300, 300), options(allowed=only_people))
    assert [int(c) for c in found.class_ids] == [0]


def test_ssd_with_a_custom_one_based_label_table() -> None:
    head = SsdHead(one_based_table(20), ["detection_out"])
    rows = np.array([[0, 18, 0.9, 0.1, 0.1, 0.2, 0.2], [0, 25, 0.9, 0.1, 0.1, 0.2, 0.2]])
    found = head.decode(
        [rows.astype(np.float32)[None, None]], 0, SSD_PLACEMENT, (300, 300), options()
    )
    assert found.class_ids.tolist() == [17]  # id 25 has no label and is dropped


def test_ssd_check_outputs_rejects_other_layouts() -> None:
    head = SsdHead(COCO91_TO_COCO80, [])
    with pytest.raises(ValueError, match="four outputs"):
        head.check_outputs([np.zeros((1, 84, 10), np.float32)], 1)
    with pytest.raises(ValueError, match="four outputs"):
        head.check_outputs([np.zeros((1, 10), np.float32)] * 3, 1)


def info(name: str, *shape: int | None) -> TensorInfo:
    return TensorInfo(name, tuple(shape), "float32")


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ([info("output0", None, 84, None)], "yolov8"),
        ([info("output0", 1, 84, 8400)], "yolov8"),
        ([info("output0", None, None, 85)], "yolov5"),
        ([info("output0", 1, 25200, 85)], "yolov5"),
        ([info("output0", None, None, None)], "yolo"),
        ([info("detection_out", 1, 1, None, 7)], "ssd"),
        (
            [
                info("detection_boxes:0", None, None, 4),
                info("detection_scores:0", None, None),
                info("detection_classes:0", None, None),
                info("num_detections:0", None),
            ],
            "ssd",
        ),
    ],
)
def test_guess_head_from_declared_outputs(outputs: list[TensorInfo], expected: str) -> None:
    assert guess_head(outputs) == expected


def test_guess_head_refuses_unknown_layouts() -> None:
    with pytest.raises(ValueError, match="--head"):
        guess_head([info("logits", None, 1000)])


def test_yolo_layout_from_a_real_shape() -> None:
    assert yolo_layout((1, 84, 8400)) == "yolov8"
    assert yolo_layout((1, 25200, 85)) == "yolov5"
    with pytest.raises(ValueError, match="--head"):
        yolo_layout((1, 84, 84))
