#!/usr/bin/env bash
# Prepares a working environment in .venv (idempotent; sourced by demo.sh and test.sh).
#
#   FRAMEWIRE_VENV   where the virtual environment lives (default: .venv in the checkout)
#   FRAMEWIRE_EXTRAS which extras to install (default: dev)
#   FRAMEWIRE_CLIENTS=1 also installs the Go and C++ toolchains (Debian packages) and the
#                    Node client's npm packages, for the interop tests of clients/
#   FRAMEWIRE_GPU_STACK=1 also installs PyTorch, torchvision and the tools that build the
#                    YOLO test models (scripts/gpu-stack.txt, Ultralytics without its
#                    dependencies), for the torch backend's tests, which run on the CPU
#
# Needs only python3 (3.11 or newer) with venv and pip. System packages that some
# tests use (Debian's prometheus; chromium for the preview's browser test; podman for
# the container tests) are installed when apt-get can be used without a password;
# without them those tests skip and say why.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FRAMEWIRE_VENV:-$root/.venv}"
extras="${FRAMEWIRE_EXTRAS:-dev}"

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "framewire needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment in $venv" >&2
    "$python_bin" -m venv "$venv"
fi
# Reinstall only when the project definition changed since the last install.
stamp="$venv/.framewire-installed"
project="$(sha256sum <"$root/pyproject.toml" | cut -d' ' -f1)"
installed="$(cat "$stamp" 2>/dev/null || true)"
# dev includes every other extra, so an environment set up for the tests also runs the demo.
if [ "$installed" != "$project $extras" ] && [ "$installed" != "$project dev" ]; then
    echo "installing framewire[$extras] into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[$extras]"
    echo "$project $extras" >"$stamp"
fi

# Optional system packages for the integration tests.
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 0
        sudo=(sudo -n)
    fi
    echo "installing system packages: ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || echo "could not install ${missing[*]}; tests that need them will skip" >&2
}
if [ "$extras" = "dev" ]; then
    # prometheus (with promtool): tests/ingest and tests/deploy. podman, buildah, runc and
    # debootstrap: the container image tests (tests/deploy, deploy/docker/podman/build.sh).
    apt_install prometheus chromium podman buildah runc debootstrap
fi
# The clients in other languages (docs/clients.md): Go in GOPATH mode and C++ on Debian's
# gRPC, both with their code generators; openssl for the tests' certificates; Node from npm
# with the committed package-lock.json.
if [ "${FRAMEWIRE_CLIENTS:-0}" = "1" ]; then
    apt_install golang-go golang-google-grpc-dev golang-google-protobuf-dev \
        golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc \
        g++ make pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc \
        openssl
    command -v node >/dev/null 2>&1 || apt_install nodejs npm
    if command -v npm >/dev/null 2>&1 && [ ! -d "$root/clients/node/node_modules/typescript" ]; then
        (cd "$root/clients/node" && npm ci --no-audit --no-fund --loglevel=error) ||
            echo "could not install the Node client's packages (npm ci in clients/node)" >&2
    fi
fi

# The GPU stack (docs/gpu.md): about 5.5 GB in the venv; on this project's machines pip takes
# torch and torchvision from files on disk. Ultralytics (AGPL-3.0) only builds test models.
if [ "${FRAMEWIRE_GPU_STACK:-0}" = "1" ]; then
    gpu_stamp="$venv/.framewire-gpu-stack"
    gpu_stack="$(sha256sum <"$root/scripts/gpu-stack.txt" | cut -d' ' -f1)"
    if [ "$(cat "$gpu_stamp" 2>/dev/null || true)" != "$gpu_stack" ]; then
        echo "installing the GPU stack (scripts/gpu-stack.txt) into $venv" >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$root/scripts/gpu-stack.txt"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
            ultralytics==8.4.190
        echo "$gpu_stack" >"$gpu_stamp"
    fi
fi

export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
