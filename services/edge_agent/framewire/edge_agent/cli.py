"""The ``edge-agent`` command."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

from framewire.common import __version__, exits, settings
from framewire.common.exits import ExitCode
from framewire.common.logs import configure_logging
from framewire.edge_agent.agent import EdgeAgent
from framewire.edge_agent.config import AgentConfig
from framewire.edge_agent.errors import EXIT_CODES, AgentError
from framewire.edge_agent.output import ResultEvent, StatusLine

EPILOG = (
    "examples:\n"
    "  edge-agent --server 10.0.0.5:50051 --source 0 --resize 480x270 --blackout\n"
    "  edge-agent --server localhost:50051 --source video.mp4 --output jsonl\n"
    "  edge-agent --source rtsp://cam/stream --on-detect 'logger -t cam' "
    "--on-detect-classes person\n\n" + exits.describe(EXIT_CODES)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Capture frames on this device, compress them and stream them to a "
        "framewire ingest server, which streams detections back.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    settings.add_arguments(parser, AgentConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = settings.from_namespace(AgentConfig, args)
    except ValueError as error:
        parser.error(str(error))
    configure_logging(config.output.log_level)
    agent = EdgeAgent(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        agent.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    mode = config.output.output
    status: StatusLine | None = None
    if mode == "auto" and sys.stdout.isatty():
        status = StatusLine(sys.stdout)

    def refresh() -> None:
        if status is not None:
            ledger = agent.ledger
            status.update(
                sent=ledger.sent,
                answered=ledger.processed + ledger.failed,
                skipped_edge=agent.skipped_at_edge,
                skipped_server=sum(ledger.server_skipped.values()),
                bytes_sent=ledger.bytes_sent,
                latencies=ledger.latencies,
                connected=agent.connected,
            )

    def show(event: ResultEvent) -> None:
        if mode == "jsonl":
            print(json.dumps(event.to_json()), flush=True)
        refresh()

    agent.on_tick = refresh

    started = time.monotonic()
    code = ExitCode.OK
    try:
        summary = agent.run(on_result=show)
    except AgentError as error:
        summary = agent.summary(time.monotonic() - started)
        print(f"edge-agent: {error}", file=sys.stderr)
        code = error.exit_code
    finally:
        if status is not None:
            status.close()
    if mode == "jsonl":
        print(json.dumps(summary.to_json()), flush=True)
        print(summary.format(), file=sys.stderr)
    else:
        print(summary.format())
    for problem in summary.check():
        print(f"edge-agent: accounting error: {problem}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
