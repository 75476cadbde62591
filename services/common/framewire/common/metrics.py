"""Prometheus plumbing shared by the services.

Each server owns a :class:`~prometheus_client.CollectorRegistry` of its own
instead of the process-wide default, so two servers in one process (the
embedded ``serve`` mode, tests) never mix their figures. Metric names follow
Prometheus conventions: ``framewire_`` prefix, base units (seconds, bytes),
``_total`` on counters, and no label whose values grow without bound.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

T = TypeVar("T")

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


class LoopCounter:
    """A counter updated from one thread only (an event loop): a plain number, no lock."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LoopHistogram:
    """A histogram updated from one thread only (an event loop): plain counts, no locks.

    prometheus-client takes a lock for every bucket and sum update; on a path
    that observes six stage latencies per frame that cost more than the rest
    of the bookkeeping. These values are read by the scrape thread, which
    copies them in one step; the count is derived from the copied buckets, so
    an exposition is always self-consistent.
    """

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, buckets: Sequence[float]) -> None:
        self._bounds = [float(bound) for bound in buckets]
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (upper bound, count) buckets ending with +Inf, and the sum."""
        counts = list(self._counts)
        total = self._sum
        buckets = []
        running = 0
        for bound, count in zip([*self._bounds, math.inf], counts, strict=True):
            running += count
            buckets.append(("+Inf" if math.isinf(bound) else str(bound), float(running)))
        return buckets, total


class LoopMetrics(Collector):
    """Counters and histograms for one event loop's hot path, exported at scrape time.

    Names and meanings follow the same conventions as prometheus-client's
    (counters get ``_total``); each metric's label values are fixed when it
    is declared, so no label can grow without bound.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counters: list[
            tuple[str, str, tuple[str, ...], dict[tuple[str, ...], LoopCounter]]
        ] = []
        self._histograms: list[
            tuple[str, str, tuple[str, ...], dict[tuple[str, ...], LoopHistogram]]
        ] = []
        registry.register(self)

    def counter(
        self, name: str, documentation: str, labels: dict[str, Sequence[str]] | None = None
    ) -> dict[tuple[str, ...], LoopCounter]:
        """Declares a counter family; returns one counter per combination of label values."""
        names, children = _children(labels, LoopCounter)
        self._counters.append((name, documentation, names, children))
        return children

    def histogram(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labels: dict[str, Sequence[str]] | None = None,
    ) -> dict[tuple[str, ...], LoopHistogram]:
        """Declares a histogram family; returns one histogram per combination of label values."""
        names, children = _children(labels, lambda: LoopHistogram(buckets))
        self._histograms.append((name, documentation, names, children))
        return children

    def collect(self) -> Iterator[Metric]:
        for name, documentation, names, counters in self._counters:
            family = CounterMetricFamily(name, documentation, labels=names)
            for values, counter in counters.items():
                family.add_metric(list(values), counter.value)
            yield family
        for name, documentation, names, histograms in self._histograms:
            histogram_family = HistogramMetricFamily(name, documentation, labels=names)
            for values, histogram in histograms.items():
                buckets, total = histogram.snapshot()
                histogram_family.add_metric(list(values), buckets, total)
            yield histogram_family


def _children(
    labels: dict[str, Sequence[str]] | None, make: Callable[[], T]
) -> tuple[tuple[str, ...], dict[tuple[str, ...], T]]:
    labels = labels or {}
    names = tuple(labels)
    combinations = itertools.product(*(labels[name] for name in names))
    return names, {tuple(values): make() for values in combinations}
