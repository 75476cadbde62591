"""Building the clients in other languages, a real server, and real frames for them.

A client whose toolchain is missing skips with the reason; with
FRAMEWIRE_REQUIRE_CLIENTS=1 (set by .ci/run) it fails instead, so CI cannot
pass without running every client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from framewire.ingest.serve_command import start_serve
from framewire.ingest.server import IngestServer
from tests.conftest import vtest_path
from tests.harness import REPO_ROOT, ServerThread
from tests.ingest.conftest import serve_config
from tests.streaming import Jpeg

CLIENTS = REPO_ROOT / "clients"
LANGUAGES = ("go", "node", "cpp")
BUILD_TIMEOUT = 600.0
FRAME_COUNT = 8
FRAME_STEP = 10
FRAME_SIZE = (480, 360)


def _unavailable(reason: str) -> None:
    if os.environ.get("FRAMEWIRE_REQUIRE_CLIENTS") == "1":
        pytest.fail(f"{reason} (FRAMEWIRE_REQUIRE_CLIENTS=1: every client must run)")
    pytest.skip(reason)


def _missing(*commands: str) -> list[str]:
    return [command for command in commands if shutil.which(command) is None]


def _run_build(args: list[str], cwd: Path) -> None:
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed in {cwd} ({done.returncode}):\n{done.stderr}")


def build_client(language: str) -> list[str]:
    """Builds one client (incrementally) and returns the command that runs it."""
    if language == "go":
        missing = _missing("go")
        if missing or not Path("/usr/share/gocode/src/google.golang.org/grpc").is_dir():
            _unavailable(
                "the Go client needs Debian's golang-go, golang-google-grpc-dev, "
                "golang-google-protobuf-dev and golang-github-golang-protobuf-1-5-dev "
                "(FRAMEWIRE_CLIENTS=1 ./scripts/test.sh installs them)"
            )
        _run_build(["./build.sh"], CLIENTS / "go")
        return [str(CLIENTS / "go" / "bin" / "framewire-go-client")]
    if language == "cpp":
        missing = _missing("g++", "make", "pkg-config")
        found = (
            not missing
            and subprocess.run(
                ["pkg-config", "--exists", "grpc++", "protobuf"], check=False
            ).returncode
            == 0
        )
        if not found:
            _unavailable(
                "the C++ client needs g++, make, pkg-config and Debian's libgrpc++-dev "
                "(FRAMEWIRE_CLIENTS=1 ./scripts/test.sh installs them)"
            )
        _run_build(["make", f"-j{os.cpu_count() or 1}"], CLIENTS / "cpp")
        return [str(CLIENTS / "cpp" / "build" / "framewire-cpp-client")]
    if language == "node":
        if _missing("node", "npm"):
            _unavailable("the Node client needs node (18 or newer) and npm")
        if not (CLIENTS / "node" / "node_modules" / "typescript").is_dir():
            _run_build(["npm", "ci", "--no-audit", "--no-fund"], CLIENTS / "node")
        # Node's build step: client.js type-checks against the types generated from the contract.
        _run_build(["npm", "run", "--silent", "check"], CLIENTS / "node")
        return ["node", str(CLIENTS / "node" / "client.js")]
    raise AssertionError(f"no client for {language}")


@pytest.fixture(scope="session", params=LANGUAGES)
def client(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """(language, command) of each client, built once per session."""
    language = str(request.param)
    return language, build_client(language)


@pytest.fixture(scope="package")
def serve() -> Iterator[ServerThread[IngestServer]]:
    """`framewire serve` with the default SSD model; frames never go stale, so none are skipped."""
    server = ServerThread(lambda: start_serve(serve_config(max_frame_age=120.0)))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[Jpeg, ...]]:
    """A folder of JPEG frames from vtest.avi (../shared or the demo's cache), and their bytes."""
    video = vtest_path()
    folder = tmp_path_factory.mktemp("frames")
    capture = cv2.VideoCapture(str(video))
    jpegs: list[Jpeg] = []
    index = 0
    try:
        while len(jpegs) < FRAME_COUNT:
            ok, image = capture.read()
            if not ok:
                break
            if index % FRAME_STEP == 0:
                resized = cv2.resize(image, FRAME_SIZE, interpolation=cv2.INTER_AREA)
                encoded = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 80])[1]
                data = encoded.tobytes()
                (folder / f"frame-{len(jpegs):04d}.jpg").write_bytes(data)
                jpegs.append(Jpeg(data, *FRAME_SIZE))
            index += 1
    finally:
        capture.release()
    assert len(jpegs) == FRAME_COUNT, f"{video.path} has too few frames"
    return folder, tuple(jpegs)
