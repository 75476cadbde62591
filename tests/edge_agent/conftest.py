"""A real `framewire serve` (ingest + in-process SSD MobileNet v2) for the agent tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from framewire.ingest.serve_command import start_serve
from framewire.ingest.server import IngestServer
from tests.harness import ServerThread
from tests.ingest.conftest import serve_config


@pytest.fixture(scope="package")
def serve() -> Iterator[ServerThread[IngestServer]]:
    server = ServerThread(lambda: start_serve(serve_config()))
    yield server
    server.stop()
