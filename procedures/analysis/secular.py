"""The secular-motion (time-dilation) budget row from heating rates (DOMAIN §2, seed Table I).

The row itself is `ionclock.physics.shifts.secular_motion` (the budget's own function, not a copy):
shift = -sum_i TD_i (nbar_i + 1/2), TD_i = h f_i / (m c^2) (the seed's convention: every mode
with micromotion-doubled kinetic energy), nbar_i = n0_i + ndot_i t_bar, t_bar = 44 ms.
The seed's heating-rate uncertainties are 95 % confidence half-widths (its Fig. 3: "all fit
results include 95 % confidence intervals") and its +/-0.4e-19 is their linear sum times
t_bar plus the n0 half-ranges (``seed_linear``); ``quadrature`` adds the same terms in
quadrature. Either way the interval is value +/- that uncertainty: built from 95 % half-widths
and full ranges, it is a bound at (at least) the 95 % level, not a fitted interval.

`secular_row_from_fits` takes the three modes' heating-rate fits (`thermometry`): ndot and its
95 % half-width, and the n0 range from the fit's 95 % interval of n0 (cut at 0).

CSV columns (one row per mode, x, y, z in that order):

    mode             x, y or z
    frequency_hz     secular frequency, Hz
    heating_rate     ndot, quanta/s
    heating_rate_ci  its 95 % confidence half-width, quanta/s
    n0_low, n0_high  range of the occupation after sideband cooling, quanta
    mean_delay_s     (optional) t_bar, s (same on every row; default 0.044)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ionclock.physics import shifts
from ionclock.procedures.analysis.common import (
    AnalysisResult,
    DataError,
    Estimate,
    constant,
    finite_array,
    new_figure,
    read_csv,
    save_figure,
)

NAME = "secular"
COLUMNS = ("mode", "frequency_hz", "heating_rate", "heating_rate_ci", "n0_low", "n0_high")
OPTIONAL = ("mean_delay_s",)
E19 = (1e-19, "x 1e-19")


def secular_row(heating_rate, heating_rate_ci, *,
                frequencies_hz: Sequence[float] = shifts.SECULAR_FREQS_HZ,
                n0_low: Sequence[float] = tuple(r[0] for r in shifts.N0_RANGES),
                n0_high: Sequence[float] = tuple(r[1] for r in shifts.N0_RANGES),
                mean_delay_s: float = shifts.MEAN_PROBE_DELAY_S,
                convention: str = "seed_linear") -> AnalysisResult:
    """The secular-motion row (fractional) from heating rates and their 95 % half-widths.

    x, y, z in that order; defaults are the seed's Table I. An input the budget's model
    refuses (negative rate, reversed range, nbar beyond its range) is a `DataError`.
    """
    rates = finite_array("heating_rate", heating_rate, 3)
    cis = finite_array("heating_rate_ci", heating_rate_ci, 3)
    freqs = finite_array("frequencies_hz", frequencies_hz, 3)
    lo = finite_array("n0_low", n0_low, 3)
    hi = finite_array("n0_high", n0_high, 3)
    row = shifts.secular_motion(list(freqs), list(zip(lo, hi)), list(zip(rates, cis)),
                                float(mean_delay_s), convention=convention)
    if not row.valid:
        raise DataError(f"secular-motion row: {row.reason}")
    est = Estimate("secular_shift", row.value, row.uncertainty, row.value - row.uncertainty,
                   row.value + row.uncertainty, "", E19)
    return AnalysisResult(
        NAME, (est,), "+/- the budget row's uncertainty (95 % half-widths and n0 ranges)",
        convention, 3,
        data={"frequencies_hz": freqs, "heating_rate": rates, "heating_rate_ci": cis,
              "n0_low": lo, "n0_high": hi, "nbar": np.array(row.inputs["nbar"])},
        details={"row": row, "mean_delay_s": float(mean_delay_s),
                 "components": dict(row.components)})


def secular_row_from_fits(heating_fits: Sequence[AnalysisResult], *,
                          frequencies_hz: Sequence[float] = shifts.SECULAR_FREQS_HZ,
                          mean_delay_s: float = shifts.MEAN_PROBE_DELAY_S,
                          convention: str = "seed_linear") -> AnalysisResult:
    """The row from three heating-rate fits (x, y, z) of `thermometry.fit_heating_rate`."""
    if len(heating_fits) != 3:
        raise DataError(f"need heating-rate fits of 3 modes, got {len(heating_fits)}")
    rates = [f["heating_rate"] for f in heating_fits]
    n0 = [f["n0"] for f in heating_fits]
    return secular_row([r.value for r in rates], [r.half_width for r in rates],
                       frequencies_hz=frequencies_hz,
                       n0_low=[max(e.low, 0.0) for e in n0],
                       n0_high=[max(e.high, 0.0) for e in n0],
                       mean_delay_s=mean_delay_s, convention=convention)


def read(path: str | Path) -> dict:
    """The arrays of a secular CSV (columns in the module docstring), rows put in x, y, z order."""
    cols = read_csv(path, COLUMNS, OPTIONAL, text=("mode",))
    modes = [str(m).strip().lower() for m in cols["mode"]]
    if sorted(modes) != ["x", "y", "z"]:
        raise DataError(f"{str(path)!r}: column mode must name x, y and z once each "
                        f"(found {', '.join(modes)})")
    order = [modes.index(m) for m in "xyz"]
    out = {"heating_rate": cols["heating_rate"][order],
           "heating_rate_ci": cols["heating_rate_ci"][order],
           "frequencies_hz": cols["frequency_hz"][order],
           "n0_low": cols["n0_low"][order], "n0_high": cols["n0_high"][order]}
    if "mean_delay_s" in cols:
        out["mean_delay_s"] = constant("mean_delay_s", cols["mean_delay_s"])
    return out


def from_csv(path: str | Path) -> AnalysisResult:
    """`secular_row` on a CSV file."""
    return secular_row(**read(path))


def plot(result: AnalysisResult, path: str | Path) -> Path:
    """Per-mode contribution TD_i (nbar_i + 1/2) with its uncertainty, and the total."""
    d = result.data
    comps = result.details["components"]
    td = np.array([shifts.time_dilation_per_quantum(f) for f in d["frequencies_hz"]])
    contrib = -td * (d["nbar"] + 0.5) / 1e-19
    err = np.array([abs(comps[f"nbar_{m}"]) for m in "xyz"]) / 1e-19
    fig, ax = new_figure()
    a = ax[0, 0]
    a.bar(["x", "y", "z"], contrib, yerr=err, color="tab:blue", capsize=4)
    e = result.estimates[0]
    a.axhline(0.0, color="k", lw=0.5)
    a.set_ylabel("shift (1e-19)")
    a.set_title(f"{e.text(2)}; nbar = " + ", ".join(f"{n:.3f}" for n in d["nbar"]))
    return save_figure(fig, path)
