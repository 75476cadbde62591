"""``framewire inference``: the batched model service on its own port.

Exit status: 0 after a clean stop on SIGTERM or SIGINT, 1 when the server
cannot start (port taken, TLS or token file unusable, model cannot be
loaded), 2 for a bad setting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from framewire.common import settings
from framewire.common.exits import SERVER_EXIT_CODES, ExitCode
from framewire.common.logs import configure_logging
from framewire.common.serving import run as run_event_loop
from framewire.common.serving import wait_for_signal
from framewire.inference.config import EngineConfig, InferenceServerConfig
from framewire.inference.engine import Engine
from framewire.inference.server import InferenceServer

_LOGGER = logging.getLogger(__name__)

DESCRIPTION = (
    "Run InferenceService: batched object detection on JPEG images over gRPC, with "
    "grpc.health.v1 (SERVING once the model is loaded and warmed up), reflection with "
    "--reflection, and Prometheus metrics. Without --model it runs SSD MobileNet v2 COCO on OpenCV."
)
EXIT_CODES = SERVER_EXIT_CODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per setting of :class:`InferenceServerConfig`."""
    settings.add_arguments(parser, InferenceServerConfig)


def run(args: argparse.Namespace) -> int:
    """Serves until SIGTERM or SIGINT; returns the exit status."""
    try:
        config = settings.from_namespace(InferenceServerConfig, args)
    except ValueError as error:
        print(f"framewire inference: {error}", file=sys.stderr)
        return ExitCode.USAGE
    configure_logging(config.listen.log_level, config.listen.log_format)
    _LOGGER.debug("settings: %s", settings.describe(config))
    return run_event_loop(lambda: serve(config))


def serve_inference(
    config: InferenceServerConfig, on_ready: Callable[[InferenceServer], None]
) -> int:
    """Serves ``config`` in this process until a signal; ``on_ready`` runs once it is SERVING.

    What `framewire serve --workers` runs in its model process.
    """
    configure_logging(config.listen.log_level, config.listen.log_format)
    return run_event_loop(lambda: serve(config, on_ready=on_ready))


async def serve(
    config: InferenceServerConfig,
    *,
    on_ready: Callable[[InferenceServer], None] = lambda server: None,
    load: Callable[[EngineConfig, CollectorRegistry], Engine] = Engine.load,
) -> int:
    """Starts the server, loads the model (with ``load``), and serves until a signal arrives."""
    stop_signal = asyncio.ensure_future(wait_for_signal())
    try:
        server = await InferenceServer.start(config, load=load)
    except (OSError, ValueError) as error:
        stop_signal.cancel()
        _LOGGER.error("cannot start: %s", error)
        return ExitCode.FAILURE
    ready = asyncio.ensure_future(server.ready())
    await asyncio.wait({stop_signal, ready}, return_when=asyncio.FIRST_COMPLETED)
    failure = ready.exception() if ready.done() else None
    if failure is not None:
        stop_signal.cancel()
        if isinstance(failure, (FileNotFoundError, ValueError)):
            _LOGGER.error("cannot load the model: %s", failure)
        else:
            _LOGGER.error("cannot load the model", exc_info=failure)
        await server.stop(0)
        return ExitCode.FAILURE
    if ready.done():
        on_ready(server)
    number = await stop_signal
    _LOGGER.info(
        "%s received: stopping (up to %.1f s for calls in flight)",
        signal.Signals(number).name,
        config.listen.shutdown_grace,
    )
    if not ready.done():
        ready.cancel()
    await server.stop()
    _LOGGER.info("stopped")
    return ExitCode.OK
