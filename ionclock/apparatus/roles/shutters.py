"""The shutters role: every laser but the clock laser blocked during each interrogation.

Seed §II: "To avoid the AC Stark shift, all lasers except the clock laser are blocked using
mechanical shutters during the clock interrogation" (DOMAIN §1 cycle). One Thorlabs SC10
per beam, ``[instruments.shutter_397]``, ``[instruments.shutter_866]``,
``[instruments.shutter_854]`` (any of them; decision 0305 for why these names and this
design):

- the blades follow the sequencer's TTL, not software: each SC10 is put in its external gate
  mode (``mode=5``) and enabled at the start of the run, and the pulse program gains the
  shutters' gate (`ionclock.drivers.sequencer.PulseProgram.shutter_gate_s`): it falls
  ``close_lead_s`` before the first clock pulse and rises ``open_lead_s`` before the
  detection, each lead at least the blade's latency. Software open/close per cycle could
  not follow a 105 ms cycle (one RS-232 exchange of echo and prompt at 9600 baud, two per
  cycle per unit, with no timing guarantee): decision 0305;
- their state checked: every ``check_s`` each unit's mode, enable and interlock are read
  back (``mode?``, ``ens?``, ``interlock?``) into ``shutter.<laser>`` (1: following the
  gate, 0: not, missing: unreadable). A unit not following the gate, tripped, or
  unreadable cannot be vouched for: the role holds the clock (``request_hold``, frames
  flagged back to the last good read-back), puts the unit back in gate mode, and releases
  the hold at the next read-back that is good (one ``check_s`` later at the earliest, so
  the frame under way when the fault was found is flagged too);
- the blade itself is not seen by the unit: ``closed?`` reports the controller's drive
  (SC10 manual, command table: "Returns 1 if the shutter is closed or 0 if open"; the SH05
  head has no position sensor), so a jammed blade reads "closed" like a good one. The
  physical check is the clock servo's contrast test (``contrast_lost``, servo/clock_lock.py):
  stray 854 nm (or 397 nm) light during the free evolution empties D5/2, the servo holds and
  flags back to the test's onset estimate. The role then names the blades whose light does
  that (``shutter_suspect``: the 854 nm, then the 397 nm shutter) at the instant the servo
  holds (`ClockServo.hold_listeners`; no I/O).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

from ionclock.apparatus.roles import Role
from ionclock.config import Field
from ionclock.errors import ConfigError, IonclockError

F = Field
SOURCE = "shutters"

#: The shutter roles, by the laser each blocks (DOMAIN §1: 397 cooling/detection, 866
#: repump, 854 quench; the clock laser, 729 nm, is switched by its AOM and never shuttered).
SHUTTER_ROLES = ("shutter_397", "shutter_866", "shutter_854")
#: Whose light, leaking during the free evolution, empties D5/2 (what the contrast test
#: sees): the 854 nm quench directly, the 397 nm by scattering from S1/2 (most likely first).
CONTRAST_SUSPECTS = ("shutter_854", "shutter_397")


class ShuttersRole(Role):
    """The SC10 shutters on the sequencer's gate, checked (see the module docstring)."""

    section = "shutters"
    SETTINGS = {
        "enabled": F(bool, True, doc="put the shutters on the sequencer's gate and check them"),
        "close_lead_s": F(float, 0.012, min=0.0, max=1.0,
                          doc="the gate falls this long before the first clock pulse (at "
                              "least the blades' closing latency), s"),
        "open_lead_s": F(float, 0.012, min=0.0, max=1.0,
                         doc="the gate rises this long before the detection (at least the "
                             "blades' opening latency), s"),
        "check_s": F(float, 30.0, min=1.0, max=3600.0,
                     doc="read-back period of each unit's mode, enable and interlock, s"),
    }
    ROLE_MODELS = {role: ("sc10",) for role in SHUTTER_ROLES}

    @classmethod
    def configured(cls, cfg: dict) -> bool:
        return (any(role in cfg["instruments"] for role in SHUTTER_ROLES)
                and cfg.get(cls.section, {}).get("enabled", True))

    @classmethod
    def gate(cls, cfg: dict, program) -> tuple[float, float]:
        """(fall, rise) of the shutters' gate in the cycle (s from its start)."""
        s = cfg[cls.section]
        return (program.prepare_s - s["close_lead_s"],
                program.detection_start_s - s["open_lead_s"])

    @classmethod
    def pulse_program(cls, cfg: dict, program):
        fall, rise = cls.gate(cfg, program)
        try:
            return replace(program, shutter_gate_s=(fall, rise))
        except ValueError as err:
            key = "close_lead_s" if fall < 0 or fall > program.prepare_s else "open_lead_s"
            raise ConfigError(f"shutters.{key}", str(err)) from None

    def __init__(self, ctx):
        super().__init__(ctx)
        self.shutters = {role: ctx.instruments[role] for role in SHUTTER_ROLES
                         if role in ctx.instruments}
        self._last_good = {role: ctx.env.now for role in self.shutters}
        self._held: set[str] = set()
        self._stopped = False

    def channels(self) -> list[tuple]:
        inst = self.ctx.cfg["instruments"]
        return [(f"shutter.{role.split('_', 1)[1]}", "", None, None,
                 f"{inst[role]['model']} {inst[role]['resource']} mode?/ens?/interlock?: "
                 "1 following the gate", self.settings["check_s"])
                for role in self.shutters]

    # --- one unit ---------------------------------------------------------------------------
    @staticmethod
    def _state(unit) -> dict:
        """What the unit says of itself: mode, enable, interlock."""
        return {"mode": unit.mode, "enabled": bool(unit.enabled),
                "interlock": bool(unit.interlock_tripped)}

    @staticmethod
    def _following(state: dict) -> bool:
        return state["mode"] == "external" and state["enabled"] and not state["interlock"]

    @staticmethod
    def _set(unit) -> None:
        """External gate mode, enabled: the blade follows the sequencer's gate."""
        if unit.mode != "external":
            unit.mode = "external"   # a mode change disables the output: enable after it
        if not unit.enabled:
            unit.open()              # `ens` (toggles; read back by the driver)

    def _check(self, role: str, unit, setting: bool) -> None:
        """Read one unit back (and put it on the gate when `setting` or when it is not)."""
        ctx = self.ctx
        t = ctx.env.now
        laser = role.split("_", 1)[1]
        faulted = False   # found not following now: held until a later read-back is good
        try:
            if setting:
                self._set(unit)
            state = self._state(unit)
            if not self._following(state) and not setting:
                ctx.event(t, "shutter_fault", role, **state,
                          action="clock held; the unit is put back on the gate")
                faulted = True
                self._hold(role)
                self._set(unit)
                state = self._state(unit)
        except (IonclockError, OSError) as err:
            why = f"{type(err).__name__}: {err}"
            ctx.record(t, f"shutter.{laser}", None, why)
            if role not in self._held:
                ctx.event(t, "shutter_unverified", role, error=why,
                          action="clock held until the unit reads back on the gate")
            self._hold(role)
            return
        ok = self._following(state)
        ctx.record(t, f"shutter.{laser}", 1.0 if ok else 0.0,
                   None if ok else f"mode {state['mode']}, enabled {state['enabled']}, "
                                   f"interlock {state['interlock']}")
        if setting:
            ctx.event(t, "shutter_set", role, **state, gate_s=list(self.gate_s))
        if ok and faulted:
            ctx.event(t, "shutter_reset", role, **state,
                      action="back on the gate; the hold ends at the next good read-back")
        elif ok:
            self._last_good[role] = t
            if role in self._held:
                self._held.discard(role)
                ctx.servo.release_hold(f"shutter_{laser}")
                ctx.event(t, "shutter_restored", role, **state)
        else:
            if role not in self._held:
                ctx.event(t, "shutter_fault", role, **state, action="clock held")
            self._hold(role)

    def _hold(self, role: str) -> None:
        if role not in self._held:
            self._held.add(role)
            laser = role.split("_", 1)[1]
            self.ctx.servo.request_hold(f"shutter_{laser}", since=self._last_good[role],
                                        shutter=role)

    def _on_hold(self, reason: str, detail: dict) -> None:
        """Name the suspect blades when the servo holds for lost contrast (once per hold)."""
        if reason != "contrast_lost" or self._stopped:
            return
        suspects = [r for r in CONTRAST_SUSPECTS if r in self.shutters]
        self.ctx.event(self.ctx.env.now, "shutter_suspect", SOURCE, shutters=suspects,
                       reason="contrast_lost",
                       why="the units report their drive, not the blade (no position "
                           "sensor): a blade that did not close lets light that empties "
                           "D5/2 through during the free evolution")

    # --- the process ------------------------------------------------------------------------
    def process(self) -> Generator:
        import simpy

        ctx = self.ctx
        env = ctx.env
        program = ctx.sequencer.program
        self.gate_s = program.shutter_gate_s or self.gate(ctx.cfg, program)
        listeners = getattr(ctx.servo, "hold_listeners", None)
        if listeners is not None:
            listeners.append(self._on_hold)
        try:
            for role, unit in self.shutters.items():
                self._check(role, unit, setting=True)
            check_s = self.settings["check_s"]
            while True:
                yield env.timeout(check_s)
                for role, unit in self.shutters.items():
                    self._check(role, unit, setting=False)
        except simpy.Interrupt:   # the run is over; safe shutdown puts the shutters
            self._stopped = True


ROLE = ShuttersRole
