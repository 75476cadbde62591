"""The tracker on its own: synthetic motion with known identities, no gRPC."""

from __future__ import annotations

import pytest

from framewire.ingest.tracking import (
    Observation,
    StreamTracker,
    Tracking,
    TrackingConfig,
    iou_matrix,
)
from framewire.v1 import common_pb2, ingest_service_pb2

PERSON, CAR = 0, 2


def box_at(x: float, y: float, size: float = 0.1) -> tuple[float, float, float, float]:
    return (x, y, x + size, y + size)


def walk(
    tracker: StreamTracker,
    times: list[float],
    objects: list[tuple[float, float, float, float]],
    *,
    score: float = 0.9,
    class_id: int = PERSON,
) -> list[list[int | None]]:
    """Objects at (x0, y0) moving (vx, vy) per second, observed at ``times``."""
    seen = []
    for time in times:
        observations = [
            Observation(box_at(x + vx * time, y + vy * time), score, class_id)
            for x, y, vx, vy in objects
        ]
        seen.append(tracker.update(time, observations))
    return seen


def test_iou_matrix() -> None:
    import numpy as np

    a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5]], dtype=float)
    b = np.array([[0, 0, 1, 1], [2, 2, 3, 3]], dtype=float)
    assert iou_matrix(a, b) == pytest.approx(np.array([[1.0, 0.0], [0.25, 0.0]]))
    assert iou_matrix(a[:0], b).shape == (0, 2)


def test_two_walkers_keep_their_ids() -> None:
    tracker = StreamTracker(TrackingConfig())
    times = [i / 10 for i in range(40)]
    seen = walk(tracker, times, [(0.1, 0.2, 0.15, 0.0), (0.7, 0.6, -0.15, 0.0)])
    assert seen[0] == [1, 2]  # a stream's first frame confirms at once
    assert all(ids == [1, 2] for ids in seen)


def test_a_new_object_gets_its_id_on_the_second_sighting() -> None:
    tracker = StreamTracker(TrackingConfig())
    tracker.update(0.0, [Observation(box_at(0.1, 0.1), 0.9, PERSON)])
    later = [Observation(box_at(0.1, 0.1), 0.9, PERSON), Observation(box_at(0.6, 0.6), 0.9, PERSON)]
    assert tracker.update(0.1, later) == [1, None]
    assert tracker.update(0.2, later) == [1, 2]


def test_a_one_frame_false_positive_never_gets_an_id() -> None:
    tracker = StreamTracker(TrackingConfig())
    person = Observation(box_at(0.1, 0.1), 0.9, PERSON)
    tracker.update(0.0, [person])
    assert tracker.update(0.1, [person, Observation(box_at(0.6, 0.6), 0.9, PERSON)]) == [1, None]
    assert tracker.tracks == 2
    assert tracker.update(0.2, [person]) == [1]
    assert tracker.tracks == 1
    # The next new object gets 2: the tentative one never took an id.
    assert tracker.update(0.3, [person, Observation(box_at(0.6, 0.1), 0.9, PERSON)]) == [1, None]
    assert tracker.update(0.4, [person, Observation(box_at(0.6, 0.1), 0.9, PERSON)]) == [1, 2]


LEARN = [i / 10 for i in range(10)]  # one second at 10 fps: the filter learns the velocity
RUNNER = (0.0, 0.4, 0.3, 0.0)  # 0.1 wide, 0.3 per second: 0.03 a frame at 10 fps


@pytest.mark.parametrize("every", [3, 4])
def test_ids_survive_skipped_frames_because_time_is_capture_time(every: int) -> None:
    # With every third or fourth frame kept the runner moves 0.09 or 0.12
    # between sightings, about its own width: without the motion model over
    # the real interval the boxes would barely overlap, or not at all.
    tracker = StreamTracker(TrackingConfig())
    walk(tracker, LEARN, [RUNNER])
    seen = walk(tracker, [1.0 + i / 10 for i in range(0, 20, every)], [RUNNER])
    assert seen == [[1]] * len(seen)


def test_frame_counts_instead_of_times_would_lose_the_track() -> None:
    # The same sightings, every fourth frame, stamped as if consecutive: the
    # filter predicts a quarter of the motion and the track breaks. Capture
    # times prevent this.
    tracker = StreamTracker(TrackingConfig())
    walk(tracker, LEARN, [RUNNER])
    ids = []
    for step, true_time in enumerate([1.0, 1.4, 1.8, 2.2]):
        box = box_at(0.3 * true_time, 0.4)
        ids.append(tracker.update(1.0 + step / 10, [Observation(box, 0.9, PERSON)]))
    assert [None] in ids


