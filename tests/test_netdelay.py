"""The delaying proxy (tests/netdelay.py) the delayed-link tests and `bench ingest` use.

Real sockets on loopback: a target server on this test's loop, the proxy on its
own loop thread, a client through it. Times come from time.monotonic on both
sides of the proxy (one clock, one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.harness import Process, free_port
from tests.netdelay import DelayProxy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Target:
    """A server on this test's loop. Each connection is closed when its handler returns,
    and leaving the block waits for every handler (each ends once its peer is gone), so
    no connection outlives the test's loop."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> Target:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        async with asyncio.timeout(30):
            await asyncio.gather(*self._handlers)
        await self._server.wait_closed()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Polls ``condition`` (the proxy's figures, kept on its own thread) without blocking
    the loop the target server runs on; fails after 30 s."""
    try:
        async with asyncio.timeout(30):
            while not condition():  # noqa: ASYNC110 - no event to wait on across threads
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(4096):
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()
    await writer.drain()


def test_bytes_arrive_intact_and_in_order_both_ways_and_a_half_close_follows_them() -> None:
    payload = random.Random(12).randbytes(3_000_000)

    async def main() -> bytes:
        async with Target(echo) as target:
            # Small chunks and buffers: thousands of chunks held and delayed at once.
            with DelayProxy(target.port, 0.01, chunk_size=1000, buffer_chunks=8) as proxy:
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

                async def send() -> None:
                    pieces = random.Random(3)
                    offset = 0
                    while offset < len(payload):
                        size = pieces.randint(1, 50_000)
                        writer.write(payload[offset : offset + size])
                        await writer.drain()
                        offset += size
                    writer.write_eof()  # the echo ends its side once this reaches it

                _, echoed = await asyncio.gather(send(), reader.read())
                writer.close()
                await writer.wait_closed()
                assert proxy.upstream.bytes == proxy.downstream.bytes == len(payload)
                return echoed

    assert asyncio.run(main()) == payload


def test_each_direction_is_delayed_at_least_the_configured_time() -> None:
    delay = 0.03
    arrivals: list[float] = []
    replies: list[float] = []

    async def stamp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1):
            arrivals.append(time.monotonic())
            replies.append(time.monotonic())
            writer.write(b"r")
            await writer.drain()

    async def main() -> list[tuple[float, float, float]]:
        trips = []
        async with Target(stamp) as target:
            with DelayProxy(target.port, delay) as proxy:
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                for _ in range(5):
                    sent = time.monotonic()
                    writer.write(b"q")
                    await writer.drain()
                    assert await reader.readexactly(1) == b"r"
                    trips.append((sent, arrivals[-1], time.monotonic()))
                writer.close()
                await writer.wait_closed()
        return trips

    trips = asyncio.run(main())
    assert len(trips) == 5
    for (sent, arrived, answered), replied in zip(trips, replies, strict=True):
        assert arrived - sent >= delay  # client to target
        assert answered - replied >= delay  # target to client
        assert answered - sent >= 2 * delay


def test_a_target_that_stops_reading_stops_the_proxy_reading_too() -> None:
    payload = random.Random(5).randbytes(64 * 1024 * 1024)
    chunk_size, buffer_chunks = 1024, 8
    start_reading = asyncio.Event()
    target_done = asyncio.Event()
    received = bytearray()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await start_reading.wait()
        while chunk := await reader.read(1 << 20):
            received.extend(chunk)
        target_done.set()

    async def main(proxy_box: list[DelayProxy]) -> None:
        async with Target(slow) as target:
            with DelayProxy(
                target.port, 0.001, chunk_size=chunk_size, buffer_chunks=buffer_chunks
            ) as proxy:
                proxy_box.append(proxy)
                _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

                async def send() -> None:
                    for offset in range(0, len(payload), 1 << 20):
                        writer.write(payload[offset : offset + (1 << 20)])
                        await writer.drain()
                    writer.write_eof()

                sender = asyncio.create_task(send())
                # The proxy's buffer fills and it stops reading: the sender is held back
                # by TCP instead of the proxy taking all 64 MiB into memory.
                await until(lambda: proxy.upstream.stalls > 0, "the proxy's buffer to fill")
                assert not sender.done()
                assert proxy.upstream.bytes < len(payload)
                start_reading.set()
                await sender
                async with asyncio.timeout(30):
                    await target_done.wait()  # the target read to the end: the half-close
                writer.close()
                await writer.wait_closed()
                bound = (buffer_chunks + 2) * chunk_size
                assert 0 < proxy.upstream.peak_buffered_bytes <= bound

    proxies: list[DelayProxy] = []
    asyncio.run(main(proxies))
    assert bytes(received) == payload
    assert proxies[0].upstream.bytes == len(payload)


def test_a_target_that_is_down_closes_the_client_connection() -> None:
    async def main() -> bytes:
        with DelayProxy(free_port(), 0.01) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
            return data

    assert asyncio.run(main()) == b""


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="delay must not be negative"):
        DelayProxy(free_port(), -0.1)


def test_a_target_that_resets_the_connection_ends_it_without_a_proxy_failure() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()  # RST, not FIN: the peer is gone at once

    async def main() -> None:
        async with Target(reset) as target:
            with DelayProxy(target.port, 0.01) as proxy:
                for _ in range(20):  # the reset meets the proxy at a different step each time
                    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                    writer.write(b"frame")
                    writer.write_eof()
                    # The proxy passes the reset on, or ends the connection: either is an end.
                    with contextlib.suppress(ConnectionResetError):
                        assert await reader.read() == b""
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()
                await until(lambda: not proxy.busy, "the proxy to close every connection")
            # Leaving the block stopped the proxy: it raises what went wrong, and nothing did.

    asyncio.run(main())


def test_as_a_process_it_forwards_until_told_to_stop() -> None:
    # `bench ingest` runs it so, away from the load generator's GIL.
    async def main() -> None:
        async with Target(echo) as target:
            process = Process([sys.executable, "-m", "tests.netdelay", str(target.port), "0.01"])
            try:
                line = await asyncio.to_thread(process.wait_for_line, r"delaying on \d+", 30)
                port = int(re.findall(r"\d+", line.group(0))[0])
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"through the proxy")
                writer.write_eof()
                assert await reader.read() == b"through the proxy"
                writer.close()
                await writer.wait_closed()
                process.process.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(process.process.wait, 30) == 0
            finally:
                process.kill()

    asyncio.run(main())
