"""The edge agent: capture on one thread, one gRPC stream on another, never waiting on each other.

:class:`EdgeAgent` wires the pieces together and owns what the run produces:

- capture and its pacing: :mod:`framewire.edge_agent.capture`;
- the stream and its reconnects: :mod:`framewire.edge_agent.stream`;
- the books, every frame counted once: :mod:`framewire.edge_agent.ledger`;
- how it fails, with exit codes: :mod:`framewire.edge_agent.errors`;
- outputs: the listeners, ``--record`` and ``--on-detect``, here.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from framewire.common.contract import SKIP_REASONS
from framewire.edge_agent.actions import ActionRunner, EntryWatcher
from framewire.edge_agent.capture import CaptureThread
from framewire.edge_agent.compression import Compressor
from framewire.edge_agent.config import AgentConfig, with_options
from framewire.edge_agent.errors import OutputFailed, SourceFailed
from framewire.edge_agent.ledger import LatestFrame, Ledger, SentFrame
from framewire.edge_agent.output import ResultEvent, Summary, detection_json
from framewire.edge_agent.record import Recorder, RecorderError
from framewire.edge_agent.sources import FrameSource, SourceError, open_source
from framewire.edge_agent.stream import AgentStream
from framewire.v1.ingest_service_pb2 import FlowHint

ResultCallback = Callable[[ResultEvent], None]


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
        self._latest = LatestFrame()
        self._ledger = Ledger()
        self._detections: collections.Counter[str] = collections.Counter()
        self._listeners: list[ResultCallback] = []
        # Called on the network thread about once a second and on every state
        # change, for live displays (the CLI's status line).
        self.on_tick: Callable[[], None] = lambda: None
        self._recorder: Recorder | None = None
        self._actions: ActionRunner | None = None
        # --on-enter: the newcomers' watcher, its runner, and the connection it counts for.
        self._entries: EntryWatcher | None = None
        self._enter_actions: ActionRunner | None = None
        self._entries_connection = 0
        self._stream = AgentStream(
            self.config,
            latest=self._latest,
            ledger=self._ledger,
            compressor=Compressor(self.config.compression),
            stop=self._stop,
            capture_done=self._capture_done,
            deliver=self._deliver,
            record_skipped=self._record_skipped,
            on_change=self._tick,
        )

    # -- public ---------------------------------------------------------------

    def run(self, on_result: ResultCallback | None = None) -> Summary:
        """Runs until the source ends or :meth:`stop`.

        Raises an :class:`~framewire.edge_agent.errors.AgentError` on failure.
        """
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
            capture = CaptureThread(
                source,
                config.capture,
                self._latest,
                stop=self._stop,
                done=self._capture_done,
                on_done=self._stream.notify,
            )
            capture.start()
            try:
                asyncio.run(self._stream.run(keep_images=self._recorder is not None))
            finally:
                self._stop.set()
                capture.join(timeout=5)
                # A frame still waiting now will never be sent: count it.
                self._latest.discard()
            if capture.error is not None:
                raise SourceFailed(str(capture.error)) from capture.error
        finally:
            source.close()
            self._close_outputs()
        return self.summary(time.monotonic() - started)

    def stop(self) -> None:
        """Asks the agent to finish: capture stops, frames in flight get a moment to be answered."""
        self._stop.set()
        self._stream.notify()

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
            skipped_edge={SKIP_REASONS[reason]: count for reason, count in replaced.items()},
            skipped_server={
                SKIP_REASONS.get(reason, str(reason)): count
                for reason, count in ledger.server_skipped.items()
            },
            lost=ledger.lost,
            bytes_sent=ledger.bytes_sent,
            latencies=list(ledger.latencies),
            detections=collections.Counter(self._detections),
            reconnects=self._stream.reconnects,
            actions_run=sum(runner.runs for runner in self._runners()),
            actions_dropped=sum(runner.dropped for runner in self._runners()),
            recorded=self._recorder.frames_written if self._recorder else 0,
            window_sizes=dict(self._stream.window_sizes),
            held=self._stream.held,
            held_seconds=self._stream.held_seconds,
            hints=self._stream.hints_received,
        )

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def window(self) -> int:
        """Frames the agent keeps unanswered now: adapted to what it measures, or fixed."""
        return self._stream.window

    @property
    def hold(self) -> float:
        """Seconds the next frame is held back after an answer, while frames queue at the
        server (see framewire.edge_agent.window); 0 with a fixed window."""
        return self._stream.hold

    @property
    def last_hint(self) -> tuple[float, FlowHint] | None:
        """The newest FlowHint received and when (time.monotonic), or None."""
        return self._stream.last_hint

    @property
    def connected(self) -> bool:
        """Whether a stream is up and accepted now."""
        return self._stream.connected

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
        if output.on_enter:
            self._entries = EntryWatcher(frozenset(output.on_enter_classes))
            self._enter_actions = ActionRunner(output.on_enter, frozenset())

    def _runners(self) -> list[ActionRunner]:
        return [runner for runner in (self._actions, self._enter_actions) if runner is not None]

    def _close_outputs(self) -> None:
        for runner in self._runners():
            runner.close()
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
        if self._entries is not None and self._enter_actions is not None and event.detections:
            if self._stream.reconnects != self._entries_connection:
                self._entries_connection = self._stream.reconnects
                self._entries.reset()
            entered = self._entries.entered(event.detections)
            if entered:
                self._enter_actions.offer(
                    {**event.to_json(), "entered": [detection_json(d) for d in entered]}
                )
        for listener in self._listeners:
            listener(event)

    def _tick(self) -> None:
        # Looked up on each call: the caller may set on_tick after construction.
        self.on_tick()

    def _record_skipped(self, frame: SentFrame, reason: str) -> None:
        if self._recorder is not None and frame.image is not None:
            self._recorder.write(frame.image, [], f"skipped: {reason}")


__all__ = ["EdgeAgent", "ResultCallback"]
