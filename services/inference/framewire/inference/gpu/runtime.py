"""Importing the GPU stack: PyTorch, torchvision and TensorRT, with messages that say what to do.

None of them is needed to import framewire: the backends that use them import
them here, when they open a model, and a missing one becomes a
:class:`ValueError` that ``framewire serve`` and ``framewire inference`` print
at start-up (exit 1) instead of a traceback.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from framewire.inference.gpu.plan import has_fast_fp16

TORCH_INSTALL = (
    "pip install 'framewire[gpu]' (PyTorch and torchvision; on a GPU server use a CUDA build, "
    "for example from https://pytorch.org)"
)
TENSORRT_INSTALL = (
    "pip install 'framewire[tensorrt-cu13]' (or tensorrt-cu12, matching PyTorch's CUDA) on a "
    "machine with an NVIDIA driver (PyPI's TensorRT packages download NVIDIA's libraries "
    "while they install), or run in NVIDIA's TensorRT container "
    "(nvcr.io/nvidia/tensorrt); --backend torch (TorchScript) or onnxruntime need no TensorRT"
)


def import_torch(backend: str) -> tuple[ModuleType, ModuleType]:
    """``(torch, torchvision)``; ValueError saying how to install them when either is missing."""
    try:
        torch = importlib.import_module("torch")
        torchvision = importlib.import_module("torchvision")
        importlib.import_module("torchvision.io")
        importlib.import_module("torchvision.ops")
    except ImportError as error:
        raise ValueError(
            f"--backend {backend} needs PyTorch and torchvision, which are not installed "
            f"({error}): {TORCH_INSTALL}"
        ) from error
    return torch, torchvision


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module (TensorRT 10 or newer); ValueError saying how to install it."""
    try:
        tensorrt = importlib.import_module("tensorrt")
    except ImportError as error:
        raise ValueError(
            f"--backend tensorrt needs NVIDIA TensorRT 10 (the Python package 'tensorrt'), "
            f"which is not installed ({error}): {TENSORRT_INSTALL}"
        ) from error
    major = int(str(tensorrt.__version__).split(".")[0])
    if major < 10:
        raise ValueError(
            f"--backend tensorrt needs TensorRT 10 or newer; this is {tensorrt.__version__}: "
            f"{TENSORRT_INSTALL}"
        )
    return tensorrt


@dataclass(frozen=True)
class Device:
    """Where a GPU backend runs: a torch device, and what the GPU is when it is one."""

    torch_device: Any  # torch.device
    name: str
    compute_capability: tuple[int, int]

    @property
    def type(self) -> str:
        return str(self.torch_device.type)

    @property
    def fast_fp16(self) -> bool:
        return self.type == "cuda" and has_fast_fp16(self.compute_capability)


def choose_device(torch: ModuleType, requested: str, backend: str) -> Device:
    """The device for ``--device`` (auto, cpu, cuda); ValueError when CUDA is asked but absent."""
    cuda = bool(torch.cuda.is_available())
    if requested == "cuda" or (requested == "auto" and cuda):
        if not cuda:
            raise ValueError(
                f"--backend {backend} --device cuda: this PyTorch ({torch.__version__}) sees no "
                "CUDA GPU; check the driver (nvidia-smi) and that PyTorch is a CUDA build, or "
                "use --device cpu"
            )
        index = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return Device(
            torch.device("cuda", index), torch.cuda.get_device_name(index), (major, minor)
        )
    return Device(torch.device("cpu"), "cpu", (0, 0))
