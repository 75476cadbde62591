"""``--backend tensorrt``: an ONNX export built into a TensorRT 10 engine, cached, run on CUDA.

**Status: written to the TensorRT 10 Python API and never run.** TensorRT
cannot be installed on this project's machines (PyPI's ``tensorrt-cu12/13``
packages download NVIDIA's libraries at install time, which these machines
cannot reach) nor on the GPU machine lent to it. What is tested without
TensorRT: the cache key, the profile, the buffer plan and the cache's handling
of stale and corrupt files (:mod:`framewire.inference.gpu.plan`), the
start-up error when TensorRT is missing, and this module's own code end to end
against a stand-in that offers the same calls with ONNX Runtime doing the work
(tests/inference/fake_tensorrt.py). See docs/gpu.md for what ran where.

How it works:

- **Build** (:func:`build_serialized`): ``Builder``, a network from
  ``OnnxParser``, a ``BuilderConfig`` with a workspace pool limit
  (``--workspace-mib``), FP16 where the GPU has fast FP16 (``--precision``),
  and one optimization profile on the image input: batch 1 to the max batch,
  tuned for the max batch.
- **Cache** (``--engine-cache``): the serialized engine is stored under a key
  of the model's SHA-256, the TensorRT version, the GPU's name and compute
  capability, the precision, the profile and the workspace. A matching file is
  deserialized with ``Runtime.deserialize_cuda_engine`` (no rebuild on
  restart); a missing, mismatched or corrupt one is rebuilt with a warning.
  ``framewire engine build`` fills the cache ahead of time.
- **Run** (:meth:`TensorRtBackend.run_device`): ``set_input_shape``,
  ``set_tensor_address`` for every I/O tensor and ``execute_async_v3`` on the
  device's current CUDA stream, the stream the GPU decode, preprocessing and
  NMS use too.
- **Buffers**: device memory for every I/O tensor at the max batch, one set per
  concurrent batch, allocated once. They are PyTorch tensors rather than
  pycuda or cuda-python allocations: the shared GPU data path (nvJPEG decode,
  resize, NMS) already runs on PyTorch, so one allocator and one stream serve
  every step with no copies or context juggling between libraries, and pycuda
  is an sdist that needs the CUDA headers to install. The page-locked host
  buffer for the detections is the GPU engine's (one per concurrent batch).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framewire.inference.config import EngineConfig
from framewire.inference.gpu.backend import DeviceBackend
from framewire.inference.gpu.plan import (
    BufferPlan,
    EngineCache,
    EngineKey,
    input_profile,
    plan_buffers,
    resolve_precision,
)
from framewire.inference.gpu.runtime import Device, choose_device, import_tensorrt, import_torch
from framewire.inference.heads import Head, SsdHead, YoloV8Head, guess_head
from framewire.inference.inputs import InputSpec, input_spec
from framewire.inference.models import weights_digest
from framewire.inference.signature import ModelSignature, TensorInfo, read_onnx_signature

_LOGGER = logging.getLogger(__name__)


def build_spec(signature: ModelSignature, config: EngineConfig) -> InputSpec:
    """The input an engine is built for: what ``input_spec`` settles for the model's head.

    ``framewire engine build`` and ``--backend tensorrt`` both use this, so a
    prebuilt engine's key is the one the server looks for.
    """
    family: type[Head] = SsdHead if _head_name(signature, config) == "ssd" else YoloV8Head
    return input_spec(signature, family, config, config.max_batch)


def _head_name(signature: ModelSignature, config: EngineConfig) -> str:
    return config.head if config.head != "auto" else guess_head(signature.outputs)


def engine_key(
    path: Path,
    signature: ModelSignature,
    config: EngineConfig,
    tensorrt_version: str,
    device: Device,
) -> EngineKey:
    """The cache key of ``path`` built with ``config`` by this TensorRT for this GPU."""
    spec = build_spec(signature, config)
    return EngineKey(
        model_sha256=weights_digest(path),
        tensorrt_version=tensorrt_version,
        gpu_name=device.name,
        compute_capability=device.compute_capability,
        precision=resolve_precision(config.precision, device.type, device.fast_fp16),
        profile=input_profile(signature.inputs[0].name, spec, config.max_batch),
        workspace_mib=config.workspace_mib,
    )


def build_serialized(trt: Any, logger: Any, path: Path, key: EngineKey) -> bytes:
    """Builds the engine ``key`` describes from the ONNX file; ValueError when TensorRT cannot."""
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch; the creation flag is gone.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise ValueError(f"TensorRT's ONNX parser cannot read {path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, key.workspace_mib << 20)
    if key.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(
        key.profile.input_name, key.profile.minimum, key.profile.optimum, key.profile.maximum
    )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError(f"TensorRT could not build an engine for {path} (its log says why)")
    return bytes(memoryview(serialized))


@dataclass(frozen=True)
class PreparedEngine:
    """An engine ready to run, and where it came from."""

    engine: Any  # tensorrt.ICudaEngine
    key: EngineKey
    path: Path | None  # the cache file; None when the cache could not be written
    build_seconds: float | None  # None: loaded from the cache


def prepare_engine(
    trt: Any, runtime: Any, logger: Any, path: Path, *, key: EngineKey, cache: EngineCache
) -> PreparedEngine:
    """Loads the cached engine for ``key``, or builds and caches it."""
    stem = path.stem
    data = cache.load(key, stem)
    if data is not None:
        engine = runtime.deserialize_cuda_engine(data)
        if engine is not None:
            _LOGGER.info("loaded the TensorRT engine %s", cache.path(key, stem))
            return PreparedEngine(engine, key, cache.path(key, stem), None)
        _LOGGER.warning(
            "the cached TensorRT engine %s cannot be deserialized (corrupt, or from another "
            "TensorRT); rebuilding",
            cache.path(key, stem),
        )
        cache.discard(key, stem)
    _LOGGER.info(
        "building a TensorRT engine for %s (%s, batch up to %d); this takes minutes once",
        path.name,
        key.precision,
        key.profile.max_batch,
    )
    started = time.perf_counter()
    data = build_serialized(trt, logger, path, key)
    seconds = time.perf_counter() - started
    stored: Path | None
    try:
        stored = cache.store(key, stem, data)
    except OSError as error:
        _LOGGER.warning(
            "cannot write the engine cache %s (%s); serving unsaved", cache.folder, error
        )
        stored = None
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise ValueError(f"TensorRT built an engine for {path} but cannot load it")
    return PreparedEngine(engine, key, stored, seconds)


def open_engine(config: EngineConfig, path: Path) -> tuple[Any, Any, Device, PreparedEngine]:
    """``(tensorrt, torch, device, engine)``: what the backend and ``engine build`` share."""
    trt = import_tensorrt()
    torch, _ = import_torch("tensorrt")
    if config.device == "cpu":
        raise ValueError("--backend tensorrt runs on CUDA only; for the CPU use onnxruntime")
    device = choose_device(torch, "cuda", "tensorrt")
    signature = read_onnx_signature(path)
    key = engine_key(path, signature, config, str(trt.__version__), device)
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    prepared = prepare_engine(
        trt, runtime, logger, path, key=key, cache=EngineCache(config.engine_cache)
    )
    return trt, torch, device, prepared


class TensorRtBackend(DeviceBackend):
    """A TensorRT engine with one execution context and preallocated I/O per concurrent batch."""

    name = "tensorrt"

    def __init__(self, path: Path, config: EngineConfig) -> None:
        trt, torch, device, prepared = open_engine(config, path)
        engine = prepared.engine
        onnx = read_onnx_signature(path)
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ValueError(
                f"the engine has {len(inputs)} inputs; framewire feeds one image input"
            )
        self._input_name = inputs[0]
        self._output_names = [n for n in names if n != self._input_name]
        self.context = engine.create_execution_context()
        self.context.set_input_shape(self._input_name, prepared.key.profile.maximum)
        self.plan: BufferPlan = plan_buffers(
            [
                (
                    name,
                    name == self._input_name,
                    trt.nptype(engine.get_tensor_dtype(name)).__name__,
                    tuple(self.context.get_tensor_shape(name)),
                )
                for name in names
            ],
            prepared.key.profile.max_batch,
            config.concurrent_batches,
        )
        torch_types = {
            buffer.name: _torch_dtype(torch, buffer.dtype) for buffer in self.plan.tensors
        }
        signature = ModelSignature(
            onnx.inputs,
            # In the engine's order, which the outputs are returned in.
            tuple(TensorInfo(b.name, (None, *b.shape[1:]), b.dtype) for b in self.plan.outputs),
            onnx.metadata,
        )
        super().__init__(signature, torch, device, torch_types[self._input_name])
        self.precision = prepared.key.precision
        self.engine = engine
        self.prepared = prepared
        self._outputs: dict[int, dict[str, Any]] = {}
        for index in range(config.concurrent_batches):
            self._outputs[index] = {
                b.name: torch.empty(b.shape, dtype=torch_types[b.name], device=device.torch_device)
                for b in self.plan.outputs
            }
        _LOGGER.info(
            "TensorRT %s engine: %.1f MiB of I/O buffers for %d concurrent batches",
            trt.__version__,
            self.plan.total_bytes / 2**20,
            config.concurrent_batches,
        )

    def run_device(self, index: int, count: int) -> list[Any]:
        batch = self.device_input(index)
        outputs = self._outputs[index % len(self._outputs)]
        context = self.context
        context.set_input_shape(self._input_name, (count, *batch.shape[1:]))
        context.set_tensor_address(self._input_name, batch.data_ptr())
        for name in self._output_names:
            context.set_tensor_address(name, outputs[name].data_ptr())
        if not context.execute_async_v3(self._stream_handle()):
            raise RuntimeError("TensorRT could not enqueue the batch")
        return [outputs[name][:count] for name in self._output_names]

    def _stream_handle(self) -> int:
        """The current CUDA stream, the one decode, preprocessing and NMS are queued on.

        0 (the default stream) off CUDA, which only the tests' stand-in for TensorRT uses.
        """
        if self.device.type != "cuda":
            return 0
        return int(self.torch.cuda.current_stream(self.device.torch_device).cuda_stream)

    def close(self) -> None:
        self._outputs.clear()
        self._inputs.clear()
        self.context = None
        self.engine = None


def _torch_dtype(torch: Any, numpy_name: str) -> Any:
    types = {
        "float32": torch.float32,
        "float16": torch.float16,
        "uint8": torch.uint8,
        "int8": torch.int8,
        "int32": torch.int32,
        "int64": torch.int64,
        "bool": torch.bool,
    }
    if numpy_name not in types:
        raise ValueError(
            f"the engine has a tensor of type {numpy_name}, which framewire cannot feed"
        )
    return types[numpy_name]
