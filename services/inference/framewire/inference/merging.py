"""Detect calls waiting for a batch slot, and several of them run as one model batch.

Several ingest processes can share one inference server (ingest replicas, or the
workers of ``serve --workers``). Each forms its batches from its own streams, so
without help a GPU, where a batch of 32 costs little more than a batch of 8, runs
their small batches one after another. Here a call that finds one of the engine's
``concurrent_batches`` slots free runs at once, as it is; calls that arrive while
every slot is busy wait, in order, and when a slot frees, the waiting calls run
together as one model batch of up to ``max_batch`` images (when merging is on; see
:func:`take_calls`). No call is ever held back for a fuller batch: merging only
uses time a call would have waited anyway.

Each call still gets exactly its own images' results, in order, and the time it
waited here is added to its images' ``timings.queue`` and ``timings.total``, so
that ingest sees how long its batch waited for the model (the feedback its
pipelining lead learns from). A call that is cancelled while it waits is dropped
before it costs model time.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import grpc

from framewire.common.errors import FramewireError
from framewire.common.protoutil import duration, seconds
from framewire.v1 import inference_service_pb2

_LOGGER = logging.getLogger(__name__)

DetectRequest = inference_service_pb2.DetectRequest
DetectResponse = inference_service_pb2.DetectResponse


@dataclass(eq=False)
class WaitingCall:
    """One Detect call between its arrival and its answer."""

    request: DetectRequest
    future: asyncio.Future[DetectResponse]
    arrived: float  # clock seconds
    # Whether every slot was busy when it arrived; a call that ran at once reports no wait.
    queued: bool

    @property
    def size(self) -> int:
        return len(self.request.images)


def take_calls(
    waiting: collections.deque[WaitingCall], max_images: int, merge: bool
) -> list[WaitingCall]:
    """Removes from ``waiting`` the calls the next model batch answers, oldest first.

    Calls whose caller gave up meanwhile are dropped. The first live call is
    always taken. With ``merge``, the calls after it follow, in order, while
    their images together fit in ``max_images``; the first that does not fit
    waits for the next batch, so a large call is never overtaken for long. A
    call outside 1..``max_images`` images always runs alone, so that the
    engine refuses it, and it alone, with its own error.
    """
    taken: list[WaitingCall] = []
    images = 0
    while waiting:
        call = waiting[0]
        if call.future.done():  # cancelled while it waited
            waiting.popleft()
            continue
        valid = 1 <= call.size <= max_images
        if taken and (not merge or not valid or images + call.size > max_images):
            break
        waiting.popleft()
        taken.append(call)
        images += call.size
        if not valid or not merge:
            break
    return taken


def merge_requests(requests: Sequence[DetectRequest]) -> DetectRequest:
    """One request with every image of ``requests``, in order."""
    if len(requests) == 1:
        return requests[0]
    merged = DetectRequest()
    for request in requests:
        merged.images.extend(request.images)
    return merged


def split_response(
    response: DetectResponse, sizes: Sequence[int], waited: Sequence[float]
) -> list[DetectResponse]:
    """The answer to each of the merged calls: its own results, with the seconds it
    waited before the batch started added to their queue and total times."""
    if len(response.results) != sum(sizes):
        raise FramewireError(
            grpc.StatusCode.INTERNAL,
            f"the engine returned {len(response.results)} results for {sum(sizes)} images",
        )
    answers = []
    start = 0
    for size, wait in zip(sizes, waited, strict=True):
        if len(sizes) == 1:
            answer = response
        else:
            answer = DetectResponse(
                model_id=response.model_id, results=response.results[start : start + size]
            )
        if wait > 0:
            for result in answer.results:
                timings = result.timings
                timings.queue.CopyFrom(duration(seconds(timings.queue) + wait))
                timings.total.CopyFrom(duration(seconds(timings.total) + wait))
        answers.append(answer)
        start += size
    return answers


class CallQueue:
    """Runs Detect calls on ``slots`` batch slots; see the module docstring.

    ``run`` answers one (possibly merged) request on an ``executor`` thread.
    ``max_waiting`` calls may wait for a slot; more are refused with
    RESOURCE_EXHAUSTED. ``on_merged(n)`` counts the calls answered by a batch
    shared with others.
    """

    def __init__(
        self,
        run: Callable[[DetectRequest], DetectResponse],
        executor: Executor,
        *,
        slots: int,
        max_waiting: int,
        max_images: int,
        merge: bool,
        on_merged: Callable[[int], None] = lambda calls: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.merge = merge
        self._run_batch = run
        self._executor = executor
        self._slots = slots
        self._max_waiting = max_waiting
        self._max_images = max_images
        self._on_merged = on_merged
        self._clock = clock
        self._waiting: collections.deque[WaitingCall] = collections.deque()
        self._running: dict[asyncio.Task[None], list[WaitingCall]] = {}

    def batches_worth_sending(self, at_once: int) -> int:
        """What a client is told to keep in flight (GetModelInfo.concurrent_batches), given
        the batches the engine runs or prepares ``at_once``: where calls merge, one more.
        A client's next batch then waits here, where it joins the batches that other
        clients sent meanwhile, rather than at the client, where it can join nothing."""
        return at_once + 1 if self.merge else at_once

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return len(self._waiting)

    @property
    def calls(self) -> int:
        """Calls running or waiting."""
        return len(self._waiting) + sum(len(calls) for calls in self._running.values())

    async def detect(self, request: DetectRequest) -> DetectResponse:
        """Answers ``request``; raises :class:`FramewireError` when its batch failed."""
        if len(self._running) >= self._slots and len(self._waiting) >= self._max_waiting:
            raise FramewireError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server is busy: {self.calls} Detect calls are running or waiting; "
                "retry later or on another replica",
            )
        future: asyncio.Future[DetectResponse] = asyncio.get_running_loop().create_future()
        queued = len(self._running) >= self._slots
        self._waiting.append(WaitingCall(request, future, self._clock(), queued))
        self._start()
        return await future

    def _start(self) -> None:
        while len(self._running) < self._slots and self._waiting:
            calls = take_calls(self._waiting, self._max_images, self.merge)
            if not calls:
                return
            task = asyncio.create_task(self._run(calls), name="detect batch")
            self._running[task] = calls
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        calls = self._running.pop(task)
        if not task.cancelled() and task.exception() is not None:
            # _run answers every call itself; this is a bug, and must not leave a caller hanging.
            _LOGGER.error("a Detect batch failed", exc_info=task.exception())
        for call in calls:
            if not call.future.done():
                call.future.set_exception(
                    FramewireError(grpc.StatusCode.INTERNAL, "the server failed to run the batch")
                )
        self._start()

    async def _run(self, calls: list[WaitingCall]) -> None:
        started = self._clock()
        if len(calls) > 1:
            self._on_merged(len(calls))
        requests = [call.request for call in calls]
        loop = asyncio.get_running_loop()
        try:
            # Merged on the executor thread: copying megabytes of JPEGs would stall the loop.
            response = await loop.run_in_executor(
                self._executor, lambda: self._run_batch(merge_requests(requests))
            )
            answers = split_response(
                response,
                [call.size for call in calls],
                [started - call.arrived if call.queued else 0.0 for call in calls],
            )
        except FramewireError as error:
            self._fail(calls, error)
            return
        except Exception as error:
            _LOGGER.exception("Detect failed")
            self._fail(calls, FramewireError(grpc.StatusCode.INTERNAL, f"internal error: {error}"))
            return
        for call, answer in zip(calls, answers, strict=True):
            if not call.future.done():
                call.future.set_result(answer)

    @staticmethod
    def _fail(calls: list[WaitingCall], error: FramewireError) -> None:
        for call in calls:
            if not call.future.done():
                call.future.set_exception(error)
