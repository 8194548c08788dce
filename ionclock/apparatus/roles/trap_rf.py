"""The trap-RF role: the amplitude stabiliser for the whole clock run, and its record.

DOMAIN §1: "RF amplitude stabilisation holds radial secular frequencies; long-term drift
< 2 kHz". The loop is `ionclock.servo.rf_stabiliser` (SG380 source ``[instruments.trap_rf]``,
34465A reading the rectified pickoff ``[instruments.rf_pickoff]``), one SimPy process beside
the clock servo. What it records (decision 0502 names):

- ``rf.pickoff_v`` (V), ``rf.source_dbm`` (dBm), ``rf.error`` (fraction of the setpoint), as
  the stabiliser takes them; a pickoff reading that failed is a missing sample (None, with
  the reason: decision 0503);
- ``rf.secular_x_hz``, ``rf.secular_y_hz``: the radial secular frequencies derived from the
  pickoff through the calibration f_r = f_r,cal · V / V_cal (f_r ≈ q Ω / 2√2 with q ∝ V_trap,
  and the pickoff ∝ V_trap: `ionclock.sim_instruments.trap_rf`'s model, DOMAIN §1). They are
  derived, not measured: a drift of the pickoff's own gain is invisible in them; the
  sideband spectra (issue 15) measure the secular frequencies themselves;
- ``rf.enabled`` (1/0, the source's ``ENBR?`` each cycle): the BBR row's RF state
  (``[bbr] rf_state_channel`` of the budget config);
- on the twin also the truth, ``truth.rf.secular_x_hz`` / ``_y_hz`` (source "twin truth"),
  which the stabiliser never reads.

A lost pickoff (the DMM offline, or a reading further than ``plausible_fraction`` from the
setpoint) holds the amplitude where it is: the stabiliser stops stepping it (events
``instrument_offline`` / ``rf_pickoff_implausible``), never switches the output, and
re-engages bumplessly once readings are back (the resilient wrapper reconnects the DMM and
replays its configuration). Nothing here switches the RF on or off: the ion's confinement is
not the software's decision (decision 0701; safe shutdown leaves the RF untouched). The clock
is not held for a lost pickoff: the amplitude held, the secular frequencies drift only as
slowly as the source-to-trap coupling (~3e-3 per sqrt(day)), a second-order Doppler effect
far below the budget's resolution; the event says so.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from ionclock.apparatus.roles import Role
from ionclock.config import Field
from ionclock.drivers.trap_rf import PickoffDMM
from ionclock.errors import ConfigError, IonclockError
from ionclock.servo.rf_stabiliser import RFStabiliserConfig, default_controller, rf_stabiliser

F = Field
SOURCE = "trap_rf"


class TrapRFRole(Role):
    """The RF amplitude stabiliser beside the clock servo (see the module docstring)."""

    section = "trap_rf"
    SETTINGS = {
        "enabled": F(bool, True, doc="run the RF amplitude stabiliser (with its instruments)"),
        "period_s": F(float, 10.0, min=0.1, max=3600.0, doc="stabiliser cycle, s"),
        "setpoint_v": F(float, 0.0, min=0.0, max=1000.0,
                        doc="pickoff setpoint, V; 0: the mean of the readings at engage"),
        "max_step_db": F(float, 0.05, min=0.001, max=3.0,
                         doc="largest amplitude step per cycle, dB"),
        "min_dbm": F(float, -20.0, min=-110.0, max=16.5,
                     doc="amplitude window the loop never leaves, dBm"),
        "max_dbm": F(float, 6.0, min=-110.0, max=16.5),
        "plausible_fraction": F(float, 0.3, min=0.01, max=0.9,
                                doc="a pickoff reading further than this from the "
                                    "setpoint holds the amplitude"),
        "dmm_range_v": F(float, 10.0, choices=PickoffDMM.RANGES_V, doc="DMM range, V"),
        "dmm_nplc": F(float, 10.0, choices=PickoffDMM.NPLCS, doc="DMM integration, NPLC"),
        "f_x_hz": F(float, 3.531e6, min=1e3, max=1e8,
                    doc="radial secular frequency x at the calibration voltage (DOMAIN §1)"),
        "f_y_hz": F(float, 3.166e6, min=1e3, max=1e8),
        "calibration_v": F(float, 0.0, min=0.0, max=1000.0,
                           doc="pickoff voltage at which f_x_hz, f_y_hz were measured; "
                               "0: the setpoint"),
    }
    ROLE_MODELS = {"trap_rf": ("sg380",), "rf_pickoff": ("dmm_34465a",)}

    @classmethod
    def configured(cls, cfg: dict) -> bool:
        return super().configured(cfg) and cfg.get(cls.section, {}).get("enabled", True)

    def __init__(self, ctx):
        super().__init__(ctx)
        s = self.settings
        if not s["min_dbm"] < s["max_dbm"]:
            raise ConfigError("trap_rf.min_dbm", f"{s['min_dbm']} must be below max_dbm "
                                                 f"{s['max_dbm']}")
        self.config = RFStabiliserConfig(
            period_s=s["period_s"], setpoint_v=s["setpoint_v"] or None,
            max_step_db=s["max_step_db"], min_dbm=s["min_dbm"], max_dbm=s["max_dbm"],
            plausible_fraction=s["plausible_fraction"], source=SOURCE)
        self.source = ctx.instruments["trap_rf"]
        self.meter = ctx.instruments["rf_pickoff"]
        self._implausible = False
        self._stopped = False
        self.setpoint_v: float | None = self.config.setpoint_v

    # --- what it records ------------------------------------------------------------------
    def _twin_rf(self) -> Any:
        """The twin's RF physics behind the source (truth only; None in the lab)."""
        driver = getattr(self.source, "driver", self.source)
        return getattr(getattr(driver, "twin", None), "trap_rf", None)

    def channels(self) -> list[tuple]:
        inst = self.ctx.cfg["instruments"]
        src, dmm = inst["trap_rf"], inst["rf_pickoff"]
        period = self.settings["period_s"]
        at = f"{src['model']} {src['resource']}"
        reading = f"{dmm['model']} {dmm['resource']} reading"
        rows = [("rf.pickoff_v", "V", None, None, reading, period),
                ("rf.source_dbm", "dBm", None, None, f"{at} amplitude_dbm", period),
                ("rf.error", "", None, None, "rf stabiliser (V_set - V) / V_set", period),
                ("rf.enabled", "", None, None, f"{at} output_enabled", period)]
        rows += [(f"rf.secular_{axis}_hz", "Hz", None, None,
                  f"derived: {axis} = f_{axis},cal * rf.pickoff_v / V_cal (f_r ~ V_trap)",
                  period) for axis in ("x", "y")]
        if src["resource"].startswith("sim://"):
            rows += [(f"truth.rf.secular_{axis}_hz", "Hz", None, None, "twin truth", period)
                     for axis in ("x", "y")]
        return rows

    def _record(self, t: float, channel: str, value: float | None,
                reason: str | None = None) -> None:
        if not self._stopped:
            self.ctx.record(t, channel, value, reason)

    def _secular(self, t: float, volts: float | None, reason: str | None) -> None:
        """The radial secular frequencies from a pickoff reading (the calibration)."""
        cal = self.settings["calibration_v"] or self.setpoint_v
        for axis in ("x", "y"):
            if volts is None or not cal:
                self._record(t, f"rf.secular_{axis}_hz", None, reason or "no calibration")
            else:
                self._record(t, f"rf.secular_{axis}_hz",
                             self.settings[f"f_{axis}_hz"] * volts / cal)

    # --- the stabiliser's store and instruments, seen through the role ----------------------
    def add(self, table: str, row: tuple) -> None:
        """The stabiliser's samples: recorded, the pickoff also as secular frequencies."""
        t, channel, value = row
        self._record(t, channel, value)
        if channel == "rf.pickoff_v":
            if self._implausible:
                self._secular(t, None, "pickoff reading implausible")
            else:
                self._secular(t, value, None)

    def event(self, t: float, kind: str, source: str, **detail) -> None:
        """The stabiliser's events, with what they mean for the RF and the clock."""
        if self._stopped:
            return
        if kind == "rf_engaged":
            self.setpoint_v = detail.get("setpoint_v")
        elif kind == "rf_pickoff_implausible":
            self._implausible = True
            detail["action"] = ("amplitude held, output untouched; clock not held "
                                "(secular drift only as slow as the coupling)")
        elif kind == "rf_pickoff_implausible_cleared":
            self._implausible = False
        elif kind == "instrument_offline":
            detail["action"] = "amplitude held, output untouched; clock not held"
        self.ctx.event(t, kind, source, **detail)

    def _output_enabled(self) -> bool:
        """``ENBR?`` through the role: the truth sampled first, then rf.enabled recorded."""
        t = self.ctx.env.now
        twin = self._twin_rf()
        if twin is not None:
            fx, fy, _ = twin.secular_frequencies()
            self._record(t, "truth.rf.secular_x_hz", fx)
            self._record(t, "truth.rf.secular_y_hz", fy)
        try:
            on = bool(self.source.output_enabled)
        except (IonclockError, OSError) as err:
            self._record(t, "rf.enabled", None, f"{type(err).__name__}: {err}")
            raise
        self._record(t, "rf.enabled", 1.0 if on else 0.0)
        return on

    def _reading(self) -> float:
        """One pickoff reading; a failed one is a missing sample (with its reason)."""
        try:
            return float(self.meter.reading)
        except (IonclockError, OSError) as err:
            t = self.ctx.env.now
            why = f"{type(err).__name__}: {err}"
            self._record(t, "rf.pickoff_v", None, why)
            self._secular(t, None, why)
            raise

    # --- the process ------------------------------------------------------------------------
    def process(self) -> Generator:
        env = self.ctx.env
        s = self.settings
        try:
            self.meter.configure_voltage_dc(s["dmm_range_v"], s["dmm_nplc"])
        except (IonclockError, OSError) as err:   # the wrapper replays it on reconnect
            self.ctx.event(env.now, "rf_pickoff_not_configured", SOURCE,
                           error=f"{type(err).__name__}: {err}")
        loop = env.process(rf_stabiliser(env, _Source(self), _Meter(self),
                                         default_controller(self.config), self.config,
                                         store=self))
        try:
            yield loop
        except simpy.Interrupt:   # the run is over: the stabiliser stops, the RF stays as is
            self._stopped = True
            if loop.is_alive:
                loop.interrupt("stop")


class _Source:
    """The SG380 as the stabiliser sees it: ``ENBR?`` recorded (rf.enabled) on the way."""

    def __init__(self, role: TrapRFRole):
        self._role = role

    @property
    def output_enabled(self) -> bool:
        return self._role._output_enabled()

    @property
    def amplitude_dbm(self) -> float:
        return self._role.source.amplitude_dbm

    @amplitude_dbm.setter
    def amplitude_dbm(self, dbm: float) -> None:
        self._role.source.amplitude_dbm = dbm


class _Meter:
    """The pickoff DMM as the stabiliser sees it: a failed reading recorded as missing."""

    def __init__(self, role: TrapRFRole):
        self._role = role

    @property
    def reading(self) -> float:
        return self._role._reading()


ROLE = TrapRFRole
