"""Real video for ``framewire demo`` on a machine that has nothing but pip (and maybe apt).

:func:`demo_video` finds a clip with COCO objects in it, in this order:

1. the cache, ``$XDG_CACHE_HOME/framewire/media`` (``~/.cache/framewire/media``):
   ``vtest.avi`` from an earlier run;
2. Debian/Ubuntu: OpenCV's own sample ``vtest.avi`` (a fixed outdoor camera,
   people walking; 768x576, 10 fps, 795 frames) from the ``opencv-doc``
   package: copied from ``/usr/share/doc`` when that package is installed,
   otherwise fetched with ``apt-get download opencv-doc`` (no root needed when
   the apt lists are present; the .deb is about 96 MB) and only that one file
   extracted, with ``dpkg-deb --fsys-tarfile``;
3. scikit-image, when it is importable: a 10 s clip (640x480, 10 fps, MJPG)
   panning and zooming over its public-domain/CC0 sample photos of an
   astronaut (person), a cat and a coffee cup, built once and cached.

When none works, :class:`MediaError` says what to do. What was chosen and why
is logged at INFO.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_LOGGER = logging.getLogger(__name__)

VTEST_NAME = "vtest.avi"
SAMPLES_NAME = "skimage-samples.avi"
DEBIAN_PACKAGE = "opencv-doc"
# Where the file sits inside the package (and on disk once it is installed).
DEBIAN_MEMBER_SUFFIX = "examples/data/vtest.avi"
INSTALLED_VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_LICENCE = "Apache-2.0 / BSD-3-Clause (OpenCV samples, Debian package opencv-doc)"
VTEST_DESCRIPTION = (
    "OpenCV sample vtest.avi: a fixed outdoor camera, people walking past parked vans and "
    "cars (768x576, 10 fps, 795 frames)"
)
SAMPLES_LICENCE = (
    "public domain (astronaut: NASA) and CC0 (chelsea: Stefan van der Walt; "
    "coffee: Rachel Michetti), scikit-image sample data"
)
# The apt route downloads ~96 MB; a slow link gets this long before we give up.
APT_TIMEOUT = 900.0


class MediaError(Exception):
    """No demo video could be found or made; the message says what to do."""


@dataclass(frozen=True)
class DemoVideo:
    """A video file to run the demo on, and where it came from."""

    path: Path
    description: str
    licence: str


class _RouteError(Exception):
    """One way of getting a video did not work; the message says why."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/framewire/media``, or ``~/.cache/framewire/media``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "framewire" / "media"


def demo_video(cache_dir: Path | None = None) -> DemoVideo:
    """Returns a real video with COCO objects, fetching or building it the first time.

    Raises :class:`MediaError` when no route works, explaining each failure and
    what to install.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / VTEST_NAME
    if _usable(cached):
        _LOGGER.info("demo video: %s (cached)", cached)
        return _described(cached, VTEST_DESCRIPTION, VTEST_LICENCE)
    if cached.exists():
        _LOGGER.warning("demo video: cached %s cannot be decoded; fetching it again", cached)

    failures: list[str] = []
    routes: list[tuple[str, Callable[[Path], DemoVideo]]] = [
        ("Debian opencv-doc", _from_debian),
        ("scikit-image samples", _from_skimage),
    ]
    for name, route in routes:
        try:
            video = route(cache)
        except (_RouteError, OSError) as error:  # OSError: e.g. a cache folder we cannot write
            _LOGGER.info("demo video: %s route unavailable: %s", name, error)
            failures.append(f"- {name}: {error}")
            continue
        _LOGGER.info("demo video: %s, from the %s route (%s)", video.path, name, video.description)
        return video
    raise MediaError(
        "no demo video is available on this machine:\n"
        + "\n".join(failures)
        + "\nDo one of these, then run the demo again:\n"
        "  * Debian/Ubuntu: sudo apt-get update (then the demo fetches opencv-doc itself), "
        "or sudo apt-get install opencv-doc\n"
        "  * any platform: pip install scikit-image\n"
        "  * or pass --video PATH with any video file (people, cars, animals show best)"
    )


def _usable(path: Path) -> bool:
    """Whether ``path`` is a video OpenCV opens and reads a frame from."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return False
        ok, frame = capture.read()
        return bool(ok) and frame is not None and frame.size > 0
    finally:
        capture.release()


