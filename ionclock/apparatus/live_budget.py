"""The live shift budget of a running clock (issue 6).

`LiveBudget` keeps a sliding window of what the clock measures: every temperature sensor's
readings (BBR), the field from the Zeeman splittings of locked frames (quadratic Zeeman)
and, with a vacuum gauge, the pressure (background gas: the window's highest reading, as
`ionclock.storage.budget_inputs` takes it), and evaluates the budget of
`ionclock.physics.budget` on that window. Inputs the clock does not measure live
(micromotion ratios, <B^2>, the pressure without a gauge) come from the budget config's
nominal values, and the budget's provenance says so. A sensor with no reading in the window makes
the BBR row invalid (never a silent zero), and an invalid budget yields no corrected output.

`replay_store` evaluates the same budget afterwards from a store (`ionclock budget STORE`):
the readings and locked frames the run recorded are fed through a `LiveBudget` in time
order, so a clock run's last ``budgets`` row comes out again, row for row. A store without
a clock in it (a logger's) has no field measurement: its field is the config's nominal
value, named with the other nominal inputs (docs/decisions/0502).
"""

from __future__ import annotations

import math
import sqlite3
from collections import deque
from dataclasses import replace
from pathlib import Path

from ionclock.physics.budget import Budget, ClockInputs, nominal_inputs
from ionclock.physics.shifts import SensorTrace
from ionclock.storage.budget_inputs import _window as store_window
from ionclock.storage.budget_inputs import read_meta, run_budget_config
from ionclock.storage.store import read_store

#: Inputs a clock does not measure live (the budget config's nominal values); the pressure
#: leaves the list while a vacuum gauge ([instruments.pressure]) gives readings.
NOMINAL_INPUTS = ["micromotion", "background_gas", "qz_ac"]


class LiveBudget:
    """Sliding-window inputs and the budget evaluated on them."""

    def __init__(self, budget_cfg: dict, window_s: float = 3600.0,
                 nominal_field: bool = False):
        self.cfg = budget_cfg
        self.window_s = window_s
        # no clock to measure the field (a logger's store): the config's nominal B, said so
        self.nominal_field = nominal_field
        self.channels = list(budget_cfg["bbr"]["channels"])
        self._temps: dict[str, deque] = {ch: deque() for ch in self.channels}
        self._field: deque = deque()
        self.pressure_channel = budget_cfg["background_gas"]["channel"]
        self._pressure: deque = deque()
        self._nominal = nominal_inputs(budget_cfg, "live")

    def add_temperature(self, t: float, channel: str, kelvin: float) -> None:
        """One sensor reading (K); NaN (a missing reading) is not kept."""
        if channel in self._temps and math.isfinite(kelvin):
            self._temps[channel].append((t, kelvin))

    def add_pressure(self, t: float, pa: float) -> None:
        """One vacuum-gauge reading (Pa); NaN (a missing reading) is not kept."""
        if math.isfinite(pa):
            self._pressure.append((t, pa))

    def add_field(self, t: float, b_t: float) -> None:
        """The field from the splittings of one locked frame (T)."""
        self._field.append((t, b_t))

    def _trim(self, t: float) -> None:
        start = t - self.window_s
        for q in (*self._temps.values(), self._field, self._pressure):
            while q and q[0][0] < start:
                q.popleft()

    def inputs(self, t: float) -> ClockInputs:
        """The budget's inputs over [t - window, t]."""
        self._trim(t)
        traces = tuple(SensorTrace(ch, min(v for _, v in q), max(v for _, v in q), len(q))
                       for ch, q in self._temps.items() if q)
        missing = [ch for ch, q in self._temps.items() if not q]
        nom = self._nominal
        if self._field:
            b = math.sqrt(sum(v * v for _, v in self._field) / len(self._field))
            n_frames = len(self._field)
        else:
            # the nominal field where no clock measures it (n_frames None: a nominal input);
            # else evaluated, but the row is marked invalid below
            b, n_frames = nom.b_rms_t, (None if self.nominal_field else 0)
        notes = ({"qz_dc": "no locked frame (field) in the window"}
                 if not self._field and not self.nominal_field else {})
        if missing:
            notes["bbr"] = f"no reading in the window from {', '.join(missing)}"
        measured = ["background_gas"] if self._pressure else []
        pressure = max(v for _, v in self._pressure) if self._pressure else nom.pressure_pa
        return ClockInputs(
            cfg=self.cfg, traces=traces, rf_off_seen=False, b_rms_t=b, b_unc_t=nom.b_unc_t,
            n_frames=n_frames, b2_ac_t2=nom.b2_ac_t2, ratios=nom.ratios,
            ratio_uncs=nom.ratio_uncs, pressure_pa=pressure,
            provenance={"source": "live", "window": [t - self.window_s, t],
                        "temperature_readings": {ch: len(q) for ch, q in self._temps.items()},
                        "field_frames": len(self._field),
                        **({"pressure_readings": len(self._pressure)} if measured else {}),
                        "nominal_inputs": (["field"] if self.nominal_field else [])
                        + [n for n in NOMINAL_INPUTS if n not in measured]},
            notes=notes)

    def evaluate(self, t: float) -> Budget:
        """The budget over the window ending at t."""
        return Budget.from_inputs(self.inputs(t))


