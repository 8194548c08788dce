"""A 30-simulated-day twin run with faults: drop-outs, an InfluxDB outage, LN2 refills.

The logger polls six PT100 channels (Lake Shore 218 + 224 twins on the cryostat twin) every
120 s for 30 days, streaming to a real InfluxDB (Debian's influxd, private, loopback) that is
stopped from day 10 to day 20. Faults: the LS218's cable pulled for 2 h on day 5, the LS224
hung for 30 min on day 12, the LS218 sending garbage for 20 min on day 20. Checks:

- every stored value is what the instrument read at that time (the cryostat's closed-form
  truth plus the sensor's calibration error, to the unit's resolution); a garbled reply is a
  missing reading (NULL, with a ``reading_missing`` event), only ever inside the garble;
- every poll of the grid is in the store except while its instrument was marked offline, and
  every offline window starts inside an injected fault;
- every LN2 refill the cryostat made is found (within one poll), and no other;
- after the outage InfluxDB holds exactly what the store holds.
"""

from __future__ import annotations

import copy
import logging
import sqlite3
from types import SimpleNamespace

import pytest
import simpy
from test_sinks import influxd  # noqa: F401  (the fixture)

from ionclock.apparatus.registry import make_env_world
from ionclock.logger.poller import Logger, parse_config

DAY = 86400.0
PERIOD = 120.0
CHANNELS = {  # name: (instrument, input, cryostat location)
    "lnc_bottom": ("ls218", "1", "ln2_bottom"), "endcap_1": ("ls218", "2", "endcap_1"),
    "endcap_2": ("ls218", "3", "endcap_2"), "trap_holder": ("ls218", "4", "trap_holder"),
    "bbr_cavity": ("ls218", "5", "bbr_cavity"), "replica_trap": ("ls224", "A", "trap")}
FAULTS = [("ls218", "disconnected", 5 * DAY, 7200.0), ("ls224", "timeout", 12 * DAY, 1800.0),
          ("ls218", "garble", 20 * DAY, 1200.0)]
SEED = 7


def soak_config(path, influx_url):
    channels = {}
    for name, (inst, inp, _) in CHANNELS.items():
        channels[name] = {"instrument": inst, "read": f"input_{inp}.temperature",
                          "period_s": PERIOD, "unit": "K", "band_min": 75.0, "band_max": 85.0}
    channels["lnc_bottom"]["refill_drop"] = 0.5
    return {
        "store": {"path": str(path)},
        "retention": {"raw_days": 90.0},
        "polling": {"max_backoff_s": 600.0},
        "instruments": {
            "ls218": {"model": "lakeshore218", "resource": "sim://lakeshore218",
                      "twin": {"seed": 3}},
            "ls224": {"model": "lakeshore224", "resource": "sim://lakeshore224",
                      "twin": {"seed": 4, "locations": {"A": "trap"}}}},
        "channels": channels,
        "sinks": {"influxdb": {"enabled": True, "url": influx_url, "interval_s": 0.05,
                               "max_backoff_s": 0.5, "timeout_s": 2.0}},
        "simulate": {"seed": SEED, "faults": [
            {"instrument": i, "kind": k, "at_s": a, "duration_s": d} for i, k, a, d in FAULTS]},
    }


