# syntax=docker/dockerfile:1
# edge-agent: capture, compression and the stream client; no model runtime. Builds for
# linux/amd64 and linux/arm64 (every pinned wheel exists for both).
#   docker build -f deploy/docker/agent.Dockerfile -t framewire-agent .
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# Pins for every package, the build backend included (pip passes PIP_CONSTRAINT on to its
# isolated build environment).
ENV PIP_CONSTRAINT=/tmp/constraints.txt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY deploy/docker/constraints/agent.txt /tmp/constraints.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen gen
COPY services services
RUN python3 -m venv /opt/framewire \
    && /opt/framewire/bin/pip install --no-cache-dir ".[agent]"

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="framewire-agent" \
      org.opencontainers.image.description="framewire edge-agent: streams camera frames to a framewire server and receives detections" \
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
ENTRYPOINT ["edge-agent"]
CMD ["--help"]
