"""`ionclock report` on a long record: wall time to evaluate 10 days of frames.

Target: a 10-day run (~690,000 frames) is evaluated, figures included, in under a minute
on one core. The store is synthetic (white FM at 3e-15 per frame, the real schema).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ionclock.physics.constants import NU0_CA, ZEEMAN_LINES
from ionclock.report import make_report
from ionclock.servo.clock_lock import ServoParams
from ionclock.storage.store import Store

TARGET_S = 60.0


def _write(path: Path, days: float, seed: int = 1) -> int:
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / 1.26)
    t = 1.26 * np.arange(1, n + 1)
    det = NU0_CA * 3e-15 * rng.standard_normal(n)
    b_true = 37.197e-6 + 1e-12 * rng.standard_normal(n)
    b = b_true + 0.5e-12 * rng.standard_normal(n)
    z = np.array([line.zeeman_hz_per_t for line in ZEEMAN_LINES])
    offs = z[None, :] * b[:, None] + 0.3 * rng.standard_normal((n, 6))
    d = det[:, None] + 0.2 * rng.standard_normal((n, 6))
    frames = np.column_stack([t, np.arange(n), det, np.zeros(n), b, offs, np.ones(n),
                              np.zeros(n)]).tolist()
    truth = np.column_stack([np.arange(n), t, det, b_true, d, np.zeros(n)]).tolist()
    with Store(path, commit_interval=1e9, max_buffer=10**7) as st:
        st.set_meta(simulated=True, servo=asdict(ServoParams()))
        st.event(0.0, "servo_started", "servo")
        st.add_many("lock_frames", (tuple(r[:1]) + (int(r[1]),) + tuple(r[2:11])
                                    + (int(r[11]), int(r[12]), None, None, None)
                                    for r in frames))
        st.add_many("twin_truth", ((int(r[0]),) + tuple(r[1:]) for r in truth))
    return n


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "ionclock.sqlite"
        n = _write(store, days=10.0)
        t0 = time.perf_counter()
        s = make_report(Path(tmp), Path(tmp) / "report")
        wall = time.perf_counter() - t0
    print(f"   report of 10 d ({n:,} frames): {wall:.1f} s wall (target < {TARGET_S:.0f} s)")
    print(f"   ADEV/QPN at 100 s {s['adev_over_qpn']['100']:.2f}, "
          f"at 10000 s {s['adev_over_qpn']['10000']:.2f}")
    return 0 if wall < TARGET_S else 1
