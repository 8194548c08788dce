"""BBR temperature from the envelope of all sensor traces, RF on and off (seed Figs. 1, S2).

The seed takes the upper and lower bounds of every temperature sensor, operational and
replica, with the trap RF on and off (79.5 +/- 1.4 K) and adds the 0.1 K calibration
linearly (79.5 +/- 1.5 K). This is the budget's own evaluation, reused, not copied:
`ionclock.physics.shifts.sensor_envelope` forms the envelope (a replica-trap channel that was never
seen with RF off is widened down by the RF step, 0.4 K, so the envelope still spans both
states) and `ionclock.physics.shifts.bbr` gives the shift from it (seed Eq. 1; uncertainty
Delta(T + dT) - Delta(T), the seed's 3.5e-19).

The interval is the envelope plus calibration: a bound that contains every sensor reading,
not a statistical confidence interval (decision 0800). No fit is made.

CSV columns (one row per reading):

    channel         sensor name (e.g. temp.endcap, temp.replica_trap)
    temperature_k   calibrated reading, K
    rf_on           1 with the trap RF on, 0 with it off
    t_s             (optional) time of the reading, s (for the plot)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ionclock.physics import shifts
from ionclock.procedures.analysis.common import (
    AnalysisResult,
    DataError,
    Estimate,
    finite_array,
    new_figure,
    read_csv,
    save_figure,
)

NAME = "bbr"
COLUMNS = ("channel", "temperature_k", "rf_on")
OPTIONAL = ("t_s",)
REPLICA_CHANNEL = "temp.replica_trap"   # the budget config's default (configs/seed_clock.toml)
E19 = (1e-19, "x 1e-19")


def bbr_temperature(channel, temperature_k, rf_on, t_s=None, *, calibration_k: float = 0.1,
                    replica_channel: str | None = REPLICA_CHANNEL, rf_step_k: float = 0.4,
                    coefficient_300k_hz: float = shifts.BBR_COEFF_300K_SEED_HZ,
                    convention: str = "seed_step") -> AnalysisResult:
    """BBR temperature T +/- dT (K) and the BBR shift from sensor traces (seed Fig. 1, S2).

    dT = half the envelope + `calibration_k` (linear, as the seed). The shift's row is
    `shifts.bbr` on the same traces; one outside its valid range is still reported, and the
    reason given in ``details["bbr_row"]``.
    """
    names = [str(c) for c in np.atleast_1d(np.asarray(channel, dtype=object))]
    temp = finite_array("temperature_k", temperature_k, len(names))
    rf = finite_array("rf_on", rf_on, len(names))
    if not set(np.unique(rf)) <= {0.0, 1.0}:
        raise DataError("rf_on: expected 1 (RF on) or 0 (RF off)")
    if np.any(temp <= 0):
        raise DataError("temperature_k: temperatures must be positive (kelvin)")
    t = None if t_s is None else finite_array("t_s", t_s, len(names))
    traces = []
    for ch in dict.fromkeys(names):
        sel = np.array([n == ch for n in names])
        traces.append(shifts.SensorTrace(ch, float(temp[sel].min()), float(temp[sel].max()),
                                         int(sel.sum())))
    rf_off_seen = bool(np.any(rf == 0))
    env = shifts.sensor_envelope(traces, replica_channel, rf_step_k, rf_off_seen)
    t_mid, dt = env.temperature_k, env.half_range_k + calibration_k
    row = shifts.bbr(traces, calibration_k=calibration_k,
                     coefficient_300k_hz=coefficient_300k_hz, replica_channel=replica_channel,
                     rf_step_k=rf_step_k, rf_off_seen=rf_off_seen, convention=convention)
    ests = [Estimate("temperature", t_mid, dt, t_mid - dt, t_mid + dt, "K")]
    if np.isfinite(row.value):
        ests.append(Estimate("bbr_shift", row.value, row.uncertainty, row.value - row.uncertainty,
                             row.value + row.uncertainty, "", E19))
    return AnalysisResult(
        NAME, tuple(ests), "envelope of all sensors + calibration (a bound, not a fit)",
        convention, len(names),
        data={"channel": names, "temperature_k": temp, "rf_on": rf, "t_s": t},
        details={"envelope": env, "rf_off_seen": rf_off_seen, "bbr_row": row,
                 "calibration_k": calibration_k, "traces": traces})


def read(path: str | Path) -> dict:
    """The arrays of a bbr CSV (columns in the module docstring)."""
    cols = read_csv(path, COLUMNS, OPTIONAL, text=("channel",))
    return {"channel": cols["channel"], "temperature_k": cols["temperature_k"],
            "rf_on": cols["rf_on"], "t_s": cols.get("t_s")}


def from_csv(path: str | Path) -> AnalysisResult:
    """`bbr_temperature` on a CSV file."""
    return bbr_temperature(**read(path))


def plot(result: AnalysisResult, path: str | Path) -> Path:
    """Every sensor's readings (RF off hollow), the envelope and T +/- dT (seed Fig. 1)."""
    d = result.data
    env = result.details["envelope"]
    t = d["t_s"] if d["t_s"] is not None else np.arange(len(d["channel"]), dtype=float)
    fig, ax = new_figure(size=(8.0, 4.8))
    a = ax[0, 0]
    for i, ch in enumerate(dict.fromkeys(d["channel"])):
        sel = np.array([n == ch for n in d["channel"]])
        on, off = sel & (d["rf_on"] == 1), sel & (d["rf_on"] == 0)
        a.plot(t[on] / 3600, d["temperature_k"][on], "o", ms=3, color=f"C{i}", label=ch)
        a.plot(t[off] / 3600, d["temperature_k"][off], "o", ms=3, mfc="none", color=f"C{i}")
    e = result.estimates[0]
    a.axhspan(env.low_k, env.high_k, color="grey", alpha=0.15, label="envelope")
    a.axhline(e.low, color="k", ls="--", lw=0.8, label="T +/- dT")
    a.axhline(e.high, color="k", ls="--", lw=0.8)
    a.axhline(e.value, color="k", lw=0.8)
    a.set_xlabel("time (h)" if d["t_s"] is not None else "reading")
    a.set_ylabel("temperature (K)")
    a.set_title(f"T = {e.value:.2f} +/- {e.sigma:.2f} K (RF off hollow)")
    a.legend(fontsize="x-small", ncols=2)
    return save_figure(fig, path)
