"""Sources: video files, folders of images, HTTP streams, and clear errors for the rest."""

from __future__ import annotations

import contextlib
import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from framewire.edge_agent.sources import (
    CapturedFrame,
    FrameSource,
    SourceError,
    gstreamer_available,
    open_source,
)
from tests.conftest import vtest_path

VTEST_FRAMES = 795


def read_all(
    source: FrameSource, limit: int = 10_000, keep: frozenset[int] | None = None
) -> list[CapturedFrame]:
    """Reads up to ``limit`` frames; with ``keep``, drops the pixels of other indices."""
    frames = []
    while len(frames) < limit:
        frame = source.read()
        if frame is None:
            break
        if keep is not None and frame.index not in keep:
            frame = CapturedFrame(frame.index, frame.image[:1, :1], frame.capture_ns)
        frames.append(frame)
    return frames


def test_video_file_reads_every_frame_then_ends() -> None:
    path = vtest_path()
    before = time.time_ns()
    source = open_source(str(path))
    try:
        assert source.name == f"video file {str(path)!r}"
        assert (source.native_fps, source.is_live) == (10.0, False)
        frames = read_all(source, keep=frozenset({0, 10}))
        after = time.time_ns()
        assert source.read() is None
    finally:
        source.close()
    assert [frame.index for frame in frames] == list(range(VTEST_FRAMES))
    assert frames[0].image.shape == frames[10].image.shape == (576, 768, 3)
    assert frames[0].image.dtype == np.uint8
    stamps = [frame.capture_ns for frame in frames]
    assert before <= stamps[0]
    assert stamps == sorted(stamps)
    assert stamps[-1] <= after
    # Real pictures, not blank frames: people walk, so consecutive frames differ.
    assert frames[0].image.std() > 20
    assert not np.array_equal(frames[0].image, frames[10].image)


def test_video_file_loops_with_indices_still_counting() -> None:
    source = open_source(str(vtest_path()), loop=True)
    try:
        frames = read_all(
            source, limit=VTEST_FRAMES + 2, keep=frozenset({0, 1, VTEST_FRAMES, VTEST_FRAMES + 1})
        )
    finally:
        source.close()
    assert [frame.index for frame in frames] == list(range(VTEST_FRAMES + 2))
    assert np.array_equal(frames[VTEST_FRAMES].image, frames[0].image)
    assert np.array_equal(frames[VTEST_FRAMES + 1].image, frames[1].image)


def test_reading_a_closed_source_is_an_error() -> None:
    source = open_source(str(vtest_path()))
    source.close()
    source.close()
    with pytest.raises(SourceError, match="closed"):
        source.read()


@pytest.mark.parametrize(
    "content", [b"", b"this is a text file, not a video\n" * 100], ids=["empty", "text"]
)
def test_a_file_that_is_not_a_video_fails_fast(tmp_path: Path, content: bytes) -> None:
    fake = tmp_path / "clip.avi"
    fake.write_bytes(content)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"cannot (open|read from) video file '.*clip\.avi'"):
        open_source(str(fake))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no/such/clip.avi", "no such file, directory, camera or URL: 'no/such/clip.avi'"),
        ("", "no source given"),
        ("udp://239.0.0.1:1234", "unsupported URL scheme 'udp'"),
        ("57", "cannot open camera 57"),
        ("/dev/null", "cannot open camera /dev/null"),
    ],
)
def test_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_gstreamer_pipeline() -> None:
    pipeline = "videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240 ! appsink"
    if not gstreamer_available():
        with pytest.raises(SourceError, match="no GStreamer support"):
            open_source(pipeline)
        return
    source = open_source(pipeline)
    try:
        frame = source.read()
        assert frame is not None
        assert frame.image.shape == (240, 320, 3)
        assert source.is_live
    finally:
        source.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle(self) -> None:
        # FFmpeg hangs up mid-file when the source is closed; that is not a server error.
        with contextlib.suppress(ConnectionError):
            super().handle()


@pytest.fixture
def http_media() -> Iterator[str]:
    """An HTTP server on a free port serving the folder that holds vtest.avi."""
    folder = vtest_path().parent
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_stream(http_media: str) -> None:
    source = open_source(f"{http_media}/vtest.avi")
    try:
        assert source.is_live
        assert source.name.startswith("network stream 'http://127.0.0.1:")
        frames = [source.read() for _ in range(5)]
    finally:
        source.close()
    assert [frame.index for frame in frames if frame is not None] == [0, 1, 2, 3, 4]
    expected = cv2.VideoCapture(str(vtest_path()))
    ok, first = expected.read()
    expected.release()
    assert ok
    assert frames[0] is not None
    assert np.array_equal(frames[0].image, first)


def test_unreachable_stream_fails_fast() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"cannot open network stream 'rtsp://127\.0\.0\.1"):
        open_source(f"rtsp://127.0.0.1:{port}/live", network_timeout=3)
    assert time.monotonic() - started < 10


def test_password_is_not_shown() -> None:
    with pytest.raises(SourceError) as raised:
        open_source("http://camera:s3cret@127.0.0.1:1/video.mjpg", network_timeout=2)
    assert "s3cret" not in str(raised.value)
    assert "camera:***@" in str(raised.value)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Real pictures named so that plain sorting and natural sorting disagree, plus junk."""
    capture = cv2.VideoCapture(str(vtest_path()))
    try:
        pictures = [capture.read()[1] for _ in range(3)]
    finally:
        capture.release()
    cv2.imwrite(str(tmp_path / "frame10.jpg"), pictures[0])
    cv2.imwrite(str(tmp_path / "frame2.JPG"), pictures[1])
    grey = cv2.cvtColor(pictures[2], cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "frame1.png"), grey)  # greyscale on disk
    (tmp_path / "frame3.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "frame4.bmp").mkdir()  # a folder with an image name is ignored too
    return tmp_path


def test_image_folder_in_natural_order_skipping_junk(
    image_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="framewire.edge_agent.sources")
    source = open_source(str(image_folder))
    try:
        assert (source.native_fps, source.is_live) == (None, False)
        frames = read_all(source)
        assert source.read() is None
        assert getattr(source, "unreadable", None) == 1
    finally:
        source.close()
    expected = [
        cv2.imread(str(image_folder / name), cv2.IMREAD_COLOR)
        for name in ("frame1.png", "frame2.JPG", "frame10.jpg")
    ]
    assert len(frames) == 3
    for frame, image in zip(frames, expected, strict=True):
        assert frame.image.ndim == 3
        assert frame.image.shape[2] == 3
        assert np.array_equal(frame.image, image)
    assert [frame.index for frame in frames] == [0, 1, 2]
    assert [r.message for r in caplog.records] == [
        f"skipping {image_folder / 'frame3.jpg'}: not an image OpenCV can decode"
    ]


def test_image_folder_loops(image_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="framewire.edge_agent.sources")
    source = open_source(str(image_folder), loop=True)
    try:
        frames = read_all(source, limit=7)
    finally:
        source.close()
    assert [frame.index for frame in frames] == list(range(7))
    assert np.array_equal(frames[3].image, frames[0].image)
    assert np.array_equal(frames[6].image, frames[0].image)
    assert len(caplog.records) == 1  # the broken file is warned about once, not every pass


def test_folders_without_usable_images(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no images in image folder .*\.bmp, \.jpeg"):
        open_source(str(tmp_path))
    (tmp_path / "a.jpg").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(SourceError, match=r"none of the 2 image files .* could be decoded"):
        open_source(str(tmp_path))
