"""Run every benchmark module (benchmarks/bench_*.py); each has main() printing its figures.

`python -m benchmarks NAME ...` runs only the named ones (e.g. `loop`, `rf`). BLAS runs on
one thread (the package's ``__init__`` sets it before anything imports numpy).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)])
                   if m.name.startswith("bench_"))
    if argv:
        names = [n for n in names if n.removeprefix("bench_") in argv or n in argv]
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            status = importlib.import_module(f"benchmarks.{name}").main() or 0
        except Exception as err:  # report and go on: one broken bench must not hide the rest
            print(f"   FAILED: {type(err).__name__}: {err}")
            status = 1
        failed += bool(status)
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
