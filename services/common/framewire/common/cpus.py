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
from collections.abc import Callable
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

    A parent's quota bounds its children, so this is the lowest along the way from the
    process's cgroup up to the mount. Inside a container the path that ``/proc/self/cgroup``
    lists may not exist under the container's own mount (cgroup v1 without a namespace),
    where the container's cgroup is the mount itself: the walk then starts at the mount.
    """
    unified, cpu = _cgroup_paths(proc_cgroup)
    if unified is not None and (root / "cgroup.controllers").is_file():  # cgroup v2
        return _lowest_up(root / unified.lstrip("/"), root, _cpu_max_at)
    mount = root / "cpu"
    return _lowest_up(mount / (cpu or "/").lstrip("/"), mount, _cfs_at)


def _cpu_max_at(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    return None if text is None else parse_cpu_max(text)


def _cfs_at(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    return None if quota is None or period is None else parse_cfs(quota, period)


def _lowest_up(start: Path, mount: Path, limit_at: Callable[[Path], float | None]) -> float | None:
    """The lowest limit found from ``start`` (or ``mount``, where it is absent) up to ``mount``."""
    here = start if start.is_dir() else mount
    limits = []
    while True:
        if (limit := limit_at(here)) is not None:
            limits.append(limit)
        if here == mount or mount not in here.parents:
            return min(limits, default=None)
        here = here.parent


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
