"""Compression: resize, blur, blackout and JPEG on real video; the keyframe schedule."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from framewire.common import settings
from framewire.edge_agent.compression import (
    JPEG_BLOCK,
    CompressionConfig,
    Compressor,
    EncodedFrame,
    NormalizedBox,
    expand_boxes,
    target_size,
)
from tests.assets import default_model_people
from tests.conftest import vtest_path

Detector = Callable[[np.ndarray], list[tuple[NormalizedBox, float]]]


@pytest.fixture(scope="module")
def vtest_frames() -> list[np.ndarray]:
    """The first 40 frames of vtest.avi (768x576, people walking)."""
    capture = cv2.VideoCapture(str(vtest_path()))
    frames = []
    while len(frames) < 40:
        ok, frame = capture.read()
        assert ok, "vtest.avi ended early"
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def detect_people() -> Detector:
    """People (box, score >= 0.3) in a BGR image, by the real SSD MobileNet v2 COCO model."""
    return default_model_people(min_score=0.3)


def decode(frame: EncodedFrame) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(error, 1e-9)))


def kept_mask(frame: EncodedFrame) -> np.ndarray:
    mask = np.zeros((frame.height, frame.width), bool)
    for x0, y0, x1, y1 in frame.kept_regions:
        mask[
            round(y0 * frame.height) : round(y1 * frame.height),
            round(x0 * frame.width) : round(x1 * frame.width),
        ] = True
    return mask


def contains(
    region: NormalizedBox, box: NormalizedBox, margin: int, width: int, height: int
) -> bool:
    """Whether ``region`` holds ``box`` grown by ``margin`` pixels (clipped to the frame)."""
    tolerance = 1e-6
    return (
        region[0] <= max(0.0, box[0] - margin / width) + tolerance
        and region[1] <= max(0.0, box[1] - margin / height) + tolerance
        and region[2] >= min(1.0, box[2] + margin / width) - tolerance
        and region[3] >= min(1.0, box[3] + margin / height) - tolerance
    )


def iou(a: NormalizedBox, b: NormalizedBox) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap
    return overlap / union if union > 0 else 0.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"resize": (480, 270), "max_width": 640}, "cannot be combined"),
        ({"resize": (0, 270)}, "must be positive"),
        ({"max_width": 0}, "positive number of pixels"),
        ({"blur": -1}, "--blur -1"),
        ({"blur": 99}, "--blur 99"),
        ({"jpeg_quality": 0}, "between 1 and 100"),
        ({"jpeg_quality": 101}, "between 1 and 100"),
        ({"blackout_margin": -1}, "0 or more"),
        ({"keyframe_interval": 0}, "1 or more"),
    ],
)
def test_config_rejects_bad_values(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CompressionConfig(**fields)


def test_config_from_flags_and_environment() -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, CompressionConfig)
    namespace = parser.parse_args(
        ["--resize", "480x270", "--blur", "5", "--blackout", "--keyframe-interval", "4"]
    )
    config = settings.from_namespace(CompressionConfig, namespace, {"FRAMEWIRE_JPEG_QUALITY": "60"})
    assert config == CompressionConfig(
        resize=(480, 270), blur=5, blackout=True, keyframe_interval=4, jpeg_quality=60
    )
    assert settings.from_namespace(CompressionConfig, parser.parse_args([]), {}) == (
        CompressionConfig()
    )
    both = parser.parse_args(["--resize", "480x270", "--max-width", "320"])
    with pytest.raises(ValueError, match="cannot be combined"):
        settings.from_namespace(CompressionConfig, both, {})


def test_target_size() -> None:
    assert target_size(768, 576, CompressionConfig()) == (768, 576)
    assert target_size(768, 576, CompressionConfig(resize=(480, 270))) == (480, 270)
    assert target_size(768, 576, CompressionConfig(max_width=640)) == (640, 480)
    # max_width never enlarges.
    assert target_size(320, 240, CompressionConfig(max_width=640)) == (320, 240)
    assert target_size(768, 576, CompressionConfig(resize=(480, 270)), 0.5) == (240, 135)
    assert target_size(10, 10, CompressionConfig(), 0.01) == (1, 1)


def test_resize_blur_and_jpeg_on_vtest(vtest_frames: list[np.ndarray]) -> None:
    frame = vtest_frames[0]
    plain = Compressor(CompressionConfig(resize=(480, 270))).compress(frame)
    blurred = Compressor(CompressionConfig(resize=(480, 270), blur=5)).compress(frame)
    expected = cv2.blur(cv2.resize(frame, (480, 270), interpolation=cv2.INTER_LINEAR), (5, 5))
    assert np.array_equal(blurred.image, expected)
    for encoded in (plain, blurred):
        assert (encoded.width, encoded.height) == (480, 270)
        assert not encoded.keyframe
        assert encoded.kept_regions == ()
        assert decode(encoded).shape == (270, 480, 3)
        assert psnr(decode(encoded), encoded.image) > 30
    assert len(blurred.data) < 0.8 * len(plain.data)
    # Nothing to do: the frame goes out as it came.
    untouched = Compressor(CompressionConfig()).compress(frame)
    assert untouched.image is frame
    assert (untouched.width, untouched.height) == (768, 576)


def test_flow_hint_adjustments(vtest_frames: list[np.ndarray]) -> None:
    compressor = Compressor(CompressionConfig(resize=(480, 270), jpeg_quality=90))
    first = compressor.compress(vtest_frames[1])
    compressor.adjust(jpeg_quality=30)
    lower = compressor.compress(vtest_frames[1])
    assert len(lower.data) < 0.5 * len(first.data)
    compressor.adjust(scale=0.5)
    smaller = compressor.compress(vtest_frames[1])
    assert (smaller.width, smaller.height) == (240, 135)
    assert decode(smaller).shape == (135, 240, 3)
    assert (compressor.scale, compressor.jpeg_quality) == (0.5, 30)
    compressor.adjust(scale=1.0, jpeg_quality=90)
    assert len(compressor.compress(vtest_frames[1]).data) == len(first.data)
    for bad in ({"scale": 0.0}, {"scale": 1.5}, {"scale": float("nan")}, {"jpeg_quality": 0}):
        with pytest.raises(ValueError, match="outside"):
            compressor.adjust(**bad)


def test_compress_rejects_non_bgr_images() -> None:
    compressor = Compressor(CompressionConfig())
    with pytest.raises(ValueError, match="BGR uint8"):
        compressor.compress(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="BGR uint8"):
        compressor.compress(np.zeros((10, 10, 3), np.float32))


def test_expand_boxes_geometry() -> None:
    # A box 100..200 x 50..150 in a 480x270 frame, margin 15.
    box = (100 / 480, 50 / 270, 200 / 480, 150 / 270)
    assert expand_boxes([box], 480, 270, 15) == [(85, 35, 215, 165)]
    # Block alignment only ever grows the rectangle, to multiples of 8.
    assert expand_boxes([box], 480, 270, 15, align=8) == [(80, 32, 216, 168)]
    # Clipped to the frame, including when the margin runs past the edges.
    assert expand_boxes([(0.0, 0.0, 1.0, 1.0)], 480, 270, 15, align=8) == [(0, 0, 480, 270)]
    assert expand_boxes([(0.99, 0.5, 1.0, 0.6)], 100, 100, 5, align=8) == [(88, 40, 100, 72)]
    # Boxes wholly outside, or of no size with no margin, leave nothing.
    assert expand_boxes([(0.5, 0.5, 0.5, 0.5)], 100, 100, 0) == []
    assert expand_boxes([(1.2, 0.1, 1.5, 0.2)], 100, 100, 0) == []


def test_blackout_keeps_boxes_plus_margin_and_blacks_out_the_rest() -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(1, 256, size=(270, 480, 3), dtype=np.uint8)  # no black pixel
    compressor = Compressor(CompressionConfig(blackout=True, blackout_margin=15))
    assert compressor.compress(image).keyframe  # nothing observed yet
    boxes = [(0.1, 0.2, 0.3, 0.5), (0.25, 0.4, 0.4, 0.9), (0.9, 0.9, 1.0, 1.0)]
    compressor.observe(boxes)
    frame = compressor.compress(image)
    assert not frame.keyframe
    assert len(frame.kept_regions) == len(boxes)
    for box, region in zip(boxes, frame.kept_regions, strict=True):
        assert contains(region, box, 15, 480, 270)
        # ...and not much more than that: block alignment adds under 8 pixels a side.
        assert region[0] * 480 > box[0] * 480 - 15 - JPEG_BLOCK
        assert region[2] * 480 < box[2] * 480 + 15 + JPEG_BLOCK
    mask = kept_mask(frame)
    assert np.array_equal(frame.image[mask], image[mask])
    assert not frame.image[~mask].any()
    assert 0.1 < mask.mean() < 0.5


def test_keyframes_on_schedule_and_after_empty_results(vtest_frames: list[np.ndarray]) -> None:
    compressor = Compressor(
        CompressionConfig(resize=(240, 135), blackout=True, keyframe_interval=4)
    )
    people = [(0.4, 0.3, 0.5, 0.7)]
    keyframes = []
    for index, image in enumerate(vtest_frames[:20]):
        if index == 9:
            compressor.observe([])  # a result with no detections
        elif index == 15:
            compressor.request_keyframe()
        elif index > 0:
            compressor.observe(people)
        frame = compressor.compress(image)
        assert frame.keyframe == (frame.kept_regions == ())
        if frame.keyframe:
            keyframes.append(index)
            assert np.array_equal(frame.image, cv2.resize(image, (240, 135)))
    # 0: nothing observed yet; every 4th frame since the last keyframe; 9: empty
    # result, which restarts the count (13); 15: requested, restarting it again (19).
    assert keyframes == [0, 4, 8, 9, 13, 15, 19]


def test_a_retry_repeats_the_decision_without_advancing_the_schedule(
    vtest_frames: list[np.ndarray],
) -> None:
    compressor = Compressor(CompressionConfig(blackout=True, keyframe_interval=3))
    decisions = []
    for index, image in enumerate(vtest_frames[:7]):
        if index > 0:
            compressor.observe([(0.4, 0.3, 0.5, 0.7)])
        first = compressor.compress(image)
        if index == 1:
            compressor.observe([(0.1, 0.1, 0.2, 0.2)])  # a result arriving in between
        # A retry at a lower quality, as an agent does for a frame over the size limit.
        compressor.adjust(jpeg_quality=40)
        again = compressor.compress(image, retry=True)
        compressor.adjust(jpeg_quality=80)
        assert (again.keyframe, again.kept_regions) == (first.keyframe, first.kept_regions)
        assert len(again.data) < len(first.data)
        decisions.append(first.keyframe)
    # The retries did not advance the schedule: still every 3rd frame.
    assert decisions == [True, False, False, True, False, False, True]


def test_keyframe_interval_one_sends_every_frame_whole(vtest_frames: list[np.ndarray]) -> None:
    compressor = Compressor(CompressionConfig(blackout=True, keyframe_interval=1))
    for image in vtest_frames[:3]:
        compressor.observe([(0.1, 0.1, 0.2, 0.2)])
        assert compressor.compress(image).keyframe


def test_blackout_off_never_marks_keyframes(vtest_frames: list[np.ndarray]) -> None:
    compressor = Compressor(CompressionConfig(keyframe_interval=2))
    for image in vtest_frames[:4]:
        frame = compressor.compress(image)
        assert (frame.keyframe, frame.kept_regions) == (False, ())
        compressor.observe([])


def test_blackout_on_vtest_saves_bytes_and_people_are_still_detected(
    vtest_frames: list[np.ndarray], detect_people: Detector
) -> None:
    """The closed loop on real video: each frame's kept regions come from the result
    of the frame before, as the real model found it in what was actually sent."""
    interval, margin = 5, 15
    blackout = Compressor(
        CompressionConfig(
            resize=(480, 270), blackout=True, blackout_margin=margin, keyframe_interval=interval
        )
    )
    full = Compressor(CompressionConfig(resize=(480, 270)))
    sent_bytes: list[int] = []
    full_bytes: list[int] = []
    expected_keyframes: list[int] = []
    keyframes: list[int] = []
    inside = found = 0
    last_result: list[NormalizedBox] | None = None
    since_keyframe = 0
    for index, image in enumerate(vtest_frames):
        due = last_result is None or not last_result or since_keyframe + 1 >= interval
        frame = blackout.compress(image)
        whole = full.compress(image)
        if due:
            expected_keyframes.append(index)
            since_keyframe = 0
        else:
            since_keyframe += 1
        found_in_sent = detect_people(decode(frame))
        result = [box for box, score in found_in_sent if score >= 0.5]
        if frame.keyframe:
            keyframes.append(index)
            assert frame.kept_regions == ()
        else:
            assert last_result
            sent_bytes.append(len(frame.data))
            full_bytes.append(len(whole.data))
            # Every box of the previous result, plus the margin, was kept...
            for box in last_result:
                assert any(contains(r, box, margin, 480, 270) for r in frame.kept_regions)
            # ...everything else is black...
            mask = kept_mask(frame)
            assert not frame.image[~mask].any()
            assert np.array_equal(frame.image[mask], whole.image[mask])
            # ...and people standing inside the kept regions are still found: each
            # person the model sees (score >= 0.5) in the whole frame is found in the
            # blacked-out one (score >= 0.3 and IoU >= 0.5: one borderline score
            # dipping under 0.5 is not a lost person).
            for person, score in detect_people(whole.image):
                if score >= 0.5 and any(
                    contains(r, person, 0, 480, 270) for r in frame.kept_regions
                ):
                    inside += 1
                    found += any(iou(person, box) >= 0.5 for box, _ in found_in_sent)
        blackout.observe(result)
        last_result = result
    assert keyframes == expected_keyframes
    assert keyframes[:2] == [0, interval]  # vtest always shows people: purely periodic here
    ratio = np.mean(sent_bytes) / np.mean(full_bytes)
    print(
        f"\nblackout on vtest 480x270 q80: {np.mean(sent_bytes):.0f} B vs {np.mean(full_bytes):.0f}"
        f" B full over {len(sent_bytes)} blacked-out frames: ratio {ratio:.2f}; people inside"
        f" kept regions still detected: {found}/{inside}"
    )
    assert ratio < 0.6
    assert inside >= 50
    assert found / inside >= 0.95


def test_observe_takes_any_box_sequence() -> None:
    compressor = Compressor(CompressionConfig(blackout=True))
    # Boxes straight out of a numpy array, as a detector might hand them over.
    compressor.observe([tuple(row) for row in np.array([[0.1, 0.1, 0.2, 0.2]], np.float32)])
    frame = compressor.compress(np.full((100, 100, 3), 200, np.uint8))
    assert not frame.keyframe
    assert all(type(value) is float for value in frame.kept_regions[0])
