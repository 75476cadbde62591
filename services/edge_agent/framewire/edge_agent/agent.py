"""The edge agent: capture on one thread, one gRPC stream on another, never waiting on each other.

The capture thread reads the source at its pace and drops each frame into a
one-frame handoff (:class:`~framewire.edge_agent.ledger.LatestFrame`); it never
blocks on the network. The network thread runs an asyncio loop with one
``StreamFrames`` call: it compresses and sends the waiting frame whenever
fewer than ``max_in_flight`` frames are unanswered, reads results as they
come, and reconnects with jittered exponential backoff when the call breaks,
resending its StreamConfig. Every frame is counted once: see
:mod:`framewire.edge_agent.ledger`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Final, cast

import grpc

from framewire.common import __version__
from framewire.common.protoutil import seconds, timestamp_from_ns
from framewire.common.transport import channel_options
from framewire.edge_agent.actions import ActionRunner
from framewire.edge_agent.compression import Compressor, EncodedFrame
from framewire.edge_agent.config import AgentConfig
from framewire.edge_agent.ledger import (
    DISCONNECTED,
    REASON_NAMES,
    SUPERSEDED,
    LatestFrame,
    Ledger,
    SentFrame,
)
from framewire.edge_agent.output import ResultEvent, Summary
from framewire.edge_agent.record import Recorder, RecorderError
from framewire.edge_agent.sources import CapturedFrame, FrameSource, SourceError, open_source
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
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 5.0
# How long a FlowHint's frame rate holds unless the server repeats it.
HINT_LIFETIME = 15.0
# After a stop request, how long in-flight frames may take to be answered.
STOP_GRACE = 3.0
# Re-encoding tries when a frame is over the server's byte limit.
SHRINK_TRIES = 4


class AgentError(Exception):
    """A failure that ends the agent, with the exit code the command line uses."""

    exit_code = 1


class SourceFailed(AgentError):
    """The source could not be opened or broke while reading."""

    exit_code = 3


class ServerUnreachable(AgentError):
    """No stream could be kept up for ``--connect-timeout``."""

    exit_code = 4


class StreamRefused(AgentError):
    """The server refused the stream for a reason retrying cannot fix."""

    exit_code = 5


class OutputFailed(AgentError):
    """An output (--record) could not be written."""

    exit_code = 6


ResultCallback = Callable[[ResultEvent], None]
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


class EdgeAgent:
    """Streams a source's frames to an ingest server and hands back the results.

    ``EdgeAgent(server="host:50051", source="video.mp4").run(on_result=print)``
    takes any option of :class:`AgentConfig` by its field name, or a whole
    ``config``. ``run`` blocks until the source ends, ``--frames`` or
    ``--duration`` is reached, or :meth:`stop` is called, and returns the
    :class:`Summary`.
    """

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        frame_source: FrameSource | None = None,
        **options: Any,
    ) -> None:
        self.config = with_options(config or AgentConfig(), options)
        self._source = frame_source
        self._stop = threading.Event()
        self._capture_done = threading.Event()
        self._capture_error: BaseException | None = None
        self._latest = LatestFrame()
        self._ledger = Ledger()
        self._compressor = Compressor(self.config.compression)
        self._detections: collections.Counter[str] = collections.Counter()
        self._reconnects = 0
        self._connections = 0
        self._report_interval = self.config.stream.report_interval
        self._max_report_samples = 1000
        self._seq = 0
        self._send_interval = 0.0
        self._hint_until = 0.0
        self._max_in_flight = self.config.stream.max_in_flight
        self._max_frame_bytes = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[ResultCallback] = []
        # Called on the network thread about once a second and on every state
        # change, for live displays (the CLI's status line).
        self.on_tick: Callable[[], None] = lambda: None
        self._recorder: Recorder | None = None
        self._actions: ActionRunner | None = None
        self.connected = False

    # -- public ---------------------------------------------------------------

    def run(self, on_result: ResultCallback | None = None) -> Summary:
        """Runs until the source ends or :meth:`stop`; raises :class:`AgentError` on failure."""
        config = self.config
        if on_result is not None:
            self._listeners.append(on_result)
        started = time.monotonic()
        try:
            source = self._source or open_source(config.capture.source, loop=config.capture.loop)
        except SourceError as error:
            raise SourceFailed(str(error)) from error
        try:
            self._open_outputs(source)
            capture = threading.Thread(
                target=self._capture, args=(source,), name="capture", daemon=True
            )
            capture.start()
            try:
                asyncio.run(self._network())
            finally:
                self._stop.set()
                capture.join(timeout=5)
                # A frame still waiting now will never be sent: count it.
                self._latest.discard()
            if self._capture_error is not None:
                raise SourceFailed(str(self._capture_error)) from self._capture_error
        finally:
            source.close()
            self._close_outputs()
        return self.summary(time.monotonic() - started)

    def stop(self) -> None:
        """Asks the agent to finish: capture stops, frames in flight get a moment to be answered."""
        self._stop.set()
        self._notify()

    def add_listener(self, callback: ResultCallback) -> None:
        """Calls ``callback`` for every answer (on the network thread; keep it quick)."""
        self._listeners.append(callback)

    def summary(self, elapsed: float) -> Summary:
        """The books so far (complete once :meth:`run` returned)."""
        captured, replaced = self._latest.counts()
        ledger = self._ledger
        return Summary(
            stream_id=self.config.stream.stream_id,
            seconds=elapsed,
            captured=captured,
            sent=ledger.sent,
            processed=ledger.processed,
            failed=ledger.failed,
            skipped_edge={REASON_NAMES[reason]: count for reason, count in replaced.items()},
            skipped_server={
                REASON_NAMES.get(reason, str(reason)): count
                for reason, count in ledger.server_skipped.items()
            },
            lost=ledger.lost,
            bytes_sent=ledger.bytes_sent,
            latencies=list(ledger.latencies),
            detections=collections.Counter(self._detections),
            reconnects=self._reconnects,
            actions_run=self._actions.runs if self._actions else 0,
            actions_dropped=self._actions.dropped if self._actions else 0,
            recorded=self._recorder.frames_written if self._recorder else 0,
        )

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def skipped_at_edge(self) -> int:
        """Frames captured and never sent, so far."""
        return sum(self._latest.counts()[1].values())

    # -- outputs --------------------------------------------------------------

    def _open_outputs(self, source: FrameSource) -> None:
        output = self.config.output
        if output.record is not None:
            fps = self.config.capture.fps or source.native_fps or 10.0
            try:
                self._recorder = Recorder(output.record, fps)
            except RecorderError as error:
                raise OutputFailed(str(error)) from error
        if output.on_detect:
            self._actions = ActionRunner(output.on_detect, frozenset(output.on_detect_classes))

    def _close_outputs(self) -> None:
        if self._actions is not None:
            self._actions.close()
        if self._recorder is not None:
            self._recorder.close()

    def _deliver(self, event: ResultEvent) -> None:
        for detection in event.detections:
            self._detections[detection.label] += 1
        if self._recorder is not None and event.frame is not None and event.frame.image is not None:
            note = f"error: {event.error[0]}" if event.error else ""
            self._recorder.write(event.frame.image, event.detections, note)
        if self._actions is not None and event.detections:
            self._actions.offer(event.to_json())
        for listener in self._listeners:
            listener(event)

    def _record_skipped(self, frame: SentFrame, reason: str) -> None:
        if self._recorder is not None and frame.image is not None:
            self._recorder.write(frame.image, [], f"skipped: {reason}")

    # -- capture thread -------------------------------------------------------

    def _capture(self, source: FrameSource) -> None:
        capture = self.config.capture
        rate = capture.fps or (None if source.is_live else source.native_fps)
        interval = 1.0 / rate if rate else 0.0
        started = time.monotonic()
        due = started
        count = 0
        try:
            while not self._stop.is_set():
                if capture.frames is not None and count >= capture.frames:
                    break
                if capture.duration is not None and time.monotonic() - started >= capture.duration:
                    break
                frame = source.read()
                if frame is None:
                    break
                now = time.monotonic()
                if source.is_live and interval and now < due:
                    continue  # a camera faster than --fps: skip reads until the next slot
                self._latest.put(frame)
                count += 1
                due = max(due + interval, now) if source.is_live else due + interval
                if not source.is_live and interval:
                    delay = due - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    elif delay < -interval:
                        due = time.monotonic()  # fell behind: do not burst to catch up
        except SourceError as error:
            self._capture_error = error
        except Exception as error:
            _LOGGER.exception("capture failed")
            self._capture_error = error
        finally:
            self._capture_done.set()
            self._notify()

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            # The loop may close between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    # -- network thread -------------------------------------------------------

    async def _network(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._latest.notify = self._notify
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

    def _went_down(self) -> None:
        self.connected = False
        self._latest.connected = False
        for frame in self._ledger.on_disconnect():
            self._record_skipped(frame, "lost")
        self.on_tick()

    def _nothing_left(self) -> bool:
        finished = self._capture_done.is_set() or self._stop.is_set()
        return finished and not self._latest.waiting and not self._ledger.in_flight

    async def _sleep(self, delay: float) -> None:
        assert self._wake is not None
        end = time.monotonic() + max(0.0, delay)
        while not self._stop.is_set() and (remaining := end - time.monotonic()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def _stream_once(self, encoder: concurrent.futures.Executor) -> None:
        stream = self.config.stream
        async with grpc.aio.insecure_channel(
            stream.server, options=channel_options(self.config.transport)
        ) as channel:
            stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
            call: StreamCall = stub.StreamFrames()  # type: ignore[call-arg]
            connected = False
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
                    self._refuse_or_retry(code, await call.details(), connected)
                if not connected:
                    raise _Retry(
                        "the server ended the stream before accepting it", was_connected=False
                    )
                if not self._nothing_left():
                    raise _Retry("the server ended the stream early", was_connected=True)
            except grpc.aio.AioRpcError as error:
                self._refuse_or_retry(error.code(), error.details(), connected)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                call.cancel()

    @staticmethod
    def _refuse_or_retry(code: grpc.StatusCode, details: str | None, connected: bool) -> None:
        """Raises StreamRefused for a permanent refusal, _Retry for anything else."""
        message = f"{code.name}: {details or 'no details'}"
        if code in PERMANENT_CODES:
            raise StreamRefused(f"the server refused the stream: {message}")
        raise _Retry(message, was_connected=connected)

    def _stream_config(self) -> ingest_service_pb2.StreamConfig:
        stream = self.config.stream
        config = ingest_service_pb2.StreamConfig(
            stream_id=stream.stream_id,
            model=stream.model,
            class_filter=stream.classes,
            max_in_flight=stream.max_in_flight,
            client_version=CLIENT_VERSION,
        )
        if stream.score_threshold is not None:
            config.score_threshold = stream.score_threshold
        return config

    def _accepted(self, accepted: ingest_service_pb2.StreamAccepted) -> None:
        self._max_in_flight = max(1, accepted.max_in_flight)
        self._max_frame_bytes = accepted.limits.max_frame_bytes
        self._report_interval = seconds(accepted.limits.report_interval) or (
            self.config.stream.report_interval
        )
        self._max_report_samples = accepted.limits.max_report_samples or 1000
        self.connected = True
        self._latest.connected = True
        if self._connections:
            self._reconnects += 1
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
                self.on_tick()
            if now > self._hint_until:
                self._send_interval = 0.0
            room = len(self._ledger.in_flight) < self._max_in_flight
            if room and self._latest.waiting and not self._stop.is_set() and now >= next_send:
                captured = self._latest.take()
                if captured is not None:
                    encoded = await loop.run_in_executor(encoder, self._encode, captured)
                    await self._send_frame(call, captured, encoded)
                    next_send = now + self._send_interval
                    continue
            wake_at = next_report
            if self._stop.is_set() and stop_deadline is not None:
                wake_at = min(wake_at, stop_deadline)
            if room and self._latest.waiting and next_send > now:
                wake_at = min(wake_at, next_send)
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
            image=encoded.image if self._recorder is not None else None,
        )
        # Booked before the write: an answer can arrive before write() returns.
        self._ledger.on_sent(sent)
        await call.write(ingest_service_pb2.StreamFramesRequest(frame=frame))

    async def _send_report(self, call: StreamCall) -> None:
        captured, replaced = self._latest.counts()
        report = self._ledger.report(captured, replaced, self._max_report_samples)
        if report is not None:
            await call.write(ingest_service_pb2.StreamFramesRequest(report=report))

    async def _receive(self, call: StreamCall) -> None:
        stream_id = self.config.stream.stream_id
        while True:
            response = await read_response(call)
            if response is None:
                return
            kind = response.WhichOneof("kind")
            if kind == "result":
                result = response.result
                answer = self._ledger.on_result(result, time.time_ns())
                self._observe(result)
                latency = None
                if answer.frame is not None:
                    latency = self._ledger.latencies[-1]
                for frame, reason in answer.skipped:
                    self._record_skipped(frame, REASON_NAMES.get(reason, "unknown"))
                if answer.unknown:
                    _LOGGER.warning("the server answered seqs not in flight: %s", answer.unknown)
                self._deliver(ResultEvent.from_result(stream_id, result, answer.frame, latency))
            elif kind == "skip_notice":
                answer = self._ledger.on_skip_notice(response.skip_notice)
                for frame, reason in answer.skipped:
                    self._record_skipped(frame, REASON_NAMES.get(reason, "unknown"))
                self._deliver(ResultEvent.from_skip_notice(stream_id, response.skip_notice))
            elif kind == "hint":
                self._follow(response.hint)
            else:
                _LOGGER.warning("unexpected %s message from the server; ignored", kind)
            self._notify()

    def _observe(self, result: ingest_service_pb2.FrameResult) -> None:
        boxes = [(d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max) for d in result.detections]
        self._compressor.observe(boxes)

    def _follow(self, hint: ingest_service_pb2.FlowHint) -> None:
        _LOGGER.info("server hint: %s", hint.reason or hint)
        if not self.config.stream.follow_hints:
            return
        if hint.HasField("target_fps") and hint.target_fps > 0:
            self._send_interval = 1.0 / hint.target_fps
            self._hint_until = time.monotonic() + HINT_LIFETIME
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


def with_options(config: AgentConfig, options: dict[str, Any]) -> AgentConfig:
    """A copy of ``config`` with options given by field name (``server=``, ``blackout=``...)."""
    if not options:
        return config
    sections = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    remaining = dict(options)
    for name, section in sections.items():
        names = {field.name for field in dataclasses.fields(section)}
        mine = {key: remaining.pop(key) for key in list(remaining) if key in names}
        if mine:
            sections[name] = dataclasses.replace(section, **mine)
    if remaining:
        raise TypeError(f"unknown agent option(s): {', '.join(sorted(remaining))}")
    return AgentConfig(**sections)


__all__ = [
    "DISCONNECTED",
    "SUPERSEDED",
    "AgentError",
    "EdgeAgent",
    "OutputFailed",
    "ServerUnreachable",
    "SourceFailed",
    "StreamRefused",
]
