"""Every default and limit of the inference service, in one place.

:class:`EngineConfig` is everything about the model and how it runs; it is
embedded as-is into ``framewire serve``, where it shares one command line with
ingest's settings, so its field names must not collide with theirs.
:class:`InferenceServerConfig` is what ``framewire inference`` takes. Flags and
``FRAMEWIRE_*`` environment variables map onto both through
:mod:`framewire.common.settings`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from framewire.common.contract import MAX_FRAME_PIXELS, PIPELINE_DEPTH
from framewire.common.cpus import usable_cores
from framewire.common.serving import ListenConfig, SecurityConfig
from framewire.common.settings import option, parse_duration
from framewire.common.transport import TransportConfig
from framewire.inference.heads import SsdHead, YoloV8Head

BACKENDS = ("onnxruntime", "opencv", "torch", "tensorrt", "null")
# The backends that run on a torch device with the GPU data path (framewire.inference.gpu).
DEVICE_BACKENDS = ("torch", "tensorrt")
HEADS = ("auto", "yolov8", "yolov5", "ssd")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp16", "fp32")
MERGE_CALLS = ("auto", "always", "never")

# The size of the largest batch a GPU backend is expected to be built for; a
# CPU gains nothing from batches this large, but the limit keeps one request
# from holding gigabytes of decoded pixels.
MAX_BATCH_LIMIT = 64
# Decode threads when none are configured: one per core up to this many; more
# would only compete with the model's own threads.
MAX_DEFAULT_DECODE_THREADS = 8
# The longest --spin-wait: ONNX Runtime's threads spinning longer than this between
# runs only burn a core that another process (or the decode threads) could use.
MAX_SPIN_WAIT = 0.1
# The first ONNX Runtime that bounds its threads' spinning
# (session.intra_op.spin_duration_us); an older one ignores the bound and would
# spin for as long as it always did, so there --spin-wait is ignored.
BOUNDED_SPIN_SINCE = (1, 26)


def default_engine_cache() -> Path:
    """``$XDG_CACHE_HOME/framewire/engines``, else ``~/.cache/framewire/engines``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "framewire" / "engines"


