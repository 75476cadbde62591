"""Several streams offering far more frames than the model can take.

The server must stay real-time: every frame accounted for, frames skipped
rather than queued, no frame kept past the age limit, and a quiet stream never
starved by busy ones. How fair the sharing is, how latency holds up over the
run and how large the batches grow depend on the machine: `python -m bench
ingest` prints them for this same load, against their goals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from framewire.common.protoutil import seconds
from framewire.ingest.server import IngestServer
from framewire.v1 import ingest_service_pb2, ingest_service_pb2_grpc
from tests.harness import ServerThread, metric_value, scrape
from tests.ingest.conftest import serve_config
from tests.streaming import config_request, frame_request, vtest_jpegs

pytestmark = pytest.mark.slow

MAX_FRAME_AGE = 0.4


@dataclass
class StreamLog:
    stream_id: str
    sent: list[int] = field(default_factory=list)
    results: dict[int, ingest_service_pb2.FrameResult] = field(default_factory=dict)
    result_times: list[float] = field(default_factory=list)  # monotonic, when each result arrived
    skipped: dict[int, int] = field(default_factory=dict)  # seq -> reason
    status: grpc.StatusCode | None = None


async def offer(port: int, stream_id: str, fps: float, duration: float) -> StreamLog:
    """Sends frames at ``fps`` for ``duration`` seconds (as fast as the server lets it)."""
    log = StreamLog(stream_id)
    jpegs = vtest_jpegs()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = ingest_service_pb2_grpc.IngestServiceStub(channel).StreamFrames()
        await call.write(config_request(stream_id, max_in_flight=8))
        accepted = await call.read()
        assert accepted.HasField("accepted")

        async def write() -> None:
            started = time.monotonic()
            seq = 0
            while time.monotonic() - started < duration:
                seq += 1
                await call.write(frame_request(seq, jpegs[seq % len(jpegs)]))
                log.sent.append(seq)
                await asyncio.sleep(max(0.0, started + seq / fps - time.monotonic()))
            await call.done_writing()

        async def read() -> None:
            while (response := await call.read()) is not grpc.aio.EOF:
                kind = response.WhichOneof("kind")
                skipped = []
                if kind == "result":
                    log.results[response.result.seq] = response.result
                    log.result_times.append(time.monotonic())
                    skipped = response.result.skipped
                elif kind == "skip_notice":
                    skipped = response.skip_notice.skipped
                for entry in skipped:
                    assert entry.seq not in log.skipped, f"seq {entry.seq} skipped twice"
                    log.skipped[entry.seq] = entry.reason

        await asyncio.gather(write(), read())
        log.status = await call.code()
    return log


async def offer_all(port: int, plan: list[tuple[str, float]], duration: float) -> list[StreamLog]:
    return list(await asyncio.gather(*(offer(port, name, fps, duration) for name, fps in plan)))


@pytest.fixture(scope="module")
def overloaded() -> Iterator[ServerThread[IngestServer]]:
    from framewire.ingest.serve_command import start_serve

    server = ServerThread(
        lambda: start_serve(
            serve_config(max_batch_size=4, max_frame_age=MAX_FRAME_AGE, max_in_flight_cap=8)
        )
    )
    yield server
    server.stop()


def test_overload_keeps_accounting_exact_skips_and_serves_every_stream(
    overloaded: ServerThread[IngestServer],
) -> None:
    port = overloaded.server.port
    before = scrape(overloaded.server.metrics_port)
    plan = [("busy-1", 25.0), ("busy-2", 25.0), ("busy-3", 25.0), ("quiet", 2.0)]
    logs = asyncio.run(offer_all(port, plan, duration=8.0))

    for log in logs:
        assert log.status == grpc.StatusCode.OK, log.stream_id
        # Every frame sent was answered exactly once: a result or a listed skip.
        assert set(log.results).isdisjoint(log.skipped), log.stream_id
        assert sorted([*log.results, *log.skipped]) == log.sent, log.stream_id
        # Results came in seq order.
        assert list(log.results) == sorted(log.results), log.stream_id

    busy = [log for log in logs if log.stream_id.startswith("busy")]
    quiet = next(log for log in logs if log.stream_id == "quiet")
    offered = sum(len(log.sent) for log in busy)
    processed = sum(len(log.results) for log in busy)
    assert processed < offered, f"not an overload: all {offered} frames processed"
    reasons = {reason for log in busy for reason in log.skipped.values()}
    assert ingest_service_pb2.SKIP_REASON_SUPERSEDED in reasons

    # No frame waited at ingest past the maximum age (its queue time adds at
    # most one batch's wait at the model).
    longest_batch = max(
        seconds(result.timings.inference) for log in busy for result in log.results.values()
    )
    for log in busy:
        queue = [seconds(result.timings.queue) for result in log.results.values()]
        assert max(queue) <= MAX_FRAME_AGE + longest_batch + 0.05, (log.stream_id, max(queue))

    # Every stream is served, the quiet one too.
    assert all(log.results for log in busy), [len(log.results) for log in busy]
    assert quiet.results, f"the quiet stream got none of its {len(quiet.sent)} frames"

    # The server's own books agree: received = processed + failed + skipped.
    after = scrape(overloaded.server.metrics_port)

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    received = delta("framewire_frames_received_total")
    assert received == sum(len(log.sent) for log in logs)
    assert received == (
        delta("framewire_frames_processed_total")
        + delta("framewire_frames_failed_total")
        + delta("framewire_frames_skipped_total")
    )
    assert delta("framewire_frames_skipped_total", reason="superseded") > 0
    assert delta("framewire_batch_size_count") > 0
