"""Fixtures shared by every test: where the test assets are, and skipping without them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Test media and models live beside the checkout (see ../shared/ASSETS.md);
# FRAMEWIRE_SHARED points elsewhere when they do not.
SHARED = Path(os.environ.get("FRAMEWIRE_SHARED", str(REPO_ROOT.parent / "shared")))


def shared_file(relative: str) -> Path:
    """Returns a file under ../shared, skipping the test with a reason when it is absent."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"test asset {relative} not found under {SHARED} (see ../shared/ASSETS.md)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder; skips when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"test assets folder {SHARED} is absent (see ../shared/ASSETS.md)")
    return SHARED
