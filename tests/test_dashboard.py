"""`ionclock dashboard`: what a store shows, that it is only read, how it is refused.

The page in a real browser: tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ionclock.apparatus.live_budget import replay_store
from ionclock.commands.main import main
from ionclock.dashboard import budget_html, header_html, snapshot
from ionclock.storage.store import read_store
from ionclock.storage.views import StoreView, refills

ROOT = Path(__file__).resolve().parents[1]
IONCLOCK = [sys.executable, "-m", "ionclock"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = subprocess.run(
        [*IONCLOCK, "sim", "--duration", "30m", "--seed", "3", "--json", "--no-progress",
         "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def logger_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("log") / "log.sqlite"
    result = subprocess.run(
        [*IONCLOCK, "log", str(ROOT / "configs" / "logger.sim.toml"), "--simulate",
         "--duration", "2d", "--store", str(store), "--no-progress", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return store


def test_a_finished_clock_run_as_the_page_shows_it(finished_run):
    out, summary = finished_run
    store = out / "ionclock.sqlite"
    s = snapshot(out / "ionclock.sqlite")
    assert s.kind == "clock run (twin)" and s.time_base == "elapsed"
    assert s.frames == summary["frames"] and s.cycles == summary["cycles"]
    # ended by its own end: the run_stopped event says so, and no writer holds the store
    assert s.lock_state == "STOPPED" and "run ended (end)" in s.lock_note
    assert not s.writing
    assert s.uptime_s == pytest.approx(summary["simulated_s"], abs=1.0)
    last, n_hold = read_store(store, lambda db: (
        db.execute("SELECT frame, b_t, o0, o5 FROM lock_frames ORDER BY frame DESC "
                   "LIMIT 1").fetchone(),
        db.execute("SELECT COUNT(*) FROM lock_frames WHERE holdover = 1").fetchone()[0]))
    assert (s.last_frame["frame"], s.last_frame["b_t"], s.last_frame["o0"],
            s.last_frame["o5"]) == last
    # the newest frame is plotted, whatever the decimation
    assert s.frames_t[-1] == s.last_frame["t"] and len(s.frames_t) <= 1501
    assert (n_hold == 0) == (s.holdover_spans == [])
    # the budget is the one `ionclock budget STORE` prints: the run's last live budget
    assert s.budget == json.loads(replay_store(store).to_json())
    text = budget_html(s)
    for row in s.budget["rows"]:
        assert row["effect"] in text
    assert "Total" in text
    from ionclock.apparatus.clock_config import load_clock_config

    roles = load_clock_config(ROOT / "configs" / "sim.toml")["instruments"]
    assert set(s.instruments) == set(roles) and all(s.instruments.values())
    assert s.events[0][1] in ("shutdown", "run_stopped") and len(s.events) <= 15
    assert "STOPPED" in header_html(s) and f">{summary['frames']}<" in header_html(s)


def test_every_holdover_episode_is_shaded_and_the_newest_frame_plotted(finished_run,
                                                                         tmp_path, monkeypatch):
    out, _ = finished_run
    store = tmp_path / "ionclock.sqlite"
    shutil.copy(out / "ionclock.sqlite", store)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE lock_frames SET holdover = 0")
        db.execute("UPDATE lock_frames SET holdover = 1 WHERE frame BETWEEN 100 AND 110 "
                   "OR frame = 200 OR frame = 201 OR frame = 333")
        t = dict(db.execute("SELECT frame, t FROM lock_frames"))
        n = db.execute("SELECT COUNT(*) FROM lock_frames").fetchone()[0]
    db.close()
    monkeypatch.setattr("ionclock.dashboard.MAX_POINTS", 7)   # decimated far past them
    s = snapshot(store)
    assert s.holdover_spans == [(t[100], t[110]), (t[200], t[201]), (t[333], t[333])]
    assert s.frames == n and 7 <= len(s.frames_t) <= 9 and s.frames_t[-1] == t[max(t)]
    assert list(s.frames_t) == sorted(s.frames_t)


def test_an_instrument_offline_and_a_writer_that_died_are_shown(finished_run, tmp_path):
    out, _ = finished_run
    store = tmp_path / "ionclock.sqlite"
    shutil.copy(out / "ionclock.sqlite", store)
    with sqlite3.connect(store) as db:
        t_end = db.execute("SELECT MAX(t) FROM lock_frames").fetchone()[0]
        # the run's end never recorded, as after kill -9; the counter lost, the DDS back
        db.execute("DELETE FROM events WHERE kind IN ('run_stopped', 'shutdown')")
        db.executemany("INSERT INTO events VALUES (?, ?, ?, '{}')", [
            (t_end - 20, "instrument_offline", "counter"),
            (t_end - 15, "instrument_offline", "aom"), (t_end - 5, "instrument_online", "aom")])
    db.close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "ionclock.sqlite.lock").write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "command": "ionclock sim --out x"}))
    s = snapshot(store)
    assert s.instruments["counter"] is False and s.instruments["aom"] is True
    assert s.lock_state == "STOPPED" and "ended unannounced" in s.lock_note
    assert not s.writing and f"pid {dead.pid}" in s.writer and "killed?" in s.writer


def test_a_logger_store_shows_what_it_has(logger_store):
    s = snapshot(logger_store)
    assert s.kind == "logger (twin)" and s.time_base == "calendar"
    assert s.lock_state == "NO LOCK" and s.frames == 0 and s.last_frame is None
    assert len(s.frames_t) == 0
    with StoreView(logger_store) as view:
        want = refills(view.events(kinds=("ln2_refill",)))
        kelvin = sorted(n for n, c in view.channels().items() if c["unit"] == "K")
    assert [t for t, _ in s.refills] == want and want   # 2 days of the twin: a refill
    assert sorted(s.temperatures) == kelvin
    assert s.instruments == {"ls218": True, "ls224": True, "coils": True}
    # the logger's budget: BBR from the logged sensors, the rest nominal
    assert s.budget is not None and s.budget["rows"][0]["key"] == "bbr"
    assert s.budget["rows"][0]["valid"]


def _tree(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in `folder`: (sha256, mtime in ns)."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


class Dashboard:
    """`ionclock dashboard` in the background on a free loopback port."""

    def __init__(self, store: Path, *extra: str, refresh: float = 1.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen(
            [*IONCLOCK, "dashboard", str(store), "--port", str(self.port), "--refresh",
             str(refresh), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=ROOT)
        line = self.proc.stdout.readline()   # printed once the server listens
        assert self.url in line, line + self.proc.stderr.read()

    def get(self) -> str:
        with urllib.request.urlopen(self.url, timeout=20) as reply:
            return reply.read().decode()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Stop it as systemd (SIGTERM) or an operator (Ctrl-C: SIGINT) does; it must obey."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -1, f"did not end within 10 s of signal {sig}"
        return self.proc.returncode, self.proc.stderr.read()


def test_the_dashboard_never_writes_the_store(finished_run):
    out, _ = finished_run
    before = _tree(out)
    assert sorted(before) == ["ionclock.sqlite", "ionclock.sqlite.lock"]
    dash = Dashboard(out)   # a RUN_DIR: its one store
    try:
        for _ in range(4):   # each page load builds a page from a fresh read
            page = dash.get()
            assert "ionclock dashboard" in page
            assert _tree(out) == before   # no -wal, no -shm, not a byte, not an mtime
            time.sleep(0.6)
    finally:
        code, err = dash.stop(signal.SIGINT)
    assert code == 0, err
    assert _tree(out) == before


@pytest.mark.parametrize("kind", ["text", "other_sqlite", "missing", "budget_config"])
def test_a_file_that_is_not_an_ionclock_store_is_refused_in_one_line(tmp_path, kind, capsys):
    args: list[str] = []
    if kind == "text":
        store = tmp_path / "notes.sqlite"
        store.write_text("not a database\n" * 100)
    elif kind == "other_sqlite":
        store = tmp_path / "other.sqlite"
        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE measurements (t REAL, v REAL)")
    elif kind == "missing":
        store = tmp_path / "nothing.sqlite"
    else:   # a store, but a config of the wrong kind for its [dashboard]
        store = tmp_path / "other.sqlite"
        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE measurements (t REAL, v REAL)")
        args = ["--config", str(ROOT / "configs" / "seed_clock.toml")]
    before = _tree(tmp_path)
    argv = ["dashboard", str(store), "--port", str(free_port()), *args]
    if kind == "text":   # the command as a user runs it
        result = subprocess.run([*IONCLOCK, *argv], capture_output=True, text=True, cwd=ROOT,
                                timeout=60)
        code, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:                # the same entry point in this process (a second less each)
        code = main(argv)
        stdout, stderr = capsys.readouterr()
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ionclock: error: "), stderr
    assert "Traceback" not in stderr and stdout == ""
    want = {"text": "not a readable ionclock store", "other_sqlite": "is not an ionclock store",
            "missing": "no such run folder or store", "budget_config": "shift-budget config"}
    assert want[kind] in lines[0]
    assert _tree(tmp_path) == before


def test_bind_and_port_from_the_config_and_the_options(tmp_path, capsys):
    from ionclock.commands.dashboard import settings
    from ionclock.commands.main import build_parser

    parser = build_parser()
    cfg = tmp_path / "clock.toml"
    shutil.copy(ROOT / "configs" / "seed_clock.toml", tmp_path)   # its [budget] config
    cfg.write_text((ROOT / "configs" / "sim.toml").read_text()
                   + '\n[dashboard]\nbind = "0.0.0.0"\nport = 8123\n')
    assert settings(parser.parse_args(["dashboard", "x"])) == {
        "bind": "127.0.0.1", "port": 8050, "refresh_s": 3.0}
    assert settings(parser.parse_args(["dashboard", "x", "--config", str(cfg)])) == {
        "bind": "0.0.0.0", "port": 8123, "refresh_s": 3.0}
    assert settings(parser.parse_args(["dashboard", "x", "--config", str(cfg), "--bind",
                                       "127.0.0.1", "--refresh", "5"])) == {
        "bind": "127.0.0.1", "port": 8123, "refresh_s": 5.0}
    # the clock config with its [dashboard] is still a valid clock config
    from ionclock.apparatus.clock_config import load_clock_config

    assert load_clock_config(cfg)["dashboard"]["port"] == 8123
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "configs" / "sim.toml").read_text() + '\n[dashboard]\nport = 0\n')
    assert main(["dashboard", str(tmp_path), "--config", str(bad)]) == 2
    assert "dashboard.port" in capsys.readouterr().err


def test_a_cd_run_shows_its_own_budget_not_the_calcium_one(tmp_path, capsys):
    """A Cd+ store's budget on the page is the SOZS at the field its servo tracked, as
    `ionclock budget STORE` prints it, never the 40Ca+ live budget replayed on its frames."""
    from ionclock.commands.main import main

    out = tmp_path / "cd"
    assert main(["sim", "--config", str(ROOT / "configs" / "cd113.toml"), "--duration",
                 "20m", "--seed", "2", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    s = snapshot(out / "ionclock.sqlite")
    assert main(["budget", str(out), "--json"]) == 0
    assert s.budget == json.loads(capsys.readouterr().out)
    assert "Cd" in s.budget["species"] and [r["key"] for r in s.budget["rows"]] == ["sozs"]
