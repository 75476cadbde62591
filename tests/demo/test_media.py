"""Demo media: the cache, Debian's opencv-doc, scikit-image samples, and a clear error."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path

import cv2
import pytest

from framewire.demo import media
from framewire.demo.media import DemoVideo, MediaError, default_cache_dir, demo_video
from tests.conftest import SHARED, shared_file


@pytest.fixture
def no_routes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without apt, dpkg, an installed opencv-doc or scikit-image."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(media, "INSTALLED_VTEST", tmp_path / "not-installed" / "vtest.avi")
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)


def frames_and_size(path: Path) -> tuple[int, int, int]:
    capture = cv2.VideoCapture(str(path))
    count = 0
    size = (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count += 1
        size = (frame.shape[1], frame.shape[0])
    capture.release()
    return count, *size


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "framewire" / "media"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "framewire" / "media"


@pytest.mark.usefixtures("no_routes")
def test_cache_hit_needs_nothing_else(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(shared_file("media/vtest.avi"), cache / "vtest.avi")
    video = demo_video(cache)
    assert video.path == cache / "vtest.avi"
    assert video.description == media.VTEST_DESCRIPTION
    assert "OpenCV samples" in video.licence
    # Provenance saved beside the file wins over the generic text.
    (cache / "vtest.avi.json").write_text(
        json.dumps({"description": "from opencv-doc 4.6.0+dfsg-12", "licence": "Apache-2.0"})
    )
    assert demo_video(cache) == DemoVideo(
        cache / "vtest.avi", "from opencv-doc 4.6.0+dfsg-12", "Apache-2.0"
    )


@pytest.mark.usefixtures("no_routes")
def test_no_route_says_what_to_do(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="framewire.demo.media")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "vtest.avi").write_text("not a video")  # a broken cache entry is not used
    with pytest.raises(MediaError) as raised:
        demo_video(cache)
    message = str(raised.value)
    assert "- Debian opencv-doc: apt-get and dpkg-deb are not available" in message
    assert "- scikit-image samples: scikit-image is not installed" in message
    assert "sudo apt-get install opencv-doc" in message
    assert "pip install scikit-image" in message
    assert "--video PATH" in message
    assert "cannot be decoded; fetching it again" in caplog.text
    assert "Debian opencv-doc route unavailable" in caplog.text


@pytest.mark.usefixtures("no_routes")
def test_installed_opencv_doc_is_copied(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Where Debian's opencv-doc puts it, simulated with the same file from ../shared.
    installed = tmp_path / "usr/share/doc/opencv-doc/examples/data/vtest.avi"
    installed.parent.mkdir(parents=True)
    shutil.copy(shared_file("media/vtest.avi"), installed)
    monkeypatch.setattr(media, "INSTALLED_VTEST", installed)
    cache = tmp_path / "cache"
    video = demo_video(cache)
    assert video.path == cache / "vtest.avi"
    assert md5(video.path) == md5(installed)
    assert str(installed) in video.description
    assert not (cache / "vtest.avi.part").exists()
    # The next call is a cache hit, even with the installed copy gone.
    installed.unlink()
    assert demo_video(cache).description == video.description


@pytest.mark.slow
def test_debian_route_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get/dpkg-deb not available: not a Debian-like system")
    monkeypatch.setattr(media, "INSTALLED_VTEST", tmp_path / "not-installed" / "vtest.avi")
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    cache = tmp_path / "cache"
    try:
        video = demo_video(cache)
    except MediaError as error:
        if "apt-get download opencv-doc failed" in str(error):
            pytest.skip(f"the Debian package could not be downloaded here: {error}")
        raise
    assert video.path == cache / "vtest.avi"
    assert "from Debian opencv-doc" in video.description
    assert frames_and_size(video.path) == (795, 768, 576)
    if (SHARED / "media/vtest.avi").is_file():
        assert md5(video.path) == md5(SHARED / "media/vtest.avi")
    assert sorted(p.name for p in cache.iterdir()) == ["vtest.avi", "vtest.avi.json"]


def test_scikit_image_clip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("skimage.data", reason="scikit-image is optional and not installed")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(media, "INSTALLED_VTEST", tmp_path / "not-installed" / "vtest.avi")
    cache = tmp_path / "cache"
    video = demo_video(cache)
    assert video.path == cache / media.SAMPLES_NAME
    assert "astronaut (person)" in video.description
    assert "CC0" in video.licence
    assert frames_and_size(video.path) == (100, 640, 480)
    built = video.path.stat().st_mtime_ns
    assert demo_video(cache).path.stat().st_mtime_ns == built  # built once, then cached


def test_pan_zoom_clip_moves(tmp_path: Path) -> None:
    photo = cv2.imread(str(shared_file("media/horses.jpg")))
    path = tmp_path / "clip.avi"
    written = media.write_pan_zoom_clip(
        [photo, photo[:, ::-1]], path, size=(320, 240), fps=10, seconds=2
    )
    assert written == 20
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame.astype(int))
    capture.release()
    assert len(frames) == 20
    assert all(frame.shape == (240, 320, 3) for frame in frames)
    # Consecutive frames differ a little (the zoom), the two photos a lot.
    assert 1 < abs(frames[1] - frames[0]).mean() < abs(frames[10] - frames[9]).mean()


@pytest.mark.usefixtures("no_routes")
def test_unusable_cache_folder_is_explained(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where the cache folder should be")
    with pytest.raises(MediaError, match=r"- Debian opencv-doc: .*(Not a directory|File exists)"):
        demo_video(tmp_path / "file" / "media")
