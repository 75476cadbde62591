"""A device frozen mid-stream (SIGSTOP) loses its stream within the keepalive settings.

A frozen process keeps its socket: the kernel still acknowledges TCP, so only
an unanswered HTTP/2 ping reveals that nobody is there. The server's
``--keepalive-time`` and ``--keepalive-timeout`` must be what decides, not a
timeout buried in gRPC (which was 60 s).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from framewire.common.transport import TransportConfig, channel_options
from framewire.v1 import ingest_service_pb2, ingest_service_pb2_grpc
from tests.harness import Process, framewire_command, free_port, running
from tests.streaming import config_request

pytestmark = pytest.mark.slow

KEEPALIVE_TIME = 1.0
KEEPALIVE_TIMEOUT = 1.0
# Time for the ping timer to come round, the kernel and a loaded 2-core
# machine; far below the 60 s that decided before.
MARGIN = 6.0

# The device: opens a stream, sends its config and one frame, says so, then
# waits for ever (the test freezes it with SIGSTOP). Its channel sends no
# keepalive pings of its own, so only the server's pings are in play.
_FROZEN_CLIENT = """
import sys, time
import cv2, grpc, numpy as np
from framewire.common.protoutil import timestamp_from_ns
from framewire.v1 import common_pb2, ingest_service_pb2 as pb, ingest_service_pb2_grpc

port = sys.argv[1]
jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
requests = [
    pb.StreamFramesRequest(config=pb.StreamConfig(stream_id="frozen-cam", client_version="t/1")),
    pb.StreamFramesRequest(frame=pb.Frame(
        seq=1, capture_time=timestamp_from_ns(time.time_ns()),
        encoding=common_pb2.ENCODING_JPEG, width=64, height=48, data=jpeg)),
]

def send():
    yield from requests
    time.sleep(3600)

channel = grpc.insecure_channel(f"127.0.0.1:{port}")
call = ingest_service_pb2_grpc.IngestServiceStub(channel).StreamFrames(send())
kinds = []
for response in call:
    kinds.append(response.WhichOneof("kind"))
    if "result" in kinds:
        print("streaming", kinds, flush=True)
        break
time.sleep(3600)
"""


def serve_command(port: int) -> list[str]:
    return framewire_command(
        "serve",
        "--backend",
        "null",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        "-1",
        "--keepalive-time",
        f"{KEEPALIVE_TIME}s",
        "--keepalive-timeout",
        f"{KEEPALIVE_TIMEOUT}s",
    )


def test_a_frozen_client_is_released_within_keepalive_time_plus_timeout() -> None:
    port = free_port()
    with running(Process(serve_command(port))) as server:
        server.wait_for_line(r"IngestService serving on", timeout=60)
        with running(Process([sys.executable, "-c", _FROZEN_CLIENT, str(port)])) as client:
            client.wait_for_line(r"^streaming .*'result'", timeout=60)
            server.wait_for_line(r"stream frozen-cam opened", timeout=5)
            os.kill(client.process.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                server.wait_for_line(
                    r"stream frozen-cam closed", timeout=KEEPALIVE_TIME + KEEPALIVE_TIMEOUT + MARGIN
                )
                released = time.monotonic() - frozen
            finally:
                # A stopped process ignores SIGKILL's exit until it runs again; the
                # kill is delivered either way, and CONT lets it die at once.
                os.kill(client.process.pid, signal.SIGKILL)
                os.kill(client.process.pid, signal.SIGCONT)
        closed = [line for line in server.output if re.search("stream frozen-cam closed", line)]
        assert len(closed) == 1
        assert "received 1" in closed[0]
        assert released < KEEPALIVE_TIME + KEEPALIVE_TIMEOUT + MARGIN


def test_a_client_notices_a_frozen_server_within_its_keepalive_settings() -> None:
    # The other direction, with the agent's channel options: a server that
    # stopped answering ends the call with UNAVAILABLE, so the agent reconnects.
    port = free_port()
    transport = TransportConfig(keepalive_time=KEEPALIVE_TIME, keepalive_timeout=KEEPALIVE_TIMEOUT)
    with running(Process(serve_command(port))) as server:
        server.wait_for_line(r"IngestService serving on", timeout=60)
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=channel_options(transport)
        ) as channel:
            stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
            # The request side stays open, as an agent's does: a client that half-closed
            # with nothing in flight would let the server end the call OK on its own,
            # before the freeze (seen once in CI).
            done = threading.Event()

            def requests() -> Iterator[ingest_service_pb2.StreamFramesRequest]:
                yield config_request("frozen-server")
                done.wait()

            call = stub.StreamFrames(requests(), timeout=60)
            assert next(call).HasField("accepted")
            os.kill(server.process.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                with pytest.raises(grpc.RpcError) as raised:
                    next(call)
                noticed = time.monotonic() - frozen
            finally:
                done.set()
                os.kill(server.process.pid, signal.SIGKILL)
                os.kill(server.process.pid, signal.SIGCONT)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert noticed < KEEPALIVE_TIME + KEEPALIVE_TIMEOUT + MARGIN
