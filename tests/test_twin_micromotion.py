"""The twin's micromotion (sim_instruments/micromotion.py): sidebands, the optimum's drift at
LN2 refills, the EMM shift through ionclock.physics.shifts (DOMAIN §2-§3, seed Eq. 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from ionclock.physics import shifts
from ionclock.sim_instruments.micromotion import Micromotion, MicromotionParams
from ionclock.sim_instruments.world import ClockWorld, TwinParams


def test_ratio_is_least_at_each_electrodes_optimum():
    mm = Micromotion()
    v0 = mm.v0()
    assert v0 == pytest.approx(mm.p.v0_v)
    assert mm.ratios() == pytest.approx(special.j1(0.02) / special.j0(0.02))   # the floor
    for j in range(3):
        volts = v0[j] + np.linspace(-2, 2, 41)
        r = []
        for v in volts:
            vv = v0.copy()
            vv[j] = v
            r.append(mm.ratios(vv)[j])
        assert volts[int(np.argmin(r))] == pytest.approx(v0[j])
        # R ~ beta / 2 and R^2 ~ a (V - V0)^2 + c: the analysis' parabola to O(beta^2)
        beta = np.hypot(0.05 * (volts - v0[j]), 0.02)
        assert np.array(r) == pytest.approx(beta / 2, rel=3e-3)
    # seed (J1/J0, what a measurement sees) and physical (beta/2) conventions
    vv = v0 + 1.0
    assert mm.ratios(vv) == pytest.approx(special.j1(mm.beta(vv)) / special.j0(mm.beta(vv)))
    assert mm.ratios(vv, convention="physical") == pytest.approx(mm.beta(vv) / 2)


def test_sideband_over_carrier_at_short_pulses_is_r_squared():
    mm = Micromotion()
    v = np.asarray(mm.p.v0_v) + np.array([1.5, 0.0, -0.8])
    t = np.array([1e-11, 2e-11])                 # sin^2 x / x^2 = 1 to 1e-9
    for beam in (1, 2, 3):
        sb = mm.excitation(t, beam=beam, order=1, v=v)
        car = mm.excitation(t, beam=beam, order=0, v=v)
        assert sb / car == pytest.approx(mm.ratios(v)[beam - 1] ** 2, rel=1e-5)
        assert mm.excitation(t, beam=beam, order=-1, v=v) == pytest.approx(sb)


def test_optimum_moves_after_a_refill_and_settles_with_the_temperatures():
    world = ClockWorld(seed=4)
    mm = Micromotion(world, seed=4)
    world.env.run(until=1000.0)
    before = mm.v0()
    assert before == pytest.approx(mm.p.v0_v) and mm.refill_times() == []
    world.cryostat.inject_refill(2.0)
    assert mm.v0() == pytest.approx(before)                       # continuous at the refill
    tau = world.cryostat.recovery_time
    world.env.run(until=1000.0 + tau)
    mid = mm.v0()
    world.env.run(until=1000.0 + 20 * tau)
    after = mm.v0()
    offset = after - before
    assert np.all(np.abs(offset) > 1e-3) and np.all(np.abs(offset) < 5 * mm.p.refill_shift_v)
    assert mid - before == pytest.approx(offset * (1 - math.exp(-1)), rel=1e-6)
    # the applied voltages stay: R and the shift grow until re-compensated
    assert np.all(mm.ratios() > mm.ratios(after))
    mm.set_voltages(after)
    assert mm.ratios() == pytest.approx(special.j1(0.02) / special.j0(0.02))
    # the offsets are the seed's: another twin of the same seed sees the same optimum
    twin = ClockWorld(seed=4)
    other = Micromotion(twin, seed=4)
    twin.env.run(until=1000.0)
    twin.cryostat.inject_refill(2.0)
    twin.env.run(until=1000.0 + 20 * tau)
    assert other.v0() == pytest.approx(after)
    assert Micromotion(ClockWorld(seed=5), seed=5)._offset(1) != pytest.approx(mm._offset(1))
    truth = mm.truth()
    assert truth["refills_s"] == (1000.0,) and truth["v0_v"] == pytest.approx(tuple(after))


def test_scheduled_refills_move_the_optimum_too():
    world = ClockWorld(params=TwinParams(refill_interval_s=6 * 3600.0), seed=2)
    mm = Micromotion(world, seed=2)
    world.env.run(until=13 * 3600.0)
    assert len(mm.refill_times()) == 2
    assert not np.allclose(mm.v0(), mm.p.v0_v)


def test_emm_shift_is_the_budgets_formula():
    off_magic = Micromotion(params=MicromotionParams(rf_hz=24.0e6))
    v = np.asarray(off_magic.p.v0_v) + 0.8
    r = off_magic.ratios(v)
    row = shifts.micromotion(list(r), rf_hz=24.0e6)
    assert off_magic.emm_shift(v) == pytest.approx(row.value, rel=1e-12)
    assert off_magic.emm_shift(v) < 0        # below the magic drive: time dilation wins
    phys, seed = off_magic.emm_shift(v, convention="physical"), off_magic.emm_shift(v)
    assert phys == pytest.approx(seed, rel=2e-3) and phys != seed
    # at the magic drive (DOMAIN §1, 24.801 MHz) the bracket vanishes, whatever R is
    assert Micromotion().emm_shift(v) == 0.0


def test_the_twin_leaves_the_worlds_random_streams_alone():
    # the same world with and without the micromotion twin asked along the way
    def world_after(use_twin: bool):
        world = ClockWorld(seed=9)
        mm = Micromotion(world, seed=9)
        temps = []
        for day in (1, 2, 3):
            world.env.run(until=day * 86400.0)     # a scheduled refill at ~2 days
            if use_twin:
                mm.measure([1e-6, 2e-6], 100, np.random.default_rng(day), beam=1, order=1)
                mm.truth()
            temps.append(world.cryostat.temperatures())
        return (world.rng.getstate(), world.nprng.bit_generator.state, temps,
                len(world.cryostat.refills()))

    used, untouched = world_after(True), world_after(False)
    assert used == untouched and used[3] >= 1
