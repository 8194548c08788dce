"""The micromotion monitor: sideband/carrier ratios R_i on three beams, interleaved with the clock.

The seed evaluates the excess micromotion (EMM) from the micromotion sidebands seen by three
mutually orthogonal clock-laser beams and re-optimises the compensation voltages after each
LN2 refill (DOMAIN §1, §3; seed supplement Eq. 5, Fig. 11: "we randomly sampled the Rabi
frequency ratios between the micro-motion sidebands and the carriers along all three axes").
This role measures those ratios while the clock runs, so the budget's EMM row is measured,
not nominal (issue 14; decision 0309).

Every ``period_s`` (the first after ``first_s``) the role asks the servo to hold
(``request_hold("micromotion_measurement")``), waits until the servo has left the sequencer,
and runs its shots on it through `ProbeSequencer` (decision 0804): for each beam b = 1, 2, 3,
``shots`` shots of

1. the carrier of Zeeman line ``line`` (the servo's own model of where it is), a pulse of a
   quarter of the nominal carrier Rabi period (area pi/2: the most sensitive point);
2. the micromotion sideband at ``order`` x Omega_RF (the laser's lock offset), a pulse whose
   area is pi/2 at R = ``r_max``, so that any R up to r_max is read without ambiguity;
3. the sideband again with a pulse of area pi/2 at the upper end R + 2 u(R) of the last
   estimate (at least ``r_min``), ``refine`` times: the first estimate of a small R from a
   few dark shots is coarse, and a pulse tuned to an estimate that came out low would pass
   area pi, beyond which the area read from p wraps (R read low).

Each pulse's area is theta = 2 arcsin(sqrt(p)) of its dark fraction p (the binomial's
variance-stabilising transform, sigma(theta) = 1/sqrt(N)), and R_b = (theta_sb / t_sb) /
(theta_c / t_c), the ratio of the Rabi frequencies J1(beta_b)/J0(beta_b) (the sideband and
the carrier share the motional state, so its Debye-Waller factor cancels), with
u(R) = R sqrt((sigma/theta_sb)^2 + (sigma/theta_c)^2). Then the hold is released.

The results go to the store as channels ``mm.r1..mm.r3`` (with ``mm.rN.sigma``; the budget
config's ``[micromotion] channels``), which the live budget reads (`LiveBudget.add_sample`),
and the compensation voltages read back as ``mm.v1..mm.v3`` (V). A measurement that fails
(an instrument offline) is a missing sample of each ratio with its reason (decision 0503).
The clock time the monitor costs (hold requested to released) is counted in
``lost_s`` and in each ``micromotion_measured`` event.

Compensation: ``[instruments.compensation]`` is the electrodes' supply (a Keysight E36312A in
constant voltage, drivers/compensation.py); ``voltages_v``, when given, is set at the start
(the voltages of the last optimisation); re-optimising them is the compensation scan of the
micromotion procedure (issue 15), not this monitor's job.

In the lab the probe's TTL pattern must be programmed into the pulse hardware, as the clock's
own is, and ClockRun has no loader for that hardware (decision 0804): there the role sets and
logs the voltages but measures no ratio, and says so once (``micromotion_unmeasured``).
"""

from __future__ import annotations

import math

import simpy

from ionclock.apparatus.roles import Role
from ionclock.config import Field
from ionclock.drivers.sequencer import ProbeProgram, ProbeSequencer
from ionclock.errors import ConfigError, IonclockError
from ionclock.physics.constants import RF_MAGIC_HZ

F = Field
REASON = "micromotion_measurement"
BEAMS = (1, 2, 3)
#: A carrier pulse of area pi/2 leaves half the shots dark: outside this range of dark
#: fractions the ion did not answer as an ion (lost, shelved, unlit) and R is not recorded.
CARRIER_DARK_RANGE = (0.2, 0.8)


def pulse_area(dark: int, shots: int) -> tuple[float, float]:
    """The area theta = 2 arcsin(sqrt(p)) of a resonant pulse from its dark shots; sigma(theta).

    p is kept 0.5/N from 0 and 1 (a pulse that saw nothing still has an area's worth).
    """
    p = min(max(dark / shots, 0.5 / shots), 1.0 - 0.5 / shots)
    return 2.0 * math.asin(math.sqrt(p)), 1.0 / math.sqrt(shots)


def sideband_ratio(dark_sb: int, t_sb: float, dark_c: int, t_c: float,
                   shots: int) -> tuple[float, float]:
    """R = Omega_sb / Omega_carrier from one sideband and one carrier pulse, and u(R)."""
    th_sb, s_sb = pulse_area(dark_sb, shots)
    th_c, s_c = pulse_area(dark_c, shots)
    r = (th_sb / t_sb) / (th_c / t_c)
    return r, r * math.hypot(s_sb / th_sb, s_c / th_c)


