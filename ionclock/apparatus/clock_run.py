"""Build and run a clock from a validated config: instruments, servo, store, twin.

`ClockRun` opens every instrument first (so an unreachable resource stops the run before
anything starts), brings the quantisation field up on a ramp, then runs the servo as a SimPy
process: on `simpy.Environment` as fast as it can for the twin (`ionclock sim`), on
`simpy.rt.RealtimeEnvironment` for the lab (`ionclock run`).

Start-up adopts the apparatus as it finds it: the last run (or a person) may have left the
coil supply on, the DDS in table mode, the counter counting. The coil channel is read back
first (``coils_found``: output, measured current, setpoint, compliance) and ramped from the
current that flows to the setpoint, never stepped (docs/decisions/0102); the DDS is put in
the automatic update its cycle table needs, the counter and the pulser in the cycle's modes,
and the table itself is written whole before the first cycle (`TableSequencer`).

A run that ends on an error records it (``run_stopped`` with ``reason: "error: <type>"`` and
the message) and still leaves the apparatus safe (`ClockRun.shutdown`) before the error
propagates.
"""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import simpy
import simpy.rt

from ionclock import __version__
from ionclock.apparatus import registry
from ionclock.apparatus.resilience import watch_links
from ionclock.apparatus.roles import RoleContext, build_roles, role_classes
from ionclock.apparatus.shutdown import ShutdownRequested, shutdown_on_signals
from ionclock.drivers.pattern import PatternLoader
from ionclock.drivers.sequencer import PulseProgram, TableSequencer
from ionclock.errors import ConfigError, IonclockError, UserError
from ionclock.servo.clock_lock import ClockServo, Frame, ServoParams
from ionclock.servo.clock_output import ClockOutput
from ionclock.servo.readout import ThresholdReadout
from ionclock.storage.missing import MissingReadings
from ionclock.storage.store import Store

ROOT = Path(__file__).resolve().parents[2]


def servo_params(cfg: dict) -> ServoParams:
    """ServoParams from the config's [servo] and [clock] sections."""
    s = cfg["servo"]
    return ServoParams(
        ramsey_time_s=s["ramsey_time_s"], cycle_time_s=s["cycle_time_s"], gain=s["gain"],
        drift_gain=s["drift_gain"], b_gain=s["b_gain"], b_drift_gain=s["b_drift_gain"],
        residual_gain=s["residual_gain"],
        b_initial_t=cfg["clock"]["b_nominal_t"],
        nu_initial_hz=s["nu_initial_hz"], acquire_frames=s["acquire_frames"],
        bright_counts=s["bright_counts"], dark_counts=s["dark_counts"],
        verify_every_frames=s["verify_every_frames"])


