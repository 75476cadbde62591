"""Runs the framewire benchmarks: ``python -m bench`` (all) or ``python -m bench NAME ...``.

Each ``bench/bench_NAME.py`` is a benchmark with ``main(argv) -> int``. Every
benchmark measures framewire side by side with a baseline in the same run and
prints the ratio, because absolute numbers on shared machines mean little.
Arguments after ``--`` go to each benchmark (for example ``--quick``).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def available() -> list[str]:
    """The names of the benchmarks in this folder, in a stable order."""
    here = Path(__file__).resolve().parent
    return sorted(path.stem.removeprefix("bench_") for path in here.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(available())}")
        return 2
    failures = 0
    for name in names:
        print(f"\n######## bench {name}", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.bench_{name}")
        status = int(module.main(extra))
        print(f"######## bench {name}: exit {status} after {time.perf_counter() - started:.0f} s")
        failures += status != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
