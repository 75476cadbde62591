"""Running a grpc.aio server the same way in every service.

Every framewire server listens on one port with its own services plus
``grpc.health.v1`` and server reflection, reports NOT_SERVING until its owner
says it is ready, and shuts down on SIGTERM or SIGINT after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from framewire.common.logs import LOG_FORMATS
from framewire.common.settings import option, parse_duration
from framewire.common.transport import TransportConfig, server_options

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# grpcio-health-checking ships the asyncio servicer without type information.
AsyncHealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ListenConfig:
    """Where a server listens, and how long it takes to stop."""

    host: str = option("0.0.0.0", "address the gRPC server listens on")
    port: int = option(50051, "gRPC port; 0 picks a free port")
    metrics_host: str = option("0.0.0.0", "address the Prometheus /metrics endpoint listens on")
    metrics_port: int = option(9464, "Prometheus /metrics port; 0 picks a free port, -1 disables")
    shutdown_grace: float = option(
        10.0,
        "seconds to finish in-flight work after SIGTERM before calls are cancelled",
        parse=parse_duration,
    )
    log_level: str = option(
        "info", "log level", choices=("debug", "info", "warning", "error"), env=True
    )
    log_format: str = option(
        "text",
        "log line format: text (one escaped line per record) or json (one object per line)",
        choices=LOG_FORMATS,
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within 0..65535, not {self.port}")
        if not -1 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be within -1..65535, not {self.metrics_port}")
        if self.shutdown_grace < 0:
            raise ValueError("shutdown_grace must not be negative")


def grpc_address(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class GrpcServer:
    """A started grpc.aio server with health checking and reflection.

    Health starts NOT_SERVING for the whole server and for each named
    service; call :meth:`set_serving` once the owner is ready.
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health_servicer: Any,
        service_names: tuple[str, ...],
    ) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.service_names = service_names

    @classmethod
    async def start(
        cls,
        listen: ListenConfig,
        transport: TransportConfig,
        *,
        service_names: Iterable[str],
        register: Callable[[grpc.aio.Server], None],
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    ) -> GrpcServer:
        """Builds, binds and starts the server; raises OSError when the port cannot be bound."""
        names = tuple(service_names)
        server = grpc.aio.server(options=server_options(transport), interceptors=interceptors)
        register(server)
        health_servicer = AsyncHealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = grpc_address(listen.host, listen.port)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(f"cannot listen on {address}: {error}") from error
        if port == 0:
            raise OSError(f"cannot listen on {address}: the port is taken or the address is wrong")
        await server.start()
        started = cls(server, port, health_servicer, names)
        await started.set_serving(False)
        return started

    async def set_serving(self, serving: bool) -> None:
        """Reports SERVING or NOT_SERVING for the server and each of its services."""
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace: float | None) -> None:
        """Stops accepting calls and cancels the remaining ones after ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def wait_for_signal(signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> int:
    """Waits until the process receives one of ``signals``; returns which."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()
    installed = []

    def deliver(number: int) -> None:
        if not received.done():
            received.set_result(number)

    for number in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(number, deliver, number)
            installed.append(number)
    try:
        return await received
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


class LoopThread:
    """An asyncio event loop on a daemon thread, for running a server inside another program.

    ``framewire demo`` runs the embedded server this way beside the agent, and
    the tests run every in-process server so.
    """

    def __init__(self, name: str = "framewire-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Runs ``coroutine`` on the loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        """Cancels what is still running on the loop, then stops and closes it."""

        async def cancel_the_rest() -> None:
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results, strict=True):
                if isinstance(result, Exception):
                    _LOGGER.error("task %s failed", task.get_name(), exc_info=result)

        try:
            self.run(cancel_the_rest(), timeout=10)
        except Exception:
            _LOGGER.exception("%s: cancelling the loop's remaining tasks failed", self._thread.name)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs ``main()`` on uvloop when it is installed, else on the default asyncio loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancels tasks and waits for them, logging any error they had besides cancellation."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            _LOGGER.error("background task %s failed", task.get_name(), exc_info=task.exception())


def log_task_failure(task: asyncio.Task[Any]) -> None:
    """A done-callback that logs a background task's crash instead of losing it."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        _LOGGER.error("background task %s crashed", task.get_name(), exc_info=error)
