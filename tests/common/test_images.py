"""JPEG header reading: sizes without decoding, truncation, bombs, garbage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framewire.common.images import ImageFormatError, read_jpeg_header


def encode(width: int, height: int, channels: int = 3, **params: int) -> bytes:
    rng = np.random.default_rng(width * height)
    shape = (height, width, channels) if channels > 1 else (height, width)
    pixels = rng.integers(0, 255, size=shape, dtype=np.uint8)
    flags = [int(cv2.IMWRITE_JPEG_QUALITY), 80]
    if params.get("progressive"):
        flags += [int(cv2.IMWRITE_JPEG_PROGRESSIVE), 1]
    ok, data = cv2.imencode(".jpg", pixels, flags)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize(("width", "height"), [(640, 480), (1, 1), (767, 575), (300, 1000)])
def test_size_matches_the_encoded_image(width: int, height: int) -> None:
    header = read_jpeg_header(encode(width, height))
    assert (header.width, header.height, header.channels) == (width, height, 3)
    assert header.pixels == width * height
    assert header.complete


def test_greyscale_and_progressive() -> None:
    assert read_jpeg_header(encode(64, 48, channels=1)).channels == 1
    header = read_jpeg_header(encode(64, 48, progressive=1))
    assert (header.width, header.height, header.complete) == (64, 48, True)


def test_truncated_scan_is_flagged_incomplete() -> None:
    data = encode(320, 240)
    header = read_jpeg_header(data[: len(data) // 2])
    assert (header.width, header.height) == (320, 240)
    assert not header.complete


def test_cut_inside_header_is_an_error() -> None:
    with pytest.raises(ImageFormatError, match="truncated JPEG"):
        read_jpeg_header(encode(320, 240)[:20])


def test_bomb_size_is_read_without_decoding() -> None:
    # A tiny file declaring 65000x65000 pixels: the header says so, nothing is allocated.
    data = bytearray(encode(16, 16))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (65000).to_bytes(2, "big") * 2
    header = read_jpeg_header(bytes(data))
    assert header.pixels == 65000 * 65000


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "not a JPEG"),
        (b"hello world", "not a JPEG"),
        (b"\xff\xd8\xff\xd9", "end of image before any scan"),
        (b"\xff\xd8\x00\x00", "expected a marker"),
        (b"\xff\xd8\xff\xda\x00\x08" + bytes(8), "scan data before any frame header"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03" + bytes(12), "0 pixels|16x0"),
    ],
)
def test_garbage_is_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageFormatError, match=reason):
        read_jpeg_header(data)
