"""The clients' --tls-ca and --token against `framewire serve` doing TLS and device tokens itself.

The server serves TLS with a certificate from a throwaway CA and checks bearer tokens
against a token file (docs/security.md): the same runs as the plaintext interop tests,
plus the statuses a device meets when its token is missing or covers another stream id,
or when it does not trust the server's certificate.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from framewire.common.auth import entry_line
from framewire.common.serving import SecurityConfig
from framewire.ingest.serve_command import start_serve
from framewire.ingest.server import IngestServer
from tests.clients.test_interop import RUN_TIMEOUT, STATUS_LINE, Client, Frames
from tests.harness import ServerThread
from tests.ingest.conftest import serve_config

pytestmark = pytest.mark.slow

TOKEN = "interop-token-1234"
OTHER_TOKEN = "lobby-token-5678"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """A throwaway CA (its PEM file) and a server key and certificate it signed for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("making test certificates needs the openssl command (Debian: openssl)")
    folder = tmp_path_factory.mktemp("tls")

    def openssl(command: str) -> None:
        args = ["openssl", *shlex.split(command)]
        subprocess.run(args, cwd=folder, check=True, capture_output=True)

    new_key = "-newkey rsa:2048 -nodes -days 1"
    openssl(f"req -x509 {new_key} -keyout ca.key -out ca.pem -subj /CN=framewire-test-CA")
    openssl(f"req {new_key} -keyout server.key -out server.csr -subj /CN=localhost")
    (folder / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1"
        " -extfile san.cnf -out server.pem"
    )
    key, chain = (folder / "server.key").read_bytes(), (folder / "server.pem").read_bytes()
    return folder / "ca.pem", key, chain


@pytest.fixture(scope="module")
def secure_serve(
    ca_file: tuple[Path, bytes, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread[IngestServer]]:
    """`framewire serve` with TLS and a token file: TOKEN may stream as any `*-client` id."""
    folder = tmp_path_factory.mktemp("secure-serve")
    _, key, chain = ca_file
    (folder / "server.key").write_bytes(key)
    (folder / "server.pem").write_bytes(chain)
    tokens = folder / "tokens"
    tokens.write_text(
        entry_line("interop", TOKEN, ["*-client"]) + "\n"
        + entry_line("elsewhere", OTHER_TOKEN, ["lobby-*"]) + "\n"
    )  # fmt: skip
    config = dataclasses.replace(
        serve_config(max_frame_age=120.0),
        security=SecurityConfig(
            tls_cert=folder / "server.pem", tls_key=folder / "server.key", auth_tokens=tokens
        ),
    )
    server = ServerThread(lambda: start_serve(config))
    yield server
    server.stop()


def run_over_tls(
    command: list[str],
    server: ServerThread[IngestServer],
    ca: Path,
    folder: Path,
    *args: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *command,
            "--server",
            f"127.0.0.1:{server.server.port}",
            "--tls-ca",
            str(ca),
            "--dir",
            str(folder),
            "--fps",
            "0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        # Only --token says which token is sent, not the FRAMEWIRE_TOKEN of whoever runs the tests.
        env={key: value for key, value in os.environ.items() if key != "FRAMEWIRE_TOKEN"},
    )


def test_streams_over_tls_with_a_bearer_token(
    client: Client,
    secure_serve: ServerThread[IngestServer],
    ca_file: tuple[Path, bytes, bytes],
    frames: Frames,
) -> None:
    language, command = client
    folder, jpegs = frames
    done = run_over_tls(command, secure_serve, ca_file[0], folder, "--token", TOKEN)
    assert done.returncode == 0, f"{language}: exit {done.returncode}\n{done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["type"] == "accepted"
    assert lines[-1]["type"] == "summary"
    assert lines[-1]["results"] + lines[-1]["server_skipped"] == len(jpegs)


def test_without_the_token_the_call_is_unauthenticated(
    client: Client,
    secure_serve: ServerThread[IngestServer],
    ca_file: tuple[Path, bytes, bytes],
    frames: Frames,
) -> None:
    language, command = client
    done = run_over_tls(command, secure_serve, ca_file[0], frames[0])
    assert done.returncode == 1, f"{language}: exit {done.returncode}\n{done.stderr}"
    status = STATUS_LINE.search(done.stderr)
    assert status is not None, f"{language} printed no status line:\n{done.stderr}"
    assert (status["name"], status["code"]) == ("UNAUTHENTICATED", "16")
    assert "needs a token" in status["message"]


def test_a_token_for_other_stream_ids_is_permission_denied(
    client: Client,
    secure_serve: ServerThread[IngestServer],
    ca_file: tuple[Path, bytes, bytes],
    frames: Frames,
) -> None:
    language, command = client
    done = run_over_tls(command, secure_serve, ca_file[0], frames[0], "--token", OTHER_TOKEN)
    assert done.returncode == 1, f"{language}: exit {done.returncode}\n{done.stderr}"
    status = STATUS_LINE.search(done.stderr)
    assert status is not None, f"{language} printed no status line:\n{done.stderr}"
    assert (status["name"], status["code"]) == ("PERMISSION_DENIED", "7")


def test_a_server_certificate_from_another_ca_is_refused(
    client: Client, secure_serve: ServerThread[IngestServer], frames: Frames, tmp_path: Path
) -> None:
    language, command = client
    if shutil.which("openssl") is None:
        pytest.skip("making test certificates needs the openssl command (Debian: openssl)")
    subprocess.run(
        shlex.split(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 1"
            " -keyout other.key -out other.pem -subj /CN=another-CA"
        ),
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    done = run_over_tls(command, secure_serve, tmp_path / "other.pem", frames[0], "--token", TOKEN)
    assert done.returncode == 1, f"{language}: exit {done.returncode}\n{done.stderr}"
    status = STATUS_LINE.search(done.stderr)
    assert status is not None, f"{language} printed no status line:\n{done.stderr}"
    assert status["name"] == "UNAVAILABLE"