def _described(path: Path, description: str, licence: str) -> DemoVideo:
    """The DemoVideo for ``path``, preferring the provenance saved beside it."""
    sidecar = path.with_name(path.name + ".json")
    try:
        saved = json.loads(sidecar.read_text())
        description, licence = str(saved["description"]), str(saved["licence"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return DemoVideo(path=path, description=description, licence=licence)


def _install(source: Path, destination: Path, description: str, licence: str) -> DemoVideo:
    """Checks that ``source`` plays, then moves it into the cache with its provenance."""
    if not _usable(source):
        raise _RouteError(f"{source.name} was obtained but OpenCV cannot decode it")
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, destination)
    sidecar = destination.with_name(destination.name + ".json")
    sidecar.write_text(json.dumps({"description": description, "licence": licence}, indent=2))
    return DemoVideo(path=destination, description=description, licence=licence)


def _from_debian(cache: Path) -> DemoVideo:
    """vtest.avi from opencv-doc: the installed copy, or one extracted from a downloaded .deb."""
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / (VTEST_NAME + ".part")
    if INSTALLED_VTEST.is_file():
        shutil.copyfile(INSTALLED_VTEST, partial)
        return _install(
            partial,
            cache / VTEST_NAME,
            VTEST_DESCRIPTION + f"; copied from {INSTALLED_VTEST}",
            VTEST_LICENCE,
        )
    apt_get, dpkg_deb = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt_get is None or dpkg_deb is None:
        raise _RouteError("apt-get and dpkg-deb are not available (not Debian or Ubuntu)")
    with tempfile.TemporaryDirectory(prefix="framewire-opencv-doc-") as scratch:
        _LOGGER.info("demo video: downloading %s with apt-get (about 96 MB)", DEBIAN_PACKAGE)
        try:
            done = subprocess.run(
                [apt_get, "download", DEBIAN_PACKAGE],
                cwd=scratch,
                capture_output=True,
                timeout=APT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise _RouteError(
                f"apt-get download {DEBIAN_PACKAGE} failed: no answer in {APT_TIMEOUT:g} s"
            ) from error
        debs = sorted(Path(scratch).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if done.returncode != 0 or not debs:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            errors = [line for line in said if line.startswith("E:")] or said[-2:]
            hint = ""
            if any("Unable to locate package" in line for line in said):
                hint = " (the apt package lists are missing: run sudo apt-get update)"
            raise _RouteError(
                f"apt-get download {DEBIAN_PACKAGE} failed "
                f"(status {done.returncode}): {' '.join(errors) or 'no .deb written'}{hint}"
            )
        deb = debs[0]
        version = deb.name.split("_")[1] if deb.name.count("_") >= 2 else "unknown"
        _extract_member(dpkg_deb, deb, DEBIAN_MEMBER_SUFFIX, partial)
    return _install(
        partial,
        cache / VTEST_NAME,
        VTEST_DESCRIPTION + f"; from Debian {DEBIAN_PACKAGE} {version}",
        VTEST_LICENCE,
    )


def _extract_member(dpkg_deb: str, deb: Path, suffix: str, destination: Path) -> None:
    """Streams the .deb's file tree through tarfile and writes the one member ending in suffix.

    ``dpkg-deb --fsys-tarfile`` undoes whichever compression the package uses
    (xz on Debian, zstd on recent Ubuntu), so Python only reads a plain tar.
    """
    process = subprocess.Popen(
        [dpkg_deb, "--fsys-tarfile", str(deb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    found = False
    try:
        with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(suffix):
                    source = archive.extractfile(member)
                    if source is None:
                        break
                    with source, destination.open("wb") as target:
                        shutil.copyfileobj(source, target, 1 << 20)
                    found = True
                    break
    except tarfile.TarError as error:
        raise _RouteError(f"cannot read {deb.name}: {error}") from error
    finally:
        # Stopping early closes the pipe under dpkg-deb; that is expected.
        process.stdout.close()
        stderr = process.stderr.read() if process.stderr is not None else b""
        if process.stderr is not None:
            process.stderr.close()
        process.wait()
    if not found:
        detail = stderr.decode(errors="replace").strip()
        raise _RouteError(
            f"{deb.name} has no file ending in {suffix}" + (f" ({detail})" if detail else "")
        )


# (scikit-image loader name, COCO objects it shows), in clip order.
_SKIMAGE_PHOTOS = (("astronaut", "person"), ("chelsea", "cat"), ("coffee", "cup"))
CLIP_SIZE = (640, 480)
CLIP_FPS = 10.0
CLIP_SECONDS = 10.0


def _from_skimage(cache: Path) -> DemoVideo:
    """Builds (once) a short pan-and-zoom clip over scikit-image's sample photos."""
    destination = cache / SAMPLES_NAME
    description = (
        f"a {CLIP_SECONDS:g} s clip panning over scikit-image sample photos: "
        + ", ".join(f"{name} ({objects})" for name, objects in _SKIMAGE_PHOTOS)
    )
    if _usable(destination):
        return _described(destination, description, SAMPLES_LICENCE)
    try:
        # Optional, and only for this route: not a dependency of framewire.
        samples = importlib.import_module("skimage.data")
    except ImportError as error:
        raise _RouteError(f"scikit-image is not installed ({error})") from error
    photos = []
    for name, _objects in _SKIMAGE_PHOTOS:
        rgb = np.asarray(getattr(samples, name)())
        photos.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / (SAMPLES_NAME + ".part.avi")
    write_pan_zoom_clip(photos, partial, size=CLIP_SIZE, fps=CLIP_FPS, seconds=CLIP_SECONDS)
    return _install(partial, destination, description, SAMPLES_LICENCE)


def write_pan_zoom_clip(
    photos: list[np.ndarray],
    path: Path,
    *,
    size: tuple[int, int],
    fps: float,
    seconds: float,
) -> int:
    """Writes an MJPG clip showing each photo in turn, slowly zooming in and drifting.

    Each photo is first fitted whole inside the frame, then zoomed to 125 %
    around a point that drifts from the centre, so objects move and change
    size as they would in front of a camera. Returns the number of frames.
    """
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise _RouteError(f"OpenCV cannot write an MJPG video to {path}")
    total = max(len(photos), round(fps * seconds))
    per_photo = total / len(photos)
    try:
        for frame_number in range(total):
            which = min(len(photos) - 1, int(frame_number / per_photo))
            progress = (frame_number - which * per_photo) / max(1.0, per_photo - 1)
            photo = photos[which]
            photo_height, photo_width = photo.shape[:2]
            fit = min(width / photo_width, height / photo_height)
            zoom = fit * (1.0 + 0.25 * progress)
            # Drift the zoom centre up to 12 % of the photo, alternating direction.
            direction = 1.0 if which % 2 == 0 else -1.0
            centre_x = photo_width * (0.5 + direction * 0.12 * progress)
            centre_y = photo_height * (0.5 - 0.06 * progress)
            matrix = np.array(
                [
                    [zoom, 0.0, width / 2 - zoom * centre_x],
                    [0.0, zoom, height / 2 - zoom * centre_y],
                ]
            )
            frame = cv2.warpAffine(
                photo,
                matrix,
                size,
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0, 0, 0),
            )
            writer.write(frame)
    finally:
        writer.release()
    return total
