"""Split deployment: `framewire ingest` in front of two `framewire inference` replicas.

Replicas are real subprocesses on fixed ports, killed and restarted there; the
stream from the "device" goes on throughout.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import grpc
import pytest

from framewire.common.transport import TransportConfig
from framewire.ingest.config import IngestConfig
from framewire.ingest.server import IngestServer, start_ingest_server
from framewire.ingest.targets import RemoteTarget
from framewire.v1 import ingest_service_pb2
from tests.harness import (
    Process,
    ServerThread,
    framewire_command,
    free_port,
    health_status,
    metric_value,
    scrape,
    wait_until,
)
from tests.ingest.conftest import LOCAL
from tests.streaming import SyncStream, config_request, frame_request, vtest_jpegs

pytestmark = pytest.mark.slow

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


class Replica:
    """One `framewire inference` process on a fixed port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: Process | None = None

    def start(self) -> None:
        self.process = Process(
            framewire_command(
                "inference", "--host", "127.0.0.1", "--port", str(self.port), "--metrics-port", "-1"
            )
        )
        self.process.wait_for_line(r"InferenceService serving on", timeout=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.signal(signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    pair = [Replica(free_port()), Replica(free_port())]
    try:
        for replica in pair:
            replica.start()
        yield pair
    finally:
        for replica in pair:
            replica.close()


@pytest.fixture
def ingest(replicas: list[Replica]) -> Iterator[ServerThread[IngestServer]]:
    transport = TransportConfig()

    async def start() -> IngestServer:
        targets = [
            RemoteTarget(f"127.0.0.1:{replica.port}", 2, transport, timeout=10.0)
            for replica in replicas
        ]
        return await start_ingest_server(IngestConfig(), LOCAL, transport, targets)

    server = ServerThread(start)
    yield server
    server.stop()


class LockStep:
    """A device stream sending one frame at a time and reading its answer."""

    def __init__(self, port: int) -> None:
        self.stream = SyncStream(port)
        self.stream.send(config_request("split-cam"))
        assert self.stream.read().HasField("accepted")
        self.seq = 0

    def frames(self, count: int) -> list[ingest_service_pb2.FrameResult]:
        results = []
        jpegs = vtest_jpegs()
        for _ in range(count):
            self.seq += 1
            self.stream.send(frame_request(self.seq, jpegs[self.seq % len(jpegs)]))
            response = self.stream.read()
            assert response.HasField("result"), response
            assert response.result.seq == self.seq
            results.append(response.result)
        return results


def batches_ok(server: ServerThread[IngestServer], replica: Replica) -> float:
    text = scrape(server.server.metrics_port)
    return metric_value(
        text, "framewire_target_batches_total", target=f"127.0.0.1:{replica.port}", outcome="ok"
    )


def usable_targets(server: ServerThread[IngestServer]) -> float:
    return metric_value(scrape(server.server.metrics_port), "framewire_inference_targets_usable")


def test_frames_keep_flowing_while_replicas_go_and_come_back(
    replicas: list[Replica], ingest: ServerThread[IngestServer]
) -> None:
    port = ingest.server.port
    wait_until(lambda: usable_targets(ingest) == 2, 30, "both replicas to be usable")
    assert health_status(port) == "SERVING"
    device = LockStep(port)
    try:
        # Both replicas take batches (round robin).
        results = device.frames(10)
        assert all(not r.HasField("error") for r in results)
        assert all(any(d.label == "person" for d in r.detections) for r in results)
        assert batches_ok(ingest, replicas[0]) > 0
        assert batches_ok(ingest, replicas[1]) > 0

        # One replica dies mid-stream: frames keep flowing through the other.
        replicas[0].kill()
        results = device.frames(15)
        assert [r.error.message for r in results if r.HasField("error")] == []
        wait_until(lambda: usable_targets(ingest) == 1, 10, "the dead replica to be noticed")
        assert health_status(port) == "SERVING"

        # It comes back on the same port: both are used again.
        replicas[0].start()
        wait_until(lambda: usable_targets(ingest) == 2, 30, "the restarted replica to be usable")
        before = batches_ok(ingest, replicas[0])
        results = device.frames(10)
        assert all(not r.HasField("error") for r in results)
        assert batches_ok(ingest, replicas[0]) > before

        # With no replica at all, frames fail with UNAVAILABLE (never silence)
        # and health says NOT_SERVING...
        replicas[0].kill()
        replicas[1].kill()
        wait_until(lambda: usable_targets(ingest) == 0, 10, "both replicas to be noticed down")
        wait_until(lambda: health_status(port) == "NOT_SERVING", 5, "NOT_SERVING")
        results = device.frames(3)
        assert [r.error.code for r in results] == [UNAVAILABLE] * 3
        assert "no inference replica is available" in results[0].error.message

        # ...until one is back, when serving resumes by itself.
        replicas[1].start()
        wait_until(lambda: health_status(port) == "SERVING", 30, "SERVING again")
        results = device.frames(3)
        assert all(not r.HasField("error") for r in results)
    finally:
        device.stream.close()


def test_a_dns_target_spreads_over_the_addresses_a_name_resolves_to() -> None:
    # dns:/// is how ingest finds replicas behind a headless Kubernetes Service.
    from framewire.common.serving import ListenConfig
    from framewire.inference import EngineConfig, InferenceServerConfig
    from framewire.inference.server import InferenceServer, start_inference_server

    inference_config = InferenceServerConfig(
        engine=EngineConfig(), listen=ListenConfig(host="127.0.0.1", port=0, metrics_port=-1)
    )
    replica: ServerThread[InferenceServer] = ServerThread(
        lambda: start_inference_server(inference_config)
    )
    transport = TransportConfig()
    target = f"dns:///localhost:{replica.server.port}"

    async def start() -> IngestServer:
        remote = RemoteTarget(target, 2, transport, timeout=10.0)
        return await start_ingest_server(IngestConfig(), LOCAL, transport, [remote])

    ingest = ServerThread(start)
    try:
        wait_until(lambda: health_status(ingest.server.port) == "SERVING", 30, "SERVING")
        device = LockStep(ingest.server.port)
        try:
            results = device.frames(4)
        finally:
            device.stream.close()
        assert all(any(d.label == "person" for d in r.detections) for r in results)
        text = scrape(ingest.server.metrics_port)
        assert metric_value(text, "framewire_target_batches_total", target=target) == 4
    finally:
        ingest.stop()
        replica.stop()
