"""Large buffers without page faults: glibc's malloc set up for a server that moves megabytes.

A server process allocates and frees buffers of a megabyte or more on every
batch: a DetectRequest of 32 JPEGs is serialized into about 1.6 MB, and the
inference server receives it as one bytes object. glibc serves an allocation
above its mmap threshold (128 KiB at first, raised as such blocks are freed,
but only up to the size last freed) with a fresh mmap, and returns the heap's
free top to the system above its trim threshold, so each such buffer is new
memory again: every 4 KiB page of it faults when first written. Measured on
this project's machine (a virtual machine, where a fault costs most), the
1.6 MB DetectRequest took 1.7-2.0 ms to serialize in that state and 80 us
with the thresholds fixed (64 images: 3.7-3.9 ms against 185 us). Side by
side with the code before, one ingest worker in front of a null model (64
streams, window 1) spent 218-224 us of CPU per frame against 234-245 us and
answered 1.09 times the frames.

Fixed thresholds keep buffers up to :data:`MMAP_THRESHOLD` on the heap and
up to :data:`TRIM_THRESHOLD` of freed heap in the process for the next batch.
That memory stays counted in the process's resident size, which is what a
container's memory limit sees: a server's steady state, not a leak.

An operator who sets glibc's own ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` keeps them; a C library other than glibc (musl)
is left alone.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
from collections.abc import Mapping

_LOGGER = logging.getLogger(__name__)

# glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# The largest mmap threshold glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): a model
# batch of 64 full-HD JPEGs stays under it.
MMAP_THRESHOLD = 32 * 1024 * 1024
# Freed heap kept for reuse: a few batches' worth.
TRIM_THRESHOLD = 128 * 1024 * 1024

OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


class MallocSetup(enum.Enum):
    """What :func:`keep_large_buffers` did."""

    APPLIED = "applied"
    OPERATOR = "left to the operator's MALLOC_* settings"
    UNSUPPORTED = "not glibc: left as it is"


def keep_large_buffers(environ: Mapping[str, str] = os.environ) -> MallocSetup:
    """Fixes glibc's mmap and trim thresholds for this process (see the module docstring)."""
    if any(name in environ for name in OPERATOR_SETTINGS):
        return MallocSetup.OPERATOR
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return MallocSetup.UNSUPPORTED
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; only glibc has these parameters.
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        return MallocSetup.UNSUPPORTED
    if mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        _LOGGER.warning("glibc refused a trim threshold of %d bytes", TRIM_THRESHOLD)
    return MallocSetup.APPLIED
