"""Twin of the 111/113Cd+ microwave clock: the cloud's ground-state HFS probed by the microwave.

The world a Cd+ run drives through its instruments (DOMAIN §4, seed 004):

- The E8257D twin (`ionclock.sim_instruments.microwave.SimAgilent8257D`) calls
  `microwave_changed(frequency_hz, power_dbm, on)`; the microwave that reaches the ions is
  that setting times (1 + y_LO(t)), the synthesiser's reference oscillator (quartz/maser):
  initial fractional offset, linear drift, random-walk FM and white FM (per cycle, averaged
  over the Ramsey time: h / sqrt(T)).
- The cycle plays free-running with period `cycle_time_s`, as the lab's pulse generator does
  in internal-trigger mode: preparation (sympathetic cooling, optical pumping into F=0),
  two microwave pi/2 pulses of `pi2_time_s` separated by the free evolution `ramsey_time_s`,
  then detection: the 214.5 nm light on S1/2(F=1) -> P3/2(F=2) for `detection_s`, with the
  counter's TRIG edges at its start and after its end (the SR400's gate opens on the first,
  the second ends the count period: `ionclock.drivers.sr400.SR400.trigger_offsets`).
- The lines: F=0,m=0 -> F=1,m=0 (the clock, its second-order Zeeman shift K0 B^2, seed 004
  Eq. 18) and F=0,m=0 -> F=1,m=+-1 (first order, +-(g_J + g_I) muB B / 2h), from the exact
  Breit-Rabi energies of `ionclock.physics.cadmium.zeeman_pm1_lines_hz`. A probe excites the
  line nearest to the microwave (the others are > 100 kHz away at 0.08 G, ~1e4 Rabi widths).
- Ramsey excitation of one ion, exact for square pulses (`cadmium.ramsey_probability`:
  Ramsey, Phys. Rev. 78, 695 (1950); Vanier & Audoin, The Quantum Physics of Atomic
  Frequency Standards, 1989, ch. 5):
  P = 4 (W/W')^2 sin^2(W' tau / 2) [cos(W' tau / 2) cos(D T / 2)
      - (D / W') sin(W' tau / 2) sin(D T / 2)]^2,  W' = sqrt(W^2 + D^2), W tau = pi / 2,
  D = 2 pi (detuning). The cloud's decoherence (collisions, field inhomogeneity over the
  cloud) and imperfect pumping leave a fringe contrast C = C0 exp(-T / T2):
  p = C P + (1 - C) / 2.
- Readout: N ions in the cloud, N_F1 ~ Binomial(N, p) end in F=1 (projection noise); the
  detected photons are Poisson with mean N_F1 eta + background, eta = bright_counts / N.
- The field: B(t) = b_true_t + drift t + white noise per cycle (pT), and field steps; the
  cloud may be lost for a while (counts fall to the background: `cloud_loss`).

Every random draw comes from the world's own generator, ``np.random.default_rng([seed,
CD_STREAM])``; nothing here touches the 40Ca+ world or its streams.

Truth (`take_truth`): per probe, the microwave's detuning from the line it addressed and
from the 0-0 line, the true field and the true SOZS; the run averages them per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ionclock.physics import cadmium
from ionclock.physics.cadmium import ramsey_probability

CD_STREAM = 1613   # the world's stream constant: np.random.default_rng([seed, CD_STREAM])
TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class CdTwinParams:
    """The Cd+ clock twin's physics and timing (SI; the seed's cloud by default)."""

    isotope: int = 113
    nu0_offset_hz: float = 0.0          # true unperturbed line minus the seed's HFS value
    n_ions: int = 400_000               # seed 004: ~4e5 Cd+
    bright_counts: float = 10_000.0     # mean detected photons with every ion in F=1
    background_counts: float = 1_500.0  # per detection window (scatter, dark counts)
    contrast0: float = 0.95             # pumping and pulse-area efficiency
    t2_s: float = 10.0                  # the cloud's coherence time
    ramsey_time_s: float = 0.5
    pi2_time_s: float = 0.010
    prepare_s: float = 0.30             # cooling + optical pumping before the first pulse
    detection_s: float = 0.15
    cycle_time_s: float = 1.0
    gate_delay_s: float = 0.0           # the counter's gate opens this long after its TRIG
    b_t: float = 8.0e-6                 # 0.08 G
    b_drift_t_s: float = 0.5e-9 / 3600.0
    b_noise_t: float = 1e-12            # white, per cycle
    lo_offset: float = 1e-11            # reference oscillator, fractional, at t = 0
    lo_drift_per_s: float = 5e-16
    lo_white: float = 1.0e-13           # white FM, sigma_y(1 s)
    lo_random_walk: float = 2e-15       # random-walk FM, per sqrt(s)
    g_i_convention: str = "seed"
    events: tuple = ()                  # (at_s, kind, value, duration_s): b_step, cloud_loss

    def __post_init__(self):
        cadmium.isotope(self.isotope)
        cadmium.g_i(self.isotope, self.g_i_convention)
        busy = self.prepare_s + 2 * self.pi2_time_s + self.ramsey_time_s + self.detection_s
        if busy >= self.cycle_time_s:
            raise ValueError(f"cycle_time_s {self.cycle_time_s} s is shorter than preparation, "
                             f"pulses, Ramsey time and detection ({busy:.3f} s)")
        if not 0.0 < self.contrast0 <= 1.0 or self.t2_s <= 0 or self.n_ions < 1:
            raise ValueError("contrast0 must be in (0, 1], t2_s > 0, n_ions >= 1")
        if self.bright_counts <= 0 or self.background_counts < 0:
            raise ValueError("bright_counts must be > 0 and background_counts >= 0")
        for at, kind, _value, _duration in self.events:
            if kind not in ("b_step", "cloud_loss"):
                raise ValueError(f"unknown Cd twin event {kind!r} (b_step, cloud_loss)")

    @property
    def contrast(self) -> float:
        """Ramsey fringe contrast C = C0 exp(-T / T2)."""
        return self.contrast0 * math.exp(-self.ramsey_time_s / self.t2_s)

    @property
    def rabi_rad_s(self) -> float:
        """Rabi frequency of the pi/2 pulses (rad/s)."""
        return math.pi / (2.0 * self.pi2_time_s)

    @property
    def ramsey_start_s(self) -> float:
        """Offset of the first pi/2 pulse in the cycle."""
        return self.prepare_s

    @property
    def detection_start_s(self) -> float:
        """Offset of the detection window in the cycle."""
        return self.prepare_s + 2 * self.pi2_time_s + self.ramsey_time_s


@dataclass
class ProbeTruth:
    """What one probe really did (for the run's truth table)."""

    t: float
    line: int                    # -1, 0, +1: the m_F of F=1 the microwave addressed
    detuning_hz: float           # microwave minus the line it addressed
    clock_detuning_hz: float     # microwave minus the 0-0 line
    b_t: float
    sozs_hz: float               # true SOZS of the 0-0 line
    lo_fractional: float


class CdClockWorld:
    """The Cd+ clock's physics on a SimPy environment; the instruments' twins attach to it."""

    def __init__(self, env, params: CdTwinParams | None = None, seed: int = 0):
        self.env = env
        self.p = params or CdTwinParams()
        self.seed = int(seed)
        self.rng = np.random.default_rng([self.seed, CD_STREAM])
        self.nu0_hz = cadmium.isotope(self.p.isotope).hfs_s_hz + self.p.nu0_offset_hz
        self._ttl: dict[str, list] = {}
        self.mw_hz = 0.0
        self.mw_dbm = -135.0
        self.mw_on = False
        self._counts: dict[float, int] = {}   # detection start -> photons of that window
        self._truth: list[ProbeTruth] = []
        self._lo_rw = 0.0
        self._b_step = 0.0
        self._lost_until = -math.inf
        self.on_note = None                   # callback(t, kind, **detail) for injected events
        self.cycle_index = 0
        self._proc = env.process(self._cycles())
        for at, kind, value, duration in self.p.events:
            env.process(self._event(at, kind, value, duration))

    # --- instrument hooks ------------------------------------------------------------------
    def microwave_changed(self, frequency_hz: float, power_dbm: float, on: bool) -> None:
        """The E8257D twin's output changed (its `_changed` hook)."""
        self.mw_hz, self.mw_dbm, self.mw_on = float(frequency_hz), float(power_dbm), bool(on)

    def wire_ttl(self, line: str, callback) -> None:
        """Connect `callback(t)` to TTL `line` (the SR400 twin wires ``counter_trig``)."""
        self._ttl.setdefault(line, []).append(callback)

    def settle(self) -> None:
        """Nothing to deliver late: the cycle process hands out its edges as they fall due."""

    def photon_counts(self, t_open: float, width_s: float) -> int:
        """Photons counted in the gate [t_open, t_open + width): the cycle's, or background.

        A gate that covers a cycle's detection window gets that window's photons (drawn at the
        end of its Ramsey sequence); any other gate only the background rate.
        """
        p = self.p
        for t_det, counts in list(self._counts.items()):
            if t_open <= t_det + 1e-9 and t_open + width_s >= t_det + p.detection_s - 1e-9:
                del self._counts[t_det]
                extra = width_s - p.detection_s
                if extra > 1e-9:
                    counts += int(self.rng.poisson(p.background_counts * extra / p.detection_s))
                return counts
        return int(self.rng.poisson(p.background_counts * width_s / p.detection_s))

    # --- the physics -----------------------------------------------------------------------
    def b_true(self, t: float) -> float:
        """The field at the ions (T), without the per-cycle white noise."""
        return self.p.b_t + self.p.b_drift_t_s * t + self._b_step

    def lines_hz(self, b_t: float) -> tuple[float, float, float]:
        """m=-1, 0-0 and m=+1 line frequencies (Hz) at field `b_t`."""
        return cadmium.zeeman_pm1_lines_hz(self.p.isotope, b_t, self.nu0_hz,
                                           self.p.g_i_convention)

    def sozs_hz(self, b_t: float) -> float:
        """True SOZS of the 0-0 line at `b_t` (Hz), exact Breit-Rabi."""
        return self.lines_hz(b_t)[1] - self.nu0_hz

    def lo_fractional(self, t: float) -> float:
        """Reference oscillator's fractional frequency now, without its white part."""
        return self.p.lo_offset + self.p.lo_drift_per_s * t + self._lo_rw

    def take_truth(self) -> list[ProbeTruth]:
        """Hand over (and forget) the truth of the probes since the last call."""
        out, self._truth = self._truth, []
        return out

    def cloud_present(self, t: float) -> bool:
        """False while a `cloud_loss` event holds."""
        return t >= self._lost_until

    def _note(self, kind: str, **detail) -> None:
        if self.on_note is not None:
            self.on_note(self.env.now, kind, **detail)

    def _event(self, at: float, kind: str, value: float, duration: float):
        yield self.env.timeout(max(0.0, at - self.env.now))
        if kind == "b_step":
            self._b_step += value
            self._note("b_step", value=value)
        elif kind == "cloud_loss":
            self._lost_until = self.env.now + duration
            self._note("cloud_loss", duration_s=duration)

    def _probe(self, t: float) -> int:
        """One Ramsey probe ending now: the detected photons of its detection window."""
        p = self.p
        rng = self.rng
        self._lo_rw += p.lo_random_walk * math.sqrt(p.cycle_time_s) * rng.standard_normal()
        y = self.lo_fractional(t) + p.lo_white / math.sqrt(p.ramsey_time_s) * (
            rng.standard_normal())
        b = self.b_true(t) + p.b_noise_t * rng.standard_normal()
        lines = self.lines_hz(b)
        f = self.mw_hz * (1.0 + y)
        k = min(range(3), key=lambda i: abs(f - lines[i]))
        det = f - lines[k]
        self._truth.append(ProbeTruth(t, k - 1, det, f - lines[1], b, lines[1] - self.nu0_hz, y))
        if not (self.mw_on and self.cloud_present(t)):
            n_f1 = 0
        else:
            prob = ramsey_probability(det, p.ramsey_time_s, p.rabi_rad_s, p.pi2_time_s)
            c = p.contrast
            n_f1 = int(rng.binomial(p.n_ions, c * prob + 0.5 * (1.0 - c)))
        mean = n_f1 * p.bright_counts / p.n_ions + p.background_counts
        return int(rng.poisson(mean))

    def _cycles(self):
        """The free-running cycle: pulses, then detection with the counter's two TRIG edges."""
        p = self.p
        env = self.env
        t_det = p.detection_start_s
        close = p.gate_delay_s + p.detection_s + 50e-6 + 1e-3 * (p.gate_delay_s + p.detection_s)
        while True:
            t0 = self.cycle_index * p.cycle_time_s
            yield env.timeout(t0 + t_det - env.now)
            self._counts[env.now + p.gate_delay_s] = self._probe(env.now)
            for cb in self._ttl.get("counter_trig", ()):
                cb(env.now)
                cb(env.now + close)
            self.cycle_index += 1
            # keep only the windows a gate may still ask for
            for t in [t for t in self._counts if t < env.now - 10 * p.cycle_time_s]:
                del self._counts[t]
