"""Excess micromotion: the shift from sideband/carrier ratios, and the compensation scan.

**Shift** (DOMAIN §2, seed Eq. 5). R_i is the micromotion-sideband to carrier ratio of Rabi
frequencies seen by beam i, J1(beta_i)/J0(beta_i) ~ beta_i / 2 (the seed says "intensity
ratio"; with R = beta/2 Eq. 5 is the time dilation of the micromotion velocity, so R is the
Rabi-frequency ratio; a ratio of excitation probabilities in weak pulses is R^2). Per beam the
samples give R_i = sqrt(<R^2>) (the shift is quadratic) with the standard error of <R^2> from
the samples' uncertainties, or from their scatter; the row is `ionclock.physics.shifts.micromotion`
(the budget's own function): Delta nu/nu0 = -(Omega/2 pi nu0)^2 [1 - (Omega/Omega_magic)^2]
sum R_i^2, uncertainty from the R_i, Delta alpha_0 and Omega_magic. Interval: value +/-
1.96 sigma.

**Compensation scan**: R^2 against one compensation electrode's voltage is a parabola,
R^2 = a (V - V0)^2 + c (R is linear in the residual field, c what this electrode cannot
null); the fit gives the voltage V0 of least micromotion with its 95 % interval (t(n - 3)
without uncertainties, normal with them). A minimum outside the scanned range is refused.
From R with uncertainty u, sigma(R^2) = sqrt(4 R^2 u^2 + 2 u^4) (the u^4 term keeps points
near R = 0 from dominating); the bias u^2 of R^2 goes into c.

CSV columns, ``micromotion`` (one row per sample):

    beam        beam label (three beams: 1, 2, 3)
    ratio       sideband/carrier Rabi-frequency ratio R
    ratio_unc   (optional) its standard uncertainty; without it each beam needs >= 2 samples
    rf_hz       (optional) trap drive frequency, Hz (same on every row; default 24.801 MHz)

CSV columns, ``compensation`` (one row per voltage):

    voltage_v   compensation-electrode voltage, V
    ratio or r2 R, or R^2, at that voltage
    ratio_unc or r2_unc   (optional) standard uncertainty of the given column
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ionclock.physics import shifts
from ionclock.physics.constants import RF_MAGIC_HZ
from ionclock.procedures.analysis.common import (
    LEVEL,
    AnalysisResult,
    DataError,
    constant,
    estimate,
    finite_array,
    least_squares,
    new_figure,
    quantile,
    read_csv,
    save_figure,
)

NAME = "micromotion"
SCAN_NAME = "compensation"
COLUMNS = ("beam", "ratio")
OPTIONAL = ("ratio_unc", "rf_hz")
SCAN_COLUMNS = ("voltage_v",)
SCAN_OPTIONAL = ("ratio", "ratio_unc", "r2", "r2_unc")
E19 = (1e-19, "x 1e-19")


# --- the shift from R_i (seed Eq. 5) ----------------------------------------------------------
def emm_shift(beam, ratio, ratio_unc=None, *, rf_hz: float = RF_MAGIC_HZ,
              rf_magic_hz: float = RF_MAGIC_HZ, rf_magic_unc_hz: float = shifts.RF_MAGIC_UNC_HZ,
              delta_alpha0_rel_unc: float = shifts.DELTA_ALPHA0_REL_UNC,
              level: float = LEVEL) -> AnalysisResult:
    """EMM shift (fractional) from samples of R on three beams (seed Eq. 5, shifts.micromotion)."""
    labels = [str(b) for b in np.atleast_1d(np.asarray(beam, dtype=object))]
    r = finite_array("ratio", ratio, len(labels))
    u = None if ratio_unc is None else finite_array("ratio_unc", ratio_unc, len(labels))
    if np.any(r < 0) or (u is not None and np.any(u < 0)):
        raise DataError("ratios and their uncertainties must be non-negative")
    names = list(dict.fromkeys(labels))
    if len(names) != 3:
        raise DataError(f"need samples from 3 beams, got {len(names)} ({', '.join(names)})")
    ratios, uncs, counts = [], [], []
    for name in names:
        sel = np.array([lab == name for lab in labels])
        rb = r[sel]
        mean_r2 = float(np.mean(rb ** 2))
        if u is not None:
            s_r2 = float(np.sqrt(np.sum(4 * rb ** 2 * u[sel] ** 2 + 2 * u[sel] ** 4))) / len(rb)
        elif len(rb) >= 2:
            s_r2 = float(np.std(rb ** 2, ddof=1) / math.sqrt(len(rb)))
        else:
            raise DataError(f"beam {name}: one sample and no ratio_unc: give its uncertainty "
                            "or repeat the measurement")
        rbar = math.sqrt(mean_r2)
        ratios.append(rbar)
        # shifts.micromotion propagates 2 R sigma_R: hand it sigma(<R^2>) / (2 R)
        uncs.append(s_r2 / (2 * rbar) if rbar > 0 else math.sqrt(s_r2))
        counts.append(len(rb))
    row = shifts.micromotion(ratios, uncs, rf_hz=rf_hz, rf_magic_hz=rf_magic_hz,
                             rf_magic_unc_hz=rf_magic_unc_hz,
                             delta_alpha0_rel_unc=delta_alpha0_rel_unc)
    if not row.valid:
        raise DataError(f"micromotion row: {row.reason}")
    q = quantile(level)
    return AnalysisResult(
        NAME, (estimate("emm_shift", row.value, row.uncertainty, q, "", E19),),
        "95 % CI, normal, uncertainties of R_i, Delta alpha_0 and Omega_magic propagated",
        "seed Eq. 5, bracket 1 - (Omega/Omega_magic)^2", len(r),
        data={"beam": labels, "ratio": r, "ratio_unc": u},
        details={"row": row, "beams": names, "ratios": ratios, "ratio_uncs": uncs,
                 "counts": counts, "rf_hz": rf_hz})


def read(path: str | Path) -> dict:
    """The arrays of a micromotion CSV (columns in the module docstring)."""
    cols = read_csv(path, COLUMNS, OPTIONAL, text=("beam",))
    out = {"beam": cols["beam"], "ratio": cols["ratio"], "ratio_unc": cols.get("ratio_unc")}
    if "rf_hz" in cols:
        out["rf_hz"] = constant("rf_hz", cols["rf_hz"])
    return out


def from_csv(path: str | Path) -> AnalysisResult:
    """`emm_shift` on a CSV file."""
    return emm_shift(**read(path))


def plot(result: AnalysisResult, path: str | Path) -> Path:
    """R samples per beam and each beam's sqrt(<R^2>) with its 95 % interval."""
    d = result.details
    q = quantile(LEVEL)
    fig, ax = new_figure()
    a = ax[0, 0]
    labels = result.data["beam"]
    for i, name in enumerate(d["beams"]):
        sel = np.array([lab == name for lab in labels])
        a.plot(np.full(sel.sum(), i) + np.linspace(-0.15, 0.15, sel.sum()),
               result.data["ratio"][sel], "o", color="tab:orange", alpha=0.6, ms=4)
        a.errorbar([i], [d["ratios"][i]], yerr=[q * d["ratio_uncs"][i]], fmt="s",
                   color="tab:blue", capsize=4)
    a.set_xticks(range(len(d["beams"])), [f"beam {b}" for b in d["beams"]])
    a.set_ylabel("sideband / carrier ratio R")
    a.set_title(result.estimates[0].text(2) + f" at {d['rf_hz'] / 1e6:.4f} MHz")
    return save_figure(fig, path)


