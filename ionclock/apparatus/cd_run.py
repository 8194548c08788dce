"""Build and run the 111/113Cd+ microwave clock from a config (`[clock] species = "113Cd+"`).

The Cd+ standard's run, beside the 40Ca+ clock's (`ionclock.apparatus.clock_run`), whose
output it shares: the same store tables (`lock_frames`, `servo_cycles`, `twin_truth`,
`events`, `budgets`, `meta`), so `ionclock report` evaluates it and `ionclock budget`
reads its live budget; the same lock summary (`clock_run.format_summary`, `dump_json`) with
the Cd+ lines added (SOZS live, the corrected output against the twin's truth).

Instruments: ``[instruments.microwave]`` (E8257D, `ionclock.drivers.microwave`) and
``[instruments.counter]`` (SR400 gated on the pulse generator's detection edges). Both are
opened through the registry wrapped for resilience (a lost link: reconnect, restore,
``instrument_offline``/``instrument_online`` events), as the 40Ca+ run does.

The twin (`sim_instruments/cd_clock.py`, built by `registry.make_cd_world`) draws from its own
stream; nothing here touches the 40Ca+ world.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict
from pathlib import Path

import simpy

from ionclock import __version__
from ionclock.apparatus import registry
from ionclock.apparatus.clock_run import (
    _FrameOnlyStore,
    _mean_and_batch_sigma,
    advance,
    event_counts,
    fresh_store_path,
)
from ionclock.apparatus.shutdown import ShutdownRequested, shutdown_on_signals
from ionclock.config import Field, ListOf, Table, check_kind, load_toml, merge, validate
from ionclock.errors import ConfigError, UserError
from ionclock.physics import cadmium
from ionclock.servo.microwave_lock import MicrowaveLock, MicrowaveLockParams
from ionclock.storage.store import Store
from ionclock.units import parse_duration

F = Field

#: `[clock] species` values that select this run, and their mass numbers.
CD_SPECIES = {"111Cd+": 111, "113Cd+": 113}

INSTRUMENT = {
    "model": F(str, doc="microwave: microwave_8257d; counter: sr400"),
    "resource": F(str, doc="sim://MODEL, a pyvisa resource string or a pyserial URL"),
    "max_frequency_hz": F(float, 20e9, min=1e9, max=67e9, doc="microwave: installed option"),
    "max_power_dbm": F(float, 25.0, min=-20.0, max=25.0, doc="microwave: safety ceiling"),
}

EVENT = {
    "at": F(str, doc="when, from the start of the run: e.g. '90s', '5h'"),
    "kind": F(str, choices=("b_step", "cloud_loss")),
    "value": F(float, 0.0, min=-1e-6, max=1e-6, doc="b_step: T"),
    "duration": F(str, "0s", doc="cloud_loss: how long"),
}

SCHEMA = {
    "clock": {
        "name": F(str, "Cd+ microwave clock"),
        "species": F(str, choices=tuple(CD_SPECIES)),
        "b_nominal_t": F(float, 8e-6, min=1e-7, max=1e-4,
                         doc="operating field, T (0.08 G); the field calibration's value"),
    },
    "run": {
        "store": F(str, "ionclock.sqlite", doc="store file name inside the output folder"),
        "commit_interval_s": F(float, 1.0, min=0.01, max=60.0),
        "record_cycles": F(bool, True, doc="store every probe, not only frames"),
    },
    "servo": {
        "ramsey_time_s": F(float, 0.5, min=1e-3, max=60.0),
        "pi2_time_s": F(float, 0.010, min=1e-5, max=1.0),
        "prepare_s": F(float, 0.30, min=0.0, max=60.0, doc="cooling + pumping before pulses"),
        "detection_s": F(float, 0.15, min=1e-4, max=0.9992, doc="detection gate (SR400 GW)"),
        "cycle_time_s": F(float, 1.0, min=1e-2, max=120.0),
        "power_dbm": F(float, 23.0, min=-20.0, max=25.0, doc="microwave power"),
        "gain": F(float, 0.5, min=0.01, max=1.5),
        "drift_gain": F(float, 0.05, min=0.0, max=0.5),
        "b_gain": F(float, 0.5, min=0.01, max=1.5),
        "b_drift_gain": F(float, 0.05, min=0.0, max=0.5),
        "zeeman_every_frames": F(int, 30, min=1, max=100000),
        "acquire_frames": F(int, 60, min=1, max=10000,
                            doc="frames before 'locked': the loop's pull-in (decision 1300)"),
        "fringe_counts": F(float, 9037.0, min=1.0, max=1e9,
                           doc="calibrated fringe amplitude A C, counts per probe"),
        "background_counts": F(float, 1500.0, min=0.0, max=1e9,
                               doc="calibrated counts with no ion in F=1"),
        "cloud_threshold_counts": F(float, 4000.0, min=0.0, max=1e9,
                                    doc="a probe pair's mean below this: the cloud is gone"),
        "nu_initial_hz": F(float, 0.0, min=-1e3, max=1e3,
                           doc="initial steering from the seed's HFS, Hz"),
        "g_i_convention": F(str, "seed", choices=cadmium.G_I_CONVENTIONS,
                            doc="g_I in (g_J - g_I) and (g_J + g_I): the seed's or physical"),
    },
    "instruments": Table(INSTRUMENT, required=True),
    "twin": {
        "seed": F(int, 1, min=0),
        "n_ions": F(int, 400_000, min=1, max=10**8),
        "bright_counts": F(float, 10_000.0, min=1.0, max=1e9),
        "background_counts": F(float, 1_500.0, min=0.0, max=1e9),
        "contrast0": F(float, 0.95, min=0.01, max=1.0),
        "t2_s": F(float, 10.0, min=1e-3, max=1e6),
        "nu0_offset_hz": F(float, 0.0, min=-1.0, max=1.0,
                           doc="true unperturbed line minus the seed's HFS"),
        "b_offset_t": F(float, 2e-12, min=-1e-9, max=1e-9,
                        doc="true field minus clock.b_nominal_t at t = 0"),
        "b_drift_t_per_h": F(float, 0.5e-9, min=-1e-7, max=1e-7),
        "b_noise_t": F(float, 1e-12, min=0.0, max=1e-9),
        "lo_offset": F(float, 1e-11, min=-1e-9, max=1e-9,
                       doc="reference oscillator, fractional, at t = 0"),
        "lo_drift_per_s": F(float, 5e-16, min=-1e-12, max=1e-12),
        "lo_white": F(float, 1e-13, min=0.0, max=1e-9, doc="white FM, sigma_y(1 s)"),
        "lo_random_walk": F(float, 2e-15, min=0.0, max=1e-10, doc="per sqrt(s)"),
        "g_i_convention": F(str, "seed", choices=cadmium.G_I_CONVENTIONS),
        "events": ListOf(EVENT, doc="scheduled twin events"),
    },
    "budget": {
        "enabled": F(bool, True, doc="evaluate the Cd+ budget live"),
        "update_s": F(float, 1800.0, min=10.0, max=86400.0),
        "b_unc_t": F(float, 0.0, min=0.0, max=1e-6, doc="--nominal: field uncertainty, T"),
    },
}


def species_of(path: str | Path) -> str | None:
    """The `[clock] species` of the config at `path` (None if it has none)."""
    data = load_toml(path)
    clock = data.get("clock")
    species = clock.get("species") if isinstance(clock, dict) else None
    return species if isinstance(species, str) else None


def is_cd_config(path: str | Path) -> bool:
    """True when the config at `path` selects the Cd+ run (`[clock] species` 111/113Cd+)."""
    return species_of(path) in CD_SPECIES


def load_cd_config(path: str | Path, overrides: dict | None = None,
                   run_s: float | None = None) -> dict:
    """Load and validate a Cd+ clock config; a bad entry is a `ConfigError` naming its key."""
    data = load_toml(path)
    check_kind(data, "clock", path)
    if overrides:
        data = merge(data, overrides)
    cfg = validate(data, SCHEMA)
    inst = cfg["instruments"]
    for role, model in (("microwave", "microwave_8257d"), ("counter", "sr400")):
        if role not in inst:
            raise ConfigError(f"instruments.{role}", f"is required ({model})")
        if inst[role]["model"] != model:
            raise ConfigError(f"instruments.{role}.model",
                              f"{inst[role]['model']!r}: the Cd+ run drives {model}")
    extra = sorted(set(inst) - {"microwave", "counter"})
    if extra:
        raise ConfigError(f"instruments.{extra[0]}", "the Cd+ run has the roles microwave "
                                                     "and counter only")
    for i, ev in enumerate(cfg["twin"]["events"]):
        where = f"twin.events[{i}]"
        try:
            ev["at_s"] = parse_duration(ev["at"])
            ev["duration_s"] = parse_duration(ev["duration"]) if ev["duration"] != "0s" else 0.0
        except (UserError, ValueError) as err:
            raise ConfigError(where, str(err)) from None
        if run_s is not None and ev["at_s"] >= run_s:
            raise ConfigError(f"{where}.at", f"{ev['at']} is after the run's end")
    s = cfg["servo"]
    try:
        twin_params(cfg)
    except ValueError as err:
        raise ConfigError("servo", str(err)) from None
    if s["cloud_threshold_counts"] >= s["background_counts"] + s["fringe_counts"]:
        raise ConfigError("servo.cloud_threshold_counts",
                          "must be below the counts of a probe at half fringe")
    return cfg


def isotope_of(cfg: dict) -> int:
    """Mass number of the config's species."""
    return CD_SPECIES[cfg["clock"]["species"]]


