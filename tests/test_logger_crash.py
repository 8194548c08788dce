"""`kill -9` of a real-time logger process at 20 seeded random moments.

Each run is a real `ionclock log` process polling six Lake Shore 218 inputs on the cryostat
twin every 20 ms (300 samples/s), restarted on the same store after every kill. The process
writes a *witness* line for each sample (wall time, channel, t, value) before the sample
enters the store's buffer, so the test knows what was produced. After each kill:

- ``PRAGMA integrity_check`` says ``ok``;
- every sample produced more than 1 s before the kill is in the store (at most the last
  second is lost), and the store holds nothing that was not produced (same values);
- the 1-min and 1-h rollups equal the aggregates of the committed raw rows.

`test_checker_detects_loss` shows the check is not vacuous: rows removed from a store are
reported.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ionclock.storage.rollups import recompute

KILLS = 20
SEED = 20251121
RISK_S = 1.0  # the promise: at most the last second before a kill is lost


def read_witness(path: Path) -> list[tuple[float, str, float, float | None]]:
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        parts = line.split(" ")
        if len(parts) != 4:
            continue  # a line cut by the kill
        try:
            wall, t = float(parts[0]), float(parts[2])
            value = None if parts[3] == "None" else float(parts[3])
        except ValueError:
            continue
        rows.append((wall, parts[1], t, value))
    return rows


def check_store(store: Path, runs: list[tuple[list, float]], risk_s: float = RISK_S) -> dict:
    """Compare a killed store with the runs' witnesses; returns findings (empty when good).

    `runs` holds (witness rows, kill wall time) for every run on this store so far: a row
    may be lost only if it was produced within `risk_s` before its own run's kill.
    """
    witness = [(row, kill) for rows, kill in runs for row in rows]
    db = sqlite3.connect(store)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        stored = {(ch, t): v for t, ch, v in db.execute("SELECT t, channel, value FROM samples")}
        produced = {(ch, t): v for (_, ch, t, v), _ in witness}
        invented = [k for k, v in stored.items() if k not in produced or produced[k] != v]
        lost_old = [(wall, ch, t) for (wall, ch, t, _), kill in witness
                    if (ch, t) not in stored and wall < kill - risk_s]
        last_rows, last_kill = runs[-1]
        lost_recent = [last_kill - wall for wall, ch, t, _ in last_rows if (ch, t) not in stored]
        bad_rollups = []
        channels = sorted({ch for ch, _ in stored})
        for table in ("samples_1m", "samples_1h"):
            for ch in channels:
                have = db.execute(f"SELECT channel, t, n, vmin, vmax, vsum FROM {table}"
                                  " WHERE channel = ? ORDER BY t", (ch,)).fetchall()
                want = recompute(db, table, ch)
                if [r[:5] for r in have] != [r[:5] for r in want] or not all(
                        math.isclose(a[5], b[5], rel_tol=1e-9) for a, b in zip(have, want)):
                    bad_rollups.append((table, ch))
        return {"integrity": integrity, "stored": len(stored), "invented": invented,
                "lost_old": lost_old, "lost_recent_max_age": max(lost_recent, default=0.0),
                "lost_recent": len(lost_recent), "bad_rollups": bad_rollups}
    finally:
        db.close()


def _config(tmp: Path, store: Path) -> Path:
    lines = [f'[store]\npath = "{store}"\ncommit_interval_s = 0.5\n',
             "[retention]\nraw_days = 0\ncheck_interval_s = 2\n",
             '[instruments.ls218]\nmodel = "lakeshore218"\nresource = "sim://lakeshore218"\n']
    for i in range(1, 7):
        lines.append(f'[channels.in{i}]\ninstrument = "ls218"\nread = "input_{i}.temperature"\n'
                     f'period_s = 0.02\nunit = "K"\nband_min = 75.0\nband_max = 85.0\n')
    path = tmp / "crash.toml"
    path.write_text("\n".join(lines))
    return path


def test_kill_9_at_random_moments_loses_at_most_the_last_second(tmp_path):
    store = tmp_path / "env.sqlite"
    cfg = _config(tmp_path, store)
    rng = random.Random(SEED)
    report = []
    runs: list[tuple[list, float]] = []
    for i in range(KILLS):
        delay = rng.uniform(0.3, 3.0)
        witness_path = tmp_path / f"witness-{i}.txt"
        proc = subprocess.Popen(
            [sys.executable, "-m", "ionclock", "log", str(cfg), "--quiet",
             "--witness", str(witness_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        kill_wall = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        if not store.exists():
            report.append((i, delay, "killed before the store was created"))
            continue
        runs.append((read_witness(witness_path), kill_wall))
        found = check_store(store, runs)
        report.append((i, round(delay, 2), found["stored"], found["lost_recent"],
                       round(found["lost_recent_max_age"], 3)))
        assert found["integrity"] == "ok", (i, found["integrity"])
        assert not found["invented"], (i, found["invented"][:5])
        assert not found["lost_old"], (i, len(found["lost_old"]), found["lost_old"][:3])
        assert not found["bad_rollups"], (i, found["bad_rollups"])
    print("\nkill  delay_s  rows_in_store  lost_in_last_second  oldest_lost_age_s")
    for row in report:
        print("  ".join(str(x) for x in row))
    # The runs really logged (the kills were not all during start-up), and appended.
    stored = [r[2] for r in report if len(r) == 5]
    assert len(stored) >= KILLS // 2 and stored == sorted(stored) and stored[-1] > 1000


def test_checker_detects_loss(tmp_path):
    """Negative control: remove committed rows older than the risk window; the check sees it."""
    store = tmp_path / "s.sqlite"
    from ionclock.storage.store import Store

    now = time.time()
    witness = [(now - 5.0 + 0.01 * k, "a", float(k), 78.0 + k * 1e-3) for k in range(400)]
    with Store(store) as s:
        s.add_many("samples", [(t, ch, v) for _, ch, t, v in witness])
    assert check_store(store, [(witness, now)])["lost_old"] == []
    db = sqlite3.connect(store)
    db.execute("DELETE FROM samples WHERE t IN (10.0, 11.0)")
    db.execute("UPDATE samples SET value = 0 WHERE t = 12.0")
    db.commit()
    db.close()
    found = check_store(store, [(witness, now)])
    assert [t for _, _, t in found["lost_old"]] == [10.0, 11.0]
    assert found["invented"] == [("a", 12.0)]
    assert ("samples_1m", "a") in found["bad_rollups"]
    # Rows produced inside the last second may be lost: not reported as old losses.
    assert check_store(store, [(witness, now - 5.0 + 0.01 * 11 + 0.5)])["lost_old"] == []
