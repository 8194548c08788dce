"""Characterisation analyses (issue 15): the seed's numbers, coverage of the 95 % intervals
on data drawn from each fit's own model, and the CSV round trip through `ionclock analyse`.

Coverage: over N seeded data sets with a known truth, the truth must lie inside the 95 %
interval in at least 90 % of them; the coverage and the median interval width are printed
(pytest -s shows them).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from ionclock.commands.main import main
from ionclock.physics import shifts
from ionclock.procedures.analysis import (
    ANALYSES,
    DataError,
    ac_field,
    bbr,
    debye_waller,
    micromotion,
    secular,
    thermometry,
    zeeman,
)

E19 = 1e-19


def report_coverage(name: str, hits: list[bool], widths: list[float], unit: str) -> float:
    frac = sum(hits) / len(hits)
    print(f"\ncoverage {name}: {sum(hits)}/{len(hits)} = {frac:.0%}, "
          f"median 95 % CI width {np.median(widths):.3g} {unit}")
    return frac


# --- seed reproductions -----------------------------------------------------------------------
def test_debye_waller_reproduces_the_seeds_occupations():
    r = debye_waller.seed_nbar()                  # seed convention: one eta, 0.0365
    assert [round(r[f"nbar_{m}"].value, 1) for m in "xyz"] == [2.6, 2.6, 4.8]
    assert debye_waller.SEED_ETA == pytest.approx(0.0365, abs=5e-5)
    # with one eta the ratio nbar_z / nbar_x does not depend on it (module docstring)
    rho1, rho3 = math.log(2.201 / 2.172), math.log(3.488 / 3.464)
    assert r["nbar_z"].value / r["nbar_x"].value == pytest.approx(2 * (rho1 - rho3) / rho3)
    # the beams' own geometry gives other numbers: both stay available, the seed's default
    g = debye_waller.seed_nbar("geometric")
    assert [round(g[f"nbar_{m}"].value, 1) for m in "xyz"] == [2.5, 2.5, 5.4]
    # the Rabi frequencies' uncertainties allow a wide range (seed: no interval printed)
    assert r["nbar_x"].sigma == pytest.approx(1.02, abs=0.01)
    assert r["nbar_x"].contains(2.6) and r["nbar_z"].contains(4.8)


def test_ac_field_reproduces_the_seeds_b_perp2():
    (r, ru), (b0, b0u) = ac_field.SEED_R, ac_field.SEED_B0_T
    res = ac_field.ac_field_from_g_ratio(r, ru, b0, b0u)
    e = res.estimates[0]
    assert round(e.value / 1e-14) == 11 and round(e.sigma / 1e-14) == 9
    # limited by g_D/g_S (seed: "mainly limited by the precision of g_D/g_S")
    assert res.details["sigma_g_ratio"] > 2 * res.details["sigma_measurement"]
    assert e.low == pytest.approx(e.value - 1.96 * e.sigma, rel=1e-3)
    phys = ac_field.ac_field_from_g_ratio(r, ru, b0, b0u, convention="physical").estimates[0]
    assert phys.value == pytest.approx(e.value, rel=0.01) and phys.value != e.value
    # the forward model inverts
    assert ac_field.g_ratio_with_ac_field(e.value, b0) == pytest.approx(r, abs=1e-15)


def test_secular_row_reproduces_the_seed_and_is_the_budgets_row():
    res = secular.secular_row([0.43, 0.53, 1.31], [0.07, 0.12, 0.43])
    e = res.estimates[0]
    assert round(e.value / E19, 1) == -5.8 and round(e.sigma / E19, 1) == 0.4
    row = shifts.secular_motion()
    assert (e.value, e.sigma) == (row.value, row.uncertainty)
    with pytest.raises(DataError, match="unphysical"):
        secular.secular_row([-1.0, 0.5, 1.0], [0.1, 0.1, 0.1])


def test_bbr_reproduces_the_seeds_temperature_and_shift():
    # the seed's envelope 79.5 +/- 1.4 K: lowest sensor 78.1 K, warmest (trap, RF on) 80.9 K
    ch = ["temp.ln2_bottom"] * 3 + ["temp.endcap"] * 2 + ["temp.replica_trap"] * 3
    temps = [78.1, 78.2, 78.15, 78.6, 78.8, 80.5, 80.9, 80.45]
    rf = [1, 1, 0, 1, 0, 1, 1, 0]
    res = bbr.bbr_temperature(ch, temps, rf)
    t, shift = res["temperature"], res["bbr_shift"]
    assert (round(t.value, 1), round(t.sigma, 1)) == (79.5, 1.5)
    assert (round(shift.value / E19, 1), round(shift.sigma / E19, 1)) == (45.5, 3.5)
    # no RF-off reading: the replica trap is widened down by 0.4 K, as the budget does
    no_off = bbr.bbr_temperature(ch[:2] + ch[5:7], temps[:2] + temps[5:7], [1, 1, 1, 1])
    assert no_off.details["envelope"].low_k == pytest.approx(78.1)
    assert not no_off.details["rf_off_seen"]


def test_emm_at_the_magic_drive_is_zero_with_the_budgets_uncertainty():
    beams = ["1"] * 3 + ["2"] * 3 + ["3"] * 3
    ratios = [0.02, 0.021, 0.019, 0.03, 0.031, 0.029, 0.015, 0.016, 0.014]
    res = micromotion.emm_shift(beams, ratios)
    e = res.estimates[0]
    row = shifts.micromotion(res.details["ratios"], res.details["ratio_uncs"])
    assert e.value == 0.0 and e.sigma == row.uncertainty > 0


def test_sideband_rabi_frequencies_follow_domain_3():
    eta, n = 0.043, np.arange(6)
    dw = math.exp(-eta ** 2 / 2)
    blue = thermometry.sideband_rabi_frequency(n, 1, eta)
    red = thermometry.sideband_rabi_frequency(n, -1, eta)
    from scipy.special import eval_genlaguerre
    assert blue == pytest.approx(dw * eta / np.sqrt(n + 1) * eval_genlaguerre(n, 1, eta ** 2))
    assert red[0] == 0.0 and red[1:] == pytest.approx(blue[:-1])
    # Lamb–Dicke limit: eta sqrt(n + 1) and eta sqrt(n)
    assert blue == pytest.approx(eta * np.sqrt(n + 1), rel=0.01)
    carrier = thermometry.sideband_rabi_frequency(n, 0, eta)
    assert carrier == pytest.approx(dw * eval_genlaguerre(n, 0, eta ** 2))
    p = thermometry.thermal_populations(2.6, thermometry.n_cutoff(2.6))
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert p @ np.arange(len(p)) == pytest.approx(2.6, abs=1e-6)


# --- coverage ---------------------------------------------------------------------------------
B0 = 37.197e-6
FIELDS = np.linspace(20e-6, 120e-6, 8)
ALPHA = 14.345e6


@pytest.mark.parametrize("weighted", [True, False])
def test_alpha_z_interval_covers_the_truth(weighted):
    hits, widths = [], []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        sig = np.full(len(FIELDS), 0.004)
        y = ALPHA * (FIELDS ** 2 - B0 ** 2) + 0.002 + rng.normal(0, sig)
        e = zeeman.fit_alpha_z(FIELDS, y, sig if weighted else None, b0_t=B0)["alpha_z"]
        hits.append(e.contains(ALPHA))
        widths.append(2 * e.half_width * 1e-6)
    assert report_coverage(f"alpha_z ({'weighted' if weighted else 't'})", hits, widths,
                           "Hz/mT^2") >= 0.9


ETA_Z, OMEGA0 = 0.043, math.pi / 2e-6       # beam 2: carrier pi time ~2 us (DOMAIN §1)
PULSES = np.linspace(0.0, 150e-6, 31)


def test_sideband_flop_nbar_interval_covers_the_truth():
    t = np.concatenate([PULSES, PULSES])
    s = np.r_[-np.ones(31), np.ones(31)].astype(int)
    hits, widths = [], []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        p = rng.binomial(100, thermometry.sideband_flop(t, 0.3, OMEGA0, ETA_Z, s)) / 100
        e = thermometry.fit_sideband_flops(t, p, s, eta=ETA_Z, shots=100)["nbar"]
        hits.append(e.contains(0.3))
        widths.append(e.high - e.low)
    assert report_coverage("nbar (red + blue flops)", hits, widths, "quanta") >= 0.9


def test_heating_rate_interval_covers_the_truth():
    n0, ndot = 0.05, 1.31                        # seed Table I, z mode
    darks = np.array([0.03, 0.055, 0.08, 0.11, 0.14])   # seed: 30-140 ms
    dark = np.repeat(darks, len(PULSES))
    pulse = np.tile(PULSES, len(darks))
    hits, hits_n0, widths = [], [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        prob = np.concatenate([thermometry.sideband_flop(PULSES, n0 + ndot * d, OMEGA0, ETA_Z, -1)
                               for d in darks])
        p = rng.binomial(100, prob) / 100
        res = thermometry.analyse_thermometry(dark, pulse, -1, p, 100, eta=ETA_Z)
        hits.append(res["heating_rate"].contains(ndot))
        hits_n0.append(res["n0"].contains(n0))
        widths.append(res["heating_rate"].high - res["heating_rate"].low)
    assert report_coverage("heating rate (flops -> nbar(t))", hits, widths, "quanta/s") >= 0.9
    assert sum(hits_n0) / len(hits_n0) >= 0.9


def test_debye_waller_interval_covers_the_truth():
    truth = np.array([2.6, 2.6, 4.8])
    eta = debye_waller.seed_eta_matrix()
    sc = np.array([2.201, 3.488])
    dop = sc * np.exp(-(eta ** 2) @ truth)
    sig_d, sig_sc = np.array([0.004, 0.005]), np.array([0.004, 0.008])
    hits, widths = [], []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        res = debye_waller.nbar_from_rabi_ratios(dop + rng.normal(0, sig_d), sig_d,
                                                 sc + rng.normal(0, sig_sc), sig_sc, eta)
        hits.append(res["nbar_x"].contains(2.6) and res["nbar_z"].contains(4.8) or False)
        widths.append(res["nbar_x"].high - res["nbar_x"].low)
    # both modes at once: two 95 % intervals, correlated, cover together in >~ 90 %
    assert report_coverage("Debye-Waller nbar_x and nbar_z", hits, widths, "quanta") >= 0.9


def test_ac_field_interval_covers_the_truth():
    truth, b0 = 11e-14, ac_field.SEED_B0_T[0]
    hits, widths = [], []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        rho_true = ac_field.G_RATIO_SEED + rng.normal(0, ac_field.G_RATIO_SEED_UNC)
        r = ac_field.g_ratio_with_ac_field(truth, b0, rho_true) + rng.normal(0, 9e-9)
        e = ac_field.ac_field_from_g_ratio(r, 9e-9, b0 + rng.normal(0, 5e-9), 5e-9).estimates[0]
        hits.append(e.contains(truth))
        widths.append(e.high - e.low)
    assert report_coverage("<B_perp^2>", hits, widths, "T^2") >= 0.9


@pytest.mark.parametrize("weighted", [True, False])
def test_compensation_minimum_interval_covers_the_truth(weighted):
    v = np.linspace(-5.0, 5.0, 15)
    truth = 1.3
    hits, widths = [], []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        sig = np.full(len(v), 5e-4)
        y = micromotion.parabola(v, 1e-3, truth, 1e-5) + rng.normal(0, sig)
        e = micromotion.fit_compensation_scan(v, y, sig if weighted else None)["v_min"]
        hits.append(e.contains(truth))
        widths.append(e.high - e.low)
    assert report_coverage(f"compensation V0 ({'weighted' if weighted else 't'})", hits, widths,
                           "V") >= 0.9


def test_emm_shift_interval_covers_the_truth():
    rf, r_true, sig = 24.0e6, np.array([0.02, 0.03, 0.015]), 0.002
    beams = np.repeat(["1", "2", "3"], 8)
    k = (rf / shifts.NU0_CA) ** 2
    hits, widths = [], []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        # the truth's Omega_magic and Delta alpha_0 drawn from what the model assumes of them
        magic = shifts.RF_MAGIC_HZ + rng.normal(0, shifts.RF_MAGIC_UNC_HZ)
        rel = rng.normal(0, shifts.DELTA_ALPHA0_REL_UNC)
        truth = -k * (1 - (rf / magic) ** 2 * (1 + rel)) * float(r_true @ r_true)
        samples = np.repeat(r_true, 8) + rng.normal(0, sig, 24)
        e = micromotion.emm_shift(beams, samples, np.full(24, sig), rf_hz=rf).estimates[0]
        hits.append(e.contains(truth))
        widths.append((e.high - e.low) / E19)
    assert report_coverage("EMM shift (off magic, 24.0 MHz)", hits, widths, "1e-19") >= 0.9


# --- the CLI: CSV round trip and bad files ---------------------------------------------------
def write_csv(path: Path, header: list[str], rows) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def csv_cases(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    cases = {}
    y = ALPHA * (FIELDS ** 2 - B0 ** 2) + rng.normal(0, 0.004, len(FIELDS))
    cases["zeeman"] = write_csv(tmp / "zeeman.csv", ["b_t", "b0_t", "delta_hz", "delta_unc_hz"],
                                [(b, B0, d, 0.004) for b, d in zip(FIELDS, y)])
    rows = []
    for d in (0.03, 0.08, 0.14):
        p = rng.binomial(100, thermometry.sideband_flop(PULSES, 0.05 + 1.31 * d, OMEGA0, ETA_Z,
                                                        -1)) / 100
        rows += [(d, t, "red", pp, ETA_Z, 100) for t, pp in zip(PULSES, p)]
    cases["thermometry"] = write_csv(
        tmp / "heating.csv", ["dark_time_s", "pulse_time_s", "sideband", "p_excited", "eta",
                              "shots"], rows)
    eta = debye_waller.seed_eta_matrix()
    cases["debye-waller"] = write_csv(
        tmp / "dw.csv", list(debye_waller.COLUMNS),
        [("1", 2.172, 0.004, 2.201, 0.004, *eta[0]), ("3", 3.464, 0.005, 3.488, 0.008, *eta[1])])
    cases["ac-field"] = write_csv(tmp / "g.csv", list(ac_field.COLUMNS),
                                  [(*ac_field.SEED_R, *ac_field.SEED_B0_T)])
    cases["secular"] = write_csv(
        tmp / "sec.csv", list(secular.COLUMNS),
        [("z", 2.580e6, 1.31, 0.43, 0, 0.11), ("x", 3.531e6, 0.43, 0.07, 0, 0.03),
         ("y", 3.166e6, 0.53, 0.12, 0, 0.04)])
    cases["micromotion"] = write_csv(
        tmp / "mm.csv", ["beam", "ratio", "ratio_unc"],
        [(b, r, 0.002) for b, r in zip("112233", (0.02, 0.022, 0.03, 0.028, 0.015, 0.016))])
    v = np.linspace(-4, 6, 11)
    cases["compensation"] = write_csv(
        tmp / "scan.csv", ["voltage_v", "r2"],
        [(x, yy) for x, yy in zip(v, micromotion.parabola(v, 1e-3, 1.3, 1e-5)
                                  + rng.normal(0, 5e-4, 11))])
    cases["bbr"] = write_csv(tmp / "bbr.csv", ["t_s", "channel", "temperature_k", "rf_on"],
                             [(0, "temp.endcap", 78.1, 1), (60, "temp.endcap", 78.3, 0),
                              (0, "temp.replica_trap", 80.9, 1),
                              (60, "temp.replica_trap", 80.5, 0)])
    # Cd+ LIF scans (seed 004 Eq. 15): 114 and 113 lines at the seed's offset, Poisson counts
    from ionclock.physics.cadmium import isotope, voigt_lif
    rows = []
    for scan, (iso, off) in enumerate(((114, 0.0), (113, isotope(113).lif_offset_hz))):
        nu = 1397.592e12 + off + np.linspace(-300e6, 300e6, 121)
        lam = 200 + 3e11 * voigt_lif(nu, 1397.592e12 + off, 1.0, 0.0, gauss_fwhm_hz=30e6)
        rows += [(iso, scan, f"{x:.1f}", c) for x, c in zip(nu, rng.poisson(lam))]
    cases["cd-hfs"] = write_csv(tmp / "lif.csv", ["isotope", "scan", "frequency_hz", "counts"],
                                rows)
    return cases


def test_every_analysis_round_trips_through_the_cli(tmp_path, capsys):
    cases = csv_cases(tmp_path)
    assert set(cases) == set(ANALYSES)
    out = tmp_path / "plots"
    expect = {"secular": "secular_shift = -5.76", "ac-field": "b_perp2 = 1.1",
              "debye-waller": "nbar_x = 2.59", "bbr": "temperature = 79.5 K",
              "cd-hfs": "nu_hfs_p_113 = 83"}
    for name, path in cases.items():
        assert main(["analyse", name, str(path), "--out", str(out)]) == 0, name
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith(f"{name}: "), lines
        assert "[" in lines[0] and expect.get(name, "") in lines[0], lines[0]
        png = out / f"{path.stem}.{name}.png"
        assert lines[1] == f"wrote {png}" and png.stat().st_size > 1000
    # without --out the plot goes beside the data
    assert main(["analyse", "zeeman", str(cases["zeeman"])]) == 0
    assert (tmp_path / "zeeman.zeeman.png").exists()


def _one_line_2(capsys, argv, expect):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expect in err, err


def test_bad_files_are_one_line_and_exit_2(tmp_path, capsys):
    _one_line_2(capsys, ["analyse", "zeeman", str(tmp_path / "none.csv")], "cannot read")
    _one_line_2(capsys, ["analyse", "zeeman", str(write_csv(tmp_path / "cols.csv", ["b_t", "x"],
                                                             [(1, 2)]))],
                "missing column(s) b0_t, delta_hz")
    bad = write_csv(tmp_path / "num.csv", ["b_t", "b0_t", "delta_hz"], [(1e-5, B0, 0.1),
                                                                        (2e-5, B0, "abc")])
    _one_line_2(capsys, ["analyse", "zeeman", str(bad)], "data row 2: column delta_hz: 'abc'")
    (tmp_path / "empty.csv").write_text("")
    _one_line_2(capsys, ["analyse", "bbr", str(tmp_path / "empty.csv")], "is empty")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x01garbage")
    _one_line_2(capsys, ["analyse", "bbr", str(tmp_path / "bin.csv")], "bin.csv")
    one = write_csv(tmp_path / "one.csv", ["b_t", "b0_t", "delta_hz"], [(1e-5, B0, 0.1)])
    _one_line_2(capsys, ["analyse", "zeeman", str(one)], "one.csv")
    sb = write_csv(tmp_path / "sb.csv", list(thermometry.COLUMNS), [(0, 1e-5, "green", 0.1, 0.04)])
    _one_line_2(capsys, ["analyse", "thermometry", str(sb)], "'green' is not red or blue")
    _one_line_2(capsys, ["analyse", "zeeman", str(tmp_path)], "is a folder")
