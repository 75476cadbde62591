"""The live preview against a real `framewire serve` (SSD on vtest frames), over real sockets."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import pytest

from framewire.common.protoutil import duration
from framewire.common.serving import ListenConfig
from framewire.common.transport import TransportConfig
from framewire.inference import EngineConfig
from framewire.ingest.config import IngestConfig
from framewire.ingest.preview import PreviewConfig
from framewire.ingest.serve_command import ServeConfig, start_serve
from framewire.ingest.server import IngestServer
from framewire.v1 import ingest_service_pb2
from tests.harness import ServerThread, wait_until
from tests.preview.client import Viewer, get, stream_key, streams
from tests.streaming import SyncStream, config_request, frame_request, vtest_jpegs

MAX_VIEWERS = 3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def serve() -> Iterator[ServerThread[IngestServer]]:
    config = ServeConfig(
        engine=EngineConfig(),
        ingest=IngestConfig(
            max_frame_age=5.0,
            preview=PreviewConfig(preview_port=0, preview_max_viewers=MAX_VIEWERS),
        ),
        listen=ListenConfig(host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=-1),
        transport=TransportConfig(),
    )
    server = ServerThread(lambda: start_serve(config))
    yield server
    server.stop()


def preview_port(serve: ServerThread[IngestServer]) -> int:
    assert serve.server.preview is not None
    return serve.server.preview.port


def on_loop(serve: ServerThread[IngestServer], read):  # type: ignore[no-untyped-def]
    """Reads server state on its own event loop thread."""

    async def run():  # type: ignore[no-untyped-def]
        return read(serve.server)

    return serve.loop.run(run(), timeout=10)


def send_and_answer(stream: SyncStream, seq: int, jpeg) -> ingest_service_pb2.FrameResult:  # type: ignore[no-untyped-def]
    stream.send(frame_request(seq, jpeg))
    while True:
        response = stream.read()
        if response.WhichOneof("kind") == "result":
            return response.result


@pytest.fixture
def tracked_stream(serve: ServerThread[IngestServer]) -> Iterator[SyncStream]:
    stream = SyncStream(serve.server.port)
    stream.send(config_request("cam-tracked", track=True))
    assert stream.read().WhichOneof("kind") == "accepted"
    yield stream
    stream.close()


def test_figures_and_track_ids_while_nobody_watches(
    serve: ServerThread[IngestServer], tracked_stream: SyncStream
) -> None:
    jpegs = vtest_jpegs(count=8, step=1)
    results = [send_and_answer(tracked_stream, seq, jpeg) for seq, jpeg in enumerate(jpegs, 1)]
    ids = [d.track_id for r in results[1:] for d in r.detections if d.HasField("track_id")]
    assert ids, "no detection of consecutive vtest frames got a track id"
    assert all(d.score >= 0.5 for r in results for d in r.detections)  # the stream's threshold
    tracked_stream.send(
        ingest_service_pb2.StreamFramesRequest(
            report=ingest_service_pb2.AgentReport(
                end_to_end_latencies=[duration(0.080), duration(0.120)],
                frames_captured=10,
                frames_sent=8,
                skips=[
                    ingest_service_pb2.SkipCount(
                        reason=ingest_service_pb2.SKIP_REASON_SUPERSEDED, count=2
                    )
                ],
                results_received=8,
            )
        )
    )
    port = preview_port(serve)

    def listed() -> dict:  # type: ignore[type-arg]
        return next(s for s in streams(port) if s["stream_id"] == "cam-tracked")

    wait_until(lambda: listed()["e2e_ms"]["samples"] == 2, 10, "the report's latencies")
    figures = listed()
    assert figures["received"] == figures["processed"] == 8
    assert figures["tracking"] is True
    assert figures["e2e_ms"]["p50"] == 80.0
    assert figures["e2e_ms"]["p95"] == 120.0
    assert figures["skipped_edge"] == {"superseded": 2}
    assert figures["skipped_server"] == {"superseded": 0, "stale": 0}
    # Nobody watched: no slot, so no frame was kept.
    assert on_loop(serve, lambda server: server.preview.board.watched) == 0


def test_a_viewer_gets_the_agents_jpeg_and_the_detections(
    serve: ServerThread[IngestServer], tracked_stream: SyncStream
) -> None:
    port = preview_port(serve)
    key = stream_key(port, "cam-tracked")
    viewer = Viewer(port, key)
    try:
        assert viewer.status == 200
        assert viewer.headers["content-type"] == "text/event-stream"
        wait_until(
            lambda: on_loop(serve, lambda server: server.preview.board.watched) == 1,
            10,
            "the viewer to be registered",
        )
        jpegs = vtest_jpegs(count=4, step=1)
        result = None
        for seq, jpeg in enumerate(jpegs, 1):
            result = send_and_answer(tracked_stream, seq, jpeg)
        assert result is not None
        # The viewer may get fewer frames than were processed, never older ones.
        event = viewer.next_event()
        while event.data["seq"] != result.seq:
            assert event.kind == "frame"
            event = viewer.next_event()
        assert event.kind == "frame"
        assert base64.b64decode(event.data["jpeg"]) == jpegs[-1].data  # not re-encoded
        assert (event.data["width"], event.data["height"]) == (jpegs[-1].width, jpegs[-1].height)
        shown = [(d["label"], d["track_id"]) for d in event.data["detections"]]
        sent = [
            (d.label, d.track_id if d.HasField("track_id") else None) for d in result.detections
        ]
        assert shown == sent
        assert shown, "the last vtest frame had no detection to show"
    finally:
        viewer.close()
    wait_until(
        lambda: on_loop(serve, lambda server: server.preview.board.watched) == 0,
        10,
        "the slot to go with its last viewer",
    )


def test_a_slow_viewer_gets_fewer_frames_and_never_slows_the_stream(
    serve: ServerThread[IngestServer], tracked_stream: SyncStream
) -> None:
    port = preview_port(serve)
    key = stream_key(port, "cam-tracked")
    # A viewer that never reads, with the smallest receive buffer the kernel allows.
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stalled.sendall(f"GET /events?stream={key} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    reader = Viewer(port, key)
    try:
        wait_until(
            lambda: on_loop(serve, lambda server: server.preview.board.viewers) == 2,
            10,
            "both viewers to be registered",
        )
        jpegs = vtest_jpegs(count=30, width=640, height=480, step=1)
        for seq, jpeg in enumerate(jpegs, 1):
            # Every frame is answered: the stalled viewer holds nothing up.
            assert send_and_answer(tracked_stream, seq, jpeg).seq == seq
        largest_event = max(len(jpeg.data) for jpeg in jpegs) * 4 // 3 + 10_000
        buffers = on_loop(serve, lambda server: server.preview.write_buffers())
        # What the stalled viewer costs the server: at most one event waiting.
        assert max(buffers) <= largest_event, buffers
        seqs = set()
        event = reader.next_event()
        seqs.add(event.data["seq"])
        while event.data["seq"] != len(jpegs):
            event = reader.next_event()
            seqs.add(event.data["seq"])
        assert len(seqs) <= len(jpegs)
    finally:
        stalled.close()
        reader.close()


def test_the_page_and_its_files_are_served(serve: ServerThread[IngestServer]) -> None:
    port = preview_port(serve)
    status, page = get(port, "/")
    assert status == 200
    assert b'<script src="app.js"' in page
    assert b"http" not in page.split(b"<body>")[0]  # nothing loaded from elsewhere
    for path in ("/app.js", "/style.css"):
        status, body = get(port, path)
        assert status == 200
        assert len(body) > 100


@pytest.mark.parametrize(
    ("path", "host", "method", "status"),
    [
        ("/nothing", None, "GET", 404),
        ("/api/streams", None, "POST", 405),
        ("/api/streams", "attacker.example:80", "GET", 403),  # DNS rebinding
        ("/events?stream=999999", None, "GET", 404),
        ("/events?stream=x", None, "GET", 400),
    ],
)
def test_requests_it_refuses(
    serve: ServerThread[IngestServer], path: str, host: str | None, method: str, status: int
) -> None:
    assert get(preview_port(serve), path, host=host, method=method)[0] == status


def test_oversized_headers_are_refused(serve: ServerThread[IngestServer]) -> None:
    with socket.create_connection(("127.0.0.1", preview_port(serve)), timeout=10) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Junk: " + b"a" * 20_000)
        assert client.recv(100).startswith(b"HTTP/1.1 400")


def test_viewers_are_limited(serve: ServerThread[IngestServer], tracked_stream: SyncStream) -> None:
    port = preview_port(serve)
    key = stream_key(port, "cam-tracked")
    wait_until(
        lambda: on_loop(serve, lambda server: server.preview.board.viewers) == 0,
        10,
        "the earlier tests' viewers to be gone",
    )
    viewers = [Viewer(port, key) for _ in range(MAX_VIEWERS)]
    try:
        assert [viewer.status for viewer in viewers] == [200] * MAX_VIEWERS
        wait_until(
            lambda: on_loop(serve, lambda server: server.preview.board.viewers) == MAX_VIEWERS,
            10,
            "every viewer to be registered",
        )
        assert get(port, f"/events?stream={key}")[0] == 503
    finally:
        for viewer in viewers:
            viewer.close()


def test_the_viewer_hears_when_its_stream_ends(serve: ServerThread[IngestServer]) -> None:
    stream = SyncStream(serve.server.port)
    stream.send(config_request("cam-ending"))
    assert stream.read().WhichOneof("kind") == "accepted"
    port = preview_port(serve)
    viewer = Viewer(port, stream_key(port, "cam-ending"))
    try:
        stream.close_input()
        assert stream.read_all() == []
        assert viewer.next_event().kind == "closed"
    finally:
        viewer.close()
        stream.close()
