"""The GPU backends' decisions that need no GPU: precision, profiles, cache keys, buffers, graphs.

Everything here is plain Python, so it is unit-tested on any machine; the
TensorRT and torch backends only carry these plans out.

- :func:`resolve_precision`: ``auto`` becomes fp16 on a GPU with fast FP16.
- :class:`Profile`: the optimization profile of the image input (min batch 1,
  opt and max the max batch; a fixed-batch model gets its own size thrice).
- :class:`EngineKey` and :class:`EngineCache`: a built engine is only valid for
  the model bytes, TensorRT version, GPU, compute capability, precision and
  profile it was built for; the key covers all of them and a sidecar file
  repeats them, so a stale, corrupt or foreign file is rebuilt, never run.
- :func:`plan_buffers`: one device buffer per I/O tensor at the max batch,
  per concurrent batch, sized before anything is allocated.
- :func:`graph_batch_sizes` / :func:`bucket_for`: the batch sizes captured as
  CUDA graphs, and the one a batch of ``n`` runs as.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framewire.inference.inputs import InputSpec

_LOGGER = logging.getLogger(__name__)

# Bumped when the way framewire builds an engine changes what the file holds.
ENGINE_FORMAT = 1


def resolve_precision(requested: str, device_type: str, fast_fp16: bool) -> str:
    """``fp16`` or ``fp32`` for a ``--precision`` on a device (``cuda`` or ``cpu``).

    Raises :class:`ValueError` for fp16 where it cannot run well: on a CPU, or
    on a GPU without fast FP16.
    """
    if requested == "auto":
        return "fp16" if device_type == "cuda" and fast_fp16 else "fp32"
    if requested == "fp16" and device_type != "cuda":
        raise ValueError("--precision fp16 needs a CUDA device; on the CPU use fp32 or auto")
    if requested == "fp16" and not fast_fp16:
        raise ValueError(
            "--precision fp16: this GPU has no fast FP16 (compute capability below 5.3); "
            "use fp32 or auto"
        )
    if requested not in ("fp16", "fp32"):
        raise ValueError(f"unknown precision {requested!r}")
    return requested


def has_fast_fp16(compute_capability: tuple[int, int]) -> bool:
    """Whether a GPU of this compute capability runs FP16 at least as fast as FP32.

    True from 5.3 (Tegra X1) and 6.0 on, except 6.1 (consumer Pascal, where FP16
    runs at 1/64 rate). TensorRT's own ``platform_has_fast_fp16`` says the same.
    """
    return compute_capability >= (5, 3) and compute_capability != (6, 1)


@dataclass(frozen=True)
class Profile:
    """A TensorRT optimization profile on the image input: its shapes at min, opt and max."""

    input_name: str
    minimum: tuple[int, ...]
    optimum: tuple[int, ...]
    maximum: tuple[int, ...]

    @property
    def max_batch(self) -> int:
        return self.maximum[0]


def input_profile(input_name: str, spec: InputSpec, max_batch: int) -> Profile:
    """The profile for serving ``spec`` at up to ``max_batch`` images per run.

    ``opt`` is the max batch: a GPU server is built for full batches (ingest
    grows them under load), and TensorRT picks its fastest tactics for opt.
    """
    if spec.fixed_batch is not None:
        shape = spec.batch_shape(spec.fixed_batch)
        return Profile(input_name, shape, shape, shape)
    full = spec.batch_shape(max_batch)
    return Profile(input_name, spec.batch_shape(1), full, full)


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on."""

    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: str
    profile: Profile
    workspace_mib: int
    format: int = ENGINE_FORMAT

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["compute_capability"] = list(self.compute_capability)
        data["profile"] = {
            "input_name": self.profile.input_name,
            "minimum": list(self.profile.minimum),
            "optimum": list(self.profile.optimum),
            "maximum": list(self.profile.maximum),
        }
        return data

    @property
    def digest(self) -> str:
        """16 hex digits of the SHA-256 of the key's canonical JSON."""
        canonical = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def file_name(self, model_stem: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_stem) or "model"
        return f"{safe}-{self.digest}.engine"


