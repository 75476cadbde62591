"""The ``framewire`` command: one entry point, one subcommand per way to run a service.

Subcommands are imported only when chosen, so ``framewire --help`` works on a
machine that installed only some extras, and a missing extra gives a clear
message instead of a traceback. Every subcommand ends with framewire's one set
of exit codes (:mod:`framewire.common.exits`) and lists its own in ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import Protocol, cast

from framewire.common import __version__, exits
from framewire.common.exits import ExitCode


class Subcommand(Protocol):
    """What a subcommand module provides."""

    DESCRIPTION: str
    EXIT_CODES: Sequence[ExitCode]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module, extra that provides its dependencies)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("framewire.ingest.serve_command", "server"),
    "ingest": ("framewire.ingest.ingest_command", "server"),
    "inference": ("framewire.inference.command", "server"),
    "engine": ("framewire.inference.engine_command", "server"),
    "demo": ("framewire.demo.command", "all"),
    "token": ("framewire.common.token_command", "server"),
}

SUMMARIES = {
    "serve": "ingest with an in-process model on one port (single machine, the demo)",
    "ingest": "ingest only, batching frames to remote inference replicas",
    "inference": "the batched model service (InferenceService)",
    "engine": "'engine build MODEL.onnx': build a TensorRT engine into the cache ahead of time",
    "demo": "a server and an edge agent on real video, printing detections and latency",
    "token": "'token new --stream-id ID': a device token and its line for --auth-tokens",
}


class MissingExtra(Exception):
    """A subcommand needs a package that its extra would have installed."""


def load(name: str) -> Subcommand:
    """Imports a subcommand's module; raises :class:`MissingExtra` saying what to install."""
    module_name, extra = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] == "framewire":
            raise
        raise MissingExtra(
            f"framewire {name}: the Python package {error.name!r} is missing; "
            f"install it with: pip install 'framewire[{extra}]'"
        ) from error
    return cast(Subcommand, module)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``framewire SUBCOMMAND ...`` and returns its exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(
        prog="framewire",
        description="Real-time object detection for small devices: server side.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n"
        + "\n".join(f"  {name:<10} {SUMMARIES[name]}" for name in SUBCOMMANDS)
        + "\n\nRun 'framewire SUBCOMMAND --help' for its options and exit codes.",
    )
    top.add_argument("--version", action="version", version=f"framewire {__version__}")
    top.add_argument("subcommand", choices=sorted(SUBCOMMANDS), metavar="SUBCOMMAND")
    if not arguments or arguments[0].startswith("-"):
        top.parse_args(arguments)  # prints help or version, or the usage error
        return ExitCode.USAGE
    name = arguments[0]
    if name not in SUBCOMMANDS:
        top.parse_args(arguments[:1])
        return ExitCode.USAGE
    try:
        subcommand = load(name)
    except MissingExtra as error:
        print(error, file=sys.stderr)
        return ExitCode.FAILURE
    parser = argparse.ArgumentParser(
        prog=f"framewire {name}",
        # The exit-code table keeps its lines, so the description is wrapped
        # here as argparse would have wrapped it.
        description=textwrap.fill(
            " ".join(subcommand.DESCRIPTION.split()), shutil.get_terminal_size().columns - 2
        ),
        epilog=exits.describe(subcommand.EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommand.add_arguments(parser)
    return subcommand.run(parser.parse_args(arguments[1:]))


if __name__ == "__main__":
    sys.exit(main())
