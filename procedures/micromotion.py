"""Excess micromotion: ratios R_i on three beams, and the compensation scan (DOMAIN §3, seed Eq. 5).

**micromotion** (`MicromotionProcedure`): ``samples`` measurements of R_b on each beam b = 1,
2, 3 by the monitor's method (`ionclock.apparatus.roles.micromotion`, decision 0309): a
carrier pulse of area pi/2, a micromotion-sideband pulse (the laser's lock offset, at
``order`` x Omega_RF) of area pi/2 at R = ``r_max``, then ``refine`` pulses of area pi/2 at the
last estimate's upper end R + 2 u; R = (theta_sb / t_sb) / (theta_c / t_c), theta =
2 arcsin(sqrt(p)). One row per sample: ``beam, ratio, ratio_unc, rf_hz``, the micromotion
analysis' columns; its result (the EMM shift with R_i = sqrt(<R^2>) per beam) sets the
budget's ratios.

**compensation** (`CompensationProcedure`): electrode ``electrode``'s voltage (the
compensation supply, ``[instruments.compensation]``) stepped over ``span_v`` around where it
is, ``points`` voltages, R of beam ``beam`` (= the electrode's direction) at each: rows
``voltage_v, ratio, ratio_unc``, the compensation analysis' columns (the parabola of R^2 and
its minimum V0 with a 95 % interval). The electrode is left at the fitted minimum when it
lies inside the scan (``apply``), else back where it was; either way an event says which. A
supply found with its outputs off starts from the config's ``[micromotion] voltages_v``.

Shots through `ProbeRig` (the clock's sequencer; decision 0804); in the lab through the pattern
generator (`[instruments.pattern]`, decision 0311), refused without one.
"""

from __future__ import annotations

import numpy as np
from pymeasure.experiment import BooleanParameter, FloatParameter, IntegerParameter

from ionclock.apparatus.roles.micromotion import sideband_ratio
from ionclock.errors import UserError
from ionclock.physics.constants import RF_MAGIC_HZ
from ionclock.procedures._probe import PROBE_OPTIONAL_ROLES, PROBE_ROLES, ProbeRig
from ionclock.procedures.analysis import micromotion as analysis
from ionclock.procedures.base import IonclockProcedure, register

#: Carrier Rabi frequencies (Hz) of beams 1-3 after sideband cooling: the pulse lengths
#: (the seed's Fig. 8 for beams 1 and 3; beam 2 ~250 kHz, DOMAIN §1's ~2 us pi time).
CARRIER_RABI_HZ = (2.201e6, 249.6e3, 3.488e6)


class _RatioMixin:
    """R of one beam by three or more pulses (module docstring)."""

    shots = IntegerParameter("Shots per pulse", default=100, minimum=10)
    refine = IntegerParameter("Refining sideband pulses", default=3, minimum=1, maximum=10)
    r_max = FloatParameter("Largest ratio read", default=0.3, minimum=0.01, maximum=1.0)
    order = IntegerParameter("Micromotion sideband order", default=1, minimum=-1, maximum=1)
    line = IntegerParameter("Zeeman line", default=0, minimum=0, maximum=5)

    def ratio(self, rig: ProbeRig, beam: int) -> tuple[float, float]:
        if self.order == 0:
            raise UserError("order must be +1 or -1 (the micromotion sideband)")
        om = CARRIER_RABI_HZ[beam - 1]
        n = self.shots
        sideband = self.order * RF_MAGIC_HZ
        t_c = 0.25 / om
        dark_c = rig.shots(n, beam=beam, pulse_s=t_c)
        t1 = 0.25 / (self.r_max * om)
        r, u = sideband_ratio(rig.shots(n, beam=beam, pulse_s=t1, detuning_hz=sideband), t1,
                              dark_c, t_c, n)
        for _ in range(self.refine):
            # area pi/2 at the estimate's upper end: never past pi (decision 0309)
            t2 = 0.25 / (min(max(r + 2.0 * u, 0.003), self.r_max) * om)
            r, u = sideband_ratio(rig.shots(n, beam=beam, pulse_s=t2, detuning_hz=sideband),
                                  t2, dark_c, t_c, n)
        return r, u


