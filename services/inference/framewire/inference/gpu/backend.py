"""Device backends: a model that reads a preallocated device input and leaves its outputs there.

A :class:`DeviceBackend` is a :class:`~framewire.inference.backends.Backend`
(so loading, warm-up and head detection treat it like any other), plus what
the GPU engine (:mod:`framewire.inference.gpu.engine`) needs to keep images on
the device from decode to NMS:

- :meth:`prepare` allocates one input batch per concurrent batch on the
  device, at the max batch, once (and lets a backend capture CUDA graphs or
  bind buffers for them);
- :meth:`device_input` is one of those inputs, for the GPU preprocessing to
  write into;
- :meth:`run_device` runs the first ``count`` images of an input and returns
  the outputs on the device. They stay valid until the next run, so callers
  hold :meth:`exclusive` across the run and the reading of its outputs.

Everything is queued on the device's current CUDA stream, one stream for
decode, preprocessing, the model and NMS: the GPU sees the work in the order
it was queued, so a buffer is never rewritten while an earlier step still
reads it.
"""

from __future__ import annotations

import abc
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from framewire.inference.backends import Backend
from framewire.inference.gpu.runtime import Device
from framewire.inference.inputs import InputSpec
from framewire.inference.signature import ModelSignature


class DeviceBackend(Backend):
    """A model on a torch device; see the module docstring."""

    def __init__(
        self, signature: ModelSignature, torch: Any, device: Device, input_dtype: Any
    ) -> None:
        super().__init__(signature)
        self.torch = torch
        self.device = device
        self.input_dtype = input_dtype  # a torch dtype
        self.precision = "fp32"
        self._inputs: dict[int, Any] = {}
        self._lock = threading.RLock()

    @property
    def batching_pays(self) -> bool:
        return self.device.type == "cuda"

    def exclusive(self) -> threading.RLock:
        """Held across a run and the reading of its outputs."""
        return self._lock

    def prepare(self, spec: InputSpec, max_batch: int, copies: int) -> None:
        """Allocates the ``copies`` device inputs of ``max_batch`` images, once, before serving."""
        with self._lock:
            for index in range(copies):
                self.device_input(index, spec.batch_shape(spec.fixed_batch or max_batch))

    def device_input(self, index: int, shape: tuple[int, ...] | None = None) -> Any:
        """Input batch ``index``; allocated (or grown) to ``shape`` when one is given."""
        current = self._inputs.get(index)
        if shape is not None and (
            current is None
            or tuple(current.shape[1:]) != tuple(shape[1:])
            or current.shape[0] < shape[0]
        ):
            current = self.torch.zeros(
                shape, dtype=self.input_dtype, device=self.device.torch_device
            )
            self._inputs[index] = current
            self._input_changed(index)
        if current is None:
            raise RuntimeError(f"input batch {index} was never prepared")
        return current

    def _input_changed(self, index: int) -> None:
        """Called when input ``index`` is (re)allocated: forget anything bound to the old one."""

    @abc.abstractmethod
    def run_device(self, index: int, count: int) -> list[Any]:
        """Runs the first ``count`` images of input ``index``; returns outputs on the device."""

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        """The host path (warm-up, benchmarks): copy in, run, copy the outputs out."""
        torch = self.torch
        with self._lock:
            target = self.device_input(0, tuple(batch.shape))
            count = len(batch)
            target[:count].copy_(torch.from_numpy(np.ascontiguousarray(batch)))
            outputs = self.run_device(0, count)
            return [output.float().cpu().numpy() for output in outputs]

    def synchronize(self) -> None:
        """Waits for the work queued on the device (stage timings measure work, not launches)."""
        if self.device.type == "cuda":
            self.torch.cuda.current_stream(self.device.torch_device).synchronize()

    def describe(self) -> str:
        return f"{self.name} on {self.device.name} ({self.device.type}, {self.precision})"
