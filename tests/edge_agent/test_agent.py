"""The edge agent against a real `framewire serve`: detections, accounting, blackout, reconnects."""

from __future__ import annotations

import signal
import threading

import pytest

from framewire.edge_agent import EdgeAgent
from framewire.edge_agent.output import ResultEvent, Summary
from framewire.ingest.serve_command import start_serve
from framewire.ingest.server import IngestServer
from tests.conftest import vtest_path
from tests.harness import (
    Process,
    ServerThread,
    framewire_command,
    free_port,
    metric_value,
    running,
    scrape,
    wait_until,
)
from tests.ingest.conftest import serve_config

pytestmark = pytest.mark.slow


def vtest() -> str:
    return str(vtest_path())


def run_agent(port: int, **options: object) -> tuple[Summary, list[ResultEvent]]:
    events: list[ResultEvent] = []
    agent = EdgeAgent(server=f"127.0.0.1:{port}", source=vtest(), **options)
    summary = agent.run(on_result=events.append)
    return summary, events


def test_vtest_through_the_agent_finds_people_and_cars_and_every_frame_is_counted(
    serve: ServerThread[IngestServer],
) -> None:
    before = scrape(serve.server.metrics_port)
    summary, events = run_agent(
        serve.server.port, stream_id="agent-vtest", frames=60, fps=20.0, resize=(480, 270)
    )
    assert summary.check() == []
    assert summary.captured == 60
    # How many of the 60 the model gets to at 20 fps depends on the machine; what
    # it does with them does not (`python -m bench ingest` prints the rate).
    assert summary.processed > 0
    assert summary.detections["person"] > summary.processed  # several people per frame
    assert summary.detections["car"] > 0
    assert summary.lost == 0
    assert summary.processed + summary.failed == len([e for e in events if e.kind == "result"])
    latencies = [e.latency for e in events if e.latency is not None]
    assert len(latencies) == summary.processed
    assert all(latency > 0 for latency in latencies)

    # The server's books agree with the agent's, and the agent's reports arrived.
    after = scrape(serve.server.metrics_port)

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    received = delta("framewire_frames_received_total")
    assert received == summary.sent
    assert received == (
        delta("framewire_frames_processed_total")
        + delta("framewire_frames_failed_total")
        + delta("framewire_frames_skipped_total")
    )
    assert delta("framewire_edge_frames_captured_total") == summary.captured
    assert delta("framewire_edge_frames_sent_total") == summary.sent
    assert delta("framewire_edge_sent_bytes_total") == summary.bytes_sent
    edge_skips = delta("framewire_edge_frames_skipped_total")
    assert edge_skips == sum(summary.skipped_edge.values())
    assert delta("framewire_end_to_end_latency_seconds_count") == summary.processed


def test_blackout_sends_fewer_bytes_keeps_finding_people_and_keyframes_on_schedule(
    serve: ServerThread[IngestServer],
) -> None:
    common = {"frames": 40, "fps": 10.0, "resize": (480, 270), "max_in_flight": 1}
    full, _ = run_agent(serve.server.port, stream_id="full", **common)
    blacked, events = run_agent(
        serve.server.port, stream_id="blackout", blackout=True, keyframe_interval=5, **common
    )
    assert full.check() == blacked.check() == []
    full_bytes = full.bytes_sent / full.sent
    blackout_bytes = blacked.bytes_sent / blacked.sent
    ratio = blackout_bytes / full_bytes
    print(
        f"\nbytes per frame at 480x270: full {full_bytes:.0f}, blackout {blackout_bytes:.0f} "
        f"(ratio {ratio:.2f})"
    )
    assert ratio < 0.9

    results = [e for e in events if e.kind == "result" and e.frame is not None]
    # Keyframes: the first frame, then every 5th frame sent (every result had people).
    assert all(e.detections for e in results)
    keyframes = [index for index, e in enumerate(results) if e.frame.keyframe]  # type: ignore[union-attr]
    assert keyframes == list(range(0, len(results), 5))
    # People are still found in blacked-out frames.
    blacked_out = [e for e in results if not e.frame.keyframe]  # type: ignore[union-attr]
    assert len(blacked_out) >= 5
    with_people = sum(any(d.label == "person" for d in e.detections) for e in blacked_out)
    assert with_people >= 0.9 * len(blacked_out)


