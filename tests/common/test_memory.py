"""glibc's malloc thresholds for server processes (framewire.common.memory)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from framewire.common.memory import MallocSetup, keep_large_buffers

# In a fresh interpreter: set up malloc (or not), allocate a batch-sized buffer, and report
# how many bytes glibc holds in mmapped blocks meanwhile (mallinfo2, glibc 2.33 and later).
PROBE = """
import ctypes, json, sys
from framewire.common.memory import keep_large_buffers

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
environ = {} if sys.argv[1] == "tuned" else {"MALLOC_TRIM_THRESHOLD_": "131072"}
setup = keep_large_buffers(environ)
buffer = bytearray(8 * 1024 * 1024)
print(json.dumps({"setup": setup.value, "mmapped": libc.mallinfo2().hblkhd}))
"""

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's"
)


def probe(mode: str) -> tuple[str, int]:
    """What the probe did with malloc, and the bytes in mmapped blocks beside the buffer."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    return str(result["setup"]), int(result["mmapped"])


@glibc_only
def test_a_batch_sized_buffer_comes_from_the_heap_once_set_up() -> None:
    setup, mmapped = probe("tuned")
    assert setup == MallocSetup.APPLIED.value
    assert mmapped < 8 * 1024 * 1024


@glibc_only
def test_the_operators_malloc_settings_are_left_alone() -> None:
    # glibc's default: the 8 MB buffer is an mmap of its own, faulted in page by page.
    setup, mmapped = probe("operator")
    assert setup == MallocSetup.OPERATOR.value
    assert mmapped >= 8 * 1024 * 1024


def test_operator_settings_win_without_touching_malloc() -> None:
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        assert keep_large_buffers({name: "1"}) is MallocSetup.OPERATOR
