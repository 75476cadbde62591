"""Code every framewire service shares: settings, transport, images, metrics, errors."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("framewire")
except metadata.PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

__all__ = ["__version__"]
