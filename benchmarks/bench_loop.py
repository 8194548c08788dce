"""Issues 2, 9, 14: simulated clock cycles per wall-clock second through the full stack.

driver bytes (Novatech 409B cycle table, DG645 trigger, SR400 count) -> pulse-level twin ->
servo -> SQLite store, on one core, the embedded default config with every role of the
apparatus it runs (the thermometer, the vacuum gauge and the roles of
`ionclock.apparatus.roles`, each a process beside the servo; the line "roles" lists them).
Prints cycles per wall-clock second (the target), per CPU second of this process, and each
cycle's time beside a reference measured in the same run: a fixed pure-Python workload
(`reference_us`), so that a cycle also reads as a number of reference steps, to compare
across machines (they differ by 30 %). A load that changes during the run moves both, so the
reference's spread is printed.

BLAS runs on one thread (``benchmarks/__init__.py``): with numpy's default, an OpenBLAS
worker thread spun on the other core after each batch of the twin's flicker noise, so the
CPU time came out above the wall-clock time and the loop itself ran slower.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.clock_run import ClockRun

ROOT = Path(__file__).resolve().parents[1]
TARGET = 25_000            # the clock loop alone (issues 2, 9)
TARGET_ALL_ROLES = 20_000  # with every role of the apparatus beside it (issue 14)
MONTH_TARGET_S = 20 * 60   # a 30-day run (issue 14): `python -m benchmarks.bench_loop --days 30`
REFERENCE_STEPS = 100_000


class _Unit:
    """The reference's stand-in for a driver or twin: attributes, a dict, a list."""

    def __init__(self):
        self.prefix = "t0 "
        self.replies = {b"OK\r\n": "OK"}
        self.words = [0, 0, 0]

    def step(self, i: int, hz: float) -> str:
        fw = round(hz * 10.0)
        line = "%s%04x %08x" % (self.prefix, i & 0xFFFF, fw)  # noqa: UP031
        data = (line + "\r\n").encode("ascii")
        words = self.words
        if words[0] != fw:
            words[0] = fw
        return self.replies.get(data[-4:], "") + line[:2]


def reference_us(steps: int = REFERENCE_STEPS, repeats: int = 3) -> list[float]:
    """CPU microseconds per step of a fixed pure-Python workload, `repeats` times.

    The work is the clock loop's kind (method calls, attributes, a dict, a list, float
    arithmetic, % formatting, bytes), the same on every machine and in every version of the
    project, so it measures the machine and its load, not the code.
    """
    unit = _Unit()
    step = unit.step
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        n = 0
        for i in range(steps):
            n += len(step(i, 80e6 + i * 0.37))
        times.append((time.process_time() - t0) / steps * 1e6)
    return times


def run_once(hours: float, progress: bool = False) -> tuple[int, float, float, list[str]]:
    """(cycles, wall s, CPU s, the roles that ran) of one sim.toml run of `hours`."""
    cfg = load_clock_config(ROOT / "configs" / "sim.toml")
    with tempfile.TemporaryDirectory() as tmp:
        run = ClockRun(cfg, tmp, seed=1)
        roles = sorted(cfg["instruments"]) + [type(r).__name__ for r in run.roles]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        summary = run.run(hours * 3600.0, progress=progress)
        return (summary["cycles"], time.perf_counter() - wall0, time.process_time() - cpu0,
                roles)


def main() -> int:
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    except (AttributeError, OSError):
        pass
    load = os.getloadavg()[0]
    refs = reference_us()
    cycles, wall, cpu, roles = run_once(6.0)
    refs = sorted(refs + reference_us())   # three before the run, three after
    ref = statistics.median(refs)
    wall_us, cpu_us = 1e6 * wall / cycles, 1e6 * cpu / cycles
    print(f"   reference (fixed pure-Python workload, median of 3 before and 3 after the run): "
          f"{ref:.3f} us CPU per step ({refs[0]:.3f} .. {refs[-1]:.3f})")
    print(f"   full stack, 6 h simulated: {cycles:,} cycles in {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU (load average {load:.1f})")
    print(f"   roles: {', '.join(roles)}")
    print(f"   cycles per wall-clock second: {cycles / wall:,.0f} (target >= {TARGET:,} for "
          f"the loop, >= {TARGET_ALL_ROLES:,} with every role)")
    print(f"   cycles per CPU second:        {cycles / cpu:,.0f}")
    print(f"   per cycle: {wall_us:.1f} us wall, {cpu_us:.1f} us CPU = "
          f"{wall_us / ref:.0f} / {cpu_us / ref:.0f} reference steps")
    print(f"   a 30-day run at this speed: {30 * 86400 / 0.105 / (cycles / wall) / 60:.1f} min "
          f"(target <= {MONTH_TARGET_S / 60:.0f} min; run it: python -m benchmarks.bench_loop "
          "--days 30)")
    return 0 if cycles / wall >= TARGET_ALL_ROLES else 1


def month(days: float) -> int:
    """The long run itself: `days` of sim.toml on one core, with a progress bar."""
    refs = reference_us()
    cycles, wall, cpu, roles = run_once(days * 24.0, progress=True)
    refs = sorted(refs + reference_us())
    print(f"   reference: {statistics.median(refs):.3f} us CPU per step "
          f"({refs[0]:.3f} .. {refs[-1]:.3f})")
    print(f"   roles: {', '.join(roles)}")
    print(f"   {days:g} days simulated: {cycles:,} cycles in {wall / 60:.1f} min wall "
          f"({cycles / wall:,.0f} cycles/s; {cpu / 60:.1f} min CPU); target <= "
          f"{MONTH_TARGET_S / 60 * days / 30:.1f} min")
    return 0 if wall <= MONTH_TARGET_S * days / 30 else 1


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=None,
                        help="run this many simulated days instead of the 6 h bench")
    args = parser.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    sys.exit(month(args.days) if args.days else main())