# --- the compensation scan --------------------------------------------------------------------
def parabola(v: np.ndarray, a: float, v0: float, c: float) -> np.ndarray:
    """R^2 = a (V - V0)^2 + c."""
    return a * (v - v0) ** 2 + c


def fit_compensation_scan(voltage_v, r2=None, r2_unc=None, *, ratio=None, ratio_unc=None,
                          weights_known: bool = True, level: float = LEVEL) -> AnalysisResult:
    """Voltage V0 (V) of least micromotion: R^2 = a (V - V0)^2 + c fitted to a scan.

    Give `r2` (R^2, optional `r2_unc`) or `ratio` (R, optional `ratio_unc`).
    """
    v = finite_array("voltage_v", voltage_v)
    if (r2 is None) == (ratio is None):
        raise DataError("give either ratio or r2 (R^2) per voltage")
    if ratio is not None:
        rr = finite_array("ratio", ratio, len(v))
        y = rr ** 2
        sigma = None
        if ratio_unc is not None:
            uu = finite_array("ratio_unc", ratio_unc, len(v))
            sigma = np.sqrt(4 * rr ** 2 * uu ** 2 + 2 * uu ** 4)
    else:
        y = finite_array("r2", r2, len(v))
        sigma = None if r2_unc is None else finite_array("r2_unc", r2_unc, len(v))
    if len(np.unique(v)) < 3:
        raise DataError("a parabola needs at least three different voltages")
    w = None if sigma is None else 1.0 / sigma
    p2, p1, p0 = np.polyfit(v, y, 2, w=w)
    if p2 <= 0:
        raise DataError("R^2 does not rise on both sides: the scan does not bracket the minimum")
    v0 = -p1 / (2 * p2)
    start = (p2, v0, p0 - p1 ** 2 / (4 * p2))
    fit = least_squares(parabola, v, y, start, sigma, weights_known=weights_known,
                        bounds=([0.0, -np.inf, -np.inf], [np.inf, np.inf, np.inf]), level=level)
    a, v0, c = fit.params
    if not v.min() <= v0 <= v.max():
        raise DataError(f"the minimum at {v0:.4g} V lies outside the scanned "
                        f"{v.min():.4g}-{v.max():.4g} V: extend the scan")
    return AnalysisResult(
        SCAN_NAME, (estimate("v_min", v0, fit.sigma(1), fit.q, "V"),
                    estimate("r2_min", c, fit.sigma(2), fit.q, ""),
                    estimate("curvature", a, fit.sigma(0), fit.q, "1/V^2")),
        fit.interval, "R^2 = a (V - V0)^2 + c", len(v),
        data={"voltage_v": v, "r2": y, "r2_unc": sigma},
        details={"fit": fit, "reduced_chi2": fit.reduced_chi2})


