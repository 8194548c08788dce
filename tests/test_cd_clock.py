"""The Cd+ microwave clock: twin, lock with live SOZS, budget, field calibration, config, CLI."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import simpy

from ionclock.apparatus import cd_run
from ionclock.apparatus.cd_run import CdRun, load_cd_config, snr_limit
from ionclock.commands.main import main
from ionclock.errors import ConfigError
from ionclock.physics import cadmium as cd
from ionclock.physics.cadmium import ramsey_probability
from ionclock.sim_instruments.cd_clock import CdClockWorld, CdTwinParams

ROOT = Path(__file__).resolve().parents[1]
CD113 = ROOT / "configs" / "cd113.toml"
CD111 = ROOT / "configs" / "cd111.toml"


# --- physics ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mass, seed_k0, phys_gi", [(111, 270.1, 6.48e-4), (113, 258.2, 6.78e-4)])
def test_both_g_i_conventions(mass, seed_k0, phys_gi):
    assert cd.g_i(mass, "seed") == cd.G_I == 0.6223009e-3
    assert cd.g_i(mass, "physical") == pytest.approx(phys_gi, abs=0.005e-4)
    assert round(cd.sozs_coefficient_hz_per_g2(mass, "seed")[0], 1) == seed_k0
    # the physical g_I moves the shift at 0.08 G by a few 1e-15 (DOMAIN §4)
    d = (cd.sozs_shift(mass, 8e-6, convention="seed").fractional
         - cd.sozs_shift(mass, 8e-6, convention="physical").fractional)
    assert 2e-15 < d < 8e-15
    with pytest.raises(ValueError, match="convention"):
        cd.g_i(mass, "nuclear")


def test_breit_rabi_lines_against_the_closed_forms():
    b = 8e-6
    lo, clock, hi = cd.zeeman_pm1_lines_hz(113, b)
    nu = cd.isotope(113).hfs_s_hz
    sozs = cd.sozs_shift(113, b).shift_hz
    assert clock - nu == pytest.approx(sozs, rel=1e-6)          # Eq. 18 to O(x^4)
    assert 0.5 * (lo + hi) - nu == pytest.approx(0.5 * sozs, abs=1e-5)   # float at 15 GHz
    assert hi - lo == pytest.approx(2 * cd.zeeman_pm1_hz_per_t(113) * b, rel=1e-9)
    # g_F = g_J / 2 to the nuclear term: ~1.4 MHz/G per line
    assert cd.zeeman_pm1_hz_per_t(113) * 1e-4 == pytest.approx(0.5 * cd.G_J_S12 * 13.996245e9
                                                                * 1e-4, rel=4e-4)
    b_back, unc = cd.field_from_splitting(113, hi - lo, 0.02)
    assert b_back == pytest.approx(b, rel=1e-12) and unc == pytest.approx(0.02 / (hi - lo) * b)


def test_budget_at_0p08_gauss_reproduces_the_seed():
    budget = cd.cadmium_budget(113, 0.08 * cd.GAUSS)
    row = budget.row("sozs")
    assert row.uncertainty == pytest.approx(4.3e-15, rel=0.02)     # from g_J alone
    assert budget.total_uncertainty == pytest.approx(4.3e-15, rel=0.02)


def test_ramsey_probability_closed_form_limits():
    rabi = math.pi / (2 * 0.01)
    assert ramsey_probability(0.0, 0.5, rabi, 0.01) == pytest.approx(1.0)
    # the next fringe: 1/(T + 4 tau / pi), not 1/T
    assert ramsey_probability(1 / (0.5 + 0.04 / math.pi), 0.5, rabi, 0.01) == pytest.approx(
        1.0, abs=2e-3)
    assert ramsey_probability(2.0, 0.5, rabi, 0.01) < 0.999
    assert ramsey_probability(0.5 / (0.5 + 4 * 0.01 / math.pi), 0.5, rabi, 0.01) < 1e-3
    # half fringe: 1/2 to the pulses' small phase
    assert ramsey_probability(0.25 / 0.5, 0.5, rabi, 0.01) == pytest.approx(0.5, abs=0.02)


def test_snr_and_instability_formulas():
    # projection noise alone: SNR = C sqrt(N) (Itano et al. 1993)
    assert cd.ramsey_snr(1e12, 0.0, 0.9, 10_000) == pytest.approx(0.9 * 100, rel=1e-3)
    sigma = cd.ramsey_instability(4.0, 0.5, 1.0, 50.0, 15.2e9)
    assert sigma == pytest.approx(0.5 / (2 * math.pi * 15.2e9 * 0.5 * 50))
    limit = snr_limit(load_cd_config(CD113))
    assert 50 < limit["snr"] < 60
    assert 3.5e-13 < limit["sigma_1s"] < 4.2e-13      # the seed's 4.2e-13 is above it


# --- twin ----------------------------------------------------------------------------------------
def test_twin_draws_from_its_own_stream_and_gives_half_fringe_counts():
    env = simpy.Environment()
    world = CdClockWorld(env, CdTwinParams(lo_offset=0.0, lo_white=0.0, lo_random_walk=0.0,
                                           b_noise_t=0.0), seed=4)
    assert world.rng.bit_generator.state == np.random.default_rng([4, 1613]).bit_generator.state
    line = world.lines_hz(world.b_true(0.0))[1]
    counts = {}
    for side in (-1, 1):
        world.microwave_changed(line + side * 0.5, 23.0, True)
        world._counts.clear()
        env.run(until=env.now + 1.0)
        counts[side] = list(world._counts.values())[-1]
    p = world.p
    half = p.background_counts + 0.5 * p.bright_counts
    for n in counts.values():   # half fringe either side (photon + projection noise)
        assert abs(n - half) < 5 * math.sqrt(half)
    world.microwave_changed(line, 23.0, False)    # output off: background only
    world._counts.clear()
    env.run(until=env.now + 1.0)
    assert abs(list(world._counts.values())[-1] - p.background_counts) < 5 * math.sqrt(
        p.background_counts)


# --- the lock -----------------------------------------------------------------------------------
def _run(tmp_path, hours: float, seed: int, **twin) -> tuple[dict, Path]:
    cfg = load_cd_config(CD113, overrides={"twin": twin} if twin else None,
                         run_s=hours * 3600.0)
    out = tmp_path / f"run{seed}"
    summary = CdRun(cfg, out, seed=seed).run(hours * 3600.0, progress=False)
    return summary, out


def test_lock_offset_field_and_live_sozs_against_the_truth(tmp_path):
    s, out = _run(tmp_path, 3.0, seed=5)
    # 3 h less the ~16 min the field loop's drift estimate takes to settle (15 visits of the
    # m=+-1 lines, decision 1300), before which no frame is declared locked
    assert s["locked_fraction"] > 0.90
    assert s["events"].get("locked") == 1 and "holdover" not in s["events"]
    assert abs(s["offset_hz"]) < 3 * s["offset_sigma_hz"]
    assert abs(s["corrected_offset_hz"]) < 3 * s["corrected_offset_sigma_hz"]
    assert abs(s["b_tesla"] - s["b_true_tesla"]) < 1e-12
    assert s["sozs_hz"] == pytest.approx(s["sozs_true_hz"], abs=3e-5)
    assert s["sozs_sigma_hz"] / cd.isotope(113).hfs_s_hz == pytest.approx(4.3e-15, rel=0.05)
    db = sqlite3.connect(out / "ionclock.sqlite")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"lock_frames", "twin_truth", "servo_cycles", "budgets", "events"} <= tables
    n_budget = db.execute("SELECT COUNT(*) FROM budgets").fetchone()[0]
    duty = db.execute("SELECT AVG(line = 0) FROM servo_cycles").fetchone()[0]
    db.close()
    assert n_budget >= 5
    assert duty == pytest.approx(60 / 64, abs=0.01)    # the m=+-1 lines' share of the probes


def test_report_on_a_cd_run_uses_the_snr_limit(tmp_path):
    from ionclock.report import make_report

    _, out = _run(tmp_path, 3.0, seed=6)
    summary = make_report(out)       # the figures too, without a warning (pytest: errors)
    assert all(Path(f).is_file() for f in summary["files"])
    limit = snr_limit(load_cd_config(CD113))
    assert summary["qpn_sigma_1s"] == pytest.approx(limit["sigma_1s"], rel=0.01)
    adev = dict((round(t), s) for t, s in summary["adev"])
    # white frequency noise near the SNR limit at 128 s (the servo's bump is below ~30 s)
    ratio = adev[128] * math.sqrt(128) / limit["sigma_1s"]
    assert 0.7 < ratio < 1.6


def test_offset_coverage_over_20_seeds(tmp_path):
    z = []
    for seed in range(20):
        s, _ = _run(tmp_path, 1.0, seed=100 + seed)
        z.append(s["corrected_offset_hz"] / s["corrected_offset_sigma_hz"])
    z = np.array(z)
    print(f"corrected-output z over 20 seeds: mean {z.mean():+.2f}, sd {z.std(ddof=1):.2f}, "
          f"|z|<2 in {np.mean(abs(z) < 2):.2f}")
    assert np.mean(np.abs(z) < 2.5) >= 0.85
    assert 0.5 < z.std(ddof=1) < 1.6
    # the mean of 20 z's within 2.5 standard errors of 0: a lock declared during the loop's
    # pull-in (acquire_frames = 10) gave -0.59 here (decision 1300)
    assert abs(z.mean()) < 2.5 / math.sqrt(20)


def test_cloud_loss_is_a_holdover_then_relock(tmp_path):
    s, out = _run(tmp_path, 1.0, seed=7,
                  events=[{"at": "20min", "kind": "cloud_loss", "duration": "5min"}])
    db = sqlite3.connect(out / "ionclock.sqlite")
    ev = db.execute("SELECT t, kind, detail FROM events WHERE source = 'servo' ORDER BY t"
                    ).fetchall()
    frames = db.execute("SELECT t, locked, holdover FROM lock_frames").fetchall()
    db.close()
    kinds = [k for _, k, _ in ev]
    assert kinds == ["servo_started", "acquire", "locked", "holdover", "acquire", "locked"]
    hold = next(t for t, k, _ in ev if k == "holdover")
    assert 1200 <= hold <= 1206 and json.loads(ev[3][2])["reason"] == "cloud_lost"
    during = [f for f in frames if 1206 < f[0] < 1500]
    assert during and all(f[2] == 1 and f[1] == 0 for f in during)
    assert abs(s["offset_hz"]) < 3 * s["offset_sigma_hz"]   # the holdover frames not counted


def test_a_twin_in_the_physical_g_i_under_a_seed_convention_servo(tmp_path):
    """The convention is not cosmetic: the seed's g_I on a physical world biases the output.

    The field is calibrated in the servo's (seed) convention, B_s = B z_phys / z_seed (as
    `cd_field` in that convention would give it; the true B would put each m=+-1 line 3 Hz,
    1.5 fringes, off), and the live SOZS K0_seed B_s^2 then misses the true K0_phys B^2 by
    -1.2e-14: the lock itself stays on the line.
    """
    r = cd.zeeman_pm1_hz_per_t(113, "physical") / cd.zeeman_pm1_hz_per_t(113, "seed")
    b0 = 8e-6
    cfg = load_cd_config(CD113, overrides={
        "clock": {"b_nominal_t": b0 * r},
        "twin": {"g_i_convention": "physical", "b_offset_t": b0 - b0 * r + 2e-12}})
    s = CdRun(cfg, tmp_path / "mixed", seed=2).run(6 * 3600.0, progress=False)
    b = s["b_true_tesla"]
    assert s["b_tesla"] == pytest.approx(b * r, abs=1e-12)
    bias = (cd.sozs_shift(113, b, convention="physical").shift_hz
            - cd.sozs_shift(113, b * r).shift_hz)
    assert bias / cd.isotope(113).hfs_s_hz == pytest.approx(-1.2e-14, rel=0.05)
    assert abs(s["offset_hz"]) < 3 * s["offset_sigma_hz"]
    assert abs(s["corrected_offset_hz"] - bias) < 3 * s["corrected_offset_sigma_hz"]
    assert abs(s["corrected_offset_hz"]) > 2 * s["corrected_offset_sigma_hz"]


def test_a_lost_counter_link_is_a_holdover_then_relock(tmp_path):
    cfg = load_cd_config(CD113)
    run = CdRun(cfg, tmp_path / "link", seed=3)
    twin = run.instruments["counter"].direct().twin

    def pull_the_cable():
        yield run.env.timeout(1500.3)   # the field loop settled (15 visits) and locked
        twin.faults.disconnected = True
        yield run.env.timeout(120.0)
        twin.faults.disconnected = False

    run.env.process(pull_the_cable())
    s = run.run(3600.0, progress=False)
    db = sqlite3.connect(tmp_path / "link" / "ionclock.sqlite")
    ev = db.execute("SELECT t, kind, source FROM events WHERE t > 1400 ORDER BY t").fetchall()
    db.close()
    kinds = [(k, src) for _, k, src in ev]
    assert kinds[:5] == [("instrument_offline", "counter"), ("holdover", "servo"),
                         ("instrument_online", "counter"), ("acquire", "servo"),
                         ("locked", "servo")]
    assert 1500 < ev[0][0] < 1502 and 1620 < ev[2][0] < 1630
    assert abs(s["offset_hz"]) < 3 * s["offset_sigma_hz"]


@pytest.mark.parametrize("step_t", [25e-12, 100e-12])
def test_a_field_jump_leaves_the_field_unverified_never_silently_a_fringe_off(tmp_path,
                                                                               step_t):
    """One m=+-1 visit cannot tell a 25 pT step (followed back) from a 100 pT one (the loop
    pulls to the next fringe, 139 pT off: the SOZS a fringe's 3.8e-15 wrong): either is
    reported, and no frame after it counts as locked clock data."""
    s, out = _run(tmp_path, 1.0, seed=8,
                  events=[{"at": "30min", "kind": "b_step", "value": step_t}])
    assert s["events"].get("field_jump", 0) >= 1 and s["events"]["field_unverified"] == 1
    db = sqlite3.connect(out / "ionclock.sqlite")
    (t_unv,) = db.execute("SELECT t FROM events WHERE kind = 'field_unverified'").fetchone()
    after = db.execute("SELECT COUNT(*), SUM(locked) FROM lock_frames WHERE t > ?",
                       (t_unv,)).fetchone()
    db.close()
    assert 1800 < t_unv < 1800 + 2 * 60.0 + 5 and after[0] > 100 and after[1] == 0


def test_a_holdover_before_the_field_loop_settled_leaves_it_unverified(tmp_path):
    """A cloud lost 10 min in (the field's drift estimate not yet settled) for 40 min: the
    frozen field may come back a fringe off; the run says so and counts nothing after."""
    s, out = _run(tmp_path, 2.0, seed=5,
                  events=[{"at": "10min", "kind": "cloud_loss", "duration": "40min"}])
    db = sqlite3.connect(out / "ionclock.sqlite")
    (detail,) = db.execute("SELECT detail FROM events WHERE kind = 'field_unverified'"
                           ).fetchone()
    locked_after = db.execute("SELECT COUNT(*) FROM lock_frames WHERE t > 3000 AND locked = 1"
                              ).fetchone()[0]
    db.close()
    assert json.loads(detail)["reason"] == "holdover_before_the_field_settled"
    assert locked_after == 0


# --- field calibration (pymeasure Procedure) ----------------------------------------------------
def test_field_calibration_under_pymeasure_worker_and_coverage(tmp_path):
    from pymeasure.experiment import Results

    from ionclock.procedures.base import run_headless
    from ionclock.procedures.cd_field import CdFieldCalibration

    z = []
    for seed in range(20):
        proc = CdFieldCalibration(config=str(CD113), seed=seed, steps=21)
        path = tmp_path / f"field{seed}.csv"
        run_headless(proc, path)
        result = proc.result()
        assert not result.field_off_fringe
        z.append((result.b_t - proc.truth()) / result.b_unc_t)
        if seed == 0:
            data = Results.load(str(path), CdFieldCalibration).data
            assert list(data.columns) == ["line", "setpoint_hz", "counts", "time_s"]
            assert len(data) == 42 and set(data["line"]) == {1, -1}
    z = np.array(z)
    print(f"field calibration z over 20 seeds: sd {z.std(ddof=1):.2f}, "
          f"|z|<2 in {np.mean(abs(z) < 2):.2f}")
    assert np.mean(np.abs(z) < 2) >= 0.85


# --- config and CLI ------------------------------------------------------------------------------
def test_cli_sim_json_and_nominal_budget(tmp_path, capsys):
    assert main(["sim", "--config", str(CD111), "--duration", "30min", "--out",
                 str(tmp_path / "r"), "--json", "--no-progress"]) == 0
    out = capsys.readouterr().out
    s = json.loads(out.strip().splitlines()[-1])
    assert s["species"] == "111Cd+" and s["locked_frames"] > 0
    assert "SOZS live" in out
    assert main(["budget", "--nominal", str(CD113)]) == 0
    table = capsys.readouterr().out
    assert "113Cd+" in table and "Second-order Zeeman" in table and " 4.3" in table
    assert main(["budget", str(tmp_path / "r")]) == 0
    assert "111Cd+" in capsys.readouterr().out


def test_sigterm_ends_a_cd_run_with_its_summary(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "long"
    proc = subprocess.Popen([sys.executable, "-m", "ionclock", "sim", "--config", str(CD113),
                             "--duration", "30d", "--out", str(out), "--json", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    store = out / "ionclock.sqlite"
    while not store.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "interrupted by SIGTERM" in stdout
    s = json.loads(stdout.strip().splitlines()[-1])
    assert s["interrupted"] == "SIGTERM" and s["simulated_s"] < 30 * 86400
    db = sqlite3.connect(store)
    reason = db.execute("SELECT detail FROM events WHERE kind = 'run_stopped'").fetchone()[0]
    db.close()
    assert json.loads(reason)["reason"] == "SIGTERM"


def test_bad_cd_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(CD113.read_text().replace("cycle_time_s = 1.0", "cycle_time_s = 0.5"))
    with pytest.raises(ConfigError, match="cycle_time_s"):
        load_cd_config(bad)
    assert main(["sim", "--config", str(bad), "--duration", "1h", "--out",
                 str(tmp_path / "x"), "--no-progress"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert cd_run.is_cd_config(CD113) and not cd_run.is_cd_config(ROOT / "configs" / "sim.toml")
