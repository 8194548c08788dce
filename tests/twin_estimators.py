"""What a procedure does with the twin's raw outcomes before an analysis takes over.

The analyses (procedures/analysis) start from Rabi frequencies, sideband/carrier ratios and
g-factor ratios; the twin gives dark-shot counts. These estimators turn one into the other
the way the measurements do (seed supplement Fig. 8: sine fits of carrier flops; pulse areas
for the micromotion ratios; two-point Ramsey for the Zeeman line centres) and belong to the
procedures once they exist. Also the coverage report every coverage test prints.
"""

from __future__ import annotations

import math

import numpy as np

from ionclock.procedures.analysis.common import least_squares
from ionclock.sim_instruments.zeeman import ratio_from_splittings


def report_coverage(name: str, hits, widths, unit: str) -> float:
    """Print and return the fraction of hits, with the median 95 % interval width.

    With more than 20 seeds the first 20's count is printed too (the issue's minimum).
    """
    frac = sum(hits) / len(hits)
    first = f" (seeds 0-19: {sum(hits[:20])}/20)" if len(hits) > 20 else ""
    print(f"\ncoverage {name}: {sum(hits)}/{len(hits)} = {frac:.0%}{first}, "
          f"median 95 % CI width {np.median(widths):.3g} {unit}")
    return frac


# --- carrier Rabi frequency from a flop (seed Fig. 8: "sine fits") ----------------------------
def _flop(t, amp, gamma, omega_rel, omega_scale):
    return 0.5 * amp * (1.0 - np.exp(-gamma * t) * np.cos(omega_rel * omega_scale * t))


def fit_carrier_flop(t, counts, shots, omega_guess: float, iterations: int = 2):
    """Rabi frequency (rad/s) and its standard uncertainty from a carrier flop.

    P(t) = A/2 (1 - exp(-gamma t) cos(Omega t)), binomial weights from the model (iterated).
    """
    t = np.asarray(t, float)
    p = np.asarray(counts, float) / shots
    gamma_scale = omega_guess * 1e-3

    def model(tt, amp, gamma_rel, omega_rel):
        return _flop(tt, amp, gamma_rel * gamma_scale, omega_rel, omega_guess)

    sigma = np.sqrt(np.clip(p, 0.5 / shots, 1 - 0.5 / shots)
                    * (1 - np.clip(p, 0.5 / shots, 1 - 0.5 / shots)) / shots)
    fit = least_squares(model, t, p, (1.0, 1.0, 1.0), sigma,
                        bounds=([0.0, 0.0, 0.5], [1.2, np.inf, 2.0]), x_scale="jac")
    for _ in range(iterations):
        pm = np.clip(model(t, *fit.params), 0.5 / shots, 1 - 0.5 / shots)
        sigma = np.sqrt(pm * (1 - pm) / shots)
        fit = least_squares(model, t, p, fit.params, sigma,
                            bounds=([0.0, 0.0, 0.5], [1.2, np.inf, 2.0]), x_scale="jac")
    return fit.params[2] * omega_guess, fit.sigma(2) * omega_guess


# --- pulse areas and the micromotion ratio ---------------------------------------------------
def pulse_area(counts, shots):
    """Pulse area theta = 2 arcsin(sqrt(p)) of a resonant pulse, and its standard uncertainty.

    The arcsine is the binomial's variance-stabilising transform: sigma(theta) = 1/sqrt(N)
    (p kept 0.5/N from 0 and 1, so a pulse that saw nothing still has an area's worth).
    """
    n = np.asarray(shots, float)
    p = np.clip(np.asarray(counts, float) / n, 0.5 / n, 1 - 0.5 / n)
    return 2.0 * np.arcsin(np.sqrt(p)), 1.0 / np.sqrt(n)


def micromotion_ratio(sb_counts, sb_pulse_s, car_counts, car_pulse_s, shots):
    """R = Omega_sb / Omega_carrier from one sideband and one carrier pulse, and u(R)."""
    th_sb, s_sb = pulse_area(sb_counts, shots)
    th_c, s_c = pulse_area(car_counts, shots)
    r = (th_sb / sb_pulse_s) / (th_c / car_pulse_s)
    return r, r * np.hypot(s_sb / th_sb, s_c / th_c)


# --- Zeeman line centres from two-point Ramsey, and r -----------------------------------------
def ramsey_centres(probe_hz, n_plus, n_minus, shots, ramsey_time_s: float, contrast: float):
    """Line centres (Hz) and their standard uncertainties from p+- = 1/2 [1 -+ C sin(2 pi d T)].

    d = probe - centre; sin(2 pi d T) = (p- - p+) / C.
    """
    pp, pm = np.asarray(n_plus, float) / shots, np.asarray(n_minus, float) / shots
    s = np.clip((pm - pp) / contrast, -0.999, 0.999)
    delta = np.arcsin(s) / (2 * math.pi * ramsey_time_s)
    var_s = (pp * (1 - pp) + pm * (1 - pm)) / shots / contrast ** 2
    sigma = np.sqrt(var_s) / np.sqrt(1 - s * s) / (2 * math.pi * ramsey_time_s)
    return np.asarray(probe_hz, float) - delta, sigma


def g_ratio_from_centres(centres, sigmas):
    """r = (A + B) / (3 B - A) from the centres of lines 0-3 (pairs A, B), and u(r)."""
    c, s = np.asarray(centres, float), np.asarray(sigmas, float)
    a, b = c[1] - c[0], c[3] - c[2]
    r = ratio_from_splittings(a, b)
    den = 3 * b - a
    dr_da = (den + (a + b)) / den ** 2          # d/dA of (A + B) / (3B - A)
    dr_db = (den - 3 * (a + b)) / den ** 2
    u_a, u_b = math.hypot(s[0], s[1]), math.hypot(s[2], s[3])
    return float(r), float(math.hypot(dr_da * u_a, dr_db * u_b))
