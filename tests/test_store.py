"""The store's own reads: the per-cycle window found without an index on t."""

from __future__ import annotations

import random

import pytest

from ionclock.storage.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "s.sqlite", commit_interval=3600)
    rng = random.Random(7)
    t = 0.0
    for i in range(3000):
        t += rng.choice((0.0, 0.105, 0.105, 0.21))   # repeated instants too
        s.add("servo_cycles", (t, i // 12, i % 6, 1, 0.0, 40, 0.0, "locked"))
    s.flush()
    # rowid gaps, as after a rolled-back or pruned stretch
    s.db.execute("DELETE FROM servo_cycles WHERE rowid % 97 = 0 OR rowid BETWEEN 500 AND 700")
    yield s
    s.close()


def test_the_indexless_table_is_in_time_order_by_rowid(store):
    ts = [t for (t,) in store.query("SELECT t FROM servo_cycles ORDER BY rowid")]
    assert ts == sorted(ts)
    assert not store.query("SELECT name FROM sqlite_master WHERE tbl_name = 'servo_cycles' "
                           "AND type = 'index'")


def test_cycles_returns_exactly_the_window(store):
    every = store.query("SELECT t, frame, line, phase, probe_hz, counts, dark, state "
                        "FROM servo_cycles ORDER BY rowid")
    ts = [row[0] for row in every]
    rng = random.Random(3)
    windows = [(-1.0, 1e9), (ts[0], ts[0]), (ts[-1], ts[-1]), (ts[-1] + 1, ts[-1] + 2),
               (-5.0, -1.0), (ts[400], ts[400]), (50.0, 40.0)]
    windows += [tuple(sorted((rng.uniform(-1, ts[-1] + 1), rng.uniform(-1, ts[-1] + 1))))
                for _ in range(40)]
    for t0, t1 in windows:
        assert store.cycles(t0, t1) == [row for row in every if t0 <= row[0] <= t1], (t0, t1)
    assert store.cycles() == every


def test_cycles_of_an_empty_table(tmp_path):
    with Store(tmp_path / "e.sqlite") as s:
        assert s.cycles(0.0, 10.0) == []
