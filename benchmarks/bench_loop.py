"""Issue 2: simulated clock cycles per wall-clock second through the full stack.

driver bytes (Novatech 409B, SR400, E36312A) -> twin -> servo -> SQLite store, on one core,
the embedded default config. Prints cycles per wall-clock second, and per CPU second of
this process (the figure that does not depend on what else the machine is running).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ionclock.clock_config import load_clock_config
from ionclock.runner import ClockRun

ROOT = Path(__file__).resolve().parents[1]
TARGET = 25_000


def run_once(hours: float) -> tuple[int, float, float]:
    cfg = load_clock_config(ROOT / "configs" / "sim.toml")
    with tempfile.TemporaryDirectory() as tmp:
        run = ClockRun(cfg, tmp, seed=1)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        summary = run.run(hours * 3600.0, progress=False)
        return summary["cycles"], time.perf_counter() - wall0, time.process_time() - cpu0


def main() -> int:
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    except (AttributeError, OSError):
        pass
    load = os.getloadavg()[0]
    cycles, wall, cpu = run_once(6.0)
    print(f"   full stack, 6 h simulated: {cycles:,} cycles in {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU (load average {load:.1f})")
    print(f"   cycles per wall-clock second: {cycles / wall:,.0f} (target >= {TARGET:,})")
    print(f"   cycles per CPU second:        {cycles / cpu:,.0f}")
    print(f"   per cycle: {1e6 * wall / cycles:.1f} us wall, {1e6 * cpu / cycles:.1f} us CPU")
    return 0 if cycles / wall >= TARGET else 1
