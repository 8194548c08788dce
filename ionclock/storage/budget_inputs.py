"""A budget's inputs read from a store window, and the budget of a store.

`gather_store_inputs` turns a store window into `ClockInputs` (channel names from the
budget configuration, see `ionclock.physics.budget`); `budget_from_store` evaluates the budget of a
window; `run_budget_config` finds the configuration a run recorded; `read_meta` reads a
store's meta table. The budget itself (`ionclock.physics.budget`) takes numbers only.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from ionclock.errors import UserError
from ionclock.physics.budget import (
    SIGMA_SUFFIX,
    Budget,
    ClockInputs,
    load_config,
    longest_rf_off_s,
    ratio_estimate,
)
from ionclock.physics.shifts import SensorTrace
from ionclock.storage.store import read_store


# --- live inputs from the store ---------------------------------------------------------------
def _clean(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _window(db: sqlite3.Connection, since: float | None, until: float | None,
            last_s: float | None = None) -> tuple[float, float]:
    """Resolve an open window against the store's time span (`last_s`: since = until - last)."""
    spans = []
    for table in ("samples", "lock_frames", "events"):
        lo, hi = db.execute(f"SELECT MIN(t), MAX(t) FROM {table}").fetchone()  # noqa: S608
        if lo is not None:
            spans.append((lo, hi))
    if not spans:
        raise UserError("store is empty: no samples, frames or events")
    t1 = max(s[1] for s in spans) if until is None else until
    if last_s is not None:
        since = t1 - last_s
    t0 = min(s[0] for s in spans) if since is None else since
    if t1 < t0:
        raise UserError(f"empty window: until ({t1}) is before since ({t0})")
    return t0, t1


def _latest(db: sqlite3.Connection, channel: str, t0: float, t1: float,
            max_age_s: float) -> tuple[list[float], str]:
    """Values of a sporadic channel in the window, else its latest value not older than max_age."""
    vals = [v for (v,) in db.execute(
        "SELECT value FROM samples WHERE channel=? AND t>=? AND t<=? ORDER BY t",
        (channel, t0, t1)) if _clean(v)]
    if vals:
        return vals, "window"
    row = db.execute("SELECT t, value FROM samples WHERE channel=? AND t<? AND value IS NOT NULL "
                     "ORDER BY t DESC LIMIT 1", (channel, t0)).fetchone()
    if row and _clean(row[1]) and t1 - row[0] <= max_age_s:
        return [row[1]], f"latest at t={row[0]}"
    return [], "none"


def gather_store_inputs(path: str | Path, since: float | None, until: float | None,
                        cfg: dict, last_s: float | None = None) -> ClockInputs:
    """Collect the live inputs of a store window [since, until] (store seconds)."""
    return read_store(path, lambda db: _gather(db, str(path), since, until, cfg, last_s))


