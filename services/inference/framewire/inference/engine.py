"""The engine: serves Detect calls on a loaded model, turning JPEG images into detections.

Loading (opening the model, picking its head and input, warming it up) is
:mod:`framewire.inference.loading`; :meth:`Engine.load` calls it and returns
one of the engines that share everything around the images' trip:

- :class:`ModelEngine` runs a loaded model on the CPU backends (its base,
  :class:`LoadedModelEngine`, holds what every engine of a loaded model has:
  its head and input; the GPU engine of :mod:`framewire.inference.gpu` is the
  other);
- :class:`NullEngine` (``--backend null``) runs none: it checks image headers
  and answers with no detections, for measuring transport overhead.

``Engine.detect`` is safe to call from several threads at once. The model
engine is built to overlap: while one call's batch runs on the model, another
call decodes and preprocesses its images into a second preallocated input
batch. Per call:

1. whole-batch checks (empty, too large) raise :class:`FramewireError`;
2. each image's options are checked against the server's limits and labels;
3. each image's header is checked (encoding, truncation, declared size, pixel
   limit) before any decoding, then it is decoded and fitted straight into
   its slot of an input batch, on a bounded thread pool;
4. the images that made it run through the model as one batch;
5. each image's outputs become detections (box decoding, NMS, labels).

An image that fails any step gets an error in its own result; the others are
answered normally, in request order.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from framewire.common.errors import (
    FramewireError,
    invalid_argument,
    unavailable,
)
from framewire.common.protoutil import duration
from framewire.inference import labels as labels_module
from framewire.inference.backends import Backend, NullBackend
from framewire.inference.config import DEVICE_BACKENDS, EngineConfig
from framewire.inference.heads import DecodeOptions, Detections, Head
from framewire.inference.inputs import InputBatches, InputSpec, decode_rgb
from framewire.inference.loading import LoadedModel, load_model, read_custom_labels
from framewire.inference.metrics import InferenceMetrics
from framewire.inference.models import resolve_model
from framewire.inference.preprocess import Placement, fill_slot, place
from framewire.inference.validation import check_header, decode_options
from framewire.v1 import inference_service_pb2

_LOGGER = logging.getLogger(__name__)


class Engine(abc.ABC):
    """What every engine does around the images: batch checks, options, results, metrics."""

    def __init__(
        self,
        *,
        config: EngineConfig,
        backend: Backend,
        head_name: str,
        labels: tuple[str, ...],
        model_id: str,
        registry: CollectorRegistry | None,
        warmup_seconds: float = 0.0,
    ) -> None:
        self.config = config
        self.backend = backend
        self.head_name = head_name
        self.labels = labels
        self.model_id = model_id
        self.warmup_seconds = warmup_seconds
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = InferenceMetrics(
            self.registry, model_id=model_id, backend=backend.name, head=head_name
        )
        self._label_indices = labels_module.label_indices(labels)
        self._closed = False

    @staticmethod
    def load(config: EngineConfig, registry: CollectorRegistry | None = None) -> Engine:
        """Loads the model, warms it up with a full max batch, and registers metrics.

        Raises :class:`FileNotFoundError` for a missing model or labels file and
        :class:`ValueError` for a model or setting that cannot work, each with
        a message saying what to change.
        """
        return load_engine(config, registry)

    # --------------------------------------------------------------- describing

    @property
    @abc.abstractmethod
    def spec(self) -> InputSpec | None:
        """The model input the engine fills; None for the null engine, which has none."""

    @property
    @abc.abstractmethod
    def input_size(self) -> tuple[int, int]:
        """The model input (width, height); (0, 0) for the null engine."""

    @abc.abstractmethod
    def input_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[Any]:
        """A fresh model input for RGB images, prepared exactly as :meth:`detect` does.

        For benchmarks that call :attr:`backend` directly on pre-decoded tensors.
        Raises :class:`ValueError` on the null engine.
        """

    def model_info(self) -> inference_service_pb2.GetModelInfoResponse:
        """The model and the limits Detect enforces."""
        width, height = self.input_size
        return inference_service_pb2.GetModelInfoResponse(
            model_id=self.model_id,
            backend=self.backend.name,
            input_width=width,
            input_height=height,
            labels=self.labels,
            max_batch_size=self.config.max_batch,
            head=self.head_name,
            max_image_pixels=self.config.max_image_pixels,
            default_score_threshold=self.config.score_threshold,
            concurrent_batches=self.batches_at_once,
        )

    @property
    def batches_at_once(self) -> int:
        """Batches worth sending at once (:meth:`EngineConfig.batches_at_once`)."""
        return self.config.batches_at_once(self.backend.concurrent_runs)

    def merges_calls(self, mode: str) -> bool:
        """Whether Detect calls that wait for a batch slot run together (``--merge-calls``):
        ``auto`` where a bigger batch costs less per image, on an accelerator or a model
        whose batch size is fixed (it runs the whole batch anyway)."""
        if mode != "auto":
            return mode == "always"
        spec = self.spec
        return self.backend.batching_pays or (spec is not None and (spec.fixed_batch or 1) > 1)

    # ---------------------------------------------------------------- detecting

    def detect(
        self, request: inference_service_pb2.DetectRequest
    ) -> inference_service_pb2.DetectResponse:
        """Finds objects in every image of the batch; see the module docstring.

        Raises :class:`FramewireError` (INVALID_ARGUMENT) when the batch itself
        is unusable, and UNAVAILABLE after :meth:`close`.
        """
        started = time.perf_counter()
        images = request.images
        if self._closed:
            raise unavailable("the inference engine is shut down")
        if not images:
            self.metrics.rejected_batches.inc()
            raise invalid_argument("the batch is empty: send at least one image")
        if len(images) > self.config.max_batch:
            self.metrics.rejected_batches.inc()
            raise invalid_argument(
                f"the batch has {len(images)} images, more than this server's maximum of "
                f"{self.config.max_batch} (GetModelInfo max_batch_size): split it"
            )
        self.metrics.batch_size.observe(len(images))
        response = inference_service_pb2.DetectResponse(model_id=self.model_id)
        results = [response.results.add() for _ in images]
        errors: list[FramewireError | None] = [None] * len(images)
        options: dict[int, DecodeOptions] = {}
        for index, image in enumerate(images):
            try:
                options[index] = decode_options(
                    image.options, self.config, self.labels, self._label_indices
                )
            except FramewireError as error:
                errors[index] = error
        self._answer(images, options, errors, results)
        total = duration(time.perf_counter() - started)
        failed: list[grpc.StatusCode] = []
        for result, image_error in zip(results, errors, strict=True):
            result.timings.total.CopyFrom(total)
            if image_error is not None:
                del result.detections[:]
                result.error.CopyFrom(image_error.to_status())
                failed.append(image_error.code)
        self.metrics.count_images(len(images) - len(failed), failed)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return response

    @abc.abstractmethod
    def _answer(
        self,
        images: Sequence[inference_service_pb2.Image],
        options: dict[int, DecodeOptions],
        errors: list[FramewireError | None],
        results: list[inference_service_pb2.ImageResult],
    ) -> None:
        """Fills the results of the images whose options were valid (``options``' keys).

        A failing image gets its error in ``errors`` instead; :meth:`detect`
        then clears its result and adds the error and the total time.
        """

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Releases the engine; later detect calls get UNAVAILABLE."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        self.backend.close()


class NullEngine(Engine):
    """No model (``--backend null``): header checks, no decoding, no detections.

    For measuring the transport and the service around the model only. Its
    labels are the configured ones (COCO by default), so class filters are
    checked as a model engine would check them.
    """

    def __init__(
        self,
        config: EngineConfig,
        labels: tuple[str, ...],
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(
            config=config,
            backend=NullBackend(),
            head_name="none",
            labels=labels,
            model_id="null",
            registry=registry,
        )

    @property
    def spec(self) -> None:
        return None

    @property
    def input_size(self) -> tuple[int, int]:
        return (0, 0)

    def input_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[Any]:
        raise ValueError("the null engine runs no model, so it has no model input")

    def _answer(
        self,
        images: Sequence[inference_service_pb2.Image],
        options: dict[int, DecodeOptions],
        errors: list[FramewireError | None],
        results: list[inference_service_pb2.ImageResult],
    ) -> None:
        for index in options:
            try:
                check_header(images[index], images[index].data, self.config)
            except FramewireError as error:
                errors[index] = error


_T = TypeVar("_T")


def _done_now(function: Callable[..., _T], *args: Any) -> Future[_T]:
    """Runs ``function`` on this thread; its result or exception as a completed Future."""
    future: Future[_T] = Future()
    try:
        future.set_result(function(*args))
    except Exception as error:
        future.set_exception(error)
    return future


@dataclass
class _Prepared:
    """An image decoded into a slot of the input batch."""

    slot: int
    placement: Placement
    decode_seconds: float
    preprocess_seconds: float


class LoadedModelEngine(Engine):
    """An engine that serves a :class:`LoadedModel`: its backend, head and input."""

    def __init__(
        self,
        model: LoadedModel,
        config: EngineConfig,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Serves ``model``, which it then owns: :meth:`close` closes its backend."""
        super().__init__(
            config=config,
            backend=model.backend,
            head_name=model.head.name,
            labels=model.labels,
            model_id=model.model_id,
            registry=registry,
            warmup_seconds=model.warmup_seconds,
        )
        self.head = model.head
        self._spec = model.spec

    @property
    def spec(self) -> InputSpec:
        return self._spec

    @property
    def input_size(self) -> tuple[int, int]:
        return (self._spec.width, self._spec.height)

    def input_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[Any]:
        """The model input for RGB images, prepared on the host."""
        return host_input_batch(self._spec, self.head, images)


class ModelEngine(LoadedModelEngine):
    """A loaded, warmed-up model with its decode pool and preallocated input batches."""

    def __init__(
        self,
        model: LoadedModel,
        config: EngineConfig,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(model, config, registry)
        # How many batches may run on the model at once: one, or for a backend
        # whose runs may overlap, one per preallocated input batch.
        self._model_slots = threading.BoundedSemaphore(
            config.concurrent_batches if model.backend.concurrent_runs else 1
        )
        self._batches = InputBatches(
            model.backend, model.spec, config.max_batch, self.batches_at_once
        )
        self._pool = ThreadPoolExecutor(
            max_workers=config.decode_thread_count(), thread_name_prefix="framewire-decode"
        )

    def _prepare(
        self, image: inference_service_pb2.Image, batch: npt.NDArray[Any], slot: int
    ) -> _Prepared:
        """Checks, decodes and fits one image into ``batch[slot]`` (on the decode pool)."""
        started = time.perf_counter()
        data = image.data  # once: every read of the field copies the bytes
        header = check_header(image, data, self.config)
        pixels = decode_rgb(data)
        if pixels.shape[:2] != (header.height, header.width):
            raise invalid_argument(
                f"the JPEG decodes to {pixels.shape[1]}x{pixels.shape[0]} pixels but its header "
                f"says {header.width}x{header.height}"
            )
        decoded = time.perf_counter()
        spec = self._spec
        placement = place(header.width, header.height, spec.width, spec.height, self.head.fit)
        fill_slot(batch[slot], pixels, placement, layout=spec.layout, scale=self.head.pixel_scale)
        return _Prepared(slot, placement, decoded - started, time.perf_counter() - decoded)

    def _answer(
        self,
        images: Sequence[inference_service_pb2.Image],
        options: dict[int, DecodeOptions],
        errors: list[FramewireError | None],
        results: list[inference_service_pb2.ImageResult],
    ) -> None:
        """Decode and preprocess in parallel, one model run, then postprocess per image."""
        prepared: dict[int, _Prepared] = {}
        with self._batches.borrow() as batch:
            jobs: list[tuple[int, Future[_Prepared]]] = []
            for index in options:
                slot = len(jobs)
                if len(options) == 1:
                    # One image is prepared on this thread: a hop to the pool would only add
                    # two thread handoffs to the batch that ingest sends most on a CPU.
                    job = _done_now(self._prepare, images[index], batch, slot)
                else:
                    job = self._pool.submit(self._prepare, images[index], batch, slot)
                jobs.append((index, job))
            for index, job in jobs:
                try:
                    prepared[index] = job.result()
                except FramewireError as error:
                    errors[index] = error
                except Exception as error:
                    _LOGGER.exception("preparing image %d of a batch failed", index)
                    errors[index] = FramewireError(
                        grpc.StatusCode.INTERNAL, f"the server failed to prepare the image: {error}"
                    )
            if not prepared:
                return
            _close_gaps(batch, prepared)
            count = len(prepared)
            try:
                waiting = time.perf_counter()
                with self._model_slots:
                    model_started = time.perf_counter()
                    outputs = self.backend.run(batch[: self._spec.fixed_batch or count])
                    model_seconds = time.perf_counter() - model_started
            except Exception as error:
                _LOGGER.exception("the model failed on a batch of %d images", count)
                for index in prepared:
                    errors[index] = FramewireError(
                        grpc.StatusCode.INTERNAL, f"the model failed on this batch: {error}"
                    )
                return
        # The input batch is free again: the next call can fill it while this one postprocesses.
        self.metrics.observe_stage("inference", model_seconds)
        inference = duration(model_seconds)
        # Time the prepared batch waited for another batch to leave the model.
        queue = duration(model_started - waiting)
        input_size = self.input_size
        for index, item in prepared.items():
            result = results[index]
            result.width, result.height = item.placement.source_width, item.placement.source_height
            result.timings.decode.CopyFrom(duration(item.decode_seconds))
            result.timings.preprocess.CopyFrom(duration(item.preprocess_seconds))
            result.timings.inference.CopyFrom(inference)
            result.timings.queue.CopyFrom(queue)
            self.metrics.observe_stage("decode", item.decode_seconds)
            self.metrics.observe_stage("preprocess", item.preprocess_seconds)
            started = time.perf_counter()
            try:
                found = self.head.decode(
                    outputs, item.slot, item.placement, input_size, options[index]
                )
            except Exception as error:
                _LOGGER.exception("decoding the model output of image %d failed", index)
                errors[index] = FramewireError(
                    grpc.StatusCode.INTERNAL, f"the server failed to read the model output: {error}"
                )
                continue
            fill_detections(result, found, self.labels)
            seconds = time.perf_counter() - started
            result.timings.postprocess.CopyFrom(duration(seconds))
            self.metrics.observe_stage("postprocess", seconds)

    def _release(self) -> None:
        """Stops the decode pool, then releases the model."""
        self._pool.shutdown(wait=True)
        self.backend.close()


def host_input_batch(
    spec: InputSpec, head: Head, images: Sequence[npt.NDArray[np.uint8]]
) -> npt.NDArray[Any]:
    """A fresh host model input for RGB images, fitted as the host engine fits them."""
    batch = np.zeros(spec.batch_shape(spec.fixed_batch or len(images)), np.dtype(spec.dtype))
    for slot, image in enumerate(images):
        placement = place(image.shape[1], image.shape[0], spec.width, spec.height, head.fit)
        fill_slot(batch[slot], image, placement, layout=spec.layout, scale=head.pixel_scale)
    return batch


def fill_detections(
    result: inference_service_pb2.ImageResult, found: Detections, labels: Sequence[str]
) -> None:
    """Adds ``found`` to ``result`` with the labels of their class ids."""
    for box, score, class_id in zip(
        found.boxes.tolist(), found.scores.tolist(), found.class_ids.tolist(), strict=True
    ):
        detection = result.detections.add()
        detection.class_id = class_id
        detection.label = labels[class_id]
        detection.score = score
        detection.box.x_min, detection.box.y_min, detection.box.x_max, detection.box.y_max = box


def load_engine(config: EngineConfig, registry: CollectorRegistry | None = None) -> Engine:
    """:meth:`Engine.load`: the null engine for ``--backend null``, the GPU engine for a
    device backend (torch, tensorrt), else the host engine."""
    files = resolve_model(config)
    custom_labels = read_custom_labels(config)
    if files is None:
        return NullEngine(config, custom_labels or labels_module.COCO_LABELS, registry)
    model = load_model(config, files, custom_labels)
    try:
        if files.backend in DEVICE_BACKENDS:
            # Imported here: it needs PyTorch, which only device backends do.
            from framewire.inference.gpu.engine import GpuEngine  # noqa: PLC0415

            return GpuEngine(model, config, registry)
        return ModelEngine(model, config, registry)
    except BaseException:
        model.backend.close()
        raise


def _close_gaps(batch: npt.NDArray[Any], prepared: dict[int, _Prepared]) -> None:
    """Moves prepared images down over the slots of failed ones, so the model runs no gaps.

    Slots are visited in increasing order and only ever move down, so no image
    is overwritten before it is moved.
    """
    for new_slot, item in enumerate(sorted(prepared.values(), key=lambda item: item.slot)):
        if item.slot != new_slot:
            batch[new_slot] = batch[item.slot]
            item.slot = new_slot
