"""The preview server on its own (no model): a viewer that stops reading is let go."""

from __future__ import annotations

import asyncio
import os
import socket
import time

from framewire.ingest.preview import PreviewBoard, PreviewConfig, start_preview
from framewire.ingest.streams import StreamSession, StreamSettings
from framewire.v1 import ingest_service_pb2


def session(key: int, stream_id: str | None = None) -> StreamSession:
    return StreamSession(
        key,
        StreamSettings(
            stream_id=stream_id or f"cam-{key}",
            score_threshold=0.5,
            class_filter=(),
            max_in_flight=2,
            client_version="tests/1",
        ),
    )


async def until(condition, within: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_viewer_that_takes_nothing_is_disconnected_and_frees_its_place() -> None:
    async def scenario() -> None:
        config = PreviewConfig(preview_port=0, preview_stall_timeout=1.0, preview_max_fps=1000)
        board = PreviewBoard(config)
        stream = session(1)
        board.stream_opened(stream)
        preview = await start_preview(config, board)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        stalled.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(stalled, ("127.0.0.1", preview.port))
            stalled.send(b"GET /events?stream=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await until(lambda: board.viewers == 1, 10, "the viewer")
            frame = ingest_service_pb2.Frame(seq=1, width=640, height=480, data=os.urandom(200_000))
            result = ingest_service_pb2.FrameResult(seq=1)
            seq = 1
            started = time.monotonic()
            # Frames keep coming; the viewer never reads. Feeding never waits on it.
            while board.viewers and time.monotonic() - started < 30:
                seq += 1
                result = ingest_service_pb2.FrameResult(seq=seq)
                board.frame_processed(stream, frame, result)
                assert max(preview.write_buffers(), default=0) <= 2 * 300_000
                await asyncio.sleep(0.01)
            assert board.viewers == 0, "the stalled viewer was never let go"
            assert board.watched == 0  # and its stream's slot went with it
        finally:
            stalled.close()
            await preview.close()

    asyncio.run(scenario())