def _gather(db: sqlite3.Connection, path: str, since: float | None, until: float | None,
            cfg: dict, last_s: float | None) -> ClockInputs:
    t0, t1 = _window(db, since, until, last_s)
    max_age = cfg["store"]["max_age_s"]
    notes: dict[str, str] = {}
    prov: dict[str, Any] = {"source": "store", "store": path, "since": t0, "until": t1,
                            "channels": {}}

    traces = []
    for ch in cfg["bbr"]["channels"]:
        lo, hi, n, ta, tb = db.execute(
            "SELECT MIN(value), MAX(value), COUNT(value), MIN(t), MAX(t) FROM samples "
            "WHERE channel=? AND t>=? AND t<=? AND value IS NOT NULL", (ch, t0, t1)).fetchone()
        prov["channels"][ch] = {"rows": n, "t_first": ta, "t_last": tb}
        if n and _clean(lo) and _clean(hi):
            traces.append(SensorTrace(ch, float(lo), float(hi), int(n)))
    rf_ch = cfg["bbr"]["rf_state_channel"]
    rf_off_seen = False
    if rf_ch:
        states = db.execute("SELECT t, value FROM samples WHERE channel=? AND t>=? AND t<=? "
                            "AND value IS NOT NULL ORDER BY t", (rf_ch, t0, t1)).fetchall()
        off_s = longest_rf_off_s(states)
        rf_off_seen = off_s >= cfg["bbr"]["rf_off_min_s"]
        prov["channels"][rf_ch] = {"rf_off_rows": sum(1 for _, v in states if v == 0),
                                   "longest_rf_off_s": off_s}

    # Field: <B^2> over locked, non-holdover frames; sigma = calibration (+) standard error.
    n, b2, b1, ta, tb = db.execute(
        "SELECT COUNT(b_t), AVG(b_t*b_t), AVG(b_t), MIN(t), MAX(t) FROM lock_frames "
        "WHERE t>=? AND t<=? AND locked=1 AND holdover=0", (t0, t1)).fetchone()
    prov["lock_frames"] = {"rows": n, "t_first": ta, "t_last": tb}
    b_unc = cfg["zeeman"]["b_unc_t"]
    if n:
        b_rms = math.sqrt(b2)
        spread = math.sqrt(max(0.0, b2 - b1 * b1))
        b_unc = math.hypot(b_unc, spread / math.sqrt(n))
        prov["lock_frames"].update(b_rms_t=b_rms, b_spread_t=spread)
    else:
        b_rms = math.nan

    b2_ac = cfg["zeeman"]["b2_ac_t2"]
    if cfg["zeeman"]["b2_ac_channel"]:
        vals, how = _latest(db, cfg["zeeman"]["b2_ac_channel"], t0, t1, max_age)
        prov["channels"][cfg["zeeman"]["b2_ac_channel"]] = {"rows": len(vals), "from": how}
        if vals:
            b2_ac = max(vals)
        else:
            notes["qz_ac"] = (f"no {cfg['zeeman']['b2_ac_channel']} measurement within "
                              f"{max_age:g} s of the window")

    ratios, ratio_uncs = [], []
    for ch in cfg["micromotion"]["channels"]:
        vals, how = _latest(db, ch, t0, t1, max_age)
        prov["channels"][ch] = {"rows": len(vals), "from": how}
        if not vals:
            notes["emm"] = f"no micromotion measurement on {ch} within {max_age:g} s of the window"
            ratios.append(math.nan)
            ratio_uncs.append(0.0)
            continue
        # the readings' own sigma (the monitor's `.sigma` channel, chosen by the same rule),
        # as the live budget takes it: one reading keeps its measurement's sigma
        sig, _ = _latest(db, ch + SIGMA_SUFFIX, t0, t1, max_age)
        if len(sig) != len(vals):
            sig = [math.sqrt(sum(x * x for x in sig) / len(sig)) if sig else 0.0] * len(vals)
        r, u = ratio_estimate(list(zip(vals, sig)))
        ratios.append(r)
        ratio_uncs.append(u)

    ch = cfg["background_gas"]["channel"]
    vals, how = _latest(db, ch, t0, t1, max_age)
    prov["channels"][ch] = {"rows": len(vals), "from": how}
    if vals:
        pressure = max(vals)   # the shift is a bound: take the window's worst pressure
    else:
        pressure = math.nan
        notes["bg_gas"] = f"no pressure reading on {ch} within {max_age:g} s of the window"

    kinds = db.execute("SELECT kind, COUNT(*) FROM events WHERE t>=? AND t<=? GROUP BY kind",
                       (t0, t1)).fetchall()
    prov["events"] = dict(kinds)

    return ClockInputs(cfg=cfg, traces=tuple(traces), rf_off_seen=rf_off_seen, b_rms_t=b_rms,
                       b_unc_t=b_unc, n_frames=int(n), b2_ac_t2=b2_ac,
                       ratios=tuple(ratios), ratio_uncs=tuple(ratio_uncs), pressure_pa=pressure,
                       provenance=prov, notes=notes)


#: The budget config of a store that names none: the seed clock's Table II.
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "seed_clock.toml"


def run_budget_config(meta: dict, config: str | Path | dict | None = None) -> tuple[dict, str]:
    """The budget config for a store, and where it came from.

    `config` if given; else the one the run recorded (``meta.budget_config``), else the
    file its clock config named (``[budget] config``), else the seed clock's.
    """
    if config is not None:
        return load_config(config), "given" if isinstance(config, dict) else str(config)
    if isinstance(meta.get("budget_config"), dict):
        return load_config(meta["budget_config"]), "recorded by the run (meta.budget_config)"
    clock = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    named = (clock.get("budget") or {}).get("config")
    if named and Path(named).is_file():
        return load_config(named), str(named)
    return load_config(DEFAULT_CONFIG), str(DEFAULT_CONFIG)


def read_meta(db: sqlite3.Connection) -> dict:
    """A store's meta table, JSON-decoded (a value that is not JSON as it is)."""
    out: dict[str, Any] = {}
    for key, value in db.execute("SELECT key, value FROM meta"):
        try:
            out[key] = json.loads(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


def budget_from_store(path: str | Path, since: float | None = None, until: float | None = None,
                      config: str | Path | dict | None = None,
                      last_s: float | None = None) -> Budget:
    """Budget of a store window [since, until] (store seconds; None = the store's start/end).

    `last_s` instead of `since`: the window is the last `last_s` seconds before `until`.
    `config` is a budget configuration (path or dict); None: the one the run recorded or
    named, else configs/seed_clock.toml (`run_budget_config`). Every input is measured
    from the store: a missing channel or an empty window gives an invalid row (decision
    0403); `ionclock.apparatus.live_budget.replay_store` is the running clock's method instead.
    """
    if config is None:
        cfg, source = run_budget_config(read_store(path, read_meta))
    else:
        cfg, source = run_budget_config({}, config)
    inputs = gather_store_inputs(path, since, until, cfg, last_s)
    if not isinstance(config, dict):
        inputs = replace(inputs, provenance={**inputs.provenance, "config": source})
    return Budget.from_inputs(inputs)
