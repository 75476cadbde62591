"""Device tokens on a real ingest server: missing, wrong, foreign stream ids, caps, revocation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framewire.common.auth import (
    TokenAuthenticator,
    bearer_token,
    hash_token,
    new_token,
    parse_token_file,
    stream_id_matcher,
)
from framewire.common.serving import SecurityConfig
from framewire.common.tls import ClientTls
from framewire.ingest.server import IngestServer
from tests.harness import ServerThread, scrape, wait_until
from tests.security.conftest import (
    Pki,
    Stream,
    Token,
    channel,
    code_of,
    details_of,
    make_token,
    serve_null,
    write_tokens,
)

LOBBY = make_token("lobby-cams", "lobby-*")
DOOR = make_token("door-1", "door-1")


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    write_tokens(path, [LOBBY, DOOR])
    return path


@pytest.fixture
def guarded(pki: Pki, tokens_file: Path) -> Iterator[ServerThread[IngestServer]]:
    """TLS, tokens checked every 0.1 s, at most two streams per token."""
    server = serve_null(
        SecurityConfig(
            tls_cert=pki.server_cert,
            tls_key=pki.server_key,
            auth_tokens=tokens_file,
            auth_reload_interval=0.1,
            max_streams_per_token=2,
        )
    )
    yield server
    server.stop()


def refusal(server: ServerThread[IngestServer], pki: Pki, **options: str | None) -> grpc.RpcError:
    stream = Stream(server.server.port, tls=ClientTls(ca=pki.ca), **options)  # type: ignore[arg-type]
    try:
        return stream.failure()
    finally:
        stream.close()


# -- the token file and the header, without a server ---------------------------------------


def test_patterns_match_whole_ids_and_star_matches_any_run_of_id_characters() -> None:
    lobby = stream_id_matcher("lobby-*")
    assert [bool(lobby.match(text)) for text in ("lobby-1", "lobby-", "lobby-a.b:c")] == [True] * 3
    assert [bool(lobby.match(text)) for text in ("lobby", "xlobby-1")] == [False, False]
    exact = stream_id_matcher("door-1")
    assert [bool(exact.match(text)) for text in ("door-1", "door-12")] == [True, False]
    assert stream_id_matcher("*").match("anything")
    with pytest.raises(ValueError, match="not a stream-id pattern"):
        stream_id_matcher("lobby/*")


def test_the_token_file_names_the_line_of_each_mistake() -> None:
    good = f"a {hash_token('x')} lobby-*\n"
    assert [entry.name for entry in parse_token_file("# comment\n\n" + good)] == ["a"]
    with pytest.raises(ValueError, match=r"tokens:2: expected NAME sha256:HASH STREAM-IDS"):
        parse_token_file(good + "b sha256:00\n", "tokens")
    with pytest.raises(ValueError, match=r":2: token 'b': the hash must be sha256:"):
        parse_token_file(good + "b md5:abc lobby-1\n")
    with pytest.raises(ValueError, match=r":2: the name 'a' is used twice"):
        parse_token_file(good + f"a {hash_token('y')} x\n")
    with pytest.raises(ValueError, match=r":2: the same token appears twice"):
        parse_token_file(good + f"b {hash_token('x')} x\n")


def test_the_bearer_header_is_read_strictly() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("Authorization", "bearer abc")]) == "abc"
    assert bearer_token([("x-other", "1")]) is None
    with pytest.raises(ValueError, match="must be 'Bearer TOKEN'"):
        bearer_token([("authorization", "Basic abc")])
    with pytest.raises(ValueError, match="not several"):
        bearer_token([("authorization", "Bearer a"), ("authorization", "Bearer b")])


def test_a_broken_token_file_stops_the_start_but_a_broken_reload_keeps_the_tokens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    path.write_text("not a token line\n")
    with pytest.raises(ValueError, match="cannot use the token file"):
        TokenAuthenticator(path, 1, 1.0)
    write_tokens(path, [LOBBY])
    authenticator = TokenAuthenticator(path, 1, 1.0)
    path.write_text("half written")
    with caplog.at_level(logging.ERROR):
        authenticator.reload()
    assert "the previous tokens stay in force" in caplog.text
    assert [entry.name for entry in authenticator.entries] == ["lobby-cams"]


def test_new_tokens_are_long_and_different() -> None:
    first, second = new_token(), new_token()
    assert first != second
    assert first.startswith("fwt_")
    assert len(first) == len("fwt_") + 43  # 32 random bytes, base64url


# -- a real server -------------------------------------------------------------------------


def test_a_stream_without_a_token_is_unauthenticated(
    guarded: ServerThread[IngestServer], pki: Pki
) -> None:
    error = refusal(guarded, pki, token=None)
    assert code_of(error) == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(error) == "this server needs a token: send 'authorization: Bearer TOKEN'"


def test_a_wrong_token_is_unauthenticated(guarded: ServerThread[IngestServer], pki: Pki) -> None:
    error = refusal(guarded, pki, token=new_token())
    assert code_of(error) == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(error) == "the token is not valid (unknown or revoked)"


def test_a_token_used_for_another_devices_stream_id_is_permission_denied(
    guarded: ServerThread[IngestServer], pki: Pki
) -> None:
    error = refusal(guarded, pki, token=DOOR.token, stream_id="lobby-1")
    assert code_of(error) == grpc.StatusCode.PERMISSION_DENIED
    assert details_of(error) == "the token 'door-1' does not cover stream id 'lobby-1'"


def test_a_token_streams_under_the_ids_it_covers(
    guarded: ServerThread[IngestServer], pki: Pki
) -> None:
    stream = Stream(guarded.server.port, tls=ClientTls(ca=pki.ca), token=LOBBY.token)
    try:
        assert stream.accepted().stream_id == "lobby-1"
        assert stream.result(1).model_id == "null"
    finally:
        stream.close()


def test_health_checks_need_no_token(guarded: ServerThread[IngestServer], pki: Pki) -> None:
    with channel(guarded.server.port, ClientTls(ca=pki.ca)) as open_channel:
        answer = health_pb2_grpc.HealthStub(open_channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_streams_over_the_per_token_cap_are_resource_exhausted(
    guarded: ServerThread[IngestServer], pki: Pki
) -> None:
    tls = ClientTls(ca=pki.ca)
    port = guarded.server.port
    open_streams = [
        Stream(port, tls=tls, token=LOBBY.token, stream_id=f"lobby-{n}") for n in (1, 2)
    ]
    try:
        for stream in open_streams:
            stream.accepted()
        error = refusal(guarded, pki, token=LOBBY.token, stream_id="lobby-3")
        assert code_of(error) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details_of(error) == (
            "the token 'lobby-cams' already has 2 streams open, its maximum; close one first"
        )
        # Another token is not affected by this one's streams.
        other = Stream(port, tls=tls, token=DOOR.token, stream_id="door-1")
        other.accepted()
        other.close()
        # When one stream ends, its place is free again.
        open_streams.pop().close()
        authenticator = guarded.server.grpc_server.authenticator
        assert authenticator is not None
        wait_until(lambda: authenticator.open_streams("lobby-cams") == 1, 10, "a released lease")
        again = Stream(port, tls=tls, token=LOBBY.token, stream_id="lobby-3")
        open_streams.append(again)
        again.accepted()
    finally:
        for stream in open_streams:
            stream.close()


def test_removing_a_token_ends_its_open_stream_unauthenticated_and_spares_the_others(
    guarded: ServerThread[IngestServer],
    pki: Pki,
    tokens_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tls = ClientTls(ca=pki.ca)
    port = guarded.server.port
    lobby = Stream(port, tls=tls, token=LOBBY.token, stream_id="lobby-1")
    door = Stream(port, tls=tls, token=DOOR.token, stream_id="door-1")
    try:
        lobby.accepted()
        door.accepted()
        lobby.result(1)

        write_tokens(tokens_file, [DOOR])

        error = lobby.failure()
        assert code_of(error) == grpc.StatusCode.UNAUTHENTICATED
        assert details_of(error) == "the token was revoked"
        assert door.result(1).seq == 1
        # And it cannot come back.
        again = refusal(guarded, pki, token=LOBBY.token, stream_id="lobby-1")
        assert code_of(again) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        lobby.close()
        door.close()
    # A revocation is an expected end of a stream, not a server error.
    assert [
        record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR
    ] == []


def test_narrowing_a_token_ends_streams_it_no_longer_covers_permission_denied(
    guarded: ServerThread[IngestServer], pki: Pki, tokens_file: Path
) -> None:
    stream = Stream(guarded.server.port, tls=ClientTls(ca=pki.ca), token=LOBBY.token)
    try:
        stream.accepted()
        write_tokens(tokens_file, [Token(LOBBY.name, LOBBY.token, ("lobby-2",)), DOOR])
        error = stream.failure()
        assert code_of(error) == grpc.StatusCode.PERMISSION_DENIED
        assert details_of(error) == "the token no longer covers stream id 'lobby-1'"
    finally:
        stream.close()


def test_tokens_never_appear_in_logs_or_metrics(
    guarded: ServerThread[IngestServer],
    pki: Pki,
    tokens_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stranger = new_token()
    tls = ClientTls(ca=pki.ca)
    with caplog.at_level(logging.DEBUG):
        assert code_of(refusal(guarded, pki, token=stranger)) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(refusal(guarded, pki, token=DOOR.token)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        stream = Stream(guarded.server.port, tls=tls, token=LOBBY.token)
        stream.accepted()
        stream.result(1)
        write_tokens(tokens_file, [DOOR])
        assert code_of(stream.failure()) == grpc.StatusCode.UNAUTHENTICATED
        stream.close()
    metrics = scrape(guarded.server.metrics_port)  # type: ignore[arg-type]
    # The events were logged (so the check below looked at real log lines)...
    assert (
        "refused a call to /framewire.v1.IngestService/StreamFrames: "
        "the token is not valid (unknown or revoked)"
    ) in caplog.text
    assert "stream lobby-1 opened" in caplog.text
    # ...and no token is in them, nor in the metrics.
    for secret in (stranger, LOBBY.token, DOOR.token):
        assert secret not in caplog.text
        assert secret not in metrics
