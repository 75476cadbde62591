"""The agent's one ``StreamFrames`` call, and its reconnects.

:class:`AgentStream` runs on the network thread's asyncio loop. It opens the
call, sends the StreamConfig and waits for StreamAccepted; then a sender task
compresses and sends the waiting frame whenever fewer than ``max_in_flight``
frames are unanswered (and sends an AgentReport every report interval), while
a receiver task books each answer and hands it on. When the call breaks it
counts the frames in flight as lost and reconnects with jittered exponential
backoff, resending its StreamConfig, until ``--connect-timeout`` passes with
no connection. A refusal that retrying cannot fix ends the run at once; so
does a refused token or certificate, and a failed TLS handshake, each with a
message that says which it was.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Final, cast

import grpc

from framewire.common import __version__
from framewire.common.auth import TokenFile
from framewire.common.contract import FLOW_HINT_LIFETIME, MAX_REPORT_SAMPLES, SKIP_REASONS
from framewire.common.protoutil import seconds, timestamp_from_ns
from framewire.common.tls import (
    TOKEN_ENV,
    aio_channel,
    describe_handshake_failure,
    probe_handshake,
)
from framewire.common.transport import channel_options
from framewire.edge_agent.compression import Compressor, EncodedFrame
from framewire.edge_agent.config import AgentConfig
from framewire.edge_agent.errors import AgentError, AuthRefused, ServerUnreachable, StreamRefused
from framewire.edge_agent.ledger import LatestFrame, Ledger, SentFrame
from framewire.edge_agent.output import ResultEvent
from framewire.edge_agent.sources import CapturedFrame
from framewire.edge_agent.window import AdaptiveWindow
from framewire.v1 import common_pb2, ingest_service_pb2, ingest_service_pb2_grpc

_LOGGER = logging.getLogger(__name__)

CLIENT_VERSION = f"framewire-edge-agent/{__version__}"

# Status codes that mean "this stream can never work as configured": retrying
# would only repeat the refusal.
PERMANENT_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
# The server refused who we are: a new token or certificate is needed, not a retry.
AUTH_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
# How long the look at a connection that closed at once may take (see probe_handshake).
HANDSHAKE_PROBE_TIMEOUT = 3.0
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 5.0
# After a stop request, how long in-flight frames may take to be answered.
STOP_GRACE = 3.0
# Re-encoding tries when a frame is over the server's byte limit.
SHRINK_TRIES = 4

StreamCall = grpc.aio.StreamStreamCall[
    ingest_service_pb2.StreamFramesRequest, ingest_service_pb2.StreamFramesResponse
]
# grpc.aio's end-of-stream marker (untyped in the stubs).
_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]


async def read_response(call: StreamCall) -> ingest_service_pb2.StreamFramesResponse | None:
    """The next response of the call, or None at the end of the stream."""
    response = await call.read()
    if response is _EOF:
        return None
    return cast(ingest_service_pb2.StreamFramesResponse, response)


class _Retry(Exception):
    """The stream broke in a way that a new stream may fix."""

    def __init__(self, reason: str, *, was_connected: bool) -> None:
        super().__init__(reason)
        self.was_connected = was_connected


class AgentStream:
    """The network side of the agent: one call at a time, kept up until the work is done.

    The capture side and the caller share only the handoff (``latest``), the
    books (``ledger``), the compressor and two events: ``stop`` (finish:
    frames in flight get :data:`STOP_GRACE` to be answered) and
    ``capture_done`` (the source has ended). Answers go to ``deliver``,
    frames that will never be answered to ``record_skipped``, and
    ``on_change`` is called about once a second and on every state change.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        latest: LatestFrame,
        ledger: Ledger,
        compressor: Compressor,
        stop: threading.Event,
        capture_done: threading.Event,
        deliver: Callable[[ResultEvent], None],
        record_skipped: Callable[[SentFrame, str], None],
        on_change: Callable[[], None],
    ) -> None:
        self.config = config
        self._latest = latest
        self._ledger = ledger
        self._results_this_call = 0  # FrameResults read on this call, acknowledged in reports
        self._compressor = compressor
        self._stop = stop
        self._capture_done = capture_done
        self._deliver = deliver
        self._record_skipped = record_skipped
        self._on_change = on_change
        self._keep_images = False
        self.connected = False
        self.reconnects = 0
        self._connections = 0
        self._seq = 0
        # What the server's StreamAccepted said (until then, what we asked for).
        self._max_in_flight = config.stream.max_in_flight
        self._window = AdaptiveWindow(self._max_in_flight, fixed=config.stream.fixed_window)
        # Frames sent, by the window in force when each was sent (for the summary).
        self.window_sizes: collections.Counter[int] = collections.Counter()
        # Frames sent while the window held frames back after an answer, and those holds summed.
        self.held = 0
        self.held_seconds = 0.0
        # FlowHints received on any call, and the newest with when it came (monotonic seconds).
        self.hints_received = 0
        self.last_hint: tuple[float, ingest_service_pb2.FlowHint] | None = None
        self._max_frame_bytes = 0
        self._report_interval = config.stream.report_interval
        self._max_report_samples = MAX_REPORT_SAMPLES
        # A followed FlowHint's send rate, and until when it holds.
        self._send_interval = 0.0
        self._hint_until = 0.0
        # No frame leaves before this (monotonic seconds): the window's hold after an answer.
        self._hold_until = 0.0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls = config.security.client_tls()
        self._token_file: TokenFile | None = None

    @property
    def window(self) -> int:
        """Frames the agent keeps unanswered now (see framewire.edge_agent.window)."""
        return self._window.size

    @property
    def hold(self) -> float:
        """Seconds the next frame is held back after an answer (see framewire.edge_agent.window)."""
        return self._window.hold

    def notify(self) -> None:
        """Wakes the sender (from any thread): a frame is waiting, capture ended, or stop."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            # The loop may close between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    async def run(self, *, keep_images: bool = False) -> None:
        """Streams until there is nothing left to send, reconnecting as needed.

        ``keep_images`` keeps each sent frame's image in the books (for
        ``--record``). Raises :class:`ServerUnreachable` after
        ``--connect-timeout`` without a connection and :class:`StreamRefused`
        when the server refuses the stream for good.
        """
        self._keep_images = keep_images
        self._loop = asyncio.get_running_loop()
        if self.config.security.token_file is not None:
            try:
                self._token_file = TokenFile(self.config.security.token_file)
            except ValueError as error:
                raise AgentError(str(error)) from error
        self._wake = asyncio.Event()
        self._latest.notify = self.notify
        stream = self.config.stream
        down_since = time.monotonic()
        attempt = 0
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compress") as encoder:
            while True:
                try:
                    await self._stream_once(encoder)
                    return
                except _Retry as retry:
                    self._went_down()
                    if retry.was_connected:
                        down_since = time.monotonic()
                        attempt = 0
                    if self._nothing_left():
                        _LOGGER.warning("stream ended (%s) with nothing left to send", retry)
                        return
                    down_for = time.monotonic() - down_since
                    if down_for >= stream.connect_timeout:
                        raise ServerUnreachable(
                            f"could not reach the ingest server at {stream.server} for "
                            f"{down_for:.0f} s (last error: {retry}); check --server and that "
                            "'framewire serve' or 'framewire ingest' is running there"
                        ) from retry
                    delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt) * random.uniform(0.5, 1.0)
                    attempt += 1
                    # The first failure is news; the retries after it are not.
                    _LOGGER.log(
                        logging.WARNING if attempt == 1 else logging.INFO,
                        "stream down (%s); reconnecting in %.2f s",
                        retry,
                        delay,
                    )
                    await self._sleep(min(delay, stream.connect_timeout - down_for))

    # -- connection state -----------------------------------------------------

    def _went_down(self) -> None:
        self.connected = False
        self._latest.connected = False
        for frame in self._ledger.on_disconnect():
            self._record_skipped(frame, "lost")
        self._on_change()

    def _nothing_left(self) -> bool:
        if self._stop.is_set():
            # Stopping: a frame the capture thread handed over after the stop is never
            # sent (the agent discards and counts it), so it is no reason to reconnect.
            return not self._ledger.in_flight
        return (
            self._capture_done.is_set() and not self._latest.waiting and not self._ledger.in_flight
        )

    async def _sleep(self, delay: float) -> None:
        assert self._wake is not None
        end = time.monotonic() + max(0.0, delay)
        while not self._stop.is_set() and (remaining := end - time.monotonic()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """The call's token, from --token-file (read again when it changes) or $FRAMEWIRE_TOKEN."""
        if self._token_file is not None:
            try:
                return self._token_file.metadata()
            except ValueError as error:
                raise AgentError(str(error)) from error
        token = os.environ.get(TOKEN_ENV, "").strip()
        return (("authorization", f"Bearer {token}"),) if token else ()

    def _channel(self) -> grpc.aio.Channel:
        """A channel to the server; TLS files are read again for each one, so rotation works."""
        try:
            return aio_channel(
                self.config.stream.server, channel_options(self.config.transport), self._tls
            )
        except ValueError as error:
            raise AgentError(f"cannot use the TLS files: {error}") from error

    async def _stream_once(self, encoder: concurrent.futures.Executor) -> None:
        metadata = self._metadata()
        async with self._channel() as channel:
            stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
            call: StreamCall = stub.StreamFrames(metadata=metadata)  # type: ignore[call-arg]
            connected = False
            self._results_this_call = 0
            tasks: list[asyncio.Task[None]] = []
            try:
                await call.write(
                    ingest_service_pb2.StreamFramesRequest(config=self._stream_config())
                )
                first = await read_response(call)
                if first is not None and first.HasField("accepted"):
                    self._accepted(first.accepted)
                    connected = True
                    sender = asyncio.create_task(self._send(call, encoder), name="send")
                    receiver = asyncio.create_task(self._receive(call), name="receive")
                    tasks = [sender, receiver]
                    # The receiver ends at the server's end of the stream; the
                    # sender ends after half-closing. Either may fail first.
                    pending: set[asyncio.Task[None]] = {sender, receiver}
                    while receiver in pending:
                        done, pending = await asyncio.wait(
                            pending, return_when=asyncio.FIRST_EXCEPTION
                        )
                        for task in done:
                            if task.exception() is not None:
                                raise task.exception()  # type: ignore[misc]
                code = await call.code()
                if code != grpc.StatusCode.OK:
                    await self._refuse_or_retry(code, await call.details(), connected, metadata)
                if not connected:
                    raise _Retry(
                        "the server ended the stream before accepting it", was_connected=False
                    )
                if not self._nothing_left():
                    raise _Retry("the server ended the stream early", was_connected=True)
            except grpc.aio.AioRpcError as error:
                await self._refuse_or_retry(error.code(), error.details(), connected, metadata)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                call.cancel()

    async def _refuse_or_retry(
        self,
        code: grpc.StatusCode,
        details: str | None,
        connected: bool,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        """Raises AuthRefused or StreamRefused for a permanent refusal, _Retry for anything else.

        A stream whose token was revoked after the token file was given a new
        one (a rotation) reconnects with the new token instead of ending.
        """
        message = f"{code.name}: {details or 'no details'}"
        server = self.config.stream.server
        if code == grpc.StatusCode.UNAUTHENTICATED and connected and self._metadata() != metadata:
            raise _Retry(
                "the token was replaced; reconnecting with the new one", was_connected=True
            )
        if code in AUTH_CODES:
            hint = (
                "give this device's token with --token-file or $" + TOKEN_ENV
                if code == grpc.StatusCode.UNAUTHENTICATED
                else f"the token must cover stream id {self.config.stream.stream_id!r}"
            )
            raise AuthRefused(f"the server at {server} refused the token: {message} ({hint})")
        if code in PERMANENT_CODES:
            raise StreamRefused(f"the server refused the stream: {message}")
        if code == grpc.StatusCode.UNAVAILABLE and not connected:
            reason = describe_handshake_failure(details)
            if reason is None and "socket closed" in (details or "").lower():
                # Plaintext against TLS, or a refused client certificate, looks
                # like a dropped connection to gRPC; ask the server directly.
                reason = await asyncio.to_thread(
                    probe_handshake, server, self._tls, HANDSHAKE_PROBE_TIMEOUT
                )
            if reason is not None:
                raise AuthRefused(f"TLS handshake with {server} failed: {reason}")
        raise _Retry(message, was_connected=connected)

    def _stream_config(self) -> ingest_service_pb2.StreamConfig:
        stream = self.config.stream
        config = ingest_service_pb2.StreamConfig(
            stream_id=stream.stream_id,
            model=stream.model,
            class_filter=stream.classes,
            max_in_flight=stream.max_in_flight,
            client_version=CLIENT_VERSION,
            track=stream.track,
        )
        if stream.score_threshold is not None:
            config.score_threshold = stream.score_threshold
        return config

    def _accepted(self, accepted: ingest_service_pb2.StreamAccepted) -> None:
        self._max_in_flight = max(1, accepted.max_in_flight)
        self._window = AdaptiveWindow(self._max_in_flight, fixed=self.config.stream.fixed_window)
        self._hold_until = 0.0
        self._max_frame_bytes = accepted.limits.max_frame_bytes
        self._report_interval = seconds(accepted.limits.report_interval) or (
            self.config.stream.report_interval
        )
        self._max_report_samples = accepted.limits.max_report_samples or MAX_REPORT_SAMPLES
        self.connected = True
        self._latest.connected = True
        if self._connections:
            self.reconnects += 1
            # Boxes from before the break are stale: start again from a whole frame.
            self._compressor.request_keyframe()
            _LOGGER.warning("reconnected to %s", self.config.stream.server)
        self._connections += 1
        _LOGGER.info(
            "stream %s accepted by %s: model %s, max_in_flight %d",
            accepted.stream_id,
            accepted.server_version,
            accepted.model_id,
            self._max_in_flight,
        )

    # -- sending --------------------------------------------------------------

    async def _send(
        self,
        call: StreamCall,
        encoder: concurrent.futures.Executor,
    ) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        next_report = time.monotonic() + self._report_interval
        next_send = 0.0
        stop_deadline: float | None = None
        while True:
            self._wake.clear()
            now = time.monotonic()
            if self._stop.is_set():
                if stop_deadline is None:
                    stop_deadline = now + STOP_GRACE
                    self._latest.discard()
                if not self._ledger.in_flight or now >= stop_deadline:
                    await self._send_report(call)
                    await call.done_writing()
                    return
            elif (
                self._capture_done.is_set()
                and not self._latest.waiting
                and not self._ledger.in_flight
            ):
                await self._send_report(call)
                await call.done_writing()
                return
            if now >= next_report:
                await self._send_report(call)
                next_report = now + self._report_interval
                self._on_change()
            if now > self._hint_until:
                self._send_interval = 0.0
            room = len(self._ledger.in_flight) < self._window.size
            send_at = max(next_send, self._hold_until)
            if room and self._latest.waiting and not self._stop.is_set() and now >= send_at:
                captured = self._latest.take()
                if captured is not None:
                    try:
                        encoded = await loop.run_in_executor(encoder, self._encode, captured)
                    except BaseException:
                        # Cancelled (the stream broke) or failed before it was booked
                        # as sent: it must not drop out of the books.
                        self._latest.give_back(captured)
                        raise
                    await self._send_frame(call, captured, encoded)
                    next_send = now + self._send_interval
                    continue
            wake_at = next_report
            if self._stop.is_set() and stop_deadline is not None:
                wake_at = min(wake_at, stop_deadline)
            if room and self._latest.waiting and send_at > now:
                wake_at = min(wake_at, send_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, wake_at - time.monotonic()))

    def _encode(self, captured: CapturedFrame) -> EncodedFrame:
        encoded = self._compressor.compress(captured.image)
        for _ in range(SHRINK_TRIES):
            if not self._max_frame_bytes or len(encoded.data) <= self._max_frame_bytes:
                return encoded
            quality = max(10, self._compressor.jpeg_quality - 20)
            _LOGGER.warning(
                "frame of %d bytes is over the server's limit of %d; lowering JPEG quality to %d",
                len(encoded.data),
                self._max_frame_bytes,
                quality,
            )
            self._compressor.adjust(jpeg_quality=quality)
            encoded = self._compressor.compress(captured.image, retry=True)
        if self._max_frame_bytes and len(encoded.data) > self._max_frame_bytes:
            raise StreamRefused(
                f"frames are {len(encoded.data)} bytes, over the server's limit of "
                f"{self._max_frame_bytes} even at JPEG quality {self._compressor.jpeg_quality}: "
                "use --resize or --max-width"
            )
        return encoded

    async def _send_frame(
        self,
        call: StreamCall,
        captured: CapturedFrame,
        encoded: EncodedFrame,
    ) -> None:
        self._seq += 1
        frame = ingest_service_pb2.Frame(
            seq=self._seq,
            capture_time=timestamp_from_ns(captured.capture_ns),
            encoding=common_pb2.ENCODING_JPEG,
            width=encoded.width,
            height=encoded.height,
            data=encoded.data,
            keyframe=encoded.keyframe,
        )
        for x_min, y_min, x_max, y_max in encoded.kept_regions:
            frame.kept_regions.add(x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max)
        sent = SentFrame(
            seq=self._seq,
            capture_ns=captured.capture_ns,
            sent_ns=time.time_ns(),
            size=len(encoded.data),
            width=encoded.width,
            height=encoded.height,
            keyframe=encoded.keyframe,
            image=encoded.image if self._keep_images else None,
        )
        # Booked before the write: an answer can arrive before write() returns.
        self._ledger.on_sent(sent)
        self.window_sizes[self._window.size] += 1
        if self._window.hold > 0:
            self.held += 1
            self.held_seconds += self._window.hold
        await call.write(ingest_service_pb2.StreamFramesRequest(frame=frame))

    async def _send_report(self, call: StreamCall) -> None:
        captured, replaced = self._latest.counts()
        report = self._ledger.report(captured, replaced, self._max_report_samples)
        if report is not None:
            report.results_received = self._results_this_call
            await call.write(ingest_service_pb2.StreamFramesRequest(report=report))

    # -- receiving ------------------------------------------------------------

    async def _receive(self, call: StreamCall) -> None:
        stream_id = self.config.stream.stream_id
        while True:
            response = await read_response(call)
            if response is None:
                return
            kind = response.WhichOneof("kind")
            if kind == "result":
                self._results_this_call += 1
                result = response.result
                received_ns = time.time_ns()
                answer = self._ledger.on_result(result, received_ns)
                self._observe(result)
                if answer.frame is not None and result.timings.HasField("total"):
                    self._window.observe(
                        (received_ns - answer.frame.sent_ns) / 1e9,
                        seconds(result.timings.total),
                        queued=seconds(result.timings.queue),
                        batch_size=result.batch_size,
                    )
                    self._hold_until = time.monotonic() + self._window.hold
                latency = None
                if answer.frame is not None:
                    latency = self._ledger.latencies[-1]
                for frame, reason in answer.skipped:
                    self._record_skipped(frame, SKIP_REASONS.get(reason, "unknown"))
                if answer.unknown:
                    _LOGGER.warning("the server answered seqs not in flight: %s", answer.unknown)
                self._deliver(ResultEvent.from_result(stream_id, result, answer.frame, latency))
            elif kind == "skip_notice":
                answer = self._ledger.on_skip_notice(response.skip_notice)
                for frame, reason in answer.skipped:
                    self._record_skipped(frame, SKIP_REASONS.get(reason, "unknown"))
                self._deliver(ResultEvent.from_skip_notice(stream_id, response.skip_notice))
            elif kind == "hint":
                self._follow(response.hint)
            else:
                _LOGGER.warning("unexpected %s message from the server; ignored", kind)
            self.notify()

    def _observe(self, result: ingest_service_pb2.FrameResult) -> None:
        boxes = [(d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max) for d in result.detections]
        self._compressor.observe(boxes)

    def _follow(self, hint: ingest_service_pb2.FlowHint) -> None:
        _LOGGER.info("server hint: %s", hint.reason or hint)
        self.hints_received += 1
        self.last_hint = (time.monotonic(), hint)
        if not self.config.stream.follow_hints:
            return
        if hint.HasField("target_fps") and hint.target_fps > 0:
            self._send_interval = 1.0 / hint.target_fps
            self._hint_until = time.monotonic() + FLOW_HINT_LIFETIME
        scale = None
        if hint.HasField("scale"):
            # The server sees the frames as sent, so its scale is relative to them.
            scale = min(1.0, self._compressor.scale * hint.scale)
        try:
            self._compressor.adjust(
                scale=scale,
                jpeg_quality=hint.jpeg_quality if hint.HasField("jpeg_quality") else None,
            )
        except ValueError as error:
            _LOGGER.warning("ignoring a FlowHint the agent cannot follow: %s", error)
