"""Who may use the preview: loopback as it is; elsewhere the gRPC port's tokens or TLS.

The preview server runs alone here (no model): its board is told about real
StreamSessions directly, and clients talk to it over real sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from framewire.common import settings
from framewire.common.auth import TokenAuthenticator, entry_line, new_token
from framewire.common.serving import SecurityConfig
from framewire.ingest.preview import (
    PreviewAccess,
    PreviewBoard,
    PreviewConfig,
    preview_access,
    start_preview,
)
from framewire.ingest.serve_command import ServeConfig
from tests.preview.test_board import session

PUBLIC = PreviewConfig(preview_port=0, preview_host="0.0.0.0")


def fetch(url: str, *, headers: dict[str, str] | None = None, context: Any = None) -> int:
    """The status of a GET (the body is read and dropped)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code)


def listed(url: str, **kwargs: Any) -> list[str]:
    with urllib.request.urlopen(url, timeout=10, **kwargs) as response:
        return [stream["stream_id"] for stream in json.load(response)["streams"]]


def with_preview(
    config: PreviewConfig, access: PreviewAccess, check: Callable[[int], Awaitable[None]]
) -> None:
    """Runs ``check(port)`` against a preview with streams cam-1 and lobby-2 open."""

    async def scenario() -> None:
        board = PreviewBoard(config)
        board.stream_opened(session(1))
        board.stream_opened(session(2, "lobby-2"))
        preview = await start_preview(config, board, access)
        try:
            await check(preview.port)
        finally:
            await preview.close()

    asyncio.run(scenario())


def tokens_file(folder: Path) -> tuple[Path, str]:
    token = new_token()
    path = folder / "tokens"
    path.write_text(entry_line("cams", token, ["cam-*"]) + "\n")
    return path, token


def test_loopback_needs_nothing_and_public_needs_tokens_tls_or_the_opt_in(
    tmp_path: Path,
) -> None:
    assert preview_access(PreviewConfig(preview_port=0), SecurityConfig(), None) == PreviewAccess()
    with pytest.raises(ValueError, match="--auth-tokens"):
        preview_access(PUBLIC, SecurityConfig(), None)
    insecure = PreviewConfig(preview_port=0, preview_host="0.0.0.0", preview_insecure=True)
    assert preview_access(insecure, SecurityConfig(), None) == PreviewAccess()
    path, _ = tokens_file(tmp_path)
    security = SecurityConfig(auth_tokens=path)
    authenticator = security.authenticator()
    assert preview_access(PUBLIC, security, authenticator).authenticator is authenticator


def test_the_flags_of_framewire_serve_reach_the_rule(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, ServeConfig)
    flags = ["--preview-port", "8080", "--preview-host", "0.0.0.0"]
    config = settings.from_namespace(ServeConfig, parser.parse_args(flags), environ={})
    with pytest.raises(ValueError, match="--preview-insecure"):
        preview_access(config.ingest.preview, config.security, None)
    assert (
        settings.from_namespace(
            ServeConfig, parser.parse_args([]), environ={}
        ).ingest.preview.preview_port
        == -1
    )


def test_off_loopback_the_preview_asks_for_the_grpc_ports_token(tmp_path: Path) -> None:
    path, token = tokens_file(tmp_path)
    access = preview_access(
        PUBLIC, SecurityConfig(auth_tokens=path), TokenAuthenticator(path, 4, 2.0)
    )

    async def check(port: int) -> None:
        base = f"http://127.0.0.1:{port}"

        def requests() -> None:
            assert fetch(f"{base}/") == 200  # the page itself holds no data
            assert fetch(f"{base}/api/streams") == 401
            assert fetch(f"{base}/api/streams?token=wrong") == 401
            assert fetch(f"{base}/events?stream=1") == 401
            bearer = {"Authorization": f"Bearer {token}"}
            assert fetch(f"{base}/api/streams", headers=bearer) == 200
            # The token sees the streams it may open, and only those.
            assert listed(f"{base}/api/streams?token={token}") == ["cam-1"]
            assert fetch(f"{base}/events?stream=2&token={token}") == 403

        await asyncio.to_thread(requests)

    with_preview(PUBLIC, access, check)


def test_off_loopback_with_tls_the_preview_serves_https_with_the_same_certificate(
    tmp_path: Path,
) -> None:
    from framewire.common.throwaway_ca import ThrowawayCA

    ca = ThrowawayCA("preview test CA")
    ca_file = ca.write(tmp_path, "ca")
    cert, key = ca.issue(["localhost", "127.0.0.1"]).write(tmp_path, "server")
    access = preview_access(PUBLIC, SecurityConfig(tls_cert=cert, tls_key=key), None)
    assert access.tls is not None

    async def check(port: int) -> None:
        def requests() -> None:
            trusting = ssl.create_default_context(cafile=str(ca_file))
            assert listed(f"https://127.0.0.1:{port}/api/streams", context=trusting) == [
                "cam-1",
                "lobby-2",
            ]
            with pytest.raises(urllib.error.URLError):
                fetch(f"https://127.0.0.1:{port}/api/streams")  # not signed by a system root
            with pytest.raises((urllib.error.URLError, ConnectionError)):
                fetch(f"http://127.0.0.1:{port}/api/streams")  # no plaintext

        await asyncio.to_thread(requests)

    with_preview(PUBLIC, access, check)
