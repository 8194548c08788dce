"""Coverage of the Debye-Waller and thermometry procedures on the twin (issue 15): 20 seeds
each, reduced point counts (tests/test_procedures_motional.py's FAST settings)."""

from __future__ import annotations

import numpy as np

from tests.test_procedures_motional import SEEDS, _coverage, _run


def test_debye_waller_covers_the_doppler_occupations(tmp_path):
    hx, hz, wx, wz = [], [], [], []
    for seed in SEEDS:
        proc, _, res = _run("debye-waller", seed, tmp_path / f"dw{seed}.csv")
        t = proc.truth()
        hx.append(res["nbar_x"].contains(t["nbar_x"]))
        hz.append(res["nbar_z"].contains(t["nbar_z"]))
        wx.append(res["nbar_x"].high - res["nbar_x"].low)
        wz.append(res["nbar_z"].high - res["nbar_z"].low)
    assert _coverage("Debye-Waller nbar_x = nbar_y", hx, wx, "quanta") >= 0.9
    assert _coverage("Debye-Waller nbar_z", hz, wz, "quanta") >= 0.9


def test_thermometry_covers_n0_and_the_heating_rate(tmp_path):
    hr, hn, wr, wn = [], [], [], []
    for seed in SEEDS:
        proc, _, res = _run("thermometry", seed, tmp_path / f"th{seed}.csv",
                            mode="xyz"[seed % 3])
        t = proc.truth()
        hr.append(res["heating_rate"].contains(t["heating_rate"]))
        hn.append(res["n0"].contains(t["n0"]))
        wr.append(res["heating_rate"].high - res["heating_rate"].low)
        wn.append(res["n0"].high - res["n0"].low)
    assert _coverage("thermometry heating rate (modes x, y, z in turn)", hr, wr,
                     "quanta/s") >= 0.9
    assert _coverage("thermometry n0", hn, wn, "quanta") >= 0.9
    assert np.all(np.isfinite(wr))
