"""The GPU stack for the tests: PyTorch, torchvision, CUDA, and the Ultralytics test models.

Without PyTorch and torchvision the tests of the torch backend and the GPU
data path skip and say why; with FRAMEWIRE_REQUIRE_GPU_STACK=1 (set by
.ci/run, which installs them on the CPU) they fail instead, so CI cannot
silently prove less. Tests that need a CUDA GPU are marked ``gpu`` and skip
without one (CI never has one).

The YOLO test models (tools/yolo_test_models.py) are built once per machine
in a subprocess and cached in ``~/.cache/framewire/test-models``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.assets import REPO_ROOT
from tests.conftest import vtest_path

# Bump when tools/yolo_test_models.py changes what it builds.
_MODELS_VERSION = "1"
_CACHE = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "framewire"


def _missing(reason: str) -> None:
    if os.environ.get("FRAMEWIRE_REQUIRE_GPU_STACK") == "1":
        pytest.fail(f"{reason} (FRAMEWIRE_REQUIRE_GPU_STACK=1: the GPU stack must be installed)")
    pytest.skip(reason)


def require_torch() -> None:
    """Skips (or fails, in CI) unless PyTorch and torchvision are installed."""
    for module in ("torch", "torchvision"):
        if importlib.util.find_spec(module) is None:
            _missing(
                f"{module} is not installed (FRAMEWIRE_GPU_STACK=1 source scripts/setup.sh "
                "installs the CPU test stack)"
            )


def require_cuda() -> None:
    """Skips unless a CUDA GPU is visible to PyTorch (never fails: CI has no GPU)."""
    require_torch()
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to PyTorch on this machine")


def vtest_rgb(indices: list[int], size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """vtest frames as RGB arrays, optionally centre-cropped to ``size`` (width, height)."""
    capture = cv2.VideoCapture(str(vtest_path()))
    frames: dict[int, np.ndarray] = {}
    try:
        for index in range(max(indices) + 1):
            ok, frame = capture.read()
            assert ok, f"vtest.avi ended before frame {index}"
            if index in indices:
                frames[index] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    result = []
    for index in indices:
        frame = frames[index]
        if size is not None:
            width, height = size
            top = (frame.shape[0] - height) // 2
            left = (frame.shape[1] - width) // 2
            frame = np.ascontiguousarray(frame[top : top + height, left : left + width])
        result.append(frame)
    return result


def yolo_models(kind: str, size: int) -> tuple[Path, Path]:
    """``(torchscript, onnx)`` of one random Ultralytics YOLO (tools/yolo_test_models.py).

    ``FRAMEWIRE_TEST_MODELS=DIR`` takes prebuilt ``KIND.torchscript`` and
    ``KIND.onnx`` (at 640) instead: a GPU machine has no Ultralytics
    (bench/device/prepare.sh builds them here).
    """
    require_torch()
    prebuilt = os.environ.get("FRAMEWIRE_TEST_MODELS")
    if prebuilt and size == 640:
        pair = Path(prebuilt) / f"{kind}.torchscript", Path(prebuilt) / f"{kind}.onnx"
        if pair[0].is_file() and pair[1].is_file():
            return pair
    if importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("onnx") is None:
        _missing(
            "ultralytics and onnx build the YOLO test models and are not installed "
            "(FRAMEWIRE_GPU_STACK=1 source scripts/setup.sh)"
        )
    tool = (REPO_ROOT / "tools" / "yolo_test_models.py").read_bytes()
    digest = hashlib.sha256(tool).hexdigest()[:12]
    folder = _CACHE / "test-models" / f"{kind}-{size}-{digest}-{_MODELS_VERSION}"
    torchscript, onnx = folder / f"{kind}.torchscript", folder / f"{kind}.onnx"
    if torchscript.is_file() and onnx.is_file():
        return torchscript, onnx
    building = folder.with_name(folder.name + f".building-{os.getpid()}")
    building.mkdir(parents=True, exist_ok=True)
    # Calibration frames at the model's size, letterboxed as the engine would.
    frames = []
    for frame in vtest_rgb([0, 100, 200, 300, 400, 500, 600, 700]):
        scale = size / max(frame.shape[:2])
        resized = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)))
        canvas = np.full((size, size, 3), 114, np.uint8)
        top = (size - resized.shape[0]) // 2
        left = (size - resized.shape[1]) // 2
        canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
        frames.append(canvas)
    np.save(building / "frames.npy", np.stack(frames))
    completed = subprocess.run(
        [sys.executable, "-m", "tools.yolo_test_models", kind, str(size), "frames.npy", "."],
        cwd=building,
        env={**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"building the {kind} test models failed:\n{completed.stdout}\n{completed.stderr}"
        )
    (building / "frames.npy").unlink()
    if folder.exists():  # another process finished first
        return torchscript, onnx
    building.rename(folder)
    return torchscript, onnx


def count_matches(found: list[list[Any]], expected: list[list[Any]]) -> tuple[int, int]:
    """``(matched, total)``: expected detections with a found one of the same label at
    IoU >= 0.9, each found detection used once; images given in the same order."""
    from tests.inference.conftest import box, iou

    total = matched = 0
    for got, want in zip(found, expected, strict=True):
        unused = list(got)
        for detection in want:
            total += 1
            same = [d for d in unused if d.label == detection.label]
            best = max(same, key=lambda d: iou(box(d), box(detection)), default=None)
            if best is not None and iou(box(best), box(detection)) >= 0.9:
                matched += 1
                unused.remove(best)
    return matched, total