def twin_params(cfg: dict) -> dict:
    """`CdTwinParams` fields from a validated config (servo timing, twin physics)."""
    s, tw = cfg["servo"], cfg["twin"]
    params = {
        "isotope": isotope_of(cfg), "nu0_offset_hz": tw["nu0_offset_hz"],
        "n_ions": tw["n_ions"], "bright_counts": tw["bright_counts"],
        "background_counts": tw["background_counts"], "contrast0": tw["contrast0"],
        "t2_s": tw["t2_s"], "ramsey_time_s": s["ramsey_time_s"], "pi2_time_s": s["pi2_time_s"],
        "prepare_s": s["prepare_s"], "detection_s": s["detection_s"],
        "cycle_time_s": s["cycle_time_s"],
        "b_t": cfg["clock"]["b_nominal_t"] + tw["b_offset_t"],
        "b_drift_t_s": tw["b_drift_t_per_h"] / 3600.0, "b_noise_t": tw["b_noise_t"],
        "lo_offset": tw["lo_offset"], "lo_drift_per_s": tw["lo_drift_per_s"],
        "lo_white": tw["lo_white"], "lo_random_walk": tw["lo_random_walk"],
        "g_i_convention": tw["g_i_convention"],
        "events": tuple((e["at_s"], e["kind"], e["value"], e["duration_s"])
                        for e in tw["events"]),
    }
    busy = s["prepare_s"] + 2 * s["pi2_time_s"] + s["ramsey_time_s"] + s["detection_s"]
    if busy >= s["cycle_time_s"] - 2e-3:
        raise ValueError(f"cycle_time_s {s['cycle_time_s']} s leaves no room after "
                         f"preparation, pulses, Ramsey time and detection ({busy:.3f} s)")
    return params


