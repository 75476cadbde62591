"""Multi-object tracking per stream: fills ``Detection.track_id``.

ByteTrack-class (Zhang et al., 2022): every track carries a constant-velocity
Kalman filter over its box centre and size; each new frame's detections are
matched to the tracks' predicted boxes by IoU, in passes:

1. detections scoring at least ``track_high_score`` against every live track
   (followed or lost);
2. the remaining low-scoring detections (``track_low_score`` up to the high
   one) against the followed tracks still unmatched, so an object whose score
   dips (occlusion, blur) keeps its track instead of starting a new one;
3. the remaining high detections against tentative tracks (seen once), which
   become confirmed and get their id when matched again;
4. what is still unmatched and scores at least ``track_new_score`` starts a
   tentative track.

Time is the frames' capture time, not a frame count: the filter predicts over
the real interval, so a track survives skipped frames (a stream whose frames
are superseded or dropped at the edge), and a lost track is forgotten after
``track_lost_time`` seconds whatever the frame rate. Matching never crosses
classes. Ids are assigned at confirmation, counting from 1 per stream, so
every id a client sees belongs to an object seen at least twice.

Pure and synchronous (numpy and ``lap``), unit-tested without gRPC. One
:class:`StreamTracker` serves one stream; :class:`Tracking` holds them for
the batcher and applies them to FrameResults.

The assignment uses ``lap`` (LAPJV, as ByteTrack itself does): a 1.7 MB wheel
that needs only numpy, where scipy's ``linear_sum_assignment`` would add a
35 MB wheel (over 100 MB installed) to the server for one function, and
``supervision``'s ByteTrack would bring scipy, matplotlib and more.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import lap
import numpy as np
import numpy.typing as npt

from framewire.common.settings import option, parse_duration
from framewire.v1 import common_pb2, ingest_service_pb2

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The Kalman filter's model of motion, in units of the box's own size (so one
# model fits near and far objects) and per second (so it holds at any frame
# rate). These describe how objects move, not how the server is run, so they
# are constants of the model rather than settings. Position noise 0.3 box
# sizes per root-second is ByteTrack's h/20 per frame at about 30 fps; its
# velocity noise (about 1 box size per second per root-second) made the
# velocity follow the detector's jitter on vtest's walkers, so it is 0.3 here,
# chosen on vtest frames 0-299 (bench/bench_tracking.py reports frames
# 300-599, which played no part in the choice).
_POSITION_NOISE = 0.3
_VELOCITY_NOISE = 0.3
# How far a detector's box is from the truth: ByteTrack's h/20.
_MEASUREMENT_NOISE = 0.05
# Uncertainty of a new track's velocity: a fifth of its size per second.
_INITIAL_VELOCITY = 0.2
# A box never shrinks below this in the filter (normalized units), so that
# noise scaled by size never reaches zero.
_MIN_SIZE = 1e-3


@dataclass(frozen=True)
class TrackingConfig:
    """How ingest follows objects across frames (ByteTrack-class)."""

    track: bool = option(
        False,
        "track objects in every stream and fill Detection.track_id; without it, only streams "
        "that ask (StreamConfig.track, edge-agent --track) are tracked",
    )
    track_high_score: float = option(
        0.5, "detections scoring at least this are matched first and may start tracks"
    )
    track_low_score: float = option(
        0.1,
        "detections from this score up to --track-high-score only continue existing tracks "
        "(asked of the model for tracked streams; results still honour the stream's threshold)",
    )
    track_new_score: float = option(
        0.6, "an unmatched detection starts a new track when it scores at least this"
    )
    track_match_iou: float = option(
        0.2, "least IoU between a track's predicted box and a high-scoring detection to match"
    )
    track_low_match_iou: float = option(
        0.5, "least IoU to match a low-scoring detection, or a tentative track's second sighting"
    )
    track_lost_time: float = option(
        1.0,
        "a track unmatched for this long (capture time) is forgotten; its id is never reused",
        parse=parse_duration,
    )
    max_tracks: int = option(
        256, "tracks kept per stream at most; beyond it the longest-lost ones are forgotten"
    )

    def __post_init__(self) -> None:
        for name in (
            "track_high_score",
            "track_low_score",
            "track_new_score",
            "track_match_iou",
            "track_low_match_iou",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {value}")
        if self.track_low_score > self.track_high_score:
            raise ValueError("track_low_score must not exceed track_high_score")
        if self.track_lost_time <= 0 or self.max_tracks <= 0:
            raise ValueError("track_lost_time and max_tracks must be positive")


class _State(enum.IntEnum):
    TENTATIVE = 0  # seen once; no id yet
    FOLLOWED = 1  # confirmed and matched in the latest frame
    LOST = 2  # confirmed, unmatched since ``last_seen``


@dataclass(frozen=True)
class Observation:
    """One detection as the tracker sees it: a normalized box, a score and a class."""

    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max in [0, 1]
    score: float
    class_id: int


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), as (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def assign(cost: FloatArray, limit: float) -> list[tuple[int, int]]:
    """Minimum-cost pairs (row, column) with cost at most ``limit`` (LAPJV)."""
    if cost.size == 0:
        return []
    _, rows, _ = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
    return [(row, int(column)) for row, column in enumerate(rows) if column >= 0]


def _to_state(boxes: FloatArray) -> FloatArray:
    """(x_min, y_min, x_max, y_max) -> (centre x, centre y, width, height)."""
    width = np.maximum(boxes[:, 2] - boxes[:, 0], _MIN_SIZE)
    height = np.maximum(boxes[:, 3] - boxes[:, 1], _MIN_SIZE)
    return np.stack(
        [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, width, height], axis=1
    )


def _to_boxes(mean: FloatArray) -> FloatArray:
    width = np.maximum(mean[:, 2], _MIN_SIZE)
    height = np.maximum(mean[:, 3], _MIN_SIZE)
    return np.stack(
        [
            mean[:, 0] - width / 2,
            mean[:, 1] - height / 2,
            mean[:, 0] + width / 2,
            mean[:, 1] + height / 2,
        ],
        axis=1,
    )


def _scales(mean: FloatArray) -> FloatArray:
    """Per track, the size each state component's noise is scaled by: (N, 4)."""
    width = np.maximum(mean[:, 2], _MIN_SIZE)
    height = np.maximum(mean[:, 3], _MIN_SIZE)
    return np.stack([width, height, width, height], axis=1)


