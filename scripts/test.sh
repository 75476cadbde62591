#!/usr/bin/env bash
# Runs the framewire test suite; arguments go to pytest (e.g. -k ingest, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
status=0
python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
exit "$status"
