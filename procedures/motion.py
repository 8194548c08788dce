"""The ion's motion: sideband thermometry and the Debye–Waller check (DOMAIN §3, seed Figs. 2-8).

**thermometry** (`ThermometryProcedure`): for one secular mode (``mode``), after 3D sideband
cooling and each dark time of ``dark_times_ms`` (the seed: 30-140 ms), red- and blue-sideband
pulses (``order`` -1, +1 at -+omega_mode from the carrier, through the clock AOM) of beam 2 (the
cooling beam, whose Lamb-Dicke parameters are Table I's) of ``pulses`` lengths from 0 to two
ground-state blue-sideband pi times, ``shots`` shots each. Rows ``dark_time_s, pulse_time_s,
sideband, p_excited, eta, shots``: the thermometry analysis' columns (one mode per file); its
result: n0 and the heating rate ndot of n(t) = n0 + ndot t with 95 % intervals.

**debye-waller** (`DebyeWallerProcedure`): carrier flops of beams 1 and 3 (the seed's Fig. 8)
after Doppler cooling and after sideband cooling, ``pulses`` lengths over ``periods`` nominal
Rabi periods (short flops: the thermal spread of Rabi frequencies biases a sine fit of long
ones, decision 0801), each flop fitted with P(t) = A/2 (1 - exp(-gamma t) cos(Omega t))
(binomial weights from the model, iterated). Rows ``beam, omega_doppler(_unc), omega_sc(_unc),
eta_x, eta_y, eta_z`` (the seed convention's Lamb-Dicke parameters,
`ionclock.physics.sidebands.beam_eta_matrix`): the debye-waller analysis' columns; its result:
nbar per mode after Doppler cooling (nbar_x = nbar_y tied, as the seed).

Neither result changes a budget number here: the secular row needs the three modes' heating
rates together (the secular analysis), and the Debye-Waller nbar is the Doppler-cooling check.
Shots through `ProbeRig` (the clock's sequencer; decision 0804); in the lab through the pattern
generator (`[instruments.pattern]`, decision 0311), refused without one.
"""

from __future__ import annotations

import math

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter, ListParameter, Parameter

from ionclock.errors import UserError
from ionclock.physics.shifts import SECULAR_FREQS_HZ
from ionclock.physics.sidebands import beam_eta_matrix
from ionclock.procedures._probe import PROBE_OPTIONAL_ROLES, PROBE_ROLES, ProbeRig
from ionclock.procedures.analysis import debye_waller, thermometry
from ionclock.procedures.analysis.common import DataError, least_squares
from ionclock.procedures.base import IonclockProcedure, register
from ionclock.procedures.micromotion import CARRIER_RABI_HZ

MODES = ("x", "y", "z")
#: Lamb-Dicke parameters, beams 1-3 x modes x, y, z (the seed convention, decision 0800).
ETA = beam_eta_matrix("seed")


def fit_carrier_flop(t, dark, shots: int, omega_guess: float, iterations: int = 2):
    """Rabi frequency (rad/s) and its standard uncertainty from a carrier flop (dark counts).

    P(t) = A/2 (1 - exp(-gamma t) cos(Omega t)); binomial sigmas from the model, iterated
    (a point's p kept 0.5/N from 0 and 1).
    """
    t = np.asarray(t, float)
    p = np.asarray(dark, float) / shots
    lo, hi = 0.5 / shots, 1 - 0.5 / shots
    gamma_scale = omega_guess * 1e-3

    def model(tt, amp, gamma_rel, omega_rel):
        return 0.5 * amp * (1.0 - np.exp(-gamma_rel * gamma_scale * tt)
                            * np.cos(omega_rel * omega_guess * tt))

    sigma = np.sqrt(np.clip(p, lo, hi) * (1 - np.clip(p, lo, hi)) / shots)
    bounds = ([0.0, 0.0, 0.5], [1.2, np.inf, 2.0])
    fit = least_squares(model, t, p, (1.0, 1.0, 1.0), sigma, bounds=bounds, x_scale="jac")
    for _ in range(iterations):
        pm = np.clip(model(t, *fit.params), lo, hi)
        fit = least_squares(model, t, p, fit.params, np.sqrt(pm * (1 - pm) / shots),
                            bounds=bounds, x_scale="jac")
    return fit.params[2] * omega_guess, fit.sigma(2) * omega_guess


