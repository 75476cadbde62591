"""`framewire demo`: the whole loop on one machine, on real video.

Starts the embedded server (`framewire serve`: ingest with SSD MobileNet v2
COCO in-process) on a free local port, streams a real video to it with the
edge agent, prints each frame's detections as they come back, and ends with
the agent's summary and a snapshot of the server's Prometheus metrics. With
``--tls`` the loop runs as a deployment should: TLS with a certificate from a
throwaway CA, and a device token (docs/security.md). Reflection is on, so
``grpcurl`` can look around.

The video: ``--video PATH``, or else OpenCV's ``vtest.avi`` (people and cars
on a street) from Debian's ``opencv-doc`` package, fetched once with
``apt-get download`` into ``~/.cache/framewire/media``, or else a clip made
from scikit-image's sample photos. See :mod:`framewire.demo.media`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import math
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from framewire.common.auth import entry_line, new_token
from framewire.common.contract import SERVER_SKIP_REASONS, STAGES
from framewire.common.exits import ExitCode
from framewire.common.logs import configure_logging
from framewire.common.serving import ListenConfig, LoopThread, SecurityConfig
from framewire.common.settings import parse_wxh
from framewire.common.transport import TransportConfig
from framewire.demo.media import MediaError, demo_video
from framewire.edge_agent import AgentConfig, AgentError, EdgeAgent, ResultEvent
from framewire.edge_agent.config import with_options
from framewire.inference import EngineConfig
from framewire.ingest.config import IngestConfig
from framewire.ingest.preview import PreviewConfig
from framewire.ingest.serve_command import ServeConfig, start_serve
from framewire.ingest.server import IngestServer

DESCRIPTION = (
    "Run the whole loop on this machine: the embedded server and an edge agent streaming "
    "real video, printing detections live, then a latency summary and the server's metrics."
)

_LOGGER = logging.getLogger(__name__)

# The server runs on this machine: an agent that cannot reach it for this long never will.
AGENT_CONNECT_TIMEOUT = 10.0

#: How the demo ends (framewire's one scheme; see docs/exit-codes.md).
EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode.OK,
    ExitCode.FAILURE,
    ExitCode.USAGE,
    ExitCode.SOURCE_FAILED,
    ExitCode.SERVER_UNREACHABLE,
    ExitCode.STREAM_REFUSED,
    ExitCode.AUTH_REFUSED,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, help="video file to stream (default: vtest.avi)")
    parser.add_argument(
        "--frames", type=int, default=150, help="frames to capture (default: 150, 15 s of vtest)"
    )
    parser.add_argument(
        "--fps", type=float, default=None, help="capture rate (default: the video's own)"
    )
    parser.add_argument(
        "--resize", type=parse_wxh, default=(640, 480), metavar="WxH",
        help="size frames are sent at (default: 640x480)",
    )  # fmt: skip
    parser.add_argument(
        "--blackout", action="store_true", help="send only the regions around the last detections"
    )
    parser.add_argument("--model", type=Path, help="model file (default: SSD MobileNet v2 COCO)")
    parser.add_argument(
        "--backend", choices=("onnxruntime", "opencv"), help="model runtime (default: from model)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not print each frame")
    parser.add_argument(
        "--preview-port", type=int, default=0,
        help="port of the live preview page on 127.0.0.1 (default: 0, a free port; -1: off)",
    )  # fmt: skip
    parser.add_argument(
        "--track", action=argparse.BooleanOptionalAction, default=True,
        help="track objects: each detection gets an id (default: on)",
    )  # fmt: skip
    parser.add_argument(
        "--tls",
        action="store_true",
        help="stream over TLS with a throwaway CA's certificate and a device token",
    )


def describe(event: ResultEvent) -> str:
    """One line per answer: what was found and how long it took."""
    if event.kind == "skip_notice":
        skipped = ", ".join(f"{seq} ({reason})" for seq, reason in event.skipped)
        return f"        skipped by the server: {skipped}"
    counts = collections.Counter(event.labels)
    found = ", ".join(f"{count} {label}" for label, count in counts.most_common()) or "nothing"
    if event.error:
        found = f"error {event.error[0]}: {event.error[1]}"
    latency = f"{event.latency * 1000:5.0f} ms" if event.latency is not None else "    -"
    server = event.server_timings
    stages = "  ".join(
        f"{stage} {server[stage] * 1000:.0f}"
        for stage in ("queue", "decode", "inference", "total")
        if stage in server
    )
    keyframe = " key" if event.frame is not None and event.frame.keyframe else ""
    skipped = f"  (+{len(event.skipped)} skipped)" if event.skipped else ""
    return f"frame {event.seq:4d}{keyframe}: {found:<38} {latency}  server ms: {stages}{skipped}"


def histogram_quantile(quantile: float, buckets: list[tuple[float, float]]) -> float | None:
    """Estimates a quantile from cumulative (upper bound, count) buckets, as PromQL does."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = quantile * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in buckets:
        if count >= rank:
            if math.isinf(upper_bound):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (upper_bound - lower_bound) * share
        lower_bound, lower_count = upper_bound, count
    return None


