#!/usr/bin/env bash
# Prepares what bench/device/run.sh needs on a lent GPU machine, which has no network and
# no Ultralytics: the YOLO test models at 640 (.gpu-models/) and the wheels its Python 3.12
# image lacks (.whl/). Both folders are git-ignored through .git/info/exclude and travel
# with the device tool's `carry` (64 MiB in all; this is about 45 MiB).
#
#   FRAMEWIRE_GPU_STACK=1 source scripts/setup.sh && bench/device/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for folder in /.gpu-models/ /.whl/; do
    grep -qxF "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >>.git/info/exclude
done
rm -rf .gpu-models .whl
mkdir -p .gpu-models .whl
python - <<'PY'
import shutil
from tests.inference.gpu_stack import yolo_models
for kind in ("yolov8n", "yolo11n"):
    torchscript, onnx = yolo_models(kind, 640)
    shutil.copy(torchscript, ".gpu-models/")
    if kind == "yolov8n":  # the GPU-versus-CPU test's ONNX twin
        shutil.copy(onnx, ".gpu-models/")
PY
# What the image (KINDS.md) lacks or holds in another version: protobuf as generated here,
# gRPC's health and reflection services, lap (tracking).
python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    "protobuf==$(python -c 'import google.protobuf as p; print(p.__version__)')" \
    "grpcio-health-checking==$(python -c 'import importlib.metadata as m; print(m.version("grpcio-health-checking"))')" \
    "grpcio-reflection==$(python -c 'import importlib.metadata as m; print(m.version("grpcio-reflection"))')" \
    "grpcio==$(python -c 'import grpc; print(grpc.__version__)')" \
    lap==0.5.12
du -sh .gpu-models .whl