# --- the live budget again, from a store ------------------------------------------------------
def replay_store(path: str | Path, since: float | None = None, until: float | None = None,
                 config: str | Path | dict | None = None,
                 last_s: float | None = None) -> Budget:
    """The live budget of a store window, as the running clock evaluates it (store seconds).

    The window ends at `until` and spans `last_s`, or back to `since`; by default, on a
    clock run's store, it is the run's last live-budget window (its last ``budgets`` row,
    whose total this reproduces), else the window length the run used up to the store's
    end, else the whole store. Temperatures and the field from the Zeeman splittings are
    the store's; micromotion, pressure and the AC field are the config's nominal values
    (`NOMINAL_INPUTS`, and the field too where the store has no lock frames at all).
    """
    return read_store(path, lambda db: _replay(db, str(path), since, until, config, last_s))


def _replay(db: sqlite3.Connection, path: str, since: float | None, until: float | None,
            config: str | Path | dict | None, last_s: float | None) -> Budget:
    meta = read_meta(db)
    cfg, source = run_budget_config(meta, config)
    run_cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    run_window = (run_cfg.get("budget") or {}).get("window_s")
    last_row = db.execute("SELECT t FROM budgets ORDER BY t DESC LIMIT 1").fetchone()
    if since is None and until is None and last_s is None and last_row and run_window:
        t, window = float(last_row[0]), float(run_window)
        how = f"the run's last live budget, t = {t:.10g} s"
    else:
        t0, t = store_window(db, since, until, last_s)
        if since is None and last_s is None and run_window:
            window, how = float(run_window), "the run's live-budget window"
        else:
            window, how = t - t0, "given" if (since is not None or last_s is not None) else (
                "the whole store")
    has_frames = db.execute("SELECT 1 FROM lock_frames LIMIT 1").fetchone() is not None
    live = LiveBudget(cfg, window, nominal_field=not has_frames)
    start = t - window
    channels = list(cfg["bbr"]["channels"])
    marks = ",".join("?" * len(channels))
    # the same readings the run held: t - window <= t_sample <= t (LiveBudget trims the start)
    for ts, channel, value in db.execute(
            f"SELECT t, channel, value FROM samples WHERE channel IN ({marks}) AND t <= ? "   # noqa: S608
            "AND t >= ? AND value IS NOT NULL ORDER BY t", (*channels, t, start - 1.0)):
        live.add_temperature(ts, channel, value)
    for ts, value in db.execute(
            "SELECT t, value FROM samples WHERE channel = ? AND t <= ? AND t >= ? "
            "AND value IS NOT NULL ORDER BY t", (live.pressure_channel, t, start - 1.0)):
        live.add_pressure(ts, value)
    for tf, b in db.execute("SELECT t, b_t FROM lock_frames WHERE locked = 1 AND t <= ? "
                            "AND t >= ? ORDER BY t", (t, start - 1.0)):
        live.add_field(tf, b)
    inputs = live.inputs(t)
    prov = {"source": "store", "method": "live (as the running clock)", "store": path,
            "window": how, "since": t - window, "until": t, "config": source,
            "temperature_readings": inputs.provenance["temperature_readings"],
            "field_frames": inputs.provenance["field_frames"],
            **({"pressure_readings": inputs.provenance["pressure_readings"]}
               if "pressure_readings" in inputs.provenance else {}),
            "nominal_inputs": inputs.provenance["nominal_inputs"]}
    return Budget.from_inputs(replace(inputs, provenance=prov))