def metrics_snapshot(text: str) -> str:
    """The server metrics worth reading after a demo, from Prometheus text format."""
    samples: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_bucket"):
                key = sample.name.removesuffix("_bucket") + _label_text(
                    {k: v for k, v in labels.items() if k != "le"}
                )
                buckets[key].append((float(labels["le"]), sample.value))
            else:
                samples[sample.name + _label_text(labels)] = sample.value

    def count(name: str) -> int:
        return int(samples.get(name, 0))

    lines = [
        "server metrics (Prometheus, framewire_*):",
        f"  frames received {count('framewire_frames_received_total')}, processed "
        f"{count('framewire_frames_processed_total')}, failed "
        f"{count('framewire_frames_failed_total')}, skipped "
        + ", ".join(
            f"{count(f'framewire_frames_skipped_total{{reason={reason}}}')} {reason}"
            for reason in SERVER_SKIP_REASONS
        ),
        f"  edge (agent reports): captured {count('framewire_edge_frames_captured_total')}, "
        f"sent {count('framewire_edge_frames_sent_total')}, bytes "
        f"{count('framewire_edge_sent_bytes_total')}",
    ]
    for stage in STAGES:
        values = buckets.get(f"framewire_stage_latency_seconds{{stage={stage}}}", [])
        p50, p95 = histogram_quantile(0.5, values), histogram_quantile(0.95, values)
        if p50 is not None and p95 is not None:
            lines.append(f"  stage {stage:<11} p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms")
    e2e = buckets.get("framewire_end_to_end_latency_seconds", [])
    p50, p95 = histogram_quantile(0.5, e2e), histogram_quantile(0.95, e2e)
    if p50 is not None and p95 is not None:
        lines.append(
            f"  end to end        p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"
            "   (capture to result, reported by the agent)"
        )
    batches = samples.get("framewire_batch_size_count", 0)
    if batches:
        mean = samples.get("framewire_batch_size_sum", 0) / batches
        lines.append(f"  batches {int(batches)}, mean size {mean:.2f}")
    return "\n".join(lines)


def _label_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f"{key}={value}" for key, value in sorted(labels.items())) + "}"