def snr_limit(cfg: dict) -> dict:
    """The twin's detection-noise limit for a config: per-probe SNR and sigma_y(1 s)."""
    tw, s = cfg["twin"], cfg["servo"]
    c = tw["contrast0"] * math.exp(-s["ramsey_time_s"] / tw["t2_s"])
    snr = cadmium.ramsey_snr(tw["bright_counts"], tw["background_counts"], c, tw["n_ions"])
    duty = s["zeeman_every_frames"] * 2 / (s["zeeman_every_frames"] * 2 + 4)
    nu0 = cadmium.isotope(isotope_of(cfg)).hfs_s_hz
    return {"snr": snr, "contrast": c, "clock_probe_duty": duty,
            "sigma_1s": cadmium.ramsey_instability(1.0, s["ramsey_time_s"],
                                                   s["cycle_time_s"] / duty, snr, nu0),
            "sigma_1s_all_probes": cadmium.ramsey_instability(1.0, s["ramsey_time_s"],
                                                              s["cycle_time_s"], snr, nu0)}


def nominal_budget(path: str | Path):
    """The Cd+ budget at a config's nominal field (`ionclock budget --nominal CONFIG`)."""
    cfg = load_cd_config(path)
    return cadmium.cadmium_budget(isotope_of(cfg), cfg["clock"]["b_nominal_t"],
                                  cfg["budget"]["b_unc_t"],
                                  convention=cfg["servo"]["g_i_convention"],
                                  provenance={"config": str(path), "inputs": "nominal"})


