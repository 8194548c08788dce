"""One handle on the twin's characterisation physics (sim_instruments/characterisation.py):
its truth agrees with what the clock world applies through ionclock.physics.shifts."""

from __future__ import annotations

import pytest

from ionclock.physics.constants import NU0_CA
from ionclock.physics.shifts import TrueConditions, true_shifts_hz
from ionclock.sim_instruments.characterisation import CharacterisationTwin
from ionclock.sim_instruments.world import ClockWorld


def test_truth_gathers_every_measurement_and_matches_the_worlds_shifts():
    world = ClockWorld(seed=3)
    world.coil_current_a = 37.197e-6 / world.p.coil_t_per_a
    world.env.run(until=world.p.shift_update_s + 1)
    twin = CharacterisationTwin(world, seed=3)
    truth = twin.truth()
    assert set(truth) == {"motion", "micromotion", "ac_field", "zeeman"}
    # the secular shift of the twin's probe occupations is the one the world applies
    cond = TrueConditions(nbar=truth["motion"]["nbar_probe"])
    assert true_shifts_hz(cond, NU0_CA)["secular"] == pytest.approx(
        world.shifts_hz["secular"], rel=2e-3)
    # the AC row: alpha_z <B_y^2>; the DC row's alpha_z
    assert truth["ac_field"]["qz_ac_shift_hz"] == pytest.approx(world.shifts_hz["qz_ac"])
    assert truth["zeeman"]["alpha_z"] == TrueConditions().alpha_z
    # <B_perp^2> of the seed's measurement along x, and the EMM shift at the magic drive
    assert truth["ac_field"]["b_perp2_t2"] == pytest.approx(11e-14)
    assert truth["micromotion"]["emm_shift"] == world.shifts_hz["emm"] == 0.0
