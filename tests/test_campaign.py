"""`ionclock campaign`: a grid of twin runs on dask.distributed, resumable, with one report.

The must-shows of issue 17: a real Dask scheduler and two workers on loopback run a small
campaign through ``--scheduler`` and give the same per-run summaries as the same campaign on
the local cluster; a campaign killed (SIGKILL) mid-way and started again runs only the
missing runs. Plus the spec's one-line errors and what counts as a finished run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ionclock import campaign
from ionclock.commands.main import main
from ionclock.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
IONCLOCK = [sys.executable, "-m", "ionclock"]
DASK = Path(sys.executable).with_name("dask")
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1"}

SPEC = f"""
[campaign]
name = "small"
config = "{ROOT / 'configs' / 'sim.toml'}"
duration = "{{duration}}"
seeds = {{seeds}}
settle = "5m"

[grid]
"twin.laser_offset_hz" = {{offsets}}
"""


def write_spec(tmp_path: Path, duration="20m", seeds=2, offsets="[2.0, -9.0]") -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SPEC.format(duration=duration, seeds=seeds, offsets=offsets))
    return path


def summaries(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text())
            for p in sorted(out.glob("runs/*/*/summary.json"))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(proc: subprocess.Popen, text: str, timeout_s: float) -> str:
    """Read `proc`'s stderr until a line holds `text` (its log); fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"no {text!r} from {proc.args}: {''.join(seen)[-2000:]}")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()


