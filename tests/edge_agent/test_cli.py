"""The `edge-agent` command: JSON lines, --on-detect, --record, and its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from framewire.edge_agent.errors import EXIT_CODES
from framewire.ingest.server import IngestServer
from tests.conftest import vtest_path
from tests.harness import ServerThread, free_port

pytestmark = pytest.mark.slow


def edge_agent(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framewire.edge_agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def vtest_args(port: int, *extra: str) -> list[str]:
    return [
        "--server", f"127.0.0.1:{port}",
        "--source", str(vtest_path()),
        "--resize", "480x270",
        "--fps", "20",
        *extra,
    ]  # fmt: skip


def test_jsonl_output_follows_the_documented_schema(serve: ServerThread[IngestServer]) -> None:
    done = edge_agent(*vtest_args(serve.server.port, "--frames", "15", "--output", "jsonl"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    results = [line for line in lines if line["type"] == "result"]
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert summary["captured"] == 15
    assert len(results) == summary["processed"] + summary["failed"]
    first = results[0]
    assert set(first) == {
        "type", "stream_id", "seq", "capture_time", "latency_ms", "detections", "skipped",
        "error", "server_ms", "batch_size", "model_id", "frame",
    }  # fmt: skip
    assert first["capture_time"].endswith("Z")
    assert first["error"] is None
    assert set(first["server_ms"]) >= {"queue", "inference", "total"}
    assert first["frame"]["width"] == 480
    detection = first["detections"][0]
    assert set(detection) == {"class_id", "label", "score", "box", "track_id"}
    assert detection["track_id"] is None  # no --track
    assert all(0 <= value <= 1 for value in detection["box"])
    assert "stream " in done.stderr  # the human summary goes to stderr with jsonl


def test_on_detect_runs_only_for_matching_classes(
    serve: ServerThread[IngestServer], tmp_path: Path
) -> None:
    cars = tmp_path / "cars.jsonl"
    giraffes = tmp_path / "giraffes.jsonl"
    done = edge_agent(
        *vtest_args(serve.server.port, "--frames", "20"),
        "--on-detect", f"cat >> {cars}; echo >> {cars}",
        "--on-detect-classes", "car",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in cars.read_text().splitlines() if line]
    assert events, "no --on-detect run for cars on vtest"
    assert all(any(d["label"] == "car" for d in event["detections"]) for event in events)
    assert "actions  ran" in done.stdout

    done = edge_agent(
        *vtest_args(serve.server.port, "--frames", "10"),
        "--on-detect", f"cat >> {giraffes}",
        "--on-detect-classes", "giraffe",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not giraffes.exists()


def test_record_writes_a_playable_video_with_boxes(
    serve: ServerThread[IngestServer], tmp_path: Path
) -> None:
    video = tmp_path / "out.mp4"
    done = edge_agent(*vtest_args(serve.server.port, "--frames", "20", "--record", str(video)))
    assert done.returncode == 0, done.stderr
    assert "recorded" in done.stdout
    recorded = int(done.stdout.split("recorded ")[1].split()[0])
    capture = cv2.VideoCapture(str(video))
    try:
        assert capture.isOpened()
        frames = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(image)
    finally:
        capture.release()
    assert len(frames) == recorded > 0
    assert frames[0].shape == (270, 480, 3)
    # Boxes are drawn in saturated colours that vtest's greys and browns do
    # not have: look for strongly coloured pixels.
    hsv = cv2.cvtColor(frames[0], cv2.COLOR_BGR2HSV)
    assert ((hsv[..., 1] > 200) & (hsv[..., 2] > 150)).sum() > 200


def test_exit_codes_are_distinct_and_documented(serve: ServerThread[IngestServer]) -> None:
    help_text = edge_agent("--help").stdout
    for code in EXIT_CODES:
        assert f"  {code}  " in help_text

    bad_flag = edge_agent("--max-in-flight", "0")
    assert bad_flag.returncode == 2
    assert "--max-in-flight must be within 1..64" in bad_flag.stderr

    server = f"127.0.0.1:{serve.server.port}"
    no_source = edge_agent("--server", server, "--source", "/no/such/file.avi")
    assert no_source.returncode == 3
    assert "no/such/file.avi" in no_source.stderr

    unreachable = edge_agent(
        *vtest_args(free_port(), "--frames", "5", "--connect-timeout", "2s"), timeout=60
    )
    assert unreachable.returncode == 4
    assert "could not reach the ingest server" in unreachable.stderr
    assert "accounting error" not in unreachable.stderr  # frames captured meanwhile are counted

    refused = edge_agent(*vtest_args(serve.server.port, "--frames", "5", "--classes", "unicorn"))
    assert refused.returncode == 5
    assert "unicorn" in refused.stderr


def test_the_agent_needs_no_model_runtime() -> None:
    # A Raspberry Pi installs framewire[agent]: neither that extra nor the
    # agent's imports may pull in a model runtime or the server side.
    from importlib import metadata

    agent_requirements = [
        requirement
        for requirement in metadata.requires("framewire") or []
        if requirement.replace('"', "'").endswith("extra == 'agent'")
    ]
    assert agent_requirements
    for heavy in ("onnxruntime", "tensorrt", "pycuda", "prometheus", "openpibo"):
        assert not any(heavy in requirement for requirement in agent_requirements)
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, framewire.edge_agent.cli;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('onnxruntime', 'prometheus_client', 'tensorrt') or "
            "m.startswith(('framewire.inference', 'framewire.ingest'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
