"""Temperature chain speed: CVD inversion, cryostat sampling, Lake Shore 218 twin reads."""

from __future__ import annotations

import time
import types

import simpy

from ionclock.apparatus.registry import open_instrument
from ionclock.physics.rtd import SensorCalibration, cvd_resistance, cvd_temperature
from ionclock.sim_instruments.cryostat import Cryostat


def _rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def main() -> int:
    rs = [cvd_resistance(70.0 + 0.001 * i) for i in range(20000)]
    rate = _rate(lambda i: cvd_temperature(rs[i]), 20000)
    print(f"   cvd_temperature (below 0 C): {rate:,.0f}/s")
    cal = SensorCalibration("s", (0.05, 0.01))
    print(f"   calibrated from_resistance:  "
          f"{_rate(lambda i: cal.from_resistance(rs[i]), 20000):,.0f}/s")
    env = simpy.Environment()
    cryo = Cryostat(env, seed=1)

    def step(i: int) -> None:
        env.run(until=env.now + 60.0)
        cryo.temperatures()
    print(f"   cryostat, 6 locations/min of sim time: {_rate(step, 20000):,.0f} samples/s "
          f"({env.now / 86400:.1f} days)")
    world = types.SimpleNamespace(env=env, cryostat=cryo)
    ls = open_instrument("lakeshore218", "sim://lakeshore218", world=world)
    print(f"   LS218 twin KRDG? 0 round trips: {_rate(lambda i: ls.temperatures, 2000):,.0f}/s")
    return 0


if __name__ == "__main__":
    main()
