"""The GPU engine: Detect calls served on a device backend, images on the device from decode to NMS.

Per call (after the checks every engine makes, :class:`~framewire.inference.engine.Engine`):

1. each image's JPEG header is checked on the host (cheap, before any decoding);
2. the batch is decoded at once (nvJPEG on CUDA), an undecodable image failing alone;
3. every image is fitted into the backend's preallocated device input;
4. the model runs on the batch, and YOLO outputs are decoded on the device
   (:func:`~framewire.inference.gpu.pipeline.yolo_detections`): only the final
   detections are copied back, through a page-locked buffer. SSD graphs have
   their NMS inside; their few rows are copied back and read on the host.

Steps 2 and 3 of one call overlap step 4 of another (``--concurrent-batches``
input batches); step 4 holds the backend's lock, since the model's outputs
live until the next run. Each stage ends with a stream synchronisation, so
the stage timings report GPU work, not launches.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import torch
from prometheus_client import CollectorRegistry

from framewire.common.errors import FramewireError, invalid_argument
from framewire.common.protoutil import duration
from framewire.inference.config import EngineConfig
from framewire.inference.engine import LoadedModelEngine, fill_detections
from framewire.inference.gpu.backend import DeviceBackend
from framewire.inference.gpu.pipeline import decode_jpegs, fit_batch, yolo_detections
from framewire.inference.heads import DecodeOptions, Detections, SsdHead
from framewire.inference.loading import LoadedModel
from framewire.inference.preprocess import LETTERBOX_GREY, Placement, place
from framewire.inference.validation import check_header
from framewire.v1 import inference_service_pb2

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Timings:
    decode: float
    preprocess: float
    queue: float
    inference: float
    postprocess: float


class GpuEngine(LoadedModelEngine):
    """A device backend with its input batches, page-locked result buffers and GPU data path."""

    def __init__(
        self, model: LoadedModel, config: EngineConfig, registry: CollectorRegistry | None = None
    ) -> None:
        if not isinstance(model.backend, DeviceBackend):
            raise TypeError("GpuEngine serves device backends only")
        super().__init__(model, config, registry)
        self.device_backend: DeviceBackend = model.backend
        device = self.device_backend.device
        self._device = device.torch_device
        self._free: queue.Queue[int] = queue.Queue()
        self._host_rows: list[torch.Tensor | None] = []
        rows = config.max_batch * config.max_detections
        for index in range(self.batches_at_once):
            self._free.put(index)
            self._host_rows.append(
                torch.empty((rows, 7), dtype=torch.float32, pin_memory=True)
                if device.type == "cuda"
                else None
            )

    def _answer(
        self,
        images: Sequence[inference_service_pb2.Image],
        options: dict[int, DecodeOptions],
        errors: list[FramewireError | None],
        results: list[inference_service_pb2.ImageResult],
    ) -> None:
        started = time.perf_counter()
        headers = {}
        # Each image's bytes, read once: every read of the field copies them.
        jpegs = {index: images[index].data for index in options}
        for index in options:
            try:
                headers[index] = check_header(images[index], jpegs[index], self.config)
            except FramewireError as error:
                errors[index] = error
        order = list(headers)
        if not order:
            return
        decoded = decode_jpegs([jpegs[index] for index in order], self._device)
        pixels: dict[int, torch.Tensor] = {}
        for index, image in zip(order, decoded, strict=True):
            header = headers[index]
            if isinstance(image, FramewireError):
                errors[index] = image
            elif (image.shape[2], image.shape[1]) != (header.width, header.height):
                errors[index] = invalid_argument(
                    f"the JPEG decodes to {image.shape[2]}x{image.shape[1]} pixels but its "
                    f"header says {header.width}x{header.height}"
                )
            else:
                pixels[index] = image
        if not pixels:
            return
        backend = self.device_backend
        backend.synchronize()
        decoded_at = time.perf_counter()
        spec, head = self._spec, self.head
        kept = list(pixels)
        placements = [
            place(headers[i].width, headers[i].height, spec.width, spec.height, head.fit)
            for i in kept
        ]
        slot = self._free.get()
        try:
            target = backend.device_input(slot)
            fit_batch(
                target,
                [pixels[i] for i in kept],
                placements,
                layout=spec.layout,
                scale=head.pixel_scale,
                pad_value=LETTERBOX_GREY,
            )
            del pixels
            backend.synchronize()
            prepared_at = time.perf_counter()
            count = spec.fixed_batch or len(kept)
            try:
                found, timings = self._run(slot, count, placements, [options[i] for i in kept])
            except Exception as error:
                _LOGGER.exception("the model failed on a batch of %d images", len(kept))
                for index in kept:
                    errors[index] = FramewireError(
                        grpc.StatusCode.INTERNAL, f"the model failed on this batch: {error}"
                    )
                return
        finally:
            self._free.put(slot)
        stages = _Timings(
            decode=decoded_at - started,
            preprocess=prepared_at - decoded_at,
            queue=timings.queue,
            inference=timings.inference,
            postprocess=timings.postprocess,
        )
        self._fill(results, kept, placements, found, stages)

    def _run(
        self, slot: int, count: int, placements: list[Placement], options: list[DecodeOptions]
    ) -> tuple[list[Detections], _Timings]:
        """The model and the decoding of its outputs, holding the backend for both."""
        backend = self.device_backend
        waiting = time.perf_counter()
        with backend.exclusive():
            model_started = time.perf_counter()
            outputs = backend.run_device(slot, count)
            backend.synchronize()
            model_done = time.perf_counter()
            if isinstance(self.head, SsdHead):
                host = [output.float().cpu().numpy() for output in outputs]
                found = [
                    self.head.decode(host, image, placement, self.input_size, option)
                    for image, (placement, option) in enumerate(
                        zip(placements, options, strict=True)
                    )
                ]
            else:
                found = yolo_detections(
                    outputs[0], self.head.name, placements, options, self._host_rows[slot]
                )
            finished = time.perf_counter()
        return found, _Timings(
            decode=0.0,
            preprocess=0.0,
            queue=model_started - waiting,
            inference=model_done - model_started,
            postprocess=finished - model_done,
        )

    def _fill(
        self,
        results: list[inference_service_pb2.ImageResult],
        kept: list[int],
        placements: list[Placement],
        found: list[Detections],
        stages: _Timings,
    ) -> None:
        """Writes each image's detections and stage times (the batch's, per image)."""
        for name in ("decode", "preprocess", "inference", "postprocess"):
            seconds = getattr(stages, name)
            for _ in kept:
                self.metrics.observe_stage(name, seconds)
        times = {name: duration(getattr(stages, name)) for name in _Timings.__dataclass_fields__}
        for index, placement, detections in zip(kept, placements, found, strict=True):
            result = results[index]
            result.width, result.height = placement.source_width, placement.source_height
            for name, value in times.items():
                getattr(result.timings, name).CopyFrom(value)
            fill_detections(result, detections, self.labels)

    def _release(self) -> None:
        with self.device_backend.exclusive():
            self.backend.close()
