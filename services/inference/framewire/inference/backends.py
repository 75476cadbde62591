"""Backends: the runtimes that execute a model on a batch of input tensors.

The interface is shaped for batched accelerators as much as for CPUs:

- The engine owns a few preallocated input batches of ``[max_batch, ...]``,
  allocated once through :meth:`Backend.allocate_input` (a TensorRT backend
  returns page-locked host memory there), and fills image slots in place.
- :meth:`Backend.run` takes the first ``n`` images of such a batch (or the
  whole batch for models with a fixed batch size) and returns the outputs as
  arrays the caller owns: the next run must not overwrite them.
- The engine warms every backend up with a full ``max_batch`` before it
  reports SERVING, so lazy allocation and kernel selection happen then.

``run`` is called by one thread at a time, unless the backend declares
``concurrent_runs``: then up to ``concurrent_batches`` runs overlap, each on
its own input batch. ONNX Runtime sessions are made for that, and on a CPU
two overlapping runs keep the cores busy where one leaves them idle between
its operators. Everything else may be called from any thread.

On a CPU, ONNX Runtime by default gives a run a thread per core, which is
what a run alone needs; runs that overlap then share one session's thread
pool and wait for each other at every parallel operator. So a run that
starts while another is running goes to a second session of the same model
with one thread (:func:`single_threaded_overlaps`). Under a CPU quota (a
container's CPU limit) "a thread per core" means the quota's cores, not the
machine's (:mod:`framewire.common.cpus`).

Between the parallel parts of a run, ONNX Runtime's threads look for more
work; by default they spin for a long time first, and keep a core busy long
after the run. framewire has them sleep at once, or spin for ``spin_wait``
first (:func:`spinning_entries`): then runs back to back no longer wait for
their threads to wake, and between runs the threads still sleep.
"""

from __future__ import annotations

import abc
import logging
import threading
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import numpy.typing as npt

from framewire.common.cpus import quota_cap, usable_cores
from framewire.inference.config import BOUNDED_SPIN_SINCE, EngineConfig
from framewire.inference.models import ModelFiles
from framewire.inference.signature import ModelSignature, TensorInfo, read_onnx_signature

_LOGGER = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(double)": "float64",
}
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def spinning_entries(spin_wait: float, runtime_version: str) -> dict[str, str]:
    """The session config entries that let ONNX Runtime's intra-op threads spin for
    ``spin_wait`` seconds before they sleep (0: no spinning), on ``runtime_version``."""
    try:
        release = tuple(int(part) for part in runtime_version.split(".")[:2])
    except ValueError:
        release = (0, 0)  # an unreadable version: assume the oldest
    if spin_wait <= 0 or release < BOUNDED_SPIN_SINCE:
        return {"session.intra_op.allow_spinning": "0"}
    return {
        "session.intra_op.allow_spinning": "1",
        # A wait under a microsecond still spins (for the shortest time the runtime
        # knows): rounding it to 0 would be read as "no bound", not as "off".
        "session.intra_op.spin_duration_us": str(max(1, round(spin_wait * 1_000_000))),
    }


