"""<B_perp^2> of the RF's AC field from the g-factor ratio at a known DC field (seed Eq. 6).

The four lines of the pairs the seed locks to for r (A: lines 0, 1; B: lines 2, 3 of
`ionclock.physics.constants.ZEEMAN_LINES`) are each locked by two-point Ramsey at the DC
field B0 of the measurement (the seed: 56.363 uT along x, supplement "Quadratic Zeeman (AC)"):
every step probes each line at its current estimate f, half the shots at f and the
final-pulse phase +90 deg, half at -90 deg, and the dark fractions give the error
e = p- - p+ = C sin(2 pi (f - centre) T) (DOMAIN §5); the centre measured by that step is
f - asin(e / C) / (2 pi T), and the estimate moves by `gain` times the difference. After
`settle_steps` the steps' centres are averaged and their scatter gives the standard error: in
the lock's linear range a step's centre is est - (est - centre) - noise, so the steps'
centres are independent of each other whatever the estimate did (checked: the lag-1
correlation is consistent with 0, and the coverage below).

From the four centres: the Larmor frequencies f_S, f_D by least squares of
centre = m_D f_D - m_S f_S + c (exact for four lines, the pairs' splittings A = 3 f_D - f_S,
B = f_D + f_S), r = f_D / f_S = (A + B) / (3 B - A), B0 = f_S / (g_S muB / h) (DOMAIN §1's g_S;
the AC field moves it by ~1e-7), their uncertainties propagated from the centres'. One row per
measurement (``repeats``): ``r, r_unc, b0_t, b0_unc_t``, the ac-field analysis' columns; the
analysis (`ionclock.procedures.analysis.ac_field`, seed convention) averages the rows and adds
the unperturbed g_D/g_S's uncertainty once.

Where the lines come from: the clock world's lock does not see the AC field (decision 0801,
"not modelled": its six lines use DOMAIN's g-factors without it), and the x coils of the
g-ratio field are no role of a clock config. So on the twin the lines are the
characterisation physics' (`ionclock.sim_instruments.zeeman.ZeemanLines`, reached through the
registry), probed with the shots this procedure draws from its own stream; the apparatus'
clock advances by a cycle per shot. In the lab the measurement needs a sequencer program for
a two-point Ramsey probe of one line at a given field, which does not exist yet: the
procedure says so (one line) instead of measuring something else.
"""

from __future__ import annotations

import math

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter

from ionclock.errors import UserError
from ionclock.physics.constants import G_S12, MU_B_OVER_H, ZEEMAN_LINES, ramsey_contrast
from ionclock.procedures.analysis import ac_field as analysis
from ionclock.procedures.base import IonclockProcedure, register

#: The lines of the pairs A and B (seed: r from the relation between two pairs).
LINES = (0, 1, 2, 3)
#: The seed's g-ratio field: 56.363 uT along x.
SEED_B0_UT = 56.363
#: Stream of the shots (Apparatus.rng).
STREAM = 6


def larmor_fit(centres_hz: np.ndarray, sigma_hz: np.ndarray,
               lines=LINES) -> tuple[np.ndarray, np.ndarray]:
    """(f_S, f_D, c) and their covariance from line centres (Hz): centre = m_D f_D - m_S f_S + c."""
    design = np.array([[-ZEEMAN_LINES[i].m_s, ZEEMAN_LINES[i].m_d, 1.0] for i in lines])
    w = 1.0 / np.asarray(sigma_hz) ** 2
    normal = design.T @ (design * w[:, None])
    cov = np.linalg.inv(normal)
    params = cov @ (design.T @ (w * np.asarray(centres_hz)))
    return params, cov


def ratio_and_field(centres_hz: np.ndarray, sigma_hz: np.ndarray) -> dict:
    """R = f_D / f_S, B0 (T) and their standard uncertainties from the four line centres."""
    (f_s, f_d, _), cov = larmor_fit(centres_hz, sigma_hz)
    r = f_d / f_s
    grad = np.array([-f_d / f_s ** 2, 1.0 / f_s, 0.0])
    r_unc = math.sqrt(float(grad @ cov @ grad))
    per_t = G_S12 * MU_B_OVER_H
    return {"r": r, "r_unc": r_unc, "b0_t": f_s / per_t,
            "b0_unc_t": math.sqrt(cov[0, 0]) / per_t}


