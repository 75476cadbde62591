"""Prometheus plumbing shared by the services.

Each server owns a :class:`~prometheus_client.CollectorRegistry` of its own
instead of the process-wide default, so two servers in one process (the
embedded ``serve`` mode, tests) never mix their figures. Metric names follow
Prometheus conventions: ``framewire_`` prefix, base units (seconds, bytes),
``_total`` on counters, and no label whose values grow without bound.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

# Latency buckets in seconds, from 1 ms to 10 s: spans a GPU batch (a few ms)
# and a CPU model on a Raspberry Pi's frames under load (seconds).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.35,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
    10.0,
)

# Batch sizes up to 64: one bucket per power of two plus the odd sizes a CPU
# batcher often ends at.
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` HTTP endpoint."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port the endpoint listens on (useful when started on port 0)."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stops serving and releases the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serves ``registry`` at ``http://host:port/metrics`` from a daemon thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(server=server, thread=thread)
