"""A real Prometheus server scrapes ingest; PromQL over the stage latency returns numbers."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from framewire.ingest.server import IngestServer
from tests.harness import Process, ServerThread, free_port, running, scrape, wait_until
from tests.streaming import SyncStream, config_request, frame_request, vtest_jpegs

pytestmark = pytest.mark.slow


def query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


@pytest.fixture
def prometheus(tmp_path: Path, serve: ServerThread[IngestServer]) -> Iterator[int]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus server is not installed (Debian: apt-get install prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: framewire\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{serve.server.metrics_port}']\n"
    )
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(Process(command)) as server:
        server.wait_for_line(r"Server is ready to receive web requests", timeout=30)
        yield port


def test_prometheus_scrapes_ingest_and_answers_latency_quantiles(
    prometheus: int, serve: ServerThread[IngestServer]
) -> None:
    wait_until(lambda: query(prometheus, 'up{job="framewire"} == 1') != [], 15, "the first scrape")
    stream = SyncStream(serve.server.port)
    try:
        stream.send(config_request("prometheus"))
        assert stream.read().HasField("accepted")
        started = time.monotonic()
        seq = 0
        while time.monotonic() - started < 4.0:  # traffic across several scrapes
            seq += 1
            stream.send(frame_request(seq, vtest_jpegs()[seq % 20]))
            assert stream.read().HasField("result")
    finally:
        stream.close()

    promql = (
        "histogram_quantile(0.5, sum by (le) "
        '(rate(framewire_stage_latency_seconds_bucket{stage="total"}[30s])))'
    )

    def has_number() -> bool:
        result = query(prometheus, promql)
        return bool(result) and not math.isnan(float(result[0]["value"][1]))  # type: ignore[index]

    wait_until(has_number, 15, "a latency quantile from Prometheus")
    p50 = float(query(prometheus, promql)[0]["value"][1])  # type: ignore[index]
    assert 0.0 < p50 < 10.0
    by_stage = query(
        prometheus,
        "histogram_quantile(0.9, sum by (le, stage) "
        "(rate(framewire_stage_latency_seconds_bucket[30s])))",
    )
    stages = {row["metric"]["stage"] for row in by_stage}  # type: ignore[index]
    assert {"queue", "decode", "inference", "total"} <= stages

    def processed() -> float:
        rows = query(prometheus, "framewire_frames_processed_total")
        return float(rows[0]["value"][1]) if rows else 0.0  # type: ignore[index]

    wait_until(lambda: processed() >= seq, 10, f"Prometheus to count {seq} processed frames")


def test_exposition_passes_promtool(serve: ServerThread[IngestServer]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    text = scrape(serve.server.metrics_port)
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The embedded model's metrics share the endpoint in `serve` mode.
    assert "framewire_inference_stage_seconds_bucket" in text
