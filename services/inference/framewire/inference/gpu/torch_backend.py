"""``--backend torch``: TorchScript exports (Ultralytics ``format=torchscript``) on CUDA or the CPU.

- The model loads with ``torch.jit.load`` onto the device; Ultralytics'
  ``config.txt`` (input size, stride, class names) becomes its metadata, so
  labels and input size come from the file as they do for its ONNX export.
- On a GPU with fast FP16 (``--precision auto``) the weights and the input
  batch are FP16; on the CPU everything stays FP32.
- On CUDA (``--cuda-graphs``, the default) each batch-size bucket
  (:func:`~framewire.inference.gpu.plan.graph_batch_sizes`) of each input
  batch is captured once as a CUDA graph at start-up and replayed per batch:
  one launch instead of one per layer, which is what lets small models reach
  the GPU's speed. Graphs share one memory pool; runs are serialized by
  :meth:`~framewire.inference.gpu.backend.DeviceBackend.exclusive`, which is
  what makes sharing it safe.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from framewire.common.cpus import quota_cap
from framewire.inference.config import EngineConfig
from framewire.inference.gpu.backend import DeviceBackend
from framewire.inference.gpu.plan import bucket_for, graph_batch_sizes, resolve_precision
from framewire.inference.gpu.runtime import choose_device, import_torch
from framewire.inference.inputs import InputSpec
from framewire.inference.signature import ModelSignature, TensorInfo

_LOGGER = logging.getLogger(__name__)
# Runs before a graph is captured, on a side stream, as PyTorch's CUDA graph notes advise.
_CAPTURE_WARMUPS = 3


def ultralytics_metadata(config_text: str) -> dict[str, str]:
    """Ultralytics' ``config.txt`` (JSON) as ONNX-style metadata strings.

    Lists and dicts become their Python ``repr``, as Ultralytics writes them
    into ONNX files, so :mod:`framewire.inference.inputs` and
    :mod:`framewire.inference.labels` read both the same way. Anything that is
    not a JSON object gives no metadata.
    """
    try:
        data = json.loads(config_text) if config_text.strip() else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    metadata = {}
    for key, value in data.items():
        if key == "names" and isinstance(value, dict):
            if all(str(number).isdigit() for number in value):
                metadata[key] = repr({int(number): name for number, name in value.items()})
            continue
        metadata[str(key)] = value if isinstance(value, str) else repr(value)
    return metadata


class TorchScriptBackend(DeviceBackend):
    """A TorchScript module on a torch device."""

    name = "torch"

    def __init__(self, path: Path, config: EngineConfig) -> None:
        torch, _ = import_torch("torch")
        device = choose_device(torch, config.device, "torch")
        precision = resolve_precision(config.precision, device.type, device.fast_fp16)
        extra = {"config.txt": ""}
        try:
            with warnings.catch_warnings():
                # PyTorch 2.10+ calls TorchScript deprecated in favour of torch.export; the
                # files users have (Ultralytics format=torchscript) are still TorchScript.
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(
                    str(path), map_location=device.torch_device, _extra_files=extra
                )
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"torch cannot load {path} as TorchScript ({error}); an Ultralytics .pt "
                "checkpoint is not TorchScript: export it with format=torchscript"
            ) from error
        module.eval()
        dtype = torch.float16 if precision == "fp16" else torch.float32
        if precision == "fp16":
            module.half()
        # PyTorch's default is a thread per core of the machine, whatever a CPU quota allows.
        threads = config.intra_op_threads or quota_cap() or 0
        if device.type == "cpu" and threads > 0:
            torch.set_num_threads(threads)
        raw: Any = extra["config.txt"]  # torch fills in bytes
        metadata = ultralytics_metadata(raw.decode() if isinstance(raw, bytes) else str(raw))
        signature = ModelSignature(
            (
                TensorInfo(
                    "images", (None, 3, None, None), "float16" if precision == "fp16" else "float32"
                ),
            ),
            # The output layout is read from the warm-up run (heads.yolo_layout).
            (TensorInfo("output0", (None, None, None), "float32"),),
            metadata,
        )
        super().__init__(signature, torch, device, dtype)
        self.precision = precision
        self.module = module
        self._use_graphs = config.cuda_graphs and device.type == "cuda"
        self._graph_sizes: tuple[int, ...] = ()
        self._graphs: dict[tuple[int, int], tuple[Any, list[Any]]] = {}
        self._pool: Any = None

    def prepare(self, spec: InputSpec, max_batch: int, copies: int) -> None:
        super().prepare(spec, max_batch, copies)
        if not self._use_graphs:
            return
        torch = self.torch
        with self.exclusive():
            self._graph_sizes = (
                (spec.fixed_batch,) if spec.fixed_batch else graph_batch_sizes(max_batch)
            )
            self._pool = torch.cuda.graph_pool_handle()
            for index in range(copies):
                for size in self._graph_sizes:
                    self._graphs[(index, size)] = self._capture(index, size)
        _LOGGER.info(
            "captured %d CUDA graphs (batch sizes %s, %d input batches)",
            len(self._graphs),
            ", ".join(map(str, self._graph_sizes)),
            copies,
        )

    def _capture(self, index: int, size: int) -> tuple[Any, list[Any]]:
        torch = self.torch
        batch = self.device_input(index)[:size]
        side = torch.cuda.Stream(self.device.torch_device)
        side.wait_stream(torch.cuda.current_stream(self.device.torch_device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(_CAPTURE_WARMUPS):
                self.module(batch)
        torch.cuda.current_stream(self.device.torch_device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, pool=self._pool):
            outputs = _as_list(self.module(batch))
        return graph, outputs

    def _input_changed(self, index: int) -> None:
        for key in [key for key in self._graphs if key[0] == index]:
            del self._graphs[key]

    def run_device(self, index: int, count: int) -> list[Any]:
        batch = self.device_input(index)
        if self._graph_sizes and count <= self._graph_sizes[-1]:
            captured = self._graphs.get((index, bucket_for(count, self._graph_sizes)))
            if captured is not None:
                graph, outputs = captured
                graph.replay()
                return [output[:count] for output in outputs]
        with self.torch.inference_mode():
            return _as_list(self.module(batch[:count]))

    def close(self) -> None:
        self._graphs.clear()
        self._inputs.clear()


def _as_list(outputs: Any) -> list[Any]:
    """A module's outputs as a flat list of tensors (a tensor, or a tuple or list of them)."""
    if isinstance(outputs, (tuple, list)):
        flat: list[Any] = []
        for output in outputs:
            flat.extend(_as_list(output))
        return flat
    return [outputs]
