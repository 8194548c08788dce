"""Trap RF amplitude stabiliser: a SimPy process holding the rectified pickoff voltage.

The radial secular frequencies scale with the RF amplitude at the trap (DOMAIN §1: "RF
amplitude stabilisation holds radial secular frequencies; long-term drift < 2 kHz"). The
pickoff at the trap sees the amplitude after the resonator, so holding the pickoff voltage
removes the drift of the source-to-trap coupling.

Loop (one cycle every `period_s` of the environment's clock):

1. ``ENBR?``: if the output is off, hold and log ``rf_output_off`` (the stabiliser never
   switches the RF on or off: the ion's confinement is not the servo's decision);
2. read the pickoff (``READ?``); a reading outside ``setpoint · (1 ± plausible_fraction)``
   holds the loop and logs ``rf_pickoff_implausible`` (a broken cable must not be servoed);
3. fractional error e = (V_set − V) / V_set; controller output u (dB relative to the
   source amplitude at engage, clamped by the controller's limits);
4. new amplitude = ref + u, limited to ``max_step_db`` per cycle and to the hard
   [min_dbm, max_dbm] window, rounded to the source's 0.01 dB step; the controller tracks
   what was really applied (no wind-up behind the slew limit).

Control: ``process.interrupt("hold")``, ``"resume"`` (bumpless: re-reads the amplitude),
``"stop"``. Instrument errors and timeouts hold the loop and log ``instrument_offline``
once; the loop resumes by itself (``instrument_online``) when the units answer again.
Events go to ``store.event(t, kind, source, **detail)`` and/or ``on_event(t, kind, detail)``;
samples (``rf.pickoff_v``, ``rf.source_dbm``, ``rf.error``) to ``store.add("samples", ...)``.
No wall clock is read and nothing sleeps: the same generator runs on
``simpy.rt.RealtimeEnvironment`` in the lab.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

import simpy

from ionclock.errors import InstrumentError, InstrumentTimeout
from ionclock.servo.controllers import PIController

#: d(ln V)/d(dB): the amplitude changes by ln(10)/20 = 11.5 % per dB.
FRACTION_PER_DB = math.log(10.0) / 20.0


class RFSource(Protocol):
    """What the stabiliser needs of the RF source (e.g. drivers.trap_rf.TrapRFSource)."""

    amplitude_dbm: float
    output_enabled: bool


class PickoffMeter(Protocol):
    """What the stabiliser needs of the pickoff meter (e.g. drivers.trap_rf.PickoffDMM)."""

    reading: float


@dataclass
class RFStabiliserConfig:
    """Settings of the RF amplitude stabiliser (SI; amplitudes in dB/dBm where named)."""

    period_s: float = 10.0            # cycle period
    setpoint_v: float | None = None   # pickoff setpoint; None: the mean at the first engage
    setpoint_samples: int = 5         # readings averaged for an automatic setpoint
    max_step_db: float = 0.05         # largest amplitude change per cycle
    min_dbm: float = -20.0            # hard amplitude window the loop never leaves
    max_dbm: float = 6.0
    plausible_fraction: float = 0.3   # readings further than this from the setpoint: hold
    source: str = "rf_stabiliser"     # name in the event log

    def __post_init__(self) -> None:
        if not (math.isfinite(self.period_s) and self.period_s > 0):
            raise ValueError(f"period_s must be positive, got {self.period_s!r}")
        if self.setpoint_v is not None and not (
                math.isfinite(self.setpoint_v) and self.setpoint_v > 0):
            raise ValueError(f"setpoint_v must be a positive voltage, got {self.setpoint_v!r}")
        if self.setpoint_samples < 1:
            raise ValueError("setpoint_samples must be at least 1")
        if not (math.isfinite(self.max_step_db) and self.max_step_db > 0):
            raise ValueError(f"max_step_db must be positive, got {self.max_step_db!r}")
        if not self.min_dbm < self.max_dbm:
            raise ValueError(f"min_dbm ({self.min_dbm}) must be below max_dbm ({self.max_dbm})")
        if not 0 < self.plausible_fraction < 1:
            raise ValueError("plausible_fraction must lie in (0, 1)")


def default_controller(config: RFStabiliserConfig, kp: float = 2.0,
                       ki: float | None = None, span_db: float = 6.0) -> PIController:
    """Build a PI controller for the loop: output in dB, error as a fraction of setpoint.

    The plant gain is FRACTION_PER_DB (0.115 per dB); the default integral gain gives a
    loop gain of ~0.35 per cycle (settling in a few cycles, no overshoot from the integral),
    the proportional term ~0.23. `span_db` bounds the correction either way.
    """
    if ki is None:
        ki = 0.35 / (FRACTION_PER_DB * config.period_s)
    return PIController(kp, ki, output_limits=(-span_db, span_db))


class _OfflineError(Exception):
    pass


def rf_stabiliser(env: simpy.Environment, source: RFSource, meter: PickoffMeter,
                  controller: PIController, config: RFStabiliserConfig | None = None, *,
                  store: Any = None,
                  on_event: Callable[[float, str, dict], None] | None = None,
                  ) -> Generator[simpy.Event, Any, None]:
    """Run the RF amplitude loop forever (a SimPy process generator; see the module doc)."""
    cfg = config or RFStabiliserConfig()
    state: dict[str, Any] = {"offline": False, "off": False, "implausible": False}

    def emit(kind: str, **detail: Any) -> None:
        if store is not None:
            store.event(env.now, kind, cfg.source, **detail)
        if on_event is not None:
            on_event(env.now, kind, detail)

    def sample(channel: str, value: float) -> None:
        if store is not None:
            store.add("samples", (env.now, channel, value))

    def guarded(fn: Callable[[], Any]) -> Any:
        try:
            value = fn()
        except (InstrumentError, InstrumentTimeout, OSError) as err:
            if not state["offline"]:
                state["offline"] = True
                emit("instrument_offline", error=str(err))
            raise _OfflineError from None
        return value

    def flag(key: str, bad: bool, kind: str, **detail: Any) -> None:
        if bad and not state[key]:
            emit(kind, **detail)
        elif not bad and state[key]:
            emit(kind + "_cleared")
        state[key] = bad

    setpoint = cfg.setpoint_v
    ref_dbm: float | None = None   # amplitude at engage; controller output is relative to it
    applied_dbm = 0.0
    t_last = env.now
    held = False
    engaging = False   # re-engaged this cycle; said so once a reading has come through
    emit("rf_stabiliser_started", period_s=cfg.period_s, setpoint_v=setpoint)

    while True:
        try:
            if held:
                yield env.event()  # parked until an interrupt
            else:
                # --- one cycle ----------------------------------------------------------------
                try:
                    on = guarded(lambda: source.output_enabled)
                    flag("off", not on, "rf_output_off")
                    if not on:
                        ref_dbm = None
                    else:
                        if ref_dbm is None:
                            # (re-)engage: start from what the source really outputs now
                            applied_dbm = guarded(lambda: source.amplitude_dbm)
                            ref_dbm = applied_dbm
                            if setpoint is None:
                                vs = [guarded(lambda: meter.reading)
                                      for _ in range(cfg.setpoint_samples)]
                                setpoint = sum(vs) / len(vs)
                            controller.reset(0.0)
                            controller.engage(0.0)
                            t_last = env.now
                            engaging = True
                        v = guarded(lambda: meter.reading)
                        if engaging:   # once a reading came through: engaged (not before)
                            engaging = False
                            emit("rf_engaged", setpoint_v=setpoint, amplitude_dbm=ref_dbm)
                        err = (setpoint - v) / setpoint
                        bad = abs(err) > cfg.plausible_fraction
                        flag("implausible", bad, "rf_pickoff_implausible", reading_v=v,
                             setpoint_v=setpoint)
                        sample("rf.pickoff_v", v)
                        if not bad:
                            dt = env.now - t_last
                            t_last = env.now
                            u = controller.update(err, dt) if dt > 0 else controller.last_output
                            target = min(max(ref_dbm + u, cfg.min_dbm), cfg.max_dbm)
                            step = min(max(target - applied_dbm, -cfg.max_step_db),
                                       cfg.max_step_db)
                            limited = applied_dbm + step
                            # the source resolves 0.01 dB: quantisation is not a limit the
                            # integrator must track (it dithers between adjacent levels)
                            new = min(max(round(limited, 2), cfg.min_dbm), cfg.max_dbm)
                            if new != round(applied_dbm, 2):
                                guarded(lambda: setattr(source, "amplitude_dbm", new))
                                if new in (cfg.min_dbm, cfg.max_dbm):
                                    emit("rf_limit", amplitude_dbm=new)
                            applied_dbm = new
                            if abs((limited - ref_dbm) - u) > 1e-9:
                                controller.track(limited - ref_dbm)
                            sample("rf.source_dbm", new)
                            sample("rf.error", err)
                        else:
                            t_last = env.now
                    if state["offline"]:  # a whole cycle went through: back online
                        state["offline"] = False
                        emit("instrument_online")
                except _OfflineError:
                    ref_dbm = None  # re-read the amplitude when the units answer again
                yield env.timeout(cfg.period_s)
        except simpy.Interrupt as intr:
            cause = intr.cause
            if cause == "stop":
                emit("rf_stopped")
                return
            if cause == "hold" and not held:
                held = True
                controller.hold()
                emit("rf_hold")
            elif cause == "resume" and held:
                held = False
                ref_dbm = None  # bumpless: re-read the source, preset the integral
                emit("rf_resume")
