"""How many CPU cores this process can use: its affinity, capped by its cgroup's CPU quota.

A container limited to 2 CPUs (``resources.limits.cpu: 2`` in Kubernetes, ``--cpus 2``
in podman or docker) still sees every core of its node in ``os.cpu_count()`` and in its
affinity mask: the limit is a CFS quota, time per period, not a set of cores. Runtimes
that size their thread pools from the core count (ONNX Runtime, PyTorch) then start a
thread per core of the node and are throttled: in a podman container with ``--cpus 1`` on
this project's 2-core machine, ONNX Runtime's default ran the SSD in 48-54 ms against
31-34 ms with one thread. OpenCV reads the quota itself.

Both cgroup versions are read: v2's ``cpu.max`` (``"max 100000"`` or ``"150000 100000"``),
the lowest along the process's own cgroup and its parents, and v1's ``cpu.cfs_quota_us``
and ``cpu.cfs_period_us``. A quota of 1.5 CPUs counts as 2 cores: the threads of a pool
sized to the quota rounded up still fit in it on average, and rounding down would leave
the half unused. Anything unreadable means no quota.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` ("QUOTA PERIOD"), or None for "max"."""
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def parse_cfs(quota: str, period: str) -> float | None:
    """CPUs allowed by cgroup v1's ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (-1: none)."""
    return _ratio(quota.strip(), period.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us


def _cgroup_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and its v1 ``cpu`` controller's path, where listed."""
    unified = cpu = None
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            unified = path
        elif "cpu" in controllers.split(","):
            cpu = path
    return unified, cpu


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs this process's cgroup quota allows (1.5 for ``--cpus 1.5``), None for none.

    Inside a container the cgroup paths that ``/proc/self/cgroup`` lists may not exist
    under the container's own mount (cgroup v1 without a namespace), where the container's
    cgroup is the mount itself: the listed path is tried first, then the mount's root.
    """
    unified, cpu = _cgroup_paths(proc_cgroup)
    if unified is not None and (root / "cgroup.controllers").is_file():  # cgroup v2
        start = root / unified.lstrip("/")
        if not start.is_dir():
            start = root
        limits = []
        here = start
        while True:  # the lowest quota along the way up to the root
            text = _read(here / "cpu.max")
            if text is not None and (limit := parse_cpu_max(text)) is not None:
                limits.append(limit)
            if here == root or root not in here.parents:
                break
            here = here.parent
        return min(limits, default=None)
    for base in (root / "cpu" / (cpu or "/").lstrip("/"), root / "cpu"):
        quota, period = _read(base / "cpu.cfs_quota_us"), _read(base / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return parse_cfs(quota, period)
    return None


def affinity_cores() -> int:
    """The cores this process may be scheduled on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cores_within(affinity: int, quota: float | None) -> int:
    """Cores usable with ``affinity`` cores and a quota of ``quota`` CPUs (rounded up)."""
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota)))


def usable_cores() -> int:
    """The cores this process can keep busy: its affinity, capped by its CPU quota."""
    return cores_within(affinity_cores(), cpu_quota())


def quota_cap() -> int | None:
    """The cores a CPU quota leaves this process where that is fewer than its affinity
    allows (a thread pool sized by core count should use this), else None."""
    affinity = affinity_cores()
    cores = cores_within(affinity, cpu_quota())
    return cores if cores < affinity else None
