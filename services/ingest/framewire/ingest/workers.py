"""Every core for ingest: ``--workers N`` processes serving one port.

One Python process runs ingest on one core. With ``--workers N`` the command
becomes a small supervisor that starts N worker processes, each a complete
ingest server bound to the same port with SO_REUSEPORT, so the kernel spreads
new connections (and with them, device streams) over the workers. Workers are
*spawned* (fresh interpreters), not forked, so no gRPC state ever crosses a
fork, which gRPC does not support for servers (grpc's
``examples/python/multiprocessing`` forks before any gRPC object exists to the
same end).

``framewire serve --workers N`` keeps one model: the supervisor first starts a
``framewire inference`` worker on a loopback port, and the N ingest workers
send their batches to it, so the model's memory and warm-up are paid once.
Batches form within each ingest worker.

What the group looks like from outside:

- **Metrics.** One ``/metrics`` on ``--metrics-port`` (served by the
  supervisor) shows the group's totals: it scrapes every worker's own
  loopback endpoint at scrape time and adds counters, histograms and gauges
  up (gauges that state the same fact in every worker, such as how many
  inference targets are usable, are merged by taking the largest).
- **Health.** Every ingest worker answers ``grpc.health.v1`` on the shared
  port (and on ``--health-port``), from its own state.
- **Drain.** SIGTERM or SIGINT reaches the supervisor, which passes it on:
  every ingest worker drains its own streams within ``--shutdown-grace``, and
  the inference worker stops after them. A worker that dies on its own takes
  the group down (exit 1), so an orchestrator restarts the whole pod rather
  than leaving a port half served.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from framewire.common.cpus import quota_cap, usable_cores
from framewire.common.exits import ExitCode
from framewire.common.logs import configure_logging
from framewire.common.metrics import serve_metrics
from framewire.common.serving import ListenConfig, log_task_failure

_LOGGER = logging.getLogger(__name__)

# How long a worker may take to start (a model loads in the inference worker).
START_TIMEOUT = 300.0
SCRAPE_TIMEOUT = 2.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Gauges that every ingest worker states for itself about the same thing.
_SAME_IN_EVERY_WORKER = frozenset({"framewire_inference_targets_usable"})


# -- metrics ---------------------------------------------------------------------


def merge_expositions(texts: Iterable[str]) -> list[Metric]:
    """Adds up Prometheus text expositions of identical processes into one set of families.

    Samples with the same name and labels are summed; ``_created`` samples
    (a start time, meaningless once summed) are dropped; gauges in
    ``_SAME_IN_EVERY_WORKER`` and info metrics take the largest value.
    """
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            take_max = family.type == "info" or family.name in _SAME_IN_EVERY_WORKER
            samples = values.setdefault(merged.name, {})
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                previous = samples.get(key)
                if previous is None:
                    samples[key] = sample.value
                elif take_max:
                    samples[key] = max(previous, sample.value)
                else:
                    samples[key] = previous + sample.value
    for name, metric in families.items():
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)
    return list(families.values())


class MergedMetrics(Collector):
    """A collector that scrapes the workers' own endpoints and merges them, at scrape time."""

    def __init__(self, ports: Callable[[], list[int]]) -> None:
        self._ports = ports

    def collect(self) -> Iterator[Metric]:
        texts = []
        for port in self._ports():
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT
                ) as response:
                    texts.append(response.read().decode())
            except OSError as error:
                _LOGGER.warning("worker metrics on port %d could not be read: %s", port, error)
        yield from merge_expositions(texts)


# -- the workers -----------------------------------------------------------------


def _worker_listen(listen: ListenConfig, port: int, health_port: int) -> ListenConfig:
    """A worker's settings: the group's ports, shared; its own metrics port on loopback."""
    return dataclasses.replace(
        listen,
        port=port,
        health_port=health_port,
        metrics_host="127.0.0.1",
        metrics_port=0,
        reuse_port=True,
    )


def _follow_the_supervisor() -> None:
    """Makes a worker take signals from its supervisor only, and end if the supervisor dies.

    A worker leaves the supervisor's process group, so a Ctrl-C or a group
    signal reaches the supervisor alone, which stops the ingest workers first
    and the model after them. On Linux the kernel sends SIGTERM to the worker
    if the supervisor dies without stopping it.
    """
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def ingest_worker(config: Any, ready: Connection) -> None:
    """A worker process: a complete `framewire ingest`, reporting its metrics port when ready."""
    _follow_the_supervisor()
    from framewire.ingest.ingest_command import start_ingest  # noqa: PLC0415 - in the child
    from framewire.ingest.runner import serve_until_signal  # noqa: PLC0415

    def started(server: Any) -> None:
        # Ready means serving: the group is announced only once every worker
        # can take a stream (its inference target is up).
        async def when_serving() -> None:
            await server.serving.wait()
            ready.send(server.metrics_port)

        task = asyncio.get_running_loop().create_task(when_serving(), name="report ready")
        task.add_done_callback(log_task_failure)

    raise SystemExit(
        serve_until_signal(
            "ingest worker",
            config.listen,
            lambda: start_ingest(config),
            on_ready=started,
            announce=False,
        )
    )


def inference_worker(config: Any, ready: Connection) -> None:
    """The model's process under `framewire serve --workers`: reports its ports when ready."""
    _follow_the_supervisor()
    from framewire.inference.command import serve_inference  # noqa: PLC0415 - in the child

    def started(server: Any) -> None:
        ready.send((server.port, server.metrics_port))

    raise SystemExit(serve_inference(config, on_ready=started))


