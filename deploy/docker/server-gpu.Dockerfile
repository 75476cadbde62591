# syntax=docker/dockerfile:1
# framewire inference on NVIDIA GPUs: the server image on a CUDA + cuDNN base, with ONNX
# Runtime's CUDA provider (onnxruntime-gpu) instead of the CPU one.
#
# NOT BUILT IN CI: this project's machines have no GPU and cannot pull NVIDIA's base images;
# CI lints this file with hadolint only. The GPU backends (docs/gpu.md) come with extras:
#   --build-arg EXTRAS=gpu            the torch backend (PyTorch brings its own CUDA libraries)
#   --build-arg EXTRAS=tensorrt-cu12  the tensorrt backend and `framewire engine build` (pip
#                                     downloads TensorRT's libraries from NVIDIA while building)
#   docker build -f deploy/docker/server-gpu.Dockerfile -t framewire-server-gpu .
ARG BASE=nvcr.io/nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

FROM ${BASE} AS build
# Ubuntu 24.04's Python is 3.12 (framewire needs 3.11 or newer). Versions as of noble-updates.
ARG PYTHON_VERSION=3.12.3-0ubuntu2
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        "python3=${PYTHON_VERSION}" "python3-venv=${PYTHON_VERSION}" \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_CONSTRAINT=/tmp/constraints.txt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY deploy/docker/constraints/server-gpu.txt /tmp/constraints.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen gen
COPY services services
ARG EXTRAS=server
# onnxruntime-gpu provides the same `onnxruntime` module with the CUDA provider; the CPU
# package is removed so that only one of them is imported.
RUN python3 -m venv /opt/framewire \
    && /opt/framewire/bin/pip install --no-cache-dir ".[${EXTRAS}]" \
    && /opt/framewire/bin/pip uninstall --yes onnxruntime \
    && /opt/framewire/bin/pip install --no-cache-dir "onnxruntime-gpu==1.31.1"

FROM ${BASE}
ARG PYTHON_VERSION=3.12.3-0ubuntu2
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="framewire-server-gpu" \
      org.opencontainers.image.description="framewire inference on NVIDIA GPUs (CUDA, onnxruntime-gpu)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/framewire/framewire"
RUN apt-get update \
    && apt-get install -y --no-install-recommends "python3=${PYTHON_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-log-init --uid 10001 --user-group --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin framewire
COPY --from=build /opt/framewire /opt/framewire
ENV PATH=/opt/framewire/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FRAMEWIRE_DEVICE=cuda
USER 10001:10001
EXPOSE 50051 9464
ENTRYPOINT ["framewire"]
CMD ["inference"]
