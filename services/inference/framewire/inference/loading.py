"""Loading a model: open it on its backend, pick its head and input, warm it up, settle labels.

:func:`load_model` does everything that happens once, before the first
request; the engine (:mod:`framewire.inference.engine`) only serves what it
returns. Every backend is warmed up here with a full ``max_batch`` (and, for a
dynamic-batch model, one single image) so that allocations, kernel choice and
lazy initialization happen before the server reports SERVING; that is also
where a TensorRT backend will build or load its engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from framewire.common.cpus import affinity_cores, quota_cap
from framewire.inference import labels as labels_module
from framewire.inference.backends import Backend, open_backend
from framewire.inference.config import EngineConfig
from framewire.inference.gpu.backend import DeviceBackend
from framewire.inference.heads import (
    Head,
    SsdHead,
    YoloV5Head,
    YoloV8Head,
    guess_head,
    yolo_layout,
)
from framewire.inference.inputs import InputSpec, input_spec
from framewire.inference.models import ModelFiles, model_id
from framewire.inference.preprocess import LETTERBOX_GREY
from framewire.inference.signature import ModelSignature

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A model open on its backend, checked against its head and warmed up: ready to serve."""

    backend: Backend
    head: Head
    spec: InputSpec
    labels: tuple[str, ...]
    model_id: str
    # Opening the model plus its warm-up runs.
    warmup_seconds: float


def read_custom_labels(config: EngineConfig) -> tuple[str, ...] | None:
    """The ``--labels`` file's names, or None when none is given."""
    return labels_module.read_labels_file(config.labels) if config.labels is not None else None


def load_model(
    config: EngineConfig, files: ModelFiles, custom_labels: tuple[str, ...] | None
) -> LoadedModel:
    """Opens ``files`` on their backend and warms the model up with a full max batch.

    Raises :class:`ValueError` for a model or setting that cannot work, with a
    message saying what to change; the backend is closed again first.
    """
    started = time.perf_counter()
    if (cores := quota_cap()) is not None:
        _LOGGER.info(
            "CPU quota: %d of the %d cores this process may run on; thread pools are sized to it",
            cores,
            affinity_cores(),
        )
    backend = open_backend(files, config)
    try:
        head, spec, labels = _prepare(config, files, backend, custom_labels)
        if isinstance(backend, DeviceBackend):
            # Device inputs for every batch prepared at once (and CUDA graphs) before SERVING.
            copies = config.batches_at_once(backend.concurrent_runs)
            backend.prepare(spec, config.max_batch, copies)
    except BaseException:
        backend.close()
        raise
    model = LoadedModel(
        backend=backend,
        head=head,
        spec=spec,
        labels=labels,
        model_id=model_id(files.name, files.weights),
        warmup_seconds=time.perf_counter() - started,
    )
    _LOGGER.info(
        "loaded %s on %s: head %s, input %dx%d %s, %d labels, max batch %d (%.1f s)",
        model.model_id,
        backend.describe(),
        head.name,
        spec.width,
        spec.height,
        spec.layout,
        len(labels),
        config.max_batch,
        model.warmup_seconds,
    )
    return model


def _prepare(
    config: EngineConfig,
    files: ModelFiles,
    backend: Backend,
    custom_labels: tuple[str, ...] | None,
) -> tuple[Head, InputSpec, tuple[str, ...]]:
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
        outputs = backend.warm_up(warm)
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
        yolo = YoloV5Head() if head_name == "yolov5" else YoloV8Head()
        labels = _yolo_labels(custom_labels, signature, yolo.check_outputs(outputs, len(warm)))
        head = yolo
    if spec.fixed_batch is None and config.max_batch > 1:
        # A dynamic-batch model also sees single images; some runtimes
        # re-plan on every new shape, so show it that one too.
        backend.run(warm[:1])
    return head, spec, labels


def _shapes(outputs: Sequence[npt.NDArray[Any]]) -> list[tuple[int, ...]]:
    return [tuple(output.shape) for output in outputs]


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
