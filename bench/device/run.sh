#!/usr/bin/env bash
# Runs on a lent GPU machine (the device tool), from the repository root, with .whl and
# .gpu-models carried (bench/device/prepare.sh makes them):
#
#   run(command="bash bench/device/run.sh", carry=[".whl", ".gpu-models"], timeout_s=540)
#
# 1. the CUDA tests (tests/inference/test_gpu_cuda.py and the CPU-path ones beside them),
# 2. python -m bench gpu (YOLOv8n and YOLO11n, batch 1/8/32/64, 64 streams),
# each writing its log and the figures (JSON with the GPU and versions) under $OUT.
set -uo pipefail
out="${OUT:-/tmp/framewire-device}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
root="$(pwd)"
export PYTHONPATH="/tmp/site:$root/gen/python:$root/services/common:$root/services/inference:$root/services/ingest:$root/services/edge_agent:$root/services/demo:$root"
export PYTHONUNBUFFERED=1 FRAMEWIRE_TEST_MODELS="$root/.gpu-models"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
timeout 240 python3 -m pytest -p no:cacheprovider -q -rs -s \
    tests/inference/test_gpu_cuda.py tests/inference/test_gpu_pipeline.py \
    tests/inference/test_gpu_plan.py 2>&1 | tee "$out/tests.log"
timeout 280 python3 -m bench gpu -- --models .gpu-models --seconds 3 --workers 4 --load-processes 4 \
    --json "$out/gpu-bench.json" 2>&1 | tee "$out/bench.log"
