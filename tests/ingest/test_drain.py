"""Graceful shutdown: NOT_SERVING, no new streams, in-flight frames answered, then UNAVAILABLE."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import pytest

from framewire.ingest.serve_command import start_serve
from tests.harness import (
    Process,
    ServerThread,
    framewire_command,
    free_port,
    health_status,
    metric_value,
    running,
    scrape,
    wait_until,
)
from tests.ingest.conftest import serve_config
from tests.streaming import SyncStream, config_request, frame_request, vtest_jpegs

pytestmark = pytest.mark.slow


def answers_then_status(stream: SyncStream) -> tuple[list[int], grpc.StatusCode, str]:
    """Seqs answered (results and skips) until the call ended, and how it ended."""
    answered: list[int] = []
    try:
        for response in stream.call:
            if response.HasField("result"):
                answered.append(response.result.seq)
                answered += [entry.seq for entry in response.result.skipped]
            elif response.HasField("skip_notice"):
                answered += [entry.seq for entry in response.skip_notice.skipped]
    except grpc.RpcError as error:
        return sorted(answered), error.code(), error.details()  # type: ignore[attr-defined]
    return sorted(answered), grpc.StatusCode.OK, ""


def frames_received(metrics_port: int | None) -> float:
    """What the server counted as read from its streams."""
    assert metrics_port is not None
    return metric_value(scrape(metrics_port), "framewire_frames_received_total")


def test_stop_answers_every_received_frame_then_ends_streams_unavailable() -> None:
    server = ServerThread(lambda: start_serve(serve_config(max_frame_age=10.0)))
    port = server.server.port
    stream = SyncStream(port)
    try:
        stream.send(config_request("draining", max_in_flight=4))
        assert stream.read().HasField("accepted")
        for seq, jpeg in enumerate(vtest_jpegs()[:4], start=1):
            stream.send(frame_request(seq, jpeg))
        wait_until(lambda: frames_received(server.server.metrics_port) == 4, 30, "4 frames read")

        stopping = threading.Thread(target=server.stop, kwargs={"grace": 20.0})
        started = time.monotonic()
        stopping.start()
        wait_until(lambda: server.server.hub.draining, 5, "the drain to begin")
        assert health_status(port) in ("NOT_SERVING", "UNAVAILABLE")
        late = SyncStream(port)
        try:
            late.send(config_request("too-late"))
            assert late.error().code() == grpc.StatusCode.UNAVAILABLE
        finally:
            late.close()

        answered, code, details = answers_then_status(stream)
        stopping.join(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        stream.close()
    assert answered == [1, 2, 3, 4]
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in details
    assert not stopping.is_alive()
    assert elapsed < 20.0


def test_sigterm_drains_and_exits_cleanly() -> None:
    port, metrics_port = free_port(), free_port()
    command = framewire_command(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(metrics_port),
        "--shutdown-grace",
        "15s",
        "--max-frame-age",
        "10s",
    )
    with running(Process(command)) as server:
        server.wait_for_line(r"IngestService serving on", timeout=60)
        stream = SyncStream(port)
        try:
            stream.send(config_request("sigterm", max_in_flight=3))
            assert stream.read().HasField("accepted")
            for seq, jpeg in enumerate(vtest_jpegs()[:3], start=1):
                stream.send(frame_request(seq, jpeg))
            wait_until(lambda: frames_received(metrics_port) == 3, 30, "3 frames read")
            server.signal(signal.SIGTERM)
            answered, code, details = answers_then_status(stream)
        finally:
            stream.close()
        assert answered == [1, 2, 3]
        assert code == grpc.StatusCode.UNAVAILABLE
        assert "reconnect" in details
        assert server.wait(timeout=20) == 0
        server.wait_for_line(r"draining streams for up to 15s", timeout=1)
        server.wait_for_line(r"stopped", timeout=1)
