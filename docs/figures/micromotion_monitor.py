"""The micromotion monitor after an LN2 refill (issue 14 must-show; decision 0309).

A twin clock run (configs/sim.toml, seed 3, 8 h) with a refill at 1.2 h whose compensation
optimum moves by 1 V rms per electrode; the monitor measures R_1..3 every 30 min. Plots the
measured ratios (95 % intervals) against the twin's true R_i, and the live budget's EMM row
(value and sigma) against the twin's true EMM shift. Run from the repository root:

    .venv/bin/python docs/figures/micromotion_monitor.py [OUT.png]
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ionclock.apparatus.clock_config import load_clock_config  # noqa: E402
from ionclock.apparatus.clock_run import ClockRun  # noqa: E402
from ionclock.apparatus.roles.micromotion import MicromotionMonitor  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HOURS = 3600.0


def main(out: str) -> None:
    duration, refill = 8 * HOURS, 1.2 * HOURS
    cfg = load_clock_config(ROOT / "configs" / "sim.toml", run_s=duration, overrides={
        "micromotion": {"first_s": 600.0, "period_s": 1800.0},
        "twin": {"events": [{"at": f"{refill}s", "kind": "refill", "value": 2.0}]}})
    tmp = Path(tempfile.mkdtemp())
    run = ClockRun(cfg, tmp / "run", seed=3)
    run.world.p.compensation_refill_shift_v = 1.0
    mm = run.world.characterisation.micromotion
    summary = run.run(duration, progress=False)
    role = next(r for r in run.roles if isinstance(r, MicromotionMonitor))
    db = sqlite3.connect(tmp / "run" / "ionclock.sqlite")
    rec: dict = {}
    for t, ch, v in db.execute("SELECT t, channel, value FROM samples WHERE channel LIKE "
                               "'mm.r%' ORDER BY t"):
        rec.setdefault(t, {})[ch] = v
    budgets = []
    for t, detail in db.execute("SELECT t, detail FROM budgets ORDER BY t"):
        d = json.loads(detail)
        row = next(r for r in d["rows"] if r["key"] == "emm")
        budgets.append((t, row["shift_fractional"], row["uncertainty_fractional"],
                        d["provenance"]["row_sources"]["emm"]))
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    grid = [i * 120.0 for i in range(int(duration / 120.0) + 1)]
    for beam, colour in zip((1, 2, 3), ("C0", "C1", "C2")):
        a.plot([t / HOURS for t in grid], [mm.ratios(None, t)[beam - 1] for t in grid],
               color=colour, lw=1, label=f"twin truth R{beam}")
        ts = sorted(rec)
        a.errorbar([t / HOURS for t in ts], [rec[t][f"mm.r{beam}"] for t in ts],
                   yerr=[1.96 * rec[t][f"mm.r{beam}.sigma"] for t in ts], fmt="o",
                   color=colour, ms=4, capsize=2, label=f"monitor mm.r{beam} (95 %)")
    a.axvline(refill / HOURS, color="k", ls=":", label="LN2 refill")
    a.set_ylabel("sideband/carrier ratio R")
    a.legend(fontsize=7, ncol=2)
    meas = [(t, v, s) for t, v, s, src in budgets if src.startswith("measured")]
    b.errorbar([t / HOURS for t, _, _ in meas], [v for _, v, _ in meas],
               yerr=[s for _, _, s in meas], fmt="s", ms=4, capsize=2,
               label="live budget EMM row (value, 1 sigma)")
    b.plot([t / HOURS for t in grid], [mm.emm_shift(None, t) for t in grid], "k-", lw=1,
           label="twin's true EMM shift (0 at the magic drive)")
    b.set_xlabel("run time (h)")
    b.set_ylabel("EMM shift (fractional)")
    b.legend(fontsize=7)
    fig.suptitle(f"micromotion monitor, seed 3: {role.measurements} measurements, clock held "
                 f"{role.lost_s:.0f} s; locked fraction {summary['locked_fraction']:.4f}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    inside = sum(abs(v - mm.emm_shift(None, t)) <= s for t, v, s in meas)
    print(f"{out}: {role.measurements} measurements; EMM row within its sigma of the truth "
          f"in {inside}/{len(meas)} live budgets; sigma {meas[0][2]:.2e} (first) -> "
          f"{meas[-1][2]:.2e} (last)")
    for t in sorted(rec):
        true = mm.ratios(None, t)
        print(f"  t = {t / HOURS:5.2f} h  R = " + ", ".join(
            f"{rec[t][f'mm.r{k}']:.4f}+-{rec[t][f'mm.r{k}.sigma']:.4f} (true {true[k - 1]:.4f})"
            for k in (1, 2, 3)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "docs" / "figures" /
                                                   "micromotion_monitor_refill.png"))
