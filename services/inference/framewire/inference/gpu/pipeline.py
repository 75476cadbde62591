"""The GPU data path: JPEG bytes to model input, and model output to detections, per batch.

Shared by every device backend (torch, tensorrt). Each step works on the whole
batch in a few tensor operations, because per-image Python work, not the GPU,
is what limits a naive loop (measured on an H100: 1.3k img/s for decode →
letterbox → model → per-image NMS at batch 64, against 5.1k for the bare model).

1. :func:`decode_jpegs`: nvJPEG through ``torchvision.io.decode_jpeg`` with a
   list (one batched decode) on CUDA, libjpeg-turbo on the CPU. An image the
   batch decoder refuses is retried alone, then on OpenCV's CPU decoder, and
   only then fails alone with INVALID_ARGUMENT.
2. :func:`fit_batch`: letterbox or stretch, scale, layout and dtype, written
   straight into the backend's preallocated input. Images of one size and
   placement (a stream's frames, usually all of them) are resized together.
3. :func:`yolo_detections`: per image, the best class per anchor, the score
   threshold and the top ``max_candidates``, then one class-aware
   ``torchvision.ops.batched_nms`` for the whole batch (image and class make
   the group), the per-image ``max_detections``, and one copy of the final
   rows to the host. The rules are exactly the CPU heads' (``heads.py``).

Why torchvision: it ships nvJPEG's batched decoder and a CUDA NMS with the
PyTorch that the torch backend already needs, so one allocator and one CUDA
stream serve decode, preprocessing, the model and NMS with no copies between
libraries. nvImageCodec and CV-CUDA would do the same without PyTorch and are
the natural next step for a TensorRT-only image; they could not be measured
here (see docs/gpu.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.ops import batched_nms

from framewire.common.errors import FramewireError
from framewire.inference.heads import DecodeOptions, Detections
from framewire.inference.inputs import decode_rgb
from framewire.inference.preprocess import Layout, Placement


def decode_jpegs(
    datas: Sequence[bytes], device: torch.device
) -> list[torch.Tensor | FramewireError]:
    """Decodes JPEGs to RGB ``[3, h, w]`` uint8 tensors on ``device``; an error per bad image."""
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        pass  # one image spoiled the batch: find it, keep the others
    decoded: list[torch.Tensor | FramewireError] = []
    for data, tensor in zip(datas, encoded, strict=True):
        try:
            decoded.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
            continue
        except RuntimeError:
            pass
        try:
            pixels = decode_rgb(data)  # OpenCV reads some files nvJPEG and libjpeg refuse
        except FramewireError as error:
            decoded.append(error)
            continue
        decoded.append(torch.from_numpy(pixels).permute(2, 0, 1).contiguous().to(device))
    return decoded


def fit_batch(
    target: torch.Tensor,
    images: Sequence[torch.Tensor],
    placements: Sequence[Placement],
    *,
    layout: Layout,
    scale: float,
    pad_value: int,
) -> None:
    """Draws ``images`` (``[3, h, w]`` uint8) into ``target[:len(images)]`` at their placements.

    ``target`` is the model's input batch (NCHW or NHWC, any float type or
    uint8). Resizing is bilinear with half-pixel centres and no antialiasing,
    which is what OpenCV's ``INTER_LINEAR`` does on the CPU path.
    """
    count = len(images)
    if count == 0:
        return
    height, width = (target.shape[2], target.shape[3]) if layout == "NCHW" else target.shape[1:3]
    if any((p.width, p.height) != (width, height) for p in placements):
        target[:count].fill_(pad_value * scale)
    groups: dict[tuple[int, int, Placement], list[int]] = {}
    for slot, (image, placement) in enumerate(zip(images, placements, strict=True)):
        groups.setdefault((image.shape[1], image.shape[2], placement), []).append(slot)
    for (source_height, source_width, placement), slots in groups.items():
        pixels = torch.stack([images[slot] for slot in slots]).float()
        if (placement.width, placement.height) != (source_width, source_height):
            pixels = functional.interpolate(
                pixels,
                size=(placement.height, placement.width),
                mode="bilinear",
                align_corners=False,
                antialias=False,
            )
        if target.dtype == torch.uint8:
            pixels = pixels.round_().clamp_(0, 255)
        elif scale != 1.0:
            pixels = pixels.mul_(scale)
        rows = slice(placement.top, placement.top + placement.height)
        columns = slice(placement.left, placement.left + placement.width)
        index = _index(slots, target.device)
        if layout == "NCHW":
            target[index, :, rows, columns] = pixels.to(target.dtype)
        else:
            target[index, rows, columns, :] = pixels.permute(0, 2, 3, 1).to(target.dtype)


def _index(slots: list[int], device: torch.device) -> slice | torch.Tensor:
    """A slice for consecutive slots (a view, no gather), else an index tensor."""
    if slots == list(range(slots[0], slots[0] + len(slots))):
        return slice(slots[0], slots[0] + len(slots))
    return torch.tensor(slots, device=device)


def yolo_detections(
    prediction: torch.Tensor,
    layout: str,
    placements: Sequence[Placement],
    options: Sequence[DecodeOptions],
    host_rows: torch.Tensor | None = None,
) -> list[Detections]:
    """The detections of each image of a YOLO batch, decoded on the prediction's device.

    ``prediction`` is the model output for at least ``len(options)`` images:
    ``[B, 4 + classes, anchors]`` (``layout`` ``yolov8``) or ``[B, anchors,
    5 + classes]`` (``yolov5``). ``host_rows``, a page-locked ``[rows, 7]``
    float32 buffer, receives the final rows with an asynchronous copy when it
    is large enough. Same rules as ``heads._YoloHead.decode``.
    """
    count = len(options)
    device = prediction.device
    prediction = prediction[:count].float()
    if layout == "yolov8":
        centres = prediction[:, :4, :].transpose(1, 2)  # [B, anchors, 4]
        class_scores = prediction[:, 4:, :].transpose(1, 2)  # [B, anchors, classes]
    else:
        centres = prediction[:, :, :4]
        class_scores = prediction[:, :, 5:] * prediction[:, :, 4:5]
    classes = class_scores.shape[2]
    if any(option.allowed is not None for option in options):
        allowed = torch.ones((count, classes), dtype=torch.bool)
        for image, option in enumerate(options):
            if option.allowed is not None:
                allowed[image] = torch.from_numpy(option.allowed)
        class_scores = class_scores.masked_fill(~allowed.to(device)[:, None, :], -1.0)
    scores, class_ids = class_scores.max(dim=2)  # [B, anchors]
    thresholds = torch.tensor([o.score_threshold for o in options], device=device)[:, None]
    passing = scores >= thresholds
    limits = [o.max_candidates for o in options]
    most = int(passing.sum(dim=1).max()) if count else 0
    if most > min(limits):
        # Some image has more candidates than it may keep: its best ones, by score.
        top = min(scores.shape[1], max(limits))
        ranked = torch.where(passing, scores, torch.full_like(scores, -1.0))
        top_scores, top_anchors = ranked.topk(top, dim=1)
        rank_limits = torch.tensor(limits, device=device)[:, None]
        within = (top_scores >= thresholds) & (
            torch.arange(top, device=device)[None, :] < rank_limits
        )
        images, columns = within.nonzero(as_tuple=True)
        anchors = top_anchors[images, columns]
    else:
        images, anchors = passing.nonzero(as_tuple=True)
    boxes = centres[images, anchors]
    half = boxes[:, 2:4].abs() / 2
    corners = torch.cat([boxes[:, 0:2] - half, boxes[:, 0:2] + half], dim=1)
    # To fractions of each original image, clipped (see preprocess.to_normalized).
    frame = torch.tensor(
        [[p.left, p.top, p.width, p.height] for p in placements[:count]],
        dtype=torch.float32,
        device=device,
    )[images]
    offset = frame[:, 0:2].repeat(1, 2)
    span = frame[:, 2:4].repeat(1, 2)
    normalized = ((corners - offset) / span).clamp_(0.0, 1.0)
    found_scores = scores[images, anchors]
    found_classes = class_ids[images, anchors]
    nonempty = (normalized[:, 2] > normalized[:, 0]) & (normalized[:, 3] > normalized[:, 1])
    normalized, found_scores, found_classes, images = (
        normalized[nonempty],
        found_scores[nonempty],
        found_classes[nonempty],
        images[nonempty],
    )
    kept = _suppress(
        normalized,
        scores=found_scores,
        class_ids=found_classes,
        images=images,
        classes=classes,
        options=options,
    )
    rows = torch.cat(
        [
            normalized[kept],
            found_scores[kept, None],
            found_classes[kept, None].float(),
            images[kept, None].float(),
        ],
        dim=1,
    )
    table = _to_host(rows, host_rows)
    return _split(table, count)


def _suppress(
    boxes: torch.Tensor,
    *,
    scores: torch.Tensor,
    class_ids: torch.Tensor,
    images: torch.Tensor,
    classes: int,
    options: Sequence[DecodeOptions],
) -> torch.Tensor:
    """Indices kept by class-aware NMS per image, grouped by image, best first, capped per image."""
    device = boxes.device
    groups = images * classes + class_ids
    thresholds = {o.iou_threshold for o in options}
    if len(thresholds) == 1:
        kept: torch.Tensor = batched_nms(boxes, scores, groups, thresholds.pop())
    else:  # requests with different IoU thresholds: one NMS per threshold
        per_image = torch.tensor([o.iou_threshold for o in options], device=device)[images]
        parts = []
        for threshold in sorted(thresholds):
            members = (per_image == threshold).nonzero(as_tuple=True)[0]
            chosen = batched_nms(boxes[members], scores[members], groups[members], threshold)
            parts.append(members[chosen])
        kept = torch.cat(parts)
        kept = kept[torch.argsort(scores[kept], descending=True, stable=True)]
    # Best first within each image: a stable sort by image keeps the score order.
    kept = kept[torch.sort(images[kept], stable=True).indices]
    owners = images[kept]
    counts = torch.bincount(owners, minlength=len(options))
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(kept), device=device) - starts[owners]
    caps = torch.tensor([o.max_detections for o in options], device=device)
    return kept[rank < caps[owners]]


def _to_host(rows: torch.Tensor, host_rows: torch.Tensor | None) -> np.ndarray:
    """``rows`` as a numpy array, through the page-locked buffer when it fits."""
    if rows.device.type == "cpu":
        return rows.numpy()
    if host_rows is not None and len(rows) <= len(host_rows):
        target = host_rows[: len(rows)]
        target.copy_(rows, non_blocking=True)
        torch.cuda.current_stream(rows.device).synchronize()
        return target.numpy().copy()
    return rows.cpu().numpy()


def _split(table: np.ndarray, count: int) -> list[Detections]:
    """Rows ``[x1, y1, x2, y2, score, class, image]`` grouped by image into Detections."""
    owners = table[:, 6].astype(np.int64)
    bounds = np.searchsorted(owners, np.arange(count + 1))
    found = []
    for image in range(count):
        part = table[bounds[image] : bounds[image + 1]]
        found.append(
            Detections(
                np.ascontiguousarray(part[:, 0:4], dtype=np.float32),
                np.ascontiguousarray(part[:, 4], dtype=np.float32),
                part[:, 5].astype(np.int64),
            )
        )
    return found
