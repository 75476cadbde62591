"""TLS and mTLS on a real server: who gets in, what each failure says, and rotation."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framewire.common.serving import SecurityConfig
from framewire.common.throwaway_ca import serial_of
from framewire.common.tls import (
    CertificateFiles,
    ClientTls,
    describe_handshake_failure,
    probe_handshake,
)
from framewire.ingest.server import IngestServer
from tests.harness import ServerThread
from tests.security.conftest import (
    Pki,
    Stream,
    channel,
    code_of,
    copy_pair,
    details_of,
    peer_certificate_serial,
    serve_null,
)


def health_check(port: int, tls: ClientTls | None) -> grpc.StatusCode:
    """The status of a plain health Check through ``tls`` (OK when it answered)."""
    with channel(port, tls) as open_channel:
        stub = health_pb2_grpc.HealthStub(open_channel)
        try:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as error:
            return code_of(error)
    return grpc.StatusCode.OK


def handshake_failure(port: int, tls: ClientTls | None) -> str:
    """The details of a health Check that the TLS handshake stopped."""
    with channel(port, tls) as open_channel:
        stub = health_pb2_grpc.HealthStub(open_channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert code_of(raised.value) == grpc.StatusCode.UNAVAILABLE
    return details_of(raised.value)


@pytest.fixture
def mtls(pki: Pki) -> ServerThread[IngestServer]:
    server = serve_null(
        SecurityConfig(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)
    )
    yield server  # type: ignore[misc]
    server.stop()


def test_a_tls_client_that_trusts_the_ca_streams(
    pki: Pki, tls_only: ServerThread[IngestServer]
) -> None:
    stream = Stream(tls_only.server.port, tls=ClientTls(ca=pki.ca))
    try:
        assert stream.accepted().stream_id == "lobby-1"
        assert stream.result(1).model_id == "null"
    finally:
        stream.close()


def test_a_plaintext_client_against_a_tls_server_is_told_the_server_speaks_tls(
    tls_only: ServerThread[IngestServer],
) -> None:
    port = tls_only.server.port
    details = handshake_failure(port, None)
    assert "Socket closed" in details  # all that gRPC itself can say
    assert probe_handshake(f"127.0.0.1:{port}", None, 5) == (
        "the server speaks TLS: connect with --tls (or --tls-ca FILE)"
    )


def test_a_tls_client_against_a_plaintext_server_fails_the_handshake(pki: Pki) -> None:
    server = serve_null(SecurityConfig())
    try:
        details = handshake_failure(server.server.port, ClientTls(ca=pki.ca))
    finally:
        server.stop()
    reason = describe_handshake_failure(details)
    assert reason is not None
    assert "WRONG_VERSION_NUMBER" in reason
    assert reason.endswith("(the server does not speak TLS: drop --tls)")


def test_a_client_that_trusts_another_ca_refuses_the_server(
    pki: Pki, tls_only: ServerThread[IngestServer]
) -> None:
    details = handshake_failure(tls_only.server.port, ClientTls(ca=pki.other_ca))
    reason = describe_handshake_failure(details)
    assert reason is not None
    assert "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate" in reason


def test_an_expired_server_certificate_is_refused(pki: Pki) -> None:
    server = serve_null(SecurityConfig(tls_cert=pki.expired_cert, tls_key=pki.expired_key))
    try:
        details = handshake_failure(server.server.port, ClientTls(ca=pki.ca))
    finally:
        server.stop()
    reason = describe_handshake_failure(details)
    assert reason is not None
    assert "CERTIFICATE_VERIFY_FAILED: certificate has expired" in reason


def test_a_name_that_is_not_in_the_certificate_is_refused(
    pki: Pki, tls_only: ServerThread[IngestServer]
) -> None:
    tls = ClientTls(ca=pki.ca, server_name="ingest.example.org")
    reason = describe_handshake_failure(handshake_failure(tls_only.server.port, tls))
    assert reason is not None
    assert "Hostname Verification Check failed" in reason


def test_mtls_without_a_client_certificate_is_refused(
    pki: Pki, mtls: ServerThread[IngestServer]
) -> None:
    port = mtls.server.port
    assert "Socket closed" in handshake_failure(port, ClientTls(ca=pki.ca))
    assert probe_handshake(f"127.0.0.1:{port}", ClientTls(ca=pki.ca), 5) == (
        "the server closed the connection after the TLS handshake: it requires a client "
        "certificate (give --tls-cert and --tls-key)"
    )


def test_mtls_with_a_client_certificate_from_another_ca_is_refused(
    pki: Pki, mtls: ServerThread[IngestServer]
) -> None:
    port = mtls.server.port
    tls = ClientTls(ca=pki.ca, cert=pki.other_client_cert, key=pki.other_client_key)
    assert "Socket closed" in handshake_failure(port, tls)
    assert probe_handshake(f"127.0.0.1:{port}", tls, 5) == (
        "the server closed the connection after the TLS handshake: it refused this client's "
        f"certificate {pki.other_client_cert} (not signed by a CA it trusts, or expired)"
    )


def test_mtls_with_a_client_certificate_from_the_trusted_ca_streams(
    pki: Pki, mtls: ServerThread[IngestServer]
) -> None:
    tls = ClientTls(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    assert probe_handshake(f"127.0.0.1:{mtls.server.port}", tls, 5) is None
    stream = Stream(mtls.server.port, tls=tls)
    try:
        stream.accepted()
        assert stream.result(1).model_id == "null"
    finally:
        stream.close()


def test_replaced_certificate_files_reach_new_connections_while_open_streams_go_on(
    pki: Pki, tmp_path: Path
) -> None:
    cert, key = copy_pair(pki.server_cert, pki.server_key, tmp_path / "tls")
    server = serve_null(SecurityConfig(tls_cert=cert, tls_key=key))
    port = server.server.port
    stream = Stream(port, tls=ClientTls(ca=pki.ca))
    try:
        stream.accepted()
        stream.result(1)
        assert peer_certificate_serial(port) == serial_of(pki.server_cert.read_bytes())

        # What cert-manager does: new files in place, no restart.
        renewed = pki.authority.issue(["localhost", "127.0.0.1"])
        renewed.write(tmp_path / "staging", "tls")
        os.replace(tmp_path / "staging" / "tls.key", key)
        os.replace(tmp_path / "staging" / "tls.crt", cert)

        assert peer_certificate_serial(port) == serial_of(renewed.cert_pem)
        assert server.server.grpc_server.certificates is not None
        assert server.server.grpc_server.certificates.reloads == 1
        # A new gRPC client is served with the new certificate...
        assert health_check(port, ClientTls(ca=pki.ca)) == grpc.StatusCode.OK
        # ...and the stream opened before the rotation goes on.
        assert stream.result(2).seq == 2
    finally:
        stream.close()
        server.stop()


def test_a_half_rotated_pair_keeps_the_current_certificate(pki: Pki, tmp_path: Path) -> None:
    cert, key = copy_pair(pki.server_cert, pki.server_key, tmp_path / "tls")
    files = CertificateFiles(cert, key, None)
    # A new certificate whose key has not arrived yet: not a usable pair.
    cert.write_bytes(pki.authority.issue().cert_pem)
    assert files.fetch() is None
    assert files.reloads == 0
    # The key arrives: the next handshake gets the new pair.
    renewed = pki.authority.issue()
    renewed.write(tmp_path / "tls", "tls")
    assert files.fetch() is not None
    assert files.reloads == 1


def test_a_key_that_does_not_match_the_certificate_stops_the_start(pki: Pki) -> None:
    with pytest.raises(ValueError, match="not a usable pair"):
        CertificateFiles(pki.server_cert, pki.client_key, None)


def test_the_health_port_answers_plaintext_probes_and_serves_nothing_else(pki: Pki) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from framewire.common.serving import ListenConfig
    from tests.security.conftest import LOCAL

    listen = ListenConfig(**{**LOCAL.__dict__, "health_host": "127.0.0.1", "health_port": 0})
    server = serve_null(
        SecurityConfig(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca),
        listen,
    )
    try:
        health_port = server.server.grpc_server.health_port
        assert health_port is not None
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as plain:
            answer = health_pb2_grpc.HealthStub(plain).Check(
                health_pb2.HealthCheckRequest(service="framewire.v1.IngestService"), timeout=5
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            stream = Stream(health_port)
            assert code_of(stream.failure()) == grpc.StatusCode.UNIMPLEMENTED
            stream.close()
            reflect = reflection_pb2_grpc.ServerReflectionStub(plain).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            with pytest.raises(grpc.RpcError) as raised:
                list(reflect)
            assert code_of(raised.value) == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop()


def _list_services(port: int, tls: ClientTls | None, token: str | None = None) -> list[str]:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from tests.security.conftest import bearer

    with channel(port, tls) as open_channel:
        responses = reflection_pb2_grpc.ServerReflectionStub(open_channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            metadata=bearer(token) if token else None,
            timeout=5,
        )
        return [
            service.name
            for response in responses
            for service in response.list_services_response.service
        ]


def test_reflection_is_off_unless_asked_for_and_then_needs_a_token(
    pki: Pki, tls_only: ServerThread[IngestServer], tmp_path: Path
) -> None:
    from tests.security.conftest import make_token, write_tokens

    with pytest.raises(grpc.RpcError) as raised:
        _list_services(tls_only.server.port, ClientTls(ca=pki.ca))
    assert code_of(raised.value) == grpc.StatusCode.UNIMPLEMENTED

    operator = make_token("operator", "*")
    tokens = tmp_path / "tokens"
    write_tokens(tokens, [operator])
    server = serve_null(
        SecurityConfig(
            tls_cert=pki.server_cert, tls_key=pki.server_key, auth_tokens=tokens, reflection=True
        )
    )
    try:
        with pytest.raises(grpc.RpcError) as raised:
            _list_services(server.server.port, ClientTls(ca=pki.ca))
        assert code_of(raised.value) == grpc.StatusCode.UNAUTHENTICATED
        assert "framewire.v1.IngestService" in _list_services(
            server.server.port, ClientTls(ca=pki.ca), operator.token
        )
    finally:
        server.stop()
