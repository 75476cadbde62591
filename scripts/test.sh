#!/usr/bin/env bash
# Runs the framewire test suite; arguments go to pytest (e.g. -k ingest, -x).
# Ends with how many tests skipped, so a run that proved less than CI's says so.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
color=()
if [ -t 1 ]; then
    color=(--color=yes) # output goes through tee, which pytest would take for a file
fi
status=0
python -m pytest "${color[@]}" "$@" | tee "$log" || status=$?
# pytest's closing line reads like "353 passed, 74 skipped in 230.10s".
skipped="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -Eo '[0-9]+ skipped' | tail -n 1 | cut -d' ' -f1 || true)"
echo "skipped: ${skipped:-0} (each with its reason in the short test summary above)"
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
exit "$status"
