"""Feedback on long work: bars in simulated h:mm:ss, stage lines, a lab run that says so."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ionclock import progress
from ionclock.commands.main import main
from ionclock.report import make_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def terminal(monkeypatch):
    """stderr taken for a terminal (the bars show only there)."""
    monkeypatch.setattr(progress, "on_terminal", lambda stream=None: True)


def test_sim_bar_counts_simulated_hms(terminal, tmp_path, capsys):
    assert main(["sim", "--duration", "10m", "--seed", "1", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "sim:" in err and "0:00:00/0:10:00 simulated" in err
    assert re.search(r"\| 0:0[1-9]:\d\d/0:10:00 simulated \[", err)   # on its way
    assert "k s" not in err and "it/s" not in err


def test_log_simulate_shows_a_bar(terminal, tmp_path, capsys):
    text = (ROOT / "configs" / "logger.sim.toml").read_text().replace(
        'path = "logger-sim.sqlite"', f'path = "{tmp_path / "s.sqlite"}"')
    cfg = tmp_path / "log.toml"
    cfg.write_text(text)
    assert main(["log", str(cfg), "--simulate", "--duration", "3d"]) == 0
    err = capsys.readouterr().err
    assert "log:" in err and "0:00:00/3d 00:00:00 simulated" in err
    assert re.search(r"\| [12]d \d\d:\d\d:\d\d/3d 00:00:00 simulated \[", err)


def test_report_prints_its_stages_and_writes_what_make_report_writes(terminal, tmp_path,
                                                                      capsys):
    run = tmp_path / "run"
    assert main(["sim", "--duration", "30m", "--seed", "2", "--no-progress",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--json", "--out", str(tmp_path / "cmd")]) == 0
    captured = capsys.readouterr()
    stages = [line for line in captured.err.splitlines() if line.startswith("ionclock report:")]
    assert [s.split(":")[1].split()[0] for s in stages] == [
        "reading", "ADEV,", "figure", "figure", "figure", "figure"]
    assert all(s.endswith(" s") for s in stages)
    mine = json.loads(captured.out)
    theirs = json.loads(make_report_json(run, tmp_path / "lib"))
    for summary in (mine, theirs):
        summary.pop("files")
    assert mine == theirs
    assert sorted(p.name for p in (tmp_path / "cmd").iterdir()) == sorted(
        p.name for p in (tmp_path / "lib").iterdir())


def make_report_json(run: Path, out: Path) -> str:
    from ionclock.report import to_json

    return to_json(make_report(run, out))


def test_report_header_reads_plainly(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["sim", "--duration", "5m", "--seed", "2", "--no-progress",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--settle", "0s"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "lock report, reference: ion (twin truth: lock error)"


def test_a_lab_run_says_it_started_and_that_sigterm_interrupted_it(tmp_path):
    """`ionclock run` (real time; the twin's resources here) names its store as it starts
    and, ended by SIGTERM, says in its summary that it was interrupted."""
    out = tmp_path / "lab"
    proc = subprocess.Popen([sys.executable, "-m", "ionclock", "run",
                             str(ROOT / "configs" / "sim.toml"), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stderr.readline()
        from ionclock.apparatus.clock_config import load_clock_config

        n = len(load_clock_config(ROOT / "configs" / "sim.toml")["instruments"])
        assert line.startswith(f"ionclock run: {n} instruments open; running in real time "
                               "until Ctrl-C, recording to "), line
        assert str(out / "ionclock.sqlite") in line
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:   # a failed assertion above: stop it and close its pipes
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == "lock summary (interrupted by SIGTERM)"
    assert lines[2].startswith("  stopped           by SIGTERM after 0.00 h of the "
                               "87600.00 h asked for")
