"""Quadratic Zeeman coefficient alpha_z from a two-clock comparison (DOMAIN §3, seed Eq. 2).

One clock holds its field at B0, the other is stepped through fields B; their frequency
difference is delta_z = alpha_z (B^2 - B0^2). A weighted straight-line fit of delta_z against
B^2 - B0^2 gives alpha_z with its 95 % confidence interval (the seed's 14.345(40) Hz/mT^2 is
such an interval, seed §"Second-order Zeeman shift").

Conventions (decision 0800): ``offset`` (default) fits delta_z = alpha_z (B^2 - B0^2) + c: the
seed calls its fit "linear" and its two clocks differ by (10.7 +/- 39.0)e-18 in their other
shifts (seed supplement), which c absorbs. ``through_origin`` is Eq. 2 as printed. The
fields are taken as exact (their 1e-9 relative uncertainty is far below the frequencies').

CSV columns (one row per field setting):

    b_t            field of the modulated clock, T
    b0_t           field of the reference clock, T (usually the same on every row)
    delta_hz       frequency of the modulated clock minus the reference's, Hz
    delta_unc_hz   (optional) its standard uncertainty, Hz; without it the fit is
                   unweighted and the interval uses Student's t
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ionclock.procedures.analysis.common import (
    LEVEL,
    AnalysisResult,
    DataError,
    estimate,
    finite_array,
    linear_fit,
    mean_band,
    new_figure,
    read_csv,
    save_figure,
)

NAME = "zeeman"
COLUMNS = ("b_t", "b0_t", "delta_hz")
OPTIONAL = ("delta_unc_hz",)
HZ_PER_MT2 = (1e6, "Hz/mT^2")   # display: Hz/T^2 -> Hz/mT^2
CONVENTIONS = ("offset", "through_origin")


def fit_alpha_z(b_t, delta_hz, delta_unc_hz=None, *, b0_t, convention: str = "offset",
                weights_known: bool = True, level: float = LEVEL) -> AnalysisResult:
    """alpha_z (Hz/T^2) from fields B (T), reference field B0 (T) and differences (Hz).

    delta_z = alpha_z (B^2 - B0^2) [+ c] (seed Eq. 2). `delta_unc_hz` (Hz) given and
    `weights_known`: weighted fit, normal-quantile interval; else Student's t(n - p).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention {convention!r}: expected one of {', '.join(CONVENTIONS)}")
    b = finite_array("b_t", b_t)
    y = finite_array("delta_hz", delta_hz, len(b))
    b0 = np.broadcast_to(finite_array("b0_t", b0_t), b.shape).astype(float)
    sigma = None if delta_unc_hz is None else finite_array("delta_unc_hz", delta_unc_hz, len(b))
    x = b ** 2 - b0 ** 2
    if np.ptp(x) == 0:
        raise DataError("every point has the same B^2 - B0^2: step the field")
    offset = convention == "offset"
    fit = linear_fit(x, y, sigma, intercept=offset, weights_known=weights_known, level=level)
    ests = [estimate("alpha_z", fit.params[0], fit.sigma(0), fit.q, "Hz/T^2", HZ_PER_MT2)]
    if offset:
        ests.append(estimate("offset", fit.params[1], fit.sigma(1), fit.q, "Hz"))
    return AnalysisResult(
        NAME, tuple(ests), fit.interval, convention, len(b),
        data={"x_t2": x, "delta_hz": y, "delta_unc_hz": sigma},
        details={"fit": fit, "reduced_chi2": fit.reduced_chi2})


def read(path: str | Path) -> dict:
    """The arrays of a zeeman CSV (columns in the module docstring), as `fit_alpha_z` takes."""
    cols = read_csv(path, COLUMNS, OPTIONAL)
    return {"b_t": cols["b_t"], "b0_t": cols["b0_t"], "delta_hz": cols["delta_hz"],
            "delta_unc_hz": cols.get("delta_unc_hz")}


def from_csv(path: str | Path) -> AnalysisResult:
    """`fit_alpha_z` on a CSV file."""
    return fit_alpha_z(**read(path))


def plot(result: AnalysisResult, path: str | Path) -> Path:
    """delta_z against B^2 - B0^2 with the fit, its 95 % band and the residuals (seed Fig. 10)."""
    fit = result.details["fit"]
    x, y, s = result.data["x_t2"], result.data["delta_hz"], result.data["delta_unc_hz"]
    offset = result.convention == "offset"
    fig, ax = new_figure(2, 1, height_ratios=(3, 1))
    top, bottom = ax[0, 0], ax[1, 0]
    xs = np.linspace(min(x.min(), 0.0), max(x.max(), 0.0), 200)
    model = fit.params[0] * xs + (fit.params[1] if offset else 0.0)
    band = mean_band(xs, fit, offset)
    xm = 1e6  # T^2 -> mT^2
    top.errorbar(x * xm, y, yerr=s, fmt="o", color="tab:orange", label="measured")
    top.plot(xs * xm, model, color="tab:blue", label="fit")
    top.fill_between(xs * xm, model - band, model + band, color="tab:blue", alpha=0.2,
                     label="95 % band")
    top.set_ylabel("delta_z (Hz)")
    top.set_title(result["alpha_z"].text())
    top.legend()
    resid = y - (fit.params[0] * x + (fit.params[1] if offset else 0.0))
    bottom.errorbar(x * xm, resid, yerr=s, fmt="o", color="tab:orange")
    bottom.axhline(0.0, color="tab:blue")
    bottom.set_xlabel("B^2 - B0^2 (mT^2)")
    bottom.set_ylabel("residual (Hz)")
    return save_figure(fig, path)
