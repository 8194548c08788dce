"""The embedded store: one SQLite file in WAL mode (STYLE §6).

Schema (all times `t` are seconds on the run's clock: Unix time in the lab, simulated
seconds since the start of a twin run; `meta.t0_unix` anchors a twin run):

- ``meta(key TEXT PRIMARY KEY, value TEXT)``: run parameters, config digest, versions.
- ``servo_cycles(t, frame, line, phase, probe_hz, counts, dark, state)``: one row per clock
  cycle: which Zeeman line (0..5) and hyper-Ramsey phase (+1/-1) was probed, the probe
  frequency offset from nu0 in Hz, the detection counts and the thresholded outcome
  (dark = 1: the ion was in D5/2; the deterministic twin stores its expectation value and
  counts = -1).
- ``lock_frames(t, frame, nu_hz, drift_hz_s, b_t, o0..o5, locked, holdover, nu_abs_hz,
  corrected_hz, corrected_sigma_hz)``: one row per completed frame (12 cycles): the common
  laser steering (Hz at the ion), its drift rate, the field B from the splittings (T), the
  six per-line offsets (Hz), flags, and the clock output: the locked laser on the absolute
  scale, and corrected by the live shift budget, with its 1-sigma (Hz from nu0; NULL without
  a frequency reference or a valid budget).
- ``budgets(t, total_fractional, sigma_fractional, valid, detail)``: each live shift-budget
  evaluation (detail: the budget's JSON, with its inputs and window).
- ``twin_truth(frame, t, detuning_hz, b_true_t, d0..d5, stray_hz)``: twin runs only: the
  frame's true mean detuning of its probes from their true line centres (Hz), the true field
  at t (T), each line's own mean true detuning (Hz), and the mean light shift that stray light
  (a shutter stuck open) put on the ion during its probes (Hz; 0 when every shutter closed).
- ``events(t, kind, source, detail)``: every state change (`locked`, `holdover`,
  `ion_lost`, `slip_corrected`, `instrument_offline`, ...), and in a twin run what the twin
  injected (source `twin`: `b_step`, `ion_loss`, `refill`, ...); detail is JSON.
- ``samples(t, channel, value)``: environment channels (temperatures, RF, coils, ...);
  value is NULL for a reading the instrument reported as missing. The implicit rowid only
  grows: sinks keep a cursor on it.
- ``samples_1m``, ``samples_1h`` ``(channel, t, n, vmin, vmax, vsum)``: rollups of
  ``samples`` into 60 s and 3600 s bins (t = bin start, mean = vsum / n), maintained in the
  same transaction as the raw rows they summarise (ionclock.storage.rollups), so a committed
  rollup always equals the aggregate of the committed raw rows of its bin.
- ``channels(name, unit, band_min, band_max, source, period_s)``: what each logged channel
  is (source = "model resource attribute-path"), written by the logger at start.
- ``cursors(name, last_rowid, t_updated)``: how far a sink (``sink:<name>``) or the alarm
  dispatcher (``alarm:<name>``) got through ``samples`` / ``events`` (rowid acknowledged).

Every table is indexed on time but ``servo_cycles``: its rows are appended in time order, so
its rowid orders it by t and `Store.cycles` finds a time window by bisection on rowid (an
index maintained on every insert cost a third of the row's price on the clock loop's hot
path). Writes are buffered and committed in batches no longer
than `commit_interval` seconds of wall clock apart, so a crash loses at most that much;
committed rows survive ``kill -9`` (WAL, synchronous=NORMAL).

One writer per store (decision 0501): a `Store` holds the store's `WriterLock`, an
``flock`` on ``<store>.lock`` beside it that records the holder (pid, host, command line).
A second process that opens the store for writing is refused (`StoreLocked`, one line
naming the holder); the kernel drops the lock when its process ends, ``kill -9`` included,
so the next writer opens the store at once. Readers (`open_readonly`) take no lock: WAL
lets them read while the writer writes.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shlex
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ionclock.errors import UserError
from ionclock.storage.signal_guard import atomic

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS servo_cycles (
    t REAL NOT NULL, frame INTEGER NOT NULL, line INTEGER NOT NULL, phase INTEGER NOT NULL,
    probe_hz REAL NOT NULL, counts INTEGER NOT NULL, dark REAL NOT NULL,
    state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lock_frames (
    t REAL NOT NULL, frame INTEGER PRIMARY KEY, nu_hz REAL NOT NULL, drift_hz_s REAL NOT NULL,
    b_t REAL NOT NULL, o0 REAL, o1 REAL, o2 REAL, o3 REAL, o4 REAL, o5 REAL,
    locked INTEGER NOT NULL, holdover INTEGER NOT NULL, nu_abs_hz REAL, corrected_hz REAL,
    corrected_sigma_hz REAL);
CREATE TABLE IF NOT EXISTS budgets (
    t REAL NOT NULL, total_fractional REAL, sigma_fractional REAL, valid INTEGER NOT NULL,
    detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS budgets_t ON budgets(t);
CREATE INDEX IF NOT EXISTS lock_frames_t ON lock_frames(t);
CREATE TABLE IF NOT EXISTS twin_truth (
    frame INTEGER PRIMARY KEY, t REAL NOT NULL, detuning_hz REAL NOT NULL,
    b_true_t REAL NOT NULL, d0 REAL, d1 REAL, d2 REAL, d3 REAL, d4 REAL, d5 REAL,
    stray_hz REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS twin_truth_t ON twin_truth(t);
CREATE TABLE IF NOT EXISTS events (
    t REAL NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_t ON events(t);
CREATE TABLE IF NOT EXISTS samples (t REAL NOT NULL, channel TEXT NOT NULL, value REAL);
CREATE INDEX IF NOT EXISTS samples_channel_t ON samples(channel, t);
CREATE TABLE IF NOT EXISTS samples_1m (
    channel TEXT NOT NULL, t REAL NOT NULL, n INTEGER NOT NULL, vmin REAL, vmax REAL,
    vsum REAL, PRIMARY KEY (channel, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples_1h (
    channel TEXT NOT NULL, t REAL NOT NULL, n INTEGER NOT NULL, vmin REAL, vmax REAL,
    vsum REAL, PRIMARY KEY (channel, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channels (
    name TEXT PRIMARY KEY, unit TEXT NOT NULL, band_min REAL, band_max REAL,
    source TEXT NOT NULL, period_s REAL);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY, last_rowid INTEGER NOT NULL, t_updated REAL);
"""

