"""Serving StreamFrames calls: reading, validating, writing, and draining them.

One :class:`Hub` owns every open stream of a server. For each call it reads
requests in one task and writes responses in another, both driven by the
stream's :class:`~framewire.ingest.streams.StreamSession`; the
:class:`~framewire.ingest.batcher.Batcher` moves frames from sessions to the
model and back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from framewire.common import __version__, errors
from framewire.common.auth import StreamLease, TokenAuthenticator
from framewire.common.errors import FramewireError
from framewire.common.protoutil import duration
from framewire.common.serving import log_task_failure
from framewire.ingest import hints, reports
from framewire.ingest.batcher import Batcher
from framewire.ingest.config import IngestConfig
from framewire.ingest.metrics import IngestMetrics
from framewire.ingest.observer import StreamObserver
from framewire.ingest.streams import Outcome, StreamSession, StreamSettings
from framewire.ingest.targets import InferenceTarget, ModelDescription
from framewire.ingest.validation import (
    check_frame,
    check_image,
    check_report,
    stream_settings,
)
from framewire.v1 import ingest_service_pb2, ingest_service_pb2_grpc

_LOGGER = logging.getLogger(__name__)

SERVER_VERSION = f"framewire-ingest/{__version__}"


class _Stream:
    """A session plus the tasks and events of its call."""

    def __init__(self, session: StreamSession, report_limits: reports.ReportLimits) -> None:
        self.session = session
        self.reports = reports.ReportBooks(
            opened_at=time.monotonic(), tokens=float(report_limits.burst)
        )
        self.warned_about_reports = False
        self.writable = asyncio.Event()  # something to write, or the session finished
        self.readable = asyncio.Event()  # room in the window to read another request
        self.reader: asyncio.Task[None] | None = None
        self.hints = hints.HintReviewer()
        session.wake_writer = self.writable.set
        session.wake_reader = self.readable.set


class Hub(ingest_service_pb2_grpc.IngestServiceServicer):
    """The IngestService servicer: every open stream of one ingest server."""

    def __init__(
        self,
        config: IngestConfig,
        targets: Sequence[InferenceTarget],
        metrics: IngestMetrics,
        authenticator: TokenAuthenticator | None = None,
    ) -> None:
        self._config = config
        self._authenticator = authenticator
        self._targets = list(targets)
        self._metrics = metrics
        self.batcher = Batcher(config, targets, metrics)
        self._streams: dict[int, _Stream] = {}
        self._calls = 0  # open StreamFrames calls, configured or not
        self._report_limits = config.report_limits()
        self._keys = itertools.count(1)
        self.draining = False
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._model: ModelDescription | None = None
        self.observer = StreamObserver()

    def observe(self, observer: StreamObserver) -> None:
        """Hands every stream's life to ``observer`` (the live preview)."""
        self.observer = self.batcher.observer = observer

    @property
    def model(self) -> ModelDescription | None:
        """The model the targets serve, once one of them has said."""
        if self._model is None:
            for target in self._targets:
                if target.model is not None:
                    self._model = target.model
                    break
        return self._model

    @property
    def serving(self) -> bool:
        """Whether new streams can be served now."""
        return not self.draining and any(target.usable for target in self._targets)

    @property
    def open_streams(self) -> int:
        """Streams configured and being served."""
        return len(self._streams)

    @property
    def open_calls(self) -> int:
        """StreamFrames calls open, configured or not: what max_streams limits."""
        return self._calls

    # -- one call -------------------------------------------------------------

    # Responses are written with context.write (the reader and writer run
    # side by side), so the handler returns None rather than an iterator.
    async def StreamFrames(  # type: ignore[override]  # noqa: N802 - the contract's name
        self,
        requests: AsyncIterator[ingest_service_pb2.StreamFramesRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Serves one StreamFrames call from its first request to its status."""
        # A call counts against max_streams from the moment it opens, not only
        # once configured: otherwise calls that hold back their StreamConfig
        # would all be admitted and exceed the limit together.
        if self._calls >= self._config.max_streams:
            await self._abort(
                context,
                errors.resource_exhausted(
                    f"the server already carries its maximum of {self._config.max_streams} "
                    "streams; retry later or connect to another replica"
                ),
            )
            return
        self._calls += 1
        try:
            await self._serve(requests, context)
        finally:
            self._calls -= 1

    async def _serve(
        self,
        requests: AsyncIterator[ingest_service_pb2.StreamFramesRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        try:
            settings, model = await self._open(requests)
            lease = self._authorize(context, settings.stream_id)
        except FramewireError as error:
            await self._abort(context, error)
            return
        session = StreamSession(next(self._keys), settings, on_outcome=self._metrics.count_outcome)
        stream = _Stream(session, self._report_limits)
        if lease is not None:
            lease.on_revoked = lambda error: self._revoke(stream, error)
        self._streams[session.key] = stream
        self._all_closed.clear()
        self.batcher.stream_opened(session)
        self.observer.stream_opened(session)
        _LOGGER.info(
            "stream %s opened (%s, max_in_flight %d)",
            settings.stream_id,
            settings.client_version or "unknown client",
            settings.max_in_flight,
        )
        try:
            await context.write(
                ingest_service_pb2.StreamFramesResponse(accepted=self._accepted(settings, model))
            )
            stream.reader = asyncio.create_task(
                self._read(stream, requests), name=f"read {settings.stream_id}"
            )
            stream.reader.add_done_callback(log_task_failure)
            await self._write(stream, context)
            if session.failure is not None:
                await self._abort(context, session.failure)
            elif session.stopped_by_server:
                await self._abort(
                    context,
                    errors.unavailable("the server is shutting down; reconnect to another replica"),
                )
        finally:
            if lease is not None:
                lease.close()
            if stream.reader is not None:
                stream.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stream.reader
            session.abandon()
            del self._streams[session.key]
            self.batcher.stream_closed(session)
            self.observer.stream_closed(session)
            if not self._streams:
                self._all_closed.set()
            _LOGGER.info(
                "stream %s closed: received %d, processed %d, failed %d, skipped %d",
                settings.stream_id,
                session.received,
                session.outcomes[Outcome.PROCESSED],
                session.outcomes[Outcome.FAILED],
                session.outcomes[Outcome.SUPERSEDED]
                + session.outcomes[Outcome.STALE]
                + session.outcomes[Outcome.ABANDONED],
            )

    async def _open(
        self, requests: AsyncIterator[ingest_service_pb2.StreamFramesRequest]
    ) -> tuple[StreamSettings, ModelDescription]:
        """Admits a stream and validates its StreamConfig."""
        if self.draining:
            raise errors.unavailable("the server is shutting down; connect to another replica")
        model = self.model
        if model is None or not any(target.usable for target in self._targets):
            raise errors.unavailable("no inference replica is ready yet; retry shortly")
        try:
            first = await asyncio.wait_for(anext(requests), self._config.config_timeout)
        except StopAsyncIteration:
            raise errors.invalid_argument(
                "the stream ended before its StreamConfig: send a StreamConfig first"
            ) from None
        except TimeoutError:
            raise FramewireError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no StreamConfig within {self._config.config_timeout:g}s of opening the stream",
            ) from None
        kind = first.WhichOneof("kind")
        if kind != "config":
            raise errors.invalid_argument(
                f"the first message of a stream must be a StreamConfig, not {kind or 'empty'}"
            )
        return stream_settings(first.config, model, self._config), model

    def _authorize(
        self, context: grpc.aio.ServicerContext[Any, Any], stream_id: str
    ) -> StreamLease | None:
        """Counts the stream against its token: PERMISSION_DENIED or RESOURCE_EXHAUSTED if not.

        The auth interceptor already refused calls without a valid token; this
        finds which token it was, now that the stream id is known.
        """
        if self._authenticator is None:
            return None
        token = self._authenticator.authenticate(context.invocation_metadata())
        return self._authenticator.open_stream(token, stream_id)

    @staticmethod
    def _revoke(stream: _Stream, error: FramewireError) -> None:
        """Ends a stream whose token was revoked: stop reading, then abort with ``error``."""
        if stream.reader is not None:
            stream.reader.cancel()
        stream.session.fail(error)

    async def _read(
        self, stream: _Stream, requests: AsyncIterator[ingest_service_pb2.StreamFramesRequest]
    ) -> None:
        session = stream.session
        try:
            while True:
                # Read only while the stream's window has room: a client that
                # ignores max_in_flight meets gRPC flow control, not a queue.
                while not session.may_read():
                    stream.readable.clear()
                    await stream.readable.wait()
                request = await anext(requests, None)
                if request is None:
                    break
                kind = request.WhichOneof("kind")
                if kind == "frame":
                    self._on_frame(stream, request.frame)
                elif kind == "report":
                    self._on_report(stream, request.report)
                elif kind == "config":
                    raise errors.invalid_argument(
                        "a stream takes one StreamConfig, as its first message; got a second one"
                    )
                else:
                    raise errors.invalid_argument(
                        "empty StreamFramesRequest: set one of config, frame or report"
                    )
            session.close_input()
        except FramewireError as error:
            session.fail(error)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError:
            # The client went away mid-read; the call itself ends with it.
            session.close_input()
        except Exception as error:
            _LOGGER.exception("reading stream %s failed", session.settings.stream_id)
            session.fail(FramewireError(grpc.StatusCode.INTERNAL, f"ingest failed: {error!r}"))

    async def _write(self, stream: _Stream, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        session = stream.session
        while True:
            response = session.next_response()
            if response is not None:
                kind = response.WhichOneof("kind")
                if kind == "result":
                    # Counted before the write: the client may read it and acknowledge
                    # it in a report before context.write returns here.
                    stream.reports.results.wrote(time.monotonic())
                await context.write(response)
                session.delivered_response(response)
                if kind == "hint":
                    self._metrics.flow_hints.inc()
                elif kind == "result":
                    self._check_unread(stream)
                continue
            if session.finished:
                return
            stream.writable.clear()
            await stream.writable.wait()

    def _on_frame(self, stream: _Stream, frame: ingest_service_pb2.Frame) -> None:
        session = stream.session
        data = frame.data  # once: every read of the field copies the bytes
        check_frame(frame, data, session.last_seq, self._config)
        self._metrics.frames_received.inc()
        self._metrics.frame_bytes.inc(len(data))
        problem = check_image(frame, data, self._config)  # fills in a width or height of 0
        stream.hints.saw_frame(frame.width, frame.height, len(data))
        if problem is not None:
            session.reject(frame, problem)
        elif session.accept(frame, time.monotonic()):
            self.batcher.offer(session)

    def _on_report(self, stream: _Stream, report: ingest_service_pb2.AgentReport) -> None:
        now = time.monotonic()
        if not reports.take_turn(stream.reports, self._report_limits, now):
            self._reject_report(stream, reports.Rejection.RATE)
            return
        check_report(report, self._config)
        session = stream.session
        rejection = reports.judge(
            report,
            stream.reports,
            self._report_limits,
            now=now,
            received=session.received,
        )
        if rejection is not None:
            self._reject_report(stream, rejection)
            return
        self._metrics.count_report(report)
        self.observer.report_received(stream.session, report)

    def _check_unread(self, stream: _Stream) -> None:
        """Ends a stream whose client stopped reading its results (it must not use the model)."""
        config = self._config
        unread = stream.reports.results
        now = time.monotonic()
        if reports.too_many_unread(
            unread, now, limit=config.max_unread_results, max_age=config.max_unread_age
        ):
            stream.session.fail(
                errors.resource_exhausted(
                    f"{unread.unread} results were written to this stream and not acknowledged, "
                    f"the oldest {unread.oldest_age(now):.1f}s ago (limits: "
                    f"{config.max_unread_results} results, {config.max_unread_age:g}s): read "
                    "the responses and send AgentReports with results_received every "
                    "ServerLimits.report_interval"
                )
            )

    def _reject_report(self, stream: _Stream, rejection: reports.Rejection) -> None:
        self._metrics.reports_rejected[rejection.value].inc()
        if not stream.warned_about_reports:
            stream.warned_about_reports = True
            _LOGGER.warning(
                "stream %s: AgentReport rejected (%s); later rejections on this stream are "
                "counted in framewire_agent_reports_rejected_total, not logged",
                stream.session.settings.stream_id,
                rejection.value,
            )

    async def _abort(
        self, context: grpc.aio.ServicerContext[Any, Any], error: FramewireError
    ) -> None:
        self._metrics.streams_rejected.labels(code=error.code.name).inc()
        await context.abort(error.code, error.message)

    def _accepted(
        self, settings: StreamSettings, model: ModelDescription
    ) -> ingest_service_pb2.StreamAccepted:
        config = self._config
        return ingest_service_pb2.StreamAccepted(
            stream_id=settings.stream_id,
            model_id=model.model_id,
            score_threshold=settings.score_threshold,
            class_filter=settings.class_filter,
            max_in_flight=settings.max_in_flight,
            server_version=SERVER_VERSION,
            labels=model.labels,
            limits=ingest_service_pb2.ServerLimits(
                max_frame_bytes=config.max_frame_bytes,
                max_frame_pixels=config.max_frame_pixels,
                max_frame_age=duration(config.max_frame_age),
                max_in_flight=config.max_in_flight_cap,
                max_report_samples=config.max_report_samples,
                report_interval=duration(config.report_interval),
                max_unread_results=config.max_unread_results,
                max_unread_age=duration(config.max_unread_age),
                max_reports_per_second=config.report_rate,
            ),
        )

    # -- the server as a whole ------------------------------------------------

    async def review_load(self) -> None:
        """Sends FlowHints to streams that would do better sending less; runs until cancelled."""
        interval = self._config.hint_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            model = self.model
            side = max(model.input_width, model.input_height) if model else 0
            now = time.monotonic()
            for stream in list(self._streams.values()):
                outcomes = stream.session.outcomes
                hint = stream.hints.review(
                    now,
                    received=stream.session.received,
                    answered=outcomes[Outcome.PROCESSED] + outcomes[Outcome.FAILED],
                    skipped=outcomes[Outcome.SUPERSEDED] + outcomes[Outcome.STALE],
                    model_side=side,
                    max_frame_bytes=self._config.max_frame_bytes,
                )
                if hint is not None:
                    stream.session.hint(hint)

    async def drain(self, grace: float) -> None:
        """Stops reading every stream, answers what was received, then ends the calls.

        Each stream ends with UNAVAILABLE so its agent reconnects, possibly to
        another replica. Returns when every stream has ended or ``grace``
        seconds have passed.
        """
        self.draining = True
        for stream in list(self._streams.values()):
            stream.session.stopped_by_server = True
            if stream.reader is not None:
                stream.reader.cancel()
            stream.session.close_input()
        self.batcher.hurry()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_closed.wait(), grace)
