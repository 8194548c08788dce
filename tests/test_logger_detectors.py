"""Event detectors fed one reading at a time: refills, calibrated band, ion lost."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from ionclock.logger.alarms import BandDetector, IonLostDetector, RefillDetector


def cryostat_like(seed: int, refills: list[float], period: float = 60.0, days: float = 6.0):
    """Slow warming, 1-3 K drops at `refills` (s) recovering over 2 h, 3 mK noise."""
    rng = random.Random(seed)
    depth = {r: rng.uniform(1.0, 3.0) for r in refills}
    for k in range(int(days * 86400 / period)):
        t = k * period
        v = 78.3 + 0.15 * t / 86400  # slow warming as the LN2 level falls
        v -= sum(d * math.exp(-(t - r) / 7200.0) for r, d in depth.items() if t >= r)
        yield t, v + rng.gauss(0.0, 0.003)


@given(st.integers(0, 10_000))
def test_refills_found_once_each_and_nothing_else(seed):
    rng = random.Random(seed)
    refills = sorted(rng.uniform(0.5, 1.5) * 86400 + i * 1.7 * 86400 for i in range(3))
    det = RefillDetector(drop=0.5, window_s=900.0, holdoff_s=6 * 3600.0)
    found = [hit["t_refill"] for t, v in cryostat_like(seed, refills)
             if (hit := det.update(t, v))]
    assert len(found) == len(refills)
    assert all(0 <= f - r <= 60.0 for f, r in zip(found, refills))


def test_slow_cooling_is_not_a_refill():
    det = RefillDetector(drop=0.5, window_s=900.0)
    # 1 K over 6 h: 0.04 K per 15 min, never 0.5 K within the window.
    assert not any(det.update(t, 80.0 - t / 21600.0) for t in range(0, 21600, 60))


def test_band_detector_reports_changes_only():
    det = BandDetector(75.0, 85.0)
    seq = [80.0, 80.5, 86.0, 87.0, 84.0, 74.0, 76.0]
    assert [det.update(v) for v in seq] == [None, None, "out_of_band", None, "in_band",
                                            "out_of_band", "in_band"]
    first_out = BandDetector(75.0, 85.0)
    assert first_out.update(90.0) == "out_of_band"
    assert BandDetector(None, 85.0).update(-1e9) is None


def test_ion_lost_needs_consecutive_low_counts():
    det = IonLostDetector(threshold=5, count=3)
    seq = [40, 2, 1, 40, 1, 0, 2, 0, 38, 41]
    assert [det.update(v) for v in seq] == [None, None, None, None, None, None, "ion_lost",
                                            None, "ion_recovered", None]
