"""Starting and stopping an ingest server: the one factory the commands and tests share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from framewire.common.metrics import MetricsEndpoint, serve_metrics
from framewire.common.serving import (
    GrpcServer,
    ListenConfig,
    SecurityConfig,
    cancel_and_wait,
    log_task_failure,
)
from framewire.common.transport import TransportConfig
from framewire.ingest.config import IngestConfig
from framewire.ingest.hub import Hub
from framewire.ingest.metrics import IngestMetrics
from framewire.ingest.preview import (
    PreviewBoard,
    PreviewServer,
    preview_access,
    start_preview,
)
from framewire.ingest.targets import InferenceTarget
from framewire.v1 import ingest_service_pb2, ingest_service_pb2_grpc

_LOGGER = logging.getLogger(__name__)

SERVICE_NAME = ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


@dataclass
class IngestServer:
    """A running ingest server: gRPC, batcher, targets and metrics."""

    grpc_server: GrpcServer
    hub: Hub
    targets: list[InferenceTarget]
    registry: CollectorRegistry
    metrics_endpoint: MetricsEndpoint | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    preview: PreviewServer | None = None
    # Run after everything else stopped (e.g. releasing an in-process model).
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    # Set while health says SERVING (some inference target usable, not draining).
    serving: asyncio.Event = field(default_factory=asyncio.Event)
    _stopped: bool = False

    @property
    def port(self) -> int:
        return self.grpc_server.port

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_endpoint.port if self.metrics_endpoint else None

    @property
    def preview_url(self) -> str | None:
        """The live preview page, when it is on."""
        return self.preview.url if self.preview else None

    async def stop(self, grace: float) -> None:
        """Drains streams within ``grace`` seconds, then releases everything.

        Health goes NOT_SERVING first, so load balancers stop sending new
        streams; open streams finish their frames in flight and end with
        UNAVAILABLE so their agents reconnect elsewhere.
        """
        if self._stopped:
            return
        self._stopped = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.grpc_server.set_serving(False)
        await self.hub.drain(grace)
        await self.hub.batcher.wait_idle()
        await self.grpc_server.stop(max(0.0, deadline - loop.time()))
        await cancel_and_wait(self.tasks)
        for target in self.targets:
            await target.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        if self.preview is not None:
            await self.preview.close()
        for release in self.on_stop:
            release()


async def start_ingest_server(
    config: IngestConfig,
    listen: ListenConfig,
    transport: TransportConfig,
    targets: Sequence[InferenceTarget],
    registry: CollectorRegistry | None = None,
    *,
    security: SecurityConfig | None = None,
) -> IngestServer:
    """Starts ingest in front of ``targets``; health follows whether any target serves.

    Raises OSError when a port cannot be bound and ValueError when a TLS or
    token file of ``security`` cannot be used.
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = IngestMetrics(registry)
    security = security if security is not None else SecurityConfig()
    authenticator = security.authenticator()
    # Before anything listens: a preview open to all is refused here.
    access = (
        preview_access(config.preview, security, authenticator) if config.preview.enabled else None
    )
    hub = Hub(config, targets, metrics, authenticator=authenticator)
    metrics.follow(
        active_streams=lambda: hub.open_streams,
        open_calls=lambda: hub.open_calls,
        queue_depth=lambda: hub.batcher.waiting_streams,
        batches_in_flight=lambda: hub.batcher.batches_in_flight,
        targets_usable=lambda: sum(target.usable for target in targets),
    )
    grpc_server = await GrpcServer.start(
        listen,
        transport,
        service_names=[SERVICE_NAME],
        register=lambda server: ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(
            hub, server
        ),
        security=security,
        authenticator=authenticator,
    )
    changed = asyncio.Event()

    def on_target_change() -> None:
        changed.set()
        hub.batcher.wake()

    serving_event = asyncio.Event()

    async def follow_targets() -> None:
        serving: bool | None = None
        while True:
            changed.clear()
            if hub.serving != serving:
                serving = hub.serving
                await grpc_server.set_serving(serving)
                if serving:
                    serving_event.set()
                else:
                    serving_event.clear()
                _LOGGER.info("ingest is %s", "SERVING" if serving else "NOT_SERVING")
            await changed.wait()

    endpoint = None
    preview = None
    tasks: list[asyncio.Task[None]] = []
    try:
        for target in targets:
            await target.start(on_target_change)
        tasks += [
            asyncio.create_task(hub.batcher.run(), name="batcher"),
            asyncio.create_task(follow_targets(), name="follow targets"),
            asyncio.create_task(hub.review_load(), name="flow hints"),
        ]
        for task in tasks:
            task.add_done_callback(log_task_failure)
        if listen.metrics_port >= 0:
            endpoint = serve_metrics(registry, listen.metrics_host, listen.metrics_port)
        if config.preview.enabled:
            board = PreviewBoard(config.preview)
            hub.observe(board)
            preview = await start_preview(config.preview, board, access)
            sampler = asyncio.create_task(board.sample_forever(), name="preview figures")
            sampler.add_done_callback(log_task_failure)
            tasks.append(sampler)
            _LOGGER.info("live preview on %s", preview.url)
    except BaseException:
        with contextlib.suppress(Exception):
            await grpc_server.stop(0)
        if endpoint is not None:
            endpoint.close()
        await cancel_and_wait(tasks)
        raise
    return IngestServer(
        grpc_server=grpc_server,
        hub=hub,
        targets=list(targets),
        registry=registry,
        metrics_endpoint=endpoint,
        tasks=tasks,
        serving=serving_event,
        preview=preview,
    )
