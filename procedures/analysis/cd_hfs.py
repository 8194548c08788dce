"""Cd+ P3/2 hyperfine splitting from LIF scans (seed 004 §III, Eqs. 15-17; decision 1200).

Each scan (one line of one isotope) is fitted with the seed's Voigt profile, Eq. 15
(`ionclock.physics.cadmium.voigt_lif`: natural width 60.13 MHz fixed; centre, area, offset
and Doppler width free; Poisson-weighted, see `fit_scan`) against the wavemeter's readings.
Scans of the same isotope are combined by their inverse-variance mean (114Cd+ before and
after the odd isotope: a linear drift of the meter cancels in their mean, and their
difference is printed as the observed drift). Uncertainties as the seed combines them
(`ionclock.physics.cd_lif`):

- a line: statistics (the fit's, covariance scaled by the residual scatter) and the
  wavemeter's drift, 0.5 MHz, in quadrature;
- an offset nu(A) - nu(114) (the seed's sign): both lines' and the Zeeman term, 0.11 MHz;
- the P3/2 HFS by Eq. 17 (`cadmium.p32_hfs_from_offsets`) with the seed's isotope shifts and
  ground HFS, in the seed's convention (headline: offset and isotope-shift uncertainties in
  quadrature, which reproduces 794.6(36) / 835.5(29) MHz) and propagated through Eq. 17 (x 8/3,
  ``nu_hfs_p_A_propagated``); see decision 1200 for which covers the truth on the twin.

Intervals are 95 % (normal quantile) about the standard uncertainties.

CSV columns (a `CdLifScan` results file is one; one row per probe step):

    isotope          111, 113 or 114 (the line scanned)
    frequency_hz     the probe's frequency as the wavemeter read it, Hz (``nan`` where the
                     meter gave an error: such rows are dropped and counted)
    counts           photon counts in the step's dwell
    scan             (optional) scan index: rows of one scan share it (default: one scan per
                     isotope)
    setpoint_hz, dwell_s, time_s, wavemeter_error
                     (optional; the procedure's record) the probe's course, the count's
                     dwell (s), the time since the start (s), the wavemeter's error text on a
                     row without a reading (their kinds are named in the result)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ionclock.physics.cadmium import LORENTZ_FWHM_HZ, voigt_lif
from ionclock.physics.cd_lif import (
    HFS_CONVENTIONS,
    WAVEMETER_DRIFT_HZ,
    ZEEMAN_HZ,
    line_uncertainty_hz,
    offset_uncertainty_hz,
    p32_hfs,
    temperature_from_doppler_fwhm,
)
from ionclock.procedures.analysis.common import (
    LEVEL,
    AnalysisResult,
    DataError,
    estimate,
    least_squares,
    new_figure,
    quantile,
    read_csv,
    save_figure,
)

NAME = "cd-hfs"
COLUMNS = ("isotope", "frequency_hz", "counts")
OPTIONAL = ("scan", "setpoint_hz", "dwell_s", "time_s", "wavemeter_error")
MHZ = (1e6, "MHz")
ODD = (111, 113)


def fit_scan(frequency_hz, counts) -> dict[str, float]:
    """Voigt fit (seed Eq. 15, `cadmium.voigt_lif`) of one scan: centre (Hz), its sigma, nu_G.

    Natural width fixed (60.13 MHz); centre, area, offset and Doppler FWHM free. Weighted
    least squares with Poisson weights sqrt(max(counts, 1)) and the covariance scaled by the
    reduced chi^2 (`common.least_squares`, weights known only up to a scale: the probe's
    intensity noise adds to the shot noise), then refitted with the weights of the fitted
    model. In MHz about the scan's median frequency, with the centre started at the counts'
    centroid above their 20th percentile: an unweighted fit from the highest point
    (`cadmium.fit_voigt_lif`) understated the centre's scatter 1.3-1.5 fold on the twin's
    scans (decision 1200).
    """
    x = np.asarray(frequency_hz, dtype=float)
    y = np.asarray(counts, dtype=float)
    ref = float(np.median(x))
    xm = (x - ref) / 1e6
    base = float(np.percentile(y, 20))
    above = np.clip(y - base, 0.0, None)
    if not np.any(above > 0):
        raise DataError("no line in the scan: the counts are flat")
    c0 = float(np.sum(above * xm) / np.sum(above))
    order = np.argsort(xm)
    area0 = float(np.sum(np.diff(xm[order]) * 0.5 * (above[order][1:] + above[order][:-1])))

    def model(xx, center, area, offset, g_fwhm):
        return voigt_lif(xx, center, area, offset, LORENTZ_FWHM_HZ / 1e6, abs(g_fwhm))

    fit = least_squares(model, xm, y, (c0, max(area0, 1.0), base, 30.0),
                        np.sqrt(np.maximum(y, 1.0)), weights_known=False)
    # once more with the weights of the fitted model (Pearson's chi^2): weights from the
    # observed counts pull the level down by about a count per point (Neyman's chi^2)
    fit = least_squares(model, xm, y, tuple(fit.params),
                        np.sqrt(np.maximum(model(xm, *fit.params), 1.0)), weights_known=False)
    center, area, offset, g = fit.params
    out = {"center_hz": ref + 1e6 * float(center), "center_hz_unc": 1e6 * fit.sigma(0),
           "area": 1e6 * float(area), "offset": float(offset),
           "gauss_fwhm_hz": 1e6 * abs(float(g)), "gauss_fwhm_hz_unc": 1e6 * fit.sigma(3),
           "reduced_chi2": fit.reduced_chi2}
    if not (math.isfinite(out["center_hz_unc"]) and out["center_hz_unc"] > 0):
        raise DataError("the Voigt fit left the line centre undetermined")
    if not (x.min() <= out["center_hz"] <= x.max()):
        raise DataError(f"the fitted line centre lies outside the scan ({ref:.6e} Hz "
                        "+/- half the span): scan across the line")
    return out


def analyse(isotope, frequency_hz, counts, scan=None, *, meter_errors=(),
            convention: str = "seed",
            drift_hz: float = WAVEMETER_DRIFT_HZ, zeeman_hz: float = ZEEMAN_HZ,
            level: float = LEVEL) -> AnalysisResult:
    """Line centres, offsets from 114Cd+ and the P3/2 HFS of the odd isotopes (module doc).

    `convention` names the headline HFS uncertainty ("seed" or "propagated"); both are given.
    """
    if convention not in HFS_CONVENTIONS:
        raise ValueError(f"convention {convention!r}: expected one of "
                         f"{', '.join(HFS_CONVENTIONS)}")
    iso = np.asarray(isotope, dtype=float)
    nu = np.asarray(frequency_hz, dtype=float)
    y = np.asarray(counts, dtype=float)
    sc = np.zeros_like(iso) if scan is None else np.asarray(scan, dtype=float)
    if not (len(iso) == len(nu) == len(y) == len(sc)):
        raise DataError("isotope, frequency_hz, counts and scan must have equal lengths")
    if not set(np.unique(iso)) <= {111.0, 113.0, 114.0}:
        raise DataError("isotope must be 111, 113 or 114 on every row")
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        raise DataError("counts must be finite and >= 0")
    bad = ~np.isfinite(nu)
    dropped = int(bad.sum())
    iso, nu, y, sc = iso[~bad], nu[~bad], y[~bad], sc[~bad]
    q = quantile(level)

    present = {int(a) for a in np.unique(iso)}
    if 114 not in present:
        raise DataError("no 114Cd+ scan: the offsets are measured from the 114Cd+ line")
    if not present & set(ODD):
        raise DataError("no 111Cd+ or 113Cd+ scan: nothing to derive a P3/2 HFS from")
    scans = []          # (isotope, scan id, fit, x, y)
    for key in sorted({(int(a), float(s)) for a, s in zip(iso, sc)}, key=lambda k: k[1]):
        sel = (iso == key[0]) & (sc == key[1])
        if sel.sum() < 8:
            raise DataError(f"scan {key[1]:g} of {key[0]}Cd+ has {int(sel.sum())} points with "
                            "a wavemeter reading: too few for the Voigt fit")
        fit = fit_scan(nu[sel], y[sel])
        scans.append((key[0], key[1], fit, nu[sel], y[sel]))
    odd = [a for a in ODD if a in present]

    lines: dict[int, tuple[float, float]] = {}
    for a in sorted({s[0] for s in scans}):
        fits = [s[2] for s in scans if s[0] == a]
        w = np.array([1.0 / f["center_hz_unc"] ** 2 for f in fits])
        c = np.array([f["center_hz"] for f in fits])
        lines[a] = (float(np.sum(w * c) / np.sum(w)), float(1.0 / math.sqrt(np.sum(w))))

    ests = []
    details: dict = {"scans": [(a, s, f) for a, s, f, _, _ in scans], "dropped": dropped,
                     "drift_hz": drift_hz, "zeeman_hz": zeeman_hz, "warnings": []}
    ref_fits = [s[2] for s in scans if s[0] == 114]
    if len(ref_fits) > 1:
        d = ref_fits[-1]["center_hz"] - ref_fits[0]["center_hz"]
        sd = math.sqrt(ref_fits[0]["center_hz_unc"] ** 2 + ref_fits[-1]["center_hz_unc"] ** 2
                       + 2.0 * drift_hz ** 2)
        details["reference_drift_hz"] = d
        if abs(d) > 3.0 * sd:
            details["warnings"].append(
                f"the 114Cd+ line moved {d / 1e6:+.2f} MHz between its first and last scans, "
                f"beyond 3 sigma of statistics and the {drift_hz / 1e6:g} MHz drift allowance")
    c114, s114 = lines[114]
    for a in odd:
        ca, sa = lines[a]
        off = ca - c114
        off_unc = offset_uncertainty_hz(line_uncertainty_hz(sa, drift_hz),
                                        line_uncertainty_hz(s114, drift_hz), zeeman_hz)
        head = p32_hfs(a, off, off_unc, convention)
        other = "propagated" if convention == "seed" else "seed"
        alt = p32_hfs(a, off, off_unc, other)
        ests.append(estimate(f"nu_hfs_p_{a}", head[0], head[1], q, "Hz", MHZ))
        ests.append(estimate(f"nu_hfs_p_{a}_{other}", alt[0], alt[1], q, "Hz", MHZ))
        ests.append(estimate(f"offset_{a}", off, off_unc, q, "Hz", MHZ))
    for a, (c, s) in lines.items():
        # absolute centres in the details: five digits of THz would say nothing on the line
        details[f"line_{a}_hz"] = c
        details[f"line_{a}_unc_hz"] = line_uncertainty_hz(s, drift_hz)
        details[f"line_{a}_stat_hz"] = s
        widths = [f["gauss_fwhm_hz"] for i, _, f, _, _ in scans if i == a]
        g = float(np.mean(widths))
        details[f"gauss_fwhm_{a}_hz"] = g
        details[f"temperature_{a}_k"] = temperature_from_doppler_fwhm(g, a, c)
    interval = f"{round(100 * level)} % CI, normal; seed 004 uncertainty combination"
    if dropped:
        said = f" ({'; '.join(meter_errors)})" if meter_errors else ""
        details["warnings"].append(f"{dropped} rows without a wavemeter reading dropped{said}")
    # warnings ride in the result line's convention text: printed wherever the result is
    conv = "; ".join([f"HFS uncertainty: {convention}", *details["warnings"]])
    return AnalysisResult(NAME, tuple(ests), interval, conv,
                          int(len(nu)), data={"scans": scans}, details=details)


def read(path: str | Path) -> dict:
    """The arrays of a cd-hfs CSV (a `CdLifScan` results file), as `analyse` takes them."""
    cols = read_csv(path, COLUMNS, OPTIONAL, text=("frequency_hz", "wavemeter_error"))
    freq = []
    for i, cell in enumerate(cols["frequency_hz"]):
        try:
            freq.append(float(cell))
        except ValueError:
            raise DataError(f"{str(path)!r}, data row {i + 1}: column frequency_hz: {cell!r} "
                            "is not a number") from None
    errors = sorted({str(e) for e in cols.get("wavemeter_error", ()) if str(e).strip()})
    return {"isotope": cols["isotope"], "frequency_hz": np.array(freq),
            "counts": cols["counts"], "scan": cols.get("scan"), "meter_errors": errors}


def from_csv(path: str | Path) -> AnalysisResult:
    """`analyse` on a CSV file (the seed's convention as the headline)."""
    return analyse(**read(path))


def plot(result: AnalysisResult, path: str | Path) -> Path:
    """Counts against detuning from each scan's fitted centre, with the Voigt fits (Fig. 3)."""
    scans = result.data["scans"]
    fig, ax = new_figure(1, len(scans), size=(4.0 * len(scans), 3.6))
    for k, (a, s, fit, x, y) in enumerate(scans):
        axis = ax[0, k]
        det = (x - fit["center_hz"]) / 1e6
        xs = np.linspace(det.min(), det.max(), 400)
        model = voigt_lif(xs * 1e6, 0.0, fit["area"], fit["offset"], LORENTZ_FWHM_HZ,
                          fit["gauss_fwhm_hz"])
        axis.plot(det, y, ".", color="tab:orange", label="counts")
        axis.plot(xs, model, color="tab:blue", label="Voigt fit")
        axis.set_title(f"{a}Cd+ scan {s:g}: nu_G {fit['gauss_fwhm_hz'] / 1e6:.1f} MHz",
                       fontsize=9)
        axis.set_xlabel("probe - centre (MHz)")
        if k == 0:
            axis.set_ylabel("counts per step")
            axis.legend(fontsize=8)
    fig.suptitle(result.line()[:110], fontsize=8)
    return save_figure(fig, path)
