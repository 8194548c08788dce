"""The simulated 40Ca+ clock apparatus: one SimPy environment holding the physics (STYLE §4).

The world knows its own truth (true line centres, true B, the laser's true frequency) and
exposes it so tests can grade the servo. Instruments are thin protocol front ends on it:
the DDS twin calls `dds_changed`, the coil-supply twin `coil_changed`, the pulse generator's
twin `start_cycle`; the DDS and the photon counter twins hang on the TTL lines of the
sequencer (`wire_ttl`) and the counter asks `photon_counts` for each gate.

The cycle at pulse level (issue: the twin follows the instruments): the sequencer hardware
plays the TTL pattern (`load_pattern`, `ionclock.drivers.sequencer.PulseProgram.edges`) once
per start. Each DDS step edge records the DDS output in force (frequency, phase, amplitude)
as one light segment; at the end of the light the excitation is computed from those
segments: the light's frequency and phase are twice the RF's through the double-pass AOM
(DOMAIN §5), the pulses' phases are whatever the DDS ran (a wrong phase gives no error
signal), the shutters' states during the probe add stray light. The outcome is drawn then,
and the photons of each counter gate come from its overlap with the detection window. TTL
edges are delivered lazily, in time order, before any twin answers or acts (`settle`), so
nothing is observable before its time: a count asked for too early is not there yet.

Models (DOMAIN §1, §5):
- Clock laser: a ULE-cavity-stabilised laser, nu_cav(t) = nu0 - 2 f_AOM,centre + delta0
  + drift * t + flicker(t), shifted by a double-pass AOM: nu_L = nu_cav + 2 f_AOM. The
  flicker floor is a sum of Ornstein-Uhlenbeck processes with log-spaced correlation times
  (a standard 1/f synthesis), scaled so that its Allan deviation is the configured floor.
- Field: B(t) = calibration * I_coil + B_residual + drift * t + random walk + steps,
  evaluated at the probe time, plus white pT noise per probe.
- Ion: six Zeeman lines (ionclock.physics.constants.ZEEMAN_LINES) with the electric-quadrupole shift
  Q0 * weight(m_D), plus a common shift (systematics, Hz). The laser addresses the nearest line.
- Interrogation: hyper-Ramsey (sim_instruments.hyper_ramsey), exact or the fast path; D5/2
  decay during the free evolution lowers the contrast to C = exp(-T / 2 tau)
  (p = 1/2 + C (p_coherent - 1/2)); one Bernoulli outcome per probe (projection noise).
- Detection: Poisson counts, bright (S) ~40 and dark (D) ~1 in 2 ms; an ion in D5/2 may decay
  during the detection window and scatter for the rest of it.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

import numpy as np
import simpy

from ionclock.physics.constants import NU0_CA, TAU_D52, ZEEMAN_LINES, ramsey_contrast
from ionclock.sim_instruments.hyper_ramsey import (
    FastHyperRamsey,
    excitation_exact,
    excitation_segments,
)

#: The clock laser's flicker stream: ``numpy.random.default_rng([seed, FLICKER_STREAM(, k)])``.
FLICKER_STREAM = 308


@dataclass
class TwinParams:
    """Physical parameters of the twin (SI units)."""

    nu0_hz: float = NU0_CA
    aom_center_hz: float = 80e6          # AOM centre frequency (double pass)
    aom_channel: int = 0                 # DDS channel driving the clock AOM
    laser_offset_hz: float = 0.0         # laser - line mean at t = 0 with the AOM at centre
    cavity_drift_hz_s: float = 0.05      # linear ULE drift
    flicker_floor: float = 1e-15         # fractional flicker floor of the laser
    coil_channel: int = 2                # supply channel driving the quantisation coils
    coil_t_per_a: float = 50e-6          # coil calibration, T/A
    b_residual_t: float = 0.0            # field with the coils off (shielded: ~0)
    b_drift_t_s: float = 0.5e-9 / 3600   # linear field drift
    b_walk_t_sqrt_s: float = 0.0         # random-walk field noise, T/sqrt(s)
    b_noise_t: float = 1e-12             # white field noise per probe, T rms
    q0_hz: float = 0.0                   # electric-quadrupole amplitude (line weights +-)
    common_shift_hz: float = 0.0         # systematic shift common to all six lines
    pi_time_s: float = 0.004
    ramsey_time_s: float = 0.080
    light_shift_hz: float = 0.0          # the line's light shift during the pulses (full power);
                                         # a step of the laser by as much cancels it
    aom_passes: int = 2                  # double-pass clock AOM: light = 2 x RF (DOMAIN §5)
    exact: bool = False                  # exact propagator on every probe (slow)
    detection_time_s: float = 0.002
    bright_counts: float = 40.0
    dark_counts: float = 1.0
    tau_d_s: float = TAU_D52
    # --- scenario: apparatus physics beyond the ion and its fault injection -------------
    cryostat: bool = True                # LN2 cryostat with refills (sim_instruments.cryostat)
    refill_interval_s: float = 2 * 86400.0
    apply_shifts: bool = True            # the true systematic shifts move the ion (issue 6)
    shift_update_s: float = 60.0         # how often the slowly varying shifts are re-evaluated
    nbar: tuple = (0.034, 0.043, 0.113)  # mean occupations during the probe (seed, Table I)
    pressure_pa: float = 3e-9
    pressure_wander: float = 0.1         # the chamber's slow log-normal wander around it (rms
                                         # fraction): what the gauges read (sim_instruments.vacuum)
    micromotion_ratios: tuple = (0.0, 0.0, 0.0)
    ion_loss_per_s: float = 0.0          # random ion loss rate (1 per 1-4 weeks in the lab)
    reload_s: float = 1800.0             # time to load and cool a new ion
    b_steps_per_s: float = 0.0           # random field steps
    b_step_t: float = 0.3e-9             # their size (sign random)
    quench_light_shift_hz: float = 2.0   # stray 854 nm light with its shutter stuck open:
    quench_tau_s: float = 0.02           # light shift on the clock line and D5/2 quench time
    quench_shutters: tuple = ("shutter_854",)   # SC10 twins (by name) blocking that light
    events: tuple = ()                   # scheduled (at_s, kind, value, duration_s)
    # --- the characterisation probes (decision 0804) -----------------------------------------
    lock_offset_channel: int = 2         # DDS channel of the laser's lock-offset EOM
    lock_offset_center_hz: float = 50e6  # its frequency with the laser at its clock setting
    lock_offset_sign: int = 1            # the laser moves by +1 (or -1) x the EOM's step
    compensation_v0: tuple = (2.80, 2.55, 3.20)  # the electrodes' optimum before any refill (V)
    compensation_refill_shift_v: float = 0.3     # rms move of each optimum at a refill (V)


class _Flicker:
    """Flicker (1/f) frequency noise as a sum of OU processes (log-spaced correlation times).

    The sum is generated on a fixed time grid of step `h` in fixed blocks of `block` points
    (each component an exact first-order recursion x[n+1] = a x[n] + sqrt(1 - a^2) sigma w[n],
    `_ar1`) and read piecewise constant, so a probe costs an index, not a random draw.

    Its values are a function of the seed and the time alone (decision 0307): the initial
    state comes from the stream ``numpy.random.default_rng([seed, FLICKER_STREAM])`` and
    block k's innovations from ``[seed, FLICKER_STREAM, k]``, block after block from the
    start, never from a generator anyone else draws from. So whoever asks first, how often
    and at what times (the ion at each probe, a counter on the comb beat, a wavemeter), every
    caller sees the same laser; a block already passed is drawn again from its saved start
    state when asked for.
    """

    # Allan deviation of the sum with unit component sigma, flat within 10 % over
    # tau = 10 .. 1e4 s (measured; tests/test_world.py checks the scaled floor).
    UNIT_ADEV = 1.07

    def __init__(self, floor_hz: float, seed: int, h: float = 0.05,
                 block: int = 8192, taus=tuple(10.0 ** np.arange(-0.5, 5.01, 0.5))):
        self.taus = np.asarray(taus)
        self.sigma = floor_hz / self.UNIT_ADEV if floor_hz > 0 else 0.0
        self.h = h
        self.block = block
        self.seed = int(seed)
        self.a = np.exp(-h / self.taus)
        self.b = self.sigma * np.sqrt(1.0 - self.a ** 2)
        x0 = np.random.default_rng([self.seed, FLICKER_STREAM]).standard_normal(len(self.taus))
        self._states = [x0 * self.sigma]   # the components' state before block k
        self.start = 0           # grid index of values[0]
        self.values: list[float] = []
        self._kept: dict[int, list[float]] = {}   # the two latest blocks read

    def _draw(self, k: int) -> np.ndarray:
        """Block k's components (rows), from the state before it and its own stream."""
        w = np.random.default_rng([self.seed, FLICKER_STREAM, k]).standard_normal(
            (len(self.taus), self.block)) * self.b[:, None]
        return _ar1(w, self.a, self._states[k])

    def _load(self, k: int) -> None:
        """Make block k the one read (drawn once in order from the start, then kept)."""
        values = self._kept.get(k)
        if values is None:
            while len(self._states) <= k:   # every block before k, in order
                out = self._draw(len(self._states) - 1)
                self._states.append(out[:, -1].copy())
            out = self._draw(k)
            if len(self._states) == k + 1:   # the state after k: the next block's start
                self._states.append(out[:, -1].copy())
            values = out.sum(axis=0).tolist()
            if len(self._kept) >= 2:
                self._kept.pop(min(self._kept))
            self._kept[k] = values
        self.values = values
        self.start = k * self.block

    def value(self, t: float) -> float:
        """The flicker at `t` (Hz): the grid point at or before it."""
        if not self.sigma:
            return 0.0
        i = int(t / self.h)
        j = i - self.start
        if j >= len(self.values) or j < 0:
            self._load(i // self.block)
            j = i - self.start
        return self.values[j]

    def mean(self, t0: float, t1: float) -> float:
        """The mean flicker over [t0, t1] (Hz): the grid's piecewise-constant values, exactly."""
        if not self.sigma:
            return 0.0
        if t1 <= t0:
            return self.value(t0)
        h = self.h
        i0, i1 = int(t0 / h), int(t1 / h)
        total = 0.0
        for i in range(i0, i1 + 1):
            lo, hi = max(t0, i * h), min(t1, (i + 1) * h)
            if hi > lo:
                total += (hi - lo) * self.value(i * h + 0.5 * h)
        return total / (t1 - t0)


def _ar1(w: np.ndarray, a: np.ndarray, x0: np.ndarray, chunk: int = 64) -> np.ndarray:
    """x[k, n] = a[k] x[k, n-1] + w[k, n] with x[k, -1] = x0[k], for every row k at once.

    Within a chunk x[j] = a^(j+1) x_prev + sum_{m<=j} a^(j-m) w[m]: one batched matrix
    product for all chunks, then a short sequential carry from chunk to chunk
    (len(w[k]) must be a multiple of `chunk`).
    """
    rows, n = w.shape
    W = w.reshape(rows, n // chunk, chunk)
    j = np.arange(chunk)
    lag = j[:, None] - j[None, :]
    powers = np.where(lag >= 0, a[:, None, None] ** np.clip(lag, 0, None), 0.0)
    partial = np.matmul(W, powers.transpose(0, 2, 1))          # (rows, chunks, chunk)
    carry = a[:, None] ** (j + 1)                               # (rows, chunk)
    x = np.array(x0, dtype=float)
    for c in range(W.shape[1]):
        partial[:, c] += carry * x[:, None]
        x = partial[:, c, -1]
    return partial.reshape(rows, n)


@dataclass
class Truth:
    """Accumulated truth since the last `take`: probes, their detunings and the field."""

    n: int = 0
    sum_detuning_hz: float = 0.0
    sum_b_t: float = 0.0
    sum_stray_hz: float = 0.0      # light shift of stray light on the ion (a stuck shutter)
    per_line: list = field(default_factory=lambda: [0.0] * 6)
    per_line_n: list = field(default_factory=lambda: [0] * 6)


class ClockWorld:
    """The apparatus' physics on one `simpy.Environment`."""

    def __init__(self, env: simpy.Environment | None = None, params: TwinParams | None = None,
                 seed: int = 0):
        self.env = env if env is not None else simpy.Environment()
        self.p = params or TwinParams()
        self._aom_channel = self.p.aom_channel
        self.rng = random.Random(seed)
        self.nprng = np.random.default_rng(seed)
        p = self.p
        self.aom_hz = p.aom_center_hz
        self._cavity_t = math.nan
        self._normals: list[float] = []
        self._cavity_hz = 0.0
        self.aom_phase_turns = 0.0
        self.aom_amplitude = 1.0
        self.coil_current_a = 0.0
        self.ion_present = True
        self.b_steps_t = 0.0
        self._laser_steps_hz = 0.0   # sudden steps of the clock laser (mode hop, lock glitch)
        self._b_walk = 0.0
        self._b_walk_t = 0.0
        self._flicker = _Flicker(p.flicker_floor * p.nu0_hz, seed)
        self._fast = FastHyperRamsey(p.pi_time_s, p.ramsey_time_s)
        self.contrast = ramsey_contrast(p.ramsey_time_s, p.tau_d_s)
        self._z = [line.zeeman_hz_per_t for line in ZEEMAN_LINES]
        self._qw = [line.quadrupole_weight for line in ZEEMAN_LINES]
        self._z_order = sorted(range(6), key=lambda i: self._z[i])
        zs = [self._z[i] for i in self._z_order]
        self._z_mid = [0.5 * (lo + hi) for lo, hi in zip(zs, zs[1:])]
        self._bright = self._batch(p.bright_counts)
        self._dark = self._batch(p.dark_counts)
        self._decay_p = 1.0 - math.exp(-p.detection_time_s / p.tau_d_s)
        self.truth = Truth()
        self.last_detuning_hz = 0.0
        self.stray_open = 0.0                # how far the 854 nm shutter is stuck open (0..1)
        self.seed = seed
        # the 397/866/854 nm lasers (sim_instruments/lasers.py), made when first asked for or
        # moved; while every one is at its setpoint the ion sees nothing of them
        self._lasers = None
        self.fluorescence = 1.0              # bright counts relative to all lasers on setpoint
        self.left_shelved = 0.0              # chance the 854 nm quench leaves D5/2 populated
        self._shelved_t = -math.inf          # when the ion was last found shelved
        # shutter twins (an SC10 per laser, `add_shutter`) whose blade lets the 854 nm quench
        # light through: with any, the stray light of a probe comes from their blades
        self._quench_shutters: list = []
        self._trap_rf = None                 # the trap RF physics, made when first asked for
        # --- characterisation shots (decision 0804): the physics made when first asked for
        self._characterisation = None
        self.lock_offset_hz = 0.0            # the laser's lock-offset step from its centre
        self._probe_beam = 0                 # the beam whose switch fired this cycle (0: none)
        self._beam_on_t = -math.inf          # when its switch opened, and when the switches
        self._beam_off_t = -math.inf         # closed (the shot's pulse, `_shot_end`)
        self._sbc_t = -math.inf              # this cycle's sideband cooling, cooling end
        self._cool_end_t = -math.inf
        self._shot = False                   # the last detection was a characterisation shot
        self._shot_rng = None                # its own stream, [seed, 43]
        self._shot_cache: tuple = ((), 0.0)
        self._resonances = None              # (offsets Hz, their (offset, kind, index))
        self.shots_started = 0
        # --- the sequencer's hardware: TTL pattern, its lines, the cycle in progress -------
        self._ttl: dict[str, list] = {}
        self._edges: list[tuple[float, object]] = []
        self._edge_i = 0
        self._edge_t = math.inf              # time of the next undelivered edge
        self._cycle_t0 = -math.inf
        self._cycle_end = -math.inf
        self._segments: list[tuple[float, float, float, float]] = []
        self._detection = (-math.inf, 0.0)   # (start, length) of the last detection window
        self._state = 0                      # at detection: 0 bright, 1 shelved, 2 no ion
        self.last_dark_probability = 0.0
        self.cycles_started = 0
        self.starts_ignored = 0
        self.detection_s = p.detection_time_s
        self.log: list[tuple[float, str, dict]] = []   # what the world did, for grading
        self.on_note = None        # called as on_note(t, kind, **detail) for each of those
        self.cryostat = None
        if p.cryostat:
            from ionclock.sim_instruments.cryostat import Cryostat

            self.cryostat = Cryostat(self.env, seed=seed + 1,
                                     refill_interval=p.refill_interval_s,
                                     refill_jitter=min(3 * 3600.0, 0.2 * p.refill_interval_s))
        # The chamber pressure the vacuum gauges read; its own random stream ([seed, 21]).
        from ionclock.sim_instruments.vacuum import Vacuum, VacuumParams

        self.vacuum = Vacuum(self.env, VacuumParams(p.pressure_pa, p.pressure_wander), seed=seed)
        self.shifts_hz: dict[str, float] = {}
        if p.apply_shifts:
            self._update_shifts()
            self.env.process(self._shift_process())
        for at_s, kind, value, duration_s, *detail in p.events:
            self.env.process(self._scheduled(at_s, kind, value, duration_s, *detail))
        if p.ion_loss_per_s > 0:
            self.env.process(self._random_ion_loss())
        if p.b_steps_per_s > 0:
            self.env.process(self._random_b_steps())

    # --- the trap RF: made on first use, so runs without an RF twin are unchanged ----------
    @property
    def trap_rf(self):
        """The trap RF physics (`sim_instruments.trap_rf.TrapRF`) on this world's clock.

        Made when first asked for (by the SG380 or pickoff DMM twin), with its own random
        streams ([seed, 33, 1] drift, [seed, 33, 2] noise), never the world's generators: a
        run without the RF twins draws exactly what it drew before.
        """
        if self._trap_rf is None:
            from ionclock.sim_instruments.trap_rf import TrapRF

            self._trap_rf = TrapRF(self.env, seed=(self.seed, 33))
        return self._trap_rf

    # --- shutters: the SC10 twins' blades -------------------------------------------------
    def add_shutter(self, name: str, shutter) -> None:
        """An SC10 twin's blade named `name` stands in a laser beam (called by the twin).

        The blade named in ``TwinParams.quench_shutters`` (the 854 nm beam) decides the
        stray light of each probe from then on: open at any time of the free evolution, it
        lets `shutter.leak_fraction` of the quench light through (`_excitation_of`). The
        other lasers' blades are followed (their state is the twin's) but their stray light
        is not modelled (see docs/decisions/0305).
        """
        if name in self.p.quench_shutters:
            self._quench_shutters.append(shutter)

    def _shutter_stray(self, t0: float, t1: float) -> float:
        """Fraction of the quench light that reached the ion in [t0, t1] through the blades."""
        stray = 0.0
        for shutter in self._quench_shutters:
            if shutter.open_between(t0, t1):
                stray = max(stray, shutter.leak_fraction)
        return stray

    # --- hooks called by the instrument twins -----------------------------------------
    def dds_changed(self, channel: int, frequency_hz: float, phase_turns: float,
                    amplitude_fraction: float) -> None:
        """The DDS applied new output values on `channel`."""
        if channel == self._aom_channel:
            self.aom_hz = frequency_hz
            self.aom_phase_turns = phase_turns
            self.aom_amplitude = amplitude_fraction
        elif channel == self.p.lock_offset_channel:
            # the clock laser is locked to the cavity through this EOM's sideband: it follows
            # the EOM's step from the centre frequency (the clock's lock: no step)
            p = self.p
            self.lock_offset_hz = p.lock_offset_sign * (frequency_hz - p.lock_offset_center_hz)

    def compensation_changed(self, channel: int, volts: float) -> None:
        """The compensation supply's output `channel` (electrode 1, 2, 3) is at `volts` (V)."""
        mm = self.characterisation.micromotion
        v = mm.applied_v.copy()
        v[channel - 1] = volts
        mm.set_voltages(v)

    # --- the characterisation physics: made on first use --------------------------------------
    @property
    def characterisation(self):
        """Motion, micromotion and Zeeman physics on this world (`CharacterisationTwin`).

        Made when first asked for (a probe shot, the compensation supply's twin), with the
        electrodes' optimum at ``TwinParams.compensation_v0`` (inside a Keysight E36312A's
        outputs) and the supply's voltages applied there; its only stream of its own is the
        optimum's move at each refill ([seed, 41, k]), never the world's generators.
        """
        if self._characterisation is None:
            from ionclock.sim_instruments.characterisation import CharacterisationTwin
            from ionclock.sim_instruments.micromotion import MicromotionParams

            self._characterisation = CharacterisationTwin(
                self, self.seed,
                micromotion=MicromotionParams(
                    v0_v=tuple(self.p.compensation_v0),
                    refill_shift_v=self.p.compensation_refill_shift_v))
        return self._characterisation

    def coil_changed(self, channel: int, current_a: float) -> None:
        """The coil supply's output current on `channel` changed (0 when off)."""
        if channel == self.p.coil_channel:
            self.coil_current_a = current_a
            if self.p.apply_shifts:
                self._update_shifts()

    # --- the sequencer's hardware: TTL lines and the pattern ---------------------------------
    def wire_ttl(self, line: str, callback) -> None:
        """Connect `callback(t)` to TTL `line` (an instrument's trigger input)."""
        self._ttl.setdefault(line, []).append(callback)
        if self._edges:
            self.load_pattern(self._pattern, self.detection_s)

    # A programmable pattern generator on the start trigger (`attach_pattern_source`,
    # decision 0311): class defaults, so a world without one pays one attribute read per start.
    _source_trigger = None
    _source_block = None
    #: starts on which an attached pattern source played nothing (not armed, program ended)
    dark_cycles = 0

    def attach_pattern_source(self, source) -> None:
        """Take each start's pattern from `source` (a pattern generator's twin), or None: by hand.

        On each start that is not ignored, ``source.trigger(t)`` returns the block it plays
        from `t`, ``(edges, detection_s)`` as `load_pattern` takes them, or None when it plays
        nothing (not armed, its program ended): then the cycle is dark (no edge, no gate; the
        counter has nothing to report, so the servo sees it), counted in `dark_cycles`. A
        source returns the same object for an identical block, so a repeated block costs an
        identity check and no `load_pattern`.
        """
        self._source_trigger = None if source is None else source.trigger
        self._source_block = None

    def load_pattern(self, edges, detection_s: float) -> None:
        """The TTL pattern played on each start: (offset s, line) pairs in time order.

        Lines: ``dds_step`` (a light segment begins: the DDS steps, its output is recorded),
        ``probe_end`` (the light ends: the excitation is evaluated), ``detection`` (the
        detection light opens for `detection_s`), ``counter_trig`` (the counter's TRIG).
        """
        self._source_block = None   # a pattern loaded by hand replaces a source's block
        self._pattern = tuple(edges)
        self.detection_s = detection_s
        self._dds_callbacks = tuple(self._ttl.get("dds_step", ()))
        self._dds_single = self._dds_callbacks[0] if len(self._dds_callbacks) == 1 else None
        handlers = {"dds_step": self._dds_step, "probe_end": self._probe_end,
                    "detection": self._detection_opens,
                    # the characterisation shots' lines (`ProbeProgram`, decision 0804)
                    "sideband_cooling": self._sideband_cooling, "cooling_end": self._cooling_end,
                    "beam_1": self._beam_1, "beam_2": self._beam_2, "beam_3": self._beam_3,
                    "beam_off": self._beam_off}
        out = []
        for offset, line in self._pattern:
            handler = handlers.get(line)
            if handler is None:
                callbacks = tuple(self._ttl.get(line, ()))
                if not callbacks:
                    continue
                handler = callbacks[0] if len(callbacks) == 1 else _fan_out(callbacks)
            elif line == "dds_step" and self._dds_single is not None:
                # `_deliver` runs `_dds_step` inline (five edges per cycle): the DDS's own
                # callback, then the segment is recorded (the third field)
                out.append((offset, self._dds_single, True))
                continue
            out.append((offset, handler, False))
        self._edges = out
        self._cycle_length = max((e[0] for e in self._pattern), default=0.0)

    def start_cycle(self, t: float | None = None) -> bool:
        """The pulse generator fired: play the pattern from `t` (default now).

        A start while the previous pattern is still playing is ignored, as a delay generator
        ignores triggers during its delay cycle; returns whether the cycle started. With a
        pattern source attached (`attach_pattern_source`) the pattern is the source's block.
        """
        t = self.env.now if t is None else t
        self.settle()
        trigger = self._source_trigger
        if trigger is not None and t >= self._cycle_end:
            block = trigger(t)
            if block is None:
                self.dark_cycles += 1
                return False
            if block is not self._source_block:
                self.load_pattern(*block)
                self._source_block = block
        if t < self._cycle_end or not self._edges:
            self.starts_ignored += 1
            return False
        self.cycles_started += 1
        self._cycle_t0 = t
        self._cycle_end = t + self._cycle_length
        self._edge_i = 0
        self._segments = []
        self._edge_t = t + self._edges[0][0]
        if self._edge_t <= self.env._now:
            self.settle()
        return True

    def settle(self) -> None:
        """Deliver every TTL edge due by now, in time order (twins call this first)."""
        now = self.env._now   # Environment.now without its property call (hot: every write)
        if self._edge_t <= now:
            self._deliver(now)

    def _deliver(self, now: float) -> None:
        edges = self._edges
        n = len(edges)
        t0 = self._cycle_t0
        self._edge_t = math.inf     # re-entrant calls to settle() do nothing
        i = self._edge_i
        while i < n:
            offset, handler, dds_step = edges[i]
            t = t0 + offset
            if t > now:
                break
            i += 1
            self._edge_i = i
            handler(t)
            if dds_step:   # _dds_step(t) with the one DDS, inlined: record the segment
                self._segments.append((t, self.aom_hz, self.aom_phase_turns,
                                       self.aom_amplitude))
        self._edge_t = t0 + edges[i][0] if i < n else math.inf

    def _dds_step(self, t: float) -> None:
        single = self._dds_single
        if single is not None:
            single(t)
        else:
            for callback in self._dds_callbacks:
                callback(t)
        self._segments.append((t, self.aom_hz, self.aom_phase_turns, self.aom_amplitude))

    def _sideband_cooling(self, t: float) -> None:
        self._sbc_t = t

    def _cooling_end(self, t: float) -> None:
        self._cool_end_t = t

    def _beam_1(self, t: float) -> None:
        self._probe_beam = 1
        self._beam_on_t = t

    def _beam_2(self, t: float) -> None:
        self._probe_beam = 2
        self._beam_on_t = t

    def _beam_3(self, t: float) -> None:
        self._probe_beam = 3
        self._beam_on_t = t

    def _beam_off(self, t: float) -> None:
        """The probe beams' RF switches close: the shot's pulse ends (`ProbeProgram`)."""
        self._beam_off_t = t

    def _detection_opens(self, t: float) -> None:
        self._detection = (t, self.detection_s)

    # --- truth ---------------------------------------------------------------------------
    def b_true(self, t: float | None = None) -> float:
        """True field at the ion (T), without the per-probe white noise."""
        t = self.env.now if t is None else t
        p = self.p
        if p.b_walk_t_sqrt_s and t > self._b_walk_t:
            self._b_walk += p.b_walk_t_sqrt_s * math.sqrt(t - self._b_walk_t) * self.rng.gauss(
                0.0, 1.0)
            self._b_walk_t = t
        return (p.coil_t_per_a * self.coil_current_a + p.b_residual_t + p.b_drift_t_s * t
                + self._b_walk + self.b_steps_t)

    def cavity_offset_hz(self, t: float | None = None) -> float:
        """Laser frequency minus nu0 with the AOM at its centre frequency (Hz)."""
        t = self.env.now if t is None else t
        if t == self._cavity_t:   # the ion and the comb sample the same instant
            return self._cavity_hz
        p = self.p
        self._cavity_t = t
        self._cavity_hz = (p.laser_offset_hz + p.cavity_drift_hz_s * t + self._flicker.value(t)
                           + self._laser_steps_hz)
        return self._cavity_hz

    def cavity_mean_hz(self, t0: float, t1: float) -> float:
        """The mean of `cavity_offset_hz` over [t0, t1] (Hz): what a counter gated then counts.

        The drift's mean is its value at the middle; the flicker's is exact on its grid; a
        laser jump counts from when it happened (one inside the interval as if at its start).
        """
        p = self.p
        return (p.laser_offset_hz + p.cavity_drift_hz_s * 0.5 * (t0 + t1)
                + self._flicker.mean(t0, t1) + self._laser_steps_hz)

    @property
    def lasers(self):
        """The 397, 866, 854 nm (and other) lasers (`sim_instruments.lasers.Lasers`).

        Made on first use with its own stream ([seed, 309]): a run that neither reads nor
        moves them is unchanged.
        """
        if self._lasers is None:
            from ionclock.sim_instruments.lasers import Lasers

            self._lasers = Lasers(self, self.seed)
        return self._lasers

    def laser_frequency(self, name: str) -> float:
        """Laser `name` ("397", "866", "854", "729", ...) now, optical frequency (Hz).

        What a wavemeter reads (sim_instruments/wavemeter.py); the 729 nm is the cavity light
        before the double-pass AOM.
        """
        return self.lasers.frequency(name)

    def lock_laser(self, name: str, setpoint_hz: float) -> None:
        """The wavemeter's PID regulates laser `name` to `setpoint_hz` (Hz) from now on."""
        self.lasers.lock(name, setpoint_hz)

    def laser_offset_hz(self, t: float | None = None) -> float:
        """Laser frequency at the ion minus nu0 (Hz): cavity plus double-pass AOM."""
        return (self.cavity_offset_hz(t) + 2.0 * (self.aom_hz - self.p.aom_center_hz)
                + self.lock_offset_hz)

    def line_centres_hz(self, b_t: float | None = None) -> list[float]:
        """True centres of the six lines, offsets from nu0 (Hz)."""
        b = self.b_true() if b_t is None else b_t
        q, c = self.p.q0_hz, self.p.common_shift_hz
        return [c + z * b + q * w for z, w in zip(self._z, self._qw)]

    def take_truth(self) -> Truth:
        """Return the truth accumulated since the last call and start a new one."""
        truth, self.truth = self.truth, Truth()
        return truth

    # --- faults ----------------------------------------------------------------------------
    def lose_ion(self) -> None:
        """The ion is gone: detection sees background only."""
        self.ion_present = False

    def reload_ion(self) -> None:
        """A new ion is trapped and cooled."""
        self.ion_present = True

    def step_field(self, delta_t: float) -> None:
        """A sudden field step (T)."""
        self.b_steps_t += delta_t

    def stick_shutter(self, stuck: bool = True, fraction: float = 1.0) -> None:
        """The 854 nm shutter sticks open (or is fixed): stray light during the probe.

        `fraction` of the beam gets through (1: fully open): it quenches D5/2 at
        `fraction / quench_tau_s` and light-shifts the clock line by `fraction *
        quench_light_shift_hz` (DOMAIN §1: all lasers but the clock laser are blocked during
        the interrogation; one that is not is a light shift on the ion).
        """
        if stuck and not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction open must be within (0, 1], got {fraction!r}")
        if self._quench_shutters:
            # an SC10 twin holds the 854 nm blade: the fault is its blade's (it sticks once
            # open; the controller does not know), the stray light follows from the blade
            for shutter in self._quench_shutters:
                shutter.stick(stuck, fraction)
            return
        self.stray_open = fraction if stuck else 0.0

    @property
    def quenched(self) -> bool:
        """True while a shutter is stuck open."""
        return self.stray_open > 0.0 or any(s.faults.stuck_open for s in self._quench_shutters)

    def temperature_k(self) -> float:
        """BBR temperature seen by the ion: mean of the trap and the BBR cavity (K)."""
        if self.cryostat is None:
            return 79.5
        return 0.5 * (self.cryostat.temperature("trap") + self.cryostat.temperature("bbr_cavity"))

    def _update_shifts(self) -> None:
        """Apply the true systematic shifts (ionclock.physics.shifts, the budget's own formulas)."""
        from ionclock.physics.shifts import TrueConditions, true_shifts_hz

        p = self.p
        # the micromotion of the compensation state once its physics exists (a probe or the
        # compensation supply asked for it), else the configured ratios
        ratios = (tuple(float(r) for r in self._characterisation.micromotion.ratios())
                  if self._characterisation is not None else tuple(p.micromotion_ratios))
        cond = TrueConditions(temperature_k=self.temperature_k(), b_t=self.b_true(),
                              nbar=tuple(p.nbar), pressure_pa=p.pressure_pa,
                              micromotion_ratios=ratios)
        self.shifts_hz = true_shifts_hz(cond, p.nu0_hz)
        p.common_shift_hz = math.fsum(self.shifts_hz.values())

    def _shift_process(self):
        while True:
            yield self.env.timeout(self.p.shift_update_s)
            self._update_shifts()

    def _note(self, kind: str, **detail) -> None:
        self.log.append((self.env.now, kind, detail))
        if self.on_note is not None:
            self.on_note(self.env.now, kind, **detail)

    def _apply(self, kind: str, value: float, duration_s: float, laser: str = ""):
        """Carry out one fault or change (a SimPy sub-process for timed ones).

        `laser` names the laser of a ``laser_excursion`` (value: Hz off its setpoint).
        """
        if kind == "b_step":
            self.step_field(value)
            self._note("b_step", delta_t=value)
        elif kind == "ion_loss":
            self.lose_ion()
            self._note("ion_loss")
            yield self.env.timeout(duration_s or self.p.reload_s)
            self.reload_ion()
            self._note("ion_reloaded")
        elif kind == "refill":
            if self.cryostat is not None:
                self.cryostat.inject_refill(depth=value or None)
            self._note("refill", depth_k=value)
        elif kind == "temperature_excursion":
            if self.cryostat is not None:
                self.cryostat.inject_excursion(value, duration_s or 3600.0)
            self._note("temperature_excursion", delta_k=value, duration_s=duration_s)
        elif kind == "shutter_stuck":
            fraction = value or 1.0
            self.stick_shutter(True, fraction)
            self._note("shutter_stuck", fraction_open=fraction,
                       light_shift_hz=fraction * self.p.quench_light_shift_hz)
            if duration_s:
                yield self.env.timeout(duration_s)
                self.stick_shutter(False)
                self._note("shutter_fixed")
        elif kind == "q0":
            self.p.q0_hz = value
            self._note("q0", q0_hz=value)
        elif kind == "laser_jump":   # the cavity's frequency steps (a mode hop, a lock glitch)
            self._laser_steps_hz += value
            self._cavity_t = math.nan    # a cached sample at this instant is stale
            self._note("laser_jump", delta_hz=value)
        elif kind == "laser_excursion":   # a laser off its setpoint (a lost lock, a mode hop)
            self.lasers.excursion(laser, value)
            self._note("laser_excursion", laser=laser, offset_hz=value, duration_s=duration_s)
            if duration_s:
                yield self.env.timeout(duration_s)
                self.lasers.excursion(laser, 0.0)
                self._note("laser_back", laser=laser)
        else:
            raise ValueError(f"unknown twin event kind {kind!r}")

    def _scheduled(self, at_s: float, kind: str, value: float, duration_s: float,
                   laser: str = ""):
        yield self.env.timeout(max(0.0, at_s - self.env.now))
        yield from self._apply(kind, value, duration_s, laser)

    def _random_ion_loss(self):
        while True:
            yield self.env.timeout(self.rng.expovariate(self.p.ion_loss_per_s))
            if self.ion_present:
                # reload takes 10-60 min in the lab; the configured value is the mean
                yield from self._apply("ion_loss", 0.0,
                                       self.rng.uniform(0.5, 1.5) * self.p.reload_s)

    def _random_b_steps(self):
        while True:
            yield self.env.timeout(self.rng.expovariate(self.p.b_steps_per_s))
            yield from self._apply("b_step", self.rng.choice((-1, 1)) * self.p.b_step_t, 0.0)

    # --- the measurement -------------------------------------------------------------------
    def _batch(self, lam: float) -> list[int]:
        return self.nprng.poisson(lam, 8192).tolist()

    def _counts(self, bright: bool) -> int:
        pool = self._bright if bright else self._dark
        if not pool:
            pool.extend(self._batch(self.p.bright_counts if bright else self.p.dark_counts))
        return pool.pop()

    def excitation(self, delta_hz: float, phase_sign: int) -> float:
        """Probability of D5/2 after the interrogation, contrast included."""
        p = self.p
        if p.exact or p.light_shift_hz or not self._fast.valid(delta_hz):
            coh = excitation_exact(delta_hz, phase_sign, p.pi_time_s, p.ramsey_time_s,
                                   delta_hz - p.light_shift_hz)
        else:
            coh = self._fast.excitation(delta_hz, phase_sign)
        return 0.5 + self.contrast * (coh - 0.5)

    def _probe_end(self, t_end: float) -> None:
        """The light is over: evaluate the interrogation from the segments the ion saw.

        Draws the outcome (shelved in D5/2 or not) and records the truth: each probe's
        detuning is the laser during the free evolution (at its middle, where a drifting
        laser's phase counts) minus the true line centre, without the stray light of a
        shutter left open, so the truth shows the bias such a fault causes.
        """
        if self._probe_beam:    # a characterisation shot (`ProbeProgram`)
            self._shot_end(t_end)
            return
        self._shot = False
        # the segments that began before the light's end (a table that ends each cycle on a
        # dark entry steps once more, at the end)
        segs = self._segments
        if segs and segs[-1][0] >= t_end:
            # they were recorded in time order (the pattern's): the ones before t_end lead
            k = len(segs) - 1
            while k and segs[k - 1][0] >= t_end:
                k -= 1
            segs = segs[:k]
        self._segments = []
        if not self.ion_present:
            self._state = 2
            self.last_dark_probability = 1.0
            return
        shelved = self._state == 1
        if len(segs) != 4 or not (segs[0][3] or segs[2][3] or segs[3][3]):
            # no clock light in the pulses (an ion check): the ion stays in S and scatters
            self._state = 0
            self.last_dark_probability = 0.0
        else:
            prob = self._excitation_of(segs, t_end)
            self.last_dark_probability = prob
            self._state = 1 if self.rng.random() < prob else 0
        if self.left_shelved:   # the 854 nm off: the last shelving may not have been emptied
            if shelved and self._lasers.still_shelved(t_end - self._shelved_t, self.p.tau_d_s):
                self._state = 1
                self.last_dark_probability = 1.0
            if self._state == 1:
                self._shelved_t = t_end
        elif self._state == 1:
            self._shelved_t = t_end

    def _excitation_of(self, segs, t_end: float) -> float:
        """Dark probability after the four segments (hyper-Ramsey as the DDS ran it)."""
        p = self.p
        (ta, fa, pa, aa), (tb, fb, pb, ab), (tc, fc, pc, ac), (td, fd, pd, ad) = segs
        t = 0.5 * (tb + tc)
        if p.b_walk_t_sqrt_s:
            b = self.b_true(t)
        else:   # b_true(t) without the random walk
            b = (p.coil_t_per_a * self.coil_current_a + p.b_residual_t + p.b_drift_t_s * t
                 + self._b_walk + self.b_steps_t)
        if p.b_noise_t:
            pool = self._normals
            if not pool:
                pool.extend(self.nprng.standard_normal(8192).tolist())
            b_probe = b + p.b_noise_t * pool.pop()
        else:
            b_probe = b
        cavity = self._cavity_hz if t == self._cavity_t else self.cavity_offset_hz(t)
        n = p.aom_passes
        centre_rf = p.aom_center_hz
        # the laser during the free evolution (+ the lock offset's step: 0 for the clock)
        nu = cavity + n * (fb - centre_rf) + self.lock_offset_hz
        # The laser addresses the nearest line; lines sit at c + Q0 w_k + z_k B and are
        # hundreds of kHz apart, so the nearest one follows from (nu - c) / B by bisection.
        if abs(b_probe) > 1e-12:
            k = self._z_order[bisect.bisect(self._z_mid, (nu - p.common_shift_hz) / b_probe)]
        else:
            centres = self.line_centres_hz(b_probe)
            k = min(range(6), key=lambda i: abs(nu - centres[i]))
        centre = p.common_shift_hz + p.q0_hz * self._qw[k] + self._z[k] * b_probe
        delta = nu - centre
        tr = self.truth
        stray = self.stray_open
        if self._quench_shutters:   # the 854 nm blade during the free evolution
            stray = self._shutter_stray(tb, tc)
        if aa and not ab:
            # the truth is that of the clock's interrogations (Ramsey: light, then a dark
            # free evolution); a Rabi probe (the servo's fringe check) is no clock data
            tr.n += 1
            tr.sum_detuning_hz += delta
            tr.sum_b_t += b
            tr.per_line[k] += delta
            tr.per_line_n[k] += 1
            if stray:
                tr.sum_stray_hz += stray * p.quench_light_shift_hz
        self.last_detuning_hz = delta
        delta -= stray * p.quench_light_shift_hz
        fast = self._fast
        sign = 0
        if (aa == ac == ad == 1.0 and ab == 0.0 and fa == fb == fc == fd
                and not p.exact and not p.light_shift_hz
                and -fast.max_detuning_hz < delta < fast.max_detuning_hz):
            # the light's phases (n x the DDS's): pi/2 at 0, pi at 1/2 turn, final at +-1/4
            d2 = (n * (pc - pa)) % 1.0
            if -1e-6 < d2 - 0.5 < 1e-6:
                d3 = (n * (pd - pa)) % 1.0
                if -1e-6 < d3 - 0.25 < 1e-6:
                    sign = 1
                elif -1e-6 < d3 - 0.75 < 1e-6:
                    sign = -1
        if sign:   # the calibrated fast path (hyper_ramsey.FastHyperRamsey)
            coh = 0.5 * (1.0 - sign * fast.sign * math.sin(fast.k * delta))
        else:      # anything else: the exact propagator through the segments as run
            rabi = math.pi / p.pi_time_s
            ls = p.light_shift_hz
            two_pi_n = TWO_PI * n
            coh = excitation_segments(
                (t1 - t0, rabi * amp, delta + n * (f - fb) - ls * amp * amp, two_pi_n * ph)
                for (t0, f, ph, amp), t1 in zip(segs, (tb, tc, td, t_end)))
        prob = 0.5 + self.contrast * (coh - 0.5)
        if stray:  # stray 854 nm light empties D5/2 during the free evolution
            prob *= math.exp(-stray * p.ramsey_time_s / p.quench_tau_s)
        return prob

    def photon_counts(self, t_open: float, width_s: float) -> int:
        """Photons counted by the PMT in [t_open, t_open + width_s) (a counter's gate).

        The ion fluoresces (~`bright_counts` per detection window) while the detection light
        is on and the ion is in S; in D5/2 it may decay during the window and scatter for the
        rest of it (tau_D); outside the window, and without an ion, only background counts
        (`dark_counts` per window length).
        """
        d0, length = self._detection
        if self._shot:   # a characterisation shot's photons: its own stream
            return self._shot_counts(t_open, width_s)
        if t_open == d0 and width_s == length:   # the gate is the detection window
            state = self._state
            if state == 0:
                if self.fluorescence != 1.0:   # a cooling/repump laser off: fewer photons
                    return self._lasers.dim(self._counts(True))
                return self._counts(True)
            if state == 1 and self.rng.random() < self._decay_p:
                frac = self.rng.random()
                bright = int(self.nprng.poisson(self.p.bright_counts * frac))
                if self.fluorescence != 1.0:
                    bright = self._lasers.dim(bright)
                return self._counts(False) + bright
            return self._counts(False)
        overlap = max(0.0, min(t_open + width_s, d0 + length) - max(t_open, d0))
        lam = self.p.dark_counts * width_s / self.detection_s
        if self._state == 0 and overlap > 0.0:
            lam += (self.fluorescence * self.p.bright_counts
                    - self.p.dark_counts) * overlap / self.detection_s
        return int(self.nprng.poisson(lam)) if lam > 0 else 0

    # --- characterisation shots (decision 0804) ----------------------------------------------
    def _shot_end(self, t_end: float) -> None:
        """A characterisation shot's pulse is over: its excitation, and the outcome drawn.

        The pulse is the last DDS segment before `t_end` (`ProbeProgram`: the light at the
        probe frequency, then dark entries) while the beam's switch is open (its line's rise
        to ``beam_off``), on the beam whose switch fired; the motional
        state is the one after this cycle's cooling (sideband cooling when its line fired)
        and the dark time from the cooling's end to the pulse. The outcome comes from the
        shots' own stream ([seed, 43]), never the world's generators.
        """
        beam, self._probe_beam = self._probe_beam, 0
        t0_cycle = self._cycle_t0
        cooling = "sideband" if self._sbc_t >= t0_cycle else "doppler"
        segs = [s for s in self._segments if s[0] < t_end]
        self._segments = []
        self._shot = True
        self.shots_started += 1
        if self._shot_rng is None:
            self._shot_rng = np.random.default_rng([self.seed, 43])
        if not self.ion_present:
            self._state = 2
            self.last_dark_probability = 1.0
            return
        if not segs or not segs[-1][3]:
            self._state = 0
            self.last_dark_probability = 0.0
            return
        t0, f, _, amp = segs[-1]
        # the light reaches the ion while the beam's switch is open and the light entry is on:
        # from the later of the switch opening and the entry, to the switch closing (a
        # pattern with no beam_off: the light's end)
        on = self._beam_on_t
        if on >= t0_cycle and on > t0:
            t0 = on
        off = self._beam_off_t
        t1 = off if t0 <= off < t_end else t_end
        cool_end = self._cool_end_t if self._cool_end_t >= t0_cycle else t0_cycle
        prob = self.shot_excitation(beam, t1 - t0, f, amp, cooling, max(0.0, t0 - cool_end),
                                    t0)
        self.last_dark_probability = prob
        self._state = 1 if self._shot_rng.random() < prob else 0

    def shot_resonance(self, nu_hz: float, t: float) -> tuple:
        """The resonance nearest to the light at `nu_hz` (Hz from nu0) at time `t`.

        (line k, kind, index, detuning Hz): kind "carrier", "secular" (index (mode, +-1):
        the blue sideband at +omega_j, the red at -omega_j) or "micromotion" (index m: at
        m Omega_RF, |m| <= 2), on each of the six Zeeman lines at the true field.
        """
        ch = self.characterisation
        if self._resonances is None:
            offsets = [(0.0, "carrier", 0)]
            offsets += [(s * w, "secular", (j, s))
                        for j, w in enumerate(ch.motion.p.secular_hz) for s in (1, -1)]
            offsets += [(m * ch.micromotion.p.rf_hz, "micromotion", m) for m in (1, -1, 2, -2)]
            self._resonances = (np.array([o for o, _, _ in offsets]), offsets)
        values, offsets = self._resonances
        centres = np.asarray(self.line_centres_hz(self.b_true(t)))
        d = nu_hz - centres[:, None] - values[None, :]
        k, i = divmod(int(np.argmin(np.abs(d))), len(offsets))
        return (k, offsets[i][1], offsets[i][2], float(d[k, i]))

    def shot_excitation(self, beam: int, pulse_s: float, f_rf: float, amplitude: float,
                        cooling: str, dark_time_s: float, t: float) -> float:
        """Dark probability after one probe pulse (DOMAIN §3; `sim_instruments.motion`).

        The light is the cavity's plus the double-pass AOM's and the lock offset's; only the
        nearest resonance (`shot_resonance`) is driven, at its detuning: the carrier with the
        Rabi frequency amplitude x Omega_b J0(beta_b), a secular sideband with the Laguerre
        couplings of its mode (spectators' Debye-Waller factors) times J0(beta_b), a
        micromotion sideband with J_m(beta_b) (`Micromotion`: beta_b from the compensation
        voltages and the optimum's drift after each refill). The RF amplitude scales the
        Rabi frequency linearly. The last evaluation is kept for the next shot with the same
        pulse, state and coupling and the detuning within the same 10 Hz (at the smallest
        Rabi frequency, ~9 kHz on a ground-state sideband, a change of (5/9000)^2 ~ 3e-7).
        """
        from scipy import special

        p = self.p
        nu = (self.cavity_offset_hz(t) + p.aom_passes * (f_rf - p.aom_center_hz)
              + self.lock_offset_hz)
        k, kind, index, delta = self.shot_resonance(nu, t)
        ch = self.characterisation
        beta = float(ch.micromotion.beta()[beam - 1])
        order = index if kind == "micromotion" else 0
        coupling = amplitude * abs(float(special.jv(abs(order), beta)))
        mode, side = index if kind == "secular" else ("z", 0)
        key = (beam, kind, index, cooling, round(dark_time_s, 7), pulse_s, round(delta, -1),
               round(coupling, 10))
        if self._shot_cache[0] == key:
            return self._shot_cache[1]
        prob = float(ch.motion.excitation(pulse_s, beam=beam, mode=mode, sideband=side,
                                          cooling=cooling, dark_time_s=dark_time_s,
                                          detuning_hz=delta, coupling=coupling)[0])
        self._shot_cache = (key, prob)
        return prob

    def _shot_counts(self, t_open: float, width_s: float) -> int:
        """Photons of a shot's detection (as `photon_counts`), from the shots' stream."""
        rng = self._shot_rng
        d0, length = self._detection
        p = self.p
        if t_open == d0 and width_s == length:
            state = self._state
            if state == 0:
                return int(rng.poisson(p.bright_counts))
            extra = 0
            if state == 1 and rng.random() < self._decay_p:
                extra = int(rng.poisson(p.bright_counts * rng.random()))
            return int(rng.poisson(p.dark_counts)) + extra
        overlap = max(0.0, min(t_open + width_s, d0 + length) - max(t_open, d0))
        lam = p.dark_counts * width_s / self.detection_s
        if self._state == 0 and overlap > 0.0:
            lam += (p.bright_counts - p.dark_counts) * overlap / self.detection_s
        return int(rng.poisson(lam)) if lam > 0 else 0

    def expected_dark(self) -> float:
        """Deterministic twin: the last probe's dark probability (no random draw)."""
        self.settle()
        return self.last_dark_probability


def _fan_out(callbacks):
    def fire(t: float) -> None:
        for callback in callbacks:
            callback(t)
    return fire


TWO_PI = 2.0 * math.pi
