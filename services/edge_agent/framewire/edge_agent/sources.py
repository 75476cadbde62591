"""Where frames come from: cameras, video files, network streams, pipelines, image folders.

:func:`open_source` reads the ``--source`` text and returns a
:class:`FrameSource`. Every source hands out BGR uint8 frames stamped with
``time.time_ns()`` right after the read, fails fast at open time with a
:class:`SourceError` a person can act on, and says whether it is *live* (the
device sets the pace: cameras and network streams) or not (files and folders,
which the caller paces with ``--fps``).

Which text means what, checked in this order:

- digits (``0``) or a character device (``/dev/video0``): a camera;
- ``rtsp://``, ``rtmp://``, ``http://``, ``https://``: a network stream, through FFmpeg;
- an existing directory: its ``.jpg``, ``.jpeg``, ``.png`` and ``.bmp`` files in
  natural order (``2.jpg`` before ``10.jpg``); files that cannot be decoded are
  skipped with a warning and counted in ``DirectorySource.unreadable``, and a
  folder with no decodable image at all is an error;
- an existing file: a video file;
- text containing ``!``: a GStreamer pipeline, when OpenCV was built with GStreamer
  (the pip wheels are not).

A file literally named ``0`` is opened as a video with ``./0``.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

_LOGGER = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
URL_SCHEMES = ("rtsp", "rtmp", "http", "https")
# How long FFmpeg may take to connect to, or wait on, a network stream before
# OpenCV gives up; its own default is 30 s, too long for a clear start-up error.
DEFAULT_NETWORK_TIMEOUT = 10.0


class SourceError(Exception):
    """A source cannot be opened or stopped delivering frames; the message says which and why."""


@dataclass(frozen=True, eq=False)
class CapturedFrame:
    """One frame as read from a source."""

    # Frames read from this source so far, before this one (0-based); keeps
    # counting across loops.
    index: int
    # BGR, uint8, height x width x 3.
    image: np.ndarray
    # time.time_ns() right after the read returned.
    capture_ns: int


class FrameSource(Protocol):
    """What the agent reads frames from."""

    # Says what the source is, for logs: "video file 'x.avi'".
    name: str
    # The rate the source declares, when it does (files, most cameras).
    native_fps: float | None
    # True for cameras and network streams, whose pace comes from the device.
    is_live: bool

    def read(self) -> CapturedFrame | None:
        """The next frame; None at the end of a file or folder that does not loop.

        Raises :class:`SourceError` when a live source stops delivering.
        """
        ...

    def close(self) -> None:
        """Releases the device or file; reading afterwards is an error."""
        ...


def open_source(
    spec: str, *, loop: bool = False, network_timeout: float = DEFAULT_NETWORK_TIMEOUT
) -> FrameSource:
    """Opens the source ``spec`` names (see the module docstring) and reads its first frame.

    ``loop`` rewinds files and folders at their end. Raises
    :class:`SourceError` when nothing can be read from it.
    """
    text = spec.strip()
    if not text:
        raise SourceError("no source given: pass a camera index, a file, a folder or a URL")
    if text.isdigit():
        return VideoSource(int(text), kind="camera", name=f"camera {text}", live=True, loop=False)
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
    if scheme is not None:
        if scheme[1].lower() not in URL_SCHEMES:
            raise SourceError(
                f"unsupported URL scheme {scheme[1]!r} in {text!r}: "
                f"use one of {', '.join(s + '://' for s in URL_SCHEMES)}"
            )
        milliseconds = round(network_timeout * 1000)
        return VideoSource(
            text,
            kind="stream",
            name=f"network stream {_redact(text)!r}",
            live=True,
            loop=False,
            api=cv2.CAP_FFMPEG,
            params=[
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                milliseconds,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                milliseconds,
            ],
        )
    path = Path(text).expanduser()
    if path.is_dir():
        return DirectorySource(path, loop=loop)
    if path.exists() and stat.S_ISCHR(path.stat().st_mode):
        return VideoSource(str(path), kind="camera", name=f"camera {text}", live=True, loop=False)
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise SourceError(f"cannot open video file {text!r}: permission denied")
        return VideoSource(
            str(path), kind="video file", name=f"video file {text!r}", live=False, loop=loop
        )
    if "!" in text:
        if not gstreamer_available():
            raise SourceError(
                f"{text!r} looks like a GStreamer pipeline, but this OpenCV build has no "
                "GStreamer support (the pip wheels never do): install an OpenCV built with "
                "GStreamer (e.g. Debian's python3-opencv) or pass a file, camera index or URL"
            )
        return VideoSource(
            text,
            kind="GStreamer pipeline",
            name=f"GStreamer pipeline {text!r}",
            live=True,
            loop=False,
            api=cv2.CAP_GSTREAMER,
        )
    raise SourceError(f"no such file, directory, camera or URL: {text!r}")


def gstreamer_available() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines."""
    match = re.search(r"^\s*GStreamer:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return match is not None and match[1].upper() != "NO"


def _redact(url: str) -> str:
    """The URL without a password, for logs and messages."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def _valid(image: np.ndarray | None) -> bool:
    return image is not None and image.size > 0


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """The frame as BGR HxWx3, from the grey or BGRA some backends return."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class VideoSource:
    """Anything ``cv2.VideoCapture`` opens: cameras, files, URLs, pipelines."""

    def __init__(
        self,
        target: int | str,
        *,
        kind: str,
        name: str,
        live: bool,
        loop: bool,
        api: int = cv2.CAP_ANY,
        params: list[int] | None = None,
    ) -> None:
        self.name = name
        self.is_live = live
        self._kind = kind
        self._target = target
        self._api = api
        self._params = params or []
        self._loop = loop
        self._index = 0
        self._capture = self._open()
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        # Backends report 0, NaN or absurd rates when they do not know.
        self.native_fps: float | None = fps if 0.0 < fps <= 1000.0 else None
        if live:
            # Keep at most one frame queued in the driver, so a read returns a
            # recent frame rather than one that waited (V4L2; ignored elsewhere).
            self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        # Read one frame now so that an unreadable source fails at start-up.
        ok, first = self._capture.read()
        if not ok or not _valid(first):
            self._capture.release()
            raise SourceError(
                f"cannot read from {name}: it opened but delivered no frame "
                f"({self._unreadable_hint()})"
            )
        self._pending: np.ndarray | None = first
        self._closed = False

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self._target, self._api, self._params)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {self.name}: {self._unreadable_hint()}")
        return capture

    def _unreadable_hint(self) -> str:
        if self._kind == "camera":
            return "no such camera, or it is busy or not permitted (check /dev/video* and groups)"
        if self._kind == "video file":
            return "not a video OpenCV can decode (wrong format, truncated or empty)"
        if self._kind == "stream":
            return "unreachable, refused, timed out or not a video stream OpenCV can decode"
        return "the pipeline failed to start or produced no frames"

    def read(self) -> CapturedFrame | None:
        if self._closed:
            raise SourceError(f"{self.name} is closed")
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            ok, image = self._capture.read()
            if not ok or not _valid(image):
                if self.is_live:
                    raise SourceError(f"{self.name} stopped delivering frames")
                if not self._loop:
                    return None
                image = self._rewind()
        captured = CapturedFrame(index=self._index, image=_as_bgr(image), capture_ns=time.time_ns())
        self._index += 1
        return captured

    def _rewind(self) -> np.ndarray:
        """Starts the file again, reopening it when the container cannot seek."""
        if self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            ok, image = self._capture.read()
            if ok and _valid(image):
                return image
        self._capture.release()
        self._capture = self._open()
        ok, image = self._capture.read()
        if not ok or not _valid(image):
            raise SourceError(f"{self.name}: no frame after rewinding to loop it")
        return image

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._capture.release()


