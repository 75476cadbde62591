"""The JPEG header reader's cost is bounded whatever a client sends; real JPEGs still pass.

Cost is counted in executed lines of the reader (a tracer), not in seconds:
the count does not depend on how loaded the machine is, and the tracer stops
a reader that walks too far instead of letting it run for seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import cv2
import numpy as np
import pytest

from framewire.common import images
from framewire.common.images import (
    MAX_HEADER_MARKERS,
    ImageFormatError,
    ImageHeader,
    read_jpeg_header,
)
from tests.conftest import shared_file

MIB = 1024 * 1024
# Lines the reader may execute on any input: about a dozen per marker, for
# at most MAX_HEADER_MARKERS markers. The old reader executed millions on the
# crafted files below.
STEP_BUDGET = 30 * MAX_HEADER_MARKERS
PHOTOS = (
    "dog.jpg",
    "eagle.jpg",
    "giraffe.jpg",
    "horses.jpg",
    "kite.jpg",
    "messi5.jpg",
    "person.jpg",
)


class _TooManySteps(Exception):
    pass


def counted(data: bytes) -> tuple[ImageHeader | ImageFormatError, int]:
    """Runs the reader under a line tracer: its answer (or error) and the lines it executed."""
    steps = 0

    def local(frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        nonlocal steps
        if event == "line":
            steps += 1
            if steps > STEP_BUDGET:
                raise _TooManySteps
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        return local if frame.f_code.co_filename == images.__file__ else None

    previous = sys.gettrace()  # a coverage tracer, say: put back afterwards
    sys.settrace(calls)
    try:
        outcome: ImageHeader | ImageFormatError = read_jpeg_header(data)
    except ImageFormatError as error:
        outcome = error
    except _TooManySteps:
        pytest.fail(f"the header reader ran more than {STEP_BUDGET} lines on {len(data)} bytes")
    finally:
        sys.settrace(previous)
    return outcome, steps


def empty_app0_flood(size: int = 4 * MIB) -> bytes:
    """SOI then as many empty APP0 segments as fit: the loop-stalling frame of issue 15."""
    return b"\xff\xd8" + b"\xff\xe0\x00\x02" * ((size - 2) // 4)


def encode(pixels: np.ndarray[Any, Any], *flags: int) -> bytes:
    ok, data = cv2.imencode(".jpg", pixels, list(flags))
    assert ok
    return bytes(data.tobytes())


def test_a_flood_of_empty_segments_is_refused_within_the_step_budget() -> None:
    outcome, steps = counted(empty_app0_flood())
    assert isinstance(outcome, ImageFormatError)
    assert f"more than {MAX_HEADER_MARKERS} markers" in str(outcome)
    assert steps <= STEP_BUDGET


def test_megabytes_of_fill_bytes_cost_a_few_steps() -> None:
    # 0xFF fill before a marker is legal; the reader skips it in one C-speed match.
    body = encode(np.full((48, 64, 3), 99, np.uint8))
    data = body[:2] + b"\xff" * (4 * MIB) + body[2:]
    outcome, steps = counted(data)
    assert isinstance(outcome, ImageHeader)
    assert (outcome.width, outcome.height, outcome.complete) == (64, 48, True)
    assert steps < 1000


def test_standalone_markers_count_too() -> None:
    # RSTn markers have no length: without counting them, two bytes each would be a step.
    outcome, steps = counted(b"\xff\xd8" + b"\xff\xd0" * (2 * MIB))
    assert isinstance(outcome, ImageFormatError)
    assert "markers" in str(outcome)
    assert steps <= STEP_BUDGET


def test_just_under_the_marker_limit_is_read() -> None:
    body = encode(np.full((48, 64, 3), 99, np.uint8))
    # The encoder's own header has a handful of markers; fill the rest with COM.
    padded = body[:2] + b"\xff\xfe\x00\x02" * (MAX_HEADER_MARKERS - 20) + body[2:]
    outcome, _ = counted(padded)
    assert isinstance(outcome, ImageHeader)
    assert (outcome.width, outcome.height) == (64, 48)


@pytest.mark.parametrize("name", PHOTOS)
def test_real_photos_are_read(name: str) -> None:
    data = shared_file(f"media/{name}").read_bytes()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    outcome, steps = counted(data)
    assert isinstance(outcome, ImageHeader), outcome
    assert (outcome.height, outcome.width) == decoded.shape[:2]
    assert outcome.complete
    assert steps < 2000


@pytest.mark.parametrize(
    "flags",
    [
        (),
        (cv2.IMWRITE_JPEG_QUALITY, 5),
        (cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        (cv2.IMWRITE_JPEG_OPTIMIZE, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 4),
        (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
    ],
)
def test_opencv_frames_are_read(flags: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(7).integers(0, 255, (360, 480, 3), dtype=np.uint8)
    outcome, _ = counted(encode(pixels, *flags))
    assert isinstance(outcome, ImageHeader)
    assert (outcome.width, outcome.height, outcome.complete) == (480, 360, True)


def segment(marker: int, payload: bytes) -> bytes:
    assert len(payload) <= 65533
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def test_a_camera_style_file_with_large_exif_xmp_and_icc_blocks_is_read() -> None:
    # What phones and editors write: a full 64 KiB EXIF block (thumbnail
    # included), an extended XMP split over many APP1 segments, and a 2 MiB ICC
    # profile in APP2 chunks -- 70 segments before the frame header. libjpeg
    # decodes it, so it is a real JPEG and must be read.
    body = encode(np.full((240, 320, 3), 60, np.uint8), cv2.IMWRITE_JPEG_QUALITY, 90)
    exif = segment(0xE1, b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + bytes(65_500))
    xmp = b"".join(
        segment(0xE1, b"http://ns.adobe.com/xmp/extension/\x00" + bytes(65_000)) for _ in range(20)
    )
    icc_profile = bytes(2 * MIB)
    chunk = 65_519
    pieces = [icc_profile[at : at + chunk] for at in range(0, len(icc_profile), chunk)]
    icc = b"".join(
        segment(0xE2, b"ICC_PROFILE\x00" + bytes((number, len(pieces))) + piece)
        for number, piece in enumerate(pieces, start=1)
    )
    data = body[:2] + exif + xmp + icc + body[2:]
    assert len(pieces) > 32
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == (240, 320, 3)
    outcome, _ = counted(data)
    assert isinstance(outcome, ImageHeader)
    assert (outcome.width, outcome.height, outcome.complete) == (320, 240, True)