TABLES = ("meta", "servo_cycles", "lock_frames", "twin_truth", "events", "samples", "budgets",
          "samples_1m", "samples_1h", "channels", "cursors")

_INSERT = {
    "servo_cycles": "INSERT INTO servo_cycles VALUES (?,?,?,?,?,?,?,?)",
    "lock_frames": "INSERT OR REPLACE INTO lock_frames VALUES "
                   "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "budgets": "INSERT INTO budgets VALUES (?,?,?,?,?)",
    "twin_truth": "INSERT OR REPLACE INTO twin_truth VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    "events": "INSERT INTO events VALUES (?,?,?,?)",
    "samples": "INSERT INTO samples VALUES (?,?,?)",
}


class StoreLocked(UserError):
    """Another process holds the store's writer lock (one writer per store)."""


class WriterLock:
    """The one-writer lock of the store at `store_path`: ``flock`` on ``<store>.lock``.

    The lock belongs to an open file, so the kernel releases it when its process ends,
    however it ends (``kill -9`` too): a dead writer never blocks the next one, and no
    stale-pid heuristics are needed. The file holds a JSON record of the holder (pid, host,
    command line, start time) for the refusal message; it is never deleted, since a process
    that deleted it while another waited could leave two holders of two different files.

    Within one process the lock is re-entrant: when the record names this process, a second
    acquisition shares the lock and its `release` leaves it held. (``ionclock sim`` takes the
    lock before an earlier twin run's files are cleared; the run's `Store` then opens them.)
    With `create_dir`, the store's directory is created first.
    """

    #: how long a refused writer waits for a just-started holder to write its record, s
    RECORD_WAIT_S = 1.0

    def __init__(self, store_path: str | Path, create_dir: bool = False):
        self.store_path = Path(store_path)
        self.path = lock_path(self.store_path)
        self.create_dir = create_dir
        self.shared = False
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock, or raise `StoreLocked` naming the process that holds it."""
        if self._fd is not None or self.shared:
            return self
        if self.create_dir:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(f"store: cannot create {str(self.path.parent)!r}: "
                                f"{err.strerror}") from None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise UserError(f"store: cannot open the lock file {str(self.path)!r}: "
                            f"{err.strerror}") from None
        deadline = time.monotonic() + self.RECORD_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_record(fd)
                # a holder that has just taken the lock may not have written its record yet
                if holder or time.monotonic() >= deadline:
                    os.close(fd)
                    if _is_this_process(holder):
                        self.shared = True
                        return self
                    raise StoreLocked(_refusal(self.store_path, holder)) from None
                time.sleep(0.02)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": shlex.join(sys.orig_argv), "started_unix": time.time()}
        data = json.dumps(record).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (a shared acquisition leaves it to its owner)."""
        fd, self._fd = self._fd, None
        self.shared = False
        if fd is not None:
            try:
                os.ftruncate(fd, 0)   # no stale record for the next reader of the file
            finally:
                os.close(fd)          # closing the file releases the flock

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_path(store_path: str | Path) -> Path:
    """The writer-lock file of a store: ``<store>.lock`` beside it."""
    p = Path(store_path)
    return p.with_name(p.name + ".lock")


