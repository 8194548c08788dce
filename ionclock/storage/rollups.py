"""Rollup tables (1 min, 1 h: min/mean/max/count) kept up to date as samples arrive.

A year's plot must be a small query: 8760 hourly rows per channel instead of 31.5 million
raw ones. The rollups are maintained incrementally, not by a periodic batch job: the store
calls `update_rollups` inside the very transaction that commits a batch of raw rows, so a
committed rollup bin always equals the aggregate of the committed raw rows of that bin
(a crash can lose a batch, never make the two disagree). Each bin is an upsert:
``n += n_batch, vmin = min(vmin, ...), vmax = max(...), vsum += ...``; mean = vsum / n.

Retention (`apply_retention`) deletes, per table, rows older than its horizon relative to
the store's own clock (`now`): raw samples first, then 1-min bins; 1-h bins are kept
forever unless configured otherwise. Deletes run in bounded chunks so that the writer never
holds the lock long.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Mapping

#: Rollup tables and their bin widths (s).
ROLLUPS: dict[str, float] = {"samples_1m": 60.0, "samples_1h": 3600.0}

_UPSERT = """INSERT INTO {table} (channel, t, n, vmin, vmax, vsum) VALUES (?,?,?,?,?,?)
ON CONFLICT(channel, t) DO UPDATE SET n = n + excluded.n, vmin = min(vmin, excluded.vmin),
vmax = max(vmax, excluded.vmax), vsum = vsum + excluded.vsum"""


def bin_start(t: float, width: float) -> float:
    """Start (s) of the `width`-second bin holding time `t` (s)."""
    return math.floor(t / width) * width


def aggregate(rows: Iterable[tuple], width: float) -> list[tuple]:
    """Fold (t, channel, value) rows into (channel, bin_t, n, vmin, vmax, vsum) bins.

    Rows whose value is None or NaN (a missing reading) are not counted.
    """
    bins: dict[tuple[str, float], list] = {}
    for t, channel, value in rows:
        if value is None or value != value:
            continue
        key = (channel, math.floor(t / width) * width)
        b = bins.get(key)
        if b is None:
            bins[key] = [1, value, value, value]
        else:
            b[0] += 1
            if value < b[1]:
                b[1] = value
            if value > b[2]:
                b[2] = value
            b[3] += value
    return [(ch, t, n, lo, hi, s) for (ch, t), (n, lo, hi, s) in bins.items()]


def update_rollups(db: sqlite3.Connection, buffers: Mapping[str, list]) -> None:
    """Commit hook of `Store.flush`: fold the batch's ``samples`` rows into every rollup."""
    rows = buffers.get("samples")
    if not rows:
        return
    for table, width in ROLLUPS.items():
        db.executemany(_UPSERT.format(table=table), aggregate(rows, width))


def upsert_bins(db: sqlite3.Connection, table: str, bins: Iterable[tuple]) -> None:
    """Merge precomputed (channel, t, n, vmin, vmax, vsum) bins into `table`."""
    if table not in ROLLUPS:
        raise ValueError(f"unknown rollup table {table!r}")
    db.executemany(_UPSERT.format(table=table), bins)


def recompute(db: sqlite3.Connection, table: str, channel: str,
              t0: float = -math.inf, t1: float = math.inf) -> list[tuple]:
    """Rollup bins of `channel` recomputed from the raw rows in [t0, t1) (for checks)."""
    width = ROLLUPS[table]
    return db.execute(
        "SELECT channel, ((CAST(floor(t / ?) AS INTEGER)) * ?) AS b, count(value), min(value),"
        " max(value), sum(value) FROM samples WHERE channel = ? AND t >= ? AND t < ?"
        " AND value IS NOT NULL GROUP BY b ORDER BY b",
        (width, width, channel, t0, t1)).fetchall()


def apply_retention(db: sqlite3.Connection, now: float, keep_s: Mapping[str, float],
                    chunk: int = 50000) -> dict[str, int]:
    """Delete rows older than ``now - keep_s[table]`` (s); 0 or inf keeps forever.

    `keep_s` maps ``samples``, ``samples_1m``, ``samples_1h`` to horizons in seconds.
    Returns the number of rows deleted per table. Runs in chunks of `chunk` rows, each its
    own transaction (call it between the writer's flushes, on the writer's connection).
    """
    deleted: dict[str, int] = {}
    for table, keep in keep_s.items():
        if not keep or math.isinf(keep):
            continue
        if table not in ("samples", *ROLLUPS):
            raise ValueError(f"retention: unknown table {table!r}")
        cutoff = now - keep
        channels = [c for (c,) in db.execute(f"SELECT DISTINCT channel FROM {table}")] \
            if table != "samples" else [c for (c,) in db.execute(
                "SELECT name FROM channels UNION SELECT DISTINCT channel FROM samples_1h")]
        total = 0
        for channel in channels:
            while True:
                # The (channel, t) index/primary key makes each chunk a range scan.
                if table == "samples":
                    cur = db.execute(
                        "DELETE FROM samples WHERE rowid IN (SELECT rowid FROM samples"
                        " WHERE channel = ? AND t < ? LIMIT ?)", (channel, cutoff, chunk))
                else:
                    cur = db.execute(
                        f"DELETE FROM {table} WHERE channel = ? AND t IN (SELECT t FROM {table}"
                        " WHERE channel = ? AND t < ? LIMIT ?)", (channel, channel, cutoff, chunk))
                total += cur.rowcount
                if cur.rowcount < chunk:
                    break
        deleted[table] = total
    return deleted
