"""The ion's secular motion in the twin: thermal states, heating, carrier and sideband pulses.

What the characterisation measurements of DOMAIN §3 see (seed Table I, Figs. 2, 3 and 8,
supplement Eqs. 3-4), with the truth exposed (`Motion.truth`) so that an analysis can be
graded against it. Defaults are the seed's.

**States.** After Doppler cooling each secular mode i (x, y, z: 3.531, 3.166, 2.580 MHz) is
thermal with nbar_D,i (the seed's 2.6, 2.6, 4.8, its Eqs. 3-4 result); after 3D sideband
cooling thermal with n0_i (the mid-points of Table I's ranges 0-0.03, 0-0.04, 0-0.11). In a
dark time t the modes heat at ndot_i (Table I: 0.43, 0.53, 1.31 quanta/s) and stay thermal:
nbar_i(t) = n_i + ndot_i t (DOMAIN §3; a thermal state coupled to a hot bath stays thermal).
With t-bar = 44 ms these give the world's probe occupations ``TwinParams.nbar``
(0.034, 0.043, 0.113), so the clock's secular shift and these measurements share one truth.

**Couplings** (DOMAIN §3). A pulse of beam b (1, 2, 3: Lamb–Dicke parameters
`ionclock.physics.sidebands.beam_eta_matrix`, seed convention by default) on the carrier or on the
order-s sideband of mode j drives |n> -> |n + s e_j> with the Rabi frequency

    Omega_n = Omega_b c prod_i F_i(n_i),  F_j = Omega_{n_j,n_j+s}(eta_bj) / Omega0 (Laguerre),
                                           F_i = exp(-eta_bi^2 / 2) L_{n_i}(eta_bi^2), i != j,

the spectator modes entering through their own Debye–Waller factor (this is seed Eqs. 3-4
for the carrier: the thermal mean of F_i is exp(-eta^2 (nbar_i + 1/2)) exactly). `c` scales
the coupling (the micromotion model passes the Bessel factor J_m(beta) of a micromotion
sideband). Omega_b is the bare Rabi frequency of beam b (the ground-state carrier without
its Debye–Waller factor): beam 2 250 kHz (carrier pi time ~2 us, DOMAIN §1); beams 1 and 3
chosen so that the thermal mean Rabi frequencies are the seed's Fig. 8 values, 2.172 and
3.464 MHz after Doppler cooling, 2.201 and 3.488 MHz after sideband cooling.

**Excitation.** A pulse of length t detuned by Delta from the resonance excites

    P(t) = sum_n p(n) Omega_n^2 / (Omega_n^2 + Delta^2) sin^2(sqrt(Omega_n^2 + Delta^2) t / 2),

p(n) = prod_i p_th(n_i; nbar_i), summed over the Fock states whose thermal weight is not
below the tail (each mode cut where its tail is < 1e-6), vectorised in numpy. `measure`
draws the binomial number of dark shots from the Generator it is given (sim_instruments.shots).

Two forms where the analysis and the physics part (decision 0801): ``spectators=True``
(default; physics, and the seed's Eqs. 3-4) or False, the one-mode model the thermometry
fit uses; and the Lamb–Dicke convention of beams 1 and 3, ``seed`` (default: one eta,
0.0365, for every pair of Eqs. 3-4) or ``geometric``.

Not modelled: off-resonant excitation of other lines, the non-thermal distribution the seed
suspects right after sideband cooling, heating during the pulse itself (~100 us against
~1 quantum/s), motion during detection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ionclock.physics.shifts import HEATING_RATES, MEAN_PROBE_DELAY_S, N0_RANGES, SECULAR_FREQS_HZ
from ionclock.physics.sidebands import (
    ETA_BEAM2_SEED,
    ETA_CONVENTIONS,
    beam_eta_matrix,
    sideband_rabi_frequency,
    thermal_cutoff,
    thermal_populations,
)
from ionclock.sim_instruments.shots import dark_counts

MODES = ("x", "y", "z")
BEAMS = (1, 2, 3)
COOLING = ("doppler", "sideband")
#: The seed's occupations after Doppler cooling (supplement Eqs. 3-4, Fig. 8): 2.6, 2.6, 4.8.
NBAR_DOPPLER_SEED = (2.6, 2.6, 4.8)
#: Mid-points of the seed's Table I n0 ranges: the occupations right after sideband cooling.
N0_SEED = tuple(0.5 * (lo + hi) for lo, hi in N0_RANGES)
#: Bare carrier Rabi frequencies Omega_b / 2 pi (Hz) of beams 1, 2, 3 (module docstring).
CARRIER_RABI_HZ = (2.20567e6, 250e3, 3.49281e6)
TAIL = 1e-6                 # thermal weight left out per mode
CHUNK = 1 << 21             # Fock states x pulses evaluated at once (memory bound)


@dataclass(frozen=True)
class MotionParams:
    """The twin's true motional parameters (SI; x, y, z order; defaults the seed's)."""

    secular_hz: tuple[float, float, float] = SECULAR_FREQS_HZ
    nbar_doppler: tuple[float, float, float] = NBAR_DOPPLER_SEED
    n0: tuple[float, float, float] = N0_SEED
    heating_rate: tuple[float, float, float] = tuple(r for r, _ in HEATING_RATES)
    eta_convention: str = "seed"
    eta_beam2: tuple[float, float, float] = ETA_BEAM2_SEED
    eta: tuple | None = None          # 3 x 3 override: beams 1, 2, 3 (rows) on x, y, z
    carrier_rabi_hz: tuple[float, float, float] = CARRIER_RABI_HZ
    spectators: bool = True           # spectator modes' Debye–Waller factors (physics)
    tail: float = TAIL

    def __post_init__(self) -> None:
        for name in ("secular_hz", "nbar_doppler", "n0", "heating_rate", "eta_beam2",
                     "carrier_rabi_hz"):
            v = getattr(self, name)
            if len(v) != 3 or not all(math.isfinite(x) and x >= 0 for x in v):
                raise ValueError(f"{name}: expected three finite values >= 0, got {v!r}")
        if self.eta_convention not in ETA_CONVENTIONS:
            raise ValueError(f"eta_convention {self.eta_convention!r}: expected one of "
                             f"{', '.join(ETA_CONVENTIONS)}")
        if self.eta is not None:
            e = np.asarray(self.eta, dtype=float)
            if e.shape != (3, 3) or not np.all((e >= 0) & (e < 1)):
                raise ValueError("eta: expected 3 x 3 Lamb–Dicke parameters in [0, 1)")
        if not 0.0 < self.tail < 0.01:
            raise ValueError(f"tail {self.tail!r}: expected a small positive weight")


def _mode_index(mode) -> int:
    if mode in MODES:
        return MODES.index(mode)
    if isinstance(mode, (int, np.integer)) and 0 <= mode < 3:
        return int(mode)
    raise ValueError(f"mode {mode!r}: expected one of x, y, z (or 0, 1, 2)")


def _beam_row(beam) -> int:
    if beam in BEAMS:
        return BEAMS.index(beam)
    raise ValueError(f"beam {beam!r}: expected 1, 2 or 3")


class Motion:
    """The three secular modes' thermal states and the pulses that read them (module docstring).

    Pure in its parameters: nothing here draws a random number except `measure`, and that
    from the Generator passed in.
    """

    def __init__(self, params: MotionParams | None = None):
        self.p = params or MotionParams()
        p = self.p
        self.eta = (np.asarray(p.eta, dtype=float) if p.eta is not None
                    else beam_eta_matrix(p.eta_convention, p.eta_beam2))

    # --- states ---------------------------------------------------------------------------
    def nbar(self, cooling: str = "sideband", dark_time_s: float = 0.0) -> np.ndarray:
        """True mean occupations (x, y, z) after `cooling` and a dark time (s): n + ndot t."""
        if cooling not in COOLING:
            raise ValueError(f"cooling {cooling!r}: expected one of {', '.join(COOLING)}")
        if not (math.isfinite(dark_time_s) and dark_time_s >= 0):
            raise ValueError(f"dark_time_s {dark_time_s!r}: expected a time >= 0")
        start = self.p.nbar_doppler if cooling == "doppler" else self.p.n0
        return np.asarray(start, dtype=float) + np.asarray(self.p.heating_rate) * dark_time_s

    def nbar_during_probe(self, mean_delay_s: float = MEAN_PROBE_DELAY_S) -> np.ndarray:
        """Occupations during the clock probe, n0 + ndot t-bar (the secular row's truth)."""
        return self.nbar("sideband", mean_delay_s)

    # --- couplings ------------------------------------------------------------------------
    def _rabi_distribution(self, beam, mode, sideband: int, nbar) -> tuple[np.ndarray,
                                                                          np.ndarray]:
        """(Omega_n / Omega_b, p(n)) over the Fock states kept (flattened, 3D)."""
        row = _beam_row(beam)
        s = int(sideband)
        j = _mode_index(mode)     # the carrier's too: without spectators, only mode j counts
        eta = self.eta[row]
        factors, weights = [], []
        for i in range(3):
            if i != j and not self.p.spectators:
                factors.append(np.ones(1))
                weights.append(np.ones(1))
                continue
            n_max = thermal_cutoff(float(nbar[i]), self.p.tail)
            order = s if i == j else 0
            factors.append(sideband_rabi_frequency(np.arange(n_max), order, float(eta[i])))
            weights.append(thermal_populations(float(nbar[i]), n_max))
        f = (factors[0][:, None, None] * factors[1][None, :, None]
             * factors[2][None, None, :]).ravel()
        w = (weights[0][:, None, None] * weights[1][None, :, None]
             * weights[2][None, None, :]).ravel()
        keep = w > self.p.tail * 1e-6      # states that cannot matter at the 1e-12 level
        # states with equal Rabi frequencies (modes with equal eta) are one term
        f, inverse = np.unique(np.round(f[keep], 13), return_inverse=True)
        return f, np.bincount(inverse.ravel(), weights=w[keep], minlength=len(f))

    def excitation(self, pulse_s, *, beam: int = 2, mode="z", sideband: int = 0,
                   cooling: str = "sideband", dark_time_s: float = 0.0,
                   detuning_hz: float = 0.0, coupling: float = 1.0,
                   nbar=None) -> np.ndarray:
        """Dark (D5/2) probability after a pulse of each length in `pulse_s` (s).

        `sideband`: 0 carrier, -1 red, +1 blue (any order) of `mode` (x, y, z); `beam` 1, 2
        or 3; the state after `cooling` and `dark_time_s` unless `nbar` (x, y, z) is given;
        `detuning_hz` from the resonance; `coupling` scales the Rabi frequency.
        """
        t = np.atleast_1d(np.asarray(pulse_s, dtype=float))
        if np.any(t < 0) or not np.all(np.isfinite(t)):
            raise ValueError("pulse lengths must be finite and >= 0 s")
        nb = self.nbar(cooling, dark_time_s) if nbar is None else np.asarray(nbar, float)
        f, w = self._rabi_distribution(beam, mode, sideband, nb)
        om = 2 * math.pi * self.p.carrier_rabi_hz[_beam_row(beam)] * coupling * f
        delta = 2 * math.pi * detuning_hz
        gen = np.sqrt(om * om + delta * delta)
        amp = np.divide(om * om, gen * gen, out=np.zeros_like(om), where=gen > 0)
        out = np.empty_like(t)
        step = max(1, CHUNK // max(len(f), 1))
        for k in range(0, len(t), step):
            tt = t[k:k + step]
            out[k:k + step] = (np.sin(0.5 * np.outer(tt, gen)) ** 2) @ (w * amp)
        return np.clip(out, 0.0, 1.0)

    def mean_rabi_frequency(self, *, beam: int = 2, mode="z", sideband: int = 0,
                            cooling: str = "sideband", dark_time_s: float = 0.0) -> float:
        """Thermal mean of Omega_n (rad/s): for the carrier, Omega_b prod exp(-eta^2 (n + 1/2)).

        The quantity a sine fit to short flops estimates, and the seed's Eqs. 3-4 relate.
        """
        nb = self.nbar(cooling, dark_time_s)
        f, w = self._rabi_distribution(beam, mode, sideband, nb)
        return float(2 * math.pi * self.p.carrier_rabi_hz[_beam_row(beam)] * (f @ w) / w.sum())

    def measure(self, pulse_s, shots, rng: np.random.Generator, *,
                detection_error: float = 0.0, **pulse) -> np.ndarray:
        """Numbers of dark shots out of `shots` per pulse length (binomial; `excitation` args)."""
        return dark_counts(self.excitation(pulse_s, **pulse), shots, rng, detection_error)

    # --- truth ----------------------------------------------------------------------------
    def truth(self, mean_delay_s: float = MEAN_PROBE_DELAY_S) -> dict:
        """The true motional parameters (x, y, z) an analysis is graded against."""
        p = self.p
        return {"secular_hz": tuple(p.secular_hz), "nbar_doppler": tuple(p.nbar_doppler),
                "n0": tuple(p.n0), "heating_rate": tuple(p.heating_rate),
                "nbar_probe": tuple(self.nbar_during_probe(mean_delay_s)),
                "mean_delay_s": mean_delay_s, "eta": self.eta.tolist(),
                "eta_convention": p.eta_convention if p.eta is None else "given",
                "carrier_rabi_hz": tuple(p.carrier_rabi_hz), "spectators": p.spectators}