class CdRun:
    """One run of the Cd+ microwave clock: open instruments, lock, record (twin or lab)."""

    def __init__(self, cfg: dict, out_dir: str | Path, seed: int | None = None):
        self.cfg = cfg
        self.out = Path(out_dir)
        if seed is not None:
            cfg["twin"]["seed"] = seed
        inst = cfg["instruments"]
        self.simulated = any(e["resource"].startswith("sim://") for e in inst.values())
        if not all(e["resource"].startswith("sim://") for e in inst.values()):
            raise ConfigError("instruments", "the Cd+ run runs on the twin only (sim://MODEL) "
                                             "for now")
        self.env = simpy.Environment()
        self.isotope = isotope_of(cfg)
        self.world = registry.make_cd_world(self.env, twin_params(cfg), cfg["twin"]["seed"])
        self.t_start = self.env.now
        self._pending: list[tuple] = []
        self.store = None
        self.instruments = {}
        for role, entry in inst.items():
            options = ({"max_frequency_hz": entry["max_frequency_hz"],
                        "max_power_dbm": entry["max_power_dbm"]} if role == "microwave"
                       else {})
            self.instruments[role] = registry.open_instrument(
                entry["model"], entry["resource"], world=self.world, key=f"instruments.{role}",
                resilient=True, resilience={"on_event": self._instrument_event,
                                            "source": role, "clock": lambda: self.env.now},
                **options)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--out: cannot create {str(self.out)!r}: {err.strerror}") from None
        self.store = Store(fresh_store_path(self.out / cfg["run"]["store"], self.simulated),
                           commit_interval=cfg["run"]["commit_interval_s"])
        for t, kind, source, detail in self._pending:
            self.store.event(t, kind, source, **detail)
        self.world.on_note = lambda t, kind, **d: self.store.event(t, kind, "twin", **d)
        s = cfg["servo"]
        synth, counter = self.instruments["microwave"], self.instruments["counter"]
        self._prepare()
        close = counter.trigger_offsets()[-1]
        detection = s["prepare_s"] + 2 * s["pi2_time_s"] + s["ramsey_time_s"]
        self.params = MicrowaveLockParams(
            isotope=self.isotope, ramsey_time_s=s["ramsey_time_s"],
            cycle_time_s=s["cycle_time_s"], set_offset_s=0.0,
            read_offset_s=detection + close + 1e-4, fringe_counts=s["fringe_counts"],
            background_counts=s["background_counts"],
            cloud_threshold_counts=s["cloud_threshold_counts"], gain=s["gain"],
            drift_gain=s["drift_gain"], b_gain=s["b_gain"], b_drift_gain=s["b_drift_gain"],
            zeeman_every_frames=s["zeeman_every_frames"], acquire_frames=s["acquire_frames"],
            b_initial_t=cfg["clock"]["b_nominal_t"], nu_initial_hz=s["nu_initial_hz"],
            g_i_convention=s["g_i_convention"])
        store = self.store if cfg["run"]["record_cycles"] else _FrameOnlyStore(self.store)
        self.servo = MicrowaveLock(self.env, synth, counter, self.params, store=store,
                                   on_frame=self._on_frame, prepare=self._prepare)
        # (t, locked, holdover, steering, b, truth detuning, b_true, sozs, sozs_unc, sozs_true)
        self.frames: list[tuple] = []
        self._last_budget = -math.inf
        self._proc = None

    def _instrument_event(self, t: float, kind: str, source: str, **detail) -> None:
        if self.store is None:
            self._pending.append((t, kind, source, detail))
        else:
            self.store.event(t, kind, source, **detail)

    def _prepare(self) -> None:
        """Synthesiser power and output on, the counter gated on the detection edges, armed.

        Before the first probe and after any failure (a unit back from a lost link or a power
        cycle may have forgotten its modes); every set goes through the resilient wrapper.
        """
        s = self.cfg["servo"]
        synth, counter = self.instruments["microwave"], self.instruments["counter"]
        synth.power_dbm = s["power_dbm"]
        synth.output_enabled = True
        counter.configure_gated(s["detection_s"])   # configure_gated then arm (its docstring)
        counter.arm()

    def _on_frame(self, frame) -> None:
        t = frame.t
        clock = [p for p in self.world.take_truth() if p.line == 0]
        if clock:
            det = sum(p.clock_detuning_hz for p in clock) / len(clock)
            b_true = sum(p.b_t for p in clock) / len(clock)
            sozs_true = sum(p.sozs_hz for p in clock) / len(clock)
            self.store.add("twin_truth", (frame.index, t, det, b_true, *(None,) * 6, 0.0))
        else:
            det = b_true = sozs_true = math.nan
        s = self.servo.sozs(t)
        self.frames.append((t, frame.locked, frame.holdover, frame.nu_hz, frame.b_t, det,
                            b_true, s.shift_hz, s.uncertainty_hz, sozs_true))
        if self.cfg["budget"]["enabled"] and frame.locked and \
                t - self._last_budget >= self.cfg["budget"]["update_s"]:
            self._last_budget = t
            b = cadmium.cadmium_budget(self.isotope, frame.b_t, self.servo.b_unc_t(),
                                       convention=self.params.g_i_convention,
                                       provenance={"inputs": "live", "t": t})
            self.store.add("budgets", (t, b.total_fractional, b.total_uncertainty,
                                       int(b.valid), b.to_json()))

    def run(self, duration_s: float, progress: bool = True) -> dict:
        """Run for `duration_s` of simulated time; return the summary."""
        meta_cfg = dict(self.cfg)
        meta_cfg["clock"] = {**self.cfg["clock"],
                             "nu0_hz": cadmium.isotope(self.isotope).hfs_s_hz}
        limit = snr_limit(self.cfg)
        servo_meta = asdict(self.params)
        # the report's QPN line (ionclock.report.qpn_params): SNR-limited for the cloud
        servo_meta.update(snr=limit["snr"], contrast=limit["contrast"])
        self.store.set_meta(version=__version__, config=meta_cfg, simulated=self.simulated,
                            duration_s=duration_s, t0_unix=time.time(),
                            t_start_s=self.t_start, servo=servo_meta, species="Cd+",
                            snr_limit=limit)
        self._proc = self.env.process(self.servo.run())
        bar = None
        if progress:
            from ionclock.progress import SimTimeBar

            bar = SimTimeBar(duration_s, "sim")
        wall0 = time.perf_counter()
        interrupted = error = None
        wall = math.nan

        def stop(reason: str) -> None:
            """Record the end (a signal by its name) and release the apparatus, once."""
            nonlocal wall
            wall = time.perf_counter() - wall0
            if bar is not None:
                bar.close()
            detail = {"error": str(error)} if error is not None and not interrupted else {}
            self.store.event(self.env.now, "run_stopped", "runner",
                             reason=interrupted or reason, **detail)
            self.shutdown()

        # SIGTERM / SIGINT unwind the loop; `stop` runs on leaving the block either way
        with shutdown_on_signals(stop):
            try:
                advance(self.env, self.t_start, duration_s, self._proc, bar)
            except ShutdownRequested as req:
                interrupted = signal.Signals(req.signum).name
            except BaseException as err:   # recorded in run_stopped ("error: <type>")
                error = err
                raise
        summary = self.summary(wall)
        summary["interrupted"] = interrupted
        summary["duration_s"] = duration_s
        return summary

    def shutdown(self) -> None:
        """Release the instruments (the synthesiser keeps its setting) and close the store."""
        try:
            for inst in self.instruments.values():
                try:
                    inst.close()
                except Exception:   # noqa: BLE001 - a failing close must not hide the run
                    pass
        finally:
            self.store.close()

    def summary(self, wall_s: float) -> dict:
        """The lock summary (`clock_run.format_summary`'s keys) plus the Cd+ figures."""
        locked = [f for f in self.frames if f[1] and not f[2]]
        truth = [f for f in locked if not math.isnan(f[5])]
        offset, sigma = _mean_and_batch_sigma([f[5] for f in truth])
        corr = [f[5] + f[9] - f[7] for f in truth]
        c_off, c_sigma = _mean_and_batch_sigma(corr)
        nu0 = cadmium.isotope(self.isotope).hfs_s_hz
        cycles = self.servo.cycles
        n = len(locked)
        limit = snr_limit(self.cfg)
        return {
            "species": self.cfg["clock"]["species"],
            "cycles": cycles,
            "frames": len(self.frames),
            "locked_frames": n,
            "locked_fraction": self.servo.locked_cycles / cycles if cycles else 0.0,
            "offset_hz": offset,
            "offset_sigma_hz": sigma,
            "fractional_offset": offset / nu0,
            "b_tesla": sum(f[4] for f in locked) / n if n else math.nan,
            "b_true_tesla": (sum(f[6] for f in truth) / len(truth)) if truth else math.nan,
            "sozs_hz": sum(f[7] for f in locked) / n if n else math.nan,
            "sozs_sigma_hz": sum(f[8] for f in locked) / n if n else math.nan,
            "sozs_true_hz": (sum(f[9] for f in truth) / len(truth)) if truth else math.nan,
            "corrected_offset_hz": c_off,
            "corrected_offset_sigma_hz": c_sigma,
            "corrected_fractional_offset": c_off / nu0,
            "snr_per_probe": limit["snr"],
            "snr_limit_sigma_1s": limit["sigma_1s"],
            "last_locked_nu_hz": locked[-1][3] if locked else math.nan,
            "final_drift_hz_s": self.servo.drift_hz_s,
            "time_base": "simulated",
            "simulated_s": self.env.now - self.t_start,
            "wall_s": wall_s,
            "cycles_per_second": cycles / wall_s if wall_s > 0 else math.nan,
            "events": event_counts(self.out / self.cfg["run"]["store"]),
            "store": str(self.out / self.cfg["run"]["store"]),
        }