def test_agent_reconnects_when_the_server_restarts_and_counts_what_was_lost() -> None:
    port = free_port()
    command = framewire_command(
        "serve", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "-1"
    )
    events: list[ResultEvent] = []
    outcome: dict[str, object] = {}
    agent = EdgeAgent(
        server=f"127.0.0.1:{port}",
        source=vtest(),
        loop=True,
        fps=10.0,
        resize=(480, 270),
        connect_timeout=60.0,
        stream_id="restart",
    )

    def run() -> None:
        try:
            outcome["summary"] = agent.run(on_result=events.append)
        except Exception as error:  # surfaced by the assert below
            outcome["error"] = error

    with running(Process(command)) as first:
        first.wait_for_line(r"IngestService serving on", timeout=60)
        thread = threading.Thread(target=run)
        thread.start()
        wait_until(lambda: len(events) >= 10, 30, "results before the restart")
        first.signal(signal.SIGKILL)
        first.wait(10)
    answered_before = len(events)
    skipped_before = agent.skipped_at_edge
    # Frames captured while the server is down are skipped at the edge, as disconnected.
    wait_until(
        lambda: not agent.connected and agent.skipped_at_edge > skipped_before,
        30,
        "the agent to see the server gone and skip a frame captured meanwhile",
    )
    with running(Process(command)) as second:
        second.wait_for_line(r"IngestService serving on", timeout=60)
        wait_until(lambda: len(events) >= answered_before + 10, 30, "results after the restart")
        agent.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome
    summary = outcome["summary"]
    assert isinstance(summary, Summary)
    assert summary.check() == []
    assert summary.reconnects >= 1
    assert len(events) >= answered_before + 10, "no results after the restart"
    assert summary.skipped_edge.get("disconnected", 0) > 0  # frames captured while down


def test_streams_outlive_the_servers_connection_age_by_reconnecting() -> None:
    # max_connection_age makes servers close long connections so agents
    # spread over replicas added later; the agent must ride through it.
    from dataclasses import replace

    from framewire.common.transport import TransportConfig

    config = replace(
        serve_config(),
        transport=TransportConfig(max_connection_age=1.5, max_connection_age_grace=0.5),
    )
    server = ServerThread(lambda: start_serve(config))
    try:
        summary, events = run_agent(
            server.server.port, stream_id="aging", fps=10.0, duration=6.0, resize=(480, 270)
        )
    finally:
        server.stop()
    assert summary.check() == []
    assert summary.reconnects >= 2
    assert summary.failed == 0
    # More results than reconnects: the stream kept working across them (how many per second:
    # `python -m bench ingest`, the agent run across connection ages).
    results = [e for e in events if e.kind == "result"]
    assert len(results) == summary.processed > summary.reconnects


def test_following_hints_scales_frames_down_to_what_the_model_uses(
    serve: ServerThread[IngestServer],
) -> None:
    # Frames at 1280x960 are four times the model's 300x300 input: the server
    # advises a scale, and with --follow-hints the agent sends smaller frames.
    events: list[ResultEvent] = []
    agent = EdgeAgent(
        server=f"127.0.0.1:{serve.server.port}",
        source=vtest(),
        stream_id="hinted",
        resize=(1280, 960),
        fps=10.0,
        duration=60.0,  # a bound only: the run stops once a scaled-down frame is answered
        follow_hints=True,
    )

    def watch(event: ResultEvent) -> None:
        events.append(event)
        if event.frame is not None and event.frame.width <= 700:
            agent.stop()

    summary = agent.run(on_result=watch)
    assert summary.check() == []
    widths = [e.frame.width for e in events if e.frame is not None]
    assert widths[0] == 1280
    assert widths[-1] <= 700, widths


def test_a_stopping_agent_has_nothing_left_to_send_for_a_frame_captured_after_the_stop() -> None:
    # The capture thread may hand over a frame it read just before the stop. The stream
    # discards it; counting it as still to send made a stopping agent reconnect once more.
    import numpy as np

    from framewire.edge_agent.sources import CapturedFrame

    running = EdgeAgent(server="127.0.0.1:1", source="unused.mp4")
    stream = running._stream
    frame = CapturedFrame(0, np.zeros((4, 4, 3), np.uint8), 0)
    running._latest.put(frame)
    assert not stream._nothing_left(), "a capture waits and the source goes on"
    running.stop()
    assert stream._nothing_left()
    running._capture_done.set()
    running._stop.clear()
    assert not stream._nothing_left(), "the source ended with a frame still to send"
