#!/usr/bin/env bash
# podman as this project's CI runs it: vfs storage (no overlay mounts needed) and runc (crun
# fails here with "cgroups in hybrid mode not supported"), with containers.conf beside this
# script. Arguments go to podman, e.g.  deploy/docker/podman/podman.sh run --rm IMAGE.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
exec podman --storage-driver vfs --runtime runc "$@"
