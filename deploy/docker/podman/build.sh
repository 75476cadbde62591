#!/usr/bin/env bash
# Builds framewire's images with podman where Docker Hub cannot be reached:
#
#   deploy/docker/podman/build.sh [agent] [server]      (default: both)
#
# BASE is the official python:3.11-slim-bookworm wherever a registry can be reached (plain
# `docker build` uses it). Here the base is made from Debian packages instead: debootstrap
# (minbase + python3, python3-venv, ca-certificates) from the mirror apt already uses, imported
# as localhost/framewire-base:bookworm. The root filesystem's tarball is kept in
# ~/.cache/framewire/images, so only a fresh machine pays for debootstrap (about a minute).
# pip inside the build reaches the package index the way the host does: the host's CA
# folder and its global pip configuration are mounted read-only into each RUN.
#
#   FRAMEWIRE_BASE       use this image as BASE instead (e.g. python:3.11-slim-bookworm)
#   FRAMEWIRE_IMAGE_TAG  tag of the images (default: dev): localhost/framewire-agent:dev, ...
#   FRAMEWIRE_CACHE      cache folder (default: ~/.cache/framewire)
#
# Needs root (debootstrap, and podman as used here) and the Debian packages podman, buildah,
# runc and debootstrap.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
podman_cmd=("$here/podman.sh")
tag="${FRAMEWIRE_IMAGE_TAG:-dev}"
cache="${FRAMEWIRE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/framewire}/images"
images=("$@")
[ ${#images[@]} -eq 0 ] && images=(agent server)

debian_mirror() {
    # The first Debian archive apt uses (deb822 or one-line sources), not the security one.
    local uri
    uri="$(grep -hoE '^URIs:[[:space:]]*[^[:space:]]+' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | head -n 1 || true)"
    if [ -z "$uri" ]; then
        uri="$(grep -hoE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+' /etc/apt/sources.list 2>/dev/null \
            | awk '{print $NF}' | grep -v -- '-security' | head -n 1 || true)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

ensure_base() {
    local image=localhost/framewire-base:bookworm
    if "${podman_cmd[@]}" image exists "$image"; then
        echo "$image"
        return
    fi
    local tarball="$cache/debian-bookworm-python3.tar"
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
        mkdir -p "$cache"
        local rootfs
        rootfs="$(mktemp -d)"
        trap 'rm -rf "$rootfs"' RETURN
        local mirror
        mirror="$(debian_mirror)"
        echo "making the base image's root filesystem with debootstrap from $mirror" >&2
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" "$mirror" >&2
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        chmod 0755 "$rootfs" # mktemp made it 0700: it becomes the image's /
        tar -C "$rootfs" -cf "$tarball.partial" .
        mv "$tarball.partial" "$tarball"
    fi
    "${podman_cmd[@]}" import --quiet "$tarball" "$image" >/dev/null
    echo "$image"
}

base="${FRAMEWIRE_BASE:-}"
[ -n "$base" ] || base="$(ensure_base)"

mounts=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
[ -f /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"

for name in "${images[@]}"; do
    case "$name" in
        agent | server) ;;
        *) echo "unknown image '$name': agent or server (server-gpu needs an NVIDIA base; see docs/deploy.md)" >&2; exit 2 ;;
    esac
    image="localhost/framewire-$name:$tag"
    previous="$("${podman_cmd[@]}" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
    echo "building $image from $base" >&2
    # --layers=false: vfs stores every layer as a full copy of the file system, so a cached
    # layer per instruction costs gigabytes and more time than it saves.
    "${podman_cmd[@]}" build --network host --layers=false \
        "${mounts[@]}" \
        --build-arg "BASE=$base" --build-arg "REVISION=$revision" \
        -f "$root/deploy/docker/$name.Dockerfile" \
        --ignorefile "$root/deploy/docker/$name.Dockerfile.dockerignore" \
        -t "$image" \
        "$root"
    current="$("${podman_cmd[@]}" image inspect --format '{{.Id}}' "$image")"
    if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
        # The image this tag named before, now untagged: vfs keeps it whole otherwise.
        "${podman_cmd[@]}" rmi "$previous" >/dev/null \
            || echo "note: could not remove the previous $image ($previous); it is still in use" >&2
    fi
done
