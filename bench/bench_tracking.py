"""Tracking quality on real video: ID switches and fragmented tracks on vtest, full rate and halved.

Run: ``python -m bench tracking`` (300 frames, 30 s of vtest) or ``-- --quick`` (80).

vtest has no ground truth, so the reference is what can be measured without
one: a *stricter offline association* of the same detections. Two person
detections (score >= 0.5, what a client sees) in consecutive frames are
linked when their IoU is at least 0.5 and each is the other's only candidate
above 0.3, so a link is certain to be one object; a chain of links is a
*reference trajectory*. Chains stop at occlusions and crossings, where
linking is uncertain, so they measure a tracker where the answer is known.
Against them, for each run of the tracker:

- **ID switches**: along each chain, in the frames the run saw, how often the
  track id of the chain's detection changes from one tracked sighting to the
  next.
- **fragmented chains**: chains that carry more than one track id.
- **coverage**: the share of the chain's detections (in frames the run saw)
  that carry a track id (the rest: first sightings, not yet confirmed).

Runs: framewire's tracker at full rate (10 fps) and with every other frame
dropped (5 fps, real capture times), then the baselines that show what each
part buys: the halved stream timed by frame counts instead of capture times,
and the tracker without its low-score pass. Detections come from the default
model through framewire's engine, once, asked down to the low score.
"""

from __future__ import annotations

import argparse
import collections
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from framewire.common.contract import MAX_FRAME_PIXELS
from framewire.inference import Engine, EngineConfig
from framewire.ingest.tracking import Observation, StreamTracker, TrackingConfig, iou_matrix
from framewire.v1 import common_pb2, inference_service_pb2
from tests.assets import AssetMissing, vtest_video

FPS = 10.0  # vtest's own rate
SHOWN_SCORE = 0.5  # what a stream sees by default; the reference uses only these
LINK_IOU, AMBIGUOUS_IOU = 0.5, 0.3


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]
    score: float
    class_id: int
    label: str


def detect_vtest(frames: int, start: int = 0) -> list[list[Detection]]:
    """The default model's detections (score >= the tracker's low score) on vtest's frames."""
    capture = cv2.VideoCapture(str(vtest_video()))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    config = EngineConfig()
    engine = Engine.load(config)
    low = TrackingConfig().track_low_score
    found: list[list[Detection]] = []
    try:
        while len(found) < frames:
            batch: list[inference_service_pb2.Image] = []
            while len(batch) < config.max_batch and len(found) + len(batch) < frames:
                ok, image = capture.read()
                if not ok:
                    break
                image = cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA)
                assert image.shape[0] * image.shape[1] <= MAX_FRAME_PIXELS
                data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
                batch.append(
                    inference_service_pb2.Image(
                        encoding=common_pb2.ENCODING_JPEG,
                        data=data,
                        width=640,
                        height=480,
                        options=inference_service_pb2.DetectOptions(score_threshold=low),
                    )
                )
            if not batch:
                break
            response = engine.detect(inference_service_pb2.DetectRequest(images=batch))
            for result in response.results:
                found.append(
                    [
                        Detection(
                            (d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max),
                            d.score,
                            d.class_id,
                            d.label,
                        )
                        for d in result.detections
                    ]
                )
            print(f"  detected {len(found)}/{frames} frames", end="\r", flush=True)
    finally:
        capture.release()
        engine.close()
    print()
    return found


def reference_chains(frames: Sequence[Sequence[Detection]]) -> list[list[tuple[int, int]]]:
    """Certain same-person links between consecutive frames, as chains of (frame, index)."""
    shown = [
        [i for i, d in enumerate(frame) if d.label == "person" and d.score >= SHOWN_SCORE]
        for frame in frames
    ]
    following: dict[tuple[int, int], tuple[int, int]] = {}
    linked_to: set[tuple[int, int]] = set()
    for t in range(len(frames) - 1):
        a, b = shown[t], shown[t + 1]
        if not a or not b:
            continue
        iou = iou_matrix(
            np.array([frames[t][i].box for i in a]), np.array([frames[t + 1][j].box for j in b])
        )
        for row, col in zip(*np.nonzero(iou >= LINK_IOU), strict=True):
            if (iou[row] > AMBIGUOUS_IOU).sum() == 1 and (iou[:, col] > AMBIGUOUS_IOU).sum() == 1:
                following[(t, a[row])] = (t + 1, b[col])
                linked_to.add((t + 1, b[col]))
    chains = []
    for start in following:
        if start in linked_to:
            continue
        chain = [start]
        while chain[-1] in following:
            chain.append(following[chain[-1]])
        chains.append(chain)
    return chains


