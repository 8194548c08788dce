"""Build and run a clock from a validated config: instruments, servo, store, twin.

`ClockRun` opens every instrument first (so an unreachable resource stops the run before
anything starts), brings the quantisation field up on a ramp, then runs the servo as a SimPy
process: on `simpy.Environment` as fast as it can for the twin (`ionclock sim`), on
`simpy.rt.RealtimeEnvironment` for the lab (`ionclock run`).
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import asdict
from pathlib import Path

import simpy
import simpy.rt

from ionclock import __version__, registry
from ionclock.drivers.sequencer import PulseProgram, TableSequencer
from ionclock.errors import UserError
from ionclock.servo.clock_lock import ClockServo, Frame, ServoParams
from ionclock.servo.clock_output import ClockOutput
from ionclock.servo.readout import ThresholdReadout
from ionclock.shutdown import ShutdownRequested, shutdown_on_signals
from ionclock.store import Store

ROOT = Path(__file__).resolve().parents[1]


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
    """One run of the clock: open instruments, ramp the field, lock, record."""

    def __init__(self, cfg: dict, out_dir: str | Path, realtime: bool = False,
                 seed: int | None = None, strict_realtime: bool = False):
        self.cfg = cfg
        self.out = Path(out_dir)
        if seed is not None:
            cfg["twin"]["seed"] = seed
        self.env = (simpy.rt.RealtimeEnvironment(factor=1.0, strict=strict_realtime)
                    if realtime else simpy.Environment())
        inst = cfg["instruments"]
        self.simulated = any(e["resource"].startswith("sim://") for e in inst.values())
        self.world = (registry.make_world(self.env, cfg["twin"], cfg["servo"], inst)
                      if self.simulated else None)
        self.live_budget = None
        if cfg["budget"]["enabled"]:
            from ionclock.budget import load_config as load_budget_config
            from ionclock.live_budget import LiveBudget

            path = Path(cfg["budget"]["config"])
            if not path.is_absolute():
                path = ROOT / path
            self.live_budget = LiveBudget(load_budget_config(path), cfg["budget"]["window_s"])
        self.instruments = {}
        self._pending_events: list[tuple] = []
        self.store = None
        for role, entry in inst.items():
            twin_options = ({"locations": {int(k): v for k, v in entry["locations"].items()}}
                            if entry["locations"] else None)
            # every driver comes wrapped: a lost link is reopened with backoff and its
            # setpoints restored, with instrument_offline / instrument_online events
            self.instruments[role] = registry.open_instrument(
                entry["model"], entry["resource"], world=self.world,
                key=f"instruments.{role}", twin_options=twin_options, resilient=True,
                resilience={"on_event": self._instrument_event, "source": role},
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
                                on_flag=self._on_flag)
        self.frames: list[tuple] = []   # (t, locked, holdover, nu, b, truth detuning, b_true)

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
        program = PulseProgram(pi_time_s=s["pi_time_s"], ramsey_time_s=s["ramsey_time_s"],
                               cycle_time_s=s["cycle_time_s"], prepare_s=s["prepare_s"])
        self.sequencer = TableSequencer(
            self.instruments["aom"], inst["aom"]["channel"], self.instruments["counter"],
            self.instruments["pulser"], program, s["aom_center_hz"],
            pulse_step_hz=s["pulse_step_hz"])
        program = self.sequencer.configure(inst["counter"]["gate_time_s"])
        if self.world is not None:
            self.world.load_pattern(program.edges(), program.detection_s)

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

    def _startup(self):
        """Bring the field up on its ramp, then start the servo."""
        entry = self.cfg["instruments"]["coils"]
        coil = self._coil_channel()
        # Constant-current operation: the voltage setpoint is only the compliance.
        coil.voltage_setpoint = entry["compliance_v"]
        coil.output_enabled = True
        for delay in coil.ramp(entry["current_a"]):
            yield self.env.timeout(delay)
        self.store.event(self.env.now, "field_ready", "coils", current_a=entry["current_a"])
        self.world_t0 = self.env.now
        if self.live_budget is not None:
            self.env.process(self._environment())
        # its own process, not `yield from`: each cycle then resumes one generator less;
        # whatever ends the servo still ends this process, and with it the run
        yield self.env.process(self.servo.run())

    def _environment(self):
        """Poll the thermometer into the store and re-evaluate the live budget (a process)."""
        b = self.cfg["budget"]
        thermo = self.instruments.get("thermometer")
        sensors = self.cfg["instruments"]["thermometer"]["sensors"] if thermo else {}
        last_budget = -math.inf
        while True:
            t = self.env.now
            if sensors:
                # one query for every input where the unit has it (Lake Shore KRDG? 0)
                every = getattr(thermo, "temperatures", None)
                for channel, number in sensors.items():
                    kelvin = (every[int(number) - 1] if isinstance(every, list)
                              else getattr(thermo, f"input_{int(number)}").temperature)
                    self.store.add("samples", (t, channel, kelvin))
                    self.live_budget.add_temperature(t, channel, kelvin)
            if t - last_budget >= b["update_s"]:
                last_budget = t
                self._update_budget(t)
            yield self.env.timeout(b["sample_s"])

    def _update_budget(self, t: float) -> None:
        budget = self.live_budget.evaluate(t)
        nu0 = budget.nu0_hz
        self.output.set_budget(t, budget.total_fractional * nu0,
                               budget.total_uncertainty * nu0, budget.valid)
        self.store.add("budgets", (t, budget.total_fractional, budget.total_uncertainty,
                                   int(budget.valid), budget.to_json()))

    def run(self, duration_s: float, progress: bool = True) -> dict:
        """Run for `duration_s` of (simulated or real) time; return the summary."""
        self.store.set_meta(version=__version__, config=self.cfg, simulated=self.simulated,
                            duration_s=duration_s, t0_unix=time.time(),
                            servo=asdict(self.params))
        proc = self.env.process(self._startup())
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=round(duration_s), unit="s", unit_scale=True, desc="sim time",
                       disable=None, leave=False)
        wall0 = time.perf_counter()
        step = max(duration_s / 200.0, 1.0)
        t = 0.0
        interrupted = None
        # SIGTERM / SIGINT unwind the loop here; the safe shutdown below runs either way
        with shutdown_on_signals(lambda reason: None):
            try:
                while t < duration_s:
                    t = min(t + step, duration_s)
                    self.env.run(until=t)
                    if bar is not None:
                        bar.update(round(t) - bar.n)
                    if not proc.is_alive:
                        proc.value  # re-raise whatever ended the servo process  # noqa: B018
                        break
            except ShutdownRequested as req:
                interrupted = signal.Signals(req.signum).name
            finally:
                wall = time.perf_counter() - wall0
                if bar is not None:
                    bar.close()
                self.store.event(self.env.now, "run_stopped", "runner",
                                 reason=interrupted or "end")
                self.shutdown(interrupted or "end")
        summary = self.summary(wall)
        summary["interrupted"] = interrupted
        return summary

    def shutdown(self, reason: str = "end") -> None:
        """Leave the apparatus safe (ionclock.shutdown) and close the store.

        The trap RF is untouched, coil currents are held or ramped down as configured,
        shutters are put as configured, and connections are released.
        """
        from ionclock.shutdown import ShutdownPolicy, safe_shutdown

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
        """The lock summary (see README): cycles, locked fraction, offset, B, speed."""
        locked = [f for f in self.frames if f[1] and not math.isnan(f[5])]
        det = [f[5] for f in locked]
        offset, sigma = _mean_and_batch_sigma(det)
        b = [f[4] for f in locked]
        b_true = [f[6] for f in locked]
        cycles = self.servo.cycles
        return {
            "cycles": cycles,
            "frames": len(self.frames),
            "locked_fraction": self.servo.locked_cycles / cycles if cycles else 0.0,
            "offset_hz": offset,
            "offset_sigma_hz": sigma,
            "fractional_offset": offset / self.world.p.nu0_hz if self.world else math.nan,
            "b_tesla": sum(b) / len(b) if b else math.nan,
            "b_true_tesla": sum(b_true) / len(b_true) if b_true else math.nan,
            "final_drift_hz_s": self.servo.drift_hz_s,
            "simulated_s": self.env.now,
            "wall_s": wall_s,
            "cycles_per_second": cycles / wall_s if wall_s > 0 else math.nan,
            "store": str(self.out / self.cfg["run"]["store"]),
        }


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
    """Human-readable lock summary."""
    return "\n".join([
        "lock summary",
        f"  cycles            {s['cycles']:,} ({s['frames']:,} frames, "
        f"{s['simulated_s'] / 3600:.2f} h simulated)",
        f"  locked fraction   {s['locked_fraction']:.4f}",
        f"  offset            {s['offset_hz']:+.3e} Hz +- {s['offset_sigma_hz']:.1e} Hz "
        f"(fractional {s['fractional_offset']:+.2e})",
        f"  B from splittings {s['b_tesla'] * 1e6:.6f} uT (true {s['b_true_tesla'] * 1e6:.6f} uT, "
        f"diff {(s['b_tesla'] - s['b_true_tesla']) * 1e12:+.2f} pT)",
        f"  speed             {s['cycles_per_second']:,.0f} cycles/s wall clock "
        f"({s['wall_s']:.1f} s)",
        f"  store             {s['store']}",
    ])


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