def run(args: argparse.Namespace) -> int:
    configure_logging("warning")
    try:
        # Checked before the model loads; the server's address comes later.
        agent_config = with_options(
            AgentConfig(),
            {
                "stream_id": "demo",
                "frames": args.frames,
                "fps": args.fps,
                "resize": args.resize,
                "blackout": args.blackout,
                "connect_timeout": AGENT_CONNECT_TIMEOUT,
                "track": args.track,
            },
        )
        preview = PreviewConfig(preview_port=args.preview_port)
    except ValueError as error:
        print(f"framewire demo: error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if args.video is not None:
        if not args.video.is_file():
            print(f"framewire demo: no such video file: {args.video}", file=sys.stderr)
            return ExitCode.SOURCE_FAILED
        video, origin = args.video, "given with --video"
    else:
        try:
            found = demo_video()
        except MediaError as error:
            print(f"framewire demo: {error}", file=sys.stderr)
            return ExitCode.SOURCE_FAILED
        video, origin = found.path, f"{found.description}; licence: {found.licence}"
    print(f"video: {video}\n       {origin}")

    with tempfile.TemporaryDirectory(prefix="framewire-demo-") as scratch:
        security = SecurityConfig(reflection=True)
        if args.tls:
            try:
                security, agent_config = _throwaway_credentials(Path(scratch), agent_config)
            except ImportError as error:
                print(
                    f"framewire demo --tls: the Python package {error.name!r} is missing; "
                    "install it with: pip install 'framewire[all]'",
                    file=sys.stderr,
                )
                return ExitCode.FAILURE
        return _run_loop(args, video, agent_config, security, preview)


def _throwaway_credentials(
    folder: Path, agent_config: AgentConfig
) -> tuple[SecurityConfig, AgentConfig]:
    """A CA, a server certificate and a device token for one run, as files in ``folder``."""
    from framewire.common.throwaway_ca import ThrowawayCA  # noqa: PLC0415 - needs cryptography

    ca = ThrowawayCA("framewire demo CA")
    ca_file = ca.write(folder, "ca")
    cert, key = ca.issue(["localhost", "127.0.0.1"]).write(folder, "server")
    token = new_token()
    tokens = folder / "tokens"
    tokens.write_text(entry_line("demo-agent", token, [agent_config.stream.stream_id]) + "\n")
    token_file = folder / "device-token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    print(
        f"tls: server certificate from a throwaway CA ({ca_file}); device token for stream "
        f"{agent_config.stream.stream_id!r} in {token_file}"
    )
    security = SecurityConfig(tls_cert=cert, tls_key=key, auth_tokens=tokens, reflection=True)
    agent_config = with_options(agent_config, {"tls_ca": ca_file, "token_file": token_file})
    return security, agent_config


def _run_loop(
    args: argparse.Namespace,
    video: Path,
    agent_config: AgentConfig,
    security: SecurityConfig,
    preview: PreviewConfig,
) -> int:
    """Starts the server, streams the video to it, prints the summary and the metrics."""
    engine = EngineConfig(model=args.model, backend=args.backend)
    config = ServeConfig(
        engine=engine,
        ingest=IngestConfig(preview=preview),
        listen=ListenConfig(host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0),
        transport=TransportConfig(),
        security=security,
    )
    print("starting the server (loading the model)...", flush=True)
    loop = LoopThread("demo-server")
    started = time.monotonic()
    try:
        server: IngestServer = loop.run(start_serve(config), timeout=300)
    except (OSError, ValueError) as error:
        loop.close()
        print(f"framewire demo: the server could not start: {error}", file=sys.stderr)
        return ExitCode.FAILURE
    model = server.hub.model
    print(
        f"server: 127.0.0.1:{server.port}{' (TLS, token required)' if security.tls else ''}, "
        f"model {model.model_id if model else '?'} "
        f"(ready in {time.monotonic() - started:.1f} s); metrics: "
        f"http://127.0.0.1:{server.metrics_port}/metrics"
    )
    if server.preview_url:
        print(f"preview: {server.preview_url} (live, while the demo runs)")
    print(f"agent: streaming {args.frames} frames at {args.resize[0]}x{args.resize[1]}\n")
    agent = EdgeAgent(agent_config, server=f"127.0.0.1:{server.port}", source=str(video))
    status: int = ExitCode.OK
    summary = None
    try:
        with _stopped_by_signals(agent):
            summary = agent.run(on_result=None if args.quiet else lambda e: print(describe(e)))
    except AgentError as error:
        print(f"framewire demo: {error}", file=sys.stderr)
        status = error.exit_code
    finally:
        text = generate_latest(server.registry).decode()
        loop.run(server.stop(5.0), timeout=60)
        loop.close()
    if summary is not None:
        print("\n" + summary.format())
        problems = summary.check()
        for problem in problems:
            print(f"accounting error: {problem}", file=sys.stderr)
        if problems or summary.processed == 0:
            status = ExitCode.FAILURE
    print("\n" + metrics_snapshot(text))
    return status


@contextlib.contextmanager
def _stopped_by_signals(agent: EdgeAgent) -> Iterator[None]:
    """SIGINT and SIGTERM stop the agent as they stop ``edge-agent``.

    Answers in flight still arrive, the summary and metrics print, and the
    exit status is 0, as for every framewire command stopped by a signal.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        agent.stop()

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread
        return
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
