"""Sideband thermometry and heating rates of one secular mode (DOMAIN §3, seed Figs. 2, 3, 7).

After sideband cooling and a dark time, a red- (s = -1) or blue- (s = +1) sideband pulse of
length t excites the ion with probability

    P_s(t) = sum_n p_n sin^2(Omega_{n,n+s} t / 2),        p_n = nbar^n / (nbar + 1)^(n+1)

(thermal distribution, DOMAIN §3) with the sideband Rabi frequencies of DOMAIN §3 (Wineland
et al. 1998, the seed's ref. [40]):

    Omega_{n,n+s} = Omega0 exp(-eta^2/2) eta^|s| sqrt(n<! / n>!) L_{n<}^{|s|}(eta^2),

n< = min(n, n + s), n> = max(n, n + s) (s = 0 is the carrier; a red pulse cannot drive n = 0).
`fit_sideband_flops` fits nbar (and Omega0 unless given) to one dark time's flops, red and
blue together or red alone (the seed's Fig. 3); `fit_heating_rate` fits nbar(t) = n0 +
ndot t to the per-dark-time nbar with a 95 % confidence interval (seed Fig. 3 b, d, f: "all
fit results include 95 % confidence intervals"). `analyse_thermometry` does both.

Weights: with the shot count per point the points' binomial uncertainties are known,
sqrt(P (1 - P) / N) with P from the model (iterated; P kept at least 0.5/N from 0 and 1 so
that a point that saw no excitation still counts), and the interval is normal. Without shot
counts the fit is unweighted and the interval uses Student's t.

CSV columns (one row per pulse length and dark time; one mode per file):

    dark_time_s    dark time between cooling and probe, s (one value: nbar only)
    pulse_time_s   sideband pulse length, s
    sideband       red or blue (also r/b, -1/+1)
    p_excited      fraction of shots found in D5/2 (dark)
    eta            Lamb-Dicke parameter of the probe beam on this mode (same on every row)
    shots          (optional) shots per point; without it the fits are unweighted
    omega0_rad_s   (optional) carrier Rabi frequency Omega0, rad/s (same on every row); without
                   it Omega0 is fitted per dark time
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

# DOMAIN §3's couplings and thermal populations, shared with the twin (sim_instruments.motion)
from ionclock.physics.sidebands import sideband_rabi_frequency, thermal_cutoff, thermal_populations
from ionclock.procedures.analysis.common import (
    LEVEL,
    AnalysisResult,
    DataError,
    Estimate,
    constant,
    estimate,
    finite_array,
    least_squares,
    linear_fit,
    mean_band,
    new_figure,
    read_csv,
    save_figure,
)

NAME = "thermometry"
COLUMNS = ("dark_time_s", "pulse_time_s", "sideband", "p_excited", "eta")
OPTIONAL = ("shots", "omega0_rad_s")
NBAR_MAX = 50.0          # upper bound of a fitted nbar (a Doppler-cooled ion has ~3-5)
TAIL = 1e-10             # thermal tail left out of the sum over n
N_CAP = 4000             # hard cap on the number of Fock states summed


# --- the model (DOMAIN §3) --------------------------------------------------------------------
@lru_cache(maxsize=512)
def _rabi_table(eta: float, s: int, n_max: int) -> np.ndarray:
    """Omega_{n,n+s} / Omega0 for n = 0 .. n_max - 1 (cached: a fit calls it many times)."""
    table = sideband_rabi_frequency(np.arange(n_max), s, eta)
    table.setflags(write=False)
    return table


def n_cutoff(nbar: float, tail: float = TAIL) -> int:
    """Number of Fock states whose thermal weight leaves out less than `tail`."""
    return thermal_cutoff(nbar, tail, N_CAP)


def sideband_flop(t, nbar: float, omega0: float, eta: float, sideband) -> np.ndarray:
    """Thermal-state excitation probability after a pulse of length t (s) on `sideband`.

    `sideband` is -1 (red), +1 (blue) or 0 (carrier), one value or one per point.
    """
    t = np.atleast_1d(np.asarray(t, dtype=float))
    s = np.broadcast_to(np.asarray(sideband, dtype=int), t.shape)
    n_max = n_cutoff(nbar)
    p = thermal_populations(nbar, n_max)
    out = np.empty_like(t)
    for order in np.unique(s):
        sel = s == order
        om = omega0 * _rabi_table(float(eta), int(order), n_max)
        out[sel] = np.sin(0.5 * np.outer(t[sel], om)) ** 2 @ p
    return out


# --- fits -------------------------------------------------------------------------------------
def _starts(t: np.ndarray, s: np.ndarray, p: np.ndarray, eta: float,
            omega0: float | None, k: int = 3) -> list[tuple[float, float]]:
    """Starting points (nbar, Omega0) for the fit: the best cells of a grid search.

    Red flops alone alias (a slower Omega0 with another nbar can fit nearly as well), so the
    fit starts from the `k` best local minima over Omega0 and keeps the lowest chi^2. The
    grid is one vectorised evaluation: Omega0 x pulse x Fock state.
    """
    t_max = float(t.max()) or 1.0
    nbars = np.geomspace(0.005, 20.0, 28)
    if omega0 is None:
        # first red sideband's pi time from a tenth of the scan to ten scans
        omegas = np.geomspace(0.3, 30.0, 60) * math.pi / (eta * t_max)
    else:
        omegas = np.array([omega0])
    n_max = n_cutoff(float(nbars[-1]), 1e-6)
    pops = np.array([thermal_populations(float(nb), n_max) for nb in nbars])   # (K, N)
    sse = np.zeros((len(omegas), len(nbars)))
    for order in np.unique(s):
        sel = s == order
        phase = 0.5 * omegas[:, None, None] * t[sel][None, :, None] \
            * _rabi_table(float(eta), int(order), n_max)[None, None, :]
        model = np.sin(phase) ** 2 @ pops.T                                      # (O, T, K)
        sse += np.sum((model - p[sel][None, :, None]) ** 2, axis=1)
    best_nb = np.argmin(sse, axis=1)
    prof = sse[np.arange(len(omegas)), best_nb]
    minima = [i for i in range(len(omegas))
              if prof[i] <= prof[max(i - 1, 0)] and prof[i] <= prof[min(i + 1, len(omegas) - 1)]]
    minima.sort(key=lambda i: prof[i])
    # only minima that come close to the best are worth a fit of their own
    minima = [i for i in minima[:k] if prof[i] <= 2.0 * prof[minima[0]]]
    return [(float(nbars[best_nb[i]]), float(omegas[i])) for i in minima]


def fit_sideband_flops(pulse_time_s, p_excited, sideband, *, eta: float, shots=None,
                       omega0_rad_s: float | None = None, level: float = LEVEL,
                       iterations: int = 2) -> AnalysisResult:
    """Mean occupation nbar (and Omega0, rad/s) from sideband Rabi flops of one dark time.

    Thermal-distribution fit of DOMAIN §3's model. `sideband` per point: -1 red, +1 blue.
    `shots` (per point or one number): binomial weights from the model, normal interval;
    None: unweighted, Student's t. The interval of nbar is cut at 0.
    """
    t = finite_array("pulse_time_s", pulse_time_s)
    p = finite_array("p_excited", p_excited, len(t))
    s = np.broadcast_to(np.asarray(sideband, dtype=int), t.shape).copy()
    if not set(np.unique(s)) <= {-1, 1}:
        raise DataError("sideband: expected -1 (red) or +1 (blue) per point")
    if not 0.0 < eta < 1.0:
        raise DataError(f"eta = {eta!r}: a Lamb-Dicke parameter lies in (0, 1)")
    if np.any((p < 0) | (p > 1)):
        raise DataError("p_excited: fractions must lie in [0, 1]")
    if np.any(t < 0):
        raise DataError("pulse_time_s: pulse lengths must be >= 0")
    n_shots = None
    if shots is not None:
        n_shots = np.broadcast_to(finite_array("shots", shots), t.shape).astype(float)
        if np.any(n_shots < 1):
            raise DataError("shots: expected at least one shot per point")
    fixed = omega0_rad_s is not None
    starts = _starts(t, s, p, eta, omega0_rad_s)
    om0 = starts[0][1]
    if fixed:
        def model(tt, nbar):
            return sideband_flop(tt, nbar, omega0_rad_s, eta, s)
        bounds = ([0.0], [NBAR_MAX])
        p0s = [(nb,) for nb, _ in starts]
    else:
        # Omega0 in units of the first start's: both parameters of order 1 for the solver
        def model(tt, nbar, omega_rel):
            return sideband_flop(tt, nbar, omega_rel * om0, eta, s)
        bounds = ([0.0, 0.0], [NBAR_MAX, np.inf])
        p0s = [(nb, om / om0) for nb, om in starts]
    sigma = None
    if n_shots is not None:
        guess = np.clip(p, 0.5 / n_shots, 1 - 0.5 / n_shots)
        sigma = np.sqrt(guess * (1 - guess) / n_shots)
    fits = []
    for p0 in p0s:
        try:
            fits.append(least_squares(model, t, p, p0, sigma, bounds=bounds, level=level,
                                      x_scale="jac"))
        except DataError as err:
            last = err
    if not fits:
        raise last
    fit = min(fits, key=lambda f: f.chi2)
    for _ in range(iterations if n_shots is not None else 0):
        # binomial weights from the model: a point that saw no excitation still counts
        pm = np.clip(model(t, *fit.params), 0.5 / n_shots, 1 - 0.5 / n_shots)
        sigma = np.sqrt(pm * (1 - pm) / n_shots)
        fit = least_squares(model, t, p, fit.params, sigma, bounds=bounds, level=level,
                            x_scale="jac")
    nbar = estimate("nbar", fit.params[0], fit.sigma(0), fit.q, "quanta")
    nbar = Estimate(nbar.name, nbar.value, nbar.sigma, max(nbar.low, 0.0), nbar.high, "quanta")
    ests = [nbar]
    omega0 = omega0_rad_s if fixed else float(fit.params[1] * om0)
    if not fixed:
        ests.append(estimate("omega0", omega0, fit.sigma(1) * om0, fit.q, "rad/s"))
    return AnalysisResult(
        NAME, tuple(ests), fit.interval, "thermal distribution, DOMAIN §3", len(t),
        data={"pulse_time_s": t, "p_excited": p, "sideband": s, "sigma": sigma},
        details={"fit": fit, "eta": eta, "omega0_rad_s": omega0,
                 "reduced_chi2": fit.reduced_chi2})


def fit_heating_rate(dark_time_s, nbar, nbar_sigma=None, *, weights_known: bool = True,
                     level: float = LEVEL) -> AnalysisResult:
    """Heating rate ndot (quanta/s) and initial occupation n0 from nbar(t) = n0 + ndot t.

    Weighted by `nbar_sigma` (the flop fits' standard uncertainties) when given and
    `weights_known` (normal interval); else unweighted with Student's t(n - 2) (seed Fig. 3).
    """
    t = finite_array("dark_time_s", dark_time_s)
    y = finite_array("nbar", nbar, len(t))
    sig = None if nbar_sigma is None else finite_array("nbar_sigma", nbar_sigma, len(t))
    if len(np.unique(t)) < 2:
        raise DataError("a heating rate needs at least two different dark times")
    fit = linear_fit(t, y, sig, weights_known=weights_known, level=level)
    return AnalysisResult(
        NAME, (estimate("heating_rate", fit.params[0], fit.sigma(0), fit.q, "quanta/s"),
               estimate("n0", fit.params[1], fit.sigma(1), fit.q, "quanta")),
        fit.interval, "nbar(t) = n0 + ndot t", len(t),
        data={"dark_time_s": t, "nbar": y, "nbar_sigma": sig},
        details={"fit": fit, "reduced_chi2": fit.reduced_chi2})


def analyse_thermometry(dark_time_s, pulse_time_s, sideband, p_excited, shots=None, *,
                        eta: float, omega0_rad_s: float | None = None,
                        level: float = LEVEL) -> AnalysisResult:
    """Flop fits per dark time, then the heating-rate fit (one dark time: nbar only)."""
    dark = finite_array("dark_time_s", dark_time_s)
    t = finite_array("pulse_time_s", pulse_time_s, len(dark))
    p = finite_array("p_excited", p_excited, len(dark))
    s = np.broadcast_to(np.asarray(sideband, dtype=int), dark.shape)
    n = None if shots is None else np.broadcast_to(finite_array("shots", shots), dark.shape)
    flops = []
    for d in np.unique(dark):
        sel = dark == d
        try:
            flops.append(fit_sideband_flops(t[sel], p[sel], s[sel], eta=eta,
                                            shots=None if n is None else n[sel],
                                            omega0_rad_s=omega0_rad_s, level=level))
        except DataError as err:
            raise DataError(f"dark time {d:g} s: {err}") from None
    darks = np.unique(dark)
    if len(flops) == 1:
        r = flops[0]
        return AnalysisResult(NAME, r.estimates, r.interval, r.convention, r.n_points,
                              r.data, {**r.details, "flops": flops, "dark_times_s": darks})
    nbars = np.array([f["nbar"].value for f in flops])
    sig = np.array([f["nbar"].sigma for f in flops])
    heat = fit_heating_rate(darks, nbars, sig, weights_known=shots is not None, level=level)
    return AnalysisResult(NAME, heat.estimates, heat.interval, heat.convention, len(dark),
                          heat.data, {**heat.details, "flops": flops, "dark_times_s": darks})


# --- CSV and plot -----------------------------------------------------------------------------
_SIDEBANDS = {"red": -1, "r": -1, "-1": -1, "rsb": -1, "blue": 1, "b": 1, "+1": 1, "1": 1,
              "bsb": 1}


def read(path: str | Path) -> dict:
    """The arrays of a thermometry CSV (columns in the module docstring)."""
    cols = read_csv(path, COLUMNS, OPTIONAL, text=("sideband",))
    try:
        sb = np.array([_SIDEBANDS[str(c).strip().lower()] for c in cols["sideband"]])
    except KeyError as err:
        raise DataError(f"{str(path)!r}: column sideband: {err.args[0]!r} is not red or blue") \
            from None
    out = {"dark_time_s": cols["dark_time_s"], "pulse_time_s": cols["pulse_time_s"],
           "sideband": sb, "p_excited": cols["p_excited"], "shots": cols.get("shots"),
           "eta": constant("eta", cols["eta"])}
    if "omega0_rad_s" in cols:
        out["omega0_rad_s"] = constant("omega0_rad_s", cols["omega0_rad_s"])
    return out


def from_csv(path: str | Path) -> AnalysisResult:
    """`analyse_thermometry` on a CSV file."""
    return analyse_thermometry(**read(path))


def plot(result: AnalysisResult, path: str | Path) -> Path:
    """The flops with their thermal fits (seed Figs. 2, 3 a/c/e) and nbar(t) (Fig. 3 b/d/f)."""
    flops = result.details.get("flops") or [result]
    darks = result.details.get("dark_times_s", [0.0])
    heating = len(flops) > 1
    fig, ax = new_figure(1, 2 if heating else 1, size=(11.0 if heating else 6.4, 4.8))
    left = ax[0, 0]
    colours = [f"C{i % 10}" for i in range(len(flops))]
    for f, d, c in zip(flops, darks, colours):
        t, p, s = f.data["pulse_time_s"], f.data["p_excited"], f.data["sideband"]
        tt = np.linspace(0.0, t.max(), 300)
        for order, marker in ((-1, "o"), (1, "s")):
            sel = s == order
            if not np.any(sel):
                continue
            label = f"{'red' if order < 0 else 'blue'}, {d * 1e3:g} ms"
            left.plot(t[sel] * 1e6, p[sel], marker, color=c, ms=4, alpha=0.7, label=label)
            left.plot(tt * 1e6, sideband_flop(tt, f["nbar"].value, f.details["omega0_rad_s"],
                                              f.details["eta"], order), "-", color=c)
    left.set_xlabel("pulse length (µs)")
    left.set_ylabel("D5/2 probability")
    left.legend(fontsize="small")
    if not heating:
        left.set_title(result["nbar"].text(3))
        return save_figure(fig, path)
    left.set_title("sideband flops, thermal fits")
    right = ax[0, 1]
    fit = result.details["fit"]
    d, y, s = result.data["dark_time_s"], result.data["nbar"], result.data["nbar_sigma"]
    xs = np.linspace(0.0, d.max() * 1.05, 200)
    model = fit.params[0] * xs + fit.params[1]
    band = mean_band(xs, fit)
    right.errorbar(d * 1e3, y, yerr=None if s is None else fit.q * s, fmt="o",
                   color="tab:orange", label="nbar (95 % CI)")
    right.plot(xs * 1e3, model, color="tab:blue", label="linear fit")
    right.fill_between(xs * 1e3, model - band, model + band, color="tab:blue", alpha=0.2)
    right.set_xlabel("dark time (ms)")
    right.set_ylabel("nbar (quanta)")
    right.set_title(f"{result['heating_rate'].text(3)}; {result['n0'].text(2)}", fontsize="small")
    right.legend(fontsize="small")
    return save_figure(fig, path)