def format_cd_summary(s: dict) -> str:
    """The lock summary (as the 40Ca+ clock prints it) with the Cd+ lines."""
    from ionclock.apparatus.clock_run import format_summary

    lines = format_summary(s).splitlines()
    lines[0] = f"lock summary, {s['species']} microwave clock" + lines[0][len("lock summary"):]
    extra = []
    if math.isfinite(s["sozs_hz"]):
        extra.append(f"  SOZS live         {s['sozs_hz']:+.6f} Hz +- {s['sozs_sigma_hz']:.1e} Hz"
                     + (f" (true {s['sozs_true_hz']:+.6f} Hz)"
                        if math.isfinite(s["sozs_true_hz"]) else ""))
    if math.isfinite(s["corrected_offset_hz"]):
        sig = s["corrected_offset_sigma_hz"]
        extra.append(f"  corrected output  {s['corrected_offset_hz']:+.3e} Hz"
                     + (f" +- {sig:.1e} Hz" if math.isfinite(sig) else "")
                     + f" (fractional {s['corrected_fractional_offset']:+.2e}; SOZS "
                       "corrected live, against the unperturbed line)")
    extra.append(f"  SNR limit         {s['snr_limit_sigma_1s']:.2e} at 1 s (SNR "
                 f"{s['snr_per_probe']:.1f} per probe; ionclock report gives the ADEV)")
    at = next((i for i, line in enumerate(lines) if line.startswith("  events")
               or line.startswith("  speed")), len(lines))
    return "\n".join(lines[:at] + extra + lines[at:])


