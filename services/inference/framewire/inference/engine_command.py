"""``framewire engine build MODEL.onnx``: builds a TensorRT engine into the cache ahead of time.

For an init container or a deploy step: the server then finds the engine in
``--engine-cache`` and starts in seconds instead of building for minutes. The
cache key is computed exactly as ``--backend tensorrt`` computes it, so the
flags that shape the engine (``--max-batch``, ``--precision``,
``--input-size``, ``--workspace-mib``, ``--head``) must match the server's:
``framewire serve`` takes its max batch from ``--max-batch-size``.

Exit status: 0 with the cache key, the file and the build time (or "already
built"); 1 when TensorRT or a GPU is missing or the model cannot be built,
with the reason; 2 for a bad flag.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from framewire.common.exits import ExitCode
from framewire.common.logs import configure_logging
from framewire.inference.config import (
    HEADS,
    PRECISIONS,
    EngineConfig,
    default_engine_cache,
    parse_input_size,
)

DESCRIPTION = (
    "Build a TensorRT engine for an ONNX model into the engine cache, ahead of time (for an "
    "init container), and print its cache key and build time. Needs TensorRT 10 and an "
    "NVIDIA GPU; the flags must match the server's (framewire serve: --max-batch-size)."
)
EXIT_CODES = (ExitCode.OK, ExitCode.FAILURE, ExitCode.USAGE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = EngineConfig()
    parser.add_argument("action", choices=["build"], help="what to do (build)")
    parser.add_argument("model", type=Path, help="the ONNX model (YOLOv8/YOLO11/YOLOv5, SSD)")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=defaults.max_batch,
        help=f"largest batch the engine runs (framewire serve: --max-batch-size); "
        f"default {defaults.max_batch}",
    )
    parser.add_argument(
        "--engine-cache",
        type=Path,
        default=default_engine_cache(),
        help="folder of built engines (default: %(default)s)",
    )
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision)
    parser.add_argument("--head", choices=HEADS, default=defaults.head)
    parser.add_argument(
        "--input-size", type=parse_input_size, default=None, metavar="SIZE", help="640 or WxH"
    )
    parser.add_argument("--workspace-mib", type=int, default=defaults.workspace_mib)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, "text")
    try:
        config = EngineConfig(
            model=args.model,
            backend="tensorrt",
            max_batch=args.max_batch,
            engine_cache=args.engine_cache,
            precision=args.precision,
            head=args.head,
            input_size=args.input_size,
            workspace_mib=args.workspace_mib,
        )
    except ValueError as error:
        print(f"framewire engine: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if not args.model.is_file():
        print(f"framewire engine: model file {args.model} does not exist", file=sys.stderr)
        return ExitCode.FAILURE
    if args.model.suffix.lower() != ".onnx":
        print("framewire engine: TensorRT engines are built from .onnx models", file=sys.stderr)
        return ExitCode.USAGE
    try:
        from framewire.inference.gpu.tensorrt_backend import open_engine  # noqa: PLC0415

        _, _, device, prepared = open_engine(config, args.model)
    except ValueError as error:
        logging.getLogger(__name__).error("cannot build: %s", error)
        return ExitCode.FAILURE
    key = prepared.key
    print(f"cache key: {key.digest}")
    print(f"  model sha256 {key.model_sha256}, TensorRT {key.tensorrt_version}")
    major, minor = key.compute_capability
    profile = key.profile
    print(f"  GPU {key.gpu_name} (compute capability {major}.{minor})")
    print(
        f"  {key.precision}, input {profile.input_name} {list(profile.minimum)} "
        f"to {list(profile.maximum)}"
    )
    print(f"engine: {prepared.path if prepared.path else '(not saved: the cache is not writable)'}")
    if prepared.build_seconds is None:
        print("already built: loaded from the cache")
    else:
        print(f"built in {prepared.build_seconds:.1f} s on {device.name}")
    return ExitCode.OK
