"""The twin's Zeeman physics (sim_instruments/zeeman.py): the AC field in the g-factor ratio
(seed Eq. 6) and the quadratic Zeeman shift at other fields (DOMAIN §2, seed Eq. 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ionclock.physics.constants import (
    G_D52,
    G_S12,
    PAIR_SPLITTING_HZ_PER_T,
    ZEEMAN_LINES,
    g_ratio_with_ac_field,
    qpn_sigma,
    ramsey_contrast,
)
from ionclock.procedures.analysis import ac_field
from ionclock.sim_instruments.world import ClockWorld
from ionclock.sim_instruments.zeeman import (
    AcFieldParams,
    ComparisonParams,
    ZeemanComparison,
    ZeemanLines,
    ratio_from_splittings,
)

B0_X = ac_field.SEED_B0_T[0]         # the seed's 56.363 uT along x


def test_defaults_give_the_seeds_ratio():
    z = ZeemanLines()
    assert z.b_perp2("x") == pytest.approx(11e-14)        # <B_y^2> + <B_z^2>
    assert z.b_perp2("y") == pytest.approx(1e-14)          # in operation: x and z
    # the seed's r = 0.599488818(9) at 56.363 uT: G_RATIO_SEED is what that r implies
    assert z.ratio(B0_X) == pytest.approx(ac_field.SEED_R[0], abs=1e-10)   # r: +-9e-9
    # the AC row's truth is the world's: alpha_z <B_y^2> with <B_y^2> = 1e-13 T^2
    assert z.qz_ac_shift_hz("y") == pytest.approx(14.345e6 * 1e-13)


@pytest.mark.parametrize("convention", ["seed", "physical"])
@pytest.mark.parametrize("b_perp2", [0.0, 3e-14, 11e-14, 1e-12])
def test_the_splittings_give_eq_6_and_the_analysis_inverts_it(convention, b_perp2):
    z = ZeemanLines(AcFieldParams(b2_t2=(0.0, b_perp2, 0.0), convention=convention))
    c = z.line_offsets_hz(B0_X)
    r = ratio_from_splittings(c[1] - c[0], c[3] - c[2])
    assert r == pytest.approx(z.ratio(B0_X), rel=1e-15)
    assert r == pytest.approx(g_ratio_with_ac_field(b_perp2, B0_X, convention=convention),
                              rel=1e-15)
    back = ac_field.b_perp2(r, B0_X, convention=convention)
    assert back == pytest.approx(b_perp2, abs=1e-20)
    # every line pair's centre is the quadratic Zeeman centre alpha_z (B0^2 + <B_x^2>)
    centres = 0.5 * (c[0::2] + c[1::2])
    assert centres == pytest.approx(14.345e6 * B0_X ** 2, rel=1e-6)


def test_without_an_ac_field_the_lines_are_the_worlds():
    z = ZeemanLines(AcFieldParams(b2_t2=(0.0, 0.0, 0.0), g_ratio=G_D52 / G_S12))
    b = 37.197e-6
    lines = z.line_offsets_hz(b, axis="y") - 14.345e6 * b ** 2
    assert lines == pytest.approx([ln.offset_hz(b) for ln in ZEEMAN_LINES], abs=1e-6)
    split = lines[1::2] - lines[0::2]
    assert split == pytest.approx(np.array(PAIR_SPLITTING_HZ_PER_T) * b, rel=1e-12)
    # DOMAIN §1: the three splittings stand in the ratio 0.79937 : 1.60130 : 1.99971
    assert split / split.mean() * (0.79937 + 1.60130 + 1.99971) / 3 == pytest.approx(
        [0.79937, 1.60130, 1.99971], abs=2e-5)


def test_ramsey_samples_the_two_point_response():
    z = ZeemanLines()
    c = z.line_offsets_hz(B0_X)[:4]
    probe = c + np.array([0.0, 0.5, -1.0, 2.0])
    shots = 10 ** 6
    n_plus, n_minus = z.ramsey(B0_X, probe, shots, np.random.default_rng(3))
    s = ramsey_contrast(0.08) * np.sin(2 * math.pi * (probe - c) * 0.08)
    assert n_plus / shots == pytest.approx(0.5 * (1 - s), abs=3e-3)
    assert n_minus / shots == pytest.approx(0.5 * (1 + s), abs=3e-3)
    again = z.ramsey(B0_X, probe, shots, np.random.default_rng(3))
    assert np.array_equal(again[0], n_plus) and np.array_equal(again[1], n_minus)


def test_comparison_sees_alpha_z_times_the_difference_of_squares():
    cmp = ZeemanComparison()
    b0, b = 37.197e-6, np.array([50e-6, 200e-6])
    expected = 14.345e6 * (b ** 2 - b0 ** 2) + 10.7e-18 * 411_042_129_776_400.0
    assert cmp.difference_hz(b, b0) == pytest.approx(expected, rel=1e-12)
    assert cmp.sigma_hz(1.0) == pytest.approx(math.sqrt(2) * qpn_sigma(1.0) * 411.0421e12,
                                              rel=1e-6)
    assert cmp.sigma_hz(4.0) == pytest.approx(cmp.sigma_hz(1.0) / 2)
    y, sig = cmp.measure(b, 3600.0, np.random.default_rng(0), b0)
    assert np.all(np.abs(y - expected) < 5 * sig)
    quiet = ZeemanComparison(params=ComparisonParams(sigma_y_1s=0.0, offset_hz=0.0))
    assert quiet.measure(b, 1.0, np.random.default_rng(0), b0)[0] == pytest.approx(
        14.345e6 * (b ** 2 - b0 ** 2))
    with pytest.raises(ValueError):
        cmp.difference_hz(b)              # no world: the reference field must be given


def test_the_reference_is_the_worlds_clock_at_its_own_field():
    world = ClockWorld(seed=1)
    world.coil_current_a = 37.197e-6 / world.p.coil_t_per_a
    world.env.run(until=world.p.shift_update_s + 1)      # the world re-evaluates its shifts
    t_update = world.p.shift_update_s
    cmp = ZeemanComparison(world)
    b_update = world.b_true(t_update)
    # the world applies alpha_z B^2 at its field: the comparison's shift there is the same
    assert world.shifts_hz["qz_dc"] == pytest.approx(cmp.shift_hz(b_update), rel=1e-12)
    assert cmp.difference_hz(b_update * 2)[0] == pytest.approx(
        3 * world.shifts_hz["qz_dc"] + cmp.p.offset_hz, rel=1e-6)
