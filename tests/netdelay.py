"""A TCP proxy on loopback that delays every byte a fixed time each way: a real round trip.

This kernel has no ``netem``, and loopback alone hides the round trip that the
agent's window exists for. :class:`DelayProxy` accepts connections on a
loopback port and connects each one to a target; every chunk it reads from
either side is written to the other ``delay`` seconds after it was read, in
order. Chunks are delayed concurrently (a link's latency, not a bandwidth
limit), and each direction holds at most ``buffer_chunks`` chunks of at most
``chunk_size`` bytes: when that is full the proxy stops reading, so TCP's
backpressure reaches the sender as it would across a real link.

A half-close is passed on after the data before it (write_eof), a reset closes
both sides. Anything else that goes wrong is kept and raised by :meth:`stop`.
No pytest here, so the benchmarks can import it. ``python -m tests.netdelay
TARGET_PORT DELAY`` runs one as a process of its own (so that it does not share
a GIL with a load generator), prints ``delaying on PORT`` and runs until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from dataclasses import dataclass, field
from typing import Self

from framewire.common.serving import LoopThread

_LOGGER = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
BUFFER_CHUNKS = 64  # per direction: at most 4 MiB held, enough for 100 MB/s across 40 ms


@dataclass
class DirectionStats:
    """What one direction of all connections carried."""

    bytes: int = 0
    chunks: int = 0
    # The most bytes held at once by one connection's direction: at most
    # (buffer_chunks + 2) chunks (the queue, one being written, one waiting to join the queue).
    peak_buffered_bytes: int = 0
    buffered_bytes: int = 0  # held now, over every connection
    stalls: int = 0  # times the buffer was full, so the proxy stopped reading until it had room


@dataclass
class _Pipe:
    """One direction of one connection: read, stamp, hold until due, write."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    delay: float
    stats: DirectionStats
    queue: asyncio.Queue[tuple[float, bytes] | None]
    chunk_size: int
    held: int = field(default=0)

    async def read(self) -> None:
        while chunk := await self.reader.read(self.chunk_size):
            # Blocks while the buffer is full: the proxy stops reading, TCP pushes back.
            self.held += len(chunk)
            self.stats.buffered_bytes += len(chunk)
            self.stats.peak_buffered_bytes = max(self.stats.peak_buffered_bytes, self.held)
            if self.queue.full():
                self.stats.stalls += 1
            await self.queue.put((time.monotonic() + self.delay, chunk))
        await self.queue.put(None)

    async def write(self) -> None:
        while (item := await self.queue.get()) is not None:
            due, chunk = item
            # Held until due (asyncio's timers use this same clock, time.monotonic).
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.writer.write(chunk)
            await self.writer.drain()
            self.held -= len(chunk)
            self.stats.buffered_bytes -= len(chunk)
            self.stats.bytes += len(chunk)
            self.stats.chunks += 1
        if self.writer.can_write_eof():
            try:
                self.writer.write_eof()
            except OSError as error:
                if error.errno != errno.ENOTCONN:
                    raise
                # The peer is already gone (it reset the connection): end as a reset does.
                raise ConnectionResetError(str(error)) from error


class DelayProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port``, ``delay`` seconds each way.

    Runs on a loop thread of its own, so synchronous tests and benchmarks use it
    as a context manager; ``port`` is where to connect instead of the target.
    """

    def __init__(
        self,
        target_port: int,
        delay: float,
        *,
        target_host: str = "127.0.0.1",
        chunk_size: int = CHUNK_SIZE,
        buffer_chunks: int = BUFFER_CHUNKS,
    ) -> None:
        if delay < 0 or chunk_size < 1 or buffer_chunks < 1:
            raise ValueError("delay must not be negative, chunk_size and buffer_chunks positive")
        self.target = (target_host, target_port)
        self.delay = delay
        self.chunk_size = chunk_size
        self.buffer_chunks = buffer_chunks
        self.upstream = DirectionStats()  # client to target
        self.downstream = DirectionStats()  # target to client
        self.connections = 0
        self.errors: list[BaseException] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._loop = LoopThread("delay-proxy")
        try:
            self._server = self._loop.run(self._listen(), timeout=30)
        except BaseException:
            self._loop.close()
            raise
        self.port: int = self._server.sockets[0].getsockname()[1]

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accepted, "127.0.0.1", 0)

    async def _accepted(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections += 1
        target_writer: asyncio.StreamWriter | None = None
        try:
            try:
                target_reader, target_writer = await asyncio.open_connection(*self.target)
            except OSError:
                # The target is down: the client sees its connection close, as it would.
                client_writer.close()
                return
            pipes = (
                self._pipe(client_reader, target_writer, self.upstream),
                self._pipe(target_reader, client_writer, self.downstream),
            )
            steps = [
                asyncio.create_task(step()) for pipe in pipes for step in (pipe.read, pipe.write)
            ]
            try:
                await asyncio.gather(*steps)
            except ConnectionError:
                pass  # one side was reset: both are closed (below), as across a link
            finally:
                for step in steps:
                    step.cancel()
                await asyncio.gather(*steps, return_exceptions=True)
        except asyncio.CancelledError:
            # stop() ends the connections still open. Ending normally leaves asyncio's
            # start_server nothing to report as a failure (it logs a cancelled handler).
            return
        except Exception as error:
            _LOGGER.exception("delay proxy connection failed")
            self.errors.append(error)
        finally:
            writers = [writer for writer in (client_writer, target_writer) if writer is not None]
            for writer in writers:
                writer.close()
            for writer in writers:
                with contextlib.suppress(ConnectionError):  # a reset is how it may end
                    await writer.wait_closed()
            self._connections.discard(task)

    def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: DirectionStats
    ) -> _Pipe:
        return _Pipe(
            reader=reader,
            writer=writer,
            delay=self.delay,
            stats=stats,
            queue=asyncio.Queue(self.buffer_chunks),
            chunk_size=self.chunk_size,
        )

    @property
    def busy(self) -> bool:
        """Whether a connection is still open."""
        return bool(self._connections)

    def stop(self) -> None:
        """Closes the listener and every connection; raises the first unexpected error, if any."""

        async def close() -> None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

        try:
            self._loop.run(close(), timeout=30)
        finally:
            self._loop.close()
        if self.errors:
            raise RuntimeError(f"the delay proxy failed: {self.errors[0]!r}") from self.errors[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    import signal
    import threading

    target_port, delay = int(argv[0]), float(argv[1])
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with DelayProxy(target_port, delay) as proxy:
        print(f"delaying on {proxy.port}", flush=True)
        stopping.wait()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
