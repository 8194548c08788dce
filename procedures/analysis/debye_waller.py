"""Mean occupations after Doppler cooling from the Debye–Waller factor (DOMAIN §3, seed Eqs. 3-4).

A thermal state slows the carrier Rabi frequency of beam b by exp(-sum_i (eta_i^b)^2 nbar_i)
relative to the (near) ground state after sideband cooling (seed supplement, §"Second-order
Doppler shift", Eqs. 3 and 4; Wineland et al. 1998):

    ln(Omega_SC,b / Omega_Doppler,b) = sum_i (eta_i^b)^2 nbar_i.

Each beam gives one such equation; modes that cannot be told apart are tied (the seed:
"eta_x ~ eta_y, assuming nbar_x = nbar_y"). The equations are solved by weighted least
squares (exactly when beams = unknowns); the uncertainties of the Rabi frequencies propagate
linearly and the interval is normal. Occupations are cut at 0 at the low end.

The Lamb–Dicke parameters (decision 0800). The seed prints eta = 0.025, 0.027, 0.043 (its
Table I: beam 2, the cooling beam) but not those of beams 1 and 3. Its numbers follow from:

- ``seed`` (default): one Lamb–Dicke parameter for every beam–mode pair in Eqs. 3-4,
  eta = k sqrt(hbar / 2 m omega_x) cos 45 deg = 0.0365 (beam 3 does not reach z). With
  2.172(4)/2.201(4) MHz (beam 1) and 3.464(5)/3.488(8) MHz (beam 3) it gives nbar_x =
  nbar_y = 2.60 and nbar_z = 4.78: the seed's 2.6, 2.6, 4.8. With one eta the ratio
  nbar_z / nbar_x = 2 ln(rho_1 / rho_3) / ln rho_3 = 1.84 holds whatever eta is; the
  printed eta_z = 0.043 in beam 1's equation would give nbar_z = 3.4 instead.
- ``geometric``: the beams' own projections: beam 3 vertical, perpendicular to z and at
  45 deg to x and y; beam 1 completes beams 2 and 3 to an orthonormal set, beam 2 taken from
  Table I. Beam 1 (0.0266, 0.0275, 0.0423), beam 3 (0.0365, 0.0385, 0) give nbar_x = nbar_y
  = 2.5 and nbar_z = 5.4.

CSV columns (one row per beam):

    beam                 beam label (e.g. 1, 3)
    omega_doppler        carrier Rabi frequency after Doppler cooling (any unit, the same
                         for every column: only ratios enter)
    omega_doppler_unc    its standard uncertainty
    omega_sc             carrier Rabi frequency after sideband cooling
    omega_sc_unc         its standard uncertainty
    eta_x, eta_y, eta_z  the beam's Lamb–Dicke parameters on each mode (0: no coupling)

nbar_x and nbar_y are tied (the seed's assumption).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# the beams' Lamb–Dicke parameters, shared with the twin (sim_instruments.motion); the
# names stay importable from here
from ionclock.physics.sidebands import ETA_BEAM2_SEED as ETA_BEAM2_SEED
from ionclock.physics.sidebands import SEED_ETA as SEED_ETA
from ionclock.physics.sidebands import geometric_eta_matrix, seed_eta_matrix
from ionclock.physics.sidebands import lamb_dicke as lamb_dicke
from ionclock.procedures.analysis.common import (
    LEVEL,
    AnalysisResult,
    DataError,
    Estimate,
    finite_array,
    new_figure,
    quantile,
    read_csv,
    save_figure,
)

NAME = "debye-waller"
COLUMNS = ("beam", "omega_doppler", "omega_doppler_unc", "omega_sc", "omega_sc_unc",
           "eta_x", "eta_y", "eta_z")
MODES = ("x", "y", "z")
SEED_TIES = (("x", "y"), ("z",))
#: Seed supplement Fig. 8: carrier Rabi frequencies (MHz), Doppler / sideband cooled.
SEED_RABI_MHZ = {"1": ((2.172, 0.004), (2.201, 0.004)), "3": ((3.464, 0.005), (3.488, 0.008))}


ETA_CONVENTIONS = {"seed": seed_eta_matrix, "geometric": geometric_eta_matrix}


def nbar_from_rabi_ratios(omega_doppler, omega_doppler_unc, omega_sc, omega_sc_unc, eta, *,
                          ties: Sequence[Sequence[str]] = SEED_TIES,
                          beams: Sequence[str] | None = None, convention: str = "",
                          level: float = LEVEL) -> AnalysisResult:
    """Occupations nbar after Doppler cooling from carrier Rabi frequencies (seed Eqs. 3-4).

    `eta` is beams x 3 (x, y, z). `ties` groups the modes fitted as one unknown. Every
    Rabi frequency in the same unit; uncertainties are standard uncertainties.
    """
    od = finite_array("omega_doppler", omega_doppler)
    nb = len(od)
    odu = finite_array("omega_doppler_unc", omega_doppler_unc, nb)
    osc = finite_array("omega_sc", omega_sc, nb)
    oscu = finite_array("omega_sc_unc", omega_sc_unc, nb)
    eta = np.asarray(eta, dtype=float)
    if eta.shape != (nb, 3) or not np.all(np.isfinite(eta)) or np.any(eta < 0):
        raise DataError(f"eta: expected {nb} x 3 non-negative Lamb–Dicke parameters")
    if np.any(od <= 0) or np.any(osc <= 0):
        raise DataError("Rabi frequencies must be positive")
    if np.any(odu <= 0) or np.any(oscu <= 0):
        raise DataError("Rabi-frequency uncertainties must be positive")
    groups = [tuple(g) for g in ties]
    if sorted(m for g in groups for m in g) != sorted(MODES):
        raise DataError(f"ties must group each of {', '.join(MODES)} once")
    # seed Eqs. 3-4: ln(Omega_SC / Omega_D) = sum_i eta_i^2 nbar_i, tied modes one unknown
    design = np.column_stack([sum(eta[:, MODES.index(m)] ** 2 for m in g) for g in groups])
    keep = np.any(design > 0, axis=0)
    if not np.all(keep):
        lost = [" = ".join(f"nbar_{m}" for m in g) for g, k in zip(groups, keep) if not k]
        raise DataError(f"no beam couples to {', '.join(lost)}")
    log_ratio = np.log(osc / od)
    sig = np.hypot(odu / od, oscu / osc)
    if nb < len(groups):
        raise DataError(f"{nb} beam(s) cannot fix {len(groups)} unknowns")
    w = 1.0 / sig
    a = design * w[:, None]
    info = a.T @ a
    if np.linalg.cond(info) > 1e12:
        raise DataError("the beams' Lamb–Dicke parameters cannot separate the modes")
    cov = np.linalg.inv(info)
    nbar = cov @ (a.T @ (log_ratio * w))
    chi2 = float(np.sum(((design @ nbar - log_ratio) * w) ** 2))
    q = quantile(level)
    ests: list[Estimate] = []
    by_mode = {}
    for j, g in enumerate(groups):
        s = math.sqrt(cov[j, j])
        for m in g:
            by_mode[m] = (float(nbar[j]), s)
    for m in MODES:
        v, s = by_mode[m]
        ests.append(Estimate(f"nbar_{m}", v, s, max(v - q * s, 0.0), v + q * s, "quanta"))
    labels = list(beams) if beams is not None else [str(i + 1) for i in range(nb)]
    return AnalysisResult(
        NAME, tuple(ests), "95 % CI, normal, Rabi-frequency uncertainties propagated",
        convention or "Lamb–Dicke parameters given", nb,
        data={"beams": labels, "log_ratio": log_ratio, "log_ratio_sigma": sig, "eta": eta},
        details={"design": design, "groups": groups, "cov": cov, "chi2": chi2,
                 "dof": nb - len(groups)})


def seed_nbar(convention: str = "seed", level: float = LEVEL) -> AnalysisResult:
    """The seed's Doppler-cooled occupations from its Fig. 8 Rabi frequencies."""
    if convention not in ETA_CONVENTIONS:
        raise ValueError(f"convention {convention!r}: expected one of "
                         f"{', '.join(ETA_CONVENTIONS)}")
    (d1, s1), (d3, s3) = SEED_RABI_MHZ["1"], SEED_RABI_MHZ["3"]
    return nbar_from_rabi_ratios([d1[0], d3[0]], [d1[1], d3[1]], [s1[0], s3[0]],
                                 [s1[1], s3[1]], ETA_CONVENTIONS[convention](),
                                 beams=["1", "3"], convention=f"{convention} eta",
                                 level=level)


