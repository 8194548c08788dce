"""Logger store: ingest rate with <= 1 s at risk, a year's plot query, bytes per sample.

1. Ingest: 8 channels through `Store.add` (commit every 0.5 s of wall clock, WAL,
   synchronous=NORMAL, rollups in the same transaction), for a few seconds: rows/s.
   Then the whole logger path (driver -> twin -> store) in a twin run: rows/s.
2. A year of 1 Hz data from 8 channels: the 1-min and 1-h rollups of 365 days are built
   with the same upsert the store uses (from a synthetic cryostat trace aggregated in numpy:
   252 million raw rows would take hours to write here and ~20 GB; with the default 90-day
   raw retention a real year's store never holds them anyway), plus one real day of raw
   1 Hz rows. Timed: the `plot --since 1y` query (auto-picks the 1-h table), the full PNG,
   and 7-day / 1-day queries.
3. Store size per sample: file bytes (after a checkpoint) / raw rows, rollups included.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import simpy

from ionclock.storage.rollups import upsert_bins
from ionclock.storage.store import Store
from ionclock.storage.views import StoreView, plot

CHANNELS = [f"T{i}" for i in range(8)]
YEAR = 365 * 86400


def trace(t: np.ndarray, k: int) -> np.ndarray:
    """Synthetic cryostat temperature (K): slow rise, a drop every 2 days, recovery."""
    phase = t % (2 * 86400.0)
    return 78.3 + 0.1 * k + 0.3 * phase / (2 * 86400.0) - 2.0 * np.exp(-phase / 7200.0)


def bench_ingest(path: Path, seconds: float = 4.0) -> tuple[float, int]:
    store = Store(path, commit_interval=0.5)
    t0 = time.perf_counter()
    n = 0
    t = 1.7e9
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            t += 1.0
            for k, ch in enumerate(CHANNELS):
                store.add("samples", (t, ch, 78.0 + 0.1 * k + 1e-6 * (n % 1000)))
            n += 8
    store.close()
    return n / (time.perf_counter() - t0), n


def bench_logger_path(path: Path) -> float:
    from ionclock.apparatus.registry import make_env_world
    from ionclock.logger.poller import Logger, parse_config

    cfg = {"store": {"path": str(path)},
           "instruments": {"ls218": {"model": "lakeshore218", "resource": "sim://lakeshore218"}},
           "channels": {f"in{i}": {"instrument": "ls218", "read": f"input_{i}.temperature",
                                   "period_s": 1.0, "unit": "K"} for i in range(1, 7)}}
    env = simpy.Environment()
    logger = Logger(parse_config(cfg), env, world=make_env_world(env, 1), simulate=True).start()
    t0 = time.perf_counter()
    logger.run(3 * 3600.0)
    logger.close()
    return logger.stats.samples / (time.perf_counter() - t0)


def size_per_sample(path: Path, rows: int) -> float:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.stat().st_size / rows


def build_year(path: Path) -> None:
    """Rollups of a year of 1 Hz x 8 channels, plus the last day raw through the store."""
    start = 1.7e9 - YEAR
    minutes = np.arange(YEAR // 60, dtype=float) * 60.0 + start
    Store(path).close()  # the schema
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for k, ch in enumerate(CHANNELS):
        # Per minute: the trace at each second, reduced to n/min/max/sum.
        secs = minutes[:, None] + np.arange(60.0)[None, :]
        v = trace(secs, k)
        lo, hi, s = v.min(axis=1), v.max(axis=1), v.sum(axis=1)
        db.execute("BEGIN")
        upsert_bins(db, "samples_1m", zip([ch] * len(minutes), minutes.tolist(),
                                          [60] * len(minutes), lo.tolist(), hi.tolist(),
                                          s.tolist()))
        hours = minutes.reshape(-1, 60)[:, 0]
        upsert_bins(db, "samples_1h", zip([ch] * len(hours), hours.tolist(),
                                          [3600] * len(hours), lo.reshape(-1, 60).min(1).tolist(),
                                          hi.reshape(-1, 60).max(1).tolist(),
                                          s.reshape(-1, 60).sum(1).tolist()))
        db.execute("COMMIT")
        del secs, v
    db.executemany("INSERT INTO channels VALUES (?,?,?,?,?,?)",
                   [(ch, "K", 75.0, 85.0, "bench", 1.0) for ch in CHANNELS])
    db.close()
    # The last day as raw rows, through the store (its rollup upserts merge into the bins).
    with Store(path) as store:
        t = np.arange(1.7e9 - 86400, 1.7e9, 1.0)
        for k, ch in enumerate(CHANNELS):
            store.add_many("samples", zip(t.tolist(), [ch] * len(t), trace(t, k).tolist()))
            store.flush()


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rate, n = bench_ingest(tmp / "ingest.sqlite")
        per = size_per_sample(tmp / "ingest.sqlite", n)
        print(f"   ingest, Store.add (8 ch, commit <= 0.5 s apart, WAL, rollups): "
              f"{rate:,.0f} rows/s ({n:,} rows)")
        print(f"   store size: {per:.1f} bytes/sample (raw row + index + 1-min/1-h rollups);"
              f" 90 d of raw 1 Hz x 8 ch (the default retention): "
              f"{per * 8 * 90 * 86400 / 1e9:.1f} GB")
        print(f"   ingest, whole logger path (LS218 driver -> twin -> store, 6 ch): "
              f"{bench_logger_path(tmp / 'logger.sqlite'):,.0f} rows/s")
        year = tmp / "year.sqlite"
        t0 = time.perf_counter()
        build_year(year)
        print(f"   built a year of 1 Hz x 8 ch (rollups + last day raw) in "
              f"{time.perf_counter() - t0:.1f} s; file {size_per_sample(year, 1) / 1e6:.0f} MB"
              f" (the year's rollups: 4.2 M 1-min + 70 k 1-h rows)")
        with StoreView(year) as view:
            def query(span: str) -> tuple[str, int]:
                t_a, t_b = view.span(span)
                out = [view.series(ch, t_a, t_b) for ch in CHANNELS]
                return out[0].table, sum(len(s.t) for s in out)

            for span in ("1y", "30d", "7d", "1d", "2h"):
                table, pts = query(span)
                dt = timed(lambda span=span: query(span))
                flag = "  (target < 1 s)" if span == "1y" else ""
                print(f"   query --since {span:>3} (8 ch): {dt * 1e3:7.1f} ms, {table} table, "
                      f"{pts:,} points{flag}")
        dt = timed(lambda: plot(year, None, "1y", tmp / "year.png"), repeat=1)
        print(f"   ionclock plot --since 1y (8 ch, PNG): {dt:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
