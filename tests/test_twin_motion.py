"""The twin's motional states and pulses (sim_instruments/motion.py) against closed forms.

DOMAIN §3 and the seed's Table I, Eqs. 3-4 and Fig. 8; the coverage of the analyses on these
states is in test_twin_coverage.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from ionclock.physics import sidebands
from ionclock.procedures.analysis import debye_waller
from ionclock.sim_instruments.motion import MODES, Motion, MotionParams
from ionclock.sim_instruments.world import TwinParams


def test_defaults_are_the_seeds_and_heating_is_linear():
    m = Motion()
    assert m.nbar("doppler") == pytest.approx([2.6, 2.6, 4.8])
    assert m.nbar("sideband") == pytest.approx([0.015, 0.02, 0.055])
    t = 0.14
    assert m.nbar("sideband", t) == pytest.approx(np.array([0.015, 0.02, 0.055])
                                                  + t * np.array([0.43, 0.53, 1.31]))
    # the probe's occupations are the world's (one truth for the clock and the measurements)
    assert m.nbar_during_probe() == pytest.approx(TwinParams().nbar, abs=5e-4)
    # beam 2 is Table I's cooling beam; beams 1 and 3 the seed's single eta (decision 0800)
    assert m.eta[1] == pytest.approx([0.025, 0.027, 0.043])
    assert m.eta[[0, 2]] == pytest.approx(debye_waller.seed_eta_matrix())
    geo = Motion(MotionParams(eta_convention="geometric"))
    assert geo.eta[[0, 2]] == pytest.approx(debye_waller.geometric_eta_matrix())
    with pytest.raises(ValueError):
        m.nbar("laser")
    with pytest.raises(ValueError):
        MotionParams(eta_convention="printed")


@pytest.mark.parametrize("nbar", [0.05, 0.3, 2.0])
@pytest.mark.parametrize("spectators", [True, False])
def test_blue_over_red_at_short_times_is_nbar_plus_one_over_nbar(nbar, spectators):
    # detailed balance: p_{n+1}/p_n = nbar/(nbar + 1) and Omega_{n,n+1} = Omega_{n+1,n}, so
    # at short times P_blue/P_red -> (nbar + 1)/nbar for any eta (spectators alike on both)
    m = Motion(MotionParams(spectators=spectators))
    nb = np.array([0.1, 0.2, nbar])
    t = np.array([2e-7, 4e-7])                       # Omega_sb t ~ 1e-3
    blue = m.excitation(t, beam=2, mode="z", sideband=1, nbar=nb)
    red = m.excitation(t, beam=2, mode="z", sideband=-1, nbar=nb)
    assert blue / red == pytest.approx((nbar + 1) / nbar, rel=1e-5)


def test_ground_state_flops_are_single_frequency():
    m = Motion(MotionParams(n0=(0.0, 0.0, 0.0)))
    t = np.linspace(0, 200e-6, 41)
    om = 2 * math.pi * 250e3
    eta = 0.043
    assert np.all(m.excitation(t, beam=2, mode="z", sideband=-1) == 0.0)   # nothing to take
    blue = m.excitation(t, beam=2, mode="z", sideband=1)
    dw_spect = math.exp(-0.5 * (0.025 ** 2 + 0.027 ** 2))   # the spectators' ground-state DW
    om_b = om * math.exp(-eta ** 2 / 2) * eta * dw_spect
    assert blue == pytest.approx(np.sin(om_b * t / 2) ** 2, abs=1e-10)
    # a detuned carrier: the generalised Rabi formula
    delta = 2 * math.pi * 100e3
    om_c = om * math.exp(-0.5 * (0.025 ** 2 + 0.027 ** 2 + eta ** 2))
    car = m.excitation(t[:10] / 20, beam=2, detuning_hz=100e3)
    gen = math.hypot(om_c, delta)
    assert car == pytest.approx(om_c ** 2 / gen ** 2 * np.sin(gen * t[:10] / 40) ** 2, abs=1e-10)


@pytest.mark.parametrize("eta", [0.043, 0.2])
def test_thermal_carrier_mean_is_the_debye_waller_factor(eta):
    # sum_n p_n exp(-eta^2/2) L_n(eta^2) = exp(-eta^2 (nbar + 1/2)) exactly (Laguerre
    # generating function): seed Eqs. 3-4 are the thermal mean, not a Lamb–Dicke expansion
    m = Motion(MotionParams(eta=((eta, 0, 0), (0, 0, eta), (0, 0, 0)), spectators=False))
    for nbar in (0.1, 2.6, 4.8):
        f, w = m._rabi_distribution(2, "z", 0, np.array([0.0, 0.0, nbar]))
        assert f @ w / w.sum() == pytest.approx(math.exp(-eta ** 2 * (nbar + 0.5)), rel=2e-6)


def test_three_modes_reproduce_the_seeds_rabi_frequencies():
    m = Motion()
    mhz = {(b, c): m.mean_rabi_frequency(beam=b, cooling=c) / (2 * math.pi * 1e6)
           for b in (1, 3) for c in ("doppler", "sideband")}
    # seed supplement Fig. 8: 2.172 / 2.201 MHz (beam 1), 3.464 / 3.488 MHz (beam 3)
    assert mhz[1, "doppler"] == pytest.approx(2.172, abs=5e-4)
    assert mhz[1, "sideband"] == pytest.approx(2.201, abs=5e-4)
    assert mhz[3, "doppler"] == pytest.approx(3.464, abs=5e-4)
    assert mhz[3, "sideband"] == pytest.approx(3.488, abs=5e-4)
    # the ratio is exp(-sum eta^2 (nbar_D - nbar_SC)) (seed Eqs. 3-4): the analysis inverts it
    # to nbar_D - nbar_SC exactly
    for b in (1, 3):
        eta = m.eta[b - 1]
        expected = math.exp(-(eta ** 2) @ (m.nbar("doppler") - m.nbar("sideband")))
        # (to the thermal tail left out, 1e-6 per mode)
        assert mhz[b, "doppler"] / mhz[b, "sideband"] == pytest.approx(expected, rel=1e-6)
    res = debye_waller.nbar_from_rabi_ratios(
        [mhz[1, "doppler"], mhz[3, "doppler"]], [1e-3, 1e-3],
        [mhz[1, "sideband"], mhz[3, "sideband"]], [1e-3, 1e-3], debye_waller.seed_eta_matrix())
    diff = m.nbar("doppler") - m.nbar("sideband")
    # x and y tied (the seed's assumption) with one eta: their mean
    tied = 0.5 * (diff[0] + diff[1])
    assert [res[f"nbar_{q}"].value for q in MODES] == pytest.approx([tied, tied, diff[2]],
                                                                     abs=1e-3)


def test_the_fock_sums_keep_all_but_the_tail():
    m = Motion()
    for cooling in ("doppler", "sideband"):
        nb = m.nbar(cooling, 0.14)
        f, w = m._rabi_distribution(1, "z", 0, nb)
        # the kept weight is the product of each mode's truncated geometric sum, 1 - q^N
        # (independent of how the joint states are built and merged)
        cuts = [sidebands.thermal_cutoff(x, m.p.tail) for x in nb]
        kept = math.prod(1.0 - (x / (x + 1)) ** n for x, n in zip(nb, cuts))
        dropped = math.prod(cuts) * m.p.tail * 1e-6    # joint states below 1e-12 left out
        assert kept - dropped <= w.sum() <= kept + 1e-12
        n_max = [sidebands.thermal_cutoff(x, m.p.tail) for x in nb]
        for x, n in zip(nb, n_max):
            q = x / (x + 1)
            assert q ** n < m.p.tail <= q ** (n - 2)        # cut where the tail is < 1e-6
    # Laguerre Rabi frequencies are the shared ones (DOMAIN §3), e.g. n = 3 -> 4 on z
    eta = 0.043
    blue = sidebands.sideband_rabi_frequency(3, 1, eta)
    assert blue == pytest.approx(math.exp(-eta ** 2 / 2) * eta / 2
                                 * special.eval_genlaguerre(3, 1, eta ** 2))


def test_measurements_are_binomial_from_the_generator_given():
    m = Motion()
    t = np.linspace(0, 100e-6, 11)
    p = m.excitation(t, beam=2, mode="x", sideband=1, dark_time_s=0.05)
    a = m.measure(t, 100, np.random.default_rng(5), beam=2, mode="x", sideband=1,
                  dark_time_s=0.05)
    b = m.measure(t, 100, np.random.default_rng(5), beam=2, mode="x", sideband=1,
                  dark_time_s=0.05)
    assert np.array_equal(a, b) and a.dtype.kind == "i" and np.all((a >= 0) & (a <= 100))
    many = np.array([m.measure(t, 400, np.random.default_rng(s), beam=2, mode="x",
                               sideband=1, dark_time_s=0.05) for s in range(300)]) / 400
    se = np.sqrt(p * (1 - p) / 400 / 300) + 1e-9
    assert np.all(np.abs(many.mean(axis=0) - p) < 5 * se)
    # a detection error moves every probability towards 1/2
    eps = m.measure(t[:1], 10 ** 6, np.random.default_rng(1), beam=2, mode="x", sideband=1,
                    detection_error=0.01)
    assert eps[0] / 1e6 == pytest.approx(0.01, abs=1e-3)
    with pytest.raises(ValueError):
        m.measure(t, 0, np.random.default_rng(1))
    with pytest.raises(ValueError):
        m.excitation([-1e-6])
