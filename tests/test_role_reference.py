"""The frequency-reference role: the comb beat counted by the CNT-91 gives nu_abs and corrected.

In a twin run the counter's twin counts the world's laser through its bytes, like the lab's;
the counted beat is a channel of the store, the frames' absolute output comes from it (not
from the twin's perfect comb), and the run's clock is draw-for-draw the run without the
counter (the world's laser is a function of its seed and the time, decision 0307).
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.clock_run import ClockRun
from ionclock.apparatus.roles.reference import CountedReference
from ionclock.errors import ConfigError
from ionclock.sim_instruments.cnt91 import SimCNT91

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "configs" / "sim.toml"
LAB = ROOT / "configs" / "lab.example.toml"
RUN_S = 1800.0


def _run(out: Path, with_counter: bool, seed: int = 2, overrides: dict | None = None):
    cfg = load_clock_config(SIM, overrides={"budget": {"update_s": 300.0}, **(overrides or {})})
    if not with_counter:
        del cfg["instruments"]["reference"]
    run = ClockRun(cfg, out, seed=seed)
    summary = run.run(RUN_S, progress=False)
    return run, summary, sqlite3.connect(out / "ionclock.sqlite")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("ref")
    return _run(base / "with", True), _run(base / "without", False)


def test_the_counter_leaves_the_clock_draw_for_draw_the_same(pair):
    (_, s_with, db_with), (_, s_without, db_without) = pair
    rows = "SELECT frame, t, nu_hz, b_t, locked, holdover FROM lock_frames ORDER BY frame"
    with_rows, without_rows = db_with.execute(rows).fetchall(), db_without.execute(
        rows).fetchall()
    assert len(with_rows) > 1000
    assert with_rows == without_rows
    assert s_with["offset_hz"] == s_without["offset_hz"]


def test_the_counted_beat_is_the_twins_true_beat_within_the_counters_resolution(pair):
    (run, _, db), _ = pair
    world, gate = run.world, run.cfg["reference"]["gate_s"]
    role = next(r for r in run.roles if r.section == "reference")
    ref = role.reference
    samples = db.execute("SELECT t, value FROM samples WHERE channel='beat.comb' "
                         "ORDER BY t").fetchall()
    assert len(samples) >= RUN_S / run.cfg["reference"]["period_s"] - 5
    assert all(v is not None for _, v in samples)
    (source,) = db.execute("SELECT source FROM channels WHERE name='beat.comb'").fetchone()
    assert source.startswith("cnt91 sim://cnt91")
    # each gate's count against the twin's true mean beat over the same gate
    errors = []
    for t1, beat in samples:
        errors.append(ref.offset_from_beat(beat) - world.cavity_mean_hz(t1 - gate, t1))
    beat_hz = samples[0][1]
    sigma = 1e-12 * beat_hz / gate          # the twin's resolution noise (12 digits per s)
    quantum = 10.0 ** (math.floor(math.log10(beat_hz)) - 11)   # the 12th digit printed
    errors = np.array(errors)
    print(f"\ncounted - true beat over {len(errors)} gates: rms {np.std(errors):.2e} Hz, "
          f"max {np.max(np.abs(errors)):.2e} Hz; resolution sigma {sigma:.1e} Hz, "
          f"last digit {quantum:.0e} Hz")
    assert np.max(np.abs(errors)) < 5 * sigma + quantum / 2
    assert np.std(errors) < 1.5 * math.hypot(sigma, quantum / math.sqrt(12))


def test_nu_abs_and_corrected_come_from_the_counter_and_agree_with_the_comb(pair):
    (run, _, db), (_, _, db_comb) = pair
    q = ("SELECT frame, nu_abs_hz, corrected_hz, corrected_sigma_hz FROM lock_frames "
         "WHERE locked = 1 ORDER BY frame")
    counted = {f: rest for f, *rest in db.execute(q)}
    comb = {f: rest for f, *rest in db_comb.execute(q)}
    both = [f for f in counted if counted[f][0] is not None and comb[f][0] is not None]
    assert len(both) > 0.9 * len(counted)
    diff = np.array([counted[f][0] - comb[f][0] for f in both])
    # not the perfect comb's numbers: the counter's gates, carried along the drift
    assert np.count_nonzero(diff) == len(diff)
    # the laser moves between gates by its flicker (1e-15 of nu0 = 0.41 Hz, flat Allan
    # deviation): each frame within a few of that, and no bias over the run
    sem = np.std(diff) / math.sqrt(len(diff) / 50)    # frames are correlated over ~10 gates
    print(f"\nnu_abs counter - comb over {len(diff)} frames: mean {np.mean(diff):+.2e} Hz "
          f"(+- {sem:.1e}), rms {np.std(diff):.2f} Hz, max {np.max(np.abs(diff)):.2f} Hz")
    assert np.std(diff) < 1.0
    assert abs(np.mean(diff)) < 4 * sem + 0.02
    with_corrected = [f for f in both if counted[f][1] is not None]
    assert with_corrected
    for f in with_corrected:   # the same budget subtracted from either
        assert counted[f][1] - comb[f][1] == pytest.approx(counted[f][0] - comb[f][0],
                                                           abs=1e-6)


def test_a_lost_beat_is_missing_then_the_output_is_null_and_it_comes_back(tmp_path):
    cfg = load_clock_config(SIM, overrides={"reference": {"stale_s": 30.0}})
    run = ClockRun(cfg, tmp_path / "lost", seed=3)
    env = run.env

    def unplug():
        yield env.timeout(600.0)
        run.instruments["reference"].twin.faults.no_signal = True
        yield env.timeout(120.0)
        run.instruments["reference"].twin.faults.no_signal = False

    env.process(unplug())
    run.run(900.0, progress=False)
    db = sqlite3.connect(tmp_path / "lost" / "ionclock.sqlite")
    kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE source='reference' "
                                      "ORDER BY t")]
    assert kinds == ["reading_missing", "reference_lost", "reading_restored",
                     "reference_restored"]
    (lost_t,) = db.execute("SELECT t FROM events WHERE kind='reference_lost'").fetchone()
    (back_t,) = db.execute("SELECT t FROM events WHERE kind='reference_restored'").fetchone()
    # lost once no gate counted for stale_s (gates every 10 s), back with the next gate
    assert 620.0 <= lost_t <= 640.0 and 720.0 <= back_t <= 735.0
    nulls = db.execute("SELECT COUNT(*) FROM samples WHERE channel='beat.comb' AND value IS "
                       "NULL").fetchone()[0]
    assert 11 <= nulls <= 13
    inside = db.execute("SELECT COUNT(*), COUNT(nu_abs_hz) FROM lock_frames WHERE t > ? AND "
                        "t < ?", (lost_t + 2.0, back_t - 2.0)).fetchone()
    assert inside[0] > 50 and inside[1] == 0          # NULL, never a number
    after = db.execute("SELECT COUNT(*), COUNT(nu_abs_hz) FROM lock_frames WHERE t > ?",
                       (back_t + 2.0,)).fetchone()
    assert after[0] > 50 and after[1] == after[0]


def test_the_reference_arithmetic_recovers_the_laser():
    ref = CountedReference(250e6, 20e6, -160e6)
    twin = SimCNT91(None)   # the twin's comb and the role's defaults: the same line and side
    assert (ref.mode_number, ref.beat_sign) == (twin.mode_number, twin.beat_sign) == (
        1644168, -1)
    ref.add(0.0, 1.0, 50.2236e6 - 3.0)
    ref.add(10.0, 11.0, 50.2236e6 - 3.5)
    assert ref.laser_offset_hz(10.5) == pytest.approx(ref.offset_from_beat(50.2236e6 - 3.5))
    assert ref.laser_offset_hz(15.5) - ref.laser_offset_hz(10.5) == pytest.approx(0.25)
    ref.invalidate()
    assert math.isnan(ref.laser_offset_hz(20.0)) and not ref.valid


def test_configs_name_the_counter_and_bad_settings_are_refused(tmp_path):
    lab = load_clock_config(LAB)
    assert lab["instruments"]["reference"]["model"] == "cnt91"
    assert lab["instruments"]["reference"]["resource"].startswith("USB0::0x14EB::")
    with pytest.raises(ConfigError, match="reference.input"):
        load_clock_config(SIM, overrides={"reference": {"input": "C"}})
    with pytest.raises(ConfigError, match="cannot be the reference"):
        load_clock_config(SIM, overrides={"instruments": {"reference": {
            "model": "sr400", "resource": "sim://sr400"}}})
    cfg = load_clock_config(SIM, overrides={"reference": {"gate_s": 5.0, "period_s": 2.0}})
    with pytest.raises(ConfigError, match="reference.period_s"):
        ClockRun(cfg, tmp_path / "bad", seed=1)


def test_gated_counts_are_the_true_mean_beat_within_the_resolution_over_20_seeds():
    """The twin's :INIT/:FETC? gate against the world's true mean laser over the same gate."""
    import simpy

    from ionclock.apparatus.registry import open_instrument
    from ionclock.sim_instruments.world import ClockWorld, TwinParams

    z = []
    for seed in range(20):
        world = ClockWorld(simpy.Environment(), TwinParams(cryostat=False), seed=seed)
        counter = open_instrument("cnt91", "sim://cnt91", world=world)
        counter.configure_frequency("A", 1.0)
        ref = CountedReference(250e6, 20e6, -160e6)
        for k in range(40):
            t0 = 7.3 * k + 0.01 * seed + 1.0
            world.env.run(until=t0)
            counter.initiate()
            world.env.run(until=t0 + 1.0)
            beat = counter.fetch()
            sigma = 1e-12 * beat                       # resolution of a 1 s gate
            quantum = 10.0 ** (math.floor(math.log10(beat)) - 11)
            z.append((ref.offset_from_beat(beat) - world.cavity_mean_hz(t0, t0 + 1.0))
                     / math.hypot(sigma, quantum / math.sqrt(12)))
    z = np.array(z)
    print(f"\n{len(z)} gates over 20 seeds: z mean {np.mean(z):+.3f}, std {np.std(z):.3f}, "
          f"max |z| {np.max(np.abs(z)):.2f}")
    assert abs(np.mean(z)) < 4 / math.sqrt(len(z))
    assert np.std(z) == pytest.approx(1.0, abs=0.1)
    assert np.max(np.abs(z)) < 5.0
