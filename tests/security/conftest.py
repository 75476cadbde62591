"""Real certificates and real servers for the security tests.

Certificates come from a throwaway CA made with ``cryptography`` for the
test session; servers are `framewire serve` with the null engine (real
ingest, no model to load), started through the same factories the commands use.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from framewire.common.auth import entry_line, new_token
from framewire.common.protoutil import timestamp_from_ns
from framewire.common.serving import ListenConfig, SecurityConfig
from framewire.common.throwaway_ca import ThrowawayCA, serial_of_der
from framewire.common.tls import ClientTls
from framewire.common.transport import TransportConfig
from framewire.inference import EngineConfig
from framewire.ingest.config import IngestConfig
from framewire.ingest.serve_command import ServeConfig, start_serve
from framewire.ingest.server import IngestServer
from framewire.v1 import common_pb2, ingest_service_pb2, ingest_service_pb2_grpc
from tests.harness import ServerThread

LOCAL = ListenConfig(host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0)


@dataclass(frozen=True)
class Pki:
    """Every certificate the tests need, as files."""

    folder: Path
    authority: ThrowawayCA
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    expired_cert: Path
    expired_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path
    other_client_key: Path


@pytest.fixture(scope="package")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    authority, other = ThrowawayCA("test CA"), ThrowawayCA("another CA")
    now = datetime.datetime.now(datetime.UTC)
    server_cert, server_key = authority.issue(["localhost", "127.0.0.1"]).write(folder, "server")
    expired_cert, expired_key = authority.issue(
        ["localhost", "127.0.0.1"],
        not_before=now - datetime.timedelta(days=3),
        not_after=now - datetime.timedelta(days=1),
    ).write(folder, "expired")
    client_cert, client_key = authority.issue(["ingest"], client=True).write(folder, "client")
    other_cert, other_key = other.issue(["ingest"], client=True).write(folder, "other-client")
    return Pki(
        folder=folder,
        authority=authority,
        ca=authority.write(folder, "ca"),
        other_ca=other.write(folder, "other-ca"),
        server_cert=server_cert,
        server_key=server_key,
        expired_cert=expired_cert,
        expired_key=expired_key,
        client_cert=client_cert,
        client_key=client_key,
        other_client_cert=other_cert,
        other_client_key=other_key,
    )


@dataclass(frozen=True)
class Token:
    name: str
    token: str
    patterns: tuple[str, ...]

    def line(self) -> str:
        return entry_line(self.name, self.token, self.patterns)


def make_token(name: str, *patterns: str) -> Token:
    return Token(name, new_token(), patterns)


def write_tokens(path: Path, tokens: Sequence[Token]) -> None:
    """Replaces the token file in one step, as a Secret update or `mv` would."""
    staging = path.with_suffix(".new")
    staging.write_text("".join(token.line() + "\n" for token in tokens))
    os.replace(staging, path)


def copy_pair(cert: Path, key: Path, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(cert, folder / "tls.crt")), Path(shutil.copy(key, folder / "tls.key"))


def serve_null(
    security: SecurityConfig, listen: ListenConfig = LOCAL
) -> ServerThread[IngestServer]:
    """`framewire serve` with the null engine and ``security``."""
    config = ServeConfig(
        engine=EngineConfig(backend="null"),
        ingest=IngestConfig(),
        listen=listen,
        transport=TransportConfig(),
        security=security,
    )
    return ServerThread(lambda: start_serve(config))


def channel(port: int, tls: ClientTls | None) -> grpc.Channel:
    target = f"127.0.0.1:{port}"
    if tls is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, tls.credentials(), options=tls.channel_options())


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def small_jpeg() -> bytes:
    image = np.full((48, 64, 3), 128, dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data.tobytes())


def frame_request(seq: int) -> ingest_service_pb2.StreamFramesRequest:
    return ingest_service_pb2.StreamFramesRequest(
        frame=ingest_service_pb2.Frame(
            seq=seq,
            capture_time=timestamp_from_ns(time.time_ns()),
            encoding=common_pb2.ENCODING_JPEG,
            width=64,
            height=48,
            data=small_jpeg(),
        )
    )


class Stream:
    """One StreamFrames call driven by hand: send requests, read responses."""

    def __init__(
        self,
        port: int,
        *,
        tls: ClientTls | None = None,
        token: str | None = None,
        stream_id: str = "lobby-1",
    ) -> None:
        import queue

        self.channel = channel(port, tls)
        self._requests: queue.Queue[ingest_service_pb2.StreamFramesRequest | None] = queue.Queue()
        self._requests.put(
            ingest_service_pb2.StreamFramesRequest(
                config=ingest_service_pb2.StreamConfig(stream_id=stream_id, client_version="t/1")
            )
        )
        stub = ingest_service_pb2_grpc.IngestServiceStub(self.channel)
        self.call = stub.StreamFrames(
            iter(self._requests.get, None), metadata=bearer(token) if token else None, timeout=60
        )

    def send(self, request: ingest_service_pb2.StreamFramesRequest) -> None:
        self._requests.put(request)

    def read(self) -> ingest_service_pb2.StreamFramesResponse:
        response: ingest_service_pb2.StreamFramesResponse = next(self.call)
        return response

    def accepted(self) -> ingest_service_pb2.StreamAccepted:
        """The StreamAccepted; fails the test with the status when the stream was refused."""
        response = self.read()
        assert response.HasField("accepted"), response
        return response.accepted

    def result(self, seq: int) -> ingest_service_pb2.FrameResult:
        """Sends frame ``seq`` and reads until its result."""
        self.send(frame_request(seq))
        while True:
            response = self.read()
            if response.HasField("result") and response.result.seq == seq:
                return response.result

    def failure(self) -> grpc.RpcError:
        """Reads until the call fails; fails the test if it ends normally."""
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as error:
            return error
        raise AssertionError("the stream ended without an error")

    def close(self) -> None:
        self._requests.put(None)
        self.call.cancel()
        self.channel.close()


def code_of(error: grpc.RpcError) -> grpc.StatusCode:
    return error.code()  # type: ignore[attr-defined, no-any-return]


def details_of(error: grpc.RpcError) -> str:
    return str(error.details())  # type: ignore[attr-defined]


def peer_certificate_serial(port: int) -> int:
    """The serial number of the certificate a new TLS connection to ``port`` is shown."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as connection,
    ):
        der = connection.getpeercert(binary_form=True)
    assert der is not None
    return serial_of_der(der)


@pytest.fixture
def tls_only(pki: Pki) -> Iterator[ServerThread[IngestServer]]:
    server = serve_null(SecurityConfig(tls_cert=pki.server_cert, tls_key=pki.server_key))
    yield server
    server.stop()
