"""--record: a playable video of the frames as sent, with boxes and labels drawn."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from framewire.edge_agent.record import CODECS, Recorder, RecorderError, box_color
from framewire.v1 import common_pb2
from tests.conftest import vtest_path


def vtest_frames(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(vtest_path()))
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.resize(frame, size))
    capture.release()
    return frames


def person(x_min: float, y_min: float, x_max: float, y_max: float) -> common_pb2.Detection:
    return common_pb2.Detection(
        class_id=0,
        label="person",
        score=0.87,
        box=common_pb2.BoundingBox(x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max),
    )


def edge_pixels(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels on the left and right edges of a box, away from its label."""
    x0, y0, x1, y1 = box
    middle = slice(y0 + (y1 - y0) // 3, y1 - (y1 - y0) // 3)
    return np.concatenate([image[middle, x0], image[middle, x1]]).astype(np.int32)


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_recording_reopens_with_boxes_drawn(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    frames = vtest_frames(12, (480, 270))
    detection = person(0.25, 0.2, 0.5, 0.8)
    with Recorder(path, fps=10) as recorder:
        for index, frame in enumerate(frames):
            note = "keyframe" if index % 5 == 0 else ""
            recorder.write(frame, [detection], note=note)
        # A frame of another size (a FlowHint shrank frames) is scaled to the first size.
        recorder.write(cv2.resize(frames[0], (240, 135)), [detection], note="skipped")
        assert recorder.frames_written == 13
    assert recorder.frames_written == 13

    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 480
    assert int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 270
    decoded = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        decoded.append(image)
    capture.release()
    assert len(decoded) == 13

    # The box's edges carry the class colour; in the original frame they do not.
    box = (120, 54, 240, 216)
    color = np.array(box_color(0))
    drawn = np.abs(edge_pixels(decoded[3], box) - color).sum(axis=1)
    original = np.abs(edge_pixels(frames[3], box) - color).sum(axis=1)
    assert np.median(drawn) < 90
    assert np.median(original) > 200
    # The rest of the picture is the frame as sent.
    inside = (slice(90, 180), slice(150, 210))
    difference = np.abs(decoded[3][inside].astype(np.int32) - frames[3][inside]).mean()
    assert difference < 12
    # The note's white-on-black box is in the top-left corner of noted frames only.
    corner = (slice(4, 18), slice(4, 60))
    greys = [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[corner].astype(np.int32) for image in decoded]
    for index, noted in ((0, True), (1, False), (5, True), (6, False), (12, True)):
        assert ((greys[index] < 40).mean() > 0.4) == noted, index
    # The same note reads the same; another note ("skipped") differs.
    assert np.abs(greys[0] - greys[5]).mean() < 10
    assert np.abs(greys[0] - greys[12]).mean() > 20


def test_boxes_and_labels_drawn_at_the_right_place(tmp_path: Path) -> None:
    # Lossless check of the drawing itself, on a flat grey frame.
    path = tmp_path / "flat.avi"
    frame = np.full((270, 480, 3), 128, np.uint8)
    with Recorder(path, fps=5) as recorder:
        recorder.write(frame, [person(0.25, 0.5, 0.75, 0.9)])
    capture = cv2.VideoCapture(str(path))
    ok, image = capture.read()
    capture.release()
    assert ok
    changed = np.abs(image.astype(np.int32) - 128).sum(axis=2) > 60
    rows, columns = np.nonzero(changed)
    # The box spans x 120..360 and y 135..243; the label sits on top of it.
    assert 116 <= columns.min() <= 124
    assert 356 <= columns.max() <= 364
    assert rows.max() <= 247
    assert rows.min() < 135
    assert not changed[:100].any()  # nothing drawn far above the label


def test_bad_destinations(tmp_path: Path) -> None:
    with pytest.raises(RecorderError, match=r"use a name ending in \.mp4 or \.avi"):
        Recorder(tmp_path / "out.gif", fps=10)
    with pytest.raises(RecorderError, match="does not exist"):
        Recorder(tmp_path / "missing" / "out.mp4", fps=10)
    with pytest.raises(RecorderError, match="must be positive"):
        Recorder(tmp_path / "out.mp4", fps=0)
    (tmp_path / "taken.mp4").mkdir()
    with pytest.raises(RecorderError, match="could not open a mp4v video writer"):
        Recorder(tmp_path / "taken.mp4", fps=10)
    assert set(CODECS) == {".mp4", ".avi"}


def test_no_file_until_the_first_frame_and_no_writes_after_close(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    recorder = Recorder(path, fps=10)
    assert not path.exists()
    recorder.close()
    recorder.close()
    with pytest.raises(RecorderError, match="already closed"):
        recorder.write(np.zeros((10, 10, 3), np.uint8), [])