def lock_holder(store_path: str | Path) -> dict | None:
    """The record in a store's lock file (pid, host, command, started_unix), if any.

    Only a hint: the record outlives a killed holder; the lock itself is the ``flock``.
    """
    try:
        fd = os.open(lock_path(store_path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_record(fd)
    finally:
        os.close(fd)


def _read_record(fd: int) -> dict | None:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _is_this_process(holder: dict | None) -> bool:
    return (holder is not None and holder.get("pid") == os.getpid()
            and holder.get("host") == socket.gethostname())


def _refusal(store_path: Path, holder: dict | None) -> str:
    """One line: who holds the store (the command on one line, whatever it contained)."""
    if holder is None:
        who = "another process (it has not recorded its pid)"
    else:
        command = " ".join(str(holder.get("command", "?")).split())
        host = holder.get("host")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        who = f"pid {holder.get('pid', '?')}{where} (`{command}`)"
    return (f"store: {str(store_path)!r} is open for writing by {who}; one writer per store: "
            "stop it or choose another store (report, status, export and plot can read it "
            "meanwhile)")


class Store:
    """Buffered writer (and simple reader) of one SQLite store.

    `clock` returns wall-clock seconds for the commit cadence (injected so tests and the
    twin never depend on the machine's clock). With `rollups` (default), every flush also
    folds its ``samples`` rows into ``samples_1m`` / ``samples_1h`` in the same transaction.
    Opening takes the store's `WriterLock` (`StoreLocked` when another process holds it);
    `close` gives it back.
    """

    def __init__(self, path: str | Path, commit_interval: float = 1.0,
                 max_buffer: int = 20000, clock=time.monotonic, rollups: bool = True):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise UserError(f"store: directory {str(self.path.parent)!r} does not exist")
        self._lock = WriterLock(self.path).acquire()
        self.db = None
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            if self.db is not None:
                self.db.close()
            self._lock.release()
            raise UserError(f"store: cannot open {str(self.path)!r}: {err}") from None
        self.commit_interval = commit_interval
        self.max_buffer = max_buffer
        self._clock = clock
        self._buffers: dict[str, list[tuple]] = {name: [] for name in _INSERT}
        self._pending = 0
        self._last_commit = clock()
        # Called as hook(db, buffers) inside every flush's transaction, before the buffered
        # rows are cleared: the rollups ride in the same commit as their raw rows.
        self._commit_hooks: list = []
        if rollups:
            from ionclock.storage.rollups import update_rollups

            self._commit_hooks.append(update_rollups)

    # --- writing ---------------------------------------------------------------------
    def add(self, table: str, row: tuple) -> None:
        """Buffer one row; commits when the batch is due."""
        self._buffers[table].append(row)
        self._pending += 1
        if self._pending >= self.max_buffer or (
                self._clock() - self._last_commit >= self.commit_interval):
            self.maybe_flush()

    def add_many(self, table: str, rows: Iterable[tuple]) -> None:
        """Buffer several rows of one table."""
        buf = self._buffers[table]
        n = len(buf)
        buf.extend(rows)
        self._pending += len(buf) - n
        self.maybe_flush()

    def buffer(self, table: str) -> list[tuple]:
        """The list `table`'s rows wait in; a row appended to it is written at the next flush.

        For a caller's per-cycle hot path (the clock servo's cycle rows): one ``append``
        instead of an `add`. Such rows count towards the size bound at the next `add` or
        `maybe_flush`, which the caller must still make regularly (the servo adds a frame
        row every 12 cycles).
        """
        return self._buffers[table]

    def maybe_flush(self) -> None:
        """Commit if the batch is due (size or age)."""
        self._pending = sum(map(len, self._buffers.values()))
        if self._pending >= self.max_buffer or (
                self._clock() - self._last_commit >= self.commit_interval):
            self.flush()

    def event(self, t: float, kind: str, source: str = "", **detail) -> None:
        """Record a state change; events are committed at once."""
        self._buffers["events"].append((t, kind, source, json.dumps(detail, default=str)))
        self._pending += 1
        self.flush()

    def flag_frames(self, t0: float, t1: float) -> int:
        """Mark the lock frames with t0 <= t <= t1 as holdover (not clock data); returns count.

        Used when a fault is recognised after the fact (a slip corrected, the contrast found
        lost): the frames it already biased are flagged, never silently kept.
        """
        self.flush()
        cur = self.db.execute("UPDATE lock_frames SET holdover = 1, locked = 0 "
                              "WHERE t >= ? AND t <= ?", (t0, t1))
        return cur.rowcount

    def set_channels(self, rows: Iterable[tuple]) -> None:
        """Describe logged channels: (name, unit, band_min, band_max, source, period_s) rows."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO channels VALUES (?,?,?,?,?,?)", rows)

    def set_meta(self, **items) -> None:
        """Store run metadata (values JSON-encoded)."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)",
                                [(k, json.dumps(v, default=str)) for k, v in items.items()])

    def flush(self) -> None:
        """Commit every buffered row in one transaction.

        A signal cannot land between the commit and the clearing of the committed rows
        (`atomic`), so rows are never written twice; a failed commit keeps them for the next
        try, so they are never lost.
        """
        if any(self._buffers.values()):
            with atomic:
                db = self.db
                committed = False
                db.execute("BEGIN")
                try:
                    for table, rows in self._buffers.items():
                        if rows:
                            db.executemany(_INSERT[table], rows)
                    for hook in self._commit_hooks:
                        hook(db, self._buffers)
                    db.execute("COMMIT")
                    committed = True
                finally:
                    if committed:
                        for rows in self._buffers.values():
                            rows.clear()
                        self._pending = 0
                    elif db.in_transaction:  # (SQLite undoes some failures by itself)
                        db.execute("ROLLBACK")
        self._last_commit = self._clock()

    def close(self) -> None:
        """Flush, close, and give the writer lock back."""
        if self.db is not None:
            self.flush()
            self.db.close()
            self.db = None
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- reading ---------------------------------------------------------------------
    def meta(self) -> dict:
        """All metadata, JSON-decoded."""
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Run a read query."""
        return self.db.execute(sql, params).fetchall()

    def cycles(self, t0: float = -math.inf, t1: float = math.inf) -> list[tuple]:
        """The `servo_cycles` rows with t0 <= t <= t1, in time order.

        The table is in time order by rowid (one servo appends it); the window's first and
        last rowid are found by bisection, a few row lookups, with no index on t.
        """
        lo = self._first_rowid_at_or_after(t0)
        hi = self._first_rowid_at_or_after(t1, inclusive=False)
        return self.db.execute("SELECT t, frame, line, phase, probe_hz, counts, dark, state "
                               "FROM servo_cycles WHERE rowid >= ? AND rowid < ? ORDER BY rowid",
                               (lo, hi)).fetchall()

    def _first_rowid_at_or_after(self, t: float, inclusive: bool = True) -> int:
        """Smallest rowid whose t is >= t (> t with inclusive=False); max rowid + 1 if none."""
        db = self.db
        lo, hi = db.execute("SELECT IFNULL(MIN(rowid), 1), IFNULL(MAX(rowid), 0) + 1 "
                            "FROM servo_cycles").fetchone()
        while lo < hi:   # invariant: every rowid >= hi is past t (rowids can have gaps)
            mid = (lo + hi) // 2
            row = db.execute("SELECT rowid, t FROM servo_cycles WHERE rowid >= ? "
                             "ORDER BY rowid LIMIT 1", (mid,)).fetchone()
            if row is None or row[0] >= hi:
                hi = mid
            elif row[1] > t or (inclusive and row[1] == t):
                hi = row[0]
            else:
                lo = row[0] + 1
        return hi

    def events(self, kind: str | None = None) -> list[tuple]:
        """Events (t, kind, source, detail dict), optionally of one kind."""
        sql = "SELECT t, kind, source, detail FROM events"
        rows = self.db.execute(sql + (" WHERE kind=?" if kind else "") + " ORDER BY t",
                               (kind,) if kind else ()).fetchall()
        return [(t, k, s, json.loads(d)) for t, k, s, d in rows]


@contextmanager
def left_as_found(store_path: str | Path) -> Iterator[None]:
    """Read a store and leave its folder as it was: no ``-wal``/``-shm`` left by a reader.

    For readers that do not use `open_readonly` (whose connections do this as they close):
    ``ionclock report``.

    SQLite's read-only connections to a WAL database create the ``-wal`` and ``-shm`` files
    when they are missing, and cannot remove them when they close (only a connection that
    may write checkpoints). A store that had neither has no writer; if it still has none
    after the read (its writer lock is free: held for the instant of the removal, so none
    can start meanwhile) and the ``-wal`` is empty, the two files are the reader's and are
    removed. A store with a writer, or with a ``-wal`` a killed writer left, is untouched.
    """
    p = Path(store_path)
    side = (Path(f"{p}-wal"), Path(f"{p}-shm"))
    had = [f.exists() for f in side]
    try:
        yield
    finally:
        if not any(had) and any(f.exists() for f in side):
            _remove_reader_files(p, side)


def _remove_reader_files(store: Path, side: tuple[Path, Path]) -> None:
    fd = None
    try:
        fd = os.open(lock_path(store), os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except FileNotFoundError:   # no lock file: no ionclock writer ever opened it here
        pass
    except OSError:             # a writer holds it (this process included): its files now
        if fd is not None:
            os.close(fd)
        return
    try:
        if side[0].exists() and side[0].stat().st_size > 0:
            return
        for f in side:
            f.unlink(missing_ok=True)
    except OSError:
        pass                    # a read-only folder: nothing the reader could have left
    finally:
        if fd is not None:
            os.close(fd)        # closing the file releases the flock


class _ReaderConnection(sqlite3.Connection):
    """A read-only connection that, closed, leaves the store's folder as it found it."""

    store_path: Path
    had_side_files: bool

    def close(self) -> None:
        super().close()
        side = (Path(f"{self.store_path}-wal"), Path(f"{self.store_path}-shm"))
        if not self.had_side_files and any(f.exists() for f in side):
            _remove_reader_files(self.store_path, side)


def read_store(path: str | Path, read: Callable[[sqlite3.Connection], T],
               what: str = "store") -> T:
    """`read(db)` on the store at `path` opened read-only (`open_readonly`), then closed.

    SQLite's errors become one-line `UserError`s naming `what` (the command) and the file:
    a file SQLite cannot open, or one that is not a readable ionclock store.
    """
    try:
        db = open_readonly(path)
    except sqlite3.Error as err:
        raise UserError(f"{what}: cannot open {str(path)!r}: {err}") from None
    try:
        return read(db)
    except sqlite3.DatabaseError as err:
        raise UserError(f"{what}: {str(path)!r} is not a readable ionclock store: "
                        f"{err}") from None
    finally:
        db.close()


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """Open an existing store for reading; a missing file is a `UserError`.

    Closed, the connection removes the ``-wal``/``-shm`` files it made beside a finished
    store (`left_as_found`).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"store: no such file {str(p)!r}")
    had = any(Path(f"{p}{suffix}").exists() for suffix in ("-wal", "-shm"))
    db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, factory=_ReaderConnection)
    db.store_path, db.had_side_files = p, had
    return db


def peek_store(path: str | Path, read: Callable[[sqlite3.Connection], T],
               what: str = "store") -> T:
    """`read(db)` on the store at `path` without a single byte written beside or in it.

    For a reader that comes back every few seconds (``ionclock dashboard``). A store with no
    writer (its writer lock free) and no ``-wal``/``-shm`` beside it is complete in its one
    file: it is read ``immutable`` (SQLite then takes no lock and makes no ``-shm``), under
    a shared ``flock`` on its lock file so that no ionclock writer can start meanwhile (one
    that tries retries for `WriterLock.RECORD_WAIT_S`, far longer than a read). A store that
    is being written, or that has a ``-wal``, is read as `read_store` reads it (``mode=ro``,
    WAL). Errors are one-line `UserError`s naming `what`, as `read_store`'s.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what}: no such file {str(p)!r}")
    if any(Path(f"{p}{suffix}").exists() for suffix in ("-wal", "-shm")):
        return read_store(p, read, what)
    try:
        fd = os.open(lock_path(p), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:   # no lock file: no ionclock writer has opened it here; nothing to hold
        return read_store(p, read, what)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:   # a writer holds it: read the live store through the WAL
            return read_store(p, read, what)
        if any(Path(f"{p}{suffix}").exists() for suffix in ("-wal", "-shm")):
            return read_store(p, read, what)   # a writer came and went before our lock
        uri = f"{p.resolve().as_uri()}?mode=ro&immutable=1"
        try:
            db = sqlite3.connect(uri, uri=True)
        except sqlite3.Error as err:
            raise UserError(f"{what}: cannot open {str(p)!r}: {err}") from None
        try:
            return read(db)
        except sqlite3.DatabaseError as err:
            raise UserError(f"{what}: {str(p)!r} is not a readable ionclock store: "
                            f"{err}") from None
        finally:
            db.close()
    finally:
        os.close(fd)   # closing the file releases the flock
