"""Soak: minutes of mixed good and hostile traffic leave no file descriptors behind,
keep memory bounded, and keep the books balanced.

CI runs it briefly (FRAMEWIRE_SOAK_SECONDS, default 20); run it for long with
``FRAMEWIRE_SOAK_SECONDS=900 ./scripts/test.sh tests/ingest/test_soak.py -s``,
which prints the figures.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from framewire.common.protoutil import duration
from framewire.v1 import common_pb2, ingest_service_pb2, ingest_service_pb2_grpc
from tests.harness import Process, framewire_command, metric_value, scrape, wait_until
from tests.streaming import Jpeg, SyncStream, config_request, frame_request

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("FRAMEWIRE_SOAK_SECONDS", "20"))
CLIENTS = 4


def process_figures(pid: int) -> tuple[int, int]:
    """Open file descriptors and resident memory (bytes) of a process, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return fds, int(match[1]) * 1024


def jpeg(seed: int) -> Jpeg:
    image = np.random.default_rng(seed).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    return Jpeg(cv2.imencode(".jpg", image)[1].tobytes(), 160, 120)


GOOD = [jpeg(seed) for seed in range(4)]
# A header that declares 4000x4000 pixels in a few hundred bytes.
BOMB = Jpeg(
    GOOD[0].data.replace(b"\x00\x78\x00\xa0", b"\x0f\xa0\x0f\xa0", 1), width=4000, height=4000
)


def good_stream(port: int, rng: random.Random) -> str:
    stream = SyncStream(port)
    try:
        stream.send(config_request(f"good-{rng.randrange(1000)}"))
        assert stream.read().HasField("accepted")
        for seq in range(1, rng.randrange(3, 12)):
            stream.send(frame_request(seq, rng.choice(GOOD)))
            while not stream.read().HasField("result"):
                pass
        stream.send(
            ingest_service_pb2.StreamFramesRequest(
                report=ingest_service_pb2.AgentReport(
                    frames_sent=1, end_to_end_latencies=[duration(0.02)], results_received=1
                )
            )
        )
        stream.close_input()
        stream.read_all()
        return "good"
    finally:
        stream.close()


def bad_frames(port: int, rng: random.Random) -> str:
    stream = SyncStream(port)
    try:
        stream.send(config_request("bad-frames"))
        stream.send(frame_request(1, Jpeg(b"\xff\xd8 not really a jpeg", 160, 120)))
        stream.send(frame_request(2, BOMB))
        stream.send(frame_request(3, GOOD[0], encoding=common_pb2.ENCODING_UNSPECIFIED))
        return f"bad-frames {stream.error().code().name}"
    finally:
        stream.close()


def lying_reports(port: int, rng: random.Random) -> str:
    stream = SyncStream(port)
    try:
        stream.send(config_request("liar"))
        huge = 2**64 - 1
        for _ in range(50):
            stream.send(
                ingest_service_pb2.StreamFramesRequest(
                    report=ingest_service_pb2.AgentReport(
                        frames_captured=huge,
                        end_to_end_latencies=[duration(0.01)] * 1000,
                    )
                )
            )
        stream.close_input()
        stream.read_all()
        return "liar"
    finally:
        stream.close()


def never_configured(port: int, rng: random.Random) -> str:
    stream = SyncStream(port)
    time.sleep(rng.uniform(0.0, 0.2))  # hold the call open without a config, then vanish
    stream.close()
    return "no-config"


def deaf(port: int, rng: random.Random) -> str:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def requests() -> Iterator[ingest_service_pb2.StreamFramesRequest]:
        yield config_request("deaf")
        for seq in range(1, 500):
            yield frame_request(seq, GOOD[seq % 4])

    call = ingest_service_pb2_grpc.IngestServiceStub(channel).StreamFrames(requests())
    try:
        time.sleep(rng.uniform(0.2, 0.6))
    finally:
        call.cancel()
        channel.close()
    return "deaf"


def vanishing(port: int, rng: random.Random) -> str:
    stream = SyncStream(port)
    stream.send(config_request("vanishing"))
    for seq in range(1, 3):
        stream.send(frame_request(seq, GOOD[seq]))
    stream.call.cancel()  # mid-stream, frames in flight
    stream.close()
    return "vanishing"


KINDS: list[Callable[[int, random.Random], str]] = [
    good_stream,
    good_stream,
    bad_frames,
    lying_reports,
    never_configured,
    deaf,
    vanishing,
]


def traffic(port: int, seconds: float, seed: int, counts: Counter[str]) -> None:
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts[rng.choice(KINDS)(port, rng)] += 1


@pytest.mark.timeout(max(300, int(2 * SECONDS) + 120))
def test_mixed_good_and_hostile_traffic_leaves_no_leaks() -> None:
    server = Process(
        framewire_command(
            "serve",
            "--backend",
            "null",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            "0",
            "--max-unread-results",
            "30",
            "--config-timeout",
            "1s",
        )
    )
    try:
        ready = server.wait_for_line(r"serving on [^ ]+:(\d+) \(metrics on port (\d+)", 60)
        port, metrics_port = int(ready[1]), int(ready[2])
        pid = server.process.pid

        def settled() -> bool:
            return metric_value(scrape(metrics_port), "framewire_open_calls") == 0

        # Warm up every path once, then take the baseline.
        counts: Counter[str] = Counter()
        traffic(port, 2.0, seed=0, counts=counts)
        wait_until(settled, 30, "warm-up calls closed")
        fds_start, rss_start = process_figures(pid)

        samples: list[tuple[float, int, int]] = []
        workers = [
            threading.Thread(target=traffic, args=(port, SECONDS, seed, counts), daemon=True)
            for seed in range(1, CLIENTS + 1)
        ]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            time.sleep(min(5.0, SECONDS / 4))
            samples.append((time.monotonic() - started, *process_figures(pid)))
        for worker in workers:
            worker.join()
        wait_until(settled, 30, "every call closed")
        fds_end, rss_end = process_figures(pid)

        text = scrape(metrics_port)
        received = metric_value(text, "framewire_frames_received_total")
        answered = (
            metric_value(text, "framewire_frames_processed_total")
            + metric_value(text, "framewire_frames_failed_total")
            + metric_value(text, "framewire_frames_skipped_total")
        )
        peak_rss = max(rss for _, _, rss in samples) if samples else rss_end
        print(
            f"\nsoak: {SECONDS:.0f}s, {CLIENTS} clients, calls {dict(counts)}\n"
            f"  frames received {received:.0f}, answered {answered:.0f}\n"
            f"  fds {fds_start} -> {fds_end}; RSS {rss_start / 2**20:.1f} MiB -> "
            f"{rss_end / 2**20:.1f} MiB (peak {peak_rss / 2**20:.1f} MiB)"
        )
        assert sum(counts.values()) > CLIENTS
        assert received == answered
        assert metric_value(text, "framewire_edge_frames_captured_total") == 0  # lies refused
        assert fds_end <= fds_start + 2
        assert rss_end - rss_start < 64 * 2**20
        # Memory does not keep climbing: the second half of the run grows little.
        if len(samples) >= 4:
            half = len(samples) // 2
            assert samples[-1][2] - samples[half][2] < 32 * 2**20
    finally:
        server.kill()
