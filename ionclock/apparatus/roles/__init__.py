"""The roles of the apparatus that run beside the clock servo, one SimPy process each.

The seed clock runs everything at once (DOMAIN §1–§3): the trap-RF amplitude stabiliser, the
shutters that block every laser but the clock laser during each interrogation, the wavemeter
watching the other lasers, the micromotion monitor, the thermometers and the vacuum gauge
of the budget, the frequency reference. Each role here is a process on the run's timeline
(`ionclock.apparatus.clock_run.ClockRun` starts them once the field is up), with its twin in
`sim_instruments/` when its resources are ``sim://``.

A role module defines one subclass of `Role` and is listed in `ROLE_MODULES`. The class
declares:

- ``section``: the clock config's section of its settings (``[trap_rf]``, ...), whose
  fields (`ionclock.config.Field`) are ``SETTINGS``; the config loader validates it with the
  rest (`ionclock.apparatus.clock_config.SCHEMA` takes every role's section);
- ``ROLE_MODELS``: the ``[instruments]`` roles it uses and the models each may be (checked at
  load like the clock's own roles);
- `configured`: whether a config runs it (its instruments are there and it is enabled);
- `channels`: its rows of the store's ``channels`` table;
- `process`: the SimPy generator; a `simpy.Interrupt` ends it (the run is over).

A role that cannot vouch for the clock asks the servo to hold
(``ctx.servo.request_hold(reason, since=...)``, which flags frames back to ``since`` and
holds from the next frame) and releases the hold when it can again (``release_hold``); a
role that needs the probe itself (a micromotion measurement) waits on the event
`request_hold` returns before it touches the sequencer. Its readings go through
``ctx.record(t, channel, value)``: into the store and, for the channels the live budget
reads (micromotion ratios and their ``.sigma``, the RF state, a measured <B^2>), into the
budget too.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

# The role modules, in the order their processes start.
ROLE_MODULES: tuple[str, ...] = (
    "ionclock.apparatus.roles.reference",
    "ionclock.apparatus.roles.wavemeter",
    "ionclock.apparatus.roles.shutters",
    "ionclock.apparatus.roles.trap_rf",
    "ionclock.apparatus.roles.micromotion",
)


@dataclass
class RoleContext:
    """What a role gets of the run: the timeline, the store, the servo and the instruments.

    `event(t, kind, source, **detail)` records an event (the store's, or kept until the store
    exists); `missing` tracks the channels' missing episodes (`record` feeds it);
    `instruments` are the run's connected (resilient) drivers by role; `cfg` is the
    whole validated clock config; `live_budget` is None when the budget is off; `realtime` is
    True in the lab (`simpy.rt.RealtimeEnvironment`).
    """

    env: Any
    store: Any
    servo: Any
    sequencer: Any
    instruments: dict
    cfg: dict
    live_budget: Any
    event: Callable[..., None]
    missing: Any = None
    realtime: bool = False

    def record(self, t: float, channel: str, value: float | None,
               reason: str | None = None) -> None:
        """One sample into the store, and into the live budget where it reads the channel.

        A missing reading is None (stored as NULL, decision 0503), never 0 or NaN; the
        channel's missing episode is recorded once, with `reason` (`MissingReadings`).
        """
        if value is not None and not math.isfinite(value):
            reason, value = reason or getattr(value, "reason", None), None
        if self.missing is not None:
            self.missing.update(t, channel, value, reason)
        self.store.add("samples", (t, channel, value))
        if self.live_budget is not None:
            self.live_budget.add_sample(t, channel, value)


class Role:
    """One role of the apparatus beside the clock servo (see the module docstring)."""

    section: str = ""
    SETTINGS: dict = {}
    ROLE_MODELS: dict[str, tuple[str, ...]] = {}

    def __init__(self, ctx: RoleContext):
        self.ctx = ctx
        self.settings = ctx.cfg.get(self.section, {}) if self.section else {}

    @classmethod
    def configured(cls, cfg: dict) -> bool:
        """Whether `cfg` runs this role: by default, when all its instruments are configured."""
        return all(role in cfg["instruments"] for role in cls.ROLE_MODELS)

    @classmethod
    def pulse_program(cls, cfg: dict, program: Any) -> Any:
        """The cycle's pulse program with this role's TTL lines added (by default unchanged).

        `program` is an `ionclock.drivers.sequencer.PulseProgram`; a role adds its lines (the
        shutters' gate) before the pattern goes to the pulse hardware (the twin's, or
        `ionclock twin-serve`'s).
        """
        return program

    def channels(self) -> list[tuple]:
        """Rows of the store's ``channels`` table.

        Each (name, unit, band_min, band_max, source, period_s), as a logger store has them.
        """
        return []

    def process(self) -> Generator:
        """The role's SimPy process."""
        raise NotImplementedError


def role_classes() -> list[type[Role]]:
    """Every role class, in `ROLE_MODULES` order (each module names its class ``ROLE``)."""
    return [importlib.import_module(name).ROLE for name in ROLE_MODULES]


def build_roles(ctx: RoleContext) -> list[Role]:
    """The roles `ctx.cfg` runs, built on the run's context."""
    return [cls(ctx) for cls in role_classes() if cls.configured(ctx.cfg)]
