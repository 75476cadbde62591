"""Fixtures shared by every test: where the test assets are, and skipping without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.assets import REPO_ROOT, SHARED, AssetMissing, shared_asset, vtest_video

__all__ = ["REPO_ROOT", "SHARED", "shared_file", "vtest_path"]


def shared_file(relative: str) -> Path:
    """A file only ../shared has, skipping the test with the reason when it is absent."""
    try:
        return shared_asset(relative)
    except AssetMissing as missing:
        pytest.skip(str(missing))


def vtest_path() -> Path:
    """vtest.avi from ../shared or the demo's cache (see tests/assets.py); skips with the reason."""
    try:
        return vtest_video()
    except AssetMissing as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder; skips when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"test assets folder {SHARED} is absent (see ../shared/ASSETS.md)")
    return SHARED
