"""A plain HTTP and Server-Sent Events client for the preview tests (sockets, no browser)."""

from __future__ import annotations

import json
import socket
import urllib.request
from dataclasses import dataclass
from typing import Any


def get(port: int, path: str, *, host: str | None = None, method: str = "GET") -> tuple[int, bytes]:
    """Status and body of one request (the Host header may be forged)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def streams(port: int) -> list[dict[str, Any]]:
    status, body = get(port, "/api/streams")
    assert status == 200, body
    listed: list[dict[str, Any]] = json.loads(body)["streams"]
    return listed


def stream_key(port: int, stream_id: str) -> int:
    for stream in streams(port):
        if stream["stream_id"] == stream_id:
            return int(stream["key"])
    raise AssertionError(f"stream {stream_id} is not in the preview's list")


@dataclass
class Event:
    kind: str
    data: dict[str, Any]


class Viewer:
    """One /events connection, read event by event."""

    def __init__(self, port: int, key: int, *, receive_buffer: int | None = None) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.socket.settimeout(30)
        self.socket.connect(("127.0.0.1", port))
        self.socket.sendall(
            f"GET /events?stream={key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        )
        self.file = self.socket.makefile("rb")
        self.status_line = self.file.readline().decode().strip()
        self.headers: dict[str, str] = {}
        while (line := self.file.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            self.headers[name.lower()] = value.strip()

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def next_event(self) -> Event:
        """The next event (keep-alive comments skipped); fails on a closed connection."""
        kind, data = "message", ""
        while True:
            raw = self.file.readline()
            if not raw:
                raise AssertionError("the preview closed the event stream")
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                continue
            if line == "":
                if data:
                    return Event(kind, json.loads(data))
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                kind = value
            elif field == "data":
                data += value

    def close(self) -> None:
        self.file.close()
        self.socket.close()
