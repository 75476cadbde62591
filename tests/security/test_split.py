"""The split deployment over mTLS: devices -> ingest (TLS + token) -> inference (mTLS + token)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from framewire.common.auth import TokenFile
from framewire.common.serving import ListenConfig, SecurityConfig
from framewire.common.tls import ClientTls
from framewire.common.transport import TransportConfig
from framewire.inference import EngineConfig, InferenceServerConfig
from framewire.inference.server import InferenceServer, start_inference_server
from framewire.ingest.config import IngestConfig
from framewire.ingest.server import IngestServer, start_ingest_server
from framewire.ingest.targets import RemoteTarget
from framewire.v1 import inference_service_pb2, inference_service_pb2_grpc
from tests.harness import ServerThread, health_status, wait_until
from tests.security.conftest import (
    LOCAL,
    Pki,
    Stream,
    bearer,
    channel,
    code_of,
    make_token,
    write_tokens,
)

DEVICE = make_token("lobby-cams", "lobby-*")
INGEST = make_token("ingest", "*")


@pytest.fixture
def inference(pki: Pki, tmp_path: Path) -> Iterator[ServerThread[InferenceServer]]:
    """`framewire inference` (null engine) requiring mTLS and a token."""
    tokens = tmp_path / "inference-tokens"
    write_tokens(tokens, [INGEST])
    config = InferenceServerConfig(
        engine=EngineConfig(backend="null"),
        listen=ListenConfig(host="127.0.0.1", port=0, metrics_port=-1),
        security=SecurityConfig(
            tls_cert=pki.server_cert,
            tls_key=pki.server_key,
            tls_client_ca=pki.ca,
            auth_tokens=tokens,
        ),
    )
    server = ServerThread(lambda: start_inference_server(config))
    yield server
    server.stop()


def start_ingest(
    pki: Pki, tmp_path: Path, inference_port: int, tls: ClientTls, token: TokenFile
) -> ServerThread[IngestServer]:
    device_tokens = tmp_path / "device-tokens"
    write_tokens(device_tokens, [DEVICE])
    security = SecurityConfig(
        tls_cert=pki.server_cert, tls_key=pki.server_key, auth_tokens=device_tokens
    )

    async def start() -> IngestServer:
        target = RemoteTarget(
            f"127.0.0.1:{inference_port}",
            capacity=2,
            transport=TransportConfig(),
            timeout=10.0,
            tls=tls,
            token=token,
        )
        return await start_ingest_server(
            IngestConfig(), LOCAL, TransportConfig(), [target], security=security
        )

    return ServerThread(start)


def token_file(folder: Path, token: str) -> TokenFile:
    path = folder / "ingest-token"
    path.write_text(token + "\n")
    return TokenFile(path)


def test_frames_flow_from_device_to_inference_over_tls_and_mtls(
    pki: Pki, tmp_path: Path, inference: ServerThread[InferenceServer]
) -> None:
    tls = ClientTls(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    ingest = start_ingest(
        pki, tmp_path, inference.server.port, tls, token_file(tmp_path, INGEST.token)
    )
    try:
        wait_until(lambda: ingest.server.hub.serving, 20, "ingest to see inference serve")
        stream = Stream(ingest.server.port, tls=ClientTls(ca=pki.ca), token=DEVICE.token)
        try:
            assert stream.accepted().model_id == "null"
            for seq in (1, 2, 3):
                result = stream.result(seq)
                assert result.model_id == "null"
                assert not result.HasField("error")
        finally:
            stream.close()
    finally:
        ingest.stop()


def test_inference_refuses_a_caller_without_its_token(
    pki: Pki, inference: ServerThread[InferenceServer]
) -> None:
    tls = ClientTls(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    with channel(inference.server.port, tls) as open_channel:
        stub = inference_service_pb2_grpc.InferenceServiceStub(open_channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest(), timeout=5)
        assert code_of(raised.value) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as raised:
            stub.Detect(inference_service_pb2.DetectRequest(), timeout=5)
        assert code_of(raised.value) == grpc.StatusCode.UNAUTHENTICATED
        info = stub.GetModelInfo(
            inference_service_pb2.GetModelInfoRequest(), metadata=bearer(INGEST.token), timeout=5
        )
        assert info.model_id == "null"


def test_ingest_without_a_client_certificate_never_uses_the_inference_server(
    pki: Pki,
    tmp_path: Path,
    inference: ServerThread[InferenceServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="framewire.ingest.targets"):
        ingest = start_ingest(
            pki,
            tmp_path,
            inference.server.port,
            ClientTls(ca=pki.ca),
            token_file(tmp_path, INGEST.token),
        )
        try:
            wait_until(
                lambda: "health watch failed: UNAVAILABLE" in caplog.text, 20, "the refused watch"
            )
            assert not ingest.server.hub.serving
            assert health_status(inference.server.port) == "UNAVAILABLE"  # plaintext: refused
        finally:
            ingest.stop()
