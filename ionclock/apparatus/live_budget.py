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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ionclock.physics.budget import (
    SIGMA_SUFFIX,
    Budget,
    ClockInputs,
    longest_rf_off_s,
    nominal_inputs,
    ratio_estimate,
)
from ionclock.physics.shifts import SensorTrace
from ionclock.storage import calibration as calib
from ionclock.storage.budget_inputs import _window as store_window
from ionclock.storage.budget_inputs import read_meta, run_budget_config
from ionclock.storage.store import read_store

#: Inputs a clock may take from the budget config instead of a measurement; each leaves the
#: list while its channel gives readings (micromotion ratios from the monitor, the pressure
#: from the gauge, <B^2> from a measured channel). The AC field under the seed's convention
#: is a stated bound, not a nominal value (`ac_convention = "seed_bound"`).
NOMINAL_INPUTS = ["micromotion", "background_gas", "qz_ac"]



class LiveBudget:
    """Sliding-window inputs and the budget evaluated on them.

    Readings arrive as store samples (`add_sample`, or the named adders): the temperature
    channels of ``[bbr] channels`` (each one's min and max over the window), the RF state
    channel ``[bbr] rf_state_channel`` (an RF-off reading in the window: the sensors saw the
    trap cold), the pressure ``[background_gas] channel`` (the window's highest reading), and
    the sporadic measurements, the micromotion ratios ``[micromotion] channels`` and
    ``[zeeman] b2_ac_channel``: their readings in the window, else the latest one not older
    than ``[store] max_age_s`` (as `ionclock.storage.budget_inputs` takes them from a store).
    """

    def __init__(self, budget_cfg: dict, window_s: float = 3600.0,
                 nominal_field: bool = False, calibration: dict | None = None,
                 clock_unix: Callable[[float], float] | None = None):
        # measured results (`ionclock measure`) in place of the config's nominal values;
        # each row they change names them and their age (at clock_unix(t), the run's date)
        self.calibration = calibration if calibration and calibration.get("entries") else None
        self._skipped: dict[str, str] = {}
        if self.calibration is not None:
            self._skipped = calib.less_precise(budget_cfg, self.calibration)
            budget_cfg = calib.apply(budget_cfg, self.calibration)
        self.clock_unix = clock_unix
        self.cfg = budget_cfg
        self.window_s = window_s
        self.max_age_s = budget_cfg["store"]["max_age_s"]
        # no clock to measure the field (a logger's store): the config's nominal B, said so
        self.nominal_field = nominal_field
        self.channels = list(budget_cfg["bbr"]["channels"])
        self._temps: dict[str, deque] = {ch: deque() for ch in self.channels}
        self._field: deque = deque()
        self.pressure_channel = budget_cfg["background_gas"]["channel"]
        self._pressure: deque = deque()
        self.rf_state_channel = budget_cfg["bbr"]["rf_state_channel"]
        self._rf_states: deque = deque()   # (t, value) of the RF state channel
        self.ratio_channels = list(budget_cfg["micromotion"]["channels"])
        self.b2_ac_channel = budget_cfg["zeeman"]["b2_ac_channel"]
        sporadic = [*self.ratio_channels, *([self.b2_ac_channel] if self.b2_ac_channel else [])]
        # sporadic channel -> deque of (t, value, sigma); the latest reading is kept past
        # the window (up to max_age_s)
        self._sporadic: dict[str, deque] = {ch: deque() for ch in sporadic}
        self._sigma_of = {ch + SIGMA_SUFFIX: ch for ch in sporadic}
        self._nominal = nominal_inputs(budget_cfg, "live")

    @property
    def sample_channels(self) -> list[str]:
        """Every store channel this budget takes readings from (`add_sample`)."""
        return [*self.channels, self.pressure_channel,
                *([self.rf_state_channel] if self.rf_state_channel else []),
                *self._sporadic, *self._sigma_of]

    def add_sample(self, t: float, channel: str, value: float | None) -> None:
        """One store sample of any channel the budget reads (others are ignored).

        None or NaN (a missing reading) is not kept. A ``<channel>.sigma`` reading is the
        uncertainty of the sporadic channel's reading at the same instant.
        """
        if value is None or not math.isfinite(value):
            return
        if channel in self._temps:
            self._temps[channel].append((t, value))
        elif channel == self.pressure_channel:
            self._pressure.append((t, value))
        elif channel == self.rf_state_channel:
            self._rf_states.append((t, value))
        elif channel in self._sporadic:
            self._sporadic[channel].append((t, value, 0.0))
        elif channel in self._sigma_of:
            q = self._sporadic[self._sigma_of[channel]]
            if q and q[-1][0] == t:
                q[-1] = (t, q[-1][1], value)

    def add_temperature(self, t: float, channel: str, kelvin: float) -> None:
        """One sensor reading (K); NaN (a missing reading) is not kept."""
        if channel in self._temps:
            self.add_sample(t, channel, kelvin)

    def add_pressure(self, t: float, pa: float) -> None:
        """One vacuum-gauge reading (Pa); NaN (a missing reading) is not kept."""
        self.add_sample(t, self.pressure_channel, pa)

    def add_field(self, t: float, b_t: float) -> None:
        """The field from the splittings of one locked frame (T)."""
        self._field.append((t, b_t))

    def _trim(self, t: float) -> None:
        start = t - self.window_s
        for q in (*self._temps.values(), self._field, self._pressure):
            while q and q[0][0] < start:
                q.popleft()
        while self._rf_states and self._rf_states[0][0] < start:
            self._rf_states.popleft()
        for q in self._sporadic.values():   # keep one reading before the window
            while len(q) > 1 and q[1][0] < start:
                q.popleft()
            if q and q[0][0] < t - self.max_age_s:
                q.popleft()

    def _sporadic_values(self, channel: str, t: float) -> tuple[list, str]:
        """(readings [(t, value, sigma)], how): in the window, else the latest within max_age."""
        q = self._sporadic[channel]
        start = t - self.window_s
        inside = [r for r in q if start <= r[0] <= t]
        if inside:
            return inside, "window"
        before = [r for r in q if r[0] < start and t - r[0] <= self.max_age_s]
        if before:
            return [before[-1]], f"latest at t={before[-1][0]:.10g}"
        return [], "none"

    def inputs(self, t: float) -> ClockInputs:
        """The budget's inputs over [t - window, t]."""
        self._trim(t)
        cfg = self.cfg
        traces = tuple(SensorTrace(ch, min(v for _, v in q), max(v for _, v in q), len(q))
                       for ch, q in self._temps.items() if q)
        missing = [ch for ch, q in self._temps.items() if not q]
        nom = self._nominal
        sources: dict[str, str] = {}
        if self._field:
            b = math.sqrt(sum(v * v for _, v in self._field) / len(self._field))
            n_frames = len(self._field)
            sources["qz_dc"] = f"measured: B from the splittings of {n_frames} locked frames"
        else:
            # the nominal field where no clock measures it (n_frames None: a nominal input);
            # else evaluated, but the row is marked invalid below
            b, n_frames = nom.b_rms_t, (None if self.nominal_field else 0)
            sources["qz_dc"] = ("nominal: [zeeman] b_nominal_t (no clock in the store)"
                                if self.nominal_field else "missing: no locked frame")
        notes = ({"qz_dc": "no locked frame (field) in the window"}
                 if not self._field and not self.nominal_field else {})
        if missing:
            notes["bbr"] = f"no reading in the window from {', '.join(missing)}"
        # RF off long enough for the trap to cool (a trip of seconds is no RF-off data)
        rf_off_seen = longest_rf_off_s(self._rf_states) >= cfg["bbr"]["rf_off_min_s"]
        sources["bbr"] = (f"measured: {len(traces)} of {len(self.channels)} sensors, "
                          f"{sum(len(q) for q in self._temps.values())} readings"
                          + (f"; RF off for {cfg['bbr']['rf_off_min_s']:g} s or more seen"
                             if rf_off_seen else
                             f"; RF-off step {cfg['bbr']['rf_step_k']:g} K added (RF not off "
                             f"for {cfg['bbr']['rf_off_min_s']:g} s in the window)"))
        measured = []
        if self._pressure:
            measured.append("background_gas")
            pressure = max(v for _, v in self._pressure)
            sources["bg_gas"] = (f"measured: {self.pressure_channel}, highest of "
                                 f"{len(self._pressure)} readings")
        else:
            pressure = nom.pressure_pa
            sources["bg_gas"] = ("nominal: [background_gas] pressure_pa (no "
                                 f"{self.pressure_channel} reading)")
        ratios, ratio_uncs, how = self._ratios(t)
        if ratios is not None:
            measured.append("micromotion")
            sources["emm"] = f"measured: {', '.join(self.ratio_channels)} ({how})"
        else:
            ratios, ratio_uncs = nom.ratios, nom.ratio_uncs
            sources["emm"] = f"nominal: [micromotion] nominal_ratios ({how})"
        b2_ac = nom.b2_ac_t2
        if self.b2_ac_channel and (vals := self._sporadic_values(self.b2_ac_channel, t)[0]):
            measured.append("qz_ac")
            b2_ac = max(v for _, v, _ in vals)
            sources["qz_ac"] = f"measured: {self.b2_ac_channel}"
        elif cfg["zeeman"]["ac_convention"] == "seed_bound":
            measured.append("qz_ac")   # a stated bound, not a nominal value
            sources["qz_ac"] = ("bound: alpha_z <B^2> with <B^2> <= "
                                f"{cfg['zeeman']['b2_ac_t2'] + cfg['zeeman']['b2_ac_unc_t2']:.3g}"
                                " T^2 ([zeeman] b2_ac_t2 + b2_ac_unc_t2)")
        else:
            sources["qz_ac"] = "nominal: [zeeman] b2_ac_t2"
        sec = cfg["secular"]
        sources["secular"] = ("stated: [secular] heating rates "
                              f"{', '.join(f'{r:g}' for r in sec['heating_rate'])} quanta/s "
                              "and n0 ranges")
        for key, r in cfg["residuals"].items():
            sources[key] = f"bound: {r['source']}" if r["source"] else "bound"
        calibrated = {}
        if self.calibration is not None:
            at = self.clock_unix(t) if self.clock_unix is not None else None
            used = self._config_keys_used(rf_off_seen, "micromotion" in measured,
                                          sources["qz_ac"].startswith("measured"))
            for row, note in calib.row_notes(self.calibration, at, used,
                                             self._skipped).items():
                sources[row] = f"{sources[row]}; {note}" if sources.get(row) else note
            calibrated = {"calibration": calib.provenance(self.calibration, None)}
        return ClockInputs(
            cfg=cfg, traces=traces, rf_off_seen=rf_off_seen, b_rms_t=b,
            b_unc_t=nom.b_unc_t, n_frames=n_frames, b2_ac_t2=b2_ac, ratios=tuple(ratios),
            ratio_uncs=tuple(ratio_uncs), pressure_pa=pressure,
            provenance={"source": "live", "window": [t - self.window_s, t],
                        "temperature_readings": {ch: len(q) for ch, q in self._temps.items()},
                        "field_frames": len(self._field),
                        **({"pressure_readings": len(self._pressure)}
                           if self._pressure else {}),
                        "nominal_inputs": (["field"] if self.nominal_field else [])
                        + [n for n in NOMINAL_INPUTS if n not in measured],
                        "row_sources": sources, **calibrated},
            notes=notes)

    def _config_keys_used(self, rf_off_seen: bool, ratios_measured: bool,
                          b2_measured: bool) -> dict[str, set[tuple[str, str]]]:
        """Per row, the (section, key) pairs of the budget config this evaluation took.

        What the clock measured live leaves the config's value (and a calibration's) unused:
        the field, the ratios, <B^2> from its channel, the pressure, the RF step once an RF-off
        reading is in the window; the nominal sensor ranges are never used live.
        """
        cfg = self.cfg

        def keys(section: str, *leave: str) -> set[tuple[str, str]]:
            return {(section, k) for k in cfg[section] if k not in leave}

        alpha = {("zeeman", "alpha_z_hz_per_mt2"), ("zeeman", "alpha_z_unc_hz_per_mt2")}
        return {
            "qz_dc": alpha | ({("zeeman", "b_nominal_t")} if not self._field else set()),
            "qz_ac": alpha | (set() if b2_measured else
                              {("zeeman", "b2_ac_t2"), ("zeeman", "b2_ac_unc_t2")}),
            "bbr": keys("bbr", "nominal", *(("rf_step_k",) if rf_off_seen else ())),
            "emm": keys("micromotion", *(("nominal_ratios", "ratio_unc")
                                         if ratios_measured else ())),
            "secular": keys("secular"),
            "bg_gas": keys("background_gas", *(("pressure_pa",) if self._pressure else ())),
        }

    def _ratios(self, t: float) -> tuple[list | None, list | None, str]:
        """The micromotion ratios R_i and their uncertainties from the monitor's channels.

        Per beam, <R^2> over its readings (the shift is quadratic in R), with the uncertainty
        the readings' own sigma (rms) and their spread in quadrature; None where a beam has
        no reading within max_age_s (the nominal ratios then, said so).
        """
        if not self.ratio_channels:
            return None, None, "no channels"
        ratios, uncs, hows = [], [], []
        for ch in self.ratio_channels:
            vals, how = self._sporadic_values(ch, t)
            if not vals:
                return None, None, f"no {ch} reading within {self.max_age_s:g} s"
            r, u = ratio_estimate([(v, sigma) for _, v, sigma in vals])
            ratios.append(r)
            uncs.append(u)
            hows.append(how)
        return ratios, uncs, hows[0] if len(set(hows)) == 1 else "; ".join(hows)

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
    return read_store(path, lambda db: replay_db(db, str(path), since, until, config, last_s))


