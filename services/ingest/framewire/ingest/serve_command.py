"""`framewire serve`: ingest with the model in the same process, on one port.

The embedded default: what the demo and a single machine use. The model runs
on worker threads beside the event loop, with the same batching, skipping and
metrics as the split deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from prometheus_client import CollectorRegistry

from framewire.common import settings
from framewire.common.contract import PIPELINE_DEPTH
from framewire.common.cpus import usable_cores
from framewire.common.exits import SERVER_EXIT_CODES, ExitCode
from framewire.common.serving import ListenConfig, SecurityConfig
from framewire.common.transport import TransportConfig
from framewire.inference import Engine, EngineConfig
from framewire.inference.config import DEVICE_BACKENDS, InferenceServerConfig
from framewire.ingest.config import IngestConfig, IngestServerConfig, TargetsConfig, WorkersConfig
from framewire.ingest.runner import parse_config, serve_until_signal
from framewire.ingest.server import IngestServer, start_ingest_server
from framewire.ingest.targets import LocalTarget
from framewire.ingest.workers import supervise

DESCRIPTION = (
    "Run ingest with an in-process model on one port: devices stream frames, the model "
    "runs here. Without --model it serves SSD MobileNet v2 COCO (see README, Models)."
)
EXIT_CODES = SERVER_EXIT_CODES


@dataclass(frozen=True)
class ServeConfig:
    """Everything `framewire serve` takes.

    Ingest and the engine both bound the batch size, the batches at work and
    the image size. In one process each is one idea with one flag (ingest's),
    and the engine's copy follows it.
    """

    DERIVED: ClassVar[frozenset[str]] = frozenset(
        {"max_batch", "concurrent_batches", "max_image_pixels", "max_image_pixels_per_byte"}
    )

    engine: EngineConfig = EngineConfig()
    ingest: IngestConfig = IngestConfig()
    listen: ListenConfig = ListenConfig()
    transport: TransportConfig = TransportConfig()
    security: SecurityConfig = SecurityConfig()
    workers: WorkersConfig = WorkersConfig()

    def __post_init__(self) -> None:
        concurrent = self.ingest.batches_in_flight
        if self.engine.device == "cuda" or self.engine.backend in DEVICE_BACKENDS:
            # On a GPU batching pays, so ingest keeps PIPELINE_DEPTH batches in flight
            # (useful_in_flight): more preallocated device buffers would go unused.
            concurrent = min(concurrent, PIPELINE_DEPTH)
        else:
            # On the CPU, runs beyond the cores only share them: each takes longer and its
            # frames are older when answered. With one run per core the other frames wait
            # at ingest, where a newer capture replaces them, and agents see that queue in
            # their results and hold their next frame back (framewire.edge_agent.window).
            concurrent = min(concurrent, usable_cores())
        engine = dataclasses.replace(
            self.engine,
            max_batch=self.ingest.max_batch_size,
            concurrent_batches=concurrent,
            max_image_pixels=self.ingest.max_frame_pixels,
            max_image_pixels_per_byte=self.ingest.max_frame_pixels_per_byte,
        )
        object.__setattr__(self, "engine", engine)


async def start_serve(config: ServeConfig) -> IngestServer:
    """Loads the model, then starts ingest in front of it; the factory tests use too."""
    registry = CollectorRegistry()
    engine = await asyncio.to_thread(Engine.load, config.engine, registry)
    target = LocalTarget(engine, capacity=config.ingest.batches_in_flight)
    try:
        server = await start_ingest_server(
            config.ingest,
            config.listen,
            config.transport,
            [target],
            registry=registry,
            security=config.security,
        )
    except BaseException:
        await target.close()
        engine.close()
        raise
    server.on_stop.append(engine.close)
    return server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser, ServeConfig)


def run(args: argparse.Namespace) -> int:
    config = parse_config("serve", ServeConfig, args)
    if config is None:
        return ExitCode.USAGE
    if config.workers.workers > 1:
        return supervise(
            "serve",
            config.listen,
            config.workers.workers,
            lambda listen, targets: ingest_worker_config(config, listen, targets),
            inference_config=model_worker_config(config),
        )
    return serve_until_signal("serve", config.listen, lambda: start_serve(config))


def model_worker_config(config: ServeConfig) -> InferenceServerConfig:
    """`serve --workers`: the one model process, on a loopback port of its own.

    The hop from the ingest workers to it never leaves the machine, so it
    needs neither TLS nor tokens; devices still meet both at the ingest port.
    """
    listen = dataclasses.replace(
        config.listen,
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        health_port=-1,
    )
    return InferenceServerConfig(engine=config.engine, listen=listen, transport=config.transport)


def ingest_worker_config(
    config: ServeConfig, listen: ListenConfig, targets: tuple[str, ...]
) -> IngestServerConfig:
    """`serve --workers`: one ingest worker, sending its batches to the model process."""
    return IngestServerConfig(
        targets=TargetsConfig(inference=targets),
        ingest=config.ingest,
        listen=listen,
        transport=config.transport,
        security=config.security,
    )
