"""One writer per store (issue 11): the writer lock, the logger's refusals, readers alongside.

Every refusal is shown with real processes: a second `ionclock log` or `ionclock sim` on a
store another one is writing is refused with one line naming the holder (pid, command line)
and exit status 2, and leaves the store as it was (`meta.t0_unix` included); a holder killed
with SIGKILL leaves the store to the next writer at once; the logger refuses a clock run's
store; `status`, `export`, `plot` and `report` read a store while its writer runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ionclock.commands.main import main
from ionclock.errors import UserError
from ionclock.storage.store import Store, StoreLocked, WriterLock, lock_holder, lock_path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "ionclock"]


def logger_config(tmp: Path, store: Path, start_unix: float | None = None,
                  name: str = "log.toml") -> Path:
    """A one-channel logger config on the Lake Shore 218 twin (5 polls/s in real time)."""
    text = f"""
[store]
path = "{store}"
commit_interval_s = 0.2
[instruments.ls218]
model = "lakeshore218"
resource = "sim://lakeshore218"
[channels.lnc]
instrument = "ls218"
read = "input_1.temperature"
period_s = 0.2
unit = "K"
"""
    if start_unix is not None:
        text += f"[simulate]\nstart_unix = {start_unix}\n"
    path = tmp / name
    path.write_text(text)
    return path


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(CLI + args, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for_holder(store: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Until `proc` has taken the store's writer lock (its record names it)."""
    deadline = time.monotonic() + timeout_s
    while (lock_holder(store) or {}).get("pid") != proc.pid:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.05)


