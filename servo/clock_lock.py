"""The clock servo: locks the clock laser to the six Zeeman lines of 40Ca+ (DOMAIN §5).

Structure (DOMAIN §5, "servo structure that works"):

- The laser is locked alternately to the three pairs of lines; each line is probed twice,
  with the final hyper-Ramsey pulse at phase +pi/2 and -pi/2 (in alternating order from
  line to line). The error of line k is
  e_k = n+ - n- (thresholded outcomes, dark = 1), and its frequency correction is
  c_k = g e_k / (2 pi T C) Hz (the per-outcome correction of DOMAIN §5, g the gain).
- A frame probes all six lines; the probing order is reversed every frame, so that a linear
  drift enters every line symmetrically.
- The six corrections are split into orthogonal parts: the common mean (the laser loop,
  second order: frequency plus drift integrator), the first-order Zeeman pattern
  z_k = (g_D m_D - g_S m_S) muB/h (the field loop, also second order: B plus dB/dt), and the
  zero-mean residual (per-line offsets r_k, first order) that holds the quadrupole and tensor
  structure. B therefore follows from the splittings alone, free of the quadrupole shift.
- Between updates the common frequency and B advance with their integrated drift rates, so a
  linear cavity or field drift leaves no lag (a first-order loop would lag D t_u (1/g - 1/2)).
- Hyper-Ramsey repeats every 1/T, so the lock is declared only once fine Rabi probes (one
  maximum) have found every line on its central fringe, and while locked a Rabi probe of one
  line every `verify_every_frames` frames watches for a line that leaves it (decision 0008).

The pulses within a cycle are timed by the pulse sequencer, not by Python
(`ionclock.drivers.sequencer`): each cycle the servo hands it the probe frequency and the
sign of the final pulse's phase (on the light: the sequencer turns them into the AOM's RF,
half of both through the double pass, DOMAIN §5), starts it, and reads the counts after it.

The generator `run()` is a SimPy process: it runs unchanged on `simpy.Environment` (the twin)
and on `simpy.rt.RealtimeEnvironment` (the lab). It does no blocking waits and reads no
clock but `env.now`; instruments are the drivers handed in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ionclock.errors import IonclockError
from ionclock.physics.constants import ZEEMAN_LINES, ramsey_contrast
from ionclock.servo.clock_output import ClockOutput
from ionclock.servo.fringe_check import (
    CENTRED,
    FringeMonitor,
    FringeTest,
    predict_fringes,
    search_order,
)
from ionclock.servo.ion_presence import LOST, PRESENT, IonPresenceTest
from ionclock.servo.slip_guard import SlipGuard

TWO_PI = 2.0 * math.pi
_Z = tuple(line.zeeman_hz_per_t for line in ZEEMAN_LINES)
_ZZ = sum(z * z for z in _Z)
_W = tuple(line.quadrupole_weight for line in ZEEMAN_LINES)

#: `servo_cycles.line` of a fine Rabi probe of line k (fringe verification and search):
#: VERIFY_LINE + k, phase 0. Ion checks are line -1, hyper-Ramsey probes 0..5.
VERIFY_LINE = 10


@dataclass
class ServoParams:
    """Servo settings. Gains are dimensionless per frame (see module docstring)."""

    ramsey_time_s: float = 0.080
    cycle_time_s: float = 0.105
    contrast: float | None = None        # None: exp(-T / 2 tau_D)
    gain: float = 0.5                    # laser loop, per frame
    drift_gain: float = 0.05             # drift integrator, per frame
    b_gain: float = 0.5                  # field loop, per frame
    b_drift_gain: float = 0.05           # field-drift integrator, per frame
    residual_gain: float = 0.2           # per-line offsets, per frame
    b_initial_t: float = 37.197e-6
    nu_initial_hz: float = 0.0           # initial laser steering (Hz at the ion)
    acquire_frames: int = 10             # frames after (re)start before 'locked'
    ion_check_after_darks: int = 12      # consecutive dark cycles that trigger ion checks
    bright_counts: float = 40.0          # mean counts of a bright ion per detection gate
    dark_counts: float = 1.0             # mean background counts per detection gate
    ion_false_loss: float = 1e-6         # presence test: P(lost | ion there), per test
    ion_false_presence: float = 1e-9     # presence test: P(there | ion gone), per test
    slip_threshold_hz: float = 2.0       # splitting-ratio violation that means a slip
    slip_persist_frames: int = 8         # frames the violation must persist
    contrast_alarm_dark: float = 0.40    # dark fraction the contrast test is tuned to catch
    contrast_alarm_h: float = 14.0       # its decision interval (log-likelihood units)
    contrast_restore_probes: int = 240   # probes averaged before the contrast counts as back
    contrast_restore: float = 0.45       # ... with a dark fraction above this
    holdover_fit_s: float = 1800.0       # locked history fitted for the holdover drift model
    # A hold another role asked for without a fault (a measurement that needs the probe),
    # from a verified lock and no longer than this: the lock resumes where the drift model
    # has it, no re-acquisition (fringe monitoring goes on as before; s)
    resume_locked_max_s: float = 120.0
    field_step_t: float = 0.15e-9        # B jump reported as a field step
    field_step_window_s: float = 25.0    # ... compared over this long
    flag_margin_s: float = 30.0          # flagged before a fault's first sign
    # Fringe verification (decision 0008): fine Rabi probes, one line per slot
    verify_every_frames: int = 3         # locked frames per verification probe; 0: none
    verify_p_centred: float = 0.8        # design dark fraction of a probe on a centred line
    verify_p_off: float = 0.15           # ... on a line a fringe or more off
    verify_h: float = 16.0               # the monitor's CUSUM threshold (ARL0 > e^h probes)
    verify_false_alarm: float = 1e-6     # the acceptance test: P(off | centred)
    verify_miss: float = 1e-6            # ... P(centred | off)
    search_false_alarm: float = 1e-3     # the search's quick test per fringe tried
    search_fringes: int = 24             # the search covers +-this many fringes (300 Hz)

    def correction_hz_per_unit_error(self) -> float:
        """Hz per unit of e = n+ - n-, before the gain: 1 / (2 pi T C) (DOMAIN §5)."""
        c = ramsey_contrast(self.ramsey_time_s) if self.contrast is None else self.contrast
        return 1.0 / (TWO_PI * self.ramsey_time_s * c)


@dataclass
class Frame:
    """One completed frame, as recorded."""

    t: float
    index: int
    nu_hz: float
    drift_hz_s: float
    b_t: float
    offsets_hz: tuple
    locked: bool
    holdover: bool
    nu_abs_hz: float | None = None
    corrected_hz: float | None = None
    corrected_sigma_hz: float | None = None


class ClockServo:
    """The six-line clock lock as a SimPy process.

    Parameters
    ----------
    env: the SimPy environment (simulated or real time).
    sequencer: the pulse sequencer (`ionclock.drivers.sequencer.PulseSequencer`): takes each
        cycle's probe frequency (Hz at the ion) and final-pulse phase sign, runs the cycle.
    readout: the state readout (`read()` -> (dark, counts)), e.g. `ThresholdReadout` over the
        sequencer's counts.
    store: an `ionclock.storage.store.Store` or None. Cycle rows are appended to its
        ``buffer("servo_cycles")`` (none are kept when it has no such buffer); frames and
        events go through ``add``/``event``, which also commit the buffered rows when due.
    on_frame: called with each `Frame` after it is recorded (e.g. the twin's truth logger).
    ready: True when every unit the lock needs is connected and restored (None: always);
        an `instrument_offline` holdover ends only then, not while a reconnected coil
        supply still ramps back (the lines would be off and the contrast test would trip).
    """

    def __init__(self, env, sequencer, readout, store=None, params: ServoParams | None = None,
                 on_frame: Callable[[Frame], None] | None = None, source: str = "servo",
                 on_flag: Callable[[float, float], None] | None = None,
                 output: ClockOutput | None = None,
                 ready: Callable[[], bool] | None = None):
        self.env = env
        self.sequencer = sequencer
        self.readout = readout
        self.store = store
        self.p = params or ServoParams()
        self.on_frame = on_frame
        self.on_flag = on_flag
        self.ready = ready
        self.output = output
        self.source = source
        p = self.p
        self.k_hz = p.correction_hz_per_unit_error()
        self.nu_hz = p.nu_initial_hz      # common laser steering at t_ref (Hz at the ion)
        self.drift_hz_s = 0.0
        self.b_t = p.b_initial_t
        self.b_rate = 0.0                  # T/s
        self.t_ref = 0.0
        self.residual = [0.0] * 6          # zero-mean, orthogonal to the Zeeman pattern
        self.frame_index = 0
        self.state = "acquiring"
        self.cycles = 0
        self.locked_cycles = 0
        self._frames_since_acquire = 0
        self._dark_run = 0
        self._dark_since = 0.0               # when the current dark run began
        # Ion checks go on until this test decides (decision 0007): one thresholded check
        # reads a bright ion dark 9 % of the time at 12 bright / 2 dark counts.
        self._presence = IonPresenceTest(p.bright_counts, p.dark_counts, p.ion_false_loss,
                                         p.ion_false_presence)
        # Contrast test (CUSUM on the dark outcomes): with hyper-Ramsey p+ + p- = 1 at any
        # detuning, so the dark fraction is 1/2; stray light that empties D5/2 during the
        # probe (a shutter left open, DOMAIN §1) lowers it, and its light shift biases the
        # line. S grows by the log-likelihood ratio of "dark fraction p1" against 1/2.
        p1 = p.contrast_alarm_dark
        self._llr_dark = math.log(p1 / 0.5)
        self._llr_bright = math.log((1.0 - p1) / 0.5)
        self._cusum = 0.0
        self._cusum_since = 0.0            # when S last left zero: the fault's onset
        self._prepare = sequencer.prepare
        self._start = sequencer.start
        self._mid = sequencer.program.ramsey_mid_s   # the probe's instant within a cycle
        self._read = readout.read
        self._sample = output.sample if output is not None else None
        # per-cycle rows go straight into the store's buffer (None: not recorded)
        buffer = getattr(store, "buffer", None)
        self._cycle_rows = buffer("servo_cycles") if buffer is not None else None
        self.guard = SlipGuard(p.ramsey_time_s, p.slip_threshold_hz, p.slip_persist_frames)
        self.slips_corrected = 0
        self._history: deque = deque()      # (t, nu_hz, b_t, q0_hz) of locked frames
        self._violation_since: float | None = None
        self._b_track: deque = deque()       # (t, b) of recent locked frames
        self._b_jump_frames = 0
        self._last_field_step = -math.inf
        # Fringe verification and search (decision 0008)
        self._prepare_rabi = getattr(sequencer, "prepare_rabi", None)
        self._fringe_accept = FringeTest(p.verify_p_centred, p.verify_p_off,
                                         p.verify_false_alarm, p.verify_miss)
        self._fringe_quick = FringeTest(p.verify_p_centred, p.verify_p_off,
                                        p.search_false_alarm, p.search_false_alarm)
        self._monitor = FringeMonitor(p.verify_p_centred, p.verify_p_off, p.verify_h)
        self._order = (0, 1, 2, 3, 4, 5)     # the next frame's probing order
        self._frames_since_verify = 0
        self._verify_next = 0                # the line the next monitor probe goes to
        self.verify_cycles = 0               # Rabi cycles (monitor and search)
        self.fringe_errors = 0
        # Holds asked for by the apparatus's other roles (`request_hold`): reason -> detail
        self._external: dict[str, dict] = {}
        # called as f(reason, detail) when a holdover begins (a role that names what it
        # suspects, at the instant the servo holds: `roles.shutters`)
        self.hold_listeners: list = []
        self._holding = env.event()          # fires once the servo holds for them
        self._hold_reason: str | None = None

    # --- the model of where each line is ------------------------------------------------
    def line_offsets_hz(self, t: float) -> tuple[float, ...]:
        """Servo estimate of the six lines relative to the common frequency at time t (Hz)."""
        b = self.b_t + self.b_rate * (t - self.t_ref)
        return tuple(z * b + r for z, r in zip(_Z, self.residual))

    def line_hz(self, k: int, t: float) -> float:
        """Servo estimate of line k at time t (Hz at the ion; `_probe` inlines it)."""
        dt = t - self.t_ref
        return (self.nu_hz + self.drift_hz_s * dt + _Z[k] * (self.b_t + self.b_rate * dt)
                + self.residual[k])

    def common_hz(self, t: float) -> float:
        """Servo estimate of the six-line mean at time t (Hz at the ion)."""
        return self.nu_hz + self.drift_hz_s * (t - self.t_ref)

    # --- one clock cycle ---------------------------------------------------------------
    def _probe(self, k: int, phase_sign: int):
        """Run one cycle on line k with the final pulse at phase_sign * pi/2; the dark outcome."""
        env = self.env
        t = env.now
        dt = t - self.t_ref
        common = self.nu_hz + self.drift_hz_s * dt                 # common_hz(t), inlined
        probe_hz = common + _Z[k] * (self.b_t + self.b_rate * dt) + self.residual[k]
        # The DDS runs on its own frequency grid: record (and report) what it runs, so that
        # the output is the laser the ion saw, not the one asked for.
        applied = self._prepare(probe_hz, phase_sign)
        step = applied - probe_hz
        probe_hz = applied
        common += step
        self._start()
        yield env.timeout(self.p.cycle_time_s)
        dark, counts = self._read()
        if self._sample is not None:
            self._sample(t + self._mid, common)
        self.cycles += 1
        if self.state == "locked":
            self.locked_cycles += 1
        if self._cycle_rows is not None:
            self._cycle_rows.append((env.now, self.frame_index, k, phase_sign, probe_hz,
                                     counts, dark, self.state))
        return dark

    def _ion_check(self):
        """A cycle with the clock light off, in which an ion fluoresces; (dark, counts)."""
        self._prepare(self.common_hz(self.env.now), 1, False)
        self._start()
        yield self.env.timeout(self.p.cycle_time_s)
        dark, counts = self._read()
        self.cycles += 1
        if self._cycle_rows is not None:  # line -1: a check cycle without clock light
            self._cycle_rows.append((self.env.now, self.frame_index, -1, 0, 0.0, counts, dark,
                                     self.state))
        return dark, counts

    def _presence_step(self):
        """One ion check fed to the presence test: `LOST`, `PRESENT` or None (check again)."""
        dark, counts = yield from self._ion_check()
        if counts < 0:   # a readout without counts (the expectation twin): dark is exact
            return LOST if dark >= 0.5 else PRESENT
        return self._presence.update(counts)

    # --- fringe verification and search (decision 0008) ---------------------------------
    def _rabi(self, k: int, offset_hz: float = 0.0):
        """A fine Rabi probe of line k at its estimate + offset_hz; the dark outcome.

        Not part of the error signal: the loops hold meanwhile. Recorded as line
        VERIFY_LINE + k, phase 0.
        """
        env = self.env
        applied = self._prepare_rabi(self.line_hz(k, env.now) + offset_hz, "fine")
        self._start()
        yield env.timeout(self.p.cycle_time_s)
        dark, counts = self._read()
        self.cycles += 1
        self.verify_cycles += 1
        if self.state == "locked":   # a check of the running lock
            self.locked_cycles += 1
        if self._cycle_rows is not None:
            self._cycle_rows.append((env.now, self.frame_index, VERIFY_LINE + k, 0, applied,
                                     counts, dark, self.state))
        return dark >= 0.5

    def _test_at(self, k: int, offset_hz: float, test: FringeTest):
        """Run `test` on line k at its estimate + offset_hz until it decides: centred or not.

        A hyper-Ramsey frame first (`_frame(tracking=True)`): the lock keeps every line on
        the fringe where it sits (and follows the drifts) between the tests of a search.
        """
        yield from self._frame(tracking=True)
        test.reset()
        decision = None
        while decision is None:
            decision = test.update((yield from self._rabi(k, offset_hz)))
        return decision == CENTRED

    def _search_line(self, k: int, predicted: list[int]):
        """Find where line k has its centre: n (fringes from its estimate), or None.

        Tries n/T in `search_order` with the quick test (error rates `search_false_alarm`)
        and accepts the first n that the acceptance test confirms. A line the hyper-Ramsey
        lock holds sits on a fringe, n/T from its centre; one it does not hold (kicked far
        beyond its capture, e.g. by a field step of many nT) may sit anywhere, and a second
        pass tries the half fringes (n + 1/2)/T: the fine probe's FWHM is 9.1 Hz, so
        every point is within 3.2 Hz of a point tried.
        """
        fringe = 1.0 / self.p.ramsey_time_s
        for half in (0.0, 0.5):
            for n in search_order(predicted, self.p.search_fringes):
                x = n + half
                if (yield from self._test_at(k, x * fringe, self._fringe_quick)):
                    if (yield from self._test_at(k, x * fringe, self._fringe_accept)):
                        return x
        return None

    def _find_fringes(self, first=()):
        """Verify every line's fringe; search and step the lines found off.

        The lines in `first` go first. After each line found, the others are predicted
        from the common, Zeeman and quadrupole patterns of the moves found so far
        (`predict_fringes`), so a common jump or a field step is searched for once.
        Returns the fringes each line was moved by (whole, or half from the second pass),
        or None when some line was not found within +-`search_fringes` (the lines found
        before it keep their moves: they passed the acceptance test).
        """
        fringe = 1.0 / self.p.ramsey_time_s
        order = list(first) + [k for k in range(6) if k not in first]
        found: dict[int, float] = {}
        moved = [0.0] * 6
        for k in order:
            predicted = [v[k] for v in predict_fringes(found, fringe, _Z, _W)]
            n = yield from self._search_line(k, predicted)
            if n is None:
                self._event("fringe_not_found", line=k, fringes=_fringes(moved),
                            searched=self.p.search_fringes)
                return None
            if n:
                step = [0.0] * 6
                step[k] = n * fringe
                self._step(step)
                moved[k] += n
            found[k] = moved[k] * fringe
        return _fringes(moved)

    def _verify_probe(self):
        """One monitor probe of the running lock (the next line in turn); raises on alarm."""
        k = self._verify_next
        self._verify_next = (k + 1) % 6
        dark = yield from self._rabi(k)
        slot = self._monitor.update(k, dark, self.env.now)
        if slot is not None:
            lines = list(range(6)) if slot == self._monitor.pooled else [k]
            # the fault began after the statistic last sat at 0; one of that slot's probe
            # intervals more, as a probe just after the fault may still read dark
            interval = self.p.verify_every_frames * 12 * self.p.cycle_time_s * (
                1 if slot == self._monitor.pooled else 6)
            raise _Hold("fringe_error", {"lines": lines,
                                         "since": self._monitor.since(slot) - interval})

    def _use_direct(self, direct: bool) -> None:
        """Per-cycle calls through the instruments' direct handles, or through themselves.

        A resilient instrument (``ionclock.apparatus.resilience``) hands out the driver behind
        it with ``direct()``; the servo's per-cycle settings are re-made every cycle, so they
        need no recording, and after a failure the servo retries through the wrapper itself (the
        sequencer then reloads everything: a reconnected unit may have been power cycled).
        """
        for part in (self.sequencer, self.readout):
            use = getattr(part, "use_direct", None)
            if use is not None:
                use(direct)

    def _event(self, kind: str, **detail) -> None:
        if self.store is not None:
            self.store.event(self.env.now, kind, self.source, **detail)

    def _set_state(self, state: str, **detail) -> None:
        if state != self.state:
            self.state = state
            self._event(state, **detail)

    # --- the frame update ----------------------------------------------------------------
    def _update(self, corrections: list[float], t_frame: float,
                learn_drift: bool = True) -> None:
        """Apply one frame of corrections (Hz, already gained by g) to the three loops.

        `learn_drift` False (acquiring, before the search): the drift integrators hold; the
        slew onto a fringe is no drift, and a rate learnt from it would carry the lines off
        (decision 0008).
        """
        p = self.p
        t = self.env.now
        # Re-reference the integrators to now, then correct.
        self.nu_hz = self.common_hz(t)
        self.b_t = self.b_t + self.b_rate * (t - self.t_ref)
        self.t_ref = t
        common, db, res = _decompose(corrections)
        self.nu_hz += common
        self.b_t += p.b_gain / p.gain * db
        if learn_drift:
            self.drift_hz_s += p.drift_gain / p.gain * common / t_frame
            self.b_rate += p.b_drift_gain / p.gain * db / t_frame
        g_r = p.residual_gain / p.gain
        self.residual = [r + g_r * x for r, x in zip(self.residual, res)]

    def _step(self, corrections: list[float]) -> None:
        """Move the line estimates by `corrections` (Hz) at once, leaving the drift rates."""
        common, db, res = _decompose(corrections)
        self.nu_hz += common
        self.b_t += db
        self.residual = [r + x for r, x in zip(self.residual, res)]

    def _guard_slips(self) -> None:
        """Cross-check the splittings' ratios; undo a fringe slip (DOMAIN §5)."""
        t = self.env.now
        # The splittings cannot see a slip common to all six lines (n and n + 1 look alike).
        # The laser is continuous across a field step, so the guard also asks the corrected
        # lines to sit on the drift model fitted to the frames before the violation began.
        since = self._violation_since if self._violation_since is not None else t
        ref = quad = None
        b_jump = 0.0
        if self.guard.last_violation_hz >= self.guard.threshold_hz:
            before = since - self.p.flag_margin_s
            ref = self._extrapolate_common(before)
            quads = [h[3] for h in self._history if h[0] < before]
            quad = sum(quads) / len(quads) if len(quads) >= 20 else None
            b_fit = self._linear_fit(2, before)
            if b_fit is not None:
                b_jump = self.b_t + self.b_rate * (t - self.t_ref) - b_fit[0]
        n = self.guard.check(self.line_offsets_hz(t),
                             self.common_hz(t), ref, quad, b_jump)
        if self.guard.last_violation_hz < self.guard.threshold_hz:
            self._violation_since = None
        elif self._violation_since is None:
            self._violation_since = t
        if n is None:
            return
        fringe = self.guard.fringe_hz
        violation = self.guard.last_violation_hz
        self._step([-int(x) * fringe for x in n])
        self.slips_corrected += 1
        since = (self._violation_since or t) - self.p.flag_margin_s
        self._violation_since = None
        self._event("slip_corrected", fringes=[int(x) for x in n], violation_hz=violation,
                    b_t=self.b_t, flagged_from=since)
        self._flag(since, t)    # also drops the flagged frames from the fitted history

    def _watch_field(self) -> None:
        """Report a sudden field step: B now against B a window ago."""
        if self.state != "locked":
            self._b_track.clear()
            return
        t = self.env.now
        b = self.b_t + self.b_rate * (t - self.t_ref)
        track = self._b_track
        track.append((t, b))
        while track and track[0][0] < t - self.p.field_step_window_s:
            track.popleft()
        if len(track) < 10 or t - track[0][0] < 0.5 * self.p.field_step_window_s:
            self._b_jump_frames = 0
            return
        # five-frame means at both ends of the window (a frame's B carries ~40 pT of
        # projection noise); not corrected by the integrator's rate: a step kicks it, and a
        # real drift of even 1 nT/h moves B by < 0.01 nT over the window
        jump = sum(track[-i][1] - track[i - 1][1] for i in range(1, 6)) / 5
        if abs(jump) > self.p.field_step_t:
            self._b_jump_frames += 1
        else:
            self._b_jump_frames = 0
        if self._b_jump_frames == 3 and t - self._last_field_step > 2 * self.p.field_step_window_s:
            self._last_field_step = t
            self._event("field_step", delta_t=jump, b_t=b)

    def _flag(self, t0: float, t1: float) -> None:
        """Flag already-recorded frames in [t0, t1] as holdover (biased by a fault)."""
        flag = getattr(self.store, "flag_frames", None)
        if flag is not None:
            flag(t0, t1)
        if self.on_flag is not None:
            self.on_flag(t0, t1)
        self.locked_cycles -= sum(1 for t, *_ in self._history if t0 <= t <= t1) * 12
        while self._history and self._history[-1][0] >= t0:
            self._history.pop()

    def _linear_fit(self, idx: int, before: float = math.inf):
        """Least-squares line through history column `idx` (frames before `before`).

        Returns (value at now, slope per s), or None with fewer than 20 frames.
        """
        pts = [(h[0], h[idx]) for h in self._history if h[0] < before]
        n = len(pts)
        if n < 20:
            return None
        t = self.env.now
        mt = sum(p[0] - t for p in pts) / n
        my = sum(p[1] for p in pts) / n
        var = sum((p[0] - t - mt) ** 2 for p in pts)
        if var <= 0:
            return None
        slope = sum((p[0] - t - mt) * (p[1] - my) for p in pts) / var
        return my - slope * mt, slope

    def _extrapolate_common(self, before: float) -> float | None:
        """The six-line mean now, from the locked frames before `before` (Hz), or None."""
        fit = self._linear_fit(1, before)
        return None if fit is None else fit[0]

    def _fit_drift_model(self, keep_levels: bool = False) -> None:
        """Re-base the laser and field models on a linear fit of the recent locked frames.

        The integrators' instantaneous drift rates carry the projection noise of the last
        few frames; a holdover of tens of minutes needs the rate averaged over much longer.
        `keep_levels`: keep the present laser and field estimates, take only the rates (after
        a fringe error the estimates are right but for whole fringes, decision 0008).
        """
        nu, b = self._linear_fit(1), self._linear_fit(2)
        if nu is None or b is None:
            return
        t = self.env.now
        if keep_levels:
            nu = (self.common_hz(t), nu[1])
            b = (self.b_t + self.b_rate * (t - self.t_ref), b[1])
        (self.nu_hz, self.drift_hz_s), (self.b_t, self.b_rate) = nu, b
        self.t_ref = t

    def _record_frame(self) -> Frame:
        t = self.env.now
        nu = self.common_hz(t)
        extra = self.output.evaluate() if self.output is not None else (None, None, None)
        frame = Frame(t, self.frame_index, nu, self.drift_hz_s,
                      self.b_t + self.b_rate * (t - self.t_ref),
                      self.line_offsets_hz(t),
                      self.state == "locked", self.state == "holdover", *extra)
        if self.store is not None:
            self.store.add("lock_frames", (t, frame.index, frame.nu_hz, frame.drift_hz_s,
                                           frame.b_t, *frame.offsets_hz, int(frame.locked),
                                           int(frame.holdover), *extra))
        if frame.locked:
            h = self._history
            h.append((t, frame.nu_hz, frame.b_t, self.guard.quadrupole_hz(frame.offsets_hz)))
            while h and h[0][0] < t - self.p.holdover_fit_s:
                h.popleft()
        if self.on_frame is not None:
            self.on_frame(frame)
        return frame

    # --- holds asked for from outside: the apparatus's other roles ---------------------------
    def request_hold(self, reason: str, since: float | None = None, **detail):
        """Ask the servo to hold over for `reason`; returns an event fired once it holds.

        Another role of the apparatus asks (a laser off its wavemeter band, a shutter found
        open, a micromotion measurement that needs the probe). From the next frame boundary
        the servo holds the laser on its drift model, records holdover frames and leaves the
        sequencer alone until every such hold is released (`release_hold`); then it
        re-acquires. Frames recorded since `since` (s, the run's clock), when given, are
        flagged: they were taken while the fault may already have biased them. The event
        returned fires when the servo no longer uses the sequencer (the caller may use it).
        """
        if not self._external:
            self._holding = self.env.event()
        self._external[reason] = dict(detail)
        if since is not None:   # again when the hold begins: the frame under way then too
            self._external[reason]["since"] = since
            self._flag(since, self.env.now)
        return self._holding

    def release_hold(self, reason: str) -> None:
        """End the hold `request_hold(reason)` asked for (no effect if there is none)."""
        self._external.pop(reason, None)

    @property
    def hold_reason(self) -> str | None:
        """Why the servo holds over now; None while it does not.

        ``contrast_lost``, ``ion_lost``, ``instrument_offline``, ``fringe_error`` or a role's
        reason (`request_hold`).
        """
        return self._hold_reason if self.state == "holdover" else None

    @property
    def held_for(self) -> tuple[str, ...]:
        """The reasons of the holds other roles ask for now."""
        return tuple(self._external)

    def _wait_external(self):
        """Hold without probing while other roles ask for it; holdover frames go on."""
        if not self._holding.triggered:
            self._holding.succeed()
        last_frame = self.env.now
        while self._external:
            yield self.env.timeout(self.p.cycle_time_s)
            if self.env.now - last_frame >= 12 * self.p.cycle_time_s - 1e-9:
                last_frame = self.env.now
                self._record_frame()
                self.frame_index += 1

    # --- the process ----------------------------------------------------------------------
    def run(self):
        """The servo's SimPy process (a generator); runs until interrupted.

        Anything that stops the lock (the ion lost, the contrast gone, an instrument that
        stops answering) puts the servo in holdover: the laser follows its drift model, the
        frames are flagged, and the lock is re-acquired once the cause has cleared.
        """
        p = self.p
        self._event("servo_started", gain=p.gain, drift_gain=p.drift_gain,
                    b_gain=p.b_gain, b_drift_gain=p.b_drift_gain,
                    residual_gain=p.residual_gain)
        self._use_direct(True)
        hold = None
        while True:
            try:
                if hold is None:
                    yield from self._frame()
                else:
                    reason, detail, hold = hold.reason, hold.detail, None
                    yield from self._holdover(reason, detail)
            except _Hold as raised:   # also from within a holdover (a search's frames)
                hold = raised
            except (IonclockError, OSError) as err:   # an instrument failed
                self._use_direct(False)   # retry through the wrappers: they reconnect
                hold = _Hold("instrument_offline", {"error": f"{type(err).__name__}: {err}"})

    def _frame(self, tracking: bool = False):
        """Probe the six lines once (12 cycles), then update the loops.

        `tracking`: a frame within a fringe search, which keeps the lines where they are
        locked meanwhile; it does not end an acquisition, guard slips or verify.
        """
        p = self.p
        if self._external and not tracking:   # another role asks for a hold (`request_hold`)
            reason, detail = next(iter(self._external.items()))
            raise _Hold(reason, dict(detail))
        if (not tracking and self.state == "acquiring"
                and self._frames_since_acquire >= p.acquire_frames):
            yield from self._acquire()    # the lines have settled on fringes: verify them
        order = self._order
        self._order = order[::-1]   # reverse the probing order every frame (DOMAIN §5)
        gain_k = p.gain * self.k_hz
        t0 = self.env.now
        corrections = [0.0] * 6
        first = +1
        cusum = self._cusum
        # (a search's tracking frames probe lines it has not found yet: no contrast data)
        ld, lb = (0.0, 0.0) if tracking else (self._llr_dark, self._llr_bright)
        for k in order:
            # Phase order alternates line by line (+- then -+): the phase register then
            # changes every other cycle, and each line's pair is symmetric in time.
            t_line = self.env.now
            d_first = yield from self._probe(k, first)
            d_second = yield from self._probe(k, -first)
            d_plus, d_minus = (d_first, d_second) if first > 0 else (d_second, d_first)
            first = -first
            # e = n+ - n- ; c = g e / (2 pi T C)   (DOMAIN §5)
            corrections[k] = gain_k * (d_plus - d_minus)
            dd = d_first + d_second
            cusum += dd * ld + (2.0 - dd) * lb
            if cusum <= 0.0:
                cusum = 0.0
                self._cusum_since = t_line
            if d_second < 0.5:
                self._dark_run = 0
            else:
                if not self._dark_run:   # a dark run begins: where ion loss would date from
                    self._dark_since = t_line
                self._dark_run += 2 if d_first >= 0.5 else 1
            if self._dark_run >= p.ion_check_after_darks:
                # a long dark run: ion checks until the presence test decides
                self._dark_run = 0
                self._presence.reset()
                decision = None
                checks = 0
                while decision is None:
                    decision = yield from self._presence_step()
                    checks += 1
                if decision == LOST:
                    self._cusum = cusum
                    raise _Hold("ion_lost", {"checks": checks, "since": self._dark_since})
        self._cusum = cusum
        if not tracking and cusum > p.contrast_alarm_h:
            # The D5/2 population is being emptied during the probe (stray 854 nm light: a
            # shutter stuck open) and the line is light-shifted: hold, and flag back to the
            # test's estimate of the onset.
            raise _Hold("contrast_lost", {"since": self._cusum_since})
        self._update(corrections, self.env.now - t0,
                     learn_drift=tracking or self.state != "acquiring")
        self._frames_since_acquire += 1
        self._record_frame()
        self.frame_index += 1
        if tracking:
            return
        # after recording: a slip found now flags this frame too (its probes were off)
        self._guard_slips()
        self._watch_field()
        if self.state == "locked" and p.verify_every_frames and self._prepare_rabi:
            self._frames_since_verify += 1
            if self._frames_since_verify >= p.verify_every_frames:
                self._frames_since_verify = 0
                yield from self._verify_probe()

    def _acquire(self):
        """End of acquisition: the hyper-Ramsey lock has settled on some fringe of each line.

        Verify every line with fine Rabi probes (one maximum, on the line) and step the
        lines found off to their centres; 'locked' only once all six pass where they sit.
        Without Rabi cycles (a sequencer that has none) the lock is declared unverified.
        """
        p = self.p
        if not (p.verify_every_frames and self._prepare_rabi):
            self._set_state("locked", b_t=self.b_t, nu_hz=self.nu_hz, verified=False)
            return
        moved = yield from self._find_fringes()
        if moved is not None and not any(moved):
            self._monitor.reset(self.env.now)
            self._frames_since_verify = 0
            self._set_state("locked", b_t=self.b_t, nu_hz=self.nu_hz, verified=True)
            return
        # lines were stepped (settle the hyper-Ramsey lock there and verify again) or some
        # line was not found (acquire afresh)
        self._event("fringe_search", fringes=moved)
        self._frames_since_acquire = 0

    def _holdover(self, reason: str, detail: dict | None = None):
        """Hold the laser on its drift model and flag the data until `reason` clears."""
        detail = detail or {}
        was_locked, t_hold = self.state == "locked", self.env.now
        # a role's hold with no fault behind it (no `since`), from a verified lock
        clean = reason not in _CLEARED and "since" not in detail and was_locked
        if reason == "contrast_lost":
            # flag what the fault may have biased, from the test's onset estimate on
            self._flag(detail["since"] - self.p.flag_margin_s, self.env.now)
        elif reason == "ion_lost":
            # the frame whose probes went dark for good is not clock data: flag back to the
            # start of the dark run that led to the ion checks (and one frame before it)
            self._flag(detail["since"] - 12 * self.p.cycle_time_s, self.env.now)
        elif reason not in _CLEARED and "since" in detail:
            # another role's hold: its fault began at `since` (`request_hold`)
            self._flag(detail["since"], self.env.now)
        elif reason == "fringe_error":
            # lines off a whole fringe since about `since` (the monitor's onset estimate)
            self.fringe_errors += 1
            self._flag(detail["since"] - self.p.flag_margin_s, self.env.now)
        # after a fringe error the estimates are kept and only the drift rates (kicked by the
        # slew onto the wrong fringe) come from the locked frames before the fault
        self._fit_drift_model(keep_levels=reason == "fringe_error" or clean)
        self._hold_reason = reason
        self._set_state("holdover", reason=reason, **detail)
        self._event(reason, **detail)
        for listener in self.hold_listeners:
            listener(reason, detail)
        last_frame = self.env.now
        probes: deque = deque(maxlen=self.p.contrast_restore_probes)   # the latest n
        k = 0
        self._presence.reset()
        cleared_detail: dict = {}
        while True:
            if self._external:   # another role asks for a hold: the sequencer is theirs now
                yield from self._wait_external()
                last_frame = self.env.now
            if reason not in _CLEARED:   # held for the other roles alone: released now
                break
            try:
                if reason == "fringe_error":
                    # search the alarmed lines' fringes (the others are verified after
                    # them); without a result keep holding and search again
                    moved = yield from self._find_fringes(detail["lines"])
                    cleared = moved is not None
                    if cleared:
                        cleared_detail = {"fringes": moved}
                elif reason == "ion_lost":
                    # the presence test until it declares an ion (a burst of background
                    # counts is not one); a test that ends in "lost" starts over
                    cleared = (yield from self._presence_step()) == PRESENT
                elif reason == "contrast_lost":
                    # keep probing the lines (no corrections) and watch the dark fraction
                    d = yield from self._probe(k % 6, 1 if k % 2 == 0 else -1)
                    k += 1
                    probes.append(d)
                    n = probes.maxlen
                    cleared = len(probes) == n and sum(probes) / n > self.p.contrast_restore
                else:   # instrument_offline: one ordinary cycle that goes through, and
                    # every unit the lock needs back and restored (a coil supply on its ramp)
                    d = yield from self._probe(0, 1)
                    cleared = self.ready is None or self.ready()
            except (IonclockError, OSError):
                cleared = False
                yield self.env.timeout(self.p.cycle_time_s)
            if cleared:
                break
            if self.env.now - last_frame >= 12 * self.p.cycle_time_s:
                last_frame = self.env.now
                self._record_frame()
                self.frame_index += 1
        if reason in _CLEARED:
            self._event(_CLEARED[reason], **cleared_detail)
        else:
            self._event("hold_released", reason=reason)
        if reason == "instrument_offline":
            self._use_direct(True)    # the driver objects may be new ones now
        self._dark_run = 0
        self._cusum = 0.0
        self._cusum_since = self.env.now
        held_s = self.env.now - t_hold
        if clean and held_s <= self.p.resume_locked_max_s:
            # seconds on the drift model move the lines by far less than a fringe (DOMAIN
            # §5: 12.5 Hz; the field a few pT of the 0.22 nT half fringe): locked again
            self._set_state("locked", reason="resumed", held_s=held_s, b_t=self.b_t,
                            nu_hz=self.nu_hz)
            return
        self._frames_since_acquire = 0
        self._set_state("acquiring", reason="reacquire")


def _fringes(moved: list[float]) -> list:
    """Fringe moves for an event: whole numbers as int, half fringes as they are."""
    return [int(m) if m == int(m) else m for m in moved]


def _decompose(corrections: list[float]) -> tuple[float, float, list[float]]:
    """Split six per-line corrections (Hz) into orthogonal parts (decision 0001).

    Returns the common mean (Hz), the field change along the first-order Zeeman pattern (T),
    and the zero-mean residual orthogonal to both (Hz per line).
    """
    common = sum(corrections) / 6.0
    db = sum(z * c for z, c in zip(_Z, corrections)) / _ZZ
    return common, db, [c - common - z * db for c, z in zip(corrections, _Z)]


_CLEARED = {"ion_lost": "ion_reloaded", "contrast_lost": "contrast_restored",
            "instrument_offline": "instrument_online", "fringe_error": "fringe_restored"}


class _Hold(Exception):
    """Raised inside a frame: stop locking and hold over for `reason`."""

    def __init__(self, reason: str, detail: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or {}
