"""Builds YOLO test models with Ultralytics: the same random network as TorchScript and ONNX.

No registry package carries trained YOLO weights, so the GPU backends are
tested and benchmarked with Ultralytics' own architectures (``yolov8n.yaml``,
``yolo11n.yaml``) exported the way users export theirs (``format=torchscript``
and ``format=onnx, dynamic=True``). The detections mean nothing; what the
tests need is that both files are the same network, with outputs that vary
with the image:

- an untrained YOLO's activations fade to almost nothing by the head (its
  batch-norm statistics are the initial 0 and 1), so every anchor scores the
  same; the batch norms are recalibrated on the given frames (cumulative
  statistics in training mode), and
- the heads' last convolutions are rescaled per channel so that their logits
  have a set spread on those frames: scores then spread over (0, 1) and boxes
  vary in size.

Usage: ``python -m tools.yolo_test_models yolov8n 640 FRAMES.npy OUTDIR``
(``FRAMES.npy``: ``[n, h, w, 3]`` uint8 RGB frames at the model's size).
Needs ``ultralytics`` (AGPL-3.0, test use only: ``pip install --no-deps
ultralytics`` plus pyyaml, psutil, requests and onnx) and PyTorch; runs offline.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

# Spread of the class logits over the calibration frames, and their offset:
# scores from about 0.3 to 0.95, a few dozen boxes above 0.5 per frame.
CLASS_LOGIT_SPREAD = 0.4
CLASS_LOGIT_OFFSET = -3.0
# The largest class logit on the calibration frames: a score of 0.9975.
MAX_CLASS_LOGIT = 6.0


def build(kind: str, size: int, frames_file: Path, folder: Path) -> tuple[Path, Path]:
    """Writes ``KIND.torchscript`` and ``KIND.onnx`` into ``folder``; returns their paths."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    # Imported here: only this tool needs them, and ultralytics only for tests.
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    yolo = importlib.import_module("ultralytics").YOLO  # AGPL-3.0, test models only

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    frames = np.load(frames_file)
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    model = yolo(f"{kind}.yaml")
    network: Any = model.model
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the calibration passes
    network.train()
    with torch.no_grad():
        network(images)
    network.eval()
    head = network.model[-1]
    class_convs = [branch[-1] for branch in head.cv3]
    box_convs = [branch[-1] for branch in head.cv2]
    seen: dict[int, Any] = {}
    hooks = [
        conv.register_forward_hook(lambda module, _, out: seen.__setitem__(id(module), out))
        for conv in class_convs + box_convs
    ]
    with torch.no_grad():
        network(images)
        for conv in class_convs + box_convs:
            logits = seen[id(conv)] - conv.bias.view(1, -1, 1, 1)
            mean = logits.mean(dim=(0, 2, 3))
            spread = logits.std(dim=(0, 2, 3)).clamp_min(1e-12)
            target = CLASS_LOGIT_SPREAD if conv in class_convs else 1.0
            conv.weight.mul_((target / spread).view(-1, 1, 1, 1))
            bias = -mean * target / spread
            if conv in class_convs:
                bias = bias + torch.randn(bias.shape, generator=generator) + CLASS_LOGIT_OFFSET
            conv.bias.copy_(bias)
        # A few anchors have huge activations; keep every class logit under the cap on the
        # calibration frames, so scores do not saturate at 1.0 (ties would make NMS order
        # arbitrary between two runtimes).
        network(images)
        for conv in class_convs:
            bias = conv.bias.view(1, -1, 1, 1)
            peak = (seen[id(conv)] - bias).amax(dim=(0, 2, 3))
            room = (MAX_CLASS_LOGIT - conv.bias) / peak.clamp_min(1e-12)
            shrink = torch.where(peak + conv.bias > MAX_CLASS_LOGIT, room, torch.ones_like(room))
            conv.weight.mul_(shrink.view(-1, 1, 1, 1))
    for hook in hooks:
        hook.remove()
    folder.mkdir(parents=True, exist_ok=True)
    here = Path.cwd()
    os.chdir(folder)  # Ultralytics writes its exports beside the model's name
    try:
        torchscript = Path(model.export(format="torchscript", imgsz=size, batch=1))
        onnx = Path(model.export(format="onnx", imgsz=size, dynamic=True, simplify=False, opset=17))
    finally:
        os.chdir(here)
    results = []
    for made, suffix in ((torchscript, ".torchscript"), (onnx, ".onnx")):
        target_path = folder / f"{kind}{suffix}"
        source = made if made.is_absolute() else folder / made
        if source.resolve() != target_path.resolve():
            shutil.move(source, target_path)
        results.append(target_path)
    return results[0], results[1]


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    kind, size, frames, folder = argv
    torchscript, onnx = build(kind, int(size), Path(frames), Path(folder))
    print(torchscript)
    print(onnx)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