class Backend(abc.ABC):
    """A loaded model behind one runtime."""

    name: ClassVar[str]
    # Whether run() may be called from several threads at once (see the module docstring).
    concurrent_runs: ClassVar[bool] = False

    def __init__(self, signature: ModelSignature) -> None:
        self.signature = signature

    def allocate_input(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        """Allocates one reusable input batch; accelerators override this for pinned memory."""
        return np.zeros(shape, dtype=dtype)

    @abc.abstractmethod
    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        """Runs the model on a C-contiguous batch; returns its outputs in signature order."""

    def warm_up(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        """Runs ``batch`` once everywhere a later run may go (before SERVING); its outputs."""
        return self.run(batch)

    @property
    def batching_pays(self) -> bool:
        """Whether a batch of n images costs much less than n batches of one: on an
        accelerator, not on a CPU, whose cost grows with the images."""
        return False

    def describe(self) -> str:
        """A short description for the start-up log (runtime, device)."""
        return self.name

    def close(self) -> None:  # noqa: B027 - most backends have nothing to release
        """Releases the model."""


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime: CPU by default; CUDA when onnxruntime-gpu provides it."""

    name = "onnxruntime"
    concurrent_runs = True  # InferenceSession.run is thread-safe

    def __init__(
        self,
        path: Path,
        *,
        intra_op_threads: int,
        device: str,
        spin_wait: float = 0.0,
        concurrent_runs: int = 1,
    ) -> None:
        import onnxruntime  # noqa: PLC0415 - only this backend needs it

        available = onnxruntime.get_available_providers()
        if device == "cuda" and _CUDA not in available:
            raise ValueError(
                "--device cuda needs onnxruntime-gpu with CUDA; this onnxruntime offers "
                + ", ".join(available)
            )
        providers = [_CUDA, _CPU] if device != "cpu" and _CUDA in available else [_CPU]

        spinning = spinning_entries(spin_wait, onnxruntime.__version__)
        if spin_wait > 0 and "session.intra_op.spin_duration_us" not in spinning:
            _LOGGER.warning(
                "onnxruntime %s cannot bound its threads' spinning (%s or later can): "
                "--spin-wait is ignored and the threads sleep at once",
                onnxruntime.__version__,
                ".".join(map(str, BOUNDED_SPIN_SINCE)),
            )

        def open_session(threads: int) -> Any:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # errors only: no warnings on stderr for every model
            for key, value in spinning.items():
                options.add_session_config_entry(key, value)
            # One inter-op thread (sequential execution): there is no pool to spin.
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                return onnxruntime.InferenceSession(str(path), options, providers=providers)
            except Exception as error:  # onnxruntime raises its own untyped errors
                raise ValueError(f"onnxruntime cannot load {path}: {error}") from error

        # 0 lets ONNX Runtime take a thread per core of the machine; under a CPU quota
        # (a container's CPU limit) that is more threads than the quota runs at once.
        self.threads_from_quota = quota_cap() if intra_op_threads == 0 else None
        self.session = open_session(self.threads_from_quota or intra_op_threads)
        # A run that starts while another runs goes here (see the module docstring).
        self._overlapping_session = (
            open_session(1)
            if providers == [_CPU]
            and single_threaded_overlaps(intra_op_threads, concurrent_runs, usable_cores())
            else None
        )
        self._lock = threading.Lock()
        self._running = 0
        # Whether a run started while another ran, in this spell of runs and in the last one.
        self._overlapped = False
        self._last_overlapped = False
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        super().__init__(
            ModelSignature(
                tuple(_ort_tensor(info) for info in self.session.get_inputs()),
                tuple(_ort_tensor(info) for info in self.session.get_outputs()),
                metadata,
            )
        )
        self.providers = tuple(self.session.get_providers())
        self._input_name = self.signature.inputs[0].name if self.signature.inputs else ""

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        if self._overlapping_session is None:
            outputs = self.session.run(None, {self._input_name: batch})
            return [np.asarray(output) for output in outputs]
        with self._lock:
            alone = runs_alone(self._running, self._last_overlapped)
            if self._running:
                self._overlapped = True
            self._running += 1
        session = self.session if alone else self._overlapping_session
        try:
            outputs = session.run(None, {self._input_name: batch})
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:  # the spell of runs is over
                    self._last_overlapped, self._overlapped = self._overlapped, False
        return [np.asarray(output) for output in outputs]

    def warm_up(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        if self._overlapping_session is not None:
            self._overlapping_session.run(None, {self._input_name: batch})
        return self.run(batch)

    @property
    def batching_pays(self) -> bool:
        return _CUDA in self.providers

    @property
    def splits_overlapping_runs(self) -> bool:
        """Whether runs that overlap another go to a second, single-threaded session."""
        return self._overlapping_session is not None

    def describe(self) -> str:
        described = f"onnxruntime {'+'.join(self.providers)}"
        if self.threads_from_quota:
            threads = self.threads_from_quota
            described += f" ({threads} thread{'s' if threads > 1 else ''}: its CPU quota's cores)"
        if self.splits_overlapping_runs:
            described += " (runs that overlap another: one thread each, in a second session)"
        return described


def runs_alone(running: int, last_overlapped: bool) -> bool:
    """Whether a run about to start is expected to have the cores to itself: none is
    running, and in the last spell of runs (from none running to none again) none started
    while another ran. Under a steady load runs
    start as others end, with another soon to follow, so even one that finds none running
    then goes to the single-threaded session; runs one after another from one caller, or
    now and then, keep every core."""
    return running == 0 and not last_overlapped


def single_threaded_overlaps(intra_op_threads: int, concurrent_runs: int, cores: int) -> bool:
    """Whether an ONNX Runtime run on a CPU that starts while another runs goes to a second
    session of the model with one thread.

    Where as many runs may overlap as there are cores (``framewire serve`` runs 4 at once,
    ``framewire inference`` 2), a run alone keeps the default (``intra_op_threads`` 0: a
    thread per core), and the others run on one thread each: no pool, so they never wait
    for each other's threads at a parallel operator. With more cores than runs at once,
    overlapping runs would share a pool again and nothing was measured there, so one
    session serves every run; so it does with a thread count the operator set.

    Measured on this project's 2-core machine, SSD MobileNet v2 behind ``framewire serve``,
    4 cameras at 30 fps: 1.06-1.12x the frames of one session with a thread per core, side
    by side in 6 rounds. One thread for every run served as much, but one camera alone was
    about 10 % slower with it, which is why a run alone keeps every core.
    """
    return intra_op_threads == 0 and concurrent_runs > 1 and 1 < cores <= concurrent_runs


def _ort_tensor(info: Any) -> TensorInfo:
    shape = tuple(dim if isinstance(dim, int) and dim > 0 else None for dim in info.shape)
    return TensorInfo(str(info.name), shape, _ORT_TYPES.get(str(info.type), str(info.type)))


class OpenCvBackend(Backend):
    """OpenCV's dnn module: ONNX files, and TensorFlow frozen graphs with a text graph."""

    name = "opencv"

    def __init__(self, path: Path, text_graph: Path | None, *, threads: int) -> None:
        if threads > 0:
            cv2.setNumThreads(threads)
        try:
            if path.suffix.lower() == ".onnx":
                signature = read_onnx_signature(path)
                self.net = cv2.dnn.readNetFromONNX(str(path))
            else:
                if text_graph is None:
                    raise ValueError(f"{path} needs its text graph (.pbtxt) to load")
                self.net = _read_tensorflow(path, text_graph)
                signature = self._tensorflow_signature()
        except cv2.error as error:
            raise ValueError(f"OpenCV cannot load {path}: {error}") from error
        super().__init__(signature)
        self._output_names = list(self.net.getUnconnectedOutLayersNames())
        # cv2.dnn.Net is not thread-safe; the engine serializes runs as well.
        self._lock = threading.Lock()

    def _tensorflow_signature(self) -> ModelSignature:
        """What a TensorFlow graph takes through OpenCV: NCHW float32 (OpenCV converts layouts)."""
        outputs = []
        for name in self.net.getUnconnectedOutLayersNames():
            layer = self.net.getLayer(name)
            # DetectionOutput (the SSD post-processing layer) gives [1, 1, N, 7].
            shape: tuple[int | None, ...] = (
                (1, 1, None, 7) if layer.type == "DetectionOutput" else ()
            )
            outputs.append(TensorInfo(str(name), shape, "float32"))
        return ModelSignature(
            (TensorInfo("input", (None, 3, None, None), "float32"),), tuple(outputs)
        )

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        with self._lock:
            self.net.setInput(batch)
            # Net.forward returns arrays that own their memory: the next run cannot touch them.
            outputs = self.net.forward(self._output_names)
        return [np.asarray(output, dtype=np.float32) for output in outputs]


def _read_tensorflow(path: Path, text_graph: Path) -> Any:
    """Reads a frozen graph with OpenCV's classic engine when it has one.

    OpenCV 5's new engine does not read the TF Object Detection API graphs; it
    tries, logs errors, then falls back. Asking for the classic one directly
    keeps the start-up log clean.
    """
    classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    if classic is None:
        return cv2.dnn.readNetFromTensorflow(str(path), str(text_graph))
    return cv2.dnn.readNetFromTensorflow(str(path), str(text_graph), engine=classic)


class NullBackend(Backend):
    """No model: the engine checks image headers and answers with no detections.

    For measuring the transport and the service around the model only.
    """

    name = "null"

    def __init__(self) -> None:
        super().__init__(ModelSignature((), ()))

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        raise RuntimeError("the null backend runs no model")


def open_backend(files: ModelFiles, config: EngineConfig) -> Backend:
    """Loads a model on the backend its files call for.

    The torch and tensorrt backends, and the PyTorch (and TensorRT) they
    need, are imported only here, when chosen.
    """
    intra_op_threads, device, spin_wait = config.intra_op_threads, config.device, config.spin_wait
    if files.backend == "torch":
        from framewire.inference.gpu.torch_backend import TorchScriptBackend  # noqa: PLC0415

        return TorchScriptBackend(files.weights, config)
    if files.backend == "tensorrt":
        from framewire.inference.gpu.tensorrt_backend import TensorRtBackend  # noqa: PLC0415

        return TensorRtBackend(files.weights, config)
    if files.backend == "onnxruntime":
        return OnnxRuntimeBackend(
            files.weights,
            intra_op_threads=intra_op_threads,
            device=device,
            spin_wait=spin_wait,
            concurrent_runs=config.concurrent_batches,
        )
    if files.backend == "opencv":
        if device == "cuda":
            raise ValueError("--device cuda is for onnxruntime; the opencv backend runs on CPU")
        return OpenCvBackend(files.weights, files.text_graph, threads=intra_op_threads)
    raise ValueError(f"unknown backend {files.backend!r}")
