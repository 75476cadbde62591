"""Labels: built-in COCO, the COCO-91 mapping, labels files and model metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from framewire.inference.labels import (
    COCO91_IDS,
    COCO91_TO_COCO80,
    COCO_LABELS,
    generic_labels,
    label_indices,
    labels_from_metadata,
    one_based_table,
    read_labels_file,
)


def test_coco_lists_line_up() -> None:
    assert len(COCO_LABELS) == 80
    assert len(COCO91_IDS) == 80
    assert len(set(COCO91_IDS)) == 80
    assert list(COCO91_IDS) == sorted(COCO91_IDS)
    unused = sorted(set(range(1, 92)) - set(COCO91_IDS))
    assert unused == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91]


@pytest.mark.parametrize(
    ("coco91", "label"),
    [
        (1, "person"),
        (2, "bicycle"),
        (3, "car"),
        (8, "truck"),
        (17, "cat"),
        (18, "dog"),
        (19, "horse"),
        (25, "giraffe"),
        (38, "kite"),
        (90, "toothbrush"),
    ],
)
def test_coco91_ids_map_to_the_right_names(coco91: int, label: str) -> None:
    assert COCO_LABELS[COCO91_TO_COCO80[coco91]] == label


def test_unused_and_background_ids_map_to_nothing() -> None:
    assert COCO91_TO_COCO80[0] == -1
    assert COCO91_TO_COCO80[12] == -1
    assert COCO91_TO_COCO80[91] == -1


def test_one_based_table() -> None:
    assert one_based_table(3).tolist() == [-1, 0, 1, 2]


def test_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("cat\n dog \nbird\n\n\n", encoding="utf-8")
    assert read_labels_file(path) == ("cat", "dog", "bird")


def test_labels_file_with_a_gap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("cat\n\nbird\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 is blank"):
        read_labels_file(path)
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no labels"):
        read_labels_file(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        read_labels_file(tmp_path / "missing.txt")


def test_metadata_names() -> None:
    assert labels_from_metadata({"names": "{0: 'cat', 1: 'dog'}"}) == ("cat", "dog")
    assert labels_from_metadata({"names": "['cat', 'dog']"}) == ("cat", "dog")
    # Untrained exports carry the indices as names: not worth showing.
    assert labels_from_metadata({"names": "{0: '0', 1: '1'}"}) is None
    assert labels_from_metadata({"names": "{1: 'cat'}"}) is None
    assert labels_from_metadata({"names": "not python"}) is None
    assert labels_from_metadata({}) is None


def test_generic_labels_and_indices() -> None:
    assert generic_labels(2) == ("class_0", "class_1")
    assert label_indices(["a", "b", "a"]) == {"a": [0, 2], "b": [1]}
