"""Detect calls that wait for a batch slot run together as one model batch (--merge-calls)."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import grpc
import pytest

from framewire.common.errors import FramewireError
from framewire.common.protoutil import duration, seconds
from framewire.inference.config import InferenceServerConfig
from framewire.inference.merging import (
    CallQueue,
    WaitingCall,
    merge_requests,
    split_response,
    take_calls,
)
from framewire.v1 import inference_service_pb2
from tests.inference.conftest import (
    HeldModel,
    RunningServer,
    engine_config,
    jpeg_image,
    model_path,
    server_config,
)
from tests.inference.conftest import synthetic_jpeg as jpeg

DetectRequest = inference_service_pb2.DetectRequest
DetectResponse = inference_service_pb2.DetectResponse


def request(*names: int) -> DetectRequest:
    """A request whose images are told apart by their width."""
    return DetectRequest(
        images=[inference_service_pb2.Image(data=b"x", width=name, height=1)
                for name in names]
    )  # fmt: skip


def waiting(*sizes: int) -> collections.deque[WaitingCall]:
    loop = asyncio.new_event_loop()
    try:
        return collections.deque(
            WaitingCall(request(*range(size)), loop.create_future(), 0.0, True) for size in sizes
        )
    finally:
        loop.close()


def sizes(calls: list[WaitingCall]) -> list[int]:
    return [call.size for call in calls]


# -- which calls share a batch (pure) ----------------------------------------


def test_waiting_calls_merge_in_order_while_they_fit() -> None:
    queue = waiting(2, 3, 2, 1)
    assert sizes(take_calls(queue, 6, merge=True)) == [2, 3]  # 2 + 3 + 2 > 6: the 2 waits
    assert sizes(take_calls(queue, 6, merge=True)) == [2, 1]
    assert not queue


def test_without_merging_each_call_runs_alone() -> None:
    queue = waiting(2, 3)
    assert sizes(take_calls(queue, 8, merge=False)) == [2]
    assert sizes(take_calls(queue, 8, merge=False)) == [3]


def test_a_call_the_engine_will_refuse_runs_alone() -> None:
    # Too many images, or none: merged, its error would fail the calls beside it.
    queue = waiting(1, 9, 1, 0, 1)
    assert sizes(take_calls(queue, 8, merge=True)) == [1]
    assert sizes(take_calls(queue, 8, merge=True)) == [9]
    assert sizes(take_calls(queue, 8, merge=True)) == [1]
    assert sizes(take_calls(queue, 8, merge=True)) == [0]
    assert sizes(take_calls(queue, 8, merge=True)) == [1]


def test_calls_given_up_while_waiting_cost_nothing() -> None:
    queue = waiting(1, 2, 3)
    queue[0].future.cancel()
    queue[2].future.cancel()
    assert sizes(take_calls(queue, 8, merge=True)) == [2]
    assert take_calls(queue, 8, merge=True) == []


def test_each_call_gets_its_own_results_and_its_wait() -> None:
    merged = merge_requests([request(1, 2), request(3)])
    assert [image.width for image in merged.images] == [1, 2, 3]
    response = DetectResponse(model_id="m")
    for image in merged.images:
        result = response.results.add(width=image.width)
        result.timings.queue.CopyFrom(duration(0.001))
        result.timings.total.CopyFrom(duration(0.010))
    first, second = split_response(response, [2, 1], [0.0, 0.004])
    assert [r.width for r in first.results] == [1, 2]
    assert [r.width for r in second.results] == [3]
    assert first.model_id == second.model_id == "m"
    assert seconds(first.results[0].timings.queue) == pytest.approx(0.001)
    assert seconds(second.results[0].timings.queue) == pytest.approx(0.005)
    assert seconds(second.results[0].timings.total) == pytest.approx(0.014)


def test_a_wrong_number_of_results_is_an_internal_error() -> None:
    with pytest.raises(FramewireError) as error:
        split_response(
            DetectResponse(results=[inference_service_pb2.ImageResult()]), [1, 1], [0.0, 0.0]
        )
    assert error.value.code == grpc.StatusCode.INTERNAL


def test_a_single_call_is_sent_as_it_is() -> None:
    alone = request(1)
    assert merge_requests([alone]) is alone


# -- the queue, with a real executor ---------------------------------------------


class GatedModel:
    """Answers one result per image (its width), once the test lets each batch through."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.inside = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)
        self.fail_with: Exception | None = None

    def __call__(self, batch: DetectRequest) -> DetectResponse:
        self.batches.append([image.width for image in batch.images])
        self.inside.release()
        if not self.gate.acquire(timeout=30):
            raise TimeoutError("the test never let the batch through")
        if self.fail_with is not None:
            raise self.fail_with
        response = DetectResponse(model_id="gated")
        for image in batch.images:
            response.results.add(width=image.width)
        return response


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


