"""LIF scan of the Cd+ S1/2 -> P3/2 lines at 214.5 nm (seed 004 §III; docs/decisions/1200).

An `IonclockProcedure` (procedures/base.py, decision 0802), ``NAME = "cd-hfs"`` (its
analysis'): `startup`
opens the apparatus of a LIF config (``configs/cd_lif.toml``: ``[instruments.wavemeter]``, a
HighFinesse wavemeter with the probe's switch channel and PID port; ``[instruments.counter]``,
an SR400 on the PMT; ``[twin]``, the Cd+ LIF twin's seed and parameters when the resources are
``sim://``). For each scan of the sequence (``"114,113,114"`` by default: the reference line
before and after the odd isotope's, so that a linear wavemeter drift cancels in the mean of
the two reference centres and the drift between them is measured), the probe is stepped
across `span_hz` around the line in `steps` steps; at each step

1. the wavemeter's PID course is set to the step's frequency (``set_frequency_setpoint``:
   the seed reads every laser with a HighFinesse WS8-2 and scans the probe; regulating the
   probe through the meter's laser-control option is this procedure's choice, see the
   decision), then `settle_s` is waited;
2. the photon counter counts one period of `dwell_s` on its internal 10 MHz time base (SR400:
   counter A on INPUT 1, the PMT; T on 10 MHz with preset dwell x 1e7; gate CW; one period,
   scan end STOP; SR400 manual rev. 2.7, p. 12 and 26: a period "of T counter's input" that
   begins at START), while the wavemeter is read at the dwell's middle;
3. a row is emitted: isotope, scan, frequency_hz (the wavemeter's reading; NaN with
   wavemeter_error naming the error when it answers an error code: never a made-up
   frequency), counts, setpoint_hz, dwell_s, time_s.

The results file is pymeasure's (`Results`, `run_headless`); ``ionclock analyse cd-hfs FILE``
reads it (`ionclock.procedures.analysis.cd_hfs`). The lines are placed from `reference_hz`
(the 114Cd+ line as the wavemeter reads it) and the seed's offsets (Eq. 17; offsets
nu(A) - nu(114)). Time is the apparatus' SimPy clock (simulated on the twin, real in the lab).
"""

from __future__ import annotations

import math
from pathlib import Path

import simpy
import simpy.rt
from pymeasure.experiment import FloatParameter, IntegerParameter, Parameter

from ionclock.apparatus import registry
from ionclock.config import Field, load_toml, validate
from ionclock.drivers.sr400 import preset_text
from ionclock.drivers.wavemeter import WavemeterError
from ionclock.errors import UserError
from ionclock.physics.cadmium import isotope
from ionclock.procedures.analysis import cd_hfs
from ionclock.procedures.base import (
    ApparatusClock,
    IonclockProcedure,
    analysis_columns,
    run_headless,
)

#: Nominal 114Cd+ S1/2 -> P3/2 frequency (Hz), 214.5 nm (the twin's nominal; set it in the lab).
REFERENCE_HZ = 1397.592e12
#: Seed 004's measured offsets nu(A) - nu(114) of the S1/2(F=1) -> P3/2(F=2) lines (Hz).
SEED_OFFSET_HZ = {111: isotope(111).lif_offset_hz, 113: isotope(113).lif_offset_hz, 114: 0.0}
#: Time after the dwell before the count is read (s): the counter's period has ended.
READ_MARGIN_S = 2e-3
DEFAULT_CONFIG = "configs/cd_lif.toml"

_INSTRUMENT = {"model": Field(str), "resource": Field(str),
               "channel": Field(int, 6, 1, 8, doc="the probe's switch channel"),
               "port": Field(int, 6, 1, 8, doc="the PID port regulating the probe")}
_COUNTER = {"model": Field(str), "resource": Field(str),
            "count_timeout_s": Field(float, 2.0, 0.01, 600.0)}
_TWIN = {"seed": Field(int, 0, 0), "constants": Field(str, "seed", choices=("seed", "drawn")),
         "ions": Field(float, 4e5, 1.0), "temperature_k": Field(float, 0.1, 0.0, 100.0),
         "b_t": Field(float, 8e-6, 0.0, 1e-3), "intensity_w_m2": Field(float, 5.0, 0.0),
         "efficiency": Field(float, 2e-7, 0.0, 1.0),
         "background_cps": Field(float, 400.0, 0.0),
         "intensity_noise": Field(float, 0.02, 0.0, 1.0),
         "wavemeter_offset_hz": Field(float, 0.0),
         "wavemeter_walk_hz_sqrt_s": Field(float, 25e3, 0.0),
         "lock_jitter_hz": Field(float, 0.3e6, 0.0)}
SCHEMA = {"kind": Field(str, "cd-lif", choices=("cd-lif",)),
          "instruments": {"wavemeter": _INSTRUMENT, "counter": _COUNTER}, "twin": _TWIN}