@dataclass
class _Worker:
    name: str
    process: BaseProcess
    metrics_port: int | None = None


def _reserve(host: str, port: int) -> socket.socket:
    """Binds ``host:port`` with SO_REUSEPORT so the workers can bind it too; learns port 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserved.bind((host, port))
    except OSError:
        reserved.close()
        raise
    return reserved


def _start(
    context: Any, name: str, target: Callable[[Any, Connection], None], config: Any
) -> tuple[_Worker, Any]:
    """Starts a worker process; returns it and what it reported when ready."""
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(config, sending), name=name, daemon=False)
    process.start()
    sending.close()
    ready = multiprocessing.connection.wait([receiving, process.sentinel], START_TIMEOUT)
    if receiving not in ready or not receiving.poll():
        process.terminate()
        process.join(10)
        raise RuntimeError(f"{name} did not start (exit code {process.exitcode})")
    return _Worker(name, process), receiving.recv()


def crowded_cores(workers: int, cores: int, *, quota: bool) -> str | None:
    """What to warn of when there are more ingest workers than cores to run them: each
    worker keeps a core busy under load, so the ones beyond the cores only share them."""
    if workers <= cores:
        return None
    limit = " (its CPU quota)" if quota else ""
    return (
        f"{workers} ingest workers on {cores} usable core{'s' if cores > 1 else ''}{limit}: "
        f"the workers beyond the cores can only share them; use --workers {cores} or fewer"
    )


def supervise(
    command: str,
    listen: ListenConfig,
    count: int,
    ingest_config: Callable[[ListenConfig, tuple[str, ...]], Any],
    inference_config: Any | None = None,
) -> int:
    """Runs ``count`` ingest workers on ``listen``'s port (and an inference worker, given its
    config) until SIGTERM or SIGINT; returns the exit code.

    ``ingest_config(listen, targets)`` builds one ingest worker's settings;
    ``targets`` is the inference worker's address, or empty when ingest has
    targets of its own.
    """
    configure_logging(listen.log_level, listen.log_format)
    if (crowded := crowded_cores(count, usable_cores(), quota=quota_cap() is not None)) is not None:
        _LOGGER.warning("%s", crowded)
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    received: list[int] = []

    def on_signal(number: int, _frame: Any) -> None:
        received.append(number)
        stop.set()

    previous = {
        number: signal.signal(number, on_signal) for number in (signal.SIGTERM, signal.SIGINT)
    }
    reserved: list[socket.socket] = []
    workers: list[_Worker] = []
    model: _Worker | None = None
    endpoint = None
    try:
        reserved.append(_reserve(listen.host, listen.port))
        port = reserved[0].getsockname()[1]
        health_port = listen.health_port
        if health_port >= 0:
            reserved.append(_reserve(listen.health_host, health_port))
            health_port = reserved[-1].getsockname()[1]
        targets: tuple[str, ...] = ()
        if inference_config is not None:
            model, (model_port, model_metrics) = _start(
                context, "framewire-inference", inference_worker, inference_config
            )
            model.metrics_port = model_metrics
            targets = (f"127.0.0.1:{model_port}",)
        worker_listen = _worker_listen(listen, port, health_port)
        for index in range(count):
            worker, metrics_port = _start(
                context,
                f"framewire-ingest-{index + 1}",
                ingest_worker,
                ingest_config(worker_listen, targets),
            )
            worker.metrics_port = metrics_port
            workers.append(worker)
        everyone = [*workers, *([model] if model else [])]
        if listen.metrics_port >= 0:
            registry = CollectorRegistry()
            registry.register(
                MergedMetrics(lambda: [w.metrics_port for w in everyone if w.metrics_port])
            )
            endpoint = serve_metrics(registry, listen.metrics_host, listen.metrics_port)
        metrics = f"metrics on port {endpoint.port}" if endpoint else "no metrics"
        _LOGGER.info(
            "IngestService serving on %s:%d (%s; %d workers)", listen.host, port, metrics, count
        )
        while not stop.is_set():
            ended = multiprocessing.connection.wait(
                [worker.process.sentinel for worker in everyone], timeout=0.5
            )
            if ended and not stop.is_set():
                for worker in everyone:
                    if not worker.process.is_alive():
                        _LOGGER.error(
                            "%s exited on its own (code %s): stopping the group",
                            worker.name,
                            worker.process.exitcode,
                        )
                return ExitCode.FAILURE
        _LOGGER.info(
            "signal %d: %d workers drain their streams for up to %gs",
            received[0],
            count,
            listen.shutdown_grace,
        )
        return ExitCode.OK
    except (OSError, RuntimeError, ValueError) as error:
        _LOGGER.error("framewire %s could not start: %s", command, error)
        return ExitCode.FAILURE
    finally:
        _stop(workers, listen.shutdown_grace)
        if model is not None:
            _stop([model], listen.shutdown_grace)
        if endpoint is not None:
            endpoint.close()
        for held in reserved:
            held.close()
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop(workers: list[_Worker], grace: float) -> None:
    """SIGTERM to every worker still running, then waits; kills what outlives the grace."""
    for worker in workers:
        if worker.process.is_alive() and worker.process.pid is not None:
            worker.process.terminate()
    for worker in workers:
        worker.process.join(grace + 10)
        if worker.process.is_alive():
            _LOGGER.error("%s did not stop within the grace period; killing it", worker.name)
            worker.process.kill()
            worker.process.join(10)