async def until_inside(model: GatedModel) -> None:
    assert await asyncio.to_thread(model.inside.acquire, timeout=30), "no batch reached the model"


def calls_queue(model: GatedModel, executor: ThreadPoolExecutor, **options: Any) -> CallQueue:
    settings: dict[str, Any] = {"slots": 1, "max_waiting": 8, "max_images": 8, "merge": True}
    settings.update(options)
    return CallQueue(model, executor, **settings)


def test_calls_that_waited_for_the_slot_run_as_one_batch(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    merged: list[int] = []

    async def scenario() -> list[DetectResponse]:
        queue = calls_queue(model, executor, on_merged=merged.append)
        first = asyncio.ensure_future(queue.detect(request(1)))
        await until_inside(model)
        later = [asyncio.ensure_future(queue.detect(request(*names)))
                 for names in ((2, 3), (4,), (5, 6))]  # fmt: skip
        await asyncio.sleep(0.05)  # they wait: the one slot is busy
        assert queue.calls == 4
        model.gate.release()
        await until_inside(model)
        model.gate.release()
        return list(await asyncio.gather(first, *later))

    answers = asyncio.run(scenario())
    assert model.batches == [[1], [2, 3, 4, 5, 6]]
    assert merged == [3]
    assert [[r.width for r in answer.results] for answer in answers] == [[1], [2, 3], [4], [5, 6]]
    # The first ran at once and reports no wait; the others waited for it.
    assert not answers[0].results[0].timings.HasField("queue")
    assert all(seconds(answer.results[0].timings.queue) >= 0.04 for answer in answers[1:])


def test_without_merging_waiting_calls_run_one_by_one(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()

    async def scenario() -> None:
        queue = calls_queue(model, executor, merge=False)
        calls = [asyncio.ensure_future(queue.detect(request(n))) for n in (1, 2, 3)]
        for _ in calls:
            await until_inside(model)
            model.gate.release()
        await asyncio.gather(*calls)

    asyncio.run(scenario())
    assert model.batches == [[1], [2], [3]]


def test_a_failed_merged_batch_fails_each_of_its_calls(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()

    async def scenario() -> list[Any]:
        queue = calls_queue(model, executor)
        first = asyncio.ensure_future(queue.detect(request(1)))
        await until_inside(model)
        later = [asyncio.ensure_future(queue.detect(request(n))) for n in (2, 3)]
        await asyncio.sleep(0.05)
        model.gate.release()
        await first
        await until_inside(model)
        model.fail_with = FramewireError(grpc.StatusCode.UNAVAILABLE, "shut down")
        model.gate.release()
        return list(await asyncio.gather(*later, return_exceptions=True))

    outcomes = asyncio.run(scenario())
    assert [type(outcome) for outcome in outcomes] == [FramewireError, FramewireError]
    assert all(outcome.code == grpc.StatusCode.UNAVAILABLE for outcome in outcomes)


def test_a_bug_in_the_model_fails_the_calls_with_internal(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    model.fail_with = RuntimeError("boom")

    async def scenario() -> Any:
        queue = calls_queue(model, executor)
        call = asyncio.ensure_future(queue.detect(request(1)))
        await until_inside(model)
        model.gate.release()
        return (await asyncio.gather(call, return_exceptions=True))[0]

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, FramewireError)
    assert outcome.code == grpc.StatusCode.INTERNAL
    assert "boom" in outcome.message


def test_a_cancelled_call_never_reaches_the_model(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()

    async def scenario() -> None:
        queue = calls_queue(model, executor)
        first = asyncio.ensure_future(queue.detect(request(1)))
        await until_inside(model)
        gone = asyncio.ensure_future(queue.detect(request(2)))
        kept = asyncio.ensure_future(queue.detect(request(3)))
        await asyncio.sleep(0.01)
        gone.cancel()
        model.gate.release()
        await until_inside(model)
        model.gate.release()
        await asyncio.gather(first, kept)

    asyncio.run(scenario())
    assert model.batches == [[1], [3]]


def test_calls_beyond_the_queue_are_refused(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()

    async def scenario() -> FramewireError:
        queue = calls_queue(model, executor, max_waiting=1)
        first = asyncio.ensure_future(queue.detect(request(1)))
        await until_inside(model)
        second = asyncio.ensure_future(queue.detect(request(2)))
        await asyncio.sleep(0.01)
        with pytest.raises(FramewireError) as refused:
            await queue.detect(request(3))
        model.gate.release()
        await until_inside(model)
        model.gate.release()
        await asyncio.gather(first, second)
        return refused.value

    error = asyncio.run(scenario())
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "busy: 2 Detect calls" in error.message


# -- the real server -----------------------------------------------------------------


def test_the_server_merges_waiting_calls_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    config: InferenceServerConfig = server_config(
        engine_config(backend="null", concurrent_batches=1, max_batch=8), metrics_port=-1
    )
    with RunningServer(replace(config, merge_calls="always")) as server:
        engine = server.server.engine
        # One batch at a time, and one more worth sending: it waits here, and merges.
        info = server.stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest())
        assert info.concurrent_batches == 2
        image = jpeg_image(jpeg(64, 48))
        calls = server.server.servicer.calls
        assert calls is not None
        with HeldModel(engine, monkeypatch) as model:
            first = server.stub.Detect.future(DetectRequest(images=[image]), timeout=60)
            model.wait_inside()
            later = [server.stub.Detect.future(DetectRequest(images=[image] * n), timeout=60)
                     for n in (1, 2, 3)]  # fmt: skip
            while calls.calls < 4:  # all three are waiting for the slot
                threading.Event().wait(0.01)
            waiting = engine.registry.get_sample_value("framewire_inference_calls_waiting")
        assert waiting == 3
        answers = [call.result() for call in later]
        assert len(first.result().results) == 1
    assert model.sizes == [1, 6]
    assert [len(answer.results) for answer in answers] == [1, 2, 3]
    assert engine.metrics.merged_calls._value.get() == 3
    assert all(answer.results[0].timings.HasField("queue") for answer in answers)


def test_auto_merges_only_where_a_bigger_batch_is_cheaper_per_image() -> None:
    config = server_config(engine_config(backend="null"), metrics_port=-1)
    with RunningServer(config) as server:
        engine = server.server.engine
        assert server.server.servicer.calls is not None
        assert not server.server.servicer.calls.merge  # no model, on a CPU
        assert engine.merges_calls("always")
        assert not engine.merges_calls("never")
        assert not engine.backend.batching_pays
        info = server.stub.GetModelInfo(inference_service_pb2.GetModelInfoRequest())
        assert info.concurrent_batches == engine.batches_at_once == 2


def test_a_cpu_model_does_not_merge_by_default() -> None:
    from framewire.inference.engine import Engine

    engine = Engine.load(engine_config(model=model_path("ssd_mobilenet_v2_coco.onnx")))
    try:
        assert engine.backend.name == "onnxruntime"
        assert not engine.backend.batching_pays  # CPUExecutionProvider only
        assert not engine.merges_calls("auto")
    finally:
        engine.close()


def test_merge_calls_must_be_a_known_mode() -> None:
    with pytest.raises(ValueError, match="merge_calls must be one of auto, always, never"):
        InferenceServerConfig(merge_calls="sometimes")
