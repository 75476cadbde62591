"""The engine: a loaded model that turns a batch of JPEG images into detections.

``Engine.detect`` is safe to call from several threads at once and is built to
overlap: while one call's batch runs on the model, another call decodes and
preprocesses its images into a second preallocated input batch. Per call:

1. whole-batch checks (empty, too large) raise :class:`FramewireError`;
2. each image's header is checked (encoding, truncation, declared size, pixel
   limit) before any decoding, then it is decoded and fitted straight into
   its slot of an input batch, on a bounded thread pool;
3. the images that made it run through the model as one batch;
4. each image's outputs become detections (box decoding, NMS, labels).

An image that fails any step gets an error in its own result; the others are
answered normally, in request order.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

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
from framewire.inference.backends import Backend, NullBackend, open_backend
from framewire.inference.config import EngineConfig
from framewire.inference.heads import (
    DecodeOptions,
    Detections,
    Head,
    SsdHead,
    YoloV5Head,
    YoloV8Head,
    guess_head,
    yolo_layout,
)
from framewire.inference.inputs import InputBatches, InputSpec, decode_rgb, input_spec
from framewire.inference.metrics import InferenceMetrics
from framewire.inference.models import ModelFiles, model_id, resolve_model
from framewire.inference.preprocess import LETTERBOX_GREY, Placement, fill_slot, place
from framewire.inference.signature import ModelSignature
from framewire.inference.validation import check_header, decode_options
from framewire.v1 import inference_service_pb2

_LOGGER = logging.getLogger(__name__)

_MAX_DEFAULT_DECODE_THREADS = 8


@dataclass
class _Prepared:
    """An image decoded into a slot of the input batch."""

    slot: int
    placement: Placement
    decode_seconds: float
    preprocess_seconds: float


class Engine:
    """A loaded, warmed-up model with its decode pool, input batches and metrics."""

    def __init__(
        self,
        *,
        config: EngineConfig,
        backend: Backend,
        head: Head | None,
        labels: tuple[str, ...],
        spec: InputSpec | None,
        model_id: str,
        registry: CollectorRegistry | None,
    ) -> None:
        """Use :meth:`load`; this only assembles parts that are already loaded."""
        self.config = config
        self.backend = backend
        self.head = head
        self.labels = labels
        self.spec = spec
        self.model_id = model_id
        self.registry = registry if registry is not None else CollectorRegistry()
        self.warmup_seconds = 0.0
        self._label_indices = labels_module.label_indices(labels)
        self._model_lock = threading.Lock()
        self._closed = False
        self._batches = (
            InputBatches(backend, spec, config.max_batch, config.concurrent_batches)
            if spec is not None
            else None
        )
        threads = config.decode_threads or min(_MAX_DEFAULT_DECODE_THREADS, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="framewire-decode")
        self.metrics = InferenceMetrics(
            self.registry, model_id=model_id, backend=backend.name, head=self.head_name
        )

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, config: EngineConfig, registry: CollectorRegistry | None = None) -> Engine:
        """Loads the model, warms it up with a full max batch, and registers metrics.

        Raises :class:`FileNotFoundError` for a missing model or labels file and
        :class:`ValueError` for a model or setting that cannot work, each with
        a message saying what to change.
        """
        files = resolve_model(config)
        custom_labels = (
            labels_module.read_labels_file(config.labels) if config.labels is not None else None
        )
        if files is None:
            return cls(
                config=config,
                backend=NullBackend(),
                head=None,
                labels=custom_labels or labels_module.COCO_LABELS,
                spec=None,
                model_id="null",
                registry=registry,
            )
        started = time.perf_counter()
        backend = open_backend(
            files,
            intra_op_threads=config.intra_op_threads,
            device=config.device,
            spin_wait=config.spin_wait,
        )
        try:
            engine = cls._assemble(config, files, backend, custom_labels, registry)
        except BaseException:
            backend.close()
            raise
        engine.warmup_seconds = time.perf_counter() - started
        _LOGGER.info(
            "loaded %s on %s: head %s, input %dx%d %s, %d labels, max batch %d (%.1f s)",
            engine.model_id,
            backend.describe(),
            engine.head_name,
            engine.input_size[0],
            engine.input_size[1],
            engine.spec.layout if engine.spec else "-",
            len(engine.labels),
            config.max_batch,
            engine.warmup_seconds,
        )
        return engine

    @classmethod
    def _assemble(
        cls,
        config: EngineConfig,
        files: ModelFiles,
        backend: Backend,
        custom_labels: tuple[str, ...] | None,
        registry: CollectorRegistry | None,
    ) -> Engine:
        """Picks the head and input, warms the model up, and settles the labels."""
        signature = backend.signature
        head_name = config.head if config.head != "auto" else guess_head(signature.outputs)
        family: type[Head] = SsdHead if head_name == "ssd" else YoloV8Head
        spec = input_spec(signature, family, config, config.max_batch)
        # Warm up with a full batch of grey: allocations, kernel choice and lazy
        # initialization happen now, not on the first request.
        warm = backend.allocate_input(
            spec.batch_shape(spec.fixed_batch or config.max_batch), np.dtype(spec.dtype)
        )
        warm[...] = LETTERBOX_GREY * family.pixel_scale
        try:
            outputs = backend.run(warm)
        except Exception as error:
            # A plain grey batch is also what an empty scene looks like: a model
            # that cannot run it cannot serve.
            raise ValueError(
                f"{files.weights.name} failed its warm-up run on the {backend.name} backend "
                f"(a batch of {len(warm)} grey {spec.width}x{spec.height} images): {error}"
            ) from error
        if head_name == "yolo":
            if len(outputs) != 1 or outputs[0].ndim != 3:
                raise ValueError(f"expected one YOLO output of rank 3, got {_shapes(outputs)}")
            head_name = yolo_layout(outputs[0].shape)
        head: Head
        if head_name == "ssd":
            labels = custom_labels or labels_module.COCO_LABELS
            table = (
                labels_module.one_based_table(len(labels))
                if custom_labels
                else labels_module.COCO91_TO_COCO80
            )
            head = SsdHead(table, [info.name for info in signature.outputs])
            head.check_outputs(outputs, len(warm))
        else:
            head = YoloV5Head() if head_name == "yolov5" else YoloV8Head()
            classes = head.check_outputs(outputs, len(warm))
            assert classes is not None
            labels = _yolo_labels(custom_labels, signature, classes)
        if spec.fixed_batch is None and config.max_batch > 1:
            # A dynamic-batch model also sees single images; some runtimes
            # re-plan on every new shape, so show it that one too.
            backend.run(warm[:1])
        return cls(
            config=config,
            backend=backend,
            head=head,
            labels=labels,
            spec=spec,
            model_id=_model_name(files),
            registry=registry,
        )

    # --------------------------------------------------------------- describing

    @property
    def head_name(self) -> str:
        """``yolov8``, ``yolov5``, ``ssd`` or ``none`` (null backend)."""
        return self.head.name if self.head is not None else "none"

    @property
    def input_size(self) -> tuple[int, int]:
        """The model input (width, height); (0, 0) for the null backend."""
        return (self.spec.width, self.spec.height) if self.spec is not None else (0, 0)

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
        )

    def input_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[Any]:
        """A fresh model input for RGB images, prepared exactly as :meth:`detect` does.

        For benchmarks that call :attr:`backend` directly on pre-decoded tensors.
        """
        if self.spec is None or self.head is None:
            raise ValueError("the null backend has no model input")
        batch = np.zeros(
            self.spec.batch_shape(self.spec.fixed_batch or len(images)), np.dtype(self.spec.dtype)
        )
        for slot, image in enumerate(images):
            placement = place(
                image.shape[1], image.shape[0], self.spec.width, self.spec.height, self.head.fit
            )
            fill_slot(
                batch[slot], image, placement, layout=self.spec.layout, scale=self.head.pixel_scale
            )
        return batch

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
        options: list[DecodeOptions | None] = [None] * len(images)
        for index, image in enumerate(images):
            try:
                options[index] = decode_options(
                    image.options, self.config, self.labels, self._label_indices
                )
            except FramewireError as error:
                errors[index] = error
        if self._batches is None:
            self._check_headers(images, errors)
        else:
            self._run_model(images, options, errors, results)
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

    def _check_headers(
        self,
        images: Sequence[inference_service_pb2.Image],
        errors: list[FramewireError | None],
    ) -> None:
        """The null backend's whole job: header checks, no decoding, no detections."""
        for index, image in enumerate(images):
            if errors[index] is None:
                try:
                    check_header(image, self.config.max_image_pixels)
                except FramewireError as error:
                    errors[index] = error

    def _prepare(
        self, image: inference_service_pb2.Image, batch: npt.NDArray[Any], slot: int
    ) -> _Prepared:
        """Checks, decodes and fits one image into ``batch[slot]`` (on the decode pool)."""
        assert self.spec is not None
        assert self.head is not None
        started = time.perf_counter()
        header = check_header(image, self.config.max_image_pixels)
        pixels = decode_rgb(image.data)
        if pixels.shape[:2] != (header.height, header.width):
            raise invalid_argument(
                f"the JPEG decodes to {pixels.shape[1]}x{pixels.shape[0]} pixels but its header "
                f"says {header.width}x{header.height}"
            )
        decoded = time.perf_counter()
        placement = place(
            header.width, header.height, self.spec.width, self.spec.height, self.head.fit
        )
        fill_slot(
            batch[slot], pixels, placement, layout=self.spec.layout, scale=self.head.pixel_scale
        )
        return _Prepared(slot, placement, decoded - started, time.perf_counter() - decoded)

    def _run_model(
        self,
        images: Sequence[inference_service_pb2.Image],
        options: list[DecodeOptions | None],
        errors: list[FramewireError | None],
        results: list[inference_service_pb2.ImageResult],
    ) -> None:
        """Decode and preprocess in parallel, one model run, then postprocess per image."""
        assert self._batches is not None
        assert self.head is not None
        assert self.spec is not None
        prepared: dict[int, _Prepared] = {}
        with self._batches.borrow() as batch:
            jobs: list[tuple[int, Future[_Prepared]]] = []
            for index, image in enumerate(images):
                if errors[index] is None:
                    jobs.append((index, self._pool.submit(self._prepare, image, batch, len(jobs))))
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
                with self._model_lock:
                    model_started = time.perf_counter()
                    outputs = self.backend.run(batch[: self.spec.fixed_batch or count])
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
        width, height = self.spec.width, self.spec.height
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
            decode_options = options[index]
            assert decode_options is not None
            try:
                found = self.head.decode(
                    outputs, item.slot, item.placement, (width, height), decode_options
                )
            except Exception as error:
                _LOGGER.exception("decoding the model output of image %d failed", index)
                errors[index] = FramewireError(
                    grpc.StatusCode.INTERNAL, f"the server failed to read the model output: {error}"
                )
                continue
            self._fill_detections(result, found)
            seconds = time.perf_counter() - started
            result.timings.postprocess.CopyFrom(duration(seconds))
            self.metrics.observe_stage("postprocess", seconds)

    def _fill_detections(
        self, result: inference_service_pb2.ImageResult, found: Detections
    ) -> None:
        labels = self.labels
        for box, score, class_id in zip(
            found.boxes.tolist(), found.scores.tolist(), found.class_ids.tolist(), strict=True
        ):
            detection = result.detections.add()
            detection.class_id = class_id
            detection.label = labels[class_id]
            detection.score = score
            detection.box.x_min, detection.box.y_min, detection.box.x_max, detection.box.y_max = box

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Stops the decode pool and releases the model; later detect calls get UNAVAILABLE."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        self.backend.close()