@register
class ThermometryProcedure(IonclockProcedure):
    """Red and blue sideband flops of one mode after dark times (module docstring)."""

    NAME = thermometry.NAME
    ANALYSIS = thermometry
    ROLES = PROBE_ROLES
    OPTIONAL_ROLES = PROBE_OPTIONAL_ROLES
    VERSION = "1"
    DATA_COLUMNS = [*thermometry.COLUMNS, "shots"]
    BUDGET_ROWS = ()

    mode = ListParameter("Secular mode", choices=list(MODES), default="z")
    dark_times_ms = Parameter("Dark times (ms, comma-separated)", default="30,55,80,110,140")
    pulses = IntegerParameter("Pulse lengths per flop", default=21, minimum=5)
    shots = IntegerParameter("Shots per point", default=100, minimum=10)
    line = IntegerParameter("Zeeman line", default=0, minimum=0, maximum=5)

    def _darks(self) -> list[float]:
        try:
            darks = [float(x) * 1e-3 for x in str(self.dark_times_ms).split(",") if x.strip()]
        except ValueError:
            raise UserError(f"dark_times_ms {self.dark_times_ms!r}: expected numbers (ms) "
                            "separated by commas") from None
        if not darks or min(darks) < 0:
            raise UserError("dark_times_ms: one or more dark times >= 0 ms")
        return darks

    def measure(self):
        darks = self._darks()
        j = MODES.index(self.mode)
        eta = float(ETA[1, j])
        omega = 2 * math.pi * CARRIER_RABI_HZ[1]
        t_max = 2 * math.pi / (eta * omega)          # two ground-state blue pi times
        times = np.linspace(0.0, t_max, self.pulses)[1:]
        rig = self.rig = ProbeRig(self.apparatus, self.line)
        total = len(darks) * 2 * len(times)
        k = 0
        try:
            for dark in darks:
                for side in (-1, 1):
                    for t in times:
                        n = rig.shots(self.shots, beam=2, pulse_s=float(t),
                                      detuning_hz=side * SECULAR_FREQS_HZ[j],
                                      cooling="sideband", dark_time_s=dark)
                        k += 1
                        self.progress(k / total)
                        yield {"dark_time_s": dark, "pulse_time_s": float(t),
                               "sideband": "blue" if side > 0 else "red",
                               "p_excited": n / self.shots, "eta": eta, "shots": self.shots}
                        if self.should_stop():
                            return
        finally:
            rig.close()

    def budget_values(self, result) -> dict:
        """No budget number from one mode (module docstring)."""
        return {}

    def summary(self, result) -> str:
        return f"mode {self.mode}: " + "; ".join(e.text(3) for e in result.estimates)

    def truth(self) -> dict | None:
        """The twin's n0 and heating rate of this mode."""
        if self.apparatus.world is None:
            return None
        p = self.apparatus.characterisation().motion.p
        j = MODES.index(self.mode)
        return {"n0": float(p.n0[j]), "heating_rate": float(p.heating_rate[j])}


@register
class DebyeWallerProcedure(IonclockProcedure):
    """Carrier flops of beams 1 and 3 after Doppler and sideband cooling (module docstring)."""

    NAME = debye_waller.NAME
    ANALYSIS = debye_waller
    ROLES = PROBE_ROLES
    OPTIONAL_ROLES = PROBE_OPTIONAL_ROLES
    VERSION = "1"
    DATA_COLUMNS = list(debye_waller.COLUMNS)
    BUDGET_ROWS = ()

    pulses = IntegerParameter("Pulse lengths per flop", default=41, minimum=9)
    periods = FloatParameter("Rabi periods per flop", default=4.0, minimum=0.5, maximum=20.0)
    shots = IntegerParameter("Shots per point", default=100, minimum=10)
    line = IntegerParameter("Zeeman line", default=0, minimum=0, maximum=5)

    def measure(self):
        rig = self.rig = ProbeRig(self.apparatus, self.line)
        beams = (1, 3)
        k = 0
        try:
            for beam in beams:
                omega = 2 * math.pi * CARRIER_RABI_HZ[beam - 1]
                times = np.linspace(0.0, self.periods * 2 * math.pi / omega, self.pulses)[1:]
                fits = {}
                for cooling in ("doppler", "sideband"):
                    dark = [rig.shots(self.shots, beam=beam, pulse_s=float(t), cooling=cooling)
                            for t in times]
                    try:
                        fits[cooling] = fit_carrier_flop(times, dark, self.shots, omega)
                    except DataError as err:
                        raise UserError(f"beam {beam}, {cooling} cooling: {err}") from None
                    self.apparatus.event("carrier_flop", self.NAME, beam=beam, cooling=cooling,
                                         omega_rad_s=fits[cooling][0],
                                         sigma_rad_s=fits[cooling][1])
                    k += 1
                    self.progress(k / (2 * len(beams)))
                    if self.should_stop():
                        return
                eta = ETA[beam - 1]
                yield {"beam": beam,
                       "omega_doppler": fits["doppler"][0], "omega_doppler_unc": fits["doppler"][1],
                       "omega_sc": fits["sideband"][0], "omega_sc_unc": fits["sideband"][1],
                       "eta_x": float(eta[0]), "eta_y": float(eta[1]), "eta_z": float(eta[2])}
        finally:
            rig.close()

    def budget_values(self, result) -> dict:
        """No budget number: the Doppler-cooling check (module docstring)."""
        return {}

    def summary(self, result) -> str:
        return "; ".join(e.text(3) for e in result.estimates)

    def truth(self) -> dict | None:
        """The twin's occupations after Doppler cooling."""
        if self.apparatus.world is None:
            return None
        nb = self.apparatus.characterisation().motion.nbar("doppler")
        return {f"nbar_{m}": float(v) for m, v in zip(MODES, nb)}