def load_lif_config(path: str | Path) -> dict:
    """A LIF config (``configs/cd_lif.toml``) checked, defaults filled (`ConfigError`)."""
    data = load_toml(path)
    for section in ("instruments",):
        if section not in data:
            raise UserError(f"config {str(path)!r}: no [{section}] (a LIF config needs "
                            "[instruments.wavemeter] and [instruments.counter])")
    return validate(data, SCHEMA)


class LifApparatus(ApparatusClock):
    """The wavemeter and photon counter of a LIF config on one SimPy environment.

    With ``sim://`` resources the world is the Cd+ LIF twin (`registry.make_cd_lif_world`,
    seeded by `seed` or the config's ``[twin] seed``) and time is simulated; else real time.
    The names `wait`, `now`, `world`, `events`, `close` are those of `base.Apparatus`.
    """

    def __init__(self, cfg: dict, seed: int | None = None):
        self.cfg = cfg
        inst = cfg["instruments"]
        twin = dict(cfg["twin"])
        self.seed = int(twin["seed"] if seed is None else seed)
        self.simulated = any(e["resource"].startswith("sim://") for e in inst.values())
        self.env = (simpy.Environment() if self.simulated
                    else simpy.rt.RealtimeEnvironment(factor=1.0, strict=False))
        self.world = (registry.make_cd_lif_world(self.env, twin, self.seed)
                      if self.simulated else None)
        self.events: list[tuple[float, str, str, dict]] = []
        w, c = inst["wavemeter"], inst["counter"]
        twin_seed = {"seed": self.seed} if w["resource"].startswith("sim://") else None
        self.wavemeter = registry.open_instrument(
            w["model"], w["resource"], world=self.world, key="instruments.wavemeter",
            twin_options=twin_seed)
        self.counter = registry.open_instrument(
            c["model"], c["resource"], world=self.world, key="instruments.counter",
            count_timeout_s=c["count_timeout_s"], sleep=self.wait)
        self.instruments = {"wavemeter": self.wavemeter, "counter": self.counter}


    def close(self, reason: str = "end") -> None:
        """Stop the counter and release both links (the probe stays regulated where it is)."""
        instruments, self.instruments = self.instruments, {}
        if not instruments:
            return
        try:
            instruments["counter"].stop()
        finally:
            for inst in instruments.values():
                inst.close()
        self.events.append((self.now, "apparatus_closed", "cd-hfs", {"reason": reason}))


def parse_sequence(text: str) -> tuple[int, ...]:
    """The isotopes of a scan sequence (``"114,113,114"``): 111, 113 or 114, at least one."""
    try:
        seq = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise UserError(f"scan sequence {text!r}: expected isotopes like 114,113,114") from None
    if not seq or any(a not in SEED_OFFSET_HZ for a in seq):
        raise UserError(f"scan sequence {text!r}: isotopes must be 111, 113 or 114")
    return seq


class ExactFloatParameter(FloatParameter):
    """A `FloatParameter` written to the results header in full (repr), not with ``%g``.

    pymeasure writes a FloatParameter with ``%g`` (six significant digits): the 114Cd+ line,
    1397.592 THz, would come back from the file as 1397.59 THz, 2 GHz away.
    """

    def __str__(self) -> str:
        if not self.is_set():
            return ""
        return repr(float(self._value)) + (f" {self.units}" if self.units else "")


