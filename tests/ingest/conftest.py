"""A real `framewire serve` (ingest + in-process SSD MobileNet v2) for the ingest tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from framewire.common.serving import ListenConfig
from framewire.common.transport import TransportConfig
from framewire.inference import EngineConfig
from framewire.ingest.config import IngestConfig
from framewire.ingest.serve_command import ServeConfig, start_serve
from framewire.ingest.server import IngestServer
from tests.harness import ServerThread

LOCAL = ListenConfig(host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0)


def serve_config(**ingest: object) -> ServeConfig:
    return ServeConfig(
        engine=EngineConfig(),
        ingest=IngestConfig(**ingest),  # type: ignore[arg-type]
        listen=LOCAL,
        transport=TransportConfig(),
    )


@pytest.fixture(scope="module")
def serve() -> Iterator[ServerThread[IngestServer]]:
    """`framewire serve` with the default model and small limits the tests can hit."""
    server = ServerThread(
        lambda: start_serve(serve_config(max_streams=3, max_frame_bytes=150_000, max_frame_age=5.0))
    )
    yield server
    server.stop()
