"""Cores within a CPU quota (framewire.common.cpus): cgroup v2 and v1 files as containers
and hosts lay them out; the container itself is checked in tests/deploy."""

from __future__ import annotations

from pathlib import Path

import pytest

from framewire.common import cpus
from framewire.common.cpus import cores_within, cpu_quota, parse_cfs, parse_cpu_max


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("50000 100000", 0.5),
        ("", None),
        ("garbage", None),
        ("100000 0", None),
    ],
)
def test_cpu_max(text: str, expected: float | None) -> None:
    assert parse_cpu_max(text) == expected


def test_cfs_quota() -> None:
    assert parse_cfs("-1\n", "100000\n") is None  # no quota: v1's default
    assert parse_cfs("100000\n", "100000\n") == 1.0
    assert parse_cfs("250000", "100000") == 2.5


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [(16, None, 16), (16, 2.0, 2), (16, 1.5, 2), (16, 0.5, 1), (2, 8.0, 2), (0, None, 1)],
)
def test_cores_within_a_quota(affinity: int, quota: float | None, expected: int) -> None:
    assert cores_within(affinity, quota) == expected


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_takes_the_lowest_quota_up_the_hierarchy(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "kubepods" / "cpu.max", "300000 100000\n")
    write(root / "kubepods" / "pod1" / "cpu.max", "max 100000\n")
    write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "max 100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/kubepods/pod1/ctr\n")
    assert cpu_quota(root, proc) == 3.0
    write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "150000 100000\n")
    assert cpu_quota(root, proc) == 1.5


def test_v2_inside_a_cgroup_namespace_reads_the_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu\n")
    write(root / "cpu.max", "100000 100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/\n")
    assert cpu_quota(root, proc) == 1.0
    proc.write_text("0::/not/mounted/here\n")  # a path outside the namespace: the root
    assert cpu_quota(root, proc) == 1.0


def test_v2_host_without_a_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu\n")
    write(root / "user.slice" / "cpu.max", "max 100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/user.slice\n")
    assert cpu_quota(root, proc) is None


def test_v1_in_a_container_reads_its_own_mount(tmp_path: Path) -> None:
    # As podman with runc shows it on this project's machine (cgroup v1, hybrid): the
    # listed path is the host's and absent inside; the container's cgroup is the mount.
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "100000\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text(
        "1:cpu:/libpod_parent/libpod-0123\n2:cpuacct:/libpod_parent/libpod-0123\n0::/x\n"
    )
    assert cpu_quota(root, proc) == 1.0


def test_v1_on_a_host_reads_the_listed_cgroup(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    write(root / "cpu" / "system.slice" / "cpu.cfs_quota_us", "200000\n")
    write(root / "cpu" / "system.slice" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:cpu,cpuacct:/system.slice\n")
    assert cpu_quota(root, proc) == 2.0
    # A parent's quota bounds its children: the lowest along the way up counts.
    write(root / "cpu" / "system.slice" / "app" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "system.slice" / "app" / "cpu.cfs_period_us", "100000\n")
    proc.write_text("4:cpu,cpuacct:/system.slice/app\n")
    assert cpu_quota(root, proc) == 2.0


def test_unreadable_means_no_quota(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path / "absent", tmp_path / "absent-proc") is None


def test_quota_cap_only_where_the_quota_is_below_the_affinity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpus, "affinity_cores", lambda: 16)
    monkeypatch.setattr(cpus, "cpu_quota", lambda: 2.0)
    assert cpus.quota_cap() == 2
    assert cpus.usable_cores() == 2
    monkeypatch.setattr(cpus, "cpu_quota", lambda: None)
    assert cpus.quota_cap() is None
    assert cpus.usable_cores() == 16
    monkeypatch.setattr(cpus, "cpu_quota", lambda: 32.0)  # more than the node has
    assert cpus.quota_cap() is None
    assert cpus.usable_cores() == 16


def test_this_machine() -> None:
    # Whatever runs the suite: the count is at least 1 and never above the affinity.
    assert 1 <= cpus.usable_cores() <= cpus.affinity_cores()
