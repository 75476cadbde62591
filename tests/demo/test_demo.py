"""The README's main command, `./scripts/demo.sh`, from a virtual environment that did not exist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from framewire.common.exits import ExitCode
from framewire.demo.command import histogram_quantile, metrics_snapshot
from tests.harness import REPO_ROOT


@pytest.mark.slow
def test_demo_runs_to_completion_in_a_clean_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["./scripts/demo.sh", "--frames", "20"],
        cwd=REPO_ROOT,
        env={**os.environ, "FRAMEWIRE_VENV": str(venv), "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert (venv / "bin" / "framewire").exists()  # it really built its own environment
    assert "server: 127.0.0.1:" in done.stdout
    assert "person" in done.stdout
    assert "stream demo:" in done.stdout
    assert "captured 20" in done.stdout
    assert "latency  capture to result p50" in done.stdout
    assert "server metrics (Prometheus, framewire_*):" in done.stdout
    assert "stage inference" in done.stdout


def test_histogram_quantile_matches_promql() -> None:
    # Two observations in (0.1, 0.25], two in (0.25, 0.5]: the median sits at 0.25.
    buckets = [(0.1, 0.0), (0.25, 2.0), (0.5, 4.0), (float("inf"), 4.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.25)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.375)
    assert histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 3.0)]) == 1.0


def test_metrics_snapshot_reads_the_exposition() -> None:
    text = "\n".join(
        [
            "# TYPE framewire_frames_received_total counter",
            "framewire_frames_received_total 7",
            "# TYPE framewire_stage_latency_seconds histogram",
            'framewire_stage_latency_seconds_bucket{stage="total",le="0.1"} 1',
            'framewire_stage_latency_seconds_bucket{stage="total",le="0.2"} 2',
            'framewire_stage_latency_seconds_bucket{stage="total",le="+Inf"} 2',
            'framewire_stage_latency_seconds_count{stage="total"} 2',
            'framewire_stage_latency_seconds_sum{stage="total"} 0.25',
            "",
        ]
    )
    snapshot = metrics_snapshot(text)
    assert "frames received 7" in snapshot
    assert "stage total       p50   100.0 ms   p95   190.0 ms" in snapshot


def framewire_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framewire.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_exit_codes_follow_the_one_scheme(tmp_path: Path) -> None:
    # Both are decided before the model loads.
    missing = framewire_demo("--video", str(tmp_path / "no-such.avi"))
    assert missing.returncode == ExitCode.SOURCE_FAILED
    assert "no such video file" in missing.stderr

    video = tmp_path / "clip.avi"
    video.write_bytes(b"not read: the flags are checked first")
    bad_flag = framewire_demo("--video", str(video), "--frames", "0")
    assert bad_flag.returncode == ExitCode.USAGE
    assert "--frames must be positive" in bad_flag.stderr