def dip(config: TrackingConfig) -> list[list[int | None]]:
    """A person stands still for a second, then walks off while half hidden (scores 0.2-0.3)."""
    tracker = StreamTracker(config)
    seen = []
    for i in range(16):
        hidden = 10 <= i < 15
        x = 0.1 + 0.03 * max(0, i - 9)
        score = (0.3, 0.2)[i % 2] if hidden else 0.9
        seen.append(tracker.update(i / 10, [Observation(box_at(x, 0.3), score, PERSON)]))
    return seen


def test_the_low_score_pass_carries_a_track_through_a_dip() -> None:
    assert dip(TrackingConfig()) == [[1]] * 16


def test_without_the_low_score_pass_the_same_dip_breaks_the_track() -> None:
    # The low pass off (low == high): the hidden detections are ignored, the
    # track's prediction stays where the person stood, and a new track starts.
    seen = dip(TrackingConfig(track_low_score=0.5))
    assert seen[10:15] == [[None]] * 5
    assert seen[15] == [None]


def test_a_lost_track_comes_back_within_the_lost_time_and_not_after() -> None:
    tracker = StreamTracker(TrackingConfig(track_lost_time=1.0))
    still = Observation(box_at(0.4, 0.4), 0.9, PERSON)
    tracker.update(0.0, [still])
    tracker.update(0.1, [still])
    assert tracker.update(0.2, []) == []
    assert tracker.update(0.8, [still]) == [1]  # 0.7 s unseen
    tracker.update(3.0, [])
    assert tracker.update(3.1, [still]) == [None]  # 2.3 s unseen: forgotten, a new object
    assert tracker.update(3.2, [still]) == [2]


def test_tracks_never_cross_classes() -> None:
    tracker = StreamTracker(TrackingConfig())
    tracker.update(0.0, [Observation(box_at(0.4, 0.4), 0.9, PERSON)])
    assert tracker.update(0.1, [Observation(box_at(0.4, 0.4), 0.9, CAR)]) == [None]
    assert tracker.update(0.2, [Observation(box_at(0.4, 0.4), 0.9, CAR)]) == [2]


def test_a_late_frame_is_matched_without_changing_the_tracks() -> None:
    tracker = StreamTracker(TrackingConfig())
    walk(tracker, [0.0, 0.1, 0.2], [(0.1, 0.1, 0.1, 0.0)])
    assert tracker.tracks == 1
    # A batch holding an older frame finished after a newer one.
    assert tracker.update(0.15, [Observation(box_at(0.115, 0.1), 0.9, PERSON)]) == [1]
    assert tracker.update(0.15, [Observation(box_at(0.8, 0.8), 0.9, PERSON)]) == [None]
    assert tracker.tracks == 1
    assert walk(tracker, [0.3], [(0.1, 0.1, 0.1, 0.0)]) == [[1]]


def test_tracks_per_stream_are_capped() -> None:
    tracker = StreamTracker(TrackingConfig(max_tracks=5))
    crowd = [Observation(box_at(0.05 * i, 0.05 * i, 0.04), 0.9, PERSON) for i in range(12)]
    tracker.update(0.0, crowd)
    assert tracker.tracks == 5


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="track_low_score must not exceed"):
        TrackingConfig(track_low_score=0.6, track_high_score=0.5)
    with pytest.raises(ValueError, match="track_match_iou"):
        TrackingConfig(track_match_iou=1.5)
    with pytest.raises(ValueError, match="positive"):
        TrackingConfig(track_lost_time=0)


def detection(score: float, x: float, label: str = "person") -> common_pb2.Detection:
    return common_pb2.Detection(
        class_id=PERSON,
        label=label,
        score=score,
        box=common_pb2.BoundingBox(x_min=x, y_min=0.2, x_max=x + 0.1, y_max=0.4),
    )


def test_tracking_fills_ids_and_keeps_the_streams_threshold() -> None:
    tracking = Tracking(TrackingConfig())
    # The model is asked down to the low score; the stream still sees >= 0.5.
    assert tracking.start(7, 0.5) == 0.1
    assert tracking.start(8, 0.05) == 0.05
    assert tracking.tracked(7)
    assert not tracking.tracked(9)
    for step in range(3):
        result = ingest_service_pb2.FrameResult(
            seq=step + 1, detections=[detection(0.9, 0.1 + 0.01 * step), detection(0.2, 0.6)]
        )
        tracking.apply(7, step / 10, result)
        assert [d.score for d in result.detections] == [pytest.approx(0.9)]
        assert result.detections[0].track_id == 1
    untracked = ingest_service_pb2.FrameResult(seq=1, detections=[detection(0.9, 0.1)])
    tracking.apply(9, 0.0, untracked)
    assert not untracked.detections[0].HasField("track_id")
    tracking.stop(7)
    assert not tracking.tracked(7)
