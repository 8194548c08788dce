"""End to end on the twin: each measurement simulated, analysed, and graded against the truth.

For 20 seeds each, the twin's physics (sim_instruments: motion, micromotion, zeeman) gives
the raw outcomes (binomial shots), tests/twin_estimators.py does what a procedure does with
them, the analyses of procedures/analysis give a value with a 95 % interval, and the twin's
truth must lie inside it in >= 90 % of the seeds (issue 15). Each test prints the coverage and
the median interval width. Unlike tests/test_analyses.py, the data do not come from the
fits' own models: 3D thermal states with spectator modes, Bessel micromotion sidebands, the
Zeeman lines with the AC field, sine fits to thermally dephased carrier flops.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from ionclock.physics import shifts
from ionclock.physics.constants import G_RATIO_SEED, G_RATIO_SEED_UNC, NU0_CA, ramsey_contrast
from ionclock.procedures.analysis import (
    ac_field,
    debye_waller,
    micromotion,
    secular,
    thermometry,
    zeeman,
)
from ionclock.sim_instruments.micromotion import Micromotion, MicromotionParams
from ionclock.sim_instruments.motion import MODES, Motion
from ionclock.sim_instruments.world import ClockWorld
from ionclock.sim_instruments.zeeman import AcFieldParams, ZeemanComparison, ZeemanLines
from tests.twin_estimators import (
    fit_carrier_flop,
    g_ratio_from_centres,
    micromotion_ratio,
    ramsey_centres,
    report_coverage,
)

# At least the 20 seeds; where a seed costs milliseconds, more: with 20 a correct
# 95 % interval still fails ">= 90 %" one time in 13 (P(<= 17/20) = 7.5 %).
SEEDS = range(20)
MANY = range(100)
MOST = range(400)
MOTION = Motion()


# --- sideband thermometry and heating rates (seed Figs. 2, 3) -------------------------------------
DARK_TIMES = np.array([0.03, 0.055, 0.08, 0.11, 0.14])   # seed: 30-140 ms
PULSES, SHOTS = 21, 100


@cache
def _flop_probabilities(mode: str):
    """Red and blue flops of beam 2 on `mode` after each dark time: (dark, pulse, side, p)."""
    j = MODES.index(mode)
    t_max = 2 * math.pi / (MOTION.eta[1, j] * 2 * math.pi * MOTION.p.carrier_rabi_hz[1])
    t = np.linspace(0.0, t_max, PULSES)      # two blue-sideband pi times of the ground state
    rows = [(np.full(PULSES, d), t, np.full(PULSES, s),
             MOTION.excitation(t, beam=2, mode=mode, sideband=s, dark_time_s=d))
            for d in DARK_TIMES for s in (-1, 1)]
    return tuple(np.concatenate(c) for c in zip(*rows))


@cache
def _heating_fit(mode: str, seed: int):
    dark, pulse, side, prob = _flop_probabilities(mode)
    rng = np.random.default_rng([seed, MODES.index(mode)])
    p = rng.binomial(SHOTS, prob) / SHOTS
    return thermometry.analyse_thermometry(dark, pulse, side, p, SHOTS,
                                           eta=float(MOTION.eta[1, MODES.index(mode)]))


@pytest.mark.parametrize("mode", MODES)
def test_heating_rate_and_n0_cover_the_twins_truth(mode):
    j = MODES.index(mode)
    rate, n0 = MOTION.p.heating_rate[j], MOTION.p.n0[j]
    fits = [_heating_fit(mode, s) for s in SEEDS]
    cov_rate = report_coverage(f"heating rate {mode}", [f["heating_rate"].contains(rate)
                                                        for f in fits],
                               [f["heating_rate"].high - f["heating_rate"].low for f in fits],
                               "quanta/s")
    cov_n0 = report_coverage(f"n0 {mode}", [f["n0"].contains(n0) for f in fits],
                             [f["n0"].high - f["n0"].low for f in fits], "quanta")
    assert cov_rate >= 0.9 and cov_n0 >= 0.9


def test_secular_row_covers_the_twins_shift():
    # the budget row from the three modes' fits against the shift of the twin's true nbar
    truth = shifts.true_shifts_hz(shifts.TrueConditions(
        nbar=tuple(MOTION.nbar_during_probe())))["secular"] / NU0_CA
    rows = [secular.secular_row_from_fits([_heating_fit(m, s) for m in MODES]) for s in SEEDS]
    cov = report_coverage("secular row (a bound)", [r.estimates[0].contains(truth) for r in rows],
                          [(r.high - r.low) / 1e-19 for r in rows], "x 1e-19")
    assert cov >= 0.9


# --- Debye–Waller: carrier flops of beams 1 and 3 (seed Fig. 8, Eqs. 3-4) -------------------------
def test_debye_waller_nbar_covers_the_twins_doppler_state():
    cycles, points, shots = 4, 41, 100                 # short flops, as the seed's Fig. 8
    flops = {}
    for beam in (1, 3):
        omega = 2 * math.pi * MOTION.p.carrier_rabi_hz[beam - 1]
        t = np.linspace(0.0, cycles * 2 * math.pi / omega, points)
        for cooling in ("doppler", "sideband"):
            flops[beam, cooling] = (t, MOTION.excitation(t, beam=beam, cooling=cooling), omega)
    truth = MOTION.nbar("doppler")
    hits_x, hits_z, widths_x, widths_z, both = [], [], [], [], []
    for seed in MANY:
        rng = np.random.default_rng(seed)
        fit = {k: fit_carrier_flop(t, rng.binomial(shots, p), shots, om)
               for k, (t, p, om) in flops.items()}
        res = debye_waller.nbar_from_rabi_ratios(
            [fit[1, "doppler"][0], fit[3, "doppler"][0]],
            [fit[1, "doppler"][1], fit[3, "doppler"][1]],
            [fit[1, "sideband"][0], fit[3, "sideband"][0]],
            [fit[1, "sideband"][1], fit[3, "sideband"][1]], debye_waller.seed_eta_matrix())
        hits_x.append(res["nbar_x"].contains(truth[0]))
        hits_z.append(res["nbar_z"].contains(truth[2]))
        both.append(hits_x[-1] and hits_z[-1])
        widths_x.append(res["nbar_x"].high - res["nbar_x"].low)
        widths_z.append(res["nbar_z"].high - res["nbar_z"].low)
    cov_x = report_coverage("Debye-Waller nbar_x = nbar_y", hits_x, widths_x, "quanta")
    cov_z = report_coverage("Debye-Waller nbar_z", hits_z, widths_z, "quanta")
    report_coverage("Debye-Waller both", both, widths_x, "quanta (x)")
    assert cov_x >= 0.9 and cov_z >= 0.9


# --- micromotion: compensation scans after a refill, and the EMM shift (seed Eq. 5) ---------------
def _after_a_refill(seed: int, rf_hz: float | None = None) -> Micromotion:
    """A twin whose optimum moved at a refill 1 h in and settled for 12 h (not re-compensated)."""
    world = ClockWorld(seed=seed)
    params = MicromotionParams() if rf_hz is None else MicromotionParams(rf_hz=rf_hz)
    mm = Micromotion(world, params, seed=seed)
    world.env.run(until=3600.0)
    world.cryostat.inject_refill(2.0)
    world.env.run(until=3600.0 + 6 * world.cryostat.recovery_time)
    return mm


def _ratio(mm: Micromotion, beam: int, v, shots: int, rng):
    """R on `beam` at voltages `v` from a carrier pi/2 pulse and a weak sideband pulse."""
    omega = 2 * math.pi * mm.motion.p.carrier_rabi_hz[beam - 1]
    t_c, t_sb = 0.5 * math.pi / omega, 0.4 / (0.01 * omega)   # sideband area 0.4 at R = 0.01
    n_sb = mm.measure(t_sb, shots, rng, beam=beam, order=1, v=v)
    n_c = mm.measure(t_c, shots, rng, beam=beam, order=0, v=v)
    r, u = micromotion_ratio(n_sb, t_sb, n_c, t_c, shots)
    return float(r[0]), float(u[0])


def test_compensation_scan_covers_the_moved_optimum():
    hits = {True: [], False: []}
    widths = {True: [], False: []}
    for seed in MANY:
        mm = _after_a_refill(seed)
        rng = np.random.default_rng([seed, 7])
        v0 = mm.v0()
        for beam in (1, 2, 3):
            j = beam - 1
            volts = mm.applied_v[j] + np.linspace(-2.0, 2.0, 15)   # around the old optimum
            rs, us = [], []
            for v in volts:
                vv = mm.applied_v.copy()
                vv[j] = v
                r, u = _ratio(mm, beam, vv, 400, rng)
                rs.append(r)
                us.append(u)
            for weighted in (True, False):
                e = micromotion.fit_compensation_scan(
                    volts, ratio=rs, ratio_unc=us if weighted else None)["v_min"]
                hits[weighted].append(e.contains(v0[j]))
                widths[weighted].append(e.high - e.low)
    cov = report_coverage("compensation V0 (weighted, 3 beams)", hits[True], widths[True], "V")
    # unweighted: t(n - 3) from the scatter; R^2's noise grows away from the minimum, so the
    # scatter's one sigma misjudges it (printed, not required: ~86-91 % over 100 seeds)
    report_coverage("compensation V0 (unweighted, 3 beams)", hits[False], widths[False], "V")
    assert cov >= 0.9


def test_emm_shift_covers_the_twins_shift_off_the_magic_drive():
    # at the magic drive the shift is 0 whatever R is: 24.0 MHz makes the test say something
    rf = 24.0e6
    hits, widths, rel = [], [], []
    for seed in MANY:
        mm = _after_a_refill(seed, rf)        # not re-compensated: R_i ~ 0.01-0.05
        rng = np.random.default_rng([seed, 8])
        beams, ratios, uncs = [], [], []
        for beam in (1, 2, 3):
            for _ in range(5):
                r, u = _ratio(mm, beam, None, 400, rng)
                beams.append(str(beam))
                ratios.append(r)
                uncs.append(u)
        e = micromotion.emm_shift(beams, ratios, uncs, rf_hz=rf).estimates[0]
        truth = mm.emm_shift()
        hits.append(e.contains(truth))
        widths.append((e.high - e.low) / 1e-19)
        rel.append(e.half_width / abs(truth))
    cov = report_coverage("EMM shift at 24.0 MHz", hits, widths, "x 1e-19")
    print(f"  median half-width / |shift| = {np.median(rel):.2f}")
    assert cov >= 0.9


# --- AC field from the g-factor ratio (seed Eq. 6) ------------------------------------------------
@pytest.mark.parametrize("g_ratio_known", [True, False])
def test_ac_field_covers_the_twins_b_perp2(g_ratio_known):
    b0, b0_unc = ac_field.SEED_B0_T            # 56.363(5) uT along x
    shots, ramsey_t = 20000, 0.080             # per line and side: ~1 h of probes per line
    contrast = ramsey_contrast(ramsey_t)
    hits, widths = [], []
    for seed in MOST:
        rng = np.random.default_rng(seed)
        if g_ratio_known:
            g = G_RATIO_SEED                   # the analysis is told the true g_D/g_S
        else:                                  # the twin's g_D/g_S drawn from the analysis' prior
            g = G_RATIO_SEED + G_RATIO_SEED_UNC * rng.standard_normal()
        lines = ZeemanLines(AcFieldParams(g_ratio=g))
        centres = lines.line_offsets_hz(b0)[:4]
        probe = centres + rng.uniform(-0.3, 0.3, 4)    # where the locks left the laser
        n_plus, n_minus = lines.ramsey(b0, probe, shots, rng, ramsey_time_s=ramsey_t)
        c, s = ramsey_centres(probe, n_plus, n_minus, shots, ramsey_t, contrast)
        r, u_r = g_ratio_from_centres(c, s)
        kw = {"g_ratio": g, "g_ratio_unc": 0.0} if g_ratio_known else {}
        e = ac_field.ac_field_from_g_ratio(r, u_r, b0, b0_unc, **kw).estimates[0]
        hits.append(e.contains(lines.b_perp2("x")))
        widths.append(e.high - e.low)
    which = "g_D/g_S known" if g_ratio_known else "g_D/g_S from the prior"
    assert report_coverage(f"<B_perp^2> ({which})", hits, widths, "T^2") >= 0.9


# --- alpha_z from a two-clock comparison (seed Eq. 2, Fig. 10) ------------------------------------
@pytest.mark.parametrize("weighted", [True, False])
def test_alpha_z_covers_the_twins_coefficient(weighted):
    cmp = ZeemanComparison()
    b0 = 37.197e-6
    fields = np.linspace(50e-6, 300e-6, 8)
    hits, widths = [], []
    for seed in MOST:
        y, sig = cmp.measure(fields, 4 * 3600.0, np.random.default_rng(seed), b0)
        e = zeeman.fit_alpha_z(fields, y, sig if weighted else None, b0_t=b0)["alpha_z"]
        hits.append(e.contains(cmp.p.alpha_z))
        widths.append((e.high - e.low) * 1e-6)
    how = "weighted" if weighted else "t"
    assert report_coverage(f"alpha_z ({how})", hits, widths, "Hz/mT^2") >= 0.9
