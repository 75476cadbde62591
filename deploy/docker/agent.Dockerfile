# syntax=docker/dockerfile:1
# edge-agent: capture, compression and the stream client; no model runtime. Builds for
# linux/amd64 and linux/arm64 (every pinned wheel exists for both).
#   docker build -f deploy/docker/agent.Dockerfile -t framewire-agent .
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Dependencies first, exactly the pinned set (the build backend included), in a layer of
# their own that source changes do not invalidate.
COPY deploy/docker/constraints/agent.txt /tmp/requirements.txt
RUN python3 -m venv /opt/framewire \
    && /opt/framewire/bin/pip install --no-cache-dir --requirement /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen gen
COPY services services
# framewire itself, built with the pinned backend. --no-index: its dependencies must all be
# in the pinned set already, or the build fails naming the one missing.
RUN /opt/framewire/bin/pip install --no-cache-dir --no-index --no-build-isolation ".[agent]" \
    && /opt/framewire/bin/pip check

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
