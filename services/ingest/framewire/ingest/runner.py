"""What `framewire serve` and `framewire ingest` share: run until a signal, then drain."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from framewire.common import settings
from framewire.common.exits import ExitCode
from framewire.common.logs import configure_logging
from framewire.common.serving import ListenConfig, run, wait_for_signal
from framewire.ingest.server import IngestServer

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")


def parse_config(command: str, cls: type[T], args: argparse.Namespace) -> T | None:
    """Builds the command's settings; prints a usage error and returns None when invalid."""
    try:
        return settings.from_namespace(cls, args)
    except ValueError as error:
        print(f"framewire {command}: error: {error}", file=sys.stderr)
        return None


def serve_until_signal(
    command: str,
    listen: ListenConfig,
    start: Callable[[], Awaitable[IngestServer]],
    *,
    on_ready: Callable[[IngestServer], None] = lambda server: None,
    announce: bool = True,
) -> int:
    """Starts the server, runs until SIGTERM or SIGINT, then drains within the grace period.

    ``on_ready`` runs once the server is started; ``announce`` logs the
    ``IngestService serving on`` line that says the port is ready (a worker
    of a ``--workers`` group leaves that line to its supervisor).
    """
    configure_logging(listen.log_level, listen.log_format)

    async def main() -> int:
        try:
            server = await start()
        except (OSError, ValueError) as error:
            _LOGGER.error("framewire %s could not start: %s", command, error)
            return ExitCode.FAILURE
        metrics = f"metrics on port {server.metrics_port}" if server.metrics_port else "no metrics"
        if announce:
            _LOGGER.info("IngestService serving on %s:%d (%s)", listen.host, server.port, metrics)
        else:
            _LOGGER.info("%s ready on %s:%d (%s)", command, listen.host, server.port, metrics)
        on_ready(server)
        received = await wait_for_signal()
        _LOGGER.info("signal %d: draining streams for up to %gs", received, listen.shutdown_grace)
        await server.stop(listen.shutdown_grace)
        _LOGGER.info("stopped")
        return ExitCode.OK

    return run(main)
