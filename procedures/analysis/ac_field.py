"""<B_perp^2> of the RF-induced AC magnetic field from the g-factor ratio (DOMAIN §3, seed Eq. 6).

An AC field B_perp cos(Omega_RF t) perpendicular to the DC field B0 shifts the Zeeman
splittings of S1/2 and D5/2 by different fractions, so the ratio r of the splittings
measured at B0 departs from the unperturbed g_D/g_S (seed supplement, §"Quadratic Zeeman
(AC) shift", Eq. 6, after Gan et al. 2018 and Arnold et al. 2020):

    r = [1 + 1/2 A_D <B_perp^2>/B0^2] / [1 + 1/2 A_S <B_perp^2>/B0^2] * g_D/g_S.

omega_S and omega_D are the Larmor frequencies (adjacent-sublevel splittings) of S1/2 and
D5/2 at B0: omega_J = 2 pi g_J (muB/h) B0, with DOMAIN §1's g_S, g_D and muB/h; Omega_RF =
2 pi x 24.801 MHz. Two conventions (decision 0800):

- ``seed`` (default): Eq. 6 as printed (and as DOMAIN §3 copies it):
  A_D = omega_D^2 / (omega_S^2 - Omega_RF^2), A_S = omega_S^2 / (omega_D^2 - Omega_RF^2);
- ``physical``: each level shifted by its own off-resonant drive (two counter-rotating
  components, Bloch–Siegert): A_J = omega_J^2 / (omega_J^2 - Omega_RF^2). The seed's
  formula swaps the two denominators; at Omega_RF >> omega the two differ by 0.55 % in
  <B_perp^2>.

Solved for x = <B_perp^2>/B0^2: with q = r / (g_D/g_S), x = (q - 1) / (a - b q) (a, b the
half-coefficients of numerator and denominator). The result hardly depends on B0: a and b
scale as B0^2.

g_D/g_S: the seed uses "the precisely measured value" of its ref. [43] without printing it,
and states that it limits the uncertainty. DOMAIN §1's g_D = 1.2003340 (Chwalla et al. 2009,
+/-3e-7) gives 0.5994906(2), 3e-6 away from the seed's r and 12x too coarse to resolve
1e-13 T^2. The default here, 0.599488791(20), is the value the seed's own r = 0.599488818(9)
and <B_perp^2> = 11(9)e-14 T^2 imply (its uncertainty is what the 9e-14 leaves after r's
share): give the measured value with `g_ratio` when it is known.

CSV columns (one row per measurement of r; rows are averaged with their r and B0 weights,
the g-ratio uncertainty, common to all, added once):

    r              measured ratio of the Zeeman splittings, g_D/g_S as perturbed
    r_unc          its standard uncertainty
    b0_t           DC field during the measurement, T
    b0_unc_t       its standard uncertainty, T
    g_ratio        (optional) unperturbed g_D/g_S (same on every row)
    g_ratio_unc    (optional) its standard uncertainty
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# Eq. 6 forward (r from <B_perp^2>) lives in ionclock.physics.constants, shared with the twin
# (sim_instruments.zeeman); the names stay importable from here
from ionclock.physics.constants import AC_FIELD_CONVENTIONS, G_RATIO_SEED, RF_MAGIC_HZ
from ionclock.physics.constants import G_RATIO_SEED_UNC as G_RATIO_SEED_UNC
from ionclock.physics.constants import ac_zeeman_coefficients as shift_coefficients
from ionclock.physics.constants import g_ratio_with_ac_field as g_ratio_with_ac_field
from ionclock.procedures.analysis.common import (
    LEVEL,
    AnalysisResult,
    DataError,
    constant,
    estimate,
    finite_array,
    new_figure,
    quantile,
    read_csv,
    save_figure,
)

NAME = "ac-field"
COLUMNS = ("r", "r_unc", "b0_t", "b0_unc_t")
OPTIONAL = ("g_ratio", "g_ratio_unc")
CONVENTIONS = AC_FIELD_CONVENTIONS
#: Seed supplement: r = 0.599488818(9) at B_x = 56.363(5) uT -> <B_perp^2> = 11(9)e-14 T^2.
SEED_R = (0.599488818, 9e-9)
SEED_B0_T = (56.363e-6, 5e-9)


def b_perp2(r: float, b0_t: float, g_ratio: float = G_RATIO_SEED, rf_hz: float = RF_MAGIC_HZ,
            convention: str = "seed") -> float:
    """<B_perp^2> (T^2) from r at B0 (T): seed Eq. 6 solved for <B_perp^2>."""
    a, b = shift_coefficients(b0_t, rf_hz, convention)
    q = r / g_ratio
    return (q - 1.0) / (a - b * q) * b0_t ** 2


def _partial(f, x0: float, h: float) -> float:
    return (f(x0 + h) - f(x0 - h)) / (2 * h)


def ac_field_from_g_ratio(r, r_unc, b0_t, b0_unc_t, *, g_ratio: float = G_RATIO_SEED,
                          g_ratio_unc: float = G_RATIO_SEED_UNC, rf_hz: float = RF_MAGIC_HZ,
                          convention: str = "seed", level: float = LEVEL) -> AnalysisResult:
    """<B_perp^2> (T^2) with its standard uncertainty and 95 % interval from r at B0.

    Linear propagation of r, B0 (per measurement) and g_D/g_S (common). Several
    measurements: inverse-variance mean of their <B_perp^2> on r and B0 alone, then the
    g-ratio part, which averaging cannot reduce, in quadrature.
    """
    rr = finite_array("r", r)
    n = len(rr)
    ru = finite_array("r_unc", r_unc, n)
    b0 = finite_array("b0_t", b0_t, n)
    b0u = finite_array("b0_unc_t", b0_unc_t, n)
    if np.any(b0 <= 0) or np.any(ru < 0) or np.any(b0u < 0) or g_ratio_unc < 0:
        raise DataError("fields must be positive and uncertainties non-negative")
    if not (0 < g_ratio < 10 and np.all((rr > 0) & (rr < 10))):
        raise DataError("r and g_D/g_S must be positive ratios of g-factors")
    values, s_meas, d_rho = [], [], []
    for ri, rui, bi, bui in zip(rr, ru, b0, b0u):
        def f_r(x, bi=bi):
            return b_perp2(x, bi, g_ratio, rf_hz, convention)

        def f_b(x, ri=ri):
            return b_perp2(ri, x, g_ratio, rf_hz, convention)

        def f_g(x, ri=ri, bi=bi):
            return b_perp2(ri, bi, x, rf_hz, convention)

        values.append(f_r(ri))
        c_r = _partial(f_r, ri, max(rui, 1e-12) * 1e-2) * rui
        c_b = _partial(f_b, bi, max(bui, 1e-12) * 1e-2) * bui
        s_meas.append(math.hypot(c_r, c_b))
        d_rho.append(_partial(f_g, g_ratio, max(g_ratio_unc, 1e-12) * 1e-2))
    values, s_meas, d_rho = np.array(values), np.array(s_meas), np.array(d_rho)
    if np.all(s_meas > 0):
        w = 1.0 / s_meas ** 2
    else:
        w = np.ones(n)
    w = w / w.sum()
    value = float(w @ values)
    s_stat = float(math.sqrt(w ** 2 @ s_meas ** 2))
    s_rho = abs(float(w @ d_rho)) * g_ratio_unc
    sigma = math.hypot(s_stat, s_rho)
    q = quantile(level)
    return AnalysisResult(
        NAME, (estimate("b_perp2", value, sigma, q, "T^2"),),
        "95 % CI, normal, uncertainties of r, B0 and g_D/g_S propagated", convention, n,
        data={"r": rr, "r_unc": ru, "b0_t": b0, "b0_unc_t": b0u, "b_perp2": values,
              "b_perp2_sigma_meas": s_meas},
        details={"g_ratio": g_ratio, "g_ratio_unc": g_ratio_unc, "rf_hz": rf_hz,
                 "sigma_measurement": s_stat, "sigma_g_ratio": s_rho})


def read(path: str | Path) -> dict:
    """The arrays of an ac-field CSV (columns in the module docstring)."""
    cols = read_csv(path, COLUMNS, OPTIONAL)
    out = {k: cols[k] for k in COLUMNS}
    if "g_ratio" in cols:
        out["g_ratio"] = constant("g_ratio", cols["g_ratio"])
        out["g_ratio_unc"] = (constant("g_ratio_unc", cols["g_ratio_unc"])
                              if "g_ratio_unc" in cols else 0.0)
    elif "g_ratio_unc" in cols:
        raise DataError(f"{str(path)!r}: column g_ratio_unc without g_ratio")
    return out


def from_csv(path: str | Path) -> AnalysisResult:
    """`ac_field_from_g_ratio` on a CSV file."""
    return ac_field_from_g_ratio(**read(path))


def plot(result: AnalysisResult, path: str | Path) -> Path:
    """The ratio r against <B_perp^2> (seed Eq. 6), the measured r, the solution's interval."""
    d = result.details
    b0 = float(np.mean(result.data["b0_t"]))
    e = result.estimates[0]
    span = max(abs(e.low), abs(e.high), 1e-15) * 1.5
    xs = np.linspace(min(-span, e.low), span, 300)
    rs = np.array([g_ratio_with_ac_field(x, b0, d["g_ratio"], d["rf_hz"], result.convention)
                   for x in xs])
    fig, ax = new_figure()
    a = ax[0, 0]
    ref = d["g_ratio"]
    a.plot(xs, (rs / ref - 1) * 1e9, color="tab:blue", label=f"Eq. 6 ({result.convention}) at B0")
    for rr, ru in zip(result.data["r"], result.data["r_unc"]):
        a.axhspan((rr - ru) / ref * 1e9 - 1e9, (rr + ru) / ref * 1e9 - 1e9, color="tab:orange",
                  alpha=0.25)
        a.axhline((rr / ref - 1) * 1e9, color="tab:orange", label="measured r (1 sigma)")
    a.axvspan(e.low, e.high, color="tab:green", alpha=0.15, label="<B_perp^2> 95 % CI")
    a.axvline(e.value, color="tab:green")
    a.set_xlabel("<B_perp^2> (T^2)")
    a.set_ylabel(f"r / (g_D/g_S) - 1 (1e-9), g_D/g_S = {ref:.9f}")
    a.set_title(e.text(2))
    handles, labels = a.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    a.legend(uniq.values(), uniq.keys(), fontsize="small")
    return save_figure(fig, path)