@register
class MicromotionProcedure(_RatioMixin, IonclockProcedure):
    """Samples of R on beams 1-3 -> the EMM shift (module docstring)."""

    NAME = analysis.NAME
    ANALYSIS = analysis
    ROLES = PROBE_ROLES
    OPTIONAL_ROLES = PROBE_OPTIONAL_ROLES
    VERSION = "1"
    DATA_COLUMNS = [*analysis.COLUMNS, *analysis.OPTIONAL]
    BUDGET_ROWS = ("emm",)

    samples = IntegerParameter("Samples per beam", default=3, minimum=1)

    def measure(self):
        rig = self.rig = ProbeRig(self.apparatus, self.line)
        try:
            for k in range(self.samples):
                for beam in (1, 2, 3):
                    r, u = self.ratio(rig, beam)
                    yield {"beam": beam, "ratio": r, "ratio_unc": u, "rf_hz": RF_MAGIC_HZ}
                    self.progress((3 * k + beam) / (3 * self.samples))
                    if self.should_stop():
                        return
        finally:
            rig.close()

    def budget_values(self, result) -> dict:
        """The budget's ratios: R_i = sqrt(<R^2>) per beam and their uncertainties."""
        d = result.details
        return {"micromotion": {"nominal_ratios": [float(x) for x in d["ratios"]],
                                "ratio_unc": [float(x) for x in d["ratio_uncs"]]}}

    def summary(self, result) -> str:
        r = ", ".join(f"{x:.4f}" for x in result.details["ratios"])
        return f"R = {r}; EMM {result.estimates[0].text(3)}"

    def truth(self) -> dict | None:
        """The twin's R_1..3 now and its EMM shift (fractional)."""
        if self.apparatus.world is None:
            return None
        mm = self.apparatus.characterisation().micromotion
        r = mm.ratios()
        return {"r1": float(r[0]), "r2": float(r[1]), "r3": float(r[2]),
                "emm_shift": float(mm.emm_shift())}


@register
class CompensationProcedure(_RatioMixin, IonclockProcedure):
    """A scan of one electrode's voltage -> the voltage of least micromotion (module docstring)."""

    NAME = analysis.SCAN_NAME
    ANALYSIS = analysis
    ROLES = (*PROBE_ROLES, "compensation")
    OPTIONAL_ROLES = PROBE_OPTIONAL_ROLES
    VERSION = "1"
    DATA_COLUMNS = ["voltage_v", "ratio", "ratio_unc"]
    BUDGET_ROWS = ()

    electrode = IntegerParameter("Electrode (and beam)", default=1, minimum=1, maximum=3)
    span_v = FloatParameter("Scan span", units="V", default=4.0, minimum=0.01, maximum=20.0)
    points = IntegerParameter("Voltages", default=15, minimum=3)
    apply = BooleanParameter("Leave the electrode at the minimum", default=True)

    def measure(self):
        rig = self.rig = ProbeRig(self.apparatus, self.line)
        supply = self.apparatus.instruments["compensation"]
        channel = getattr(supply, f"ch_{self.electrode}")
        if not channel.output_enabled:
            # a supply found off (a twin at power-on): the last optimisation's voltages
            volts = self.cfg.get("micromotion", {}).get("voltages_v") or []
            if len(volts) != 3:
                raise UserError(f"electrode {self.electrode}'s output is off and the config "
                                "gives no [micromotion] voltages_v to start from")
            for j, v in zip((1, 2, 3), volts):
                getattr(supply, f"ch_{j}").set_voltage(float(v))
            self.apparatus.event("compensation_set", self.NAME, voltages_v=list(volts))
        self.start_v = start = float(channel.voltage)
        hi = channel.max_v
        volts = start + np.linspace(-0.5, 0.5, self.points) * self.span_v
        if volts[0] < 0 or volts[-1] > hi:
            raise UserError(f"the scan {volts[0]:.3g}-{volts[-1]:.3g} V leaves electrode "
                            f"{self.electrode}'s 0-{hi:g} V: a smaller span_v")
        self.scan = []
        try:
            for i, v in enumerate(volts):
                read = channel.set_voltage(float(v))
                self.apparatus.wait(0.1)   # the electrode settles (an RC of ms)
                r, u = self.ratio(rig, self.electrode)
                self.scan.append((read, r, u))
                yield {"voltage_v": read, "ratio": r, "ratio_unc": u}
                self.progress((i + 1) / len(volts))
                if self.should_stop():
                    break
        finally:
            self._leave(channel)
            rig.close()

    def _leave(self, channel) -> None:
        """At the fitted minimum (inside the scan, `apply`) or back where it started."""
        target, how = self.start_v, "restored"
        if self.apply and len(self.scan) >= 3:
            try:
                res = analysis.fit_compensation_scan(
                    [s[0] for s in self.scan], ratio=[s[1] for s in self.scan],
                    ratio_unc=[s[2] for s in self.scan])
                target, how = float(res["v_min"].value), "set to the fitted minimum"
            except Exception as err:   # noqa: BLE001 - any fit failure: back where it was
                how = f"restored (no minimum: {err})"
        channel.set_voltage(target)
        self.apparatus.event("compensation_left", self.NAME, electrode=self.electrode,
                             voltage_v=target, how=how)

    def budget_values(self, result) -> dict:
        """No budget number: the scan moves the ion, the micromotion measurement reads it."""
        return {}

    def summary(self, result) -> str:
        return f"electrode {self.electrode}: V0 = {result['v_min'].text(4)}"

    def truth(self) -> dict | None:
        """The twin's optimum of this electrode (V) now."""
        if self.apparatus.world is None:
            return None
        v0 = self.apparatus.characterisation().micromotion.v0()
        return {"v_min": float(v0[self.electrode - 1])}


