"""`framewire ingest`: ingest in front of remote InferenceService replicas."""

from __future__ import annotations

import argparse
import dataclasses

from framewire.common import settings
from framewire.common.auth import TokenFile
from framewire.common.exits import SERVER_EXIT_CODES, ExitCode
from framewire.ingest.config import IngestServerConfig
from framewire.ingest.runner import parse_config, serve_until_signal
from framewire.ingest.server import IngestServer, start_ingest_server
from framewire.ingest.targets import RemoteTarget
from framewire.ingest.workers import supervise

DESCRIPTION = (
    "Run the ingest service: devices stream frames to it, it batches them across streams "
    "and sends them to remote inference replicas (framewire inference)."
)
EXIT_CODES = SERVER_EXIT_CODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser, IngestServerConfig)


async def start_ingest(config: IngestServerConfig) -> IngestServer:
    """Starts ingest in front of ``config``'s remote replicas (one process, or one worker)."""
    tls = config.targets.client_tls()
    token_path = config.targets.inference_token_file
    token = TokenFile(token_path) if token_path is not None else None
    targets = [
        RemoteTarget(
            address,
            capacity=config.ingest.batches_in_flight,
            transport=config.transport,
            timeout=config.ingest.inference_timeout,
            tls=tls,
            token=token,
        )
        for address in config.targets.inference
    ]
    return await start_ingest_server(
        config.ingest, config.listen, config.transport, targets, security=config.security
    )


def run(args: argparse.Namespace) -> int:
    config = parse_config("ingest", IngestServerConfig, args)
    if config is None:
        return ExitCode.USAGE
    if config.workers.workers > 1:
        return supervise(
            "ingest",
            config.listen,
            config.workers.workers,
            lambda listen, _targets: dataclasses.replace(config, listen=listen),
        )
    return serve_until_signal("ingest", config.listen, lambda: start_ingest(config))
