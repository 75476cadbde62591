"""Inference targets: a health watch that fails is seen, and never leaves a target frozen."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framewire.common.serving import AsyncHealthServicer
from framewire.common.transport import TransportConfig
from framewire.ingest.targets import INFERENCE_SERVICE, RemoteTarget
from framewire.v1 import inference_service_pb2, inference_service_pb2_grpc


class _Model(inference_service_pb2_grpc.InferenceServiceServicer):
    async def GetModelInfo(self, request, context):  # noqa: N802 - the contract's name
        return inference_service_pb2.GetModelInfoResponse(
            model_id="m@1", labels=["person"], max_batch_size=1
        )


async def _replica() -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(_Model(), server)
    health = AsyncHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    await health.set(INFERENCE_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def test_a_failure_inside_the_health_watch_is_logged_and_the_watch_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> bool:
        server, port = await _replica()
        target = RemoteTarget(f"127.0.0.1:{port}", 1, TransportConfig(), timeout=5.0)
        calls = 0
        usable = asyncio.Event()

        def on_change() -> None:
            # The first notification fails, as a bug in a listener would.
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("listener bug")
            if target.usable:
                usable.set()

        try:
            await target.start(on_change)
            await asyncio.wait_for(usable.wait(), 10)
            return target.usable
        finally:
            await target.close()
            await server.stop(None)

    with caplog.at_level(logging.ERROR, logger="framewire.ingest.targets"):
        assert asyncio.run(scenario())
    failures = [r for r in caplog.records if "health watch failed" in r.getMessage()]
    assert failures
    assert failures[0].exc_info is not None
    assert "listener bug" in str(failures[0].exc_info[1])


def test_a_watch_that_dies_marks_the_target_unusable(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[bool, bool]:
        server, port = await _replica()
        target = RemoteTarget(f"127.0.0.1:{port}", 1, TransportConfig(), timeout=5.0)
        up = asyncio.Event()
        try:
            await target.start(lambda: up.set() if target.usable else None)
            await asyncio.wait_for(up.wait(), 10)
            before = target.usable
            # A task can only end by an error the loop did not catch: simulate that.
            watch = target._watch
            assert watch is not None
            dead: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            dead.set_exception(RuntimeError("watch crashed"))
            task = asyncio.ensure_future(dead)
            await asyncio.gather(task, return_exceptions=True)
            target._watch_ended(task)  # type: ignore[arg-type]
            return before, target.usable
        finally:
            await target.close()
            await server.stop(None)

    with caplog.at_level(logging.ERROR, logger="framewire.ingest.targets"):
        before, after = asyncio.run(scenario())
    assert before
    assert not after
    assert any("health watch stopped" in r.getMessage() for r in caplog.records)