class MicromotionMonitor(Role):
    """The micromotion monitor beside the clock servo (see the module docstring)."""

    section = "micromotion"
    ROLE_MODELS = {"compensation": ("e36312a_compensation",)}
    SETTINGS = {
        "enabled": F(bool, True, doc="measure when [instruments.compensation] is set"),
        "period_s": F(float, 3600.0, min=60.0, max=30 * 86400.0,
                      doc="one measurement of the three ratios every period_s, s"),
        "first_s": F(float, 600.0, min=0.0, max=30 * 86400.0,
                     doc="the first measurement this long after the clock starts, s"),
        "shots": F(int, 100, min=10, max=100000,
                   doc="shots per pulse (2 + refine pulses per beam)"),
        "line": F(int, 0, min=0, max=5, doc="the Zeeman line whose carrier and sideband"),
        "order": F(int, 1, choices=(1, -1), doc="the micromotion sideband: +1 or -1 Omega_RF"),
        "cooling": F(str, "sideband", choices=("doppler", "sideband"),
                     doc="cooling before each shot"),
        "carrier_rabi_hz": F(list, [2.201e6, 249.6e3, 3.488e6],
                             doc="beams 1-3's carrier Rabi frequencies after the cooling, Hz "
                                 "(the pulse lengths; the seed's Fig. 8 for beams 1, 3)"),
        "r_max": F(float, 0.3, min=0.01, max=1.0,
                   doc="the largest ratio the first sideband pulse reads unambiguously"),
        "r_min": F(float, 0.003, min=1e-4, max=0.1,
                   doc="the smallest ratio the second sideband pulse is tuned for"),
        "refine": F(int, 3, min=1, max=10,
                    doc="sideband pulses after the first, each of area pi/2 at the last R"),
        "voltages_v": F(list, [], doc="compensation voltages of electrodes 1-3 set at the "
                                      "start, V ([]: keep what the supply holds)"),
        "rf_hz": F(float, RF_MAGIC_HZ, min=1e6, max=1e9, doc="the trap drive, Hz"),
        "lock_offset_channel": F(int, 2, min=0, max=3,
                                 doc="the clock DDS's channel driving the lock-offset EOM"),
        "lock_offset_center_hz": F(float, 50e6, min=1e6, max=171e6,
                                   doc="the lock-offset EOM's frequency for the clock, Hz"),
        "lock_offset_sign": F(int, 1, choices=(1, -1),
                              doc="the laser moves by this sign x the EOM's step"),
        "aom_reach_hz": F(float, 10e6, min=1e5, max=50e6,
                          doc="the clock AOM's reach at the ion, Hz"),
        "relock_s": F(float, 0.005, min=0.0, max=10.0,
                      doc="the laser relocks this long after a lock-offset step, s"),
    }

    @classmethod
    def configured(cls, cfg: dict) -> bool:
        """Run when ``[instruments.compensation]`` is there and ``[micromotion] enabled``."""
        return "compensation" in cfg["instruments"] and cfg.get("micromotion", {}).get(
            "enabled", True)

    def __init__(self, ctx):
        super().__init__(ctx)
        s = self.settings
        for key, n in (("carrier_rabi_hz", 3), ("voltages_v", 3)):
            v = s[key]
            if (key == "voltages_v" and not v) or (
                    len(v) == n and all(isinstance(x, (int, float)) and math.isfinite(x)
                                        and x >= 0 for x in v)):
                continue
            raise ConfigError(f"micromotion.{key}", f"expected {n} numbers >= 0, got {v!r}")
        if min(s["carrier_rabi_hz"]) <= 0:
            raise ConfigError("micromotion.carrier_rabi_hz", "Rabi frequencies must be > 0")
        if s["r_min"] >= s["r_max"]:
            raise ConfigError("micromotion.r_min", "must be below micromotion.r_max")
        self.supply = ctx.instruments["compensation"]
        self.entry = ctx.cfg["instruments"]["compensation"]
        seq = ctx.sequencer
        loader = getattr(seq, "pattern_loader", None)
        self.probe = None if loader is None else ProbeSequencer(
            seq, loader,
            lock_offset=getattr(ctx.instruments["aom"], f"ch_{s['lock_offset_channel']}"),
            lock_offset_center_hz=s["lock_offset_center_hz"],
            lock_offset_sign=s["lock_offset_sign"], aom_reach_hz=s["aom_reach_hz"],
            rf_hz=s["rf_hz"], relock_s=s["relock_s"])
        self.threshold = ctx.cfg["servo"]["threshold_counts"]
        self.lost_s = 0.0            # clock time held for the measurements
        self.measurements = 0
        self.shots_run = 0
        self.skipped = 0             # measurements not made: the clock held for another cause
        self._held = False
        self._restore_failed = False

    def channels(self) -> list[tuple]:
        """``mm.r1..3`` (with ``.sigma``) and the electrodes' ``mm.v1..3``."""
        period = self.settings["period_s"]
        src = f"sideband/carrier Rabi-frequency ratio, {self.settings['shots']} shots per pulse"
        rows = []
        for b in BEAMS:
            rows.append((f"mm.r{b}", "1", None, None, f"micromotion monitor beam {b}: {src}",
                         period))
            rows.append((f"mm.r{b}.sigma", "1", None, None,
                         f"micromotion monitor beam {b}: standard uncertainty of mm.r{b}",
                         period))
        rows += [(f"mm.v{j}", "V", None, None,
                  f"{self.entry['model']} {self.entry['resource']} ch_{j}.voltage "
                  f"(compensation electrode {j})", period) for j in BEAMS]
        return rows

    # --- the compensation voltages ----------------------------------------------------------
    def _set_voltages(self) -> None:
        volts = self.settings["voltages_v"]
        if not volts:
            return
        t = self.ctx.env.now
        try:
            for j, v in zip(BEAMS, volts):
                getattr(self.supply, f"ch_{j}").set_voltage(float(v))
            self.ctx.event(t, "compensation_set", "micromotion", voltages_v=list(volts))
        except (IonclockError, OSError, ValueError) as err:
            self.ctx.event(t, "compensation_failed", "micromotion", error=str(err))

    def _record_voltages(self, t: float) -> None:
        try:
            volts = self.supply.voltages()
            reason = None
        except (IonclockError, OSError) as err:
            volts, reason = (None, None, None), str(err)
        for j, v in zip(BEAMS, volts):
            self.ctx.record(t, f"mm.v{j}", v, reason)

    # --- shots on the sequencer -------------------------------------------------------------
    def _shots(self, beam: int, pulse_s: float, hz: float):
        """`shots` shots of one pulse (a generator): (dark ones, the pulse length as run).

        The pulse hardware runs it on its grid (a pattern generator's 10 ns ticks): the
        ratio is computed with the length as run, not as asked (`ProbeSequencer.program`).
        """
        env, seq, probe = self.ctx.env, self.ctx.sequencer, self.probe
        program = ProbeProgram(beam=beam, pulse_s=pulse_s, cooling=self.settings["cooling"])
        _, moved = probe.load(program, hz)
        run_s = probe.program.pulse_s
        if moved:
            yield env.timeout(probe.relock_s)
        cycle = probe.program.cycle_time_s
        dark = 0
        n = self.settings["shots"]
        threshold = self.threshold
        for i in range(n):
            if i:
                probe.load(program, hz)
            seq.start()
            yield env.timeout(cycle)
            dark += seq.count() < threshold
        self.shots_run += n
        return dark, run_s

    def _ratio(self, beam: int):
        """R of `beam` and its u(R) (three pulses, module docstring; a generator)."""
        s, servo, env = self.settings, self.ctx.servo, self.ctx.env
        n = s["shots"]
        om = float(s["carrier_rabi_hz"][beam - 1])
        carrier = servo.line_hz(s["line"], env.now)
        sideband = carrier + s["order"] * s["rf_hz"]
        dark_c, t_c = yield from self._shots(beam, 0.25 / om, carrier)
        dark_1, t1 = yield from self._shots(beam, 0.25 / (s["r_max"] * om), sideband)
        r, u = sideband_ratio(dark_1, t1, dark_c, t_c, n)
        coarse = r
        for _ in range(s["refine"]):
            # area pi/2 at the estimate's upper end (R + 2 u): a low first estimate from a few
            # dark shots must not make the next pulse's area pass pi, where theta wraps
            t2 = 0.25 / (min(max(r + 2.0 * u, s["r_min"]), s["r_max"]) * om)
            dark_2, t2 = yield from self._shots(beam, t2, sideband)
            r, u = sideband_ratio(dark_2, t2, dark_c, t_c, n)
        return r, u, {"carrier_dark": dark_c, "coarse_ratio": coarse, "sideband_pulse_s": t2,
                      "sideband_dark": dark_2}

    def measure(self):
        """One measurement of the three ratios under a hold of the clock (a generator)."""
        ctx, env = self.ctx, self.ctx.env
        t_ask = env.now
        holding = ctx.servo.request_hold(REASON)
        self._held = True
        yield holding
        t0 = env.now
        results, error = {}, None
        # The clock held for another cause too (the ion lost, the contrast gone, a laser off
        # its band, a shutter): its shots would read a dark or absent ion as R = r_max on
        # every beam. Not measured, said so; tried again sooner than a period.
        other = self._other_hold()
        if other is not None:
            self._give_back()
            self.skipped += 1
            for beam in BEAMS:
                for ch in (f"mm.r{beam}", f"mm.r{beam}.sigma"):
                    ctx.record(env.now, ch, None, f"not measured: the clock held for {other}")
            ctx.event(env.now, "micromotion_skipped", "micromotion", held_for=other)
            return False
        try:
            for beam in BEAMS:
                results[beam] = yield from self._ratio(beam)
                # a carrier pulse of area pi/2 leaves about half the shots dark; far from it
                # the ion did not answer (lost, shelved, unlit) and no R is vouched for
                dark = results[beam][2]["carrier_dark"] / self.settings["shots"]
                if not CARRIER_DARK_RANGE[0] <= dark <= CARRIER_DARK_RANGE[1]:
                    error = (f"beam {beam}: carrier pulse dark fraction {dark:.2f} outside "
                             f"{CARRIER_DARK_RANGE[0]}-{CARRIER_DARK_RANGE[1]} (a pi/2 pulse "
                             "gives 0.5): the ion did not answer")
                    break
                if other := self._other_hold():
                    error = f"the clock held for {other} during the measurement"
                    break
        except (IonclockError, OSError) as err:
            error = f"{type(err).__name__}: {err}"
        finally:
            self._give_back()
        t1 = env.now
        self.lost_s += t1 - t_ask
        self.measurements += 1
        for beam in BEAMS:
            if beam in results and error is None:
                r, u, _ = results[beam]
                ctx.record(t1, f"mm.r{beam}", r)
                ctx.record(t1, f"mm.r{beam}.sigma", u)
            else:
                ctx.record(t1, f"mm.r{beam}", None, error)
                ctx.record(t1, f"mm.r{beam}.sigma", None, error)
        self._record_voltages(t1)
        detail = {"duration_s": t1 - t0, "waited_s": t0 - t_ask,
                  "shots": self.settings["shots"] * (2 + self.settings["refine"]) * len(BEAMS)}
        if error is None:
            detail.update(ratios=[results[b][0] for b in BEAMS],
                          sigmas=[results[b][1] for b in BEAMS],
                          pulses={str(b): results[b][2] for b in BEAMS})
            ctx.event(t1, "micromotion_measured", "micromotion", **detail)
        else:
            ctx.event(t1, "micromotion_failed", "micromotion", error=error, **detail)
        return error is None

    def _other_hold(self) -> str | None:
        """The cause other than this measurement the clock holds for now, if any."""
        servo = self.ctx.servo
        reason = getattr(servo, "hold_reason", None)
        if reason not in (None, REASON):
            return reason
        others = [r for r in servo.held_for if r != REASON]
        return others[0] if others else None

    def _give_back(self) -> bool:
        """The sequencer back to the clock (its pattern, the lock offset), the hold released.

        A restore that fails (the DDS's link down) keeps the hold: released with the laser
        still 24.8 MHz off on its lock offset, the clock would probe nothing. It is tried
        again (`process`) until it goes through; returns whether it did.
        """
        if not self._held:
            return True
        try:
            self.probe.restore()
        except (IonclockError, OSError) as err:
            if not self._restore_failed:
                self._restore_failed = True
                self.ctx.event(self.ctx.env.now, "micromotion_restore_failed", "micromotion",
                               error=f"{type(err).__name__}: {err}")
            return False
        self._held = self._restore_failed = False
        self.ctx.servo.release_hold(REASON)
        return True

    def process(self):
        """Set the voltages; then one measurement every period (module docstring)."""
        env, ctx, s = self.ctx.env, self.ctx, self.settings
        try:
            self._set_voltages()
            if self.probe is None:
                ctx.event(env.now, "micromotion_unmeasured", "micromotion",
                          reason="no pattern loader for the pulse hardware (decision 0804): "
                                 "the ratios are not measured; the budget says so")
                while True:
                    self._record_voltages(env.now)
                    yield env.timeout(s["period_s"])
            yield env.timeout(s["first_s"])
            while True:
                start = env.now
                done = yield from self.measure()
                while not self._give_back():   # the clock waits until it has its probe back
                    yield env.timeout(self.ctx.cfg["servo"]["cycle_time_s"])
                # not measured (the clock held, the ion did not answer): again after a tenth
                # of the period, not a whole one
                wait = s["period_s"] if done else 0.1 * s["period_s"]
                yield env.timeout(max(0.0, wait - (env.now - start)))
        except simpy.Interrupt:   # the run is over (a measurement under way gives back)
            self._give_back()
            return


ROLE = MicromotionMonitor