class StreamTracker:
    """The tracks of one stream; :meth:`update` once per frame, in capture order.

    Tracks live in parallel arrays so that each frame costs a fixed number of
    numpy calls whatever the number of objects.
    """

    def __init__(self, config: TrackingConfig) -> None:
        self.config = config
        self._mean: FloatArray = np.zeros((0, 8))
        self._cov: FloatArray = np.zeros((0, 8, 8))
        self._ids: IntArray = np.zeros(0, dtype=np.int64)  # 0 while tentative
        self._state: IntArray = np.zeros(0, dtype=np.int64)
        self._class: IntArray = np.zeros(0, dtype=np.int64)
        self._last_seen: FloatArray = np.zeros(0)
        self._time: float | None = None
        self._next_id = 1

    @property
    def tracks(self) -> int:
        """Tracks alive now (tentative, followed or lost)."""
        return len(self._ids)

    def update(self, time: float, observations: Sequence[Observation]) -> list[int | None]:
        """Takes one frame's detections at capture ``time`` (seconds); returns their track ids.

        Each entry is the id of the confirmed track the detection belongs
        to, or None (a first sighting, or a detection matched to nothing). A
        frame older than the latest one seen (batches may finish out of
        order) is matched against the current tracks without changing them.
        """
        if not observations and self._time is None:
            return []
        boxes = np.array([o.box for o in observations], dtype=np.float64).reshape(-1, 4)
        scores = np.array([o.score for o in observations], dtype=np.float64)
        classes = np.array([o.class_id for o in observations], dtype=np.int64)
        if self._time is not None and time < self._time:
            return self._match_late(boxes, classes)
        first_frame = self._time is None
        self._forget(time)
        self._predict(0.0 if self._time is None else time - self._time)
        self._time = time
        result: list[int | None] = [None] * len(observations)
        config = self.config
        high = np.flatnonzero(scores >= config.track_high_score)
        low = np.flatnonzero(
            (scores >= config.track_low_score) & (scores < config.track_high_score)
        )
        confirmed = np.flatnonzero(self._state != _State.TENTATIVE)
        tentative = np.flatnonzero(self._state == _State.TENTATIVE)
        matched_tracks: list[int] = []

        # 1. High-scoring detections against every confirmed track, lost ones included.
        pairs = self._associate(confirmed, high, boxes, classes, config.track_match_iou)
        used = {det for _, det in pairs}
        matched_tracks += [track for track, _ in pairs]
        self._correct(pairs, boxes, time)
        rest_high = np.array([det for det in high if det not in used], dtype=np.int64)

        # 2. Low-scoring detections keep followed (not lost) tracks alive.
        followed = np.array(
            [t for t in confirmed if t not in matched_tracks and self._state[t] == _State.FOLLOWED],
            dtype=np.int64,
        )
        low_pairs = self._associate(followed, low, boxes, classes, config.track_low_match_iou)
        matched_tracks += [track for track, _ in low_pairs]
        self._correct(low_pairs, boxes, time)
        pairs += low_pairs

        # 3. Tentative tracks need a second high-scoring sighting to be confirmed.
        tentative_pairs = self._associate(
            tentative, rest_high, boxes, classes, config.track_low_match_iou
        )
        used |= {det for _, det in tentative_pairs}
        self._correct(tentative_pairs, boxes, time)
        for track, _ in tentative_pairs:
            self._ids[track] = self._take_id()
        matched_tracks += [track for track, _ in tentative_pairs]
        pairs += tentative_pairs

        for track, det in pairs:
            self._state[track] = _State.FOLLOWED
            result[det] = int(self._ids[track])
        unmatched = np.ones(len(self._ids), dtype=bool)
        unmatched[matched_tracks] = False
        # Tentative tracks not seen again were noise; confirmed ones are lost for now.
        drop = unmatched & (self._state == _State.TENTATIVE)
        self._state[unmatched & (self._state == _State.FOLLOWED)] = _State.LOST
        self._keep(~drop)

        # 4. New tracks from what is left. On a stream's first frame they are
        # confirmed at once (as ByteTrack does): there is nothing to confuse them with.
        unused = [det for det in rest_high if det not in used]
        for det in (det for det in unused if scores[det] >= config.track_new_score):
            track_id = self._take_id() if first_frame else 0
            self._start(boxes[det], int(classes[det]), time, track_id)
            if first_frame:
                result[det] = track_id
        self._cap()
        return result

    # -- internals ------------------------------------------------------------

    def _take_id(self) -> int:
        track_id, self._next_id = self._next_id, self._next_id + 1
        return track_id

    def _associate(
        self,
        tracks: IntArray,
        detections: IntArray,
        boxes: FloatArray,
        classes: IntArray,
        min_iou: float,
    ) -> list[tuple[int, int]]:
        """Pairs (track index, detection index) by IoU with the tracks' predictions."""
        if len(tracks) == 0 or len(detections) == 0:
            return []
        predicted = _to_boxes(self._mean[tracks, :4])
        iou = iou_matrix(predicted, boxes[detections])
        same_class = self._class[tracks][:, None] == classes[detections][None, :]
        cost = np.where(same_class, 1.0 - iou, 1.0)
        return [
            (int(tracks[row]), int(detections[column]))
            for row, column in assign(cost, 1.0 - min_iou)
            if same_class[row, column] and iou[row, column] >= min_iou
        ]

    def _match_late(self, boxes: FloatArray, classes: IntArray) -> list[int | None]:
        result: list[int | None] = [None] * len(boxes)
        confirmed = np.flatnonzero(self._state != _State.TENTATIVE)
        pairs = self._associate(
            confirmed,
            np.arange(len(boxes), dtype=np.int64),
            boxes,
            classes,
            self.config.track_match_iou,
        )
        for track, det in pairs:
            result[det] = int(self._ids[track])
        return result

    def _forget(self, time: float) -> None:
        """Drops lost tracks not seen for longer than the lost time."""
        if len(self._ids):
            self._keep(time - self._last_seen <= self.config.track_lost_time)

    def _predict(self, dt: float) -> None:
        if len(self._ids) == 0 or dt <= 0:
            return
        transition = np.eye(8)
        transition[:4, 4:] = np.eye(4) * dt
        scales = _scales(self._mean)
        noise = np.concatenate(
            [(_POSITION_NOISE * scales) ** 2 * dt, (_VELOCITY_NOISE * scales) ** 2 * dt], axis=1
        )
        self._mean = self._mean @ transition.T
        self._cov = transition @ self._cov @ transition.T
        self._cov[:, range(8), range(8)] += noise

    def _correct(self, pairs: list[tuple[int, int]], boxes: FloatArray, time: float) -> None:
        """The Kalman update of the matched tracks with their detections."""
        if not pairs:
            return
        tracks = np.array([track for track, _ in pairs], dtype=np.int64)
        measured = _to_state(boxes[[det for _, det in pairs]])
        mean, cov = self._mean[tracks], self._cov[tracks]
        noise = (_MEASUREMENT_NOISE * _scales(mean)) ** 2
        innovation_cov = cov[:, :4, :4].copy()
        innovation_cov[:, range(4), range(4)] += noise
        # Kalman gain K = P H^T S^-1, with H picking the first four components.
        gain = np.linalg.solve(innovation_cov, cov[:, :4, :]).transpose(0, 2, 1)
        innovation = measured - mean[:, :4]
        self._mean[tracks] = mean + np.einsum("nij,nj->ni", gain, innovation)
        self._cov[tracks] = cov - gain @ cov[:, :4, :]
        self._last_seen[tracks] = time

    def _start(self, box: FloatArray, class_id: int, time: float, track_id: int) -> None:
        state = _to_state(box[None, :])
        scales = _scales(state)[0]
        variance = np.concatenate(
            [(2 * _MEASUREMENT_NOISE * scales) ** 2, (_INITIAL_VELOCITY * scales) ** 2]
        )
        self._mean = np.concatenate([self._mean, np.concatenate([state[0], np.zeros(4)])[None]])
        self._cov = np.concatenate([self._cov, np.diag(variance)[None]])
        self._ids = np.append(self._ids, track_id)
        self._state = np.append(
            self._state, _State.FOLLOWED if track_id else _State.TENTATIVE
        ).astype(np.int64)
        self._class = np.append(self._class, class_id)
        self._last_seen = np.append(self._last_seen, time)

    def _keep(self, mask: npt.NDArray[np.bool_]) -> None:
        self._mean = self._mean[mask]
        self._cov = self._cov[mask]
        self._ids = self._ids[mask]
        self._state = self._state[mask]
        self._class = self._class[mask]
        self._last_seen = self._last_seen[mask]

    def _cap(self) -> None:
        excess = len(self._ids) - self.config.max_tracks
        if excess <= 0:
            return
        # The longest unseen go first (lost tracks before followed ones).
        order = np.argsort(self._last_seen, kind="stable")
        mask = np.ones(len(self._ids), dtype=bool)
        mask[order[:excess]] = False
        self._keep(mask)


