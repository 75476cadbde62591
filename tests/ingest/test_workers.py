"""--workers N: several ingest processes on one port, one /metrics for the group, one drain."""

from __future__ import annotations

import re
import signal

import cv2
import numpy as np
import pytest

from framewire.ingest.workers import crowded_cores, merge_expositions
from tests.harness import (
    Process,
    framewire_command,
    health_status,
    metric_value,
    scrape,
    wait_until,
)
from tests.streaming import Jpeg, SyncStream, config_request, frame_request

pytestmark = pytest.mark.slow

WORKER_A = """# HELP framewire_frames_received_total Frames received from agents.
# TYPE framewire_frames_received_total counter
framewire_frames_received_total 3.0
framewire_frames_received_created 1.7e9
# HELP framewire_active_streams Streams open now.
# TYPE framewire_active_streams gauge
framewire_active_streams 2.0
# HELP framewire_inference_targets_usable Inference targets that are reachable and serving.
# TYPE framewire_inference_targets_usable gauge
framewire_inference_targets_usable 1.0
# HELP framewire_batch_size Frames per batch sent to a model.
# TYPE framewire_batch_size histogram
framewire_batch_size_bucket{le="1.0"} 2.0
framewire_batch_size_bucket{le="+Inf"} 3.0
framewire_batch_size_count 3.0
framewire_batch_size_sum 4.0
"""
WORKER_B = WORKER_A.replace("received_total 3.0", "received_total 5.0").replace(
    "active_streams 2.0", "active_streams 1.0"
)


def test_expositions_merge_into_group_totals() -> None:
    merged = {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in merge_expositions([WORKER_A, WORKER_B])
        for sample in family.samples
    }
    assert merged["framewire_frames_received_total[]"] == 8.0
    assert merged["framewire_active_streams[]"] == 3.0
    assert merged["framewire_inference_targets_usable[]"] == 1.0  # the same fact twice
    assert merged["framewire_batch_size_bucket[('le', '1.0')]"] == 4.0
    assert merged["framewire_batch_size_count[]"] == 6.0
    assert not any("created" in name for name in merged)


def small_jpeg() -> Jpeg:
    image = np.random.default_rng(3).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    return Jpeg(cv2.imencode(".jpg", image)[1].tobytes(), 128, 96)


def test_serve_with_two_workers_shares_the_port_counts_once_and_drains() -> None:
    arguments = "serve --backend null --workers 2 --host 127.0.0.1 --port 0 --metrics-port 0"
    process = Process(framewire_command(*arguments.split()))
    try:
        ready = process.wait_for_line(
            r"IngestService serving on [^ ]+:(\d+) \(metrics on port (\d+); 2 workers", 120
        )
        port, metrics_port = int(ready[1]), int(ready[2])
        # Each worker serves once its model connection is up, a moment after it started.
        wait_until(lambda: health_status(port) == "SERVING", 30, "the group SERVING")
        announced = re.findall(r"ingest worker ready on .* \(metrics on port (\d+)", process.text())
        worker_metrics = [int(port) for port in announced]
        assert len(worker_metrics) == 2

        jpeg = small_jpeg()
        # 16 connections of their own: the kernel gives both workers some.
        streams = [SyncStream(port, own_connection=True) for _ in range(16)]
        try:
            for index, stream in enumerate(streams):
                stream.send(config_request(f"worker-test-{index}"))
                assert stream.read().HasField("accepted")
                for seq in range(1, 4):
                    stream.send(frame_request(seq, jpeg))
                    while not stream.read().HasField("result"):
                        pass
        finally:
            for stream in streams:
                stream.close()

        group = scrape(metrics_port)
        assert metric_value(group, "framewire_frames_received_total") == 48
        assert metric_value(group, "framewire_frames_processed_total") == 48
        per_worker = [
            metric_value(scrape(worker), "framewire_frames_received_total")
            for worker in worker_metrics
        ]
        assert sum(per_worker) == 48
        assert all(count > 0 for count in per_worker), per_worker
        # The model's own metrics come through the same endpoint.
        assert metric_value(group, "framewire_inference_images_total") >= 48

        process.signal(signal.SIGTERM)
        assert process.wait(60) == 0
        assert process.text().count("ingest.runner: stopped") == 2
    finally:
        process.kill()


def test_more_workers_than_cores_is_warned_of() -> None:
    assert crowded_cores(2, 2, quota=False) is None
    assert crowded_cores(1, 16, quota=False) is None
    warning = crowded_cores(4, 2, quota=True)
    assert warning is not None
    assert "4 ingest workers on 2 usable cores (its CPU quota)" in warning
    assert "--workers 2 or fewer" in warning
    assert crowded_cores(3, 1, quota=False) == (
        "3 ingest workers on 1 usable core: the workers beyond the cores can only share "
        "them; use --workers 1 or fewer"
    )