def parse_input_size(text: str) -> tuple[int, int]:
    """Parses ``"640"`` (square) or ``"640x384"`` (width x height) into ``(width, height)``."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if match is None:
        raise ValueError(f"{text!r} is not an input size: use 640 or WIDTHxHEIGHT like 640x384")
    width = int(match[1])
    height = int(match[2]) if match[2] else width
    if width <= 0 or height <= 0:
        raise ValueError(f"{text!r}: width and height must be positive")
    return width, height


@dataclass(frozen=True)
class EngineConfig:
    """The model, how it runs, and the limits on what it is given."""

    model: Path | None = option(
        None,
        "model file: .onnx, a TorchScript export (.torchscript), or a TensorFlow frozen graph "
        ".pb (with --model-config); none: the built-in SSD MobileNet v2 COCO",
        metavar="PATH",
    )
    model_config: Path | None = option(
        None, "text graph (.pbtxt) for a TensorFlow frozen graph (opencv backend)", metavar="PATH"
    )
    backend: str | None = option(
        None,
        "runtime: onnxruntime, opencv, torch (TorchScript), tensorrt (an .onnx built into a "
        "TensorRT engine) or null (no model, for transport benchmarks); none: chosen from the "
        "model file (.onnx: onnxruntime, .pb: opencv, .torchscript: torch)",
        choices=BACKENDS,
    )
    head: str = option(
        "auto", "output layout to decode; auto reads it from the model", choices=HEADS
    )
    labels: Path | None = option(
        None,
        "class names, one per line, overriding the built-in COCO labels (see docs/inference.md)",
        metavar="PATH",
    )
    max_batch: int = option(8, "largest number of images in one Detect call (one model batch)")
    input_size: tuple[int, int] | None = option(
        None,
        "model input size, 640 or WIDTHxHEIGHT; none: from the model "
        f"(YOLO {YoloV8Head.default_input_size[0]}, SSD {SsdHead.default_input_size[0]})",
        parse=parse_input_size,
        metavar="SIZE",
    )
    score_threshold: float = option(
        0.5, "default minimum score of a detection, when a request gives none"
    )
    iou_threshold: float = option(
        0.45, "boxes of one class overlapping more than this (IoU) are merged by NMS (YOLO)"
    )
    max_detections: int = option(100, "most detections returned per image")
    max_nms_candidates: int = option(
        30000, "most boxes per image considered by NMS, highest scores first (YOLO)"
    )
    max_image_pixels: int = option(
        MAX_FRAME_PIXELS,
        "largest image accepted, in pixels (width x height, read from the JPEG header "
        "before decoding); larger ones get RESOURCE_EXHAUSTED",
    )
    max_image_pixels_per_byte: int = option(
        1000,
        "an image whose JPEG header declares more pixels per byte of data than this is "
        "refused as truncated or crafted, before decoding (real JPEGs: at most about 256)",
    )
    device: str = option(
        "auto",
        "where the model runs: auto uses CUDA when the backend has it (onnxruntime-gpu, "
        "torch built with CUDA and a GPU), else the CPU; tensorrt always runs on CUDA",
        choices=DEVICES,
    )
    precision: str = option(
        "auto",
        "arithmetic of the torch and tensorrt backends: auto is fp16 on a GPU with fast FP16 "
        "and fp32 elsewhere",
        choices=PRECISIONS,
    )
    engine_cache: Path = option(
        default_engine_cache(),
        "folder of built TensorRT engines, one per model, TensorRT version, GPU, precision and "
        "batch profile (framewire engine build fills it ahead of time)",
        metavar="DIR",
    )
    workspace_mib: int = option(
        4096, "most GPU memory the TensorRT builder may use for its tactics, in MiB"
    )
    cuda_graphs: bool = option(
        True,
        "torch backend on CUDA: capture the model once per batch-size bucket as a CUDA graph "
        "and replay it (one launch per batch instead of one per layer)",
    )
    intra_op_threads: int = option(
        0,
        "threads inside one model call; 0: the runtime's default (one per core), or under a "
        "CPU quota (a container's CPU limit) the quota's cores. For opencv "
        "this sets OpenCV's process-wide thread count",
    )
    spin_wait: float = option(
        0.0,
        "how long onnxruntime's idle threads spin for more work before they sleep, up to "
        f"{MAX_SPIN_WAIT:g}s (onnxruntime {'.'.join(map(str, BOUNDED_SPIN_SINCE))} or later): "
        "1ms serves a lone camera that keeps the model busy more frames for more CPU; "
        "0: they sleep at once",
        parse=parse_duration,
    )
    decode_threads: int = option(
        0,
        "threads decoding and preprocessing images; 0: one per CPU core (within a CPU quota), "
        f"at most {MAX_DEFAULT_DECODE_THREADS}",
    )
    concurrent_batches: int = option(
        2,
        "batches prepared or run at once, each with its own preallocated input buffer: "
        "2 lets one batch decode while another runs on the model, and on ONNX Runtime, "
        "whose runs may overlap, keeps the cores busy between one run's operators",
    )

    def __post_init__(self) -> None:
        # Flags are checked by argparse; environment variables only here.
        for name, allowed in (
            ("backend", BACKENDS),
            ("head", HEADS),
            ("device", DEVICES),
            ("precision", PRECISIONS),
        ):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if not 1 <= self.max_batch <= MAX_BATCH_LIMIT:
            raise ValueError(f"max_batch must be within 1..{MAX_BATCH_LIMIT}, not {self.max_batch}")
        for name in ("score_threshold", "iou_threshold"):
            value = getattr(self, name)
            if math.isnan(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {value}")
        if self.max_detections < 1:
            raise ValueError("max_detections must be at least 1")
        if self.max_nms_candidates < self.max_detections:
            raise ValueError("max_nms_candidates must be at least max_detections")
        if self.max_image_pixels < 1 or self.max_image_pixels_per_byte < 1:
            raise ValueError("max_image_pixels and max_image_pixels_per_byte must be at least 1")
        if self.intra_op_threads < 0 or self.decode_threads < 0:
            raise ValueError("intra_op_threads and decode_threads must not be negative")
        if math.isnan(self.spin_wait) or not 0.0 <= self.spin_wait <= MAX_SPIN_WAIT:
            raise ValueError(
                f"spin_wait must be within 0..{MAX_SPIN_WAIT:g} s, not {self.spin_wait}"
            )
        if self.workspace_mib < 1:
            raise ValueError("workspace_mib must be at least 1")
        if self.concurrent_batches < 1:
            raise ValueError("concurrent_batches must be at least 1")
        if self.input_size is not None and min(self.input_size) < 1:
            raise ValueError("input_size must be positive")
        if self.model_config is not None and self.model is None:
            raise ValueError("model_config is the text graph of --model; give --model too")

    def batches_at_once(self, concurrent_runs: bool) -> int:
        """Batches worth preparing and sending at once (each with its own input buffer):
        ``concurrent_batches`` where the backend's runs overlap; where they cannot, one
        running and one being prepared (more would only queue, holding a buffer)."""
        if concurrent_runs:
            return self.concurrent_batches
        return min(self.concurrent_batches, PIPELINE_DEPTH)

    def decode_thread_count(self) -> int:
        """``decode_threads``, or the default for this machine when it is 0."""
        return self.decode_threads or min(MAX_DEFAULT_DECODE_THREADS, usable_cores())


@dataclass(frozen=True)
class InferenceServerConfig:
    """Everything ``framewire inference`` takes: the engine, where it listens, the transport."""

    engine: EngineConfig = EngineConfig()
    listen: ListenConfig = ListenConfig()
    transport: TransportConfig = TransportConfig()
    security: SecurityConfig = SecurityConfig()
    max_queued_calls: int = option(
        64,
        "Detect calls waiting for a free batch slot; more are refused with RESOURCE_EXHAUSTED",
    )
    merge_calls: str = option(
        "auto",
        "whether Detect calls that wait for a batch slot run together as one model batch "
        "(from several ingest processes): auto (where a bigger batch costs less per image: "
        "a GPU, or a model with a fixed batch size), always, never",
        choices=MERGE_CALLS,
    )

    def __post_init__(self) -> None:
        if self.max_queued_calls < 0:
            raise ValueError("max_queued_calls must not be negative")
        if self.merge_calls not in MERGE_CALLS:
            raise ValueError(
                f"merge_calls must be one of {', '.join(MERGE_CALLS)}, not {self.merge_calls!r}"
            )