@register
class AcFieldProcedure(IonclockProcedure):
    """Two-point Ramsey locks of four lines at B0 -> r rows (module docstring)."""

    NAME = analysis.NAME
    ANALYSIS = analysis
    ROLES = ()
    VERSION = "1"
    DATA_COLUMNS = list(analysis.COLUMNS)

    b0_ut = FloatParameter("DC field B0", units="uT", default=SEED_B0_UT, minimum=1.0,
                           maximum=1000.0)
    shots = IntegerParameter("Shots per side and step", default=100, minimum=10)
    steps = IntegerParameter("Steps per measurement", default=400, minimum=20)
    settle_steps = IntegerParameter("Steps before averaging", default=10, minimum=0)
    repeats = IntegerParameter("Measurements of r", default=4, minimum=1)
    gain = FloatParameter("Lock gain", default=0.5, minimum=0.01, maximum=1.0)

    def measure(self):
        if self.settle_steps >= self.steps - 1:
            raise UserError("settle_steps must leave at least two steps to average")
        lines = self.apparatus.characterisation().zeeman
        rng = self.apparatus.rng(STREAM)
        b0 = self.b0_ut * 1e-6
        t_ramsey = self.cfg["servo"]["ramsey_time_s"]
        contrast = ramsey_contrast(t_ramsey)
        cycle_s = self.cfg["servo"]["cycle_time_s"]
        # where the lines should be from DOMAIN's g-factors (within ~2 Hz of the truth)
        start = np.array([ZEEMAN_LINES[i].zeeman_hz_per_t * b0 for i in LINES])
        capture = 1.0 / (4.0 * t_ramsey)
        for k in range(self.repeats):
            est = start.copy()
            centres = []
            for step in range(self.steps):
                n_plus, n_minus = lines.ramsey(b0, est, self.shots, rng, lines=LINES,
                                               axis="x", ramsey_time_s=t_ramsey)
                self.apparatus.wait(2 * self.shots * len(LINES) * cycle_s)
                e = (np.asarray(n_minus, float) - np.asarray(n_plus, float)) / self.shots
                delta = np.arcsin(np.clip(e / contrast, -1.0, 1.0)) / (2 * math.pi * t_ramsey)
                if step >= self.settle_steps:
                    if np.any(np.abs(delta) > capture):
                        raise UserError("a line left the lock's capture range "
                                        f"(+-{capture:.2f} Hz): more shots per step")
                    centres.append(est - delta)
                est = est - self.gain * delta
                self.progress((k + (step + 1) / self.steps) / self.repeats)
                if self.should_stop():
                    return
            c = np.array(centres)
            mean = c.mean(axis=0)
            sem = c.std(axis=0, ddof=1) / math.sqrt(len(c))
            row = ratio_and_field(mean, sem)
            self.apparatus.event("g_ratio", self.NAME, centres_hz=mean.tolist(),
                                 sem_hz=sem.tolist(), **row)
            yield row

    BUDGET_ROWS = ("qz_ac",)

    def budget_values(self, result) -> dict:
        """<B^2> of the AC row: the measured <B_perp^2> (cut at 0) and its standard uncertainty.

        The seed's B is along x here and along y in the clock: <B_perp^2> = <B_y^2> + <B_z^2>
        bounds the <B_y^2> the clock's row needs (the seed: 11(9)e-14 -> 1(1)e-13 T^2).
        """
        e = result["b_perp2"]
        return {"zeeman": {"b2_ac_t2": max(e.value, 0.0), "b2_ac_unc_t2": e.sigma}}

    def summary(self, result) -> str:
        e = result["b_perp2"]
        return f"<B_perp^2> = {e.value:.3g} +/- {e.sigma:.2g} T^2"

    def truth(self) -> dict | None:
        """The twin's <B_perp^2> (T^2) at B0 along x, and the r it gives."""
        if self.apparatus.world is None:
            return None
        t = self.apparatus.characterisation().zeeman.truth(self.b0_ut * 1e-6, "x")
        return {"b_perp2": t["b_perp2_t2"], "ratio": t["ratio"], "g_ratio": t["g_ratio"]}
