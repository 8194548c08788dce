"""`ionclock campaign` on 2 local workers against the same runs one after another.

Target: a campaign of 8 runs (8 seeds x 4 h simulated of the nominal twin) on a local Dask
cluster of 2 worker processes finishes in <= 0.6 x the time of the same 8 runs run serially
in one process (`execute_run` in a loop: the same work, with nothing to start). The parallel
figure includes starting and closing the cluster. Both are measured in this run, with the
machine's load average beside them (a loaded machine makes the ratio worse, not better)
and each run's own wall time in both (a run slower on a worker than serially: the workers
did not have a core each); the two sets of summaries must agree.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ionclock import campaign

RUNS = 8
WORKERS = 2
DURATION = "4h"
TARGET_RATIO = 0.6


def _campaign(out: Path) -> campaign.Campaign:
    spec = {"campaign": {"name": "bench", "duration": DURATION, "seeds": RUNS,
                         "settle": "10m"}}
    return campaign.campaign_from_dict(spec, campaign.ROOT / "configs", out, name="bench")


def _first_difference(a, b, path: str = "") -> str:
    """Where two summaries first differ (a dotted path and the two values)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    return f"{path.lstrip('.')}: {str(a)[:60]} != {str(b)[:60]}"


def main() -> int:
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_campaign_") as tmp:
        # both built now, from one reading of the config: the same runs, the same keys
        serial_c, parallel_c = _campaign(Path(tmp) / "serial"), _campaign(Path(tmp) / "parallel")
        t0 = time.perf_counter()
        serial = {r.folder: campaign.execute_run(r, str(serial_c.out)) for r in serial_c.runs}
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        outcome = campaign.run_campaign(parallel_c, workers=WORKERS, say=lambda text: None,
                                        progress=False)
        t_parallel = time.perf_counter() - t0
    load1 = os.getloadavg()
    pairs = {k: (campaign.comparable(serial[k]), campaign.comparable(outcome.summaries[k]))
             for k in serial if k in outcome.summaries}
    differ = [f"{k}: {_first_difference(a, b)}" for k, (a, b) in pairs.items() if a != b]
    same = not outcome.failures and sorted(outcome.summaries) == sorted(serial) and not differ
    ratio = t_parallel / t_serial
    print(f"   {RUNS} runs x {DURATION}: serial {t_serial:.1f} s (one process), "
          f"{WORKERS} local workers {t_parallel:.1f} s (cluster start included)")
    print(f"   ratio {ratio:.2f} (target <= {TARGET_RATIO}); summaries "
          f"{'identical' if same else 'DIFFER'}; load average {load0[0]:.2f} before, "
          f"{load1[0]:.2f} after, on {os.cpu_count()} cores")
    per_serial = sum(x["wall_s"] for x in serial.values()) / len(serial)
    on_workers = [x["wall_s"] for x in outcome.summaries.values()]
    if on_workers:   # each run's own wall time: > serial's where the workers lacked a core
        print(f"   one run (mean): {per_serial:.1f} s serially, "
              f"{sum(on_workers) / len(on_workers):.1f} s on a worker")
    for line in [*differ, *(f"{k}: failed: {e}" for k, e in outcome.failures.items())]:
        print(f"   DIFFER {line}")
    return 0 if ratio <= TARGET_RATIO and same else 1


if __name__ == "__main__":
    raise SystemExit(main())