def _close_gaps(batch: npt.NDArray[Any], prepared: dict[int, _Prepared]) -> None:
    """Moves prepared images down over the slots of failed ones, so the model runs no gaps.

    Slots are visited in increasing order and only ever move down, so no image
    is overwritten before it is moved.
    """
    for new_slot, item in enumerate(sorted(prepared.values(), key=lambda item: item.slot)):
        if item.slot != new_slot:
            batch[new_slot] = batch[item.slot]
            item.slot = new_slot


def _shapes(outputs: Sequence[npt.NDArray[Any]]) -> list[tuple[int, ...]]:
    return [tuple(output.shape) for output in outputs]


def _model_name(files: ModelFiles) -> str:
    return model_id(files.name, files.weights)


def _yolo_labels(
    custom: tuple[str, ...] | None, signature: ModelSignature, classes: int
) -> tuple[str, ...]:
    """A labels file, else the model's own names, else COCO for 80 classes, else class_N."""
    if custom is not None:
        if len(custom) != classes:
            raise ValueError(
                f"the labels file has {len(custom)} labels but the model has {classes} classes"
            )
        return custom
    named = labels_module.labels_from_metadata(signature.metadata)
    if named is not None and len(named) == classes:
        return named
    if classes == len(labels_module.COCO_LABELS):
        return labels_module.COCO_LABELS
    return labels_module.generic_labels(classes)
