"""Podman as CI runs it here (deploy/docker/podman/podman.sh), and the images built once per
test session by deploy/docker/podman/build.sh."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid

import pytest

from tests.assets import REPO_ROOT

PODMAN = REPO_ROOT / "deploy" / "docker" / "podman" / "podman.sh"
BUILD = REPO_ROOT / "deploy" / "docker" / "podman" / "build.sh"
TAG = os.environ.get("FRAMEWIRE_IMAGE_TAG", "test")
AGENT_IMAGE = f"localhost/framewire-agent:{TAG}"
SERVER_IMAGE = f"localhost/framewire-server:{TAG}"


@functools.cache
def podman_unusable() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (Debian: apt-get install podman buildah runc)"
    if shutil.which("runc") is None:
        return "runc is not installed (Debian: apt-get install runc)"
    if os.geteuid() != 0:
        return "the podman recipe here needs root (vfs storage, debootstrap for the base image)"
    probe = subprocess.run(
        [str(PODMAN), "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"podman cannot run here: {probe.stderr.strip()[-300:]}"
    return None


def require_podman() -> None:
    reason = podman_unusable()
    if reason is not None:
        pytest.skip(reason)


@functools.cache
def built_images() -> tuple[str, str]:
    """Builds the agent and server images once per session (layers are cached by podman)."""
    require_podman()
    built = subprocess.run(
        [str(BUILD), "agent", "server"],
        env={**os.environ, "FRAMEWIRE_IMAGE_TAG": TAG},
        capture_output=True,
        text=True,
        check=False,
        timeout=1500,
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return AGENT_IMAGE, SERVER_IMAGE


def container_name(role: str) -> str:
    return f"framewire-test-{role}-{uuid.uuid4().hex[:8]}"


def run_command(image: str, name: str, *args: str, options: tuple[str, ...] = ()) -> list[str]:
    """`podman run` in the foreground, as the recipe runs it: host network, host ulimits, and the
    chart's security context (read-only root, a non-root user, no capabilities)."""
    return [
        str(PODMAN),
        "run",
        "--rm",
        f"--name={name}",
        "--network=host",
        "--ulimit=host",
        "--read-only",
        "--tmpfs=/tmp",
        "--user=10001:10001",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        *options,
        image,
        *args,
    ]


def remove(name: str) -> None:
    """Removes a container whatever its state (the test's own, by name)."""
    subprocess.run(
        [str(PODMAN), "rm", "--force", "--ignore", name], capture_output=True, check=False
    )