class ClockRun:
    """One run of the clock: open instruments, ramp the field, lock, record.

    `world`: a simulated apparatus that outlives this run (its ``env`` is the run's), for
    runs one after another on the same twin, as programs one after another on the same
    hardware; default a fresh world when any resource is ``sim://``.
    """

    def __init__(self, cfg: dict, out_dir: str | Path, realtime: bool = False,
                 seed: int | None = None, strict_realtime: bool = False,
                 world: Any = None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.realtime = realtime
        if seed is not None:
            cfg["twin"]["seed"] = seed
        inst = cfg["instruments"]
        self.simulated = any(e["resource"].startswith("sim://") for e in inst.values())
        if world is not None:
            if realtime:
                raise ValueError("a given world runs on its own environment, not in real time")
            self.env, self.world = world.env, world
        else:
            self.env = (simpy.rt.RealtimeEnvironment(factor=1.0, strict=strict_realtime)
                        if realtime else simpy.Environment())
            self.world = (registry.make_world(self.env, cfg["twin"], cfg["servo"], inst)
                          if self.simulated else None)
        self._own_world = world is None
        self.t_start = self.env.now   # the run's clock starts here (0 unless the world ran)
        # this run's SimPy processes (startup, servo, environment), ended with the run
        self._startup_proc = self._servo_proc = self._environment_proc = None
        self._watch_proc = None
        self.live_budget = None
        self._t0_unix = time.time()   # the run's date at t_start (set again when it runs)
        if cfg["budget"]["enabled"]:
            from ionclock.apparatus.live_budget import LiveBudget
            from ionclock.physics.budget import load_config as load_budget_config

            path = Path(cfg["budget"]["config"])
            if not path.is_absolute():
                path = ROOT / path
            from ionclock.storage import calibration

            # measured results (`ionclock measure`) in place of nominal values (decision 0803)
            self.calibration = calibration.load(cfg["budget"].get("calibration") or None)
            self.live_budget = LiveBudget(load_budget_config(path), cfg["budget"]["window_s"],
                                          calibration=self.calibration,
                                          clock_unix=self._clock_unix)
        self.instruments = {}
        self._pending_events: list[tuple] = []
        # a channel that starts to miss records why, once (reading_missing / _restored)
        self.missing = MissingReadings(self._instrument_event)
        self.store = None
        for role, entry in inst.items():
            twin_options = registry.twin_options(role, entry)
            # every driver comes wrapped: a lost link is reopened with backoff and its
            # setpoints restored, with instrument_offline / instrument_online events
            self.instruments[role] = registry.open_instrument(
                entry["model"], entry["resource"], world=self.world,
                key=f"instruments.{role}", twin_options=twin_options, resilient=True,
                resilience={"on_event": self._instrument_event, "source": role,
                            "clock": self._now},
                **self._driver_options(role, entry))
        self._configure_instruments()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--out: cannot create {str(self.out)!r}: {err.strerror}") from None
        store_path = fresh_store_path(self.out / cfg["run"]["store"], self.simulated)
        self.store = Store(store_path, commit_interval=cfg["run"]["commit_interval_s"])
        for t, kind, source, detail in self._pending_events:
            self.store.event(t, kind, source, **detail)
        if self.world is not None:   # what the twin injected, for grading (source "twin")
            self.world.on_note = lambda t, kind, **d: self.store.event(t, kind, "twin", **d)
        self.params = servo_params(cfg)
        if self.world is not None and cfg["twin"]["deterministic"]:
            readout = registry.expectation_readout(self.world)
        else:
            readout = ThresholdReadout(self.sequencer, cfg["servo"]["threshold_counts"])
        self.output = ClockOutput(registry.twin_reference(self.world)
                                  if self.world is not None else None)
        self.servo = ClockServo(self.env, self.sequencer, readout, output=self.output,
                                store=(self.store if cfg["run"]["record_cycles"]
                                       else _FrameOnlyStore(self.store)),
                                params=self.params, on_frame=self._on_frame,
                                on_flag=self._on_flag, ready=self._lock_units_ready)
        self.frames: list[tuple] = []   # (t, locked, holdover, nu, b, truth detuning, b_true)
        # the apparatus's other roles, each a process beside the servo (started with it)
        self.roles = build_roles(RoleContext(
            env=self.env, store=self.store, servo=self.servo, sequencer=self.sequencer,
            instruments=self.instruments, cfg=cfg, live_budget=self.live_budget,
            event=self._instrument_event, missing=self.missing, realtime=realtime))
        self._role_procs: list = []

    def _clock_unix(self, t: float) -> float:
        """The run's date (Unix s) at run time `t`: its start plus the time since."""
        return self._t0_unix + (t - self.t_start)

    def _now(self) -> float:
        """The run's clock (s): events and reconnect backoffs on the same time base."""
        return self.env.now

    def _instrument_event(self, t: float, kind: str, source: str, **detail) -> None:
        if self.store is None:   # before the store exists (while opening): keep for later
            self._pending_events.append((t, kind, source, detail))
        else:
            self.store.event(t, kind, source, **detail)

    def _configure_instruments(self) -> None:
        """Build the pulse sequencer on its instruments and put them in the cycle's modes.

        The TTL pattern it needs (`PulseProgram.edges`) is what the lab's pulse hardware is
        programmed with; the twin's hardware plays the same pattern.
        """
        s = self.cfg["servo"]
        inst = self.cfg["instruments"]
        # The cycle table needs automatic update (I a, the power-on mode); the driver only
        # knows what it set itself, and a unit left in I e (or I m) by another program would
        # put every segment one edge late. The table, the counter's modes and the pulser's
        # trigger are all written below or before the first cycle.
        self.instruments["aom"].external_update = False
        program = PulseProgram(pi_time_s=s["pi_time_s"], ramsey_time_s=s["ramsey_time_s"],
                               cycle_time_s=s["cycle_time_s"], prepare_s=s["prepare_s"])
        self.sequencer = TableSequencer(
            self.instruments["aom"], inst["aom"]["channel"], self.instruments["counter"],
            self.instruments["pulser"], program, s["aom_center_hz"],
            pulse_step_hz=s["pulse_step_hz"])
        program = self.sequencer.configure(inst["counter"]["gate_time_s"])
        # the other roles' TTL lines (the shutters' gate), in the pattern the hardware plays
        program = self.sequencer.program = configured_program(self.cfg, program)
        program_pattern(self.sequencer, program, self.instruments.get("pattern"),
                        inst.get("pattern", {}).get("wiring"), self.world)

    @staticmethod
    def _driver_options(role: str, entry: dict) -> dict:
        if role == "coils":
            return {"current_limit_a": entry["current_limit_a"],
                    "slew_a_per_s": entry["slew_a_per_s"]}
        return {}

    def _coil_channel(self):
        coils = self.instruments["coils"]
        return getattr(coils, f"ch_{self.cfg['instruments']['coils']['channel']}")

    def _on_flag(self, t0: float, t1: float) -> None:
        """The servo flagged frames after the fact: drop them from the summary's locked set.

        Flags reach back minutes at most, so only the end of the (time-ordered) list is
        walked.
        """
        frames = self.frames
        i = len(frames) - 1
        while i >= 0 and frames[i][0] >= t0:
            t, locked, hold, *rest = frames[i]
            if t <= t1:
                frames[i] = (t, False, True, *rest)
            i -= 1

    def _on_frame(self, frame: Frame) -> None:
        if self.world is not None:
            truth = self.world.take_truth()
            det = truth.sum_detuning_hz / truth.n if truth.n else math.nan
            b_true = self.world.b_true(frame.t)   # the same instant as the servo's b_t
            if truth.n:
                per_line = [d / n if n else None
                            for d, n in zip(truth.per_line, truth.per_line_n)]
                self.store.add("twin_truth", (frame.index, frame.t, det, b_true, *per_line,
                                              truth.sum_stray_hz / truth.n))
        else:
            det = b_true = math.nan
        self.frames.append((frame.t, frame.locked, frame.holdover, frame.nu_hz, frame.b_t,
                            det, b_true))
        if self.live_budget is not None and frame.locked:
            self.live_budget.add_field(frame.t, frame.b_t)

    def _lock_units_ready(self) -> bool:
        """Every unit the lock needs (coils, DDS, counter, pulser) connected and restored."""
        return all(getattr(self.instruments.get(role), "online", True)
                   for role in ("coils", "aom", "counter", "pulser"))

    def _startup(self):
        """Bring the field up from what the coil supply holds, then start the servo."""
        try:
            yield from self._field_up()
            self.world_t0 = self.env.now
            # in the lab, the units the servo does not talk to every cycle: a lost link is
            # found by a ping, reconnected and restored (the coils ramped back) meanwhile
            watched = [inst for role, inst in self.instruments.items()
                       if role not in ("aom", "counter", "pulser")]
            if watched and self.realtime:
                self._watch_proc = self.env.process(watch_links(self.env, watched))
            if self.live_budget is not None:
                self._environment_proc = self.env.process(self._environment())
            self._role_procs = [self.env.process(role.process()) for role in self.roles]
            # its own process, not `yield from`: each cycle then resumes one generator less;
            # whatever ends the servo still ends this process, and with it the run
            self._servo_proc = self.env.process(self.servo.run())
            yield self._servo_proc
        except simpy.Interrupt:   # the run is over (`_end_processes`)
            return

    def _field_up(self):
        """Ramp the coil from the state it is found in to `current_a`, never a step (delays, s).

        The channel is read back first (``coils_found``). On: the current that flows is the
        start (a channel held below its setpoint by the compliance, CV, first has its
        setpoint brought down to that current). Off: with nothing flowing, a setpoint left
        above one step is ramped to 0 before the output goes on. Then the compliance is set,
        the output (kept) on, and the setpoint ramped. Every set goes through the wrapper, so
        a reconnect restores this state (`ionclock.apparatus.resilience.restore_coils`).
        """
        entry = self.cfg["instruments"]["coils"]
        coil = self._coil_channel()
        on = coil.output_enabled
        setpoint = coil.current_setpoint   # read back: the driver's step check starts here
        current = coil.current             # measured; 0 when the output is off
        compliance = coil.voltage_setpoint
        self.store.event(self.env.now, "coils_found", "coils", channel=entry["channel"],
                         output=on, current_a=current, setpoint_a=setpoint,
                         compliance_v=compliance)
        step = coil.max_step
        if on and abs(current - setpoint) > step:
            start = min(max(current, 0.0), coil.current_limit)
            for delay in coil.ramp(start):
                yield self.env.timeout(delay)
        elif not on and setpoint > step:
            for delay in coil.ramp(0.0):
                yield self.env.timeout(delay)
        # Constant-current operation: the voltage setpoint is only the compliance. Lowered
        # under what the coil takes now, it would cut the current at once: refused.
        volts = entry["compliance_v"]
        if on and volts < compliance and volts < (taken := coil.voltage):
            raise ConfigError("instruments.coils.compliance_v",
                              f"{volts} V is below the {taken:.3f} V the coil takes now (the "
                              "supply was found on): setting it would step the current down")
        coil.voltage_setpoint = entry["compliance_v"]
        coil.output_enabled = True   # on already: no change, recorded for a reconnect
        for delay in coil.ramp(entry["current_a"]):
            yield self.env.timeout(delay)
        self.store.event(self.env.now, "field_ready", "coils", current_a=entry["current_a"])

    def _environment(self):
        """Poll the thermometer and the vacuum gauge into the store; re-evaluate the budget.

        A SimPy process: every `[budget] sample_s`, and the live budget every `update_s`.
        """
        b = self.cfg["budget"]
        thermo = self.instruments.get("thermometer")
        sensors = self.cfg["instruments"]["thermometer"]["sensors"] if thermo else {}
        gauge = self.instruments.get("pressure")
        last_budget = -math.inf
        while True:
            t = self.env.now
            if sensors:
                try:
                    # one query for every input where the unit has it (Lake Shore KRDG? 0)
                    every = getattr(thermo, "temperatures", None)
                    readings = [(channel, every[int(number) - 1] if isinstance(every, list)
                                 else getattr(thermo, f"input_{int(number)}").temperature)
                                for channel, number in sensors.items()]
                except (IonclockError, OSError) as err:   # offline: the wrapper reconnects it
                    readings = [(channel, _why(err)) for channel in sensors]   # missing, never 0
                for channel, kelvin in readings:
                    self._record(t, channel, kelvin)
            if gauge is not None:
                self._read_pressure(t, gauge)
            if t - last_budget >= b["update_s"]:
                last_budget = t
                self._update_budget(t)
            try:
                yield self.env.timeout(b["sample_s"])
            except simpy.Interrupt:   # the run is over (`_end_processes`)
                return

    def _read_pressure(self, t: float, gauge) -> None:
        """One vacuum-gauge reading (Pa) into the store and the live budget.

        A status word (the cold cathode starting, protected off, under range) is the driver's
        `Missing` (NaN): stored as no value, never as 0; the budget keeps its last readings.
        """
        channel = self.live_budget.pressure_channel
        number = self.cfg["instruments"]["pressure"]["channel"]
        try:
            pa = getattr(gauge, f"ch_{number}").pressure
        except (IonclockError, OSError) as err:   # offline: the wrapper reconnects it
            pa = _why(err)
        self._record(t, channel, pa)

    def _record(self, t: float, channel: str, value) -> None:
        """One environment reading into the store and the live budget.

        A missing reading (None, NaN, the drivers' `Missing` with its reason, or the `_Why`
        of a failed read) is stored as no value, never 0, and the channel's missing episode
        is recorded once with its reason (`MissingReadings`).
        """
        reason = getattr(value, "reason", None)
        if value is None or isinstance(value, _Why) or not math.isfinite(value):
            value = None
        else:
            value = float(value)
        self.missing.update(t, channel, value, reason)
        self.store.add("samples", (t, channel, value))
        self.live_budget.add_sample(t, channel, value)

    def _channel_rows(self) -> list[tuple]:
        """The thermometer's and the vacuum gauge's channels, as the `channels` table has them.

        The same names, units and sources a logger store has (`status` and `plot` read
        them): (name, unit, band_min, band_max, source, period_s).
        """
        if self.live_budget is None:
            return []   # the environment process, which samples them, does not run
        period = self.cfg["budget"]["sample_s"]
        rows = []
        entry = self.cfg["instruments"].get("thermometer")
        if entry is not None:
            rows += [(channel, "K", None, None,
                      f"{entry['model']} {entry['resource']} input_{int(number)}.temperature",
                      period)
                     for channel, number in entry["sensors"].items()]
        entry = self.cfg["instruments"].get("pressure")
        if entry is not None:
            rows.append((self.live_budget.pressure_channel, "Pa", None, None,
                         f"{entry['model']} {entry['resource']} ch_{entry['channel']}.pressure",
                         period))
        return rows

    def _all_channel_rows(self) -> list[tuple]:
        """The environment's channels and every role's."""
        return self._channel_rows() + [row for role in self.roles for row in role.channels()]

    def _update_budget(self, t: float) -> None:
        budget = self.live_budget.evaluate(t)
        nu0 = budget.nu0_hz
        self.output.set_budget(t, budget.total_fractional * nu0,
                               budget.total_uncertainty * nu0, budget.valid)
        self.store.add("budgets", (t, budget.total_fractional, budget.total_uncertainty,
                                   int(budget.valid), budget.to_json()))

    def run(self, duration_s: float, progress: bool = True) -> dict:
        """Run for `duration_s` of (simulated or real) time; return the summary."""
        self._t0_unix = time.time()
        self.store.set_meta(version=__version__, config=self.cfg, simulated=self.simulated,
                            duration_s=duration_s, t0_unix=self._t0_unix,
                            t_start_s=self.t_start, servo=asdict(self.params))
        if self.live_budget is not None:   # `ionclock budget STORE` evaluates it again
            self.store.set_meta(budget_config=self.live_budget.cfg)
            if self.live_budget.calibration is not None:
                self.store.set_meta(calibration=self.live_budget.calibration)
        self.store.set_channels(self._all_channel_rows())
        proc = self._startup_proc = self.env.process(self._startup())
        bar = None
        if progress:   # on a terminal: simulated h:mm:ss of the run's length
            from ionclock.progress import SimTimeBar

            bar = SimTimeBar(duration_s, "sim")
        wall0 = time.perf_counter()
        interrupted = None
        error = None
        wall = math.nan

        def stop(reason: str) -> None:
            """Record the end and leave the apparatus safe (once; later signals ignored).

            `reason` is the block's: "end", or "error: <type>" for an error that ends the
            run (its message goes in the event too); a signal is caught inside, so it is
            named here.
            """
            nonlocal wall
            wall = time.perf_counter() - wall0
            if bar is not None:
                bar.close()
            detail = {}
            if interrupted is not None:
                reason = interrupted
            elif error is not None:
                detail["error"] = str(error)
            self.store.event(self.env.now, "run_stopped", "runner", reason=reason, **detail)
            try:
                self.shutdown(reason)
            finally:
                self._end_processes()

        # SIGTERM / SIGINT unwind the loop here; `stop` runs on leaving the block either way
        with shutdown_on_signals(stop):
            try:
                # the startup process, and with it the servo, may end the run early
                advance(self.env, self.t_start, duration_s, proc, bar)
            except ShutdownRequested as req:
                interrupted = signal.Signals(req.signum).name
            except BaseException as err:   # the block's reason, "error: <type>"; re-raised
                error = self._failure() or err
                if error is not err:
                    raise error from None
                raise
        summary = self.summary(wall)
        summary["interrupted"] = interrupted
        summary["duration_s"] = duration_s
        return summary

    def _failure(self) -> BaseException | None:
        """The exception that ended this run's processes, as it was raised; None if none did.

        SimPy raises a copy of a failed process's exception, ``type(e)(*e.args)``, which an
        exception with a constructor of its own (`ConfigError`, `InstrumentOffline`) does not
        survive (a TypeError instead); the process keeps the original.
        """
        for proc in (self._startup_proc, self._servo_proc, self._environment_proc,
                     self._watch_proc, *self._role_procs):
            if proc is not None and proc.triggered and not proc.ok:
                return proc.value
        return None

    def _end_processes(self) -> None:
        """Interrupt this run's processes; on a world given to the run, let them end now.

        The servo is interrupted where it waits (the startup process waiting on it then ends
        too), or the startup itself while the field is still coming up. A world that outlives
        the run is stepped until they have ended (all at this instant), so the next run on it
        finds none of them left to talk to the instruments.
        """
        servo = self._servo_proc
        chain = servo if servo is not None and servo.is_alive else self._startup_proc
        for proc in (chain, self._environment_proc, self._watch_proc, *self._role_procs):
            if proc is not None and proc.is_alive:
                proc.interrupt("run_stopped")
        if self._own_world:
            return
        procs = [p for p in (self._startup_proc, servo, self._environment_proc,
                             self._watch_proc, *self._role_procs)
                 if p is not None]
        try:
            while any(p.is_alive for p in procs):
                self.env.step()
        except simpy.core.EmptySchedule:   # nothing left that could end them
            pass

    def shutdown(self, reason: str = "end") -> None:
        """Leave the apparatus safe (ionclock.apparatus.shutdown) and close the store.

        The trap RF is untouched, coil currents are held or ramped down as configured,
        shutters are put as configured, and connections are released.
        """
        from ionclock.apparatus.shutdown import ShutdownPolicy, safe_shutdown

        pol = self.cfg["shutdown"]
        policy = ShutdownPolicy(shutters=dict(pol["shutters"]), coils=pol["coils"])
        # a twin's coils ramp in simulated time: no need to wait on the wall clock
        sleep = (lambda s: None) if self.simulated else time.sleep
        try:
            safe_shutdown(self.instruments, policy, sleep=sleep, reason=reason,
                          on_event=self.store.event, clock=lambda: self.env.now)
        finally:
            self.store.close()

    def summary(self, wall_s: float) -> dict:
        """The lock summary (see README): cycles, locked fraction, offset, B, speed, events.

        What a lab run measured (B from the splittings, the laser's steering and drift, the
        events) comes from the servo's locked frames alone; the offset from the line and the
        true B need the twin's truth and are NaN in a lab run (`format_summary` then leaves
        them out).
        """
        locked = [f for f in self.frames if f[1]]
        with_truth = [f for f in locked if not math.isnan(f[5])]
        offset, sigma = _mean_and_batch_sigma([f[5] for f in with_truth])
        b = [f[4] for f in locked]
        b_true = [f[6] for f in with_truth]
        cycles = self.servo.cycles
        return {
            "cycles": cycles,
            "frames": len(self.frames),
            "locked_frames": len(locked),
            "locked_fraction": self.servo.locked_cycles / cycles if cycles else 0.0,
            "offset_hz": offset,
            "offset_sigma_hz": sigma,
            "fractional_offset": offset / self.world.p.nu0_hz if self.world else math.nan,
            "b_tesla": sum(b) / len(b) if b else math.nan,
            "b_true_tesla": sum(b_true) / len(b_true) if b_true else math.nan,
            "last_locked_nu_hz": locked[-1][3] if locked else math.nan,
            "final_drift_hz_s": self.servo.drift_hz_s,
            "time_base": "simulated" if self.simulated else "real",
            "simulated_s": self.env.now - self.t_start,
            "wall_s": wall_s,
            "cycles_per_second": cycles / wall_s if wall_s > 0 else math.nan,
            "events": event_counts(self.out / self.cfg["run"]["store"]),
            "store": str(self.out / self.cfg["run"]["store"]),
        }



def event_counts(path: Path) -> dict:
    """How many events of each kind a run recorded in its store (not the twin's injections)."""
    if not path.exists():
        return {}
    # the run's own store, closed: a connection that may write (this process is its
    # writer) removes the -wal/-shm files as it closes, which a read-only one leaves
    db = sqlite3.connect(str(path))
    try:
        return dict(db.execute("SELECT kind, COUNT(*) FROM events WHERE source != 'twin' "
                               "GROUP BY kind ORDER BY kind").fetchall())
    finally:
        db.close()


def advance(env, t_start: float, duration_s: float, proc, bar=None) -> None:
    """Run `env` to ``t_start + duration_s`` in 200 steps (at least 1 s each).

    The progress `bar` moves at each step; a run whose main process `proc` ends early
    stops there, raising the error that ended it.
    """
    step = max(duration_s / 200.0, 1.0)
    t = 0.0
    while t < duration_s:
        t = min(t + step, duration_s)
        env.run(until=t_start + t)
        if bar is not None:
            bar.advance_to(t)
        if not proc.is_alive:
            if not proc.ok:
                raise proc.value
            break


class _Why:
    """A reading that failed: the reason only (stored as no value)."""

    def __init__(self, reason: str):
        self.reason = reason


def _why(err: BaseException) -> _Why:
    return _Why(f"{type(err).__name__}: {err}")


class _FrameOnlyStore:
    """Passes frames and events to the store, drops per-cycle rows."""

    def __init__(self, store: Store):
        self._store = store

    def add(self, table: str, row: tuple) -> None:
        if table != "servo_cycles":
            self._store.add(table, row)

    def buffer(self, table: str) -> list[tuple] | None:
        return None if table == "servo_cycles" else self._store.buffer(table)

    def event(self, *args, **kwargs) -> None:
        self._store.event(*args, **kwargs)

    def flag_frames(self, t0: float, t1: float) -> int:
        return self._store.flag_frames(t0, t1)


def program_pattern(sequencer, program: PulseProgram, generator, wiring: dict | None,
                    world) -> None:
    """The cycle's TTL pattern into the pulse hardware, and the sequencer's loader for shots.

    The pattern generator when there is one (decision 0311: `PatternLoader` with the config's
    `wiring`, in the lab and on the twin), else the twin's world by hand (decision 0804); a
    lab run without a generator has its pattern programmed outside this software.
    """
    if generator is not None:
        loader = PatternLoader(generator, wiring)
        try:
            loader(program.edges(), program.detection_s)
        except ValueError as err:
            raise ConfigError("instruments.pattern.wiring", str(err)) from None
        sequencer.use_pattern_loader(loader)
    elif world is not None:
        world.load_pattern(program.edges(), program.detection_s)
        sequencer.pattern_loader = world.load_pattern


def configured_program(cfg: dict, program: PulseProgram) -> PulseProgram:
    """`program` with the TTL lines of every role `cfg` runs (`Role.pulse_program`)."""
    for cls in role_classes():
        if cls.configured(cfg):
            program = cls.pulse_program(cfg, program)
    return program


def fresh_store_path(path: Path, simulated: bool) -> Path:
    """The store path for a new run, cleared of an earlier twin run's store.

    A run's times count from its own start, so two runs in one store would mix (and frame
    numbers collide). A twin run replaces the previous twin output; a lab run never touches
    recorded data (a `UserError` instead).
    """
    if path.exists():
        if not simulated:
            raise UserError(f"--out: {str(path)!r} holds an earlier run; "
                            "choose a new --out folder")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    return path


def _mean_and_batch_sigma(values: list[float], batches: int = 20) -> tuple[float, float]:
    """Mean and its standard error by batch means (robust to the loop's correlations)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2 * batches:
        return mean, math.nan
    size = n // batches
    means = [sum(values[i * size:(i + 1) * size]) / size for i in range(batches)]
    m = sum(means) / batches
    var = sum((x - m) ** 2 for x in means) / (batches - 1)
    return mean, math.sqrt(var / batches)


def format_summary(s: dict) -> str:
    """Human-readable lock summary; a value that was not measured is left out, never 'nan'."""
    time_base = s.get("time_base", "simulated")
    lines = [
        "lock summary" + (f" (interrupted by {s['interrupted']})" if s.get("interrupted")
                          else ""),
        f"  cycles            {s['cycles']:,} ({s['frames']:,} frames, "
        f"{s['simulated_s'] / 3600:.2f} h {time_base} time)",
    ]
    if s.get("interrupted"):
        asked = s.get("duration_s")
        of = f" of the {asked / 3600:.2f} h asked for" if _finite(asked) else ""
        lines.append(f"  stopped           by {s['interrupted']} after "
                     f"{s['simulated_s'] / 3600:.2f} h{of}; the store holds the run up to then")
    lines.append(f"  locked fraction   {s['locked_fraction']:.4f}")
    if _finite(s["offset_hz"]):
        sigma = (f" +- {s['offset_sigma_hz']:.1e} Hz" if _finite(s["offset_sigma_hz"]) else "")
        lines.append(f"  offset            {s['offset_hz']:+.3e} Hz{sigma} "
                     f"(fractional {s['fractional_offset']:+.2e}; twin truth)")
    if _finite(s["b_tesla"]):
        b = f"  B from splittings {s['b_tesla'] * 1e6:.6f} uT"
        if _finite(s["b_true_tesla"]):
            b += (f" (true {s['b_true_tesla'] * 1e6:.6f} uT, "
                  f"diff {(s['b_tesla'] - s['b_true_tesla']) * 1e12:+.2f} pT)")
        lines.append(b)
    else:
        lines.append("  B from splittings not measured (no locked frame)")
    if not _finite(s["offset_hz"]) and _finite(s.get("last_locked_nu_hz", math.nan)):
        lines.append(f"  laser steering    {s['last_locked_nu_hz']:+.3f} Hz at the ion "
                     f"(last locked frame), drift {s['final_drift_hz_s']:+.4f} Hz/s")
    events = s.get("events") or {}
    if events:
        lines.append("  events            " + ", ".join(f"{k} {n}" for k, n in events.items()))
    lines += [
        f"  speed             {s['cycles_per_second']:,.0f} cycles/s wall clock "
        f"({s['wall_s']:.1f} s)",
        f"  store             {s['store']}",
    ]
    return "\n".join(lines)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def dump_json(s: dict) -> str:
    """The summary as one JSON object (NaN as null)."""
    return json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                       for k, v in s.items()})


def check_out_dir(path: str) -> Path:
    """The output folder (created, with its parents, once the run starts)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"--out: {str(p)!r} exists and is not a folder")
    return p
