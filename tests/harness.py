"""Running real servers for tests and benchmarks: in a background event loop, or as subprocesses.

The one harness: ``tests/`` and ``bench/`` both start servers through it.
Servers start through the same factories the commands use, on port 0 or a
free port, and are stopped through their real shutdown path. No pytest here,
so the benchmarks can import it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Generic, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from framewire.common.serving import LoopThread

S = TypeVar("S")
T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerThread(Generic[S]):
    """A server started by an async factory, on its own loop thread."""

    def __init__(self, start: Callable[[], Awaitable[S]]) -> None:
        self.loop = LoopThread("test-server")

        async def started() -> S:
            return await start()

        try:
            self.server = self.loop.run(started(), timeout=120)
        except BaseException:
            self.loop.close()
            raise

    def stop(self, grace: float = 5.0) -> None:
        """Stops the server through its own stop(grace), then the loop, even if that fails."""
        stop = getattr(self.server, "stop")  # noqa: B009 - every server type has stop(grace)
        try:
            self.loop.run(stop(grace), timeout=grace + 30)
        finally:
            self.loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port that was free a moment ago (for servers that must restart on the same port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health_status(port: int, service: str = "", timeout: float = 2.0) -> str:
    """The grpc.health.v1 status name of a server, or the RPC error code name."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, step: float = 0.05
) -> None:
    """Polls ``condition`` until it holds; fails the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def scrape(port: int) -> str:
    """The text of a /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class Process:
    """A framewire command running as a subprocess, its output collected."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.output: list[str] = []
        self._lines = threading.Condition()
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                with self._lines:
                    self.output.append(line.rstrip("\n"))
                    self._lines.notify_all()

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """Waits for an output line matching ``pattern``; fails with the output so far."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lines:
            while True:
                for line in self.output[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.output)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and seen == len(self.output)):
                    break
                self._lines.wait(min(remaining, 0.2))
        raise AssertionError(
            f"no line matching {pattern!r} from {' '.join(self.args)} "
            f"(exit {self.process.poll()}):\n" + "\n".join(self.output[-40:])
        )

    def signal(self, number: int = signal.SIGTERM) -> None:
        self.process.send_signal(number)

    def wait(self, timeout: float) -> int:
        """The exit status, once the process ended and all its output was read."""
        code = self.process.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a service manager stops a server; the exit status."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def text(self) -> str:
        with self._lines:
            return "\n".join(self.output)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(timeout=5)


def framewire_command(*args: str) -> list[str]:
    """The command line for ``framewire ARGS`` with this interpreter."""
    return [sys.executable, "-m", "framewire.cli", *args]


@contextlib.contextmanager
def running(process: Process) -> Iterator[Process]:
    """Kills the process at the end of the block, whatever happened."""
    try:
        yield process
    finally:
        process.kill()
