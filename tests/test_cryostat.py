"""LN2 cryostat twin: ranges, ordering, refills, RF heating, injection and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from ionclock.sim_instruments.cryostat import LOCATIONS, Cryostat

DAY = 86400.0


def sample(cryo: Cryostat, env: simpy.Environment, until: float, step: float) -> dict:
    out = {loc: [] for loc in LOCATIONS}
    times = []
    t = env.now
    while t <= until:
        env.run(until=t) if t > env.now else None
        times.append(env.now)
        for loc, v in cryo.temperatures().items():
            out[loc].append(v)
        t += step
    return {"t": np.array(times), **{k: np.array(v) for k, v in out.items()}}


@pytest.fixture(scope="module")
def ten_days():
    env = simpy.Environment()
    cryo = Cryostat(env, seed=11)
    data = sample(cryo, env, 10 * DAY, 600.0)
    return cryo, data


def test_every_location_stays_in_75_to_85_k(ten_days):
    _, data = ten_days
    for loc in LOCATIONS:
        assert 75.0 < data[loc].min() and data[loc].max() < 85.0, loc


def test_trap_is_the_warmest_part(ten_days):
    _, data = ten_days
    stacked = np.vstack([data[loc] for loc in LOCATIONS])
    assert np.all(stacked.argmax(axis=0) == LOCATIONS.index("trap"))


def test_envelope_outside_refill_dips_matches_the_seed(ten_days):
    cryo, data = ten_days
    refills = [r.time for r in cryo.refills()]
    calm = np.ones_like(data["t"], dtype=bool)
    for t0 in refills:
        calm &= ~((data["t"] >= t0) & (data["t"] < t0 + 5 * cryo.recovery_time))
    stacked = np.vstack([data[loc][calm] for loc in LOCATIONS])
    lo, hi = stacked.min(), stacked.max()
    assert 0.5 * (lo + hi) == pytest.approx(79.5, abs=0.4)
    assert 0.5 * (hi - lo) == pytest.approx(1.4, abs=0.5)


def test_refills_every_two_days_with_1_to_3_k_drops(ten_days):
    cryo, data = ten_days
    refills = cryo.refills()
    assert len(refills) in (4, 5)
    gaps = np.diff([r.time for r in refills])
    assert np.all(np.abs(gaps - 2 * DAY) <= 3 * 3600 + 1)
    for r in refills:
        assert r.depth >= 1.0 and r.depth <= 3.0
        i = int(np.searchsorted(data["t"], r.time))
        before = data["ln2_bottom"][i - 1]
        just_after = data["ln2_bottom"][i]
        # abrupt: the drop appears within one 10-min sample, and recovers within hours
        assert before - just_after > 0.8 * r.depth
        j = int(np.searchsorted(data["t"], r.time + 8 * cryo.recovery_time))
        assert data["ln2_bottom"][j] > before - 0.3


def test_same_seed_same_history_whatever_the_sampling():
    a_env, b_env = simpy.Environment(), simpy.Environment()
    a, b = Cryostat(a_env, seed=3), Cryostat(b_env, seed=3)
    sample(a, a_env, 3 * DAY, 997.0)  # a is sampled on another grid first
    b_env.run(until=3 * DAY)
    a_env.run(until=3 * DAY + 1)
    b_env.run(until=3 * DAY + 1)
    assert a.temperatures() == b.temperatures()
    assert a.refills() == b.refills()
    c_env = simpy.Environment()
    c = Cryostat(c_env, seed=4)
    c_env.run(until=3 * DAY + 1)
    assert c.temperatures() != a.temperatures()


def test_rf_switch_moves_the_trap_about_0p4_k_with_its_time_constant():
    env = simpy.Environment()
    cryo = Cryostat(env, seed=1, noise=0.0, schedule_refills=False, rf_on=True)
    env.run(until=3600)
    on = cryo.temperature("trap")
    holder_on = cryo.temperature("trap_holder")
    cryo.set_rf(False)
    assert not cryo.rf_on
    env.run(until=3600 + cryo.rf_time_constant)
    one_tau = cryo.temperature("trap")
    env.run(until=3600 + 8 * cryo.rf_time_constant)
    off = cryo.temperature("trap")
    slow = cryo.rise["trap"] * (8 * cryo.rf_time_constant) / cryo.refill_interval
    assert on - off + slow == pytest.approx(0.4, abs=0.005)
    assert (on - one_tau) == pytest.approx(0.4 * (1 - np.exp(-1)), abs=0.01)
    assert holder_on - cryo.temperature("trap_holder") < 0.1
    cryo.set_rf(True)
    env.run(until=env.now + 8 * cryo.rf_time_constant)
    assert cryo.temperature("trap") - off - slow == pytest.approx(0.4, abs=0.005)


def test_injected_refill_and_excursion():
    env = simpy.Environment()
    cryo = Cryostat(env, seed=2, noise=0.0, schedule_refills=False)
    env.run(until=DAY)
    before = cryo.temperatures()
    refill = cryo.inject_refill(depth=2.0)
    assert refill.time == DAY and cryo.refills() == [refill]
    after = cryo.temperatures()
    assert before["ln2_bottom"] - after["ln2_bottom"] > 2.0  # drop + the reset of the slow rise
    # The run starts just recovered from a refill 6 recovery times before t = 0.
    since = DAY + 6 * cryo.recovery_time
    assert before["trap"] - after["trap"] == pytest.approx(
        cryo.coupling["trap"] * 2.0 + cryo.rise["trap"] * since / cryo.refill_interval, abs=1e-6)
    env.run(until=2 * DAY)
    base = cryo.temperature("bbr_cavity")
    cryo.inject_excursion(+1.5, duration=3600.0, location="bbr_cavity", time_constant=0.0)
    assert cryo.temperature("bbr_cavity") == pytest.approx(base + 1.5, abs=1e-9)
    env.run(until=2 * DAY + 7200)
    assert cryo.temperature("bbr_cavity") - base < 0.05


@pytest.mark.parametrize("kwargs", [
    {"refill_interval": 0.0}, {"refill_depth": (3.0, 1.0)}, {"noise": -1.0},
    {"base": {"attic": 80.0}}, {"refill_jitter": 2 * DAY},
])
def test_bad_parameters_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        Cryostat(simpy.Environment(), **kwargs)


def test_bad_location_and_injection_are_value_errors():
    cryo = Cryostat(simpy.Environment())
    with pytest.raises(ValueError, match="unknown location"):
        cryo.temperature("attic")
    with pytest.raises(ValueError):
        cryo.inject_refill(depth=9.0)
    with pytest.raises(ValueError):
        cryo.inject_excursion(1.0, duration=-1.0)
