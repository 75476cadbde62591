"""The preview's HTTP server: the page, the stream list, and each stream's frames as SSE.

Standard library only (``asyncio`` streams on the ingest server's own event
loop), because the preview needs four routes:

- ``GET /`` and its ``app.js`` and ``style.css``, shipped in this package;
- ``GET /api/streams``: every open stream's figures as JSON;
- ``GET /events?stream=KEY``: Server-Sent Events, one ``frame`` event per
  frame sent to this viewer (the JPEG as the agent sent it, base64, with the
  detections), and ``closed`` when the stream ends.

Why SSE and a canvas rather than MJPEG: MJPEG would make ingest decode every
watched frame, draw the boxes and encode a new JPEG, work that grows with
streams and viewers on a service meant to stay light. With SSE the agent's
own JPEG goes out untouched, the browser draws the boxes (and can show track
ids and labels crisply at any size), and ``EventSource`` reconnects by
itself. The price is base64 (a third more bytes than the JPEG), paid only
for frames actually sent to a viewer.

Each viewer is one coroutine: it waits for a newer frame in the stream's
slot, writes one event and waits for the socket to take it before looking
again, so it holds at most one event and never makes a stream wait.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.resources
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from framewire.common.auth import TokenEntry
from framewire.common.errors import FramewireError
from framewire.common.protoutil import seconds
from framewire.ingest.preview.access import PreviewAccess
from framewire.ingest.preview.board import PreviewBoard, Slot
from framewire.ingest.preview.config import PreviewConfig, is_loopback
from framewire.v1 import ingest_service_pb2

_LOGGER = logging.getLogger(__name__)

STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
# The page loads nothing from anywhere else and runs no inline script.
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def _static(name: str) -> bytes:
    return (importlib.resources.files(__package__) / "static" / name).read_bytes()


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class PreviewServer:
    """A running preview: its listening socket, its figures and its open connections."""

    config: PreviewConfig
    board: PreviewBoard
    access: PreviewAccess = field(default_factory=PreviewAccess)
    server: asyncio.Server | None = None
    _connections: dict[asyncio.Task[None], asyncio.StreamWriter] = field(default_factory=dict)
    _files: dict[str, bytes] = field(default_factory=dict)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = self.config.preview_host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        scheme = "https" if self.access.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}/"

    async def start(self) -> None:
        """Reads the page's files and starts listening (raises OSError when the port is taken)."""
        self._files = {name: _static(name) for name, _ in STATIC_FILES.values()}
        self.server = await asyncio.start_server(
            self._accept,
            self.config.preview_host,
            self.config.preview_port,
            limit=self.config.preview_max_request_bytes,
            ssl=self.access.tls,
        )

    def write_buffers(self) -> list[int]:
        """Bytes waiting in each open connection's send buffer (what a slow viewer costs)."""
        return [writer.transport.get_write_buffer_size() for writer in self._connections.values()]

    async def close(self) -> None:
        """Stops listening and ends every open connection."""
        if self.server is None:
            return
        self.server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        await self.server.wait_closed()

    # -- one connection -------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            _LOGGER.debug("preview client went away")
        except TimeoutError:
            _LOGGER.info(
                "preview viewer took no data for %gs; disconnected",
                self.config.preview_stall_timeout,
            )
        except Exception:
            _LOGGER.exception("preview request failed")
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), self.config.preview_request_timeout
            )
        except asyncio.LimitOverrunError:
            await _respond(writer, 400, b"request headers too large\n", "text/plain")
            return
        except TimeoutError:
            return  # nothing sensible to answer a client that sends no request
        try:
            path, query, headers = self._parse(head)
            if path in STATIC_FILES:  # the page itself holds no data: no token needed
                name, content_type = STATIC_FILES[path]
                await _respond(writer, 200, self._files[name], content_type)
                return
            entry = self._authenticate(headers, query)
            if path == "/events":
                await self._events(writer, reader, query, entry)
                return
            body, content_type = self._route(path, entry)
        except _Refused as refused:
            extra = (("WWW-Authenticate", 'Bearer realm="framewire preview"'),)
            await _respond(
                writer,
                refused.status,
                refused.message.encode() + b"\n",
                "text/plain",
                extra if refused.status == 401 else (),
            )
            return
        await _respond(writer, 200, body, content_type)

    def _authenticate(
        self, headers: dict[str, str], query: dict[str, list[str]]
    ) -> TokenEntry | None:
        token = query.get("token", [None])[-1]
        try:
            return self.access.authenticate(headers.get("authorization"), token)
        except FramewireError as error:
            raise _Refused(401, error.message) from None

    def _parse(self, head: bytes) -> tuple[str, dict[str, list[str]], dict[str, str]]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Refused(400, "malformed request line")
        method, target, _ = parts
        if method != "GET":
            raise _Refused(405, "only GET is served here")
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        self._check_host(headers.get("host", ""))
        url = urllib.parse.urlsplit(target)
        return url.path, urllib.parse.parse_qs(url.query), headers

    def _check_host(self, host: str) -> None:
        """On loopback, only loopback names: a DNS-rebinding page must not read the cameras."""
        if not is_loopback(self.config.preview_host):
            return
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not is_loopback(name):
            raise _Refused(403, f"Host {host!r} is not this machine's loopback address")

    def _route(self, path: str, entry: TokenEntry | None) -> tuple[bytes, str]:
        if path == "/api/streams":
            body = {
                "streams": [
                    stream
                    for stream in self.board.streams()
                    if entry is None or entry.covers(stream["stream_id"])
                ],
                "viewers": self.board.viewers,
                "max_viewers": self.config.preview_max_viewers,
            }
            return json.dumps(body).encode(), "application/json"
        raise _Refused(404, f"no such page: {path}")

    # -- the frame stream -----------------------------------------------------

    async def _events(
        self,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        query: dict[str, list[str]],
        entry: TokenEntry | None,
    ) -> None:
        try:
            key = int(query.get("stream", [""])[0])
        except ValueError:
            raise _Refused(400, "give the stream's key: /events?stream=KEY") from None
        session = self.board.stream_key(key)
        if session is None:
            raise _Refused(404, f"no open stream with key {key}")
        if entry is not None and not entry.covers(session.settings.stream_id):
            raise _Refused(403, f"token {entry.name!r} may not see this stream")
        if self.board.viewers >= self.config.preview_max_viewers:
            raise _Refused(
                503, f"the preview already serves {self.config.preview_max_viewers} viewers"
            )
        slot = self.board.watch(key)
        if slot is None:
            raise _Refused(404, f"no open stream with key {key}")
        try:
            writer.write(
                _head(200, "text/event-stream", None, extra=(("X-Accel-Buffering", "no"),))
            )
            await writer.drain()
            await self._send_frames(writer, reader, key, slot)
        finally:
            self.board.unwatch(key, slot)

    async def _send_frames(
        self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, key: int, slot: Slot
    ) -> None:
        config = self.config
        gone = asyncio.create_task(reader.read(1))  # the client closing its side
        interval = 1.0 / config.preview_max_fps
        version = 0
        try:
            while True:
                newer = asyncio.create_task(slot.wait_newer(version))
                done, _ = await asyncio.wait(
                    {newer, gone},
                    timeout=config.preview_keepalive,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if newer not in done:
                    newer.cancel()
                if gone in done:
                    return
                if slot.closed:
                    writer.write(b"event: closed\ndata: {}\n\n")
                    await writer.drain()
                    return
                if newer in done and slot.frame is not None and slot.result is not None:
                    version = slot.version
                    sent_at = time.monotonic()
                    writer.write(frame_event(key, slot.frame, slot.result))
                else:
                    sent_at = None
                    writer.write(b": keep-alive\n\n")
                await asyncio.wait_for(writer.drain(), config.preview_stall_timeout)
                if sent_at is not None:
                    # At most preview_max_fps frames per viewer.
                    await asyncio.sleep(max(0.0, sent_at + interval - time.monotonic()))
        finally:
            gone.cancel()


def frame_event(
    key: int, frame: ingest_service_pb2.Frame, result: ingest_service_pb2.FrameResult
) -> bytes:
    """One SSE ``frame`` event: the JPEG as sent by the agent, and what was found in it."""
    detections: list[dict[str, Any]] = []
    for detection in result.detections:
        box = detection.box
        detections.append(
            {
                "label": detection.label,
                "class_id": detection.class_id,
                "score": round(detection.score, 3),
                "box": [round(v, 4) for v in (box.x_min, box.y_min, box.x_max, box.y_max)],
                "track_id": detection.track_id if detection.HasField("track_id") else None,
            }
        )
    payload = {
        "key": key,
        "seq": result.seq,
        "width": frame.width,
        "height": frame.height,
        "server_ms": round(seconds(result.timings.total) * 1000, 1),
        "batch_size": result.batch_size,
        "detections": detections,
        "jpeg": base64.b64encode(frame.data).decode("ascii"),
    }
    return b"event: frame\ndata: " + json.dumps(payload).encode() + b"\n\n"


def _head(
    status: int,
    content_type: str,
    length: int | None,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in (*SECURITY_HEADERS, *extra)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str,
    extra: tuple[tuple[str, str], ...] = (),
) -> None:
    writer.write(_head(status, content_type, len(body), extra) + body)
    await writer.drain()


async def start_preview(
    config: PreviewConfig, board: PreviewBoard, access: PreviewAccess | None = None
) -> PreviewServer:
    """Starts the preview on ``config.preview_host:preview_port``, open to ``access``."""
    preview = PreviewServer(config, board, access or PreviewAccess())
    await preview.start()
    return preview