def _natural_key(path: Path) -> list[tuple[int, int | str]]:
    """Sort key that puts ``frame2.jpg`` before ``frame10.jpg``."""
    return [
        (0, int(part)) if part.isdigit() else (1, part.lower())
        for part in re.split(r"(\d+)", path.name)
        if part
    ]


class DirectorySource:
    """The images of one folder, in natural order; undecodable files are skipped and counted."""

    def __init__(self, directory: Path, *, loop: bool) -> None:
        self.name = f"image folder '{directory}'"
        self.native_fps: float | None = None
        self.is_live = False
        self._loop = loop
        try:
            entries = list(directory.iterdir())
        except OSError as error:
            raise SourceError(f"cannot list {self.name}: {error.strerror or error}") from error
        self._files = sorted(
            (p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=_natural_key,
        )
        if not self._files:
            raise SourceError(
                f"no images in {self.name}: expected files ending in "
                f"{', '.join(sorted(IMAGE_SUFFIXES))}"
            )
        self._position = 0
        self._index = 0
        self._closed = False
        # Files that failed to decode, each warned about once.
        self._bad: set[Path] = set()
        # Decode the first readable image now, so a folder of junk fails at start-up.
        self._pending = self._next_image()
        if self._pending is None:
            raise SourceError(
                f"none of the {len(self._files)} image files in {self.name} could be decoded"
            )

    @property
    def unreadable(self) -> int:
        """How many distinct files were skipped because they could not be decoded."""
        return len(self._bad)

    def _next_image(self) -> np.ndarray | None:
        """Decodes the next readable file; None at the end (or after a whole pass of junk)."""
        failures_in_a_row = 0
        while failures_in_a_row < len(self._files):
            if self._position >= len(self._files):
                if not self._loop:
                    return None
                self._position = 0
            path = self._files[self._position]
            self._position += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if _valid(image):
                return image
            failures_in_a_row += 1
            if path not in self._bad:
                self._bad.add(path)
                _LOGGER.warning("skipping %s: not an image OpenCV can decode", path)
        return None

    def read(self) -> CapturedFrame | None:
        if self._closed:
            raise SourceError(f"{self.name} is closed")
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            next_image = self._next_image()
            if next_image is None:
                if self._loop:
                    raise SourceError(f"no image in {self.name} can be decoded any more")
                return None
            image = next_image
        captured = CapturedFrame(index=self._index, image=_as_bgr(image), capture_ns=time.time_ns())
        self._index += 1
        return captured

    def close(self) -> None:
        self._closed = True
