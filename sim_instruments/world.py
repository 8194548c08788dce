"""The simulated 40Ca+ clock apparatus: one SimPy environment holding the physics (STYLE §4).

The world knows its own truth (true line centres, true B, the laser's true frequency) and
exposes it so tests can grade the servo. Instruments are thin protocol front ends on it:
the DDS twin calls `dds_changed`, the coil-supply twin `coil_changed`, the photon counter
twin `detect`.

Models (DOMAIN §1, §5):
- Clock laser: a ULE-cavity-stabilised laser, nu_cav(t) = nu0 - 2 f_AOM,centre + delta0
  + drift * t + flicker(t), shifted by a double-pass AOM: nu_L = nu_cav + 2 f_AOM. The
  flicker floor is a sum of Ornstein-Uhlenbeck processes with log-spaced correlation times
  (a standard 1/f synthesis), scaled so that its Allan deviation is the configured floor.
- Field: B(t) = calibration * I_coil + B_residual + drift * t + random walk + steps,
  evaluated at the probe time, plus white pT noise per probe.
- Ion: six Zeeman lines (ionclock.physics.ZEEMAN_LINES) with the electric-quadrupole shift
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

from ionclock.physics import NU0_CA, TAU_D52, ZEEMAN_LINES, ramsey_contrast
from ionclock.sim_instruments.hyper_ramsey import FastHyperRamsey, excitation_exact


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
    light_shift_hz: float = 0.0          # residual probe light shift during pulses
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
    micromotion_ratios: tuple = (0.0, 0.0, 0.0)
    ion_loss_per_s: float = 0.0          # random ion loss rate (1 per 1-4 weeks in the lab)
    reload_s: float = 1800.0             # time to load and cool a new ion
    b_steps_per_s: float = 0.0           # random field steps
    b_step_t: float = 0.3e-9             # their size (sign random)
    quench_light_shift_hz: float = 2.0   # stray 854 nm light with its shutter stuck open:
    quench_tau_s: float = 0.02           # light shift on the clock line and D5/2 quench time
    events: tuple = ()                   # scheduled (at_s, kind, value, duration_s)


class _Flicker:
    """Flicker (1/f) frequency noise as a sum of OU processes (log-spaced correlation times).

    The sum is generated on a fixed time grid of step `h` in blocks (each component an exact
    first-order recursion x[n+1] = a x[n] + sqrt(1 - a^2) sigma w[n], run by scipy's lfilter)
    and read piecewise constant, so a probe costs an index, not a random draw.
    """

    # Allan deviation of the sum with unit component sigma, flat within 10 % over
    # tau = 10 .. 1e4 s (measured; tests/test_world.py checks the scaled floor).
    UNIT_ADEV = 1.07

    def __init__(self, floor_hz: float, rng: np.random.Generator, h: float = 0.05,
                 block: int = 8192, taus=tuple(10.0 ** np.arange(-0.5, 5.01, 0.5))):
        self.taus = np.asarray(taus)
        self.sigma = floor_hz / self.UNIT_ADEV if floor_hz > 0 else 0.0
        self.h = h
        self.block = block
        self.rng = rng
        self.a = np.exp(-h / self.taus)
        self.b = self.sigma * np.sqrt(1.0 - self.a ** 2)
        self.x = rng.standard_normal(len(self.taus)) * self.sigma
        self.start = 0           # grid index of values[0]
        self.values: list[float] = []

    def _next_block(self, first: int) -> None:
        gap = first - (self.start + len(self.values))
        if gap > 0:  # jump ahead exactly: the OU transition over `gap` steps
            a = self.a ** gap
            self.x = self.x * a + self.sigma * np.sqrt(1 - a * a) * self.rng.standard_normal(
                len(self.taus))
        w = self.rng.standard_normal((len(self.taus), self.block)) * self.b[:, None]
        out = _ar1(w, self.a, self.x)
        self.x = out[:, -1].copy()
        self.values = out.sum(axis=0).tolist()
        self.start = first

    def value(self, t: float) -> float:
        if not self.sigma:
            return 0.0
        i = int(t / self.h)
        j = i - self.start
        if j >= len(self.values) or j < 0:
            self._next_block(i)
            j = 0
        return self.values[j]


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
    per_line: list = field(default_factory=lambda: [0.0] * 6)
    per_line_n: list = field(default_factory=lambda: [0] * 6)


class ClockWorld:
    """The apparatus' physics on one `simpy.Environment`."""

    def __init__(self, env: simpy.Environment | None = None, params: TwinParams | None = None,
                 seed: int = 0):
        self.env = env if env is not None else simpy.Environment()
        self.p = params or TwinParams()
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
        self._b_walk = 0.0
        self._b_walk_t = 0.0
        self._flicker = _Flicker(p.flicker_floor * p.nu0_hz, self.nprng)
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
        self.quenched = False                # 854 nm shutter stuck open
        self.log: list[tuple[float, str, dict]] = []   # what the world did, for grading
        self.on_note = None        # called as on_note(t, kind, **detail) for each of those
        self.cryostat = None
        if p.cryostat:
            from ionclock.sim_instruments.cryostat import Cryostat

            self.cryostat = Cryostat(self.env, seed=seed + 1,
                                     refill_interval=p.refill_interval_s,
                                     refill_jitter=min(3 * 3600.0, 0.2 * p.refill_interval_s))
        self.shifts_hz: dict[str, float] = {}
        if p.apply_shifts:
            self._update_shifts()
            self.env.process(self._shift_process())
        for at_s, kind, value, duration_s in p.events:
            self.env.process(self._scheduled(at_s, kind, value, duration_s))
        if p.ion_loss_per_s > 0:
            self.env.process(self._random_ion_loss())
        if p.b_steps_per_s > 0:
            self.env.process(self._random_b_steps())

    # --- hooks called by the instrument twins -----------------------------------------
    def dds_changed(self, channel: int, frequency_hz: float, phase_turns: float,
                    amplitude_fraction: float) -> None:
        """The DDS applied new output values on `channel`."""
        if channel == self.p.aom_channel:
            self.aom_hz = frequency_hz
            self.aom_phase_turns = phase_turns
            self.aom_amplitude = amplitude_fraction

    def coil_changed(self, channel: int, current_a: float) -> None:
        """The coil supply's output current on `channel` changed (0 when off)."""
        if channel == self.p.coil_channel:
            self.coil_current_a = current_a
            if self.p.apply_shifts:
                self._update_shifts()

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
        self._cavity_hz = p.laser_offset_hz + p.cavity_drift_hz_s * t + self._flicker.value(t)
        return self._cavity_hz

    def laser_offset_hz(self, t: float | None = None) -> float:
        """Laser frequency at the ion minus nu0 (Hz): cavity plus double-pass AOM."""
        return self.cavity_offset_hz(t) + 2.0 * (self.aom_hz - self.p.aom_center_hz)

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

    def stick_shutter(self, stuck: bool = True) -> None:
        """The 854 nm shutter sticks open (or is fixed): stray quench light during the probe."""
        self.quenched = stuck

    def temperature_k(self) -> float:
        """BBR temperature seen by the ion: mean of the trap and the BBR cavity (K)."""
        if self.cryostat is None:
            return 79.5
        return 0.5 * (self.cryostat.temperature("trap") + self.cryostat.temperature("bbr_cavity"))

    def _update_shifts(self) -> None:
        """Apply the true systematic shifts (ionclock.shifts, the budget's own formulas)."""
        from ionclock.shifts import TrueConditions, true_shifts_hz

        p = self.p
        cond = TrueConditions(temperature_k=self.temperature_k(), b_t=self.b_true(),
                              nbar=tuple(p.nbar), pressure_pa=p.pressure_pa,
                              micromotion_ratios=tuple(p.micromotion_ratios))
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

    def _apply(self, kind: str, value: float, duration_s: float):
        """Carry out one fault or change (a SimPy sub-process for timed ones)."""
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
            self.stick_shutter(True)
            self._note("shutter_stuck")
            if duration_s:
                yield self.env.timeout(duration_s)
                self.stick_shutter(False)
                self._note("shutter_fixed")
        elif kind == "q0":
            self.p.q0_hz = value
            self._note("q0", q0_hz=value)
        else:
            raise ValueError(f"unknown twin event kind {kind!r}")

    def _scheduled(self, at_s: float, kind: str, value: float, duration_s: float):
        yield self.env.timeout(max(0.0, at_s - self.env.now))
        yield from self._apply(kind, value, duration_s)

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
                                   delta_hz + p.light_shift_hz)
        else:
            coh = self._fast.excitation(delta_hz, phase_sign)
        return 0.5 + self.contrast * (coh - 0.5)

    def _interrogate(self) -> float:
        """Evaluate the interrogation just finished: excitation probability, truth recorded.

        Runs once per clock cycle, so `b_true`, `laser_offset_hz` and `excitation` are
        inlined here (same formulas, same random draws); tests hold them equal.
        """
        t = self.env.now
        p = self.p
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
        # laser_offset_hz(t): the cavity (cached per instant) plus the double-pass AOM
        cavity = self._cavity_hz if t == self._cavity_t else self.cavity_offset_hz(t)
        nu = cavity + 2.0 * (self.aom_hz - p.aom_center_hz)
        # The laser addresses the nearest line; lines sit at c + Q0 w_k + z_k B and are
        # hundreds of kHz apart, so the nearest one follows from (nu - c) / B by bisection.
        if abs(b_probe) > 1e-12:
            k = self._z_order[bisect.bisect(self._z_mid, (nu - p.common_shift_hz) / b_probe)]
        else:
            centres = self.line_centres_hz(b_probe)
            k = min(range(6), key=lambda i: abs(nu - centres[i]))
        centre = p.common_shift_hz + p.q0_hz * self._qw[k] + self._z[k] * b_probe
        if self.quenched:
            centre += p.quench_light_shift_hz
        delta = nu - centre
        phase_sign = 1 if (self.aom_phase_turns % 1.0) < 0.5 else -1
        tr = self.truth
        tr.n += 1
        tr.sum_detuning_hz += delta
        tr.sum_b_t += b
        tr.per_line[k] += delta
        tr.per_line_n[k] += 1
        self.last_detuning_hz = delta
        fast = self._fast
        if p.exact or p.light_shift_hz or not -fast.max_detuning_hz < delta < fast.max_detuning_hz:
            prob = self.excitation(delta, phase_sign)
        else:   # excitation(): the calibrated fast path (hyper_ramsey.FastHyperRamsey)
            prob = 0.5 + self.contrast * (
                0.5 * (1.0 - phase_sign * fast.sign * math.sin(fast.k * delta)) - 0.5)
        if self.quenched:  # stray 854 nm light empties D5/2 during the free evolution
            prob *= math.exp(-p.ramsey_time_s / p.quench_tau_s)
        return prob

    def detect(self, gate_s: float) -> int:
        """Run the interrogation just finished and return the photon counts in the gate."""
        if not self.ion_present:
            return self._counts(False)
        if self.aom_amplitude <= 0.0:
            return self._counts(True)  # no clock light: the ion stays in S and scatters
        if self.rng.random() >= self._interrogate():
            return self._counts(True)
        # shelved in D5/2; it may decay during detection and scatter for the rest (tau_D)
        if self.rng.random() < self._decay_p:
            frac = self.rng.random()
            return self._counts(False) + int(self.nprng.poisson(self.p.bright_counts * frac))
        return self._counts(False)

    def expected_dark(self) -> float:
        """Deterministic twin: the expectation value of the dark outcome (no random draw)."""
        if not self.ion_present:
            return 1.0
        if self.aom_amplitude <= 0.0:
            return 0.0
        return self._interrogate()