class EngineCache:
    """A folder of serialized engines, each with a ``.json`` sidecar holding its key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: EngineKey, model_stem: str) -> Path:
        return self.folder / key.file_name(model_stem)

    def load(self, key: EngineKey, model_stem: str) -> bytes | None:
        """The engine stored for ``key``, or None (with a warning when a file was unusable)."""
        path = self.path(key, model_stem)
        sidecar = path.with_suffix(".json")
        if not path.exists():
            return None
        try:
            stored = json.loads(sidecar.read_text())
        except (OSError, ValueError) as error:
            _LOGGER.warning("engine cache: %s has no readable key (%s); rebuilding", path, error)
            return None
        if stored != key.as_json():
            _LOGGER.warning(
                "engine cache: %s was built for another model, GPU or setting; rebuilding", path
            )
            return None
        try:
            data = path.read_bytes()
        except OSError as error:
            _LOGGER.warning("engine cache: cannot read %s (%s); rebuilding", path, error)
            return None
        if not data:
            _LOGGER.warning("engine cache: %s is empty; rebuilding", path)
            return None
        return data

    def store(self, key: EngineKey, model_stem: str, data: bytes) -> Path:
        """Writes the engine and its key atomically (a reader never sees half a file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key, model_stem)
        _atomic_write(path, data)
        _atomic_write(path.with_suffix(".json"), json.dumps(key.as_json(), indent=2).encode())
        return path

    def discard(self, key: EngineKey, model_stem: str) -> None:
        """Removes a stored engine that failed to load."""
        path = self.path(key, model_stem)
        for stale in (path, path.with_suffix(".json")):
            stale.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class TensorBuffer:
    """One I/O tensor's buffer, sized for the max batch."""

    name: str
    is_input: bool
    dtype: str  # numpy name
    shape: tuple[int, ...]  # at the max batch

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class BufferPlan:
    """The device buffers one concurrent batch needs, and what all of them need together."""

    tensors: tuple[TensorBuffer, ...]
    copies: int

    @property
    def bytes_per_batch(self) -> int:
        return sum(tensor.nbytes for tensor in self.tensors)

    @property
    def total_bytes(self) -> int:
        return self.bytes_per_batch * self.copies

    @property
    def inputs(self) -> tuple[TensorBuffer, ...]:
        return tuple(tensor for tensor in self.tensors if tensor.is_input)

    @property
    def outputs(self) -> tuple[TensorBuffer, ...]:
        return tuple(tensor for tensor in self.tensors if not tensor.is_input)


def plan_buffers(
    tensors: Sequence[tuple[str, bool, str, Sequence[int]]], max_batch: int, copies: int
) -> BufferPlan:
    """Sizes each ``(name, is_input, numpy dtype, shape)`` at ``max_batch``.

    Shapes are the engine's as resolved for the max-batch input (``-1`` only
    where the batch goes, the first dimension). Raises :class:`ValueError` for
    a shape that still has an unknown dimension: a data-dependent output,
    which a preallocated buffer cannot hold.
    """
    if max_batch < 1 or copies < 1:
        raise ValueError("max_batch and copies must be at least 1")
    planned = []
    for name, is_input, dtype, shape in tensors:
        dims = list(shape)
        if dims and dims[0] == -1:
            dims[0] = max_batch
        if any(dim < 0 for dim in dims):
            raise ValueError(
                f"tensor {name} has shape {list(shape)} at batch {max_batch}: a dimension other "
                "than the batch is data-dependent, which framewire cannot preallocate; "
                "export the model with fixed output shapes (for example without NMS inside)"
            )
        planned.append(TensorBuffer(name, is_input, np.dtype(dtype).name, tuple(dims)))
    if not any(tensor.is_input for tensor in planned):
        raise ValueError("the engine has no input tensor")
    return BufferPlan(tuple(planned), copies)


def graph_batch_sizes(max_batch: int) -> tuple[int, ...]:
    """The batch sizes captured as CUDA graphs: powers of two below ``max_batch``, and it.

    A batch of ``n`` runs as the smallest captured size of at least ``n``; the
    rows past ``n`` hold whatever the buffer held and their outputs are ignored.
    At most twice the work of an exact size, for a handful of graphs instead
    of ``max_batch``.
    """
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    sizes = []
    size = 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return tuple(sizes)


def bucket_for(count: int, sizes: Sequence[int]) -> int:
    """The smallest size in ``sizes`` (ascending) that holds ``count`` images."""
    for size in sizes:
        if size >= count:
            return size
    raise ValueError(f"a batch of {count} is larger than the largest captured size {sizes[-1]}")
