"""Running a grpc.aio server the same way in every service.

Every framewire server listens on one port with its own services plus
``grpc.health.v1`` (and server reflection when ``--reflection`` is given),
reports NOT_SERVING until its owner says it is ready, and shuts down on
SIGTERM or SIGINT after a grace period. :class:`SecurityConfig` turns on TLS,
mTLS and per-device tokens on that port; ``--health-port`` adds a plaintext
port that serves health checks and nothing else, for Kubernetes' gRPC probes
(which cannot speak TLS). See docs/security.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from framewire.common.auth import AuthInterceptor, TokenAuthenticator
from framewire.common.logs import LOG_FORMATS
from framewire.common.memory import keep_large_buffers
from framewire.common.settings import option, parse_duration
from framewire.common.tls import CertificateFiles, server_credentials
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
    # Loopback by default: /metrics has no TLS and no auth, and says how busy
    # the server is. A Kubernetes deployment sets 0.0.0.0 so Prometheus can
    # scrape the pod (docs/security.md).
    metrics_host: str = option(
        "127.0.0.1",
        "address the Prometheus /metrics endpoint listens on (0.0.0.0 for a scraper elsewhere)",
    )
    metrics_port: int = option(9464, "Prometheus /metrics port; 0 picks a free port, -1 disables")
    health_host: str = option("0.0.0.0", "address the plaintext health-only port listens on")
    health_port: int = option(
        -1,
        "plaintext port serving only grpc.health.v1, for Kubernetes gRPC probes (which cannot "
        "speak TLS); 0 picks a free port, -1 disables",
    )
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
    # Set by `--workers`, not by a flag: several processes bind the same ports.
    reuse_port: bool = dataclasses.field(default=False, metadata={"env": False})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within 0..65535, not {self.port}")
        if not -1 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be within -1..65535, not {self.metrics_port}")
        if not -1 <= self.health_port <= 65535:
            raise ValueError(f"health_port must be within -1..65535, not {self.health_port}")
        if self.shutdown_grace < 0:
            raise ValueError("shutdown_grace must not be negative")


@dataclass(frozen=True)
class SecurityConfig:
    """TLS, mTLS, device tokens and reflection: the same for every framewire server."""

    tls_cert: Path | None = option(
        None,
        "PEM certificate chain: serve TLS with it (read again when the file changes)",
        metavar="FILE",
    )
    tls_key: Path | None = option(None, "PEM private key of --tls-cert", metavar="FILE")
    tls_client_ca: Path | None = option(
        None,
        "PEM CA certificates: require client certificates signed by them (mTLS)",
        metavar="FILE",
    )
    auth_tokens: Path | None = option(
        None,
        "token file (NAME sha256:HASH STREAM-IDS per line; 'framewire token new' makes "
        "entries): every call but health checks needs 'authorization: Bearer TOKEN'",
        metavar="FILE",
    )
    auth_reload_interval: float = option(
        2.0,
        "how often the token file is checked for changes; streams of a removed token end "
        "within this time",
        parse=parse_duration,
    )
    max_streams_per_token: int = option(
        4,
        "streams one token may hold open at once; more are refused (RESOURCE_EXHAUSTED)",
    )
    reflection: bool = option(
        False, "serve gRPC server reflection (lists the services and their messages)"
    )

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError(
                "--tls-client-ca (mTLS) needs server TLS: give --tls-cert and --tls-key"
            )
        if self.auth_reload_interval <= 0:
            raise ValueError("auth_reload_interval must be positive")
        if self.max_streams_per_token < 1:
            raise ValueError("max_streams_per_token must be at least 1")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def authenticator(self) -> TokenAuthenticator | None:
        """The token checker for ``auth_tokens``; ValueError when the file is unusable."""
        if self.auth_tokens is None:
            return None
        return TokenAuthenticator(
            self.auth_tokens, self.max_streams_per_token, self.auth_reload_interval
        )


def grpc_address(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class GrpcServer:
    """A started grpc.aio server with health checking (and reflection when asked for).

    Health starts NOT_SERVING for the whole server and for each named
    service; call :meth:`set_serving` once the owner is ready. With a health
    port, a second plaintext server shares the same health servicer.
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health_servicer: Any,
        service_names: tuple[str, ...],
        *,
        health_server: grpc.aio.Server | None = None,
        health_port: int | None = None,
        certificates: CertificateFiles | None = None,
        authenticator: TokenAuthenticator | None = None,
        tasks: Sequence[asyncio.Task[None]] = (),
    ) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.service_names = service_names
        self.health_server = health_server
        self.health_port = health_port
        self.certificates = certificates
        self.authenticator = authenticator
        self._tasks = list(tasks)

    @classmethod
    async def start(
        cls,
        listen: ListenConfig,
        transport: TransportConfig,
        *,
        service_names: Iterable[str],
        register: Callable[[grpc.aio.Server], None],
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        security: SecurityConfig | None = None,
        authenticator: TokenAuthenticator | None = None,
    ) -> GrpcServer:
        """Builds, binds and starts the server.

        ``authenticator`` is the one made from ``security`` when the owner
        needs it too (the ingest hub); otherwise it is made here. Raises
        OSError when a port cannot be bound and ValueError when a TLS or token
        file cannot be used.
        """
        security = security if security is not None else SecurityConfig()
        if authenticator is None:
            authenticator = security.authenticator()
        names = tuple(service_names)
        credentials, certificates = None, None
        if security.tls_cert is not None and security.tls_key is not None:
            credentials, certificates = server_credentials(
                security.tls_cert, security.tls_key, security.tls_client_ca
            )
        if authenticator is not None:
            interceptors = (AuthInterceptor(authenticator), *interceptors)
            if credentials is None:
                _LOGGER.warning(
                    "device tokens are checked but TLS is off: tokens cross the network in "
                    "plaintext; give --tls-cert and --tls-key"
                )
        options = server_options(transport, reuse_port=listen.reuse_port)
        server = grpc.aio.server(options=options, interceptors=interceptors)
        register(server)
        health_servicer = AsyncHealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        if security.reflection:
            reflection.enable_server_reflection(
                (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
            )
        address = grpc_address(listen.host, listen.port)
        port = _bind(server, address, credentials)
        health_server, health_port = None, None
        if listen.health_port >= 0:
            # Nothing but the health servicer is registered here: no interceptor
            # is needed, because there is nothing else to reach.
            health_server = grpc.aio.server(options=options)
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
            try:
                health_port = _bind(
                    health_server, grpc_address(listen.health_host, listen.health_port), None
                )
            except OSError:
                await server.stop(None)
                raise
        await server.start()
        if health_server is not None:
            await health_server.start()
        tasks = []
        if authenticator is not None:
            tasks.append(asyncio.create_task(authenticator.watch(), name="token file watch"))
            tasks[-1].add_done_callback(log_task_failure)
        started = cls(
            server,
            port,
            health_servicer,
            names,
            health_server=health_server,
            health_port=health_port,
            certificates=certificates,
            authenticator=authenticator,
            tasks=tasks,
        )
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
        if self.health_server is not None:
            await self.health_server.stop(None)
        await cancel_and_wait(self._tasks)


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Adds a port to ``server``; OSError when it cannot be bound."""
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as error:
        raise OSError(f"cannot listen on {address}: {error}") from error
    if port == 0:
        raise OSError(f"cannot listen on {address}: the port is taken or the address is wrong")
    return port


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


# How long a thread may keep the GIL while another thread waits for it. Python's default,
# 5 ms, lets a model thread's Python work (building a response, say) hold the event loop off
# for that long, and every frame waiting on the loop waits with it. Measured with a null
# model, 4 streams flat out: 1.34 times the frames at 0.5 ms; with the SSD on ONNX Runtime
# at 2x overload, as many frames or more and a lower p99 in each of 4 rounds.
EVENT_LOOP_SWITCH_INTERVAL = 0.0005


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs ``main()`` on uvloop when it is installed, else on the default asyncio loop.

    A server process: worker threads give the GIL back to the event loop within
    :data:`EVENT_LOOP_SWITCH_INTERVAL`, and batch-sized buffers are reused rather
    than faulted in afresh (:func:`~framewire.common.memory.keep_large_buffers`).
    """
    sys.setswitchinterval(EVENT_LOOP_SWITCH_INTERVAL)
    _LOGGER.debug("large buffers: %s", keep_large_buffers().value)
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
