"""The real batcher against in-process targets: how many batches it keeps in flight at a
target, and the timings its results carry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from framewire.common.protoutil import duration, timestamp_from_ns
from framewire.ingest.batcher import Batcher
from framewire.ingest.config import IngestConfig
from framewire.ingest.metrics import IngestMetrics
from framewire.ingest.scheduling import PIPELINE_LEAD
from framewire.ingest.streams import StreamSession, StreamSettings
from framewire.ingest.targets import InferenceTarget, ModelDescription
from framewire.v1 import common_pb2, inference_service_pb2, ingest_service_pb2


class CpuLikeTarget(InferenceTarget):
    """Each image costs the same whatever the batch (batching saves nothing); records how many
    batches it ran at once."""

    def __init__(self, capacity: int, concurrent_batches: int) -> None:
        super().__init__("cpu-like", capacity)
        self.model = ModelDescription(
            model_id="cpu-like@0",
            labels=("thing",),
            default_score_threshold=0.5,
            max_batch_size=8,
            concurrent_batches=concurrent_batches,
        )
        self.running = 0
        self.most_at_once = 0

    async def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._set_usable(True)

    async def detect(
        self, request: inference_service_pb2.DetectRequest
    ) -> inference_service_pb2.DetectResponse:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            timings = await self.run(len(request.images))
        finally:
            self.running -= 1
        response = inference_service_pb2.DetectResponse(model_id=f"{self.name}@0")
        for _ in request.images:
            response.results.add(timings=timings)
        return response

    async def run(self, images: int) -> common_pb2.StageTimings:
        """The model's work on a batch of ``images``; the timings it reports (none here)."""
        await asyncio.sleep(0.01 * images)
        return common_pb2.StageTimings()

    async def close(self) -> None:
        self._set_usable(False)


class GpuLikeTarget(CpuLikeTarget):
    """One batch at a time, each costing a fixed 20 ms plus 0.5 ms per image, after
    ``preparing`` seconds of its own (the network, decoding); reports how long each batch
    waited for the device, as the InferenceService does."""

    def __init__(self, preparing: float = 0.0) -> None:
        super().__init__(capacity=4, concurrent_batches=4)
        self.name = "gpu-like"
        self.model = ModelDescription(
            model_id="gpu-like@0",
            labels=("thing",),
            default_score_threshold=0.5,
            max_batch_size=64,
            concurrent_batches=4,
        )
        self._device = asyncio.Lock()
        self._preparing = preparing
        self.batches = 0

    async def run(self, images: int) -> common_pb2.StageTimings:
        await asyncio.sleep(self._preparing)
        ready = time.perf_counter()
        async with self._device:
            queued = time.perf_counter() - ready
            await asyncio.sleep(0.020 + 0.0005 * images)
            self.batches += 1
        return common_pb2.StageTimings(queue=duration(queued))


def frame(seq: int) -> ingest_service_pb2.Frame:
    return ingest_service_pb2.Frame(
        seq=seq,
        capture_time=timestamp_from_ns(time.time_ns()),
        encoding=common_pb2.ENCODING_JPEG,
        width=8,
        height=8,
        data=b"\xff\xd8 not decoded by this target",
    )


async def most_batches_at_once(target: CpuLikeTarget, streams: int = 8) -> int:
    """Runs twenty frames per stream through a real Batcher; every one must be answered."""
    config = IngestConfig(batches_in_flight=target.capacity)
    batcher = Batcher(config, [target], IngestMetrics(CollectorRegistry()))
    await target.start(batcher.wake)
    sessions = [
        StreamSession(key, StreamSettings(f"s{key}", 0.5, (), 1, "test")) for key in range(streams)
    ]
    answered = asyncio.Event()
    for session in sessions:
        session.wake_writer = answered.set  # called whenever the session has an answer to write
        batcher.stream_opened(session)
    running = asyncio.create_task(batcher.run())
    try:
        for seq in range(1, 21):  # twenty frames per stream, each after the last was answered
            for session in sessions:
                if session.accept(frame(seq), time.monotonic()):
                    batcher.offer(session)
            while any(session.waiting for session in sessions):
                answered.clear()
                await asyncio.wait_for(answered.wait(), 5.0)
            for session in sessions:
                session.outbox.clear()
    finally:
        running.cancel()
    assert all(session.received == 20 for session in sessions)
    return target.most_at_once


def test_where_batching_saves_little_every_slot_runs() -> None:
    target = CpuLikeTarget(capacity=4, concurrent_batches=4)
    assert asyncio.run(most_batches_at_once(target)) == 4


def test_no_more_batches_in_flight_than_the_model_runs_at_once() -> None:
    # More would wait in the model's queue, where a newer frame can no longer replace them.
    target = CpuLikeTarget(capacity=4, concurrent_batches=2)
    assert asyncio.run(most_batches_at_once(target)) == 2