def test_thirty_days_with_faults_lose_nothing(tmp_path, influxd, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING)
    influxd.drop()
    path = tmp_path / "soak.sqlite"
    env = simpy.Environment()
    world = make_env_world(env, SEED)
    logger = Logger(parse_config(soak_config(path, influxd.url)), env, world=world,
                    simulate=True).start()
    try:
        logger.run(10 * DAY)
        influxd.stop()  # the outage: local logging must not notice
        try:
            logger.run(20 * DAY)
        finally:
            influxd.start()
        logger.run(30 * DAY)
    finally:
        logger.close(drain_timeout_s=120.0)

    db = sqlite3.connect(path)
    events = db.execute("SELECT t, kind, source FROM events ORDER BY t, rowid").fetchall()
    kinds = [k for _, k, _ in events]

    # 1. Every stored value is what the instrument read: the cryostat truth + sensor error.
    # The world's own cryostat, read back at each sample's time (its refill schedule is
    # already drawn up to day 30, and its temperature is closed-form in t).
    truth = copy.copy(world.cryostat)
    truth.env = SimpleNamespace(now=0.0)
    errors = {name: logger.instruments[inst].driver.twin.sensor_errors[inp]
              for name, (inst, inp, _) in CHANNELS.items()}
    rows = db.execute("SELECT t, channel, value FROM samples ORDER BY t").fetchall()
    garbled = [(a, a + d) for i, k, a, d in FAULTS if k == "garble"]
    worst = 0.0
    for t, ch, v in rows:
        if v is None:   # a garbled reply is a missing reading of its channel (decision 0503)
            assert CHANNELS[ch][0] == "ls218" and any(a <= t < b for a, b in garbled), (t, ch)
            continue
        truth.env.now = t
        worst = max(worst, abs(v - (truth.temperature(CHANNELS[ch][2]) + errors[ch])))
    assert worst < 2e-3  # the units' 5-digit readout (0.001 K) plus the CVD round trip
    missing_events = [(t, src) for t, k, src in events if k == "reading_missing"]
    assert missing_events and all(any(a <= t < b for a, b in garbled)
                                  for t, _ in missing_events)

    # 2. Complete: each grid point is stored unless its instrument was marked offline then.
    offline: dict[str, list[tuple[float, float]]] = {"ls218": [], "ls224": []}
    for t, kind, src in events:
        if kind == "instrument_offline":
            offline[src].append((t, float("inf")))
        elif kind == "instrument_online":
            offline[src][-1] = (offline[src][-1][0], t)
    for inst, windows in offline.items():
        injected = [(a, a + d) for i, _, a, d in FAULTS if i == inst]
        assert windows and all(any(a <= w0 <= b for a, b in injected) for w0, _ in windows)
        assert all(w1 < w0 + 3 * 3600 for w0, w1 in windows)  # came back after each fault
    grid = [k * PERIOD for k in range(int(30 * DAY / PERIOD) + 1)]
    for name, (inst, _, _) in CHANNELS.items():
        have = {t for (t,) in db.execute("SELECT t FROM samples WHERE channel = ?", (name,))}
        missing = [t for t in grid if t not in have]
        assert not have - set(grid)
        assert all(any(w0 <= t < w1 for w0, w1 in offline[inst]) for t in missing), name
        assert 0 < len(missing) < 200
    assert logger.stats.samples == len(rows)

    # 3. Refills: each one the cryostat made, found within one poll; nothing else.
    refills = [r.time for r in world.cryostat.refills()]
    found = [t for t, k, _ in events if k == "ln2_refill"]
    assert len(refills) >= 13 and len(found) == len(refills)
    assert all(0 <= f - r <= PERIOD for f, r in zip(found, refills))

    # 4. InfluxDB: down for ten days, then caught up; holds exactly the store's samples.
    assert "sink_down" in kinds and "sink_up" in kinds
    assert any("delivery failed" in r.message for r in caplog.records)
    store_counts = dict(db.execute("SELECT channel, count(value) FROM samples GROUP BY channel"))
    assert influxd.counts() == store_counts
    assert db.execute("SELECT count(*) FROM events WHERE kind = 'sink_gap'").fetchone()[0] == 0
    print(f"\n30 d soak: {len(rows)} samples, {len(found)} refills found of {len(refills)}, "
          f"offline windows {offline}, influx {sum(influxd.counts().values())} points")


@pytest.mark.parametrize("kind", ["timeout", "disconnected"])
def test_backoff_is_bounded(tmp_path, kind):
    """An instrument down for a day is retried at most max_backoff_s apart."""
    cfg = soak_config(tmp_path / "s.sqlite", "http://127.0.0.1:1")
    cfg["sinks"]["influxdb"]["enabled"] = False
    cfg["simulate"]["faults"] = [{"instrument": "ls224", "kind": kind, "at_s": 3600.0,
                                  "duration_s": DAY}]
    env = simpy.Environment()
    logger = Logger(parse_config(cfg), env, world=make_env_world(env, SEED),
                    simulate=True).start()
    logger.run(2 * DAY)
    logger.close()
    db = sqlite3.connect(tmp_path / "s.sqlite")
    (t_off,), (t_on,) = db.execute("SELECT t FROM events WHERE source = 'ls224' AND kind LIKE"
                                   " 'instrument_o%' ORDER BY t").fetchall()
    assert t_off == 3600.0 and DAY + 3600.0 <= t_on <= DAY + 3600.0 + 600.0
    # ~ (1 day / 600 s) retries, not one per poll and not an ever-growing gap.
    assert 140 <= logger.stats.failed_reads <= 160