def test_a_dask_cluster_on_loopback_gives_the_local_summaries(tmp_path):
    spec = write_spec(tmp_path)   # 2 cells x 2 seeds x 20 min
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    try:
        scheduler = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard"], env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        procs.append(scheduler)
        wait_for_line(scheduler, "Scheduler at", 30)
        workers = []
        for name in ("w1", "w2"):
            # --no-nanny: the worker is this process, so its pid names it in the summaries
            w = subprocess.Popen(
                [str(DASK), "worker", address, "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--host", "127.0.0.1", "--name", name],
                env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True)
            procs.append(w)
            workers.append(w)
        for w in workers:
            wait_for_line(w, "Registered to", 30)
        remote = subprocess.run(
            [*IONCLOCK, "campaign", str(spec), "--scheduler", address, "--out",
             str(tmp_path / "dask"), "--no-progress"],
            env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert remote.returncode == 0, remote.stdout + remote.stderr
        assert "0 done, 4 to run" in remote.stdout
        assert f"Dask scheduler {address}, 2 worker(s)" in remote.stdout
    finally:
        stop(procs)
    local = subprocess.run(
        [*IONCLOCK, "campaign", str(spec), "--workers", "2", "--out", str(tmp_path / "local"),
         "--no-progress"], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "local Dask cluster, 2 worker process(es)" in local.stdout
    on_dask, on_local = summaries(tmp_path / "dask"), summaries(tmp_path / "local")
    assert sorted(on_dask) == sorted(on_local) == [
        "runs/base,laser_offset_hz=-9/s1", "runs/base,laser_offset_hz=-9/s2",
        "runs/base,laser_offset_hz=2/s1", "runs/base,laser_offset_hz=2/s2"]
    # the runs ran on the two workers started here (host:pid), and both took some
    pids = {int(s["worker"].rsplit(":", 1)[1]) for s in on_dask.values()}
    assert pids == {w.pid for w in workers}
    for run in on_dask:
        a, b = campaign.comparable(on_dask[run]), campaign.comparable(on_local[run])
        assert a == b, run
        assert a["clock"]["cycles"] > 10_000 and a["report"]["frames_used"] > 500
    # two seeds differ (the seed reaches the twin), and so do the two offsets' cells
    z = [on_local[r]["z"] for r in sorted(on_local)]
    assert len(set(z)) == 4
    report = json.loads((tmp_path / "dask" / "campaign.json").read_text())
    assert report["done"] == 4 and report["failed"] == 0
    assert [c["cell"] for c in report["cells"]] == ["base,laser_offset_hz=2",
                                                     "base,laser_offset_hz=-9"]
    for name in campaign.REPORT_FILES:
        assert (tmp_path / "dask" / name).stat().st_size > 0


def test_a_killed_campaign_runs_only_the_missing_runs_when_started_again(tmp_path):
    spec = write_spec(tmp_path, duration="40m", seeds=2, offsets="[2.0, 12.5]")   # 4 runs
    out = tmp_path / "out"
    cmd = [*IONCLOCK, "campaign", str(spec), "--out", str(out), "--no-progress"]
    first = subprocess.Popen([*cmd, "--workers", "1"], env=ENV, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(summaries(out)) < 2 and time.monotonic() < deadline:
            assert first.poll() is None, first.stdout.read()
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)   # the campaign and its worker, at once
        first.wait()
        first.stdout.close()
    spec_runs = campaign.load_spec(spec, out).runs
    done = sorted(r.folder for r in spec_runs if campaign.is_done(out, r))
    missing = sorted(r.folder for r in spec_runs if r.folder not in done)
    assert 2 <= len(done) < 4, done
    before = {run: ((out / run / "ionclock.sqlite").stat().st_mtime_ns,
                    (out / run / "summary.json").stat().st_mtime_ns) for run in done}
    # the run the worker was in when killed left a store without a summary: it is redone
    partial = [r for r in missing if (out / r / "ionclock.sqlite").exists()]

    again = subprocess.run([*cmd, "--workers", "2"], env=ENV, cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(done)} done, {len(missing)} to run" in again.stdout
    ran = sorted(line.split("] ", 1)[1].split(":", 1)[0] for line in again.stdout.splitlines()
                 if line.startswith("  ["))
    assert ran == sorted(r.label for r in spec_runs if r.folder in missing)
    for run, mtimes in before.items():   # finished runs untouched
        assert ((out / run / "ionclock.sqlite").stat().st_mtime_ns,
                (out / run / "summary.json").stat().st_mtime_ns) == mtimes
    assert all(campaign.is_done(out, r) for r in spec_runs)
    for run in partial:
        assert json.loads((out / run / "summary.json").read_text())["complete"] is True
    agg = json.loads((out / "campaign.json").read_text())
    assert (agg["done"], agg["done_before"], agg["ran_now"]) == (4, len(done), len(missing))
    # and a third start has nothing left to do
    third = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert third.returncode == 0 and "4 done, 0 to run" in third.stdout, third.stdout


def test_a_run_is_done_only_with_its_complete_summary_and_intact_store(tmp_path):
    spec = write_spec(tmp_path, duration="10m", seeds=1, offsets="[2.0]")
    c = campaign.load_spec(spec, tmp_path / "out")
    (run,) = c.runs
    assert campaign.is_done(c.out, run) is None
    s = campaign.execute_run(run, str(c.out))
    assert campaign.is_done(c.out, run) == s
    assert sorted(p.name for p in (c.out / run.folder).iterdir()) == [
        "ionclock.sqlite", "ionclock.sqlite.lock", "summary.json"]   # no temp file left
    store = c.out / s["store_file"]
    # the same run with another duration is another run (its key): not done
    other = campaign.load_spec(write_spec(tmp_path, duration="11m", seeds=1,
                                          offsets="[2.0]"), tmp_path / "out").runs[0]
    assert other.folder == run.folder and campaign.is_done(c.out, other) is None
    # a store cut short (a copy that stopped, a disk that filled) is not done
    data = store.read_bytes()
    store.write_bytes(data[:-4096])
    assert campaign.is_done(c.out, run) is None
    store.write_bytes(data)
    assert campaign.is_done(c.out, run) == s
    # a summary that was never finished (no "complete") is not done
    path = c.out / run.folder / "summary.json"
    path.write_text(json.dumps({k: v for k, v in s.items() if k != "complete"}))
    assert campaign.is_done(c.out, run) is None
    path.write_text(path.read_text()[:100])
    assert campaign.is_done(c.out, run) is None


def test_a_run_made_by_other_code_is_not_done(tmp_path, monkeypatch):
    """A servo or twin change between two starts of a campaign: the old runs are redone,
    not reported as the new code's figures (the key holds the source's fingerprint)."""
    spec = write_spec(tmp_path, duration="10m", seeds=1, offsets="[2.0]")
    (run,) = campaign.load_spec(spec, tmp_path / "out").runs
    campaign.execute_run(run, str(tmp_path / "out"))
    assert campaign.is_done(tmp_path / "out", run) is not None
    monkeypatch.setattr(campaign, "code_fingerprint", lambda: "another-servo")
    (again,) = campaign.load_spec(spec, tmp_path / "out").runs
    assert again.folder == run.folder and again.key != run.key
    assert campaign.is_done(tmp_path / "out", again) is None


@pytest.mark.parametrize("text, message", [
    ("[campaign]\nduraton = '1h'\n", "campaign.duraton: unknown key"),
    ("[campaign]\nseeds = 0\n", "campaign: cells[0].seeds: 0 must be at least 1"),
    ("[campaign]\nseeds = [1, 1]\n", "each once"),
    ("[campaign]\nduration = '-1h'\n", "campaign: cells[0].duration: duration '-1h' must"),
    ("[grid]\n'twin.q0_hz' = []\n", "grid.twin.q0_hz: give a non-empty list"),
    ("[grid]\n'twin.q0_hz' = [1000.0]\n", "cell 'base,q0_hz=1000': config: twin.q0_hz"),
    ("[[cells]]\nname = 'a'\n[[cells]]\nname = 'a'\n", "cell 'a' twice"),
    ("[[cells]]\nscenario = 'nosuch'\n", "unknown scenario 'nosuch'"),
    ("[campaign]\nconfig = 'lab.toml'\n", "no such config file"),
])
def test_a_bad_spec_is_one_line_and_exit_status_2_before_any_run(tmp_path, capsys, text,
                                                                  message):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    with pytest.raises(UserError, match=None) as err:
        campaign.load_spec(spec, tmp_path / "out")
    assert message in str(err.value)
    assert main(["campaign", str(spec), "--out", str(tmp_path / "out")]) == 2
    printed = capsys.readouterr().err
    assert printed.count("\n") == 1 and message in printed
    assert not (tmp_path / "out").exists()


def test_the_command_line_refuses_what_it_cannot_do(tmp_path, capsys):
    spec = write_spec(tmp_path)
    assert main(["campaign", str(tmp_path / "none.toml")]) == 2
    assert "no such spec file" in capsys.readouterr().err
    assert main(["campaign", str(spec), "--scheduler", "tcp://127.0.0.1:1",
                 "--workers", "2"]) == 2
    assert "--workers is for the local cluster" in capsys.readouterr().err
    assert main(["campaign", str(spec), "--workers", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert main(["campaign", str(spec), "--scheduler", "127.0.0.1:8786"]) == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err


def test_the_example_spec_loads():
    c = campaign.load_spec(ROOT / "configs" / "campaigns" / "offsets.toml", "/tmp/unused")
    assert len(c.cells) == 6 and len(c.runs) == 120
    assert {r.cfg["twin"]["q0_hz"] for r in c.runs if r.cell.startswith("quadrupole")} \
        == {10.0}
    assert len({r.key for r in c.runs}) == 120


def _fake_summary(cell: str, seed: int, z: float) -> dict:
    """A run's summary as execute_run writes it, with the fields the report reads."""
    sigma = 1e-17
    return {"cell": cell, "seed": seed, "z": z, "wall_s": 1.0,
            "clock": {"locked_fraction": 0.98},
            "report": {"bias": z * sigma, "bias_sigma": sigma, "nu0_hz": 4.1e14,
                       "b_error_t": -1e-12, "adev_over_qpn": {"100": 1.1}, "slips": 0,
                       "silent_wrong_lock_frames_after_settling": seed % 2}}


def test_the_report_pools_z_and_tests_it_against_n01():
    """KS on the z: no alarm for N(0,1) draws; one for a sigma stated half the truth, and one
    for a bias of half a sigma.

    The z are drawn here (seeded), 200 runs per cell: the report's arithmetic is checked, not
    the twin (the twin's z come from the campaigns themselves). KS is weak against a wrong
    scale alone: 200 runs do not tell a sigma 30 % small (D ~ 0.06 against 0.14 at p = 0.001);
    the z spread in the table does.
    """
    import numpy as np

    rng = np.random.default_rng(17)
    cells = {"honest": rng.standard_normal(200), "narrow": 2.0 * rng.standard_normal(200),
             "offset": 0.5 + rng.standard_normal(200), "bias": np.full(200, 7.0)}
    runs, summaries = [], {}
    for cell, zs in cells.items():
        for seed, z in enumerate(zs, start=1):
            run = campaign.RunSpec(cell, seed, 3600.0, 600.0, 30.0, cell == "bias", {}, "k")
            runs.append(run)
            summaries[run.folder] = _fake_summary(cell, seed, float(z))
    failed = campaign.RunSpec("honest", 999, 3600.0, 600.0, 30.0, False, {}, "k")
    c = campaign.Campaign("t", Path("/nowhere"), [*runs, failed], list(cells),
                          deterministic_cells=frozenset({"bias"}))
    outcome = campaign.Outcome(summaries, {failed.folder: "RuntimeError: boom"},
                               ran=[*summaries, failed.folder], already_done=[])
    agg = campaign.aggregate(c, outcome)
    by = {x["cell"]: x for x in agg["cells"]}
    assert by["honest"]["ks"]["pvalue"] > 0.05
    assert by["narrow"]["ks"]["pvalue"] < 1e-3 and by["offset"]["ks"]["pvalue"] < 1e-3
    assert abs(by["narrow"]["z_std"] - 2.0) < 0.2
    assert abs(by["offset"]["z_mean"] - 0.5) < 0.2
    assert (by["honest"]["runs"], by["honest"]["done"], by["honest"]["failed"]) == (201, 200, 1)
    assert by["honest"]["silent_frames"] == 100 and by["honest"]["silent_runs"] == 100
    assert by["honest"]["abs_b_error_mean_t"] == pytest.approx(1e-12)
    # the deterministic cell's z (no noise in its sigma) is left out of the pooled test
    assert agg["z"]["n"] == 600 and agg["z"]["excluded_cells"] == ["bias"]
    pooled = np.concatenate([cells["honest"], cells["narrow"], cells["offset"]])
    assert agg["z"]["std"] == pytest.approx(np.std(pooled, ddof=1))
    text = campaign.format_report(agg)
    assert "FAILED runs/honest/s999: RuntimeError: boom" in text
    assert "not pooled (deterministic" in text and "KS against N(0,1)" in text


def test_progress_over_runs_counts_runs_done_before(capsys):
    from ionclock.progress import CountBar

    bar = CountBar(8, "campaign small", initial=3, enabled=True, mininterval=0)
    bar.update(1)
    bar.close()
    shown = capsys.readouterr().err
    assert "campaign small: 3/8 runs" in shown and "campaign small: 4/8 runs" in shown
    quiet = CountBar(8, "campaign small", enabled=False)
    quiet.update(8)
    quiet.close()
    assert capsys.readouterr().err == ""