class Tracking:
    """The trackers of every tracked stream of one ingest server.

    The batcher calls :meth:`apply` with each processed frame's result, in
    whatever order batches finish; streams that did not ask for tracking (and
    a server without ``--track``) cost one dictionary lookup.
    """

    def __init__(self, config: TrackingConfig) -> None:
        self.config = config
        self._streams: dict[int, tuple[StreamTracker, float]] = {}

    def start(self, key: int, score_threshold: float) -> float:
        """Tracks stream ``key``; returns the score threshold to ask of the model.

        The model is asked for detections down to ``track_low_score`` so the
        low-score pass can see them; :meth:`apply` removes those below the
        stream's own ``score_threshold`` from the result again.
        """
        self._streams[key] = (StreamTracker(self.config), score_threshold)
        return min(score_threshold, self.config.track_low_score)

    def stop(self, key: int) -> None:
        self._streams.pop(key, None)

    def tracked(self, key: int) -> bool:
        return key in self._streams

    def apply(
        self,
        key: int,
        frame_time: float,
        result: ingest_service_pb2.FrameResult,
    ) -> None:
        """Fills the track ids of a processed result and drops what only the tracker wanted."""
        entry = self._streams.get(key)
        if entry is None:
            return
        tracker, threshold = entry
        detections = result.detections
        ids = tracker.update(frame_time, [_observation(detection) for detection in detections])
        for detection, track_id in zip(detections, ids, strict=True):
            if track_id is not None:
                detection.track_id = track_id
        # From the end, so the indices still to visit do not move.
        for index in reversed(range(len(detections))):
            if detections[index].score < threshold:
                del detections[index]


def frame_time(frame: ingest_service_pb2.Frame, received_at: float) -> float:
    """When a frame was taken, in seconds: its capture time, else when ingest received it.

    Capture times are the agent's clock, so skipped frames (at the edge or
    here) show as the real gap. A client that sends none is tracked on
    arrival times, which include network jitter.
    """
    if frame.HasField("capture_time"):
        return frame.capture_time.seconds + frame.capture_time.nanos / 1e9
    return received_at


def _observation(detection: common_pb2.Detection) -> Observation:
    box = detection.box
    return Observation(
        box=(box.x_min, box.y_min, box.x_max, box.y_max),
        score=detection.score,
        class_id=detection.class_id,
    )
