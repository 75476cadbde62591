"""Where the tests' and benchmarks' media and models come from.

A fresh clone has what a user has: the default model (SSD MobileNet v2 COCO,
from the PyPI package in the ``server`` extra, run by OpenCV with no
``--model``) and OpenCV's sample ``vtest.avi``, which the demo's media code
fetches once from Debian's ``opencv-doc`` package into
``~/.cache/framewire/media``. Only what exists nowhere else comes from
``../shared`` (see ../shared/ASSETS.md): the photos, the untrained YOLO
exports and the ONNX conversion of SSD. ``FRAMEWIRE_SHARED`` points elsewhere.

No pytest here: the benchmarks use this module too. ``tests/conftest.py``
turns :class:`AssetMissing` into a skip that says why.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FRAMEWIRE_SHARED", str(REPO_ROOT.parent / "shared")))


class AssetMissing(Exception):
    """A test asset is not on this machine; the message says why and where it was looked for."""


def shared_asset(relative: str) -> Path:
    """A file that only ``../shared`` has (photos, YOLO exports, the ONNX copy of SSD)."""
    path = SHARED / relative
    if not path.is_file():
        raise AssetMissing(
            f"{relative} is only in the shared test assets, and {SHARED} has no such file "
            "(see ../shared/ASSETS.md; FRAMEWIRE_SHARED points elsewhere)"
        )
    return path


def vtest_video() -> Path:
    """OpenCV's vtest.avi: the copy in ../shared, else the demo's (cached, or fetched with apt).

    Both are the same file from Debian's opencv-doc. The shared copy comes
    first so that a machine holding it never downloads the package. The answer,
    a path or the reason there is none, is found once per process: a failed
    apt-get is not retried by every test.
    """
    found = _find_vtest()
    if isinstance(found, AssetMissing):
        raise found
    return found


@functools.cache
def _find_vtest() -> Path | AssetMissing:
    try:
        return _locate_vtest()
    except AssetMissing as missing:
        return missing


def _locate_vtest() -> Path:
    shared = SHARED / "media" / "vtest.avi"
    if shared.is_file():
        return shared
    # The demo's media code, imported here and nowhere else in tests/ and bench/.
    from framewire.demo import media

    try:
        video = media.demo_video()
    except media.MediaError as error:
        raise AssetMissing(
            f"vtest.avi is not under {SHARED} and the demo's route failed: {error}"
        ) from error
    if video.path.name != media.VTEST_NAME:
        raise AssetMissing(
            f"vtest.avi is not under {SHARED} and the demo found only {video.path} "
            f"({video.description}), which the tests' expectations do not describe"
        )
    return video.path


PeopleDetector = Callable[["np.ndarray"], list[tuple[tuple[float, float, float, float], float]]]


def default_model_people(min_score: float = 0.3) -> PeopleDetector:
    """People found by the default model (the PyPI SSD graph on OpenCV) in a BGR image.

    Each as ((x_min, y_min, x_max, y_max) normalized, score), score >= ``min_score``.
    Runs the graph directly, with no framewire code between, as a reference.
    """
    import cv2
    import numpy as np

    from framewire.inference.models import default_model_files

    graph, text_graph = default_model_files()
    classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    if classic is None:
        net = cv2.dnn.readNetFromTensorflow(str(graph), str(text_graph))
    else:
        net = cv2.dnn.readNetFromTensorflow(str(graph), str(text_graph), engine=classic)

    def detect(image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        net.setInput(cv2.dnn.blobFromImage(image, size=(300, 300), swapRB=True))
        rows = np.asarray(net.forward()).reshape(-1, 7)  # [_, class, score, x0, y0, x1, y1]
        return [
            ((float(x0), float(y0), float(x1), float(y1)), float(score))
            for _, label, score, x0, y0, x1, y1 in rows
            if int(label) == 1 and score >= min_score  # COCO-91 id 1 is person
        ]

    return detect
