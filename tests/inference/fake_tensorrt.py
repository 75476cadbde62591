"""A stand-in for the ``tensorrt`` module, for running the TensorRT backend's code on the CPU.

TensorRT cannot be installed on this project's machines, so the backend's own
code (building through the cache, binding buffers by address, shapes,
``execute_async_v3``) would otherwise never run. This module offers the subset
of the TensorRT 10 Python API the backend calls, with ONNX Runtime doing the
work: "building" records the profile and precision, and ``execute_async_v3``
reads the input from the bound address and writes the outputs to theirs. It
proves framewire's use of the API, not TensorRT itself (docs/gpu.md).
"""

from __future__ import annotations

import ctypes
import enum
import json
from pathlib import Path
from typing import Any

import numpy as np

__version__ = "10.99.0-fake"

builds: list[dict[str, Any]] = []  # every build, for the tests to count


class Logger:
    WARNING = 2

    def __init__(self, severity: int) -> None:
        self.severity = severity


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class BuilderFlag(enum.Enum):
    FP16 = 0


def nptype(dtype: Any) -> Any:
    return np.dtype(dtype).type


class _Network:
    def __init__(self) -> None:
        self.path: str | None = None


class OnnxParser:
    def __init__(self, network: _Network, logger: Logger) -> None:
        self.network = network
        self.num_errors = 0
        self._errors: list[str] = []

    def parse_from_file(self, path: str) -> bool:
        import onnxruntime

        try:
            onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own error types
            self._errors = [f"In node -1: {error}"]
            self.num_errors = 1
            return False
        self.network.path = path
        return True

    def get_error(self, index: int) -> str:
        return self._errors[index]


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, Any] = {}

    def set_shape(self, name: str, minimum: Any, optimum: Any, maximum: Any) -> None:
        self.shapes[name] = [list(minimum), list(optimum), list(maximum)]


class _Config:
    def __init__(self) -> None:
        self.workspace = 0
        self.flags: list[str] = []
        self.profiles: list[_Profile] = []

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.workspace = size

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.append(flag.name)

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def create_network(self, flags: int) -> _Network:
        assert flags == 0, "TensorRT 10 networks take no creation flags"
        return _Network()

    def create_builder_config(self) -> _Config:
        return _Config()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> bytes:
        assert len(config.profiles) == 1
        plan = {
            "path": network.path,
            "profile": config.profiles[0].shapes,
            "flags": config.flags,
            "workspace": config.workspace,
        }
        builds.append(plan)
        return b"FAKE-ENGINE" + json.dumps(plan).encode()


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> _Engine | None:
        if not data.startswith(b"FAKE-ENGINE"):
            return None
        return _Engine(json.loads(data[len(b"FAKE-ENGINE") :]))


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


class _Engine:
    def __init__(self, plan: dict[str, Any]) -> None:
        import onnxruntime

        self.plan = plan
        self.session = onnxruntime.InferenceSession(
            plan["path"], providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.types = {
            i.name: _ORT_TYPES[i.type]
            for i in [*self.session.get_inputs(), *self.session.get_outputs()]
        }
        self.num_io_tensors = len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, index: int) -> str:
        return [*self.inputs, *self.outputs][index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> Any:
        return self.types[name]

    def create_execution_context(self) -> _Context:
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.runs = 0

    def set_input_shape(self, name: str, shape: Any) -> bool:
        low, _, high = self.engine.plan["profile"][name]
        shape = tuple(int(d) for d in shape)
        assert all(lo <= d <= hi for lo, d, hi in zip(low, shape, high, strict=True)), (
            f"{shape} is outside the profile {low}..{high}"
        )
        self.shapes[name] = shape
        return True

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.engine.session.run(None, inputs)
        return dict(zip(self.engine.outputs, values, strict=True))

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.engine.inputs:
            return self.shapes[name]
        zeros = {n: np.zeros(self.shapes[n], self.engine.types[n]) for n in self.engine.inputs}
        return tuple(self._run(zeros)[name].shape)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream: int) -> bool:
        inputs = {}
        for name in self.engine.inputs:
            dtype = np.dtype(self.engine.types[name])
            size = int(np.prod(self.shapes[name])) * dtype.itemsize
            raw = (ctypes.c_char * size).from_address(self.addresses[name])
            inputs[name] = np.frombuffer(raw, dtype=dtype).reshape(self.shapes[name]).copy()
        for name, output in self._run(inputs).items():
            value = np.ascontiguousarray(output, dtype=self.engine.types[name])
            ctypes.memmove(self.addresses[name], value.ctypes.data, value.nbytes)
        self.runs += 1
        return True


def install(monkeypatch: Any) -> None:
    """Puts this module in place of ``tensorrt`` and lets the backend run on the CPU."""
    import sys

    from framewire.inference.gpu import tensorrt_backend
    from framewire.inference.gpu.runtime import Device

    builds.clear()
    monkeypatch.setitem(sys.modules, "tensorrt", sys.modules[__name__])

    def cpu(torch: Any, requested: str, backend: str) -> Device:
        return Device(torch.device("cpu"), "Fake GPU (CPU)", (9, 0))

    monkeypatch.setattr(tensorrt_backend, "choose_device", cpu)


def engine_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.engine"))
