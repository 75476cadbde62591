"""The ``framewire`` command: one entry point, one subcommand per way to run a service.

Subcommands are imported only when chosen, so ``framewire --help`` works on a
machine that installed only some extras, and a missing extra gives a clear
message instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from framewire.common import __version__


class Subcommand(Protocol):
    """What a subcommand module provides."""

    DESCRIPTION: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module, extra that provides its dependencies)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("framewire.ingest.serve_command", "server"),
    "ingest": ("framewire.ingest.ingest_command", "server"),
    "inference": ("framewire.inference.command", "server"),
    "demo": ("framewire.demo", "all"),
}

SUMMARIES = {
    "serve": "ingest with an in-process model on one port (single machine, the demo)",
    "ingest": "ingest only, batching frames to remote inference replicas",
    "inference": "the batched model service (InferenceService)",
    "demo": "a server and an edge agent on real video, printing detections and latency",
}


def load(name: str) -> Subcommand:
    """Imports a subcommand's module, explaining which extra is missing if that fails."""
    module_name, extra = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] == "framewire":
            raise
        raise SystemExit(
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
        + "\n\nRun 'framewire SUBCOMMAND --help' for its options.",
    )
    top.add_argument("--version", action="version", version=f"framewire {__version__}")
    top.add_argument("subcommand", choices=sorted(SUBCOMMANDS), metavar="SUBCOMMAND")
    if not arguments or arguments[0].startswith("-"):
        top.parse_args(arguments)  # prints help or version, or the usage error
        return 2
    name = arguments[0]
    if name not in SUBCOMMANDS:
        top.parse_args(arguments[:1])
        return 2
    subcommand = load(name)
    parser = argparse.ArgumentParser(prog=f"framewire {name}", description=subcommand.DESCRIPTION)
    subcommand.add_arguments(parser)
    return subcommand.run(parser.parse_args(arguments[1:]))


if __name__ == "__main__":
    sys.exit(main())
