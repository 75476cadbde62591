"""The gRPC side: a thin InferenceService servicer and the server factory.

``start_inference_server`` is what ``framewire inference`` runs and what the
tests start on port 0. The server binds first and reports NOT_SERVING while
the model loads and warms up in a thread; :meth:`InferenceServer.ready` flips
health to SERVING once the engine can answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from framewire.common.errors import FramewireError
from framewire.common.metrics import MetricsEndpoint, serve_metrics
from framewire.common.serving import GrpcServer, grpc_address
from framewire.inference.config import EngineConfig, InferenceServerConfig
from framewire.inference.engine import Engine
from framewire.inference.merging import CallQueue
from framewire.v1 import inference_service_pb2, inference_service_pb2_grpc

_LOGGER = logging.getLogger(__name__)

SERVICE_NAME = inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


class InferenceServicer(inference_service_pb2_grpc.InferenceServiceServicer):
    """Answers Detect through a :class:`CallQueue` on a bounded thread pool and maps errors
    onto statuses."""

    def __init__(self, executor: ThreadPoolExecutor, config: InferenceServerConfig) -> None:
        self.engine: Engine | None = None
        self.calls: CallQueue | None = None
        self._executor = executor
        self._config = config

    def serve(self, engine: Engine) -> None:
        """Starts answering with ``engine``."""
        merge = engine.merges_calls(self._config.merge_calls)
        self.calls = CallQueue(
            self._detect,
            self._executor,
            # More would wait inside the engine, where they can no longer merge.
            slots=engine.batches_at_once,
            max_waiting=self._config.max_queued_calls,
            max_images=engine.config.max_batch,
            merge=merge,
            on_merged=engine.metrics.merged_calls.inc,
        )
        calls = self.calls
        engine.metrics.calls_waiting.set_function(lambda: calls.waiting)
        self.engine = engine
        _LOGGER.info(
            "Detect calls that wait for a batch slot %s",
            "run together as one model batch" if merge else "run one at a time",
        )

    def _detect(
        self, request: inference_service_pb2.DetectRequest
    ) -> inference_service_pb2.DetectResponse:
        """One model batch, on an executor thread."""
        assert self.engine is not None  # calls exists only with the engine
        return self.engine.detect(request)

    async def _engine(self, context: grpc.aio.ServicerContext[Any, Any]) -> Engine:
        engine = self.engine
        if engine is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the model is still loading; retry shortly"
            )
        return engine

    async def Detect(  # noqa: N802 - the gRPC method's name
        self,
        request: inference_service_pb2.DetectRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> inference_service_pb2.DetectResponse:
        await self._engine(context)
        assert self.calls is not None  # set with the engine
        try:
            return await self.calls.detect(request)
        except FramewireError as error:
            await context.abort(error.code, error.message)

    async def GetModelInfo(  # noqa: N802 - the gRPC method's name
        self,
        request: inference_service_pb2.GetModelInfoRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> inference_service_pb2.GetModelInfoResponse:
        engine = await self._engine(context)
        info = engine.model_info()
        assert self.calls is not None  # set with the engine
        info.concurrent_batches = self.calls.batches_worth_sending(info.concurrent_batches)
        return info


class InferenceServer:
    """A running InferenceService: gRPC server, metrics endpoint and (once ready) engine."""

    def __init__(
        self,
        *,
        config: InferenceServerConfig,
        grpc_server: GrpcServer,
        servicer: InferenceServicer,
        executor: ThreadPoolExecutor,
        registry: CollectorRegistry,
        metrics_endpoint: MetricsEndpoint | None,
        loading: asyncio.Future[Engine],
    ) -> None:
        self.config = config
        self.grpc_server = grpc_server
        self.servicer = servicer
        self.registry = registry
        self.metrics_endpoint = metrics_endpoint
        self._executor = executor
        self._loading = loading
        self._stopped = False
        self._load_failure_reported = False

    @classmethod
    async def start(
        cls,
        config: InferenceServerConfig,
        registry: CollectorRegistry | None = None,
        *,
        load: Callable[[EngineConfig, CollectorRegistry], Engine] = Engine.load,
    ) -> InferenceServer:
        """Binds the port (health NOT_SERVING) and starts loading the model in a thread.

        ``load`` makes the engine (another one than ``config.engine`` describes, for a
        benchmark's simulated device).

        Raises :class:`OSError` when a port cannot be bound and :class:`ValueError`
        when a TLS or token file cannot be used. Call :meth:`ready`
        to wait for the model and report SERVING.
        """
        registry = registry if registry is not None else CollectorRegistry()
        workers = config.engine.concurrent_batches
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="framewire-detect")
        servicer = InferenceServicer(executor, config)
        grpc_server = await GrpcServer.start(
            config.listen,
            config.transport,
            service_names=[SERVICE_NAME],
            register=lambda server: (
                inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, server)
            ),
            security=config.security,
        )
        metrics_endpoint = None
        try:
            if config.listen.metrics_port >= 0:
                metrics_endpoint = serve_metrics(
                    registry, config.listen.metrics_host, config.listen.metrics_port
                )
        except OSError:
            await grpc_server.stop(0)
            executor.shutdown(wait=False)
            raise
        loading = asyncio.get_running_loop().run_in_executor(None, load, config.engine, registry)
        return cls(
            config=config,
            grpc_server=grpc_server,
            servicer=servicer,
            executor=executor,
            registry=registry,
            metrics_endpoint=metrics_endpoint,
            loading=loading,
        )

    @property
    def port(self) -> int:
        """The gRPC port (the real one when started on port 0)."""
        return self.grpc_server.port

    @property
    def metrics_port(self) -> int | None:
        """The /metrics port, or None when metrics are disabled."""
        return self.metrics_endpoint.port if self.metrics_endpoint is not None else None

    @property
    def engine(self) -> Engine:
        """The loaded engine; raises RuntimeError before :meth:`ready` returned."""
        if self.servicer.engine is None:
            raise RuntimeError("the model is not loaded yet: await ready() first")
        return self.servicer.engine

    async def ready(self) -> Engine:
        """Waits for the model to load and warm up, then reports SERVING.

        Raises what :meth:`Engine.load` raised when the model cannot be loaded;
        health then stays NOT_SERVING.
        """
        try:
            engine = await asyncio.shield(self._loading)
        except BaseException:
            self._load_failure_reported = True
            raise
        if self.servicer.engine is None and not self._stopped:
            self.servicer.serve(engine)
            await self.grpc_server.set_serving(True)
            listen = self.config.listen
            metrics = f"metrics on {self.metrics_port}" if self.metrics_port else "no metrics"
            _LOGGER.info(
                "InferenceService serving on %s (%s)",
                grpc_address(listen.host, self.port),
                metrics,
            )
        return engine

    async def stop(self, grace: float | None = None) -> None:
        """Stops taking calls, lets running ones finish within ``grace`` seconds, frees the model.

        ``grace`` defaults to the configured ``shutdown_grace``.
        """
        if self._stopped:
            return
        self._stopped = True
        grace = self.config.listen.shutdown_grace if grace is None else grace
        await self.grpc_server.stop(grace)
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        if self.metrics_endpoint is not None:
            await asyncio.to_thread(self.metrics_endpoint.close)
        try:
            engine = await asyncio.shield(self._loading)
        except Exception:
            # Nothing was loaded, so nothing to free; ready() raised the error
            # to its caller, unless the server stopped before anyone asked.
            if not self._load_failure_reported:
                _LOGGER.exception("loading the model failed")
            return
        await asyncio.to_thread(engine.close)


async def start_inference_server(
    config: InferenceServerConfig,
    registry: CollectorRegistry | None = None,
    *,
    load: Callable[[EngineConfig, CollectorRegistry], Engine] = Engine.load,
) -> InferenceServer:
    """Starts the server and waits until it is SERVING (model loaded and warmed up).

    Raises :class:`OSError` for a port that cannot be bound, and
    :class:`FileNotFoundError` / :class:`ValueError` for a model that cannot be
    loaded (the server is stopped again first).
    """
    server = await InferenceServer.start(config, registry, load=load)
    try:
        await server.ready()
    except BaseException:
        await server.stop(0)
        raise
    return server
