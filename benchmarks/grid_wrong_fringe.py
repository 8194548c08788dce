"""Does the servo ever run on a wrong fringe without saying so? A scenario grid on the twin.

Runs `ClockRun` (the full stack: driver bytes -> twin -> servo -> store) over a grid of
cells, several seeds each, as an `ionclock.campaign` on a local Dask cluster of --jobs
processes (with --keep FOLDER the stores stay there and a grid started again runs only the
runs not done), and tabulates per cell: the locked
fraction, the silent wrong-lock frames after settling (`ionclock.report.silent_wrong_lock`:
locked, not held over, while a line sits more than a quarter fringe off its true centre or
stray light touches the ion; settling is --settle after the first lock and --event-settle
after the cell's event), the same frames inside the event's settling window (the lock's step
response, counted apart) and the fringe slips the report finds.

A cell is ``KIND:VALUE``:

    offset:HZ     the laser starts HZ off the line mean (twin.laser_offset_hz)
    jump:HZ       the clock laser jumps HZ at --event-at of the run (a laser_jump event)
    q0:HZ         the quadrupole amplitude is HZ from the start (twin.q0_hz)
    q0jump:HZ     Q0 changes to HZ at --event-at of the run (a q0 event); q0jump:A>B
                  starts at Q0 = A Hz and changes to B
    bstep:T       the field steps T at --event-at of the run (a b_step event)
    nominal:0     the base config as it is

    python benchmarks/grid_wrong_fringe.py                       # the full grid, 2 h runs
    python benchmarks/grid_wrong_fringe.py --quick               # 6 cells, 30 min, 2 seeds
    python benchmarks/grid_wrong_fringe.py --cells jump:12.5,q0:40 --duration 1h --seeds 3

This is a measurement, not a test: it exits 0 whatever the servo does.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")   # one core per process

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "configs" / "sim.toml"

FULL_GRID = (
    "nominal:0",
    "offset:5", "offset:-9", "offset:12.5", "offset:-20", "offset:30", "offset:60",
    "offset:-100", "offset:100", "offset:-150",
    "jump:3", "jump:-3", "jump:5", "jump:-6", "jump:7", "jump:12.5", "jump:-25", "jump:50",
    "jump:-100",
    "jump:100",
    "q0:-30", "q0:-15", "q0:15", "q0:30",
    "q0jump:0>30", "q0jump:1>20", "q0jump:-30>30", "q0jump:30>-30", "q0jump:15>-15",
    "bstep:0.1e-9", "bstep:-0.3e-9", "bstep:1e-9", "bstep:1.5e-9", "bstep:-2.23e-9",
    "bstep:5e-9", "bstep:-10e-9",
)
QUICK_GRID = ("nominal:0", "offset:12.5", "offset:-100", "jump:12.5", "q0jump:1>20",
              "bstep:-1.5e-9")
KINDS = ("offset", "jump", "q0", "q0jump", "bstep", "nominal")


def cell_overrides(cell: str, duration_s: float, event_at: float) -> dict:
    """The [twin] overrides of one cell ``KIND:VALUE`` for a run of `duration_s`."""
    kind, _, text = cell.partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown cell kind {kind!r} in {cell!r} (known: {', '.join(KINDS)})")
    start, _, text = text.rpartition(">") if kind == "q0jump" else ("", "", text)
    try:
        value = float(text or 0.0)
        q0_start = float(start) if start else None
    except ValueError:
        raise ValueError(f"bad value in cell {cell!r}") from None
    at = f"{event_at * duration_s:g}s"
    q0jump = {"events": [{"at": at, "kind": "q0", "value": value}]}
    if q0_start is not None:
        q0jump["q0_hz"] = q0_start
    return {
        "nominal": {},
        "offset": {"laser_offset_hz": value},
        "q0": {"q0_hz": value},
        "jump": {"events": [{"at": at, "kind": "laser_jump", "value": value}]},
        "q0jump": q0jump,
        "bstep": {"events": [{"at": at, "kind": "b_step", "value": value}]},
    }[kind]


def grid_campaign(cells: list[str], seeds: int, first_seed: int, duration_s: float,
                  settle_s: float, event_settle_s: float, event_at: float,
                  scenario: str | None, out: Path):
    """The grid as an `ionclock.campaign` Campaign: one cell per ``KIND:VALUE``, its seeds."""
    from ionclock import campaign

    base = {"name": "grid_wrong_fringe", "config": str(SIM), "duration": f"{duration_s}s",
            "seeds": seeds, "first_seed": first_seed, "settle": f"{settle_s}",
            "event_settle": f"{event_settle_s}"}
    if scenario:
        base["scenario"] = scenario
    spec = {"campaign": base,
            "cells": [{"name": cell,
                       "overrides": {"twin": cell_overrides(cell, duration_s, event_at)}}
                      for cell in cells]}
    return campaign.campaign_from_dict(spec, ROOT, out, name="grid_wrong_fringe")


def grid_row(cell: str, summary: dict | None, error: str | None, out: Path,
             t_event: float | None) -> dict:
    """One run's figures in the grid's table, from the campaign's summary and its store."""
    from ionclock.storage.store import read_store

    row = {"cell": cell, "seed": summary["seed"] if summary else None}
    if summary is None:
        row["error"] = error
        return row
    rep = summary["report"]
    errors = [t for (t,) in read_store(out / summary["store_file"], lambda db: db.execute(
        "SELECT t FROM events WHERE kind = 'fringe_error' AND source = 'servo'").fetchall())]
    after = [t - t_event for t in errors if t_event is not None and t >= t_event]
    row.update(fringe_errors=len(errors), delay_s=min(after) if after else None,
               locked_fraction=summary["clock"]["locked_fraction"],
               silent_after=rep["silent_wrong_lock_frames_after_settling"],
               silent_response=rep["silent_wrong_lock"]["frames_in_event_settling"],
               silent_all=rep["silent_wrong_lock_frames"], slips=rep["slips"],
               frames=rep["frames"], wall_s=summary["wall_s"])
    return row


