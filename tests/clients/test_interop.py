"""Each client in clients/ against a real `framewire serve` with the SSD model on real frames.

Checks what the contract promises to any language: every frame answered exactly
once, the same detections a Python client gets for the same bytes, AgentReports
that reach the server's metrics, and the same statuses for broken protocol rules.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from framewire.ingest.server import IngestServer
from framewire.v1 import common_pb2, ingest_service_pb2
from tests.harness import ServerThread, metric_value, scrape
from tests.streaming import Jpeg, SyncStream, config_request, frame_request

pytestmark = pytest.mark.slow

Server = ServerThread[IngestServer]
Frames = tuple[Path, tuple[Jpeg, ...]]
Client = tuple[str, list[str]]

SCORE_THRESHOLD = 0.4
# Scores and box corners are float32 on the wire; clients print them in their own way.
TOLERANCE = 1e-6
RUN_TIMEOUT = 180.0
STATUS_LINE = re.compile(r"^error: (?P<name>[A-Z_]+) \((?P<code>\d+)\): (?P<message>.*)$", re.M)


def run_client(
    command: list[str], server: Server, frames: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, "--server", f"127.0.0.1:{server.server.port}", "--dir", str(frames), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def json_lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr}\n{done.stdout}"
    return [json.loads(line) for line in done.stdout.splitlines()]


def detections_of(result: ingest_service_pb2.FrameResult) -> list[dict[str, Any]]:
    return [
        {
            "class_id": d.class_id,
            "label": d.label,
            "score": d.score,
            "box": {
                "x_min": d.box.x_min,
                "y_min": d.box.y_min,
                "x_max": d.box.x_max,
                "y_max": d.box.y_max,
            },
        }
        for d in result.detections
    ]


@pytest.fixture(scope="module")
def python_detections(serve: Server, frames: Frames) -> dict[int, list[dict[str, Any]]]:
    """What the Python client gets for the same frames from the same server, by seq."""
    stream = SyncStream(serve.server.port)
    try:
        stream.send(config_request("interop-python", score_threshold=SCORE_THRESHOLD))
        assert stream.read().WhichOneof("kind") == "accepted"
        answers = {}
        for seq, jpeg in enumerate(frames[1], start=1):
            stream.send(frame_request(seq, jpeg))
            response = stream.read()
            assert response.WhichOneof("kind") == "result", response
            assert not response.result.HasField("error"), response.result.error
            answers[response.result.seq] = detections_of(response.result)
    finally:
        stream.close()
    assert sum(len(found) for found in answers.values()) > 0, "no detections to compare"
    return answers


def assert_same_detections(
    language: str, seq: int, got: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    where = f"{language} client, frame {seq}"
    assert [(d["class_id"], d["label"]) for d in got] == [
        (d["class_id"], d["label"]) for d in expected
    ], where
    for mine, theirs in zip(got, expected, strict=True):
        assert mine["score"] == pytest.approx(theirs["score"], abs=TOLERANCE), where
        assert mine["box"] == pytest.approx(theirs["box"], abs=TOLERANCE), where


def test_every_frame_answered_once_with_python_detections(
    client: Client,
    serve: Server,
    frames: Frames,
    python_detections: dict[int, list[dict[str, Any]]],
) -> None:
    language, command = client
    folder, jpegs = frames
    before = scrape(serve.server.metrics_port)
    lines = json_lines(
        run_client(
            command,
            serve,
            folder,
            "--fps",
            "0",
            "--stream-id",
            f"interop-{language}",
            "--score-threshold",
            str(SCORE_THRESHOLD),
        )
    )
    after = scrape(serve.server.metrics_port)

    assert lines[0]["type"] == "accepted"
    assert lines[0]["stream_id"] == f"interop-{language}"
    assert lines[0]["score_threshold"] == pytest.approx(SCORE_THRESHOLD)
    summary = lines[-1]
    assert summary["type"] == "summary"
    # With --fps 0 a file is captured only when the window has room: nothing is skipped at the
    # edge. The server may still supersede a frame waiting in its slot (rarely, with a window
    # of 2); that frame is then answered by being listed as skipped.
    assert (summary["frames_captured"], summary["frames_sent"], summary["edge_skipped"]) == (
        len(jpegs),
        len(jpegs),
        0,
    )
    results = [line for line in lines if line["type"] == "result"]
    skipped = [
        skip["seq"]
        for line in lines
        if line["type"] in ("result", "skip_notice")
        for skip in line["skipped"]
    ]
    assert (summary["results"], summary["server_skipped"]) == (len(results), len(skipped))
    answered = sorted([line["seq"] for line in results] + skipped)
    assert answered == list(range(1, len(jpegs) + 1)), "every frame answered exactly once"
    assert len(results) >= len(jpegs) // 2, f"only {len(results)} results: {lines}"
    for result in results:
        assert result["error"] is None, result
        assert result["latency_ms"] > 0
        assert_same_detections(
            language, result["seq"], result["detections"], python_detections[result["seq"]]
        )

    def added(name: str) -> float:
        return metric_value(after, name) - metric_value(before, name)

    # The server saw the frames, and the client's AgentReports reached its metrics.
    assert added("framewire_frames_received_total") == len(jpegs)
    assert added("framewire_end_to_end_latency_seconds_count") == len(results)
    assert added("framewire_edge_frames_captured_total") == len(jpegs)
    assert added("framewire_edge_frames_sent_total") == len(jpegs)
    assert added("framewire_edge_sent_bytes_total") == sum(len(j.data) for j in jpegs)


def test_at_a_frame_rate_every_capture_is_sent_or_counted_as_an_edge_skip(
    client: Client, serve: Server, frames: Frames
) -> None:
    language, command = client
    folder, jpegs = frames
    before = scrape(serve.server.metrics_port)
    lines = json_lines(
        run_client(
            command,
            serve,
            folder,
            "--fps",
            "30",
            "--max-in-flight",
            "1",
            "--stream-id",
            f"paced-{language}",
        )
    )
    after = scrape(serve.server.metrics_port)
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert lines[0]["max_in_flight"] == 1
    assert summary["frames_captured"] == len(jpegs)
    assert summary["frames_sent"] + summary["edge_skipped"] == len(jpegs)
    assert summary["results"] + summary["server_skipped"] == summary["frames_sent"]
    answered = [line["seq"] for line in lines if line["type"] == "result"] + [
        skip["seq"]
        for line in lines
        if line["type"] in ("result", "skip_notice")
        for skip in line["skipped"]
    ]
    assert len(answered) == len(set(answered)) == summary["frames_sent"]
    edge_skips = metric_value(after, "framewire_edge_frames_skipped_total") - metric_value(
        before, "framewire_edge_frames_skipped_total"
    )
    assert edge_skips == summary["edge_skipped"]


def python_violation(server: Server, violation: str, jpeg: Jpeg) -> grpc.RpcError:
    stream = SyncStream(server.server.port)
    try:
        if violation == "frame-before-config":
            stream.send(frame_request(1, jpeg))
        elif violation == "unspecified-encoding":
            stream.send(config_request())
            stream.send(frame_request(1, jpeg, encoding=common_pb2.ENCODING_UNSPECIFIED))
        else:
            stream.send(config_request())
            assert stream.read().WhichOneof("kind") == "accepted"
            stream.send(config_request())
        return stream.error()
    finally:
        stream.close()


VIOLATIONS = ("frame-before-config", "unspecified-encoding", "second-config")


@pytest.mark.parametrize("violation", VIOLATIONS)
def test_protocol_violations_get_the_statuses_python_gets(
    client: Client, serve: Server, frames: Frames, violation: str
) -> None:
    language, command = client
    folder, jpegs = frames
    expected = python_violation(serve, violation, jpegs[0])
    assert expected.code() == grpc.StatusCode.INVALID_ARGUMENT

    done = run_client(command, serve, folder, "--violate", violation, "--fps", "0")
    assert done.returncode == 1, f"{language}: exit {done.returncode}\n{done.stderr}"
    status = STATUS_LINE.search(done.stderr)
    assert status is not None, f"{language} printed no status line:\n{done.stderr}"
    code, _ = expected.code().value
    assert (status["name"], int(status["code"])) == (expected.code().name, code)
    assert status["message"] == expected.details()
