"""Rollups (1 min, 1 h) maintained in the commit of their raw rows, and retention."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ionclock.storage.rollups import ROLLUPS, aggregate, apply_retention, recompute
from ionclock.storage.store import Store


def test_aggregate_matches_numpy():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 7200, 5000))
    v = rng.normal(79.0, 0.5, t.size)
    bins = {(ch, b): rest for ch, b, *rest in aggregate(zip(t, ["a"] * t.size, v), 60.0)}
    for b in (0.0, 60.0 * 17, 60.0 * 119):
        sel = (t >= b) & (t < b + 60)
        n, lo, hi, s = bins[("a", b)]
        assert n == sel.sum() and lo == v[sel].min() and hi == v[sel].max()
        assert math.isclose(s, v[sel].sum(), rel_tol=1e-12)


def test_missing_values_are_not_counted():
    bins = aggregate([(1.0, "a", None), (2.0, "a", float("nan")), (3.0, "a", 5.0)], 60.0)
    assert bins == [("a", 0.0, 1, 5.0, 5.0, 5.0)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20000, allow_nan=False), st.sampled_from("abc"),
                          st.floats(-1e3, 1e3, allow_nan=False)), max_size=300),
       st.lists(st.integers(1, 60), max_size=30))
def test_incremental_rollups_equal_batch_aggregate(tmp_path_factory, rows, cuts):
    """However the rows are split into commits, the rollups equal the aggregate of all rows."""
    path = tmp_path_factory.mktemp("r") / "s.sqlite"
    with Store(path, commit_interval=1e9) as store:
        i = 0
        for c in cuts:
            store.add_many("samples", rows[i:i + c])
            store.flush()
            i += c
        store.add_many("samples", rows[i:])
    db = sqlite3.connect(path)
    for table in ROLLUPS:
        for ch in "abc":
            have = db.execute(f"SELECT channel, t, n, vmin, vmax, vsum FROM {table} WHERE"
                              " channel = ? ORDER BY t", (ch,)).fetchall()
            want = recompute(db, table, ch)
            assert [r[:5] for r in have] == [r[:5] for r in want]
            assert all(math.isclose(a[5], b[5], rel_tol=1e-9, abs_tol=1e-6)
                       for a, b in zip(have, want))
    db.close()


def test_failed_commit_keeps_rows_and_rollups_consistent(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path, commit_interval=1e9)
    store.add_many("samples", [(1.0, "a", 1.0), (2.0, "a", 2.0)])

    def boom(db, buffers):
        raise sqlite3.OperationalError("disk I/O error")

    store._commit_hooks.append(boom)
    try:
        store.flush()
    except sqlite3.OperationalError:
        pass
    store._commit_hooks.remove(boom)
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM samples_1m").fetchone()[0] == 0
    store.flush()  # the rows were kept for the next try
    assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 2
    assert db.execute("SELECT n, vsum FROM samples_1m").fetchall() == [(2, 3.0)]
    store.close()


def test_retention_per_table(tmp_path):
    path = tmp_path / "s.sqlite"
    day = 86400.0
    with Store(path) as store:
        store.db.execute("INSERT INTO channels VALUES ('a', 'K', NULL, NULL, 'x', 600)")
        store.add_many("samples", [(k * 600.0, "a", float(k)) for k in range(int(200 * day
                                                                              / 600))])
    db = sqlite3.connect(path, isolation_level=None)
    now = 200 * day
    deleted = apply_retention(db, now, {"samples": 90 * day, "samples_1m": 150 * day,
                                        "samples_1h": 0.0}, chunk=1000)
    t_raw = db.execute("SELECT min(t), count(*) FROM samples").fetchone()
    t_1m = db.execute("SELECT min(t) FROM samples_1m").fetchone()[0]
    t_1h = db.execute("SELECT min(t), count(*) FROM samples_1h").fetchone()
    assert t_raw[0] >= now - 90 * day and t_raw[0] < now - 90 * day + 600
    assert deleted["samples"] == 110 * 144
    assert t_1m >= now - 150 * day and t_1m < now - 150 * day + 600
    assert t_1h == (0.0, 200 * 24)  # kept forever