def read_scan(path: str | Path) -> dict:
    """The arrays of a compensation CSV (columns in the module docstring)."""
    cols = read_csv(path, SCAN_COLUMNS, SCAN_OPTIONAL)
    if ("ratio" in cols) == ("r2" in cols):
        raise DataError(f"{str(path)!r}: give one of the columns ratio or r2 (found "
                        f"{'both' if 'ratio' in cols else 'neither'})")
    return {"voltage_v": cols["voltage_v"], "ratio": cols.get("ratio"),
            "ratio_unc": cols.get("ratio_unc"), "r2": cols.get("r2"), "r2_unc": cols.get("r2_unc")}


def scan_from_csv(path: str | Path) -> AnalysisResult:
    """`fit_compensation_scan` on a CSV file."""
    return fit_compensation_scan(**read_scan(path))


def plot_scan(result: AnalysisResult, path: str | Path) -> Path:
    """R^2 against voltage with the parabola and the 95 % interval of its minimum."""
    fit = result.details["fit"]
    v, y, s = result.data["voltage_v"], result.data["r2"], result.data["r2_unc"]
    e = result["v_min"]
    vs = np.linspace(v.min(), v.max(), 300)
    fig, ax = new_figure()
    a = ax[0, 0]
    a.errorbar(v, y, yerr=s, fmt="o", color="tab:orange", label="measured")
    a.plot(vs, parabola(vs, *fit.params), color="tab:blue", label="parabola")
    a.axvspan(e.low, e.high, color="tab:green", alpha=0.2, label="V0, 95 % CI")
    a.axvline(e.value, color="tab:green")
    a.set_xlabel("compensation voltage (V)")
    a.set_ylabel("R^2")
    a.set_title(e.text(4))
    a.legend(fontsize="small")
    return save_figure(fig, path)