def wait_for_meta(store: Path, key: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while (value := read_meta(store).get(key) if ready(store) else None) is None:
        assert time.monotonic() < deadline, f"meta.{key} never written"
        time.sleep(0.05)
    return value


def wait_for_samples(store: Path, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready(store) or count(store, "SELECT count(*) FROM samples") < n:
        assert time.monotonic() < deadline, f"fewer than {n} samples committed"
        time.sleep(0.05)


def ready(store: Path) -> bool:
    """The store exists and has its schema (a writer creates both as it opens)."""
    if not store.exists():
        return False
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'cursors'"
                          ).fetchone()[0] == 1
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def read_meta(store: Path) -> dict:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT key, value FROM meta"))
    finally:
        db.close()


def count(store: Path, sql: str) -> int:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


def refused(args: list[str]) -> str:
    """Run a second writer; it must exit 2 with one line, no traceback. Returns the line."""
    result = subprocess.run(CLI + args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Signal `proc` and wait for it (killed after 60 s); its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode


HELPER = """
import sys, time
from ionclock.storage.store import Store
store = Store(sys.argv[1])
store.add("samples", (1.0, "a", 2.0))
store.flush()
print("ready", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def holder_process(store: Path, script: str = HELPER):
    """A separate process that holds `store` for writing (after it has printed "ready")."""
    helper = subprocess.Popen([sys.executable, "-c", script, str(store)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert helper.stdout.readline().strip() == "ready"
        yield helper
    finally:
        helper.kill()
        helper.wait(timeout=30)
        helper.stdout.close()


@pytest.fixture(scope="module")
def clock_store(tmp_path_factory) -> Path:
    """A finished twin clock run's store (10 simulated minutes)."""
    out = tmp_path_factory.mktemp("clock")
    assert main(["sim", "--duration", "10m", "--seed", "1", "--no-progress",
                 "--out", str(out)]) == 0
    return out / "ionclock.sqlite"


# --- a second writer, in another process, is refused ---------------------------------------

def test_second_logger_is_refused_naming_the_holder(tmp_path):
    store = tmp_path / "env.sqlite"
    cfg = logger_config(tmp_path, store)
    holder = start(["log", str(cfg), "--quiet"])
    try:
        wait_for_holder(store, holder)
        wait_for_meta(store, "logger_config")
        meta = read_meta(store)
        line = refused(["log", str(cfg), "--quiet"])
        assert line.startswith(f"ionclock: error: store: {str(store)!r} is open for writing "
                               f"by pid {holder.pid} (`")
        assert f"-m ionclock log {cfg} --quiet`" in line
        # a twin logger on the same store is refused by the same lock, before anything else
        twin_cfg = logger_config(tmp_path, store, start_unix=1.0e9, name="twin.toml")
        assert f"by pid {holder.pid} " in refused(["log", str(twin_cfg), "--simulate",
                                                    "--duration", "1h", "--quiet"])
        assert holder.poll() is None                    # the holder never noticed
        assert read_meta(store) == meta
        assert count(store, "SELECT count(*) FROM events WHERE kind = 'logger_started'") == 1
    finally:
        rc = stop(holder)
    assert rc == 0
    assert count(store, "SELECT count(*) FROM events WHERE kind = 'logger_stopped'") == 1
    assert lock_holder(store) is None                   # a clean stop clears the record


def test_second_writer_on_a_running_clock_store_is_refused_and_t0_unix_kept(tmp_path):
    out = tmp_path / "run"
    store = out / "ionclock.sqlite"
    holder = start(["sim", "--duration", "30d", "--seed", "2", "--no-progress",
                    "--out", str(out)])
    try:
        wait_for_holder(store, holder)
        t0_unix = wait_for_meta(store, "t0_unix")
        inode = store.stat().st_ino
        # another twin run into the same folder: refused before it clears the running store
        line = refused(["sim", "--duration", "10m", "--no-progress", "--out", str(out)])
        assert f"is open for writing by pid {holder.pid} (`" in line
        assert f"-m ionclock sim --duration 30d --seed 2 --no-progress --out {out}`" in line
        # a twin logger with its own start_unix: refused, the run's t0_unix untouched
        cfg = logger_config(tmp_path, store, start_unix=1.0e9)
        line = refused(["log", str(cfg), "--simulate", "--store", str(store),
                        "--duration", "1h", "--quiet"])
        assert f"by pid {holder.pid} " in line
        assert holder.poll() is None
        assert store.stat().st_ino == inode
        assert read_meta(store)["t0_unix"] == t0_unix
        assert count(store, "SELECT count(*) FROM events WHERE source = 'logger'") == 0
    finally:
        rc = stop(holder)
    assert rc == 0
    assert read_meta(store)["t0_unix"] == t0_unix
    assert count(store, "SELECT count(*) FROM events WHERE kind = 'run_stopped'") == 1


def test_a_lab_run_into_a_held_folder_is_refused(tmp_path):
    out = tmp_path / "lab"
    out.mkdir()
    store = out / "ionclock.sqlite"
    with holder_process(store) as helper:
        line = refused(["run", str(ROOT / "configs" / "sim.toml"), "--duration", "10s",
                        "--out", str(out)])
        assert f"is open for writing by pid {helper.pid} (`" in line
        assert count(store, "SELECT count(*) FROM events") == 0


# --- kill -9 ------------------------------------------------------------------------------

def test_a_logger_killed_with_sigkill_leaves_the_store_to_the_next_writer(tmp_path):
    store = tmp_path / "env.sqlite"
    cfg = logger_config(tmp_path, store)
    holder = start(["log", str(cfg), "--quiet"])
    try:
        wait_for_holder(store, holder)
        wait_for_samples(store, 3)
    finally:
        rc = stop(holder, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    before = count(store, "SELECT count(*) FROM samples")
    # The dead holder's record is still in the lock file; the kernel's lock is gone with it.
    assert lock_holder(store)["pid"] == holder.pid
    result = subprocess.run(CLI + ["log", str(cfg), "--quiet", "--duration", "1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert count(store, "SELECT count(*) FROM samples") > before
    kinds = [k for (k,) in sqlite3.connect(store).execute(
        "SELECT kind FROM events ORDER BY rowid")]
    assert kinds == ["logger_started", "logger_started", "logger_stopped"]
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone() == ("ok",)




def test_a_holder_killed_with_sigkill_frees_the_lock_at_once(tmp_path):
    store = tmp_path / "s.sqlite"
    with holder_process(store) as helper:
        with pytest.raises(StoreLocked, match=f"by pid {helper.pid} "):
            Store(store)
        with pytest.raises(StoreLocked):
            WriterLock(store).acquire()
        os.kill(helper.pid, signal.SIGKILL)
        helper.wait(timeout=30)
    with Store(store) as s:                             # no wait, no stale-pid clean-up
        assert s.query("SELECT t, channel, value FROM samples") == [(1.0, "a", 2.0)]
        assert lock_holder(store)["pid"] == os.getpid()
    assert lock_path(store).exists() and lock_holder(store) is None


# --- the logger refuses a clock run's store -------------------------------------------------

@pytest.mark.parametrize("simulate", [True, False])
def test_logger_refuses_a_clock_run_store(tmp_path, clock_store, capsys, simulate):
    meta = read_meta(clock_store)
    rows = {t: count(clock_store, f"SELECT count(*) FROM {t}")
            for t in ("samples", "events", "channels", "lock_frames")}
    cfg = logger_config(tmp_path, clock_store, start_unix=1.0e9)
    args = ["log", str(cfg), "--quiet", "--duration", "1h" if simulate else "1"]
    assert main(args + (["--simulate"] if simulate else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ionclock: error: store: {str(clock_store)!r} holds a clock run (written "
                   "by `ionclock sim` or `ionclock run`); the logger keeps its own store: "
                   "choose another [store] path or --store"]
    assert read_meta(clock_store) == meta
    assert {t: count(clock_store, f"SELECT count(*) FROM {t}") for t in rows} == rows
    assert lock_holder(clock_store) is None


def test_logger_refuses_a_store_on_another_time_base(tmp_path, capsys):
    store = tmp_path / "twin.sqlite"
    cfg = logger_config(tmp_path, store, start_unix=1.7e9)
    assert main(["log", str(cfg), "--simulate", "--duration", "1h", "--quiet"]) == 0
    t0 = read_meta(store)["t0_unix"]
    capsys.readouterr()
    other = logger_config(tmp_path, store, start_unix=1.8e9, name="other.toml")
    assert main(["log", str(other), "--simulate", "--duration", "1h", "--quiet"]) == 2
    assert "counts its times from meta.t0_unix = 1700000000.0; this config's [simulate] " \
           "start_unix is 1800000000.0" in capsys.readouterr().err
    assert main(["log", str(cfg), "--duration", "1", "--quiet"]) == 2   # a lab run
    assert "holds a twin log" in capsys.readouterr().err
    assert read_meta(store)["t0_unix"] == t0
    # the same config appends, as before
    assert main(["log", str(cfg), "--simulate", "--duration", "1h", "--quiet"]) == 0
    assert read_meta(store)["t0_unix"] == t0


# --- readers ------------------------------------------------------------------------------

def test_readers_work_while_a_logger_holds_the_store(tmp_path, capsys):
    store = tmp_path / "env.sqlite"
    holder = start(["log", str(logger_config(tmp_path, store)), "--quiet"])
    try:
        wait_for_holder(store, holder)
        wait_for_samples(store, 3)
        assert main(["status", str(store)]) == 0
        assert "lnc" in capsys.readouterr().out
        assert main(["export", str(store), "--out", str(tmp_path / "e.csv")]) == 0
        assert main(["plot", str(store), "--out", str(tmp_path / "p.png")]) == 0
        assert (tmp_path / "p.png").stat().st_size > 0
        assert holder.poll() is None and lock_holder(store)["pid"] == holder.pid
    finally:
        rc = stop(holder)
    assert rc == 0


def test_report_reads_a_clock_store_held_by_a_writer(tmp_path, clock_store, capsys):
    script = HELPER.replace('store.add("samples", (1.0, "a", 2.0))\n', "")
    with holder_process(clock_store, script) as helper:
        assert main(["report", str(clock_store), "--out", str(tmp_path / "r"), "--json",
                     "--settle", "0s"]) == 0
        assert '"frames"' in capsys.readouterr().out
        assert helper.poll() is None


# --- the lock itself ----------------------------------------------------------------------

def test_the_lock_is_reentrant_within_its_process(tmp_path):
    path = tmp_path / "s.sqlite"
    with WriterLock(path) as outer:
        assert not outer.shared and lock_holder(path)["pid"] == os.getpid()
        with Store(path) as inner:                      # e.g. `ionclock sim` and its run
            assert inner._lock.shared
        assert lock_holder(path)["pid"] == os.getpid()  # still held by the outer
    assert lock_holder(path) is None


def test_store_errors_are_user_errors(tmp_path):
    assert issubclass(StoreLocked, UserError)
    with pytest.raises(UserError, match="does not exist"):
        Store(tmp_path / "no" / "s.sqlite")
    assert not (tmp_path / "no").exists()