def replay_db(db: sqlite3.Connection, path: str, since: float | None = None,
              until: float | None = None, config: str | Path | dict | None = None,
              last_s: float | None = None) -> Budget:
    """`replay_store` on a connection already open on the store at `path`."""
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
    # the calibration the run used, its results' ages counted on the run's own dates
    t0_unix, t_start = meta.get("t0_unix"), meta.get("t_start_s") or 0.0
    live = LiveBudget(cfg, window, nominal_field=not has_frames,
                      calibration=meta.get("calibration"),
                      clock_unix=(None if t0_unix is None
                                  else lambda ts: float(t0_unix) + ts - float(t_start)))
    start = t - window
    channels = live.sample_channels
    marks = ",".join("?" * len(channels))
    # the same readings the run held: t - window <= t_sample <= t (LiveBudget trims the
    # start), and the sporadic measurements up to max_age_s before the window
    for ts, channel, value in db.execute(
            f"SELECT t, channel, value FROM samples WHERE channel IN ({marks}) AND t <= ? "   # noqa: S608
            "AND t >= ? AND value IS NOT NULL ORDER BY t, rowid",
            (*channels, t, start - live.max_age_s - 1.0)):
        live.add_sample(ts, channel, value)
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
            "nominal_inputs": inputs.provenance["nominal_inputs"],
            "row_sources": inputs.provenance["row_sources"]}
    return Budget.from_inputs(replace(inputs, provenance=prov))
