"""Where batches go: an in-process model, or remote InferenceService replicas.

Both kinds speak the same contract (``DetectRequest`` in, ``DetectResponse``
out), so the batcher never knows which it has. A target is *usable* while it
is known to serve; the batcher sends nothing to one that is not, and ingest
reports NOT_SERVING while none is.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framewire.common import errors
from framewire.common.auth import TokenFile
from framewire.common.errors import FramewireError
from framewire.common.tls import ClientTls, aio_channel
from framewire.common.transport import TransportConfig, channel_options
from framewire.v1 import inference_service_pb2, inference_service_pb2_grpc

_LOGGER = logging.getLogger(__name__)

INFERENCE_SERVICE = "framewire.v1.InferenceService"
# How long to wait before watching a lost replica's health again: short
# enough that a restarted replica is used again within seconds.
RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class ModelDescription:
    """What ingest needs to know about the model behind it."""

    model_id: str
    labels: tuple[str, ...]
    default_score_threshold: float
    max_batch_size: int
    input_width: int = 0
    input_height: int = 0
    # Batches the model prepares or runs at once; 0: not stated (an older server).
    concurrent_batches: int = 0

    @property
    def name(self) -> str:
        """The model id without its weights hash: ``ssd_mobilenet_v2_coco``."""
        return self.model_id.split("@", 1)[0]


class Detector(Protocol):
    """An in-process model: what ``framewire.inference.Engine`` provides."""

    def detect(
        self, request: inference_service_pb2.DetectRequest
    ) -> inference_service_pb2.DetectResponse: ...

    def model_info(self) -> inference_service_pb2.GetModelInfoResponse: ...


def describe(info: inference_service_pb2.GetModelInfoResponse) -> ModelDescription:
    """The parts of GetModelInfoResponse that ingest uses."""
    return ModelDescription(
        model_id=info.model_id,
        labels=tuple(info.labels),
        default_score_threshold=info.default_score_threshold,
        max_batch_size=info.max_batch_size,
        input_width=info.input_width,
        input_height=info.input_height,
        concurrent_batches=info.concurrent_batches,
    )


class InferenceTarget(abc.ABC):
    """One place batches can be sent to, with a limit on batches outstanding."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.model: ModelDescription | None = None
        self._usable = False
        self._on_change: Callable[[], None] = lambda: None

    @property
    def usable(self) -> bool:
        """True while the target is known to serve."""
        return self._usable

    def _set_usable(self, usable: bool) -> None:
        if usable != self._usable:
            self._usable = usable
            _LOGGER.info("inference target %s is %s", self.name, "up" if usable else "down")
            self._on_change()

    @abc.abstractmethod
    async def start(self, on_change: Callable[[], None]) -> None:
        """Begins tracking the target; ``on_change`` runs when usability or the model changes."""

    @abc.abstractmethod
    async def detect(
        self, request: inference_service_pb2.DetectRequest
    ) -> inference_service_pb2.DetectResponse:
        """Runs one batch; raises :class:`FramewireError` when the batch as a whole failed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Releases the target's threads or connections."""


class LocalTarget(InferenceTarget):
    """A model in this process, run on worker threads so the event loop stays free.

    With two workers one batch decodes while the other runs the model; the
    model call itself releases the GIL (ONNX Runtime, OpenCV, TensorRT).
    """

    def __init__(self, detector: Detector, capacity: int) -> None:
        super().__init__("local", capacity)
        self._detector = detector
        self._executor = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="detect")

    async def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.model = describe(self._detector.model_info())
        self._set_usable(True)

    async def detect(
        self, request: inference_service_pb2.DetectRequest
    ) -> inference_service_pb2.DetectResponse:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._detector.detect, request)

    async def close(self) -> None:
        self._set_usable(False)
        await asyncio.to_thread(self._executor.shutdown, wait=True)


class RemoteTarget(InferenceTarget):
    """InferenceService replicas behind one gRPC target.

    ``host:port`` is one replica; ``dns:///name:port`` is every address the
    name resolves to, with calls spread round-robin by gRPC. Usability follows
    the replicas' own ``grpc.health.v1`` Watch stream, so a replica that is
    still warming up or draining receives nothing. ``tls`` makes the channel
    TLS (mTLS with a client certificate); ``token`` is sent with every call
    but health checks, which need none.
    """

    def __init__(
        self,
        address: str,
        capacity: int,
        transport: TransportConfig,
        timeout: float,
        *,
        tls: ClientTls | None = None,
        token: TokenFile | None = None,
    ) -> None:
        super().__init__(address, capacity)
        self._timeout = timeout
        self._token = token
        self._channel = aio_channel(address, channel_options(transport, round_robin=True), tls)
        self._stub = inference_service_pb2_grpc.InferenceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._watch: asyncio.Task[None] | None = None

    async def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._start_watch()

    def _start_watch(self) -> None:
        self._watch = asyncio.create_task(self._watch_health(), name=f"health-watch {self.name}")
        self._watch.add_done_callback(self._watch_ended)

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        """The watch only ends when cancelled; if it ever dies, the target must not look usable."""
        if task.cancelled():
            return
        _LOGGER.error(
            "inference target %s: health watch stopped; the target is unusable",
            self.name,
            exc_info=task.exception(),
        )
        self._set_usable(False)

    async def _watch_health(self) -> None:
        failures = 0
        request = health_pb2.HealthCheckRequest(service=INFERENCE_SERVICE)
        while True:
            try:
                call = self._health.Watch(request)
                async for response in call:
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        if self.model is None:
                            info = await self._stub.GetModelInfo(
                                inference_service_pb2.GetModelInfoRequest(),
                                timeout=self._timeout,
                                metadata=self._metadata(),
                            )
                            self.model = describe(info)
                        failures = 0
                        self._set_usable(True)
                    else:
                        self._set_usable(False)
            except grpc.aio.AioRpcError as error:
                if failures == 0:
                    _LOGGER.warning(
                        "inference target %s: health watch failed: %s %s",
                        self.name,
                        error.code().name,
                        error.details(),
                    )
            except Exception:
                # Anything else (a bad model description, a bug) must not leave
                # the target frozen in its last state: log it and watch again.
                _LOGGER.exception("inference target %s: health watch failed", self.name)
            self._set_usable(False)
            await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
            failures += 1

    async def detect(
        self, request: inference_service_pb2.DetectRequest
    ) -> inference_service_pb2.DetectResponse:
        try:
            response: inference_service_pb2.DetectResponse = await self._stub.Detect(
                request, timeout=self._timeout, metadata=self._metadata()
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                # Stop sending here until the health watch sees it serve again.
                self._set_usable(False)
                self._restart_watch()
            raise FramewireError(
                error.code(), f"inference target {self.name}: {error.details()}"
            ) from error
        return response

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        try:
            return self._token.metadata() if self._token is not None else ()
        except ValueError as error:
            raise FramewireError(grpc.StatusCode.UNAUTHENTICATED, str(error)) from error

    def _restart_watch(self) -> None:
        """Makes the health watch look again now, so a brief blip costs little."""
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()
        self._start_watch()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        self._set_usable(False)
        await self._channel.close(None)


def unavailable_everywhere() -> FramewireError:
    """The error frames get when no inference target can take them."""
    return errors.unavailable("no inference replica is available; frames are failed until one is")