def is_cd_store(path: str | Path) -> bool:
    """True when the store at `path` holds a Cd+ run (its meta `species`)."""
    from ionclock.storage.store import read_store

    return read_store(path, is_cd_db, "budget")


def is_cd_db(db) -> bool:
    """`is_cd_store` on a connection already open on the store."""
    if not db.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone():
        return False
    row = db.execute("SELECT value FROM meta WHERE key = 'species'").fetchone()
    return bool(row) and "Cd" in str(row[0])


def store_budget(path: str | Path, since: float | None = None, until: float | None = None,
                 last_s: float | None = None):
    """The Cd+ budget of a store window: SOZS at the mean tracked field of its locked frames.

    The field's uncertainty is the one the servo applied live (the frames'
    `corrected_sigma_hz`, its g_J part taken out), averaged over the window; the field's
    range in the window is named in the inputs (the live correction follows it frame by
    frame). No locked frame in the window makes the row invalid, never a nominal value.
    """
    from ionclock.storage.store import read_store

    return read_store(path, lambda db: store_budget_db(db, str(path), since, until, last_s),
                      "budget")


def store_budget_db(db, path: str, since: float | None = None, until: float | None = None,
                    last_s: float | None = None):
    """`store_budget` on a connection already open on the store at `path`."""
    import json

    def read(db):
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
        cfg = meta.get("config") or {}
        t_end = db.execute("SELECT MAX(t) FROM lock_frames").fetchone()[0] or 0.0
        t1 = t_end if until is None else until
        t0 = (t1 - last_s) if last_s is not None else (-math.inf if since is None else since)
        rows = db.execute(
            "SELECT b_t, corrected_sigma_hz FROM lock_frames WHERE locked = 1 AND "
            "holdover = 0 AND t >= ? AND t <= ? ORDER BY t",
            (t0 if math.isfinite(t0) else -1e300, t1)).fetchall()
        return cfg, rows, t0, t1

    cfg, b, t0, t1 = read(db)
    isotope = CD_SPECIES[cfg["clock"]["species"]]
    convention = cfg["servo"]["g_i_convention"]
    prov = {"store": str(path), "inputs": "store", "field_frames": len(b),
            "since": t0 if math.isfinite(t0) else 0.0, "until": t1}
    if not b:
        from ionclock.physics.budget import Budget
        from ionclock.physics.shifts import invalid

        nu = cadmium.isotope(isotope).hfs_s_hz
        row = invalid("sozs", "Second-order Zeeman", "no locked frame in the window (no "
                      "field measured)", nu)
        return Budget([row], nu, f"{isotope}Cd+", 1e-15, {"source": "cadmium", **prov})
    fields = [r[0] for r in b]
    mean = sum(fields) / len(fields)
    live = [r[1] for r in b if r[1] is not None]
    unc_hz = sum(live) / len(live) if live else 0.0
    g_part = cadmium.sozs_shift(isotope, mean, 0.0, convention).unc_g_j_hz
    k0 = cadmium.sozs_coefficient(isotope, convention=convention)
    b_unc = math.sqrt(max(unc_hz**2 - g_part**2, 0.0)) / (2.0 * k0 * abs(mean))
    prov.update(b_min_t=min(fields), b_max_t=max(fields))
    return cadmium.cadmium_budget(isotope, mean, b_unc, convention=convention, provenance=prov)