def read(path: str | Path) -> dict:
    """The arrays of a debye-waller CSV (columns in the module docstring)."""
    cols = read_csv(path, COLUMNS, text=("beam",))
    return {"omega_doppler": cols["omega_doppler"], "omega_doppler_unc": cols["omega_doppler_unc"],
            "omega_sc": cols["omega_sc"], "omega_sc_unc": cols["omega_sc_unc"],
            "eta": np.column_stack([cols["eta_x"], cols["eta_y"], cols["eta_z"]]),
            "beams": [str(b) for b in cols["beam"]]}


def from_csv(path: str | Path) -> AnalysisResult:
    """`nbar_from_rabi_ratios` on a CSV file (nbar_x and nbar_y tied)."""
    return nbar_from_rabi_ratios(**read(path))


def plot(result: AnalysisResult, path: str | Path) -> Path:
    """Measured ln(Omega_SC / Omega_D) per beam against the fit, and nbar per mode."""
    fig, ax = new_figure(1, 2, size=(10.0, 4.2))
    left, right = ax[0, 0], ax[0, 1]
    q = quantile(LEVEL)
    beams = result.data["beams"]
    y, s = result.data["log_ratio"], result.data["log_ratio_sigma"]
    nbar = np.array([result[f"nbar_{m}"].value for m in MODES])
    model = (result.data["eta"] ** 2) @ nbar
    x = np.arange(len(beams))
    left.errorbar(x, y, yerr=q * s, fmt="o", color="tab:orange", label="measured (95 % CI)")
    left.plot(x, model, "s", color="tab:blue", label="sum eta^2 nbar (fit)")
    left.set_xticks(x, [f"beam {b}" for b in beams])
    left.set_ylabel("ln(Omega_SC / Omega_Doppler)")
    left.legend(fontsize="small")
    left.set_title("Debye–Waller factor")
    for i, m in enumerate(MODES):
        e = result[f"nbar_{m}"]
        right.errorbar([i], [e.value], yerr=[[e.value - e.low], [e.high - e.value]], fmt="o",
                       color="tab:blue", capsize=4)
    right.set_xticks(range(3), [f"nbar_{m}" for m in MODES])
    right.set_ylabel("nbar after Doppler cooling (quanta)")
    right.set_title("; ".join(f"{m}: {result[f'nbar_{m}'].value:.2g}" for m in MODES))
    return save_figure(fig, path)
