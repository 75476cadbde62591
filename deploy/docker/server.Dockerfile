# syntax=docker/dockerfile:1
# framewire serve | ingest | inference on CPU (ONNX Runtime, OpenCV), with the default model
# (SSD MobileNet v2 COCO) inside. The chart runs it with a read-only root filesystem.
#   docker build -f deploy/docker/server.Dockerfile -t framewire-server .
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Dependencies first, exactly the pinned set (the build backend included), in a layer of
# their own that source changes do not invalidate.
COPY deploy/docker/constraints/server.txt /tmp/requirements.txt
RUN python3 -m venv /opt/framewire \
    && /opt/framewire/bin/pip install --no-cache-dir --requirement /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen gen
COPY services services
# framewire itself, built with the pinned backend. --no-index: its dependencies must all be
# in the pinned set already, or the build fails naming the one missing.
RUN /opt/framewire/bin/pip install --no-cache-dir --no-index --no-build-isolation ".[server]" \
    && /opt/framewire/bin/pip check

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="framewire-server" \
      org.opencontainers.image.description="framewire serve, ingest and inference on CPU, with the default SSD MobileNet v2 COCO model" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/framewire/framewire"
RUN useradd --system --no-log-init --uid 10001 --user-group --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin framewire
COPY --from=build /opt/framewire /opt/framewire
ENV PATH=/opt/framewire/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# gRPC (with grpc.health.v1) and Prometheus /metrics.
EXPOSE 50051 9464
ENTRYPOINT ["framewire"]
CMD ["serve"]
