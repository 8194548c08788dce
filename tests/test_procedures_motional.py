"""The motional procedures on the apparatus (issue 15; decisions 0804, 0309): micromotion
ratios, the compensation scan, the Debye-Waller check and sideband thermometry, each shot
played on the clock's sequencer of the twin, each under pymeasure's Worker into a Results file
pymeasure reads back, and each covering the twin's truth over 20 seeds (reduced point counts;
the full procedures: `ionclock measure NAME configs/sim.toml`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymeasure.experiment import Results

from ionclock.procedures.analysis import ANALYSES
from ionclock.procedures.base import procedures, run_headless

ROOT = Path(__file__).resolve().parents[1]
SIM = str(ROOT / "configs" / "sim.toml")
SEEDS = range(20)
#: Reduced settings per procedure (the tests' point counts; defaults in the modules).
FAST = {
    "micromotion": {"samples": 1},
    "compensation": {"points": 7, "span_v": 3.0},
    "debye-waller": {"pulses": 21, "shots": 60},
    "thermometry": {"dark_times_ms": "30,85,140", "pulses": 11, "shots": 60},
}


def _run(name: str, seed: int, path: Path, **settings):
    proc = procedures()[name](config=SIM, seed=seed)
    for key, value in {**FAST[name], **settings}.items():
        setattr(proc, key, value)
    results = run_headless(proc, path)
    return proc, results, ANALYSES[name].from_csv(path)


@pytest.mark.parametrize("name", sorted(FAST))
def test_runs_under_the_worker_into_a_results_file_pymeasure_reads(name, tmp_path):
    path = tmp_path / f"{name}.csv"
    proc, _, result = _run(name, 1, path)
    back = Results.load(str(path))
    assert list(back.data.columns) == proc.DATA_COLUMNS
    assert len(back.data) == len(proc.rows) > 0
    assert back.procedure.seed == 1 and result.estimates
    assert proc.rig.shots_run > 0
    world = proc.apparatus.world
    assert world.shots_started == proc.rig.shots_run       # every shot through the twin's
    assert world.lock_offset_hz == 0.0                     # sequencer, given back after


def _coverage(name: str, hits, widths, unit: str) -> float:
    cov = float(np.mean(hits))
    print(f"\n{name}: 95 % interval covers the twin's truth in {cov:.1%} of {len(hits)}; "
          f"median width {np.median(widths):.4g} {unit}")
    return cov


def test_micromotion_ratios_and_compensation_cover_the_twin(tmp_path):
    hits, widths, vhits, vwidths = [], [], [], []
    for seed in SEEDS:
        proc, _, res = _run("micromotion", seed, tmp_path / f"mm{seed}.csv")
        truth = proc.truth()
        for k, (r, u) in enumerate(zip(res.details["ratios"], res.details["ratio_uncs"])):
            hits.append(abs(r - truth[f"r{k + 1}"]) <= 1.96 * u)
            widths.append(3.92 * u)
        proc, _, res = _run("compensation", seed, tmp_path / f"c{seed}.csv",
                            electrode=1 + seed % 3)
        e = res["v_min"]
        vhits.append(e.contains(proc.truth()["v_min"]))
        vwidths.append(e.high - e.low)
    assert _coverage("micromotion R_i (20 seeds x 3 beams)", hits, widths, "") >= 0.9
    assert _coverage("compensation V0", vhits, vwidths, "V") >= 0.9
