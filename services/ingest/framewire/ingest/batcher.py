"""The cross-stream batcher: which frames go to the model together, and where.

Each stream offers at most one frame at a time (its slot). A batch takes up
to ``max_batch_size`` of the streams with a frame waiting, those served
longest ago first (then those waiting longest): round robin in service, so a
busy stream can never take more than one place per batch and never starve a
quiet one, and a stream whose frame went stale keeps its turn for its next
frame instead of going to the back.

A batch leaves when it is full, when every open stream already has a frame
waiting (waiting longer cannot grow it), or when its oldest frame has waited
long enough: up to ``max_batch_delay`` where a fuller batch is cheaper per
image, not at all where it is not (see
:func:`~framewire.ingest.scheduling.batch_wait`). It goes to the next
inference target with room, round robin; where batching pays, a busy target
gets its next batch only shortly before it is expected to be free (see
:func:`~framewire.ingest.scheduling.pipelined_send_at`). A target that
answers UNAVAILABLE is retried once elsewhere. When no target is usable at
all, waiting frames fail at once with UNAVAILABLE rather than age silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import grpc

from framewire.common.contract import MODEL_STAGES
from framewire.common.errors import FramewireError
from framewire.common.protoutil import duration, seconds
from framewire.common.serving import log_task_failure
from framewire.ingest.config import IngestConfig
from framewire.ingest.metrics import IngestMetrics
from framewire.ingest.observer import StreamObserver
from framewire.ingest.scheduling import (
    MIN_HOLD,
    CostModel,
    PipelineLead,
    TargetLoad,
    batch_limit,
    batch_wait,
    pipelined_send_at,
    plan_batch,
    useful_in_flight,
)
from framewire.ingest.streams import PendingFrame, StreamSession, failed_result
from framewire.ingest.targets import InferenceTarget, unavailable_everywhere
from framewire.ingest.tracking import Tracking, frame_time
from framewire.v1 import common_pb2, inference_service_pb2, ingest_service_pb2

_LOGGER = logging.getLogger(__name__)


class Batcher:
    """Forms batches across streams and routes their results back."""

    def __init__(
        self,
        config: IngestConfig,
        targets: Sequence[InferenceTarget],
        metrics: IngestMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._targets = list(targets)
        self._metrics = metrics
        self._clock = clock
        # Streams with a frame in their slot.
        self._line: dict[int, StreamSession] = {}
        self._open_streams = 0
        self._wake = asyncio.Event()
        self._next_target = 0
        self._batches: set[asyncio.Task[None]] = set()
        self._hurry = False  # drain: send what is waiting without delay
        # What a batch of each size costs at each target, learned from its answers,
        # and the batches out at each.
        self._costs = {target: CostModel() for target in self._targets}
        self._loads = {target: TargetLoad() for target in self._targets}
        self._leads = {target: PipelineLead() for target in self._targets}
        self.tracking = Tracking(config.tracking)
        self.observer = StreamObserver()

    @property
    def max_batch(self) -> int:
        """The batch size limit: ingest's own, capped by the model's."""
        models = [target.model.max_batch_size for target in self._targets if target.model]
        return min([self._config.max_batch_size, *models])

    @property
    def waiting_streams(self) -> int:
        """Streams with a frame waiting for a batch."""
        return len(self._line)

    @property
    def batches_in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return len(self._batches)

    def wake(self) -> None:
        """Makes the loop look again (a target changed, a stream closed)."""
        self._wake.set()

    def stream_opened(self, session: StreamSession) -> None:
        self._open_streams += 1
        if session.settings.track:
            threshold = self.tracking.start(session.key, session.settings.score_threshold)
            session.options.score_threshold = threshold

    def stream_closed(self, session: StreamSession) -> None:
        """Forgets a stream; its frames in flight are answered into the void."""
        self._open_streams -= 1
        self._line.pop(session.key, None)
        self.tracking.stop(session.key)
        self._wake.set()

    def offer(self, session: StreamSession) -> None:
        """The stream's slot just filled: it joins the end of the line."""
        self._line[session.key] = session
        self._wake.set()

    def hurry(self) -> None:
        """Stop waiting to fill batches: the server is draining."""
        self._hurry = True
        self._wake.set()

    async def run(self) -> None:
        """The batching loop; runs until cancelled."""
        while True:
            self._wake.clear()
            timeout = self._step()
            if timeout is None:
                await self._wake.wait()
            elif timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    async def wait_idle(self) -> None:
        """Waits until no batch is in flight."""
        while self._batches:
            await asyncio.wait(set(self._batches))

    def _step(self) -> float | None:
        """Dispatches what can go now; returns how long to wait (None: until woken)."""
        while self._line:
            if not any(target.usable for target in self._targets):
                self._fail_waiting(unavailable_everywhere())
                return None
            now = self._clock()
            target, timed, held_until = self._pick_target(now)
            if target is None:
                # Every usable target is full (a finishing batch wakes us) or is to get
                # its next batch only shortly before it frees.
                return None if held_until is None else held_until - now
            oldest = min(session.slot_since for session in self._line.values())
            ready_at = oldest + batch_wait(
                len(self._line),
                self._costs[target],
                max_delay=self._config.max_batch_delay,
                max_batch=self.max_batch,
                reports_queue=self._leads[target].reports_queue,
            )
            full = len(self._line) >= self.max_batch or len(self._line) >= self._open_streams
            if not (full or self._hurry or now >= ready_at):
                return ready_at - now
            batch = self._take(target, now)
            if batch:
                self._dispatch(target, batch, timed)
        return None

    def _slots(self, target: InferenceTarget) -> int:
        """The batches worth having in flight at ``target`` (see ``useful_in_flight``): never
        more than the model says it runs at once, since more would wait in its queue, where
        a newer frame can no longer replace them."""
        capacity = target.capacity
        if target.model is not None and target.model.concurrent_batches > 0:
            capacity = min(capacity, target.model.concurrent_batches)
        return useful_in_flight(capacity, self._costs[target], self.max_batch)

    def _pick_target(self, now: float) -> tuple[InferenceTarget | None, bool, float | None]:
        """The next target, round robin, with a batch slot free and no reason to wait, and
        whether its batch's departure is the lead's business (:func:`pipelined_send_at`:
        another batch is out there and batching pays); else None and the earliest time a
        held batch is due, if any."""
        count = len(self._targets)
        held_until: float | None = None
        for offset in range(count):
            target = self._targets[(self._next_target + offset) % count]
            if not target.usable or self._loads[target].count >= self._slots(target):
                continue
            lead = self._leads[target]
            send_at = pipelined_send_at(
                self._loads[target], self._costs[target], self.max_batch, lead.share
            )
            if (
                send_at is not None
                and lead.reports_queue
                and not self._hurry
                and send_at - now >= MIN_HOLD
            ):
                held_until = send_at if held_until is None else min(held_until, send_at)
                continue
            self._next_target = (self._next_target + offset + 1) % count
            return target, send_at is not None, None
        return None, False, held_until

    def _take(self, target: InferenceTarget, now: float) -> list[PendingFrame]:
        """Takes the next batch for ``target``, skipping frames that cannot make their budget."""
        turns: list[tuple[StreamSession, PendingFrame]] = []
        for session in sorted(self._line.values(), key=lambda s: (s.last_served, s.slot_since)):
            if session.slot is None:  # emptied meanwhile (the stream ended)
                del self._line[session.key]
            else:
                turns.append((session, session.slot))
        cost = self._costs[target]
        slots = sum(self._slots(candidate) for candidate in self._targets if candidate.usable)
        plan = plan_batch(
            [now - pending.received_at for _, pending in turns],
            cost,
            budget=self._config.max_frame_age,
            max_batch=batch_limit(len(turns), slots, cost, self.max_batch),
        )
        for index in plan.skip:
            session = turns[index][0]
            del self._line[session.key]
            session.skip_slot()
        batch: list[PendingFrame] = []
        for index in plan.send:
            session, pending = turns[index]
            del self._line[session.key]
            session.take_slot()
            session.last_served = now
            batch.append(pending)
        return batch

    def _fail_waiting(self, error: FramewireError) -> None:
        now = self._clock()
        while self._line:
            _, session = self._line.popitem()
            pending = session.take(now, self._config.max_frame_age)
            if pending is not None:
                session.complete(pending.seq, failed_result(pending.frame, error))

    def _dispatch(self, target: InferenceTarget, batch: list[PendingFrame], timed: bool) -> None:
        """Sends ``batch``; ``timed``: the lead decided when (how long it then waits at the
        model tells whether the lead is right)."""
        load = self._loads[target]
        token = load.sent(self._clock(), len(batch))
        task = asyncio.create_task(
            self._run_batch(target, token, batch, timed), name=f"batch to {target.name}"
        )
        self._batches.add(task)
        self._metrics.batch_size.observe(len(batch))

        def finished(done: asyncio.Task[None]) -> None:
            if load.is_out(token):  # it never reached the call (cancelled or failed before)
                load.ended(token, self._clock())
            self._batches.discard(done)
            log_task_failure(done)
            self._wake.set()

        task.add_done_callback(finished)

    async def _run_batch(
        self, target: InferenceTarget, token: int, batch: list[PendingFrame], timed: bool
    ) -> None:
        dispatched = self._clock()
        request = inference_service_pb2.DetectRequest()
        for pending in batch:
            frame = pending.frame
            image = request.images.add(
                encoding=frame.encoding, data=frame.data, width=frame.width, height=frame.height
            )
            image.options.CopyFrom(pending.session.options)
        try:
            response, answered_by, wall, used = await self._detect(target, token, request)
            # The batches beside it, on average over its run (itself included): its
            # wall time over the target time it used (TargetLoad).
            cost = self._costs[answered_by]
            cost.observe(len(batch), wall, concurrency=max(1.0, wall / used) if used > 0 else 1.0)
            if response.results:
                # How long it waited for the model, once there: the lead's feedback.
                timings = response.results[0].timings
                queued = seconds(timings.queue) if timings.HasField("queue") else None
                self._leads[answered_by].answered(
                    queued, cost.share(len(batch)), timed=timed and answered_by is target
                )
        except FramewireError as error:
            response = None
            failure = error
        except Exception as error:  # a bug must fail the frames, not lose them
            _LOGGER.exception("batch to %s failed unexpectedly", target.name)
            response = None
            failure = FramewireError(
                grpc.StatusCode.INTERNAL, f"ingest failed to run the batch: {error!r}"
            )
        if response is not None and len(response.results) != len(batch):
            failure = FramewireError(
                grpc.StatusCode.INTERNAL,
                f"inference returned {len(response.results)} results for {len(batch)} images",
            )
            response = None
        done = self._clock()
        for index, pending in enumerate(batch):
            session = pending.session
            # A stream that closed meanwhile still has its frame counted; the
            # answer just has nobody to go to.
            if response is None:
                result = failed_result(pending.frame, failure)
            else:
                result = self._frame_result(
                    pending, response.results[index], response.model_id, len(batch)
                )
            timings = result.timings
            # Queue: waiting at ingest, plus waiting at the model for another batch.
            model_queue = seconds(timings.queue) if timings.HasField("queue") else 0.0
            queue = dispatched - pending.received_at + model_queue
            total = done - pending.received_at
            timings.queue.CopyFrom(duration(queue))
            timings.total.CopyFrom(duration(total))
            if not result.HasField("error"):
                self._observe(timings, queue, total)
                self.tracking.apply(
                    session.key, frame_time(pending.frame, pending.received_at), result
                )
                self.observer.frame_processed(session, pending.frame, result)
            session.complete(pending.seq, result)

    async def _detect(
        self, target: InferenceTarget, token: int, request: inference_service_pb2.DetectRequest
    ) -> tuple[inference_service_pb2.DetectResponse, InferenceTarget, float, float]:
        """Runs the batch sent as ``token``, once more elsewhere if the target is
        unavailable; returns the answer, who gave it, and the wall and target time
        (:class:`TargetLoad`) of the call that answered."""
        try:
            return await self._call(target, token, request)
        except FramewireError as error:
            retry = self._retry_target(target, error)
            if retry is None:
                raise
            _LOGGER.info("batch to %s failed (%s); retrying on %s", target.name, error, retry.name)
            token = self._loads[retry].sent(self._clock(), len(request.images))
            return await self._call(retry, token, request)

    async def _call(
        self, target: InferenceTarget, token: int, request: inference_service_pb2.DetectRequest
    ) -> tuple[inference_service_pb2.DetectResponse, InferenceTarget, float, float]:
        """One call to ``target`` for the batch sent as ``token``, which ends with it."""
        load = self._loads[target]
        sent = load.sent_at(token)
        try:
            response = await target.detect(request)
        except FramewireError:
            self._metrics.target_batches.labels(target=target.name, outcome="failed").inc()
            raise
        finally:
            now = self._clock()
            used = load.ended(token, now)
        self._metrics.target_batches.labels(target=target.name, outcome="ok").inc()
        return response, target, now - sent, used

    def _retry_target(
        self, failed: InferenceTarget, error: FramewireError
    ) -> InferenceTarget | None:
        if error.code not in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ):
            return None
        others = [target for target in self._targets if target is not failed and target.usable]
        return min(others, key=lambda target: self._loads[target].count, default=None)

    def _frame_result(
        self,
        pending: PendingFrame,
        image: inference_service_pb2.ImageResult,
        model_id: str,
        batch_size: int,
    ) -> ingest_service_pb2.FrameResult:
        frame = pending.frame
        # The model's timings as it reported them: a stage it did not run stays unset
        # (StageTimings), rather than becoming a zero here. Queue and total are set after.
        result = ingest_service_pb2.FrameResult(
            seq=pending.seq,
            detections=image.detections,
            batch_size=batch_size,
            model_id=model_id,
            timings=image.timings,
        )
        if frame.HasField("capture_time"):
            result.capture_time.CopyFrom(frame.capture_time)
        if image.HasField("error"):
            result.error.CopyFrom(image.error)
        return result

    def _observe(self, timings: common_pb2.StageTimings, queue: float, total: float) -> None:
        stage = self._metrics.stage
        stage["queue"].observe(queue)
        for name in MODEL_STAGES:
            # The names are StageTimings' own fields (read from its descriptor).
            if timings.HasField(name):  # type: ignore[arg-type]
                stage[name].observe(seconds(getattr(timings, name)))
        stage["total"].observe(total)