def _delay(rows: list[dict]) -> str:
    """The longest delay from a cell's event to the first fringe error after it ('-': none)."""
    delays = [r["delay_s"] for r in rows if r.get("delay_s") is not None]
    return f"{max(delays):.0f}" if delays else "-"


def table(rows: list[dict], cells: list[str]) -> str:
    """Per cell: seeds, locked fraction (mean, min), silent wrong-lock frames, slips."""
    head = (f"{'cell':<16} {'seeds':>5} {'locked (mean/min)':>18} "
            f"{'silent after settling (seeds >0)':>33} {'in response':>11} {'silent all':>10} "
            f"{'slips':>6} "
            f"{'fringe errors':>13} {'delay max (s)':>13}")
    lines = [head, "-" * len(head)]
    for cell in cells:
        mine = [r for r in rows if r["cell"] == cell]
        ok = [r for r in mine if "error" not in r]
        if not ok:
            lines.append(f"{cell:<16} {len(mine):>5}  error: {mine[0].get('error', '?')}")
            continue
        lf = [r["locked_fraction"] for r in ok]
        silent = [r["silent_after"] for r in ok]
        bad = sum(1 for v in silent if v)
        lines.append(
            f"{cell:<16} {len(ok):>5} {sum(lf) / len(lf):>11.4f}/{min(lf):.4f} "
            f"{sum(silent):>24} ({bad}/{len(ok)}) {sum(r['silent_response'] for r in ok):>11} "
            f"{sum(r['silent_all'] for r in ok):>10} "
            f"{sum(r['slips'] for r in ok):>6} {sum(r['fringe_errors'] for r in ok):>13} "
            f"{_delay(ok):>13}"
            + (f"  ({len(mine) - len(ok)} failed)" if len(ok) < len(mine) else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ionclock.units import parse_duration

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--cells", default=None,
                   help="comma-separated KIND:VALUE cells (default: the full grid)")
    p.add_argument("--duration", default=None, help="simulated time per run (default 2h)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 4)")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="parallel processes")
    p.add_argument("--settle", default="10m",
                   help="settling window after the first lock, not counted (default 10m)")
    p.add_argument("--event-settle", default="30s",
                   help="the lock's step response after the cell's event, counted apart "
                        "(default 30s, ionclock.report.EVENT_SETTLE_S)")
    p.add_argument("--event-at", type=float, default=0.5,
                   help="when a cell's event happens, as a fraction of the run (0.5)")
    p.add_argument("--scenario", default=None, help="base scenario merged over sim.toml")
    p.add_argument("--quick", action="store_true",
                   help=f"{len(QUICK_GRID)} cells, 30 min, 2 seeds (unless given)")
    p.add_argument("--keep", default=None,
                   help="keep each run's store under this folder (a campaign's out folder: "
                        "started again, the grid runs only the runs not done)")
    p.add_argument("--json", default=None, help="also write the per-run rows here (JSON)")
    args = p.parse_args(argv)
    cells = (args.cells.split(",") if args.cells
             else list(QUICK_GRID if args.quick else FULL_GRID))
    cells = [c.strip() for c in cells if c.strip()]
    duration_s = parse_duration(args.duration or ("30m" if args.quick else "2h"))
    seeds = args.seeds or (2 if args.quick else 4)
    settle_s = 0.0 if args.settle.strip() in ("0", "0s") else parse_duration(args.settle)
    for cell in cells:   # a bad cell stops before anything runs
        cell_overrides(cell, duration_s, args.event_at)
    event_settle_s = (0.0 if args.event_settle.strip() in ("0", "0s")
                      else parse_duration(args.event_settle))
    from ionclock import campaign

    print(f"grid: {len(cells)} cells x {seeds} seeds, {duration_s / 3600:g} h each, "
          f"settling {settle_s:g} s (and {event_settle_s:g} s after the event), "
          f"events at {args.event_at:g} of the run, "
          f"{args.jobs} processes", flush=True)
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grid_") as scratch:
        out = Path(args.keep) if args.keep else Path(scratch)
        grid = grid_campaign(cells, seeds, args.first_seed, duration_s, settle_s,
                             event_settle_s, args.event_at, args.scenario, out)
        outcome = campaign.run_campaign(grid, workers=args.jobs,
                                        say=lambda text: print(text, flush=True))
        rows = []
        for run in grid.runs:
            cell = cells[grid.cells.index(run.cell)]
            twin = cell_overrides(cell, duration_s, args.event_at)
            t_event = args.event_at * duration_s if "events" in twin else None
            row = grid_row(cell, outcome.summaries.get(run.folder),
                           outcome.failures.get(run.folder), grid.out, t_event)
            row["seed"] = run.seed
            rows.append(row)
    print()
    print(table(rows, cells))
    print(f"\n{len(rows)} runs in {time.perf_counter() - wall0:.0f} s wall")
    if args.json:
        Path(args.json).write_text(json.dumps(sorted(rows, key=lambda r: (r["cell"],
                                                                           r["seed"])),
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
