"""The clients' --tls-ca and --token, over a real TLS connection that checks the bearer token.

The server has no TLS or authentication yet, so these tests put a TLS-terminating
gRPC proxy in front of the real `framewire serve`: it refuses a call without the
right token with UNAUTHENTICATED and forwards the rest unchanged. Once the server
does TLS and tokens itself, the clients run against it directly with the same flags.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from framewire.ingest.server import IngestServer
from framewire.v1 import ingest_service_pb2, ingest_service_pb2_grpc
from tests.clients.test_interop import RUN_TIMEOUT, STATUS_LINE, Client, Frames
from tests.harness import ServerThread

pytestmark = pytest.mark.slow

TOKEN = "interop-token-1234"


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


class _TokenProxy(ingest_service_pb2_grpc.IngestServiceServicer):
    """Checks the bearer token, then relays the call to the real ingest server."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream

    async def StreamFrames(  # noqa: N802 - the generated servicer's method name
        self,
        request_iterator: AsyncIterator[ingest_service_pb2.StreamFramesRequest],
        context: grpc.aio.ServicerContext[
            ingest_service_pb2.StreamFramesRequest, ingest_service_pb2.StreamFramesResponse
        ],
    ) -> AsyncIterator[ingest_service_pb2.StreamFramesResponse]:
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        if metadata.get("authorization") != f"Bearer {TOKEN}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        async with grpc.aio.insecure_channel(self.upstream) as channel:
            call = ingest_service_pb2_grpc.IngestServiceStub(channel).StreamFrames(request_iterator)
            try:
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as error:
                await context.abort(error.code(), error.details() or "")


@dataclass
class _Proxy:
    server: grpc.aio.Server
    port: int

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)


@pytest.fixture(scope="module")
def proxy(
    serve: ServerThread[IngestServer], ca_file: tuple[Path, bytes, bytes]
) -> Iterator[ServerThread[_Proxy]]:
    _, key, chain = ca_file

    async def start() -> _Proxy:
        server = grpc.aio.server()
        ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(
            _TokenProxy(f"127.0.0.1:{serve.server.port}"), server
        )
        credentials = grpc.ssl_server_credentials([(key, chain)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        return _Proxy(server, port)

    thread = ServerThread(start)
    yield thread
    thread.stop()


def run_over_tls(
    command: list[str], proxy: ServerThread[_Proxy], ca: Path, folder: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *command,
            "--server",
            f"127.0.0.1:{proxy.server.port}",
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
    client: Client, proxy: ServerThread[_Proxy], ca_file: tuple[Path, bytes, bytes], frames: Frames
) -> None:
    language, command = client
    folder, jpegs = frames
    done = run_over_tls(command, proxy, ca_file[0], folder, "--token", TOKEN)
    assert done.returncode == 0, f"{language}: exit {done.returncode}\n{done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["type"] == "accepted"
    assert lines[-1]["type"] == "summary"
    assert lines[-1]["results"] + lines[-1]["server_skipped"] == len(jpegs)


def test_without_the_token_the_call_is_unauthenticated(
    client: Client, proxy: ServerThread[_Proxy], ca_file: tuple[Path, bytes, bytes], frames: Frames
) -> None:
    language, command = client
    done = run_over_tls(command, proxy, ca_file[0], frames[0])
    assert done.returncode == 1, f"{language}: exit {done.returncode}\n{done.stderr}"
    status = STATUS_LINE.search(done.stderr)
    assert status is not None, f"{language} printed no status line:\n{done.stderr}"
    assert (status["name"], status["code"]) == ("UNAUTHENTICATED", "16")
    assert status["message"] == "missing or wrong bearer token"


def test_a_server_certificate_from_another_ca_is_refused(
    client: Client, proxy: ServerThread[_Proxy], frames: Frames, tmp_path: Path
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
    done = run_over_tls(command, proxy, tmp_path / "other.pem", frames[0], "--token", TOKEN)
    assert done.returncode == 1, f"{language}: exit {done.returncode}\n{done.stderr}"
    status = STATUS_LINE.search(done.stderr)
    assert status is not None, f"{language} printed no status line:\n{done.stderr}"
    assert status["name"] == "UNAVAILABLE"