class CdLifScan(IonclockProcedure):
    """LIF scans of Cd+ lines (module docstring): rows of frequency and counts."""

    NAME = cd_hfs.NAME      # "cd-hfs": a procedure is named after its analysis
    ANALYSIS = cd_hfs
    VERSION = "1"
    DATA_COLUMNS = analysis_columns(cd_hfs)

    config = Parameter("LIF config", default=DEFAULT_CONFIG)
    sequence = Parameter("Scan sequence", default="114,113,114")
    reference_hz = ExactFloatParameter("114Cd+ line", units="Hz", default=REFERENCE_HZ,
                                       minimum=1e12, maximum=2e15)
    span_hz = ExactFloatParameter("Scan span", units="Hz", default=600e6, minimum=1e6,
                                  maximum=5e9)
    steps = IntegerParameter("Steps", default=121, minimum=5, maximum=2000)
    dwell_s = FloatParameter("Dwell per step", units="s", default=0.5, minimum=1e-3,
                             maximum=90.0)
    settle_s = FloatParameter("Settle after a step", units="s", default=0.1, minimum=0.0,
                              maximum=60.0)

    # --- pymeasure's hooks ---------------------------------------------------------------------
    def startup(self) -> None:
        """Check the plan, load the LIF config, open the apparatus, set the counter up."""
        self.plan()
        self.cfg = load_lif_config(self.config)
        self.apparatus = LifApparatus(self.cfg, seed=None if self.seed < 0 else self.seed)
        self.rows: list[dict] = []
        c = self.apparatus.counter
        c.counting_mode = "A,B"
        c.counter_a_input = "input1"
        c.counter_t_input = "10MHz"
        c.t_preset = float(self._preset())
        c.gate_mode = "cw"
        c.periods = 1
        c.scan_restart = False

    def measure(self):
        """Step the probe through every scan of the sequence, one row per step."""
        app = self.apparatus
        meter, counter = app.wavemeter, app.counter
        port = self.cfg["instruments"]["wavemeter"]["port"]
        plan = self.plan()
        t0 = app.now
        for k, (scan, iso, setpoint) in enumerate(plan):
            meter.set_frequency_setpoint(port, setpoint)
            app.wait(self.settle_s)
            counter.arm()
            app.wait(self.dwell_s / 2.0)
            reading, error = self._read_wavemeter()
            app.wait(self.dwell_s / 2.0 + READ_MARGIN_S)
            counts = counter.count()
            yield {"isotope": iso, "scan": scan, "frequency_hz": reading, "counts": counts,
                   "setpoint_hz": setpoint, "dwell_s": self.dwell_s, "time_s": app.now - t0,
                   "wavemeter_error": error}
            self.progress((k + 1) / len(plan))

    def truth(self) -> dict | None:
        """The twin's line offsets nu(A) - nu(114) and P3/2 HFS (Hz); None in the lab."""
        world = getattr(getattr(self, "apparatus", None), "world", None)
        if world is None:
            return None
        out = {}
        for a in sorted(set(parse_sequence(self.sequence)) - {114}):
            out[f"offset_{a}"] = world.line_center_hz(a) - world.line_center_hz(114)
            out[f"nu_hfs_p_{a}"] = world.true_p32_hfs_hz(a)
        return out

    # --- the plan ------------------------------------------------------------------------------
    def plan(self) -> list[tuple[int, int, float]]:
        """(scan index, isotope, setpoint Hz) of every step, in order."""
        seq = parse_sequence(self.sequence)
        self._preset()
        n = int(self.steps)
        out = []
        for scan, iso in enumerate(seq):
            centre = self.reference_hz + SEED_OFFSET_HZ[iso]
            for i in range(n):
                out.append((scan, iso, centre + self.span_hz * (i / (n - 1) - 0.5)))
        return out

    def _preset(self) -> str:
        try:
            return preset_text(self.dwell_s * 1e7)
        except ValueError:
            raise UserError(f"dwell {self.dwell_s!r} s: the SR400 times a period in 100 ns "
                            "ticks with one significant digit (e.g. 0.1, 0.2, 0.5, 1, 2 s)"
                            ) from None

    def _read_wavemeter(self) -> tuple[float, str]:
        """The probe's frequency (Hz) and '', or NaN and the meter's error text."""
        channel = self.cfg["instruments"]["wavemeter"]["channel"]
        try:
            return float(self.apparatus.wavemeter.frequency(channel)), ""
        except WavemeterError as err:
            return math.nan, str(err).replace(",", ";")


def main(argv: list[str] | None = None) -> int:
    """``python -m ionclock.procedures.cd_lif CONFIG OUT.csv [--seed N] [--set P=V ...]``.

    Runs the scan headless (pymeasure's Worker into a Results file) and prints the cd-hfs
    analysis of it. Not in ``ionclock measure``'s registry: that command opens a clock config
    and records budget values, and the LIF measurement has neither (decision 1200). A bad
    argument, config or file is one line on stderr and exit status 2.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m ionclock.procedures.cd_lif",
                                     description="Cd+ LIF scans and the P3/2 HFS (seed 004)")
    parser.add_argument("config", help="LIF config (e.g. configs/cd_lif.toml)")
    parser.add_argument("out", help="the Results file to write (CSV; must not exist)")
    parser.add_argument("--seed", type=int, default=-1, help="twin seed (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                        help="a procedure parameter, e.g. --set sequence=114,111,114")
    args = parser.parse_args(argv)
    try:
        settings = {}
        for pair in args.set:
            name, sep, value = pair.partition("=")
            if not sep or name not in CdLifScan().parameter_objects():
                raise UserError(f"--set {pair!r}: expected PARAM=VALUE with PARAM one of "
                                f"{', '.join(CdLifScan().parameter_objects())}")
            settings[name] = value
        try:   # pymeasure checks the parameters' ranges as the Worker is made
            proc = CdLifScan(config=args.config, seed=args.seed, **settings)
            proc.refresh_parameters()
            proc.plan()
        except ValueError as err:
            raise UserError(f"--set: {err}") from None
        run_headless(proc, args.out)
        print(f"wrote {args.out} ({len(proc.rows)} rows)")
        print(cd_hfs.from_csv(args.out).line())
        if proc.truth():
            print("twin truth: " + ", ".join(f"{k} = {v / 1e6:.3f} MHz"
                                             for k, v in proc.truth().items()))
    except UserError as err:
        print(f"cd_lif: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
