"""Fixtures shared by every test: where the test assets are, and skipping without them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Takes off the root logger what a test put there (a command's ``main()`` sets up
    logging), and restores its level.

    The handler such a test leaves writes to the stderr pytest captured for that
    test, which is closed once it ends: every later record (a server thread of a
    module's fixture logging a stream's end, say) would be a "Logging error".
    pytest's own handlers come and go with each phase of a test and are left to it.
    """
    root = logging.getLogger()
    handlers, level = set(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder; skips when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"test assets folder {SHARED} is absent (see ../shared/ASSETS.md)")
    return SHARED
