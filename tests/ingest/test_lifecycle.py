"""Clients that cancel or vanish release everything: no leaked tasks, sessions or memory."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Iterator

import grpc
import pytest

from framewire.ingest.serve_command import start_serve
from framewire.ingest.server import IngestServer
from framewire.v1 import ingest_service_pb2_grpc
from tests.harness import ServerThread, metric_value, scrape, wait_until
from tests.ingest.conftest import serve_config
from tests.streaming import config_request, frame_request, vtest_jpegs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread[IngestServer]]:
    running = ServerThread(lambda: start_serve(serve_config(max_in_flight_cap=8)))
    yield running
    running.stop()


async def cycle(port: int, style: int) -> None:
    """One stream that ends in one of the ways real clients end."""
    jpegs = vtest_jpegs()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = ingest_service_pb2_grpc.IngestServiceStub(channel).StreamFrames()
    try:
        if style == 0:  # refused: a frame before the config
            await call.write(frame_request(1, jpegs[0]))
            assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
            return
        await call.write(config_request(f"cycle-{style}", max_in_flight=4))
        await call.read()
        if style == 1:  # vanishes with frames in flight: the connection just closes
            for seq in range(1, 5):
                await call.write(frame_request(seq, jpegs[seq]))
            await channel.close(None)
        elif style == 2:  # cancels the call after one answer
            await call.write(frame_request(1, jpegs[1]))
            await call.write(frame_request(2, jpegs[2]))
            await call.read()
            call.cancel()
        else:  # half-closes properly and reads to the end
            await call.write(frame_request(1, jpegs[3]))
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                pass
            assert await call.code() == grpc.StatusCode.OK
    finally:
        await channel.close(None)


async def cycles(port: int, count: int) -> None:
    for index in range(count):
        await cycle(port, index % 4)


def server_tasks(server: ServerThread[IngestServer]) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks())

    return server.loop.run(count())


def settled(server: ServerThread[IngestServer]) -> bool:
    hub = server.server.hub
    text = scrape(server.server.metrics_port)
    return (
        hub.open_streams == 0
        and hub.batcher.batches_in_flight == 0
        and metric_value(text, "framewire_active_streams") == 0
        and metric_value(text, "framewire_queue_depth") == 0
    )


def rss_mib() -> float:
    # ru_maxrss is the peak, in KiB on Linux: growth of the peak is growth.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_many_connects_and_disconnects_leave_nothing_behind(
    server: ServerThread[IngestServer],
) -> None:
    port = server.server.port
    asyncio.run(cycles(port, 8))  # warm up: caches, thread pools, first batches
    wait_until(lambda: settled(server), 30, "the server to settle after warm-up")
    tasks_before = server_tasks(server)
    rounds = []
    for _ in range(3):
        asyncio.run(cycles(port, 60))
        wait_until(lambda: settled(server), 30, "every stream to be released")
        rounds.append(rss_mib())
    assert server_tasks(server) == tasks_before
    assert rounds[-1] - rounds[0] < 15, f"peak memory grew across rounds: {rounds} MiB"
    text = scrape(server.server.metrics_port)
    received = metric_value(text, "framewire_frames_received_total")
    assert received == (
        metric_value(text, "framewire_frames_processed_total")
        + metric_value(text, "framewire_frames_failed_total")
        + metric_value(text, "framewire_frames_skipped_total")
        # Frames of vanished clients still in a batch when the client left are
        # processed into the void; they are counted as processed.
    )
