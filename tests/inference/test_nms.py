"""Class-aware non-maximum suppression."""

from __future__ import annotations

import numpy as np

from framewire.inference.nms import iou_one_to_many, non_max_suppression


def boxes(*rows: list[float] | list[int]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_iou_of_known_boxes() -> None:
    reference = np.array([0, 0, 10, 10], np.float32)
    others = boxes([0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0])
    np.testing.assert_allclose(iou_one_to_many(reference, others), [1.0, 50 / 150, 0.0, 0.0])


def test_overlapping_boxes_of_one_class_merge_into_the_best() -> None:
    candidates = boxes([0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10])
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    classes = np.zeros(3, np.int64)
    assert non_max_suppression(candidates, scores, classes, 0.5, 100).tolist() == [1]


def test_overlapping_boxes_of_different_classes_are_all_kept() -> None:
    candidates = boxes([0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10])
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 1, 0], np.int64)
    assert non_max_suppression(candidates, scores, classes, 0.5, 100).tolist() == [0, 1]


def test_threshold_is_strict_and_separate_boxes_stay() -> None:
    # IoU exactly 1/3: kept at threshold 1/3 (only strictly greater suppresses), dropped below.
    candidates = boxes([0, 0, 10, 10], [5, 0, 15, 10], [50, 50, 60, 60])
    scores = np.array([0.9, 0.8, 0.1], np.float32)
    classes = np.zeros(3, np.int64)
    assert non_max_suppression(candidates, scores, classes, 0.34, 100).tolist() == [0, 1, 2]
    assert non_max_suppression(candidates, scores, classes, 0.33, 100).tolist() == [0, 2]


def test_chain_suppression_is_greedy() -> None:
    # B overlaps A and C; A suppresses B, then C survives because B is gone.
    candidates = boxes([0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10])
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.zeros(3, np.int64)
    assert non_max_suppression(candidates, scores, classes, 0.2, 100).tolist() == [0, 2]


def test_stops_at_max_keep_in_score_order() -> None:
    candidates = boxes(*[[i * 20, 0, i * 20 + 10, 10] for i in range(6)])
    scores = np.array([0.1, 0.6, 0.3, 0.9, 0.5, 0.9], np.float32)
    classes = np.zeros(6, np.int64)
    # Equal scores keep their input order.
    assert non_max_suppression(candidates, scores, classes, 0.5, 3).tolist() == [3, 5, 1]


def test_empty_input() -> None:
    kept = non_max_suppression(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5, 10
    )
    assert kept.tolist() == []