async def streams_on_their_own(
    target: InferenceTarget, streams: int, frames: int, max_batch: int = 64
) -> Batcher:
    """Each stream sends its next frame as soon as its last is answered, as agents do."""
    config = IngestConfig(max_batch_size=max_batch)
    batcher = Batcher(config, [target], IngestMetrics(CollectorRegistry()))
    await target.start(batcher.wake)
    running = asyncio.create_task(batcher.run())

    async def one(key: int) -> None:
        session = StreamSession(key, StreamSettings(f"s{key}", 0.5, (), 1, "test"))
        answered = asyncio.Event()
        session.wake_writer = answered.set
        batcher.stream_opened(session)
        for seq in range(1, frames + 1):
            if session.accept(frame(seq), time.monotonic()):
                batcher.offer(session)
            while session.waiting:
                answered.clear()
                await asyncio.wait_for(answered.wait(), 5.0)
            session.outbox.clear()
        assert session.received == frames
        batcher.stream_closed(session)

    try:
        await asyncio.gather(*(one(key) for key in range(streams)))
    finally:
        running.cancel()
    return batcher


def test_where_batching_pays_batches_are_held_and_every_frame_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second batch is held until shortly before the first ends (pipelined_send_at), and
    # every frame is still answered (streams_on_their_own waits at most 5 s for each). That
    # a hold ends on its own timer, before the batch ahead finishes, the next test shows:
    # held batches that waited at the device are what shrink the lead.
    original = Batcher._pick_target
    holds: list[float] = []

    def counted(self: Batcher, now: float) -> tuple[InferenceTarget | None, bool, float | None]:
        picked = original(self, now)
        if picked[2] is not None:  # nothing to send now: a batch is held until then
            holds.append(picked[2])
        return picked

    monkeypatch.setattr(Batcher, "_pick_target", counted)
    target = GpuLikeTarget()
    asyncio.run(streams_on_their_own(target, streams=16, frames=15))
    assert holds, "no batch was ever held"


def test_held_batches_leave_earlier_where_they_take_long_to_reach_the_model() -> None:
    # Two batches of 8 out of 16 streams take turns at the device. With 15 ms between a
    # batch leaving and reaching the device (the network, decoding), against a lead of a
    # quarter of a ~30 ms batch, held batches came after the device had gone idle (no
    # queue there) and the lead grew; with none, they waited and it shrank.
    slow = GpuLikeTarget(preparing=0.015)
    slow_lead = asyncio.run(streams_on_their_own(slow, 16, 30, max_batch=8))._leads[slow]
    quick = GpuLikeTarget()
    quick_lead = asyncio.run(streams_on_their_own(quick, 16, 30, max_batch=8))._leads[quick]
    assert slow_lead.share > PIPELINE_LEAD > quick_lead.share


class InferenceOnlyTarget(CpuLikeTarget):
    """Reports only the model's run time, as an engine that decodes nothing would."""

    async def run(self, images: int) -> common_pb2.StageTimings:
        await asyncio.sleep(0.002)
        return common_pb2.StageTimings(inference=duration(0.002))


def test_a_result_leaves_unset_the_stages_the_model_did_not_run() -> None:
    # StageTimings: a stage that did not run is unset, not zero. Ingest adds its queue and
    # total, and its stage histograms count only the stages that ran.
    registry = CollectorRegistry()

    async def run() -> list[ingest_service_pb2.StreamFramesResponse]:
        target = InferenceOnlyTarget(capacity=1, concurrent_batches=1)
        batcher = Batcher(IngestConfig(), [target], IngestMetrics(registry))
        await target.start(batcher.wake)
        session = StreamSession(1, StreamSettings("s1", 0.5, (), 1, "test"))
        answered = asyncio.Event()
        session.wake_writer = answered.set
        batcher.stream_opened(session)
        running = asyncio.create_task(batcher.run())
        try:
            for seq in (1, 2):
                assert session.accept(frame(seq), time.monotonic())
                batcher.offer(session)
                while session.waiting:
                    answered.clear()
                    await asyncio.wait_for(answered.wait(), 5.0)
        finally:
            running.cancel()
        return list(session.outbox)

    responses = asyncio.run(run())
    assert [response.result.seq for response in responses] == [1, 2]
    for response in responses:
        timings = response.result.timings
        assert not response.result.HasField("error")
        for stage in ("queue", "inference", "total"):
            assert timings.HasField(stage), stage
        for stage in ("decode", "preprocess", "postprocess"):
            assert not timings.HasField(stage), stage
        assert timings.total.ToNanoseconds() >= timings.inference.ToNanoseconds() > 0

    def observed(stage: str) -> float | None:
        return registry.get_sample_value("framewire_stage_latency_seconds_count", {"stage": stage})

    assert observed("inference") == observed("total") == 2
    assert observed("decode") == observed("postprocess") == 0
