#!/usr/bin/env bash
# The framewire demo: a server and an edge agent on real video, printing detections
# and a latency summary. Arguments go to `framewire demo` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMEWIRE_EXTRAS="${FRAMEWIRE_EXTRAS:-all}" source scripts/setup.sh
exec framewire demo "$@"
