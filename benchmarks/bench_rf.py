"""RF amplitude stabilisation over a simulated week: radial secular drift with and without.

The same seeded drift realisation (coupling random walk 3e-3/sqrt(day) plus a
temperature-like wander) runs twice: once free, once with the stabiliser driving the SG380
twin from the pickoff DMM twin through the real drivers. The true secular frequencies are
sampled every 5 s; "drift" is the largest departure of a 10-minute mean from the first one,
"peak" the largest instantaneous departure (bounded by the source's 0.01 dB step, see
docs/decisions/0300-rf-actuator-resolution.md).
"""

from __future__ import annotations

import time

import numpy as np

from ionclock.apparatus.registry import open_instrument
from ionclock.servo.rf_stabiliser import RFStabiliserConfig, default_controller, rf_stabiliser
from ionclock.sim_instruments.trap_rf import RFWorld

WEEK_S = 7 * 86400.0


def run(loop: bool, seed: int, duration_s: float = WEEK_S) -> dict:
    world = RFWorld(seed=seed)
    if loop:
        sg = open_instrument("sg380", "sim://sg380", world=world)
        dmm = open_instrument("dmm_34465a", "sim://dmm_34465a", world=world)
        cfg = RFStabiliserConfig()
        world.env.process(rf_stabiliser(world.env, sg, dmm, default_controller(cfg), cfg))
    samples: list = []

    def monitor(env):
        yield env.timeout(2.5)
        while True:
            samples.append(world.trap_rf.secular_frequencies()[:2])
            yield env.timeout(5.0)

    world.env.process(monitor(world.env))
    t0 = time.perf_counter()
    world.env.run(until=duration_s)
    wall = time.perf_counter() - t0
    f = np.asarray(samples)
    n = len(f) // 120 * 120
    means = f[:n].reshape(-1, 120, 2).mean(axis=1)
    drift = np.abs(means - means[0]).max(axis=0)
    peak = np.abs(f - f[0]).max(axis=0)
    return {"drift": drift, "peak": peak, "wall": wall}


def main() -> int:
    print("   radial secular drift over 7 simulated days (10-min means | instantaneous peak)")
    ok = True
    for seed in (1, 2, 3):
        free = run(False, seed)
        held = run(True, seed)
        print(f"   seed {seed}: without loop  max|dfx| {free['drift'][0]:8.0f} Hz  "
              f"max|dfy| {free['drift'][1]:8.0f} Hz")
        print(f"           with loop     max|dfx| {held['drift'][0]:8.0f} Hz  "
              f"max|dfy| {held['drift'][1]:8.0f} Hz  (peak {held['peak'][0]:.0f} / "
              f"{held['peak'][1]:.0f} Hz; {held['wall']:.1f} s wall)")
        ok &= bool((held["drift"] < 2e3).all())
    print(f"   target < 2 kHz long-term drift: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1