def run_tracker(
    frames: Sequence[Sequence[Detection]],
    config: TrackingConfig,
    *,
    every: int = 1,
    frame_counts: bool = False,
) -> dict[tuple[int, int], int | None]:
    """Track ids by (frame, detection index) for the frames fed (every ``every``-th)."""
    tracker = StreamTracker(config)
    ids: dict[tuple[int, int], int | None] = {}
    for step, t in enumerate(range(0, len(frames), every)):
        time = step / FPS if frame_counts else t / FPS
        observations = [Observation(d.box, d.score, d.class_id) for d in frames[t]]
        for index, track_id in enumerate(tracker.update(time, observations)):
            ids[(t, index)] = track_id
    return ids


@dataclass(frozen=True)
class Quality:
    chains: int
    sightings: int
    tracked: int
    switches: int
    fragmented: int
    ids: int

    @property
    def coverage(self) -> float:
        return self.tracked / self.sightings if self.sightings else 0.0


def id_lifetime(ids: dict[tuple[int, int], int | None]) -> float:
    """Mean seconds from an id's first to its last sighting (how long tracks persist)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for (frame, _), track_id in ids.items():
        if track_id is not None:
            first.setdefault(track_id, frame)
            last[track_id] = frame
    if not first:
        return 0.0
    return float(np.mean([(last[i] - first[i]) / FPS for i in first]))


def score(
    chains: Sequence[Sequence[tuple[int, int]]], ids: dict[tuple[int, int], int | None]
) -> Quality:
    sightings = tracked = switches = fragmented = 0
    counted = 0
    all_ids: set[int] = set()
    for chain in chains:
        seen = [ids[member] for member in chain if member in ids]
        if len(seen) < 2:
            continue  # the run saw this chain once or not at all
        counted += 1
        sightings += len(seen)
        known = [track_id for track_id in seen if track_id is not None]
        tracked += len(known)
        all_ids.update(known)
        switches += sum(1 for a, b in itertools.pairwise(known) if a != b)
        fragmented += len(set(known)) > 1
    return Quality(counted, sightings, tracked, switches, fragmented, len(all_ids))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tracking", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="80 frames instead of 300")
    parser.add_argument("--frames", type=int, help="vtest frames to use (default 300)")
    parser.add_argument(
        "--start", type=int, default=300,
        help="first vtest frame (default 300: frames 0-299 were used to choose the "
        "filter's constants, so the figures come from frames it was not tuned on)",
    )  # fmt: skip
    arguments = parser.parse_args(argv)
    count = arguments.frames or (80 if arguments.quick else 300)
    try:
        frames = detect_vtest(count, arguments.start)
    except AssetMissing as missing:
        print(f"skipped: {missing}")
        return 0
    chains = reference_chains(frames)
    lengths = collections.Counter(min(len(chain), 20) for chain in chains)
    print(
        f"vtest: frames {arguments.start}-{arguments.start + len(frames) - 1} at {FPS:g} fps, "
        "640x480; "
        f"{sum(len(f) for f in frames)} detections (score >= low), "
        f"{len(chains)} reference chains of person detections, "
        f"mean length {np.mean([len(c) for c in chains]):.1f} frames "
        f"({lengths[20]} of 20 or more)"
    )
    config = TrackingConfig()
    runs = [
        ("framewire, every frame (10 fps)", run_tracker(frames, config)),
        ("framewire, every other frame dropped (5 fps)", run_tracker(frames, config, every=2)),
        (
            "baseline: every other frame, timed by frame count",
            run_tracker(frames, config, every=2, frame_counts=True),
        ),
        (
            "baseline: no low-score pass, every frame",
            run_tracker(frames, TrackingConfig(track_low_score=config.track_high_score)),
        ),
    ]
    print(
        f"\n{'run':<52} {'chains':>6} {'ID switches':>11} {'fragmented':>10} "
        f"{'coverage':>8} {'ids':>5} {'id life':>8}"
    )
    for name, ids in runs:
        quality = score(chains, ids)
        print(
            f"{name:<52} {quality.chains:>6} {quality.switches:>11} {quality.fragmented:>10} "
            f"{quality.coverage:>8.1%} {quality.ids:>5} {id_lifetime(ids):>7.1f}s"
        )
    print(
        "\nchains: reference trajectories the run saw at least twice; ID switches: id changes "
        "along them; fragmented: chains with more than one id; coverage: their sightings with "
        "an id; ids: distinct ids on them (fewer: tracks that bridge the gaps between chains); "
        "id life: mean seconds from an id's first to its last sighting, all classes"
    )
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
