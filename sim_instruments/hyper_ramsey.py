"""Hyper-Ramsey interrogation of a two-level ion (DOMAIN §5).

Sequence: pi/2 (tau, phase 0) -> free evolution T -> pi (2 tau, phase pi) -> pi/2 (tau,
phase +/-pi/2), with a frequency step during the pulses that compensates the probe light
shift. The exact excitation probability is

    p = |<e| U(tau, +/-pi/2) U(2 tau, pi) V(T) U(tau, 0) |g>|^2           (DOMAIN §5)

with the two-level pulse propagator U(t, phi) and free evolution
V(T) = diag(exp(i delta T / 2), exp(-i delta T / 2)) (delta angular).

`excitation_exact` evaluates that product with plain complex arithmetic (a 2x2 product is
faster without numpy). `FastHyperRamsey` is the documented fast path for the twin's hot loop:
p = 1/2 [1 - s sin(2 pi delta T_eff)] where T_eff is fitted once to the exact slope at
delta = 0 and the sign s to the exact result; it holds for |delta| << 1/tau and no residual
light shift, which `FastHyperRamsey.valid` reports (the twin falls back to the exact path
otherwise).
"""

from __future__ import annotations

import cmath
import math

TWO_PI = 2.0 * math.pi


def _pulse(t: float, phi: float, rabi: float, det: float):
    """Propagator U(t, phi) for Rabi frequency `rabi` and detuning `det` (both rad/s).

    H = -(det/2) sigma_z + (rabi/2)(cos phi sigma_x + sin phi sigma_y);
    U = cos(W t/2) - i sin(W t/2) n.sigma, W = sqrt(rabi^2 + det^2).
    Returns the matrix as (a, b, c, d) = [[a, b], [c, d]].
    """
    w = math.hypot(rabi, det)
    if w == 0.0:
        return 1.0 + 0j, 0j, 0j, 1.0 + 0j
    c = math.cos(0.5 * w * t)
    s = math.sin(0.5 * w * t)
    nx, ny, nz = rabi * math.cos(phi) / w, rabi * math.sin(phi) / w, -det / w
    return (complex(c, -s * nz), -1j * s * complex(nx, -ny),
            -1j * s * complex(nx, ny), complex(c, s * nz))


def _apply(m, v):
    a, b, c, d = m
    return a * v[0] + b * v[1], c * v[0] + d * v[1]


def excitation_segments(segments) -> float:
    """Excitation probability after arbitrary light segments, starting in |g> (pulse level).

    segments: iterable of (duration_s, rabi_rad_s, detuning_hz, phase_rad), in time order:
    the light the ion actually sees during each part of the interrogation. A segment with
    zero Rabi frequency is free evolution V(t) at its detuning. Each segment is the two-level
    propagator U(t, phi) of `_pulse` (H = -(det/2) sigma_z + (rabi/2)(cos phi sigma_x +
    sin phi sigma_y)), in the frame of the laser as it runs in that segment, as in DOMAIN §5:
    p = |<e| U_n ... U_1 |g>|^2. With the hyper-Ramsey segments (pi/2 at 0, T, pi at pi,
    pi/2 at +-pi/2) this is `excitation_exact`.
    """
    v0, v1 = 1.0 + 0j, 0j
    for duration, rabi, det_hz, phase in segments:
        a, b, c, d = _pulse(duration, phase, rabi, TWO_PI * det_hz)
        v0, v1 = a * v0 + b * v1, c * v0 + d * v1
    return abs(v1) ** 2


def excitation_exact(delta_hz: float, phase_sign: int, pi_time_s: float, ramsey_time_s: float,
                     pulse_detuning_hz: float | None = None) -> float:
    """Exact hyper-Ramsey excitation probability.

    delta_hz: laser minus line centre during the free evolution (Hz).
    phase_sign: +1 or -1, the final pulse's phase +/-pi/2.
    pi_time_s: duration of the pi pulse (the pi/2 pulses last half of it).
    pulse_detuning_hz: detuning during the pulses (Hz); equals delta_hz when the frequency
        step exactly compensates the probe light shift.
    """
    tau = 0.5 * pi_time_s
    rabi = math.pi / pi_time_s            # a pi pulse of length pi_time_s: rabi * t = pi
    det_p = TWO_PI * (delta_hz if pulse_detuning_hz is None else pulse_detuning_hz)
    det_f = TWO_PI * delta_hz
    v = (1.0 + 0j, 0j)
    v = _apply(_pulse(tau, 0.0, rabi, det_p), v)
    v = (v[0] * cmath.exp(0.5j * det_f * ramsey_time_s),
         v[1] * cmath.exp(-0.5j * det_f * ramsey_time_s))
    v = _apply(_pulse(2 * tau, math.pi, rabi, det_p), v)
    v = _apply(_pulse(tau, phase_sign * 0.5 * math.pi, rabi, det_p), v)
    return abs(v[1]) ** 2


class FastHyperRamsey:
    """Fast path p = 1/2 [1 - s sin(2 pi delta T_eff)], calibrated against the exact result."""

    def __init__(self, pi_time_s: float, ramsey_time_s: float):
        self.pi_time_s = pi_time_s
        self.ramsey_time_s = ramsey_time_s
        h = 1e-4  # Hz: small against 1/T, large against rounding
        slope = (excitation_exact(h, +1, pi_time_s, ramsey_time_s)
                 - excitation_exact(-h, +1, pi_time_s, ramsey_time_s)) / (2 * h)
        # d p / d delta at 0 = -s pi T_eff  ->  s = -sign(slope), T_eff = |slope| / pi
        self.sign = -1.0 if slope > 0 else 1.0
        self.t_eff = abs(slope) / math.pi
        self.k = TWO_PI * self.t_eff   # rad per Hz of detuning
        # Range where the fast path matches the exact one to 1e-3 in probability.
        self.max_detuning_hz = 0.02 / pi_time_s

    def valid(self, delta_hz: float) -> bool:
        """True where the fast path is within 1e-3 of the exact probability."""
        return -self.max_detuning_hz < delta_hz < self.max_detuning_hz

    def excitation(self, delta_hz: float, phase_sign: int) -> float:
        """Excitation probability for the final pulse phase sign (+1/-1)."""
        return 0.5 * (1.0 - phase_sign * self.sign * math.sin(self.k * delta_hz))
