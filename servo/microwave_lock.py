"""The Cd+ microwave clock lock: the synthesiser steered onto the 0-0 line of the cloud.

Structure (the 40Ca+ clock's where it applies, `ionclock.servo.clock_lock`, DOMAIN §5):

- Two-point Ramsey lock: each frame probes the 0-0 line at f_c - 1/(4T) and f_c + 1/(4T),
  f_c = nu_nominal + u + K0 B^2 (u the loop's correction, B the tracked field)
  (order reversed every frame, so a linear drift enters both sides alike). With the fringe
  n(s) = bg + A/2 - s (A C / 2) sin(2 pi x T), x = f_c - nu_line, the frame's estimate is
  x = (n- - n+) / (2 pi T A C) (A C: the calibrated fringe amplitude in counts).
- The frequency loop is second order (`ionclock.servo.controllers.PIController` with a drift
  integrator: the reference oscillator drifts, and a first-order loop would lag a drift D by
  D t_u (1/g - 1/2)); between updates the steering advances with the integrated drift rate.
  Gains are dimensionless per frame: ki = g / t_frame, ki2 = g2 / t_frame^2.
- The field: every `zeeman_every_frames` frames the m=+1 and m=-1 lines are probed the same
  way at f_c - SOZS/2 +- z B (z = (g_J + g_I) muB / 2h, exact Breit-Rabi,
  `ionclock.physics.cadmium.zeeman_pm1_lines_hz`); the difference of their errors is the
  field error (x+ - x-) / 2z, fed to a second-order field loop. The reference oscillator's
  error is common to both lines and drops out.
- SOZS live: each frame K0 B^2 from the tracked B with its uncertainty from g_J (and from the
  scatter of the recent field measurements), seed 004 Eq. 18; recorded as the frame's
  correction (`corrected_hz` = steering - SOZS, `corrected_sigma_hz`).
- State machine: acquire -> locked after `acquire_frames` frames (60: the second-order
  loop pulls in over ~20-40 frames, which must not count as locked data); holdover when the
  cloud's counts fall below `cloud_threshold_counts` (cloud lost) or an instrument fails, with
  the integrators frozen and the steering on its drift model; back to acquire when the counts
  return. Every change is an event (`servo_started`, `acquire`, `locked`, `holdover`,
  `field_jump`).

The cycle is timed by the pulse generator, free-running at `cycle_time_s` from
`cycle_origin_s`; each cycle the servo sets the synthesiser for the next probe before its
first pulse and reads the counter once the cycle's count period has closed
(`read_offset_s`). The counter is read every cycle, in order; after any failure it is
re-armed so that its next point is the next cycle's.

`run()` is a SimPy process: on `simpy.Environment` (the twin) or
`simpy.rt.RealtimeEnvironment` (the lab); no blocking waits, no clock but `env.now`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ionclock.errors import IonclockError
from ionclock.physics import cadmium
from ionclock.servo.clock_lock import Frame
from ionclock.servo.controllers import PIController

TWO_PI = 2.0 * math.pi
#: `servo_cycles.line` of the probes: 0 the clock line (as the 40Ca+ lines 0..5 are clock
#: probes for the report's duty cycle), ZEEMAN_LINE + m for the m = -1, +1 lines.
ZEEMAN_LINE = 20


@dataclass
class MicrowaveLockParams:
    """Settings of the microwave lock (SI; gains dimensionless per frame or per visit)."""

    isotope: int = 113
    nu_nominal_hz: float | None = None   # synthesiser steering origin; None: seed 004 HFS
    ramsey_time_s: float = 0.5
    cycle_time_s: float = 1.0
    cycle_origin_s: float = 0.0           # start of cycle 0 on env's clock
    set_offset_s: float = 0.0             # the synthesiser is set this far into the cycle
    read_offset_s: float = 0.9705         # the cycle's count is complete here
    fringe_counts: float = 9037.0         # A C: fringe amplitude, counts
    background_counts: float = 1500.0     # counts with no ion in F=1 (calibration)
    cloud_threshold_counts: float = 4000.0  # a pair mean below this: the cloud is gone
    gain: float = 0.5
    drift_gain: float = 0.05
    b_gain: float = 0.5
    b_drift_gain: float = 0.05
    zeeman_every_frames: int = 30
    acquire_frames: int = 60             # frames before "locked": the pull-in (1300)
    b_initial_t: float = 8.0e-6
    nu_initial_hz: float = 0.0           # initial u: within 1/(4T) of the line's (no search)
    field_jump_t: float = 20e-12          # a field error this large is reported
    # The field loop's drift estimate needs this many m=+-1 visits to settle (decision 1300:
    # ~15 min); the clock is declared locked only then, and a holdover that begins earlier
    # leaves the field unverified (the frozen field may have drifted a fringe, 139 pT)
    field_settle_visits: int = 15
    g_i_convention: str = "seed"
    b_history: int = 20                   # field measurements in the B uncertainty

    def __post_init__(self):
        cadmium.isotope(self.isotope)
        if self.nu_nominal_hz is None:
            self.nu_nominal_hz = cadmium.isotope(self.isotope).hfs_s_hz
        if self.fringe_counts <= 0 or self.zeeman_every_frames < 1:
            raise ValueError("fringe_counts must be > 0 and zeeman_every_frames >= 1")
        if not 0.0 <= self.set_offset_s < self.read_offset_s < self.cycle_time_s + \
                self.set_offset_s:
            raise ValueError("need 0 <= set_offset_s < read_offset_s within one cycle")

    @property
    def quarter_fringe_hz(self) -> float:
        """Probe offset from the line centre, 1/(4T) (Hz)."""
        return 0.25 / self.ramsey_time_s

    def hz_per_count(self) -> float:
        """Frequency error per count of n- - n+: 1 / (2 pi T A C) (Hz)."""
        return 1.0 / (TWO_PI * self.ramsey_time_s * self.fringe_counts)


class _Hold(Exception):
    """The lock cannot probe or trust this cycle (cloud gone, instrument failed)."""

    def __init__(self, reason: str, **detail):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class MicrowaveLock:
    """The Cd+ microwave clock lock as a SimPy process (see the module docstring).

    `synth`: the microwave synthesiser driver (`frequency` in Hz, 1 mHz steps); `counter`:
    a photon counter (`ionclock.drivers.photon_counter.PhotonCounter`, `arm()` and `count()`);
    `store`: where cycles, frames and events go (``add``, ``event``), or None; `on_frame`:
    called with each recorded `Frame`; `prepare`: puts the synthesiser and the counter in the
    cycle's modes and arms the counter (default ``counter.arm()``), called before the first
    probe and again after any failure (a reconnected unit may have lost its settings).
    Calls go through the drivers as handed in: a resilient wrapper
    (`ionclock.apparatus.resilience`) reconnects on the next call once its backoff is over.
    """

    source = "servo"

    def __init__(self, env, synth, counter, params: MicrowaveLockParams | None = None, *,
                 store=None, on_frame: Callable[[Frame], None] | None = None,
                 prepare: Callable[[], None] | None = None):
        self.env = env
        self.synth = synth
        self.counter = counter
        self.p = params or MicrowaveLockParams()
        self.store = store
        self.on_frame = on_frame
        self.prepare = prepare or counter.arm
        p = self.p
        t_frame = 2.0 * p.cycle_time_s
        t_visit = t_frame * p.zeeman_every_frames
        self.nu_loop = PIController(0.0, p.gain / t_frame, p.drift_gain / t_frame**2,
                                    initial_output=p.nu_initial_hz)
        self.b_loop = PIController(0.0, p.b_gain / t_visit, p.b_drift_gain / t_visit**2,
                                   initial_output=p.b_initial_t)
        self._t_nu = self._t_b = 0.0     # when each loop last updated
        self.z_hz_per_t = cadmium.zeeman_pm1_hz_per_t(p.isotope, p.g_i_convention)
        self.state = "idle"
        self.cycles = 0
        self.locked_cycles = 0
        self.frame_index = 0
        self._good_frames = 0
        self._b_visits = 0                # m=+-1 visits since the start
        self._settled_at_hold = True
        # the field loop may sit a whole m=+-1 fringe off (a field jump, or a holdover before
        # its drift estimate settled): no frame is locked clock data from then on
        self.field_unverified: dict | None = None
        self._b_meas: deque = deque(maxlen=p.b_history)
        self._next_cycle = 0
        self._rearm = True
        self._zeeman_due = True   # the m=+-1 lines are due at this frame index

    # --- the model the probes follow --------------------------------------------------------
    def steering_hz(self, t: float) -> float:
        """The loop's correction (Hz) at `t`, drift fed forward.

        The reference oscillator's error as the lock sees it, the live SOZS taken out: the
        corrected output.
        """
        return self.nu_loop.last_output + self.nu_loop.drift * (t - self._t_nu)

    def line_hz(self, t: float) -> float:
        """Where the lock puts the 0-0 line (Hz from `nu_nominal_hz`): steering + live SOZS."""
        return self.steering_hz(t) + self.sozs(t).shift_hz

    def b_t(self, t: float) -> float:
        """Tracked field (T) at `t`, its drift fed forward."""
        return self.b_loop.last_output + self.b_loop.drift * (t - self._t_b)

    @property
    def drift_hz_s(self) -> float:
        """The frequency loop's drift estimate (Hz/s)."""
        return self.nu_loop.drift

    def b_unc_t(self) -> float:
        """1-sigma of the tracked field (T): the recent field measurements' standard error."""
        h = self._b_meas
        return (_std(h) / math.sqrt(len(h))) if len(h) >= 3 else 0.0

    def sozs(self, t: float) -> cadmium.SozsShift:
        """The live SOZS at the tracked field, g_J and field-scatter uncertainties (Hz)."""
        return cadmium.sozs_shift(self.p.isotope, self.b_t(t), self.b_unc_t(),
                                  self.p.g_i_convention)

    def probe_hz(self, line: int, side: int, t: float) -> float:
        """Synthesiser frequency (Hz) for a probe of line m = `line` on `side` (+-1) at `t`."""
        p = self.p
        sozs = self.sozs(t).shift_hz
        f = p.nu_nominal_hz + self.steering_hz(t) + sozs + side * p.quarter_fringe_hz
        if line:   # the m=+-1 pair's mean carries half the clock line's SOZS
            f += -0.5 * sozs + line * self.z_hz_per_t * self.b_t(t)
        return f

    # --- bookkeeping --------------------------------------------------------------------------
    def _event(self, kind: str, **detail) -> None:
        if self.store is not None:
            self.store.event(self.env.now, kind, self.source, **detail)

    def _set_state(self, state: str, **detail) -> None:
        if state != self.state:
            self.state = state
            self._event(state, **detail)

    def _cycle_start(self, k: int) -> float:
        return self.p.cycle_origin_s + k * self.p.cycle_time_s

    # --- one probe ----------------------------------------------------------------------------
    def _probe(self, line: int, side: int):
        """Set the synthesiser for the next cycle, wait for its count, return the counts."""
        env = self.env
        p = self.p
        k = max(self._next_cycle,
                math.ceil((env.now - p.cycle_origin_s - p.set_offset_s) / p.cycle_time_s
                          - 1e-9))
        t0 = self._cycle_start(k)
        if t0 + p.set_offset_s > env.now:
            yield env.timeout(t0 + p.set_offset_s - env.now)
        f = self.probe_hz(line, side, t0)
        try:
            if self._rearm:
                self.prepare()          # the counter's next point: the first period after this
                self._rearm = False
            self.synth.frequency = f
        except (IonclockError, OSError) as err:
            self._rearm = True
            raise _Hold("instrument_offline", error=str(err)) from None
        yield env.timeout(t0 + p.read_offset_s - env.now)
        try:
            counts = self.counter.count()
        except (IonclockError, OSError) as err:
            self._rearm = True
            raise _Hold("instrument_offline", error=str(err)) from None
        self._next_cycle = k + 1
        self.cycles += 1
        if self.state == "locked":
            self.locked_cycles += 1
        if self.store is not None:
            frac = (counts - p.background_counts) / p.fringe_counts
            self.store.add("servo_cycles", (env.now, self.frame_index,
                                            ZEEMAN_LINE + line if line else 0, side,
                                            f - p.nu_nominal_hz, int(counts), frac,
                                            self.state))
        return counts

    def _pair(self, line: int, first: int):
        """Probe `line` on both sides (`first` side first); return (n-, n+) counts."""
        out = {}
        for side in (first, -first):
            n = yield from self._probe(line, side)
            out[side] = n
        # the pair's mean sits at half fringe, bg + A/2, wherever the line is: a cloud that
        # is gone leaves the background only
        mean = 0.5 * (out[-1] + out[1])
        if mean < self.p.cloud_threshold_counts:
            raise _Hold("cloud_lost", counts=mean)
        return out[-1], out[1]

    # --- the loop -------------------------------------------------------------------------------
    def run(self):
        """The lock as a generator for `env.process`."""
        self._event("servo_started", isotope=self.p.isotope,
                    nu_nominal_hz=self.p.nu_nominal_hz)
        self._set_state("acquire")
        order = -1
        while True:
            try:
                if self.state == "holdover":
                    yield from self._holdover_probe()
                    continue
                if (self._zeeman_due and self.frame_index
                        and self.frame_index % self.p.zeeman_every_frames == 0):
                    yield from self._zeeman_visit(order)
                    self._zeeman_due = False
                n_lo, n_hi = yield from self._pair(0, order)
                order = -order
                self._frame_update(n_lo, n_hi)
            except _Hold as hold:
                self._enter_holdover(hold)

    def _frame_update(self, n_lo: int, n_hi: int) -> None:
        t = self.env.now
        p = self.p
        x = (n_lo - n_hi) * p.hz_per_count()      # f_c - line, Hz
        dt = max(t - self._t_nu, 1e-9) if self.frame_index else 2.0 * p.cycle_time_s
        self.nu_loop.update(-x, dt)
        self._t_nu = t
        self._good_frames += 1
        if (self.state == "acquire" and self._good_frames >= p.acquire_frames
                and self._b_visits >= p.field_settle_visits):
            self._set_state("locked", nu_hz=self.line_hz(t), b_t=self.b_t(t))
        self._record_frame(t)
        self._zeeman_due = True

    def _zeeman_visit(self, order: int):
        """Probe the m=+1 and m=-1 lines; update the field loop from their difference."""
        p = self.p
        lo_p, hi_p = yield from self._pair(1, order)
        lo_m, hi_m = yield from self._pair(-1, order)
        x_p = (lo_p - hi_p) * p.hz_per_count()
        x_m = (lo_m - hi_m) * p.hz_per_count()
        t = self.env.now
        b_now = self.b_t(t)
        b_err = (x_p - x_m) / (2.0 * self.z_hz_per_t)     # tracked minus true
        self._b_meas.append(b_now - b_err)
        self._b_visits += 1
        if abs(b_err) > p.field_jump_t:
            self._event("field_jump", b_error_t=b_err, b_t=b_now - b_err)
            # the error signal is periodic: the loop pulls the lines to the nearest fringe,
            # which after a jump may be the next one (a 100 pT step leaves 139 pT)
            self._unverify("field_jump", b_error_t=b_err)
        visit = max(t - self._t_b, 1e-9) if self._t_b else (
            2.0 * p.cycle_time_s * p.zeeman_every_frames)
        self.b_loop.update(-b_err, visit)
        self._t_b = t

    def _record_frame(self, t: float) -> None:
        s = self.sozs(t)
        nu = self.steering_hz(t) + s.shift_hz
        frame = Frame(t, self.frame_index, nu, self.drift_hz_s, self.b_t(t),
                      (None,) * 6, self.state == "locked", self.state == "holdover",
                      self.p.nu_nominal_hz + nu, nu - s.shift_hz, s.uncertainty_hz)
        if self.store is not None:
            self.store.add("lock_frames", (t, frame.index, frame.nu_hz, frame.drift_hz_s,
                                           frame.b_t, *frame.offsets_hz, int(frame.locked),
                                           int(frame.holdover), frame.nu_abs_hz,
                                           frame.corrected_hz, frame.corrected_sigma_hz))
        self.frame_index += 1
        if self.on_frame is not None:
            self.on_frame(frame)

    def _enter_holdover(self, hold: _Hold) -> None:
        """Freeze the loops; the steering follows its drift model; frames go on, marked."""
        if self.state != "holdover":
            self._settled_at_hold = self._b_visits >= self.p.field_settle_visits
            self.nu_loop.hold()
            self.b_loop.hold()
            self._set_state("holdover", reason=hold.reason, **hold.detail)
        self._good_frames = 0

    def _holdover_probe(self):
        """In holdover: probe the clock line each frame until the cloud answers again."""
        try:
            n_lo, n_hi = yield from self._pair(0, -1)
        except _Hold:
            self._record_frame(self.env.now)
            if self._rearm:   # an instrument failed: wait a cycle before trying again
                yield self.env.timeout(self.p.cycle_time_s)
            return
        t = self.env.now
        # resume bumplessly where the drift model has brought the steering and the field
        self.nu_loop.engage(self.steering_hz(t))
        self.b_loop.engage(self.b_t(t))
        self._t_nu = self._t_b = t
        if not self._settled_at_hold:
            self._unverify("holdover_before_the_field_settled",
                           visits=self._b_visits, needed=self.p.field_settle_visits)
        self._set_state("unverified" if self.field_unverified else "acquire",
                        reason="recovered")
        self._frame_update(n_lo, n_hi)

    def _unverify(self, reason: str, **detail) -> None:
        """The field can no longer be vouched for: say so once; frames are not locked on.

        The lock goes on (the line, the frames) but no frame counts as clock data until the
        field is calibrated again (procedures/cd_field.py) and a new run starts: a clock
        that stops is better than one whose SOZS correction is a fringe's 3.8e-15 off.
        """
        if self.field_unverified is None:
            self.field_unverified = {"reason": reason, **detail}
            self._event("field_unverified", reason=reason, **detail)
        if self.state in ("locked", "acquire"):
            self._set_state("unverified", reason=reason)


def _std(values) -> float:
    v = list(values)
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
