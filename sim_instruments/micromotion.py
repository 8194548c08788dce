"""Excess micromotion in the twin: sidebands against compensation voltage, the optimum's drift.

What the micromotion measurements of DOMAIN §3 see (seed supplement Eq. 5, Fig. 11), with
the truth exposed (`Micromotion.truth`).

**Model.** Stray fields push the ion off the RF null; the compensation electrodes' voltages
V_j push it back. The micromotion modulation index seen by beam i (three orthogonal beams)
is

    beta_i(V) = sqrt( (sum_j M_ij (V_j - V0_j))^2 + beta_floor_i^2 ),

linear in the residual displacement (M: rad per volt; diagonal by default, so beam i reads
electrode i) plus what no DC voltage removes (an RF phase difference between the electrodes:
micromotion in quadrature with the displacement part, hence added in quadrature). The
resonance at +-m Omega_RF from the carrier then has the Rabi frequency Omega J_m(beta) and the
carrier Omega J0(beta): the sideband/carrier ratio of Rabi frequencies is
R_i = J1(beta_i) / J0(beta_i) ~ beta_i / 2, and R_i^2 is a parabola in V_j near the optimum
(what the compensation scan fits).

**Drift.** After each LN2 refill (the world's cryostat, `world.cryostat.refills()`) the
optimum V0 moves: refill k sets a new offset d_k ~ N(0, refill_shift_v) per electrode from
its own stream ``numpy.random.default_rng([seed, 41, k])``, approached as the temperatures
recover, V0(t) = V0 + d_k + (d_{k-1} - d_k) exp(-(t - t_k) / tau) with the cryostat's
recovery time. The applied voltages stay where they were set (`set_voltages`), so R_i and
the EMM shift grow after a refill until the voltages are re-optimised (the seed: "EMM
suppression was performed once ... after each refilling").

**Shift.** `emm_shift` is `ionclock.physics.shifts.true_shifts_hz`'s ``emm`` (DOMAIN §2, seed Eq. 5,
the same function the world and the budget use) at the true R_i and the trap drive
frequency. Convention (decision 0801): ``seed`` (default) puts the measured Rabi-frequency
ratio R_i = J1/J0 into Eq. 5; ``physical`` puts beta_i / 2, with which Eq. 5 is exactly the
time dilation of the micromotion velocity. They differ by O(beta^2 / 8), 1e-4 at R = 0.03.

Pulses (`excitation`, `measure`) ride on the motional state (`sim_instruments.motion`): the
coupling J_|m|(beta_i) scales the thermal carrier of beam i. Nothing here draws from the
world's random streams; `measure` draws from the Generator it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from ionclock.physics.constants import NU0_CA, RF_MAGIC_HZ
from ionclock.physics.shifts import TrueConditions, true_shifts_hz
from ionclock.sim_instruments.motion import BEAMS, Motion
from ionclock.sim_instruments.shots import dark_counts

RATIO_CONVENTIONS = ("seed", "physical")
STREAM = 41                 # [seed, 41, k]: the optimum's offset after refill k


@dataclass(frozen=True)
class MicromotionParams:
    """True micromotion parameters (SI: V, rad, Hz); beams 1, 2, 3 and electrodes 1, 2, 3."""

    v0_v: tuple[float, float, float] = (0.80, -0.45, 1.20)   # optimum before any refill
    beta_per_v: tuple = ((0.05, 0.0, 0.0), (0.0, 0.05, 0.0), (0.0, 0.0, 0.05))
    beta_floor: tuple[float, float, float] = (0.02, 0.02, 0.02)  # R_min ~ 0.01 per beam
    refill_shift_v: float = 0.3      # rms move of each electrode's optimum at a refill
    settle_s: float | None = None    # None: the cryostat's recovery time (2 h)
    rf_hz: float = RF_MAGIC_HZ       # trap drive (DOMAIN §1: 24.801 MHz, the magic frequency)

    def __post_init__(self) -> None:
        m = np.asarray(self.beta_per_v, dtype=float)
        if m.shape != (3, 3) or not np.all(np.isfinite(m)):
            raise ValueError("beta_per_v: expected a 3 x 3 matrix (rad/V), beams x electrodes")
        for name in ("v0_v", "beta_floor"):
            v = getattr(self, name)
            if len(v) != 3 or not all(math.isfinite(x) for x in v):
                raise ValueError(f"{name}: expected three finite values, got {v!r}")
        if min(self.beta_floor) < 0 or self.refill_shift_v < 0:
            raise ValueError("beta_floor and refill_shift_v must be >= 0")
        if self.settle_s is not None and not self.settle_s > 0:
            raise ValueError("settle_s must be > 0 s")
        if not 0 < self.rf_hz < 1e10:
            raise ValueError(f"rf_hz {self.rf_hz!r}: expected a drive frequency in Hz")


class Micromotion:
    """Micromotion sidebands of beams 1-3 against the compensation voltages (module docstring).

    `world` (optional) supplies the time (``world.env.now``) and the refills
    (``world.cryostat``); without one the optimum stays at `v0_v` and the time at 0.
    """

    def __init__(self, world=None, params: MicromotionParams | None = None,
                 motion: Motion | None = None, seed: int = 0):
        self.world = world
        self.p = params or MicromotionParams()
        self.motion = motion or Motion()
        self.seed = int(seed)
        self._m = np.asarray(self.p.beta_per_v, dtype=float)
        self._offsets: dict[int, np.ndarray] = {0: np.zeros(3)}
        self.applied_v = np.asarray(self.p.v0_v, dtype=float).copy()   # compensated at start

    # --- time and refills -------------------------------------------------------------------
    @property
    def _cryostat(self):
        return getattr(self.world, "cryostat", None)

    def now(self) -> float:
        """The world's time (s), 0 without a world."""
        return float(self.world.env.now) if self.world is not None else 0.0

    def _settle_s(self) -> float:
        if self.p.settle_s is not None:
            return self.p.settle_s
        cryo = self._cryostat
        return float(cryo.recovery_time) if cryo is not None else 7200.0

    def _offset(self, k: int) -> np.ndarray:
        """The optimum's offset after refill k (0: none), a pure function of (seed, k)."""
        if k not in self._offsets:
            rng = np.random.default_rng([self.seed, STREAM, k])
            self._offsets[k] = self.p.refill_shift_v * rng.standard_normal(3)
        return self._offsets[k]

    def refill_times(self) -> list[float]:
        """Times (s) of the refills so far (the world's cryostat; none without one)."""
        cryo = self._cryostat
        return [r.time for r in cryo.refills()] if cryo is not None else []

    # --- truth --------------------------------------------------------------------------------
    def v0(self, t: float | None = None) -> np.ndarray:
        """True optimum voltages (V) of electrodes 1-3 at `t` (default now, t <= now)."""
        t = self.now() if t is None else float(t)
        times = [r for r in self.refill_times() if r <= t]
        k = len(times)
        base = np.asarray(self.p.v0_v, dtype=float)
        if k == 0:
            return base.copy()
        frac = math.exp(-(t - times[-1]) / self._settle_s())
        return base + self._offset(k) + (self._offset(k - 1) - self._offset(k)) * frac

    def set_voltages(self, v) -> None:
        """Apply compensation voltages (V) to electrodes 1-3 (what a DAC twin would call)."""
        v = np.asarray(v, dtype=float)
        if v.shape != (3,) or not np.all(np.isfinite(v)):
            raise ValueError("voltages: expected three finite values (V)")
        self.applied_v = v.copy()

    def _voltages(self, v) -> np.ndarray:
        return self.applied_v if v is None else np.broadcast_to(np.asarray(v, float), (3,))

    def beta(self, v=None, t: float | None = None) -> np.ndarray:
        """True modulation indices beta_i (rad) of beams 1-3 at voltages `v` (default applied)."""
        disp = self._m @ (self._voltages(v) - self.v0(t))
        return np.hypot(disp, np.asarray(self.p.beta_floor, dtype=float))

    def ratios(self, v=None, t: float | None = None, convention: str = "seed") -> np.ndarray:
        """True R_i of beams 1-3: J1/J0 (``seed``, what a measurement sees) or beta/2."""
        if convention not in RATIO_CONVENTIONS:
            raise ValueError(f"convention {convention!r}: expected one of "
                             f"{', '.join(RATIO_CONVENTIONS)}")
        b = self.beta(v, t)
        return special.j1(b) / special.j0(b) if convention == "seed" else 0.5 * b

    def emm_shift_hz(self, v=None, t: float | None = None, convention: str = "seed") -> float:
        """True EMM shift (Hz) at voltages `v` (seed Eq. 5 through ionclock.physics.shifts)."""
        r = tuple(float(x) for x in self.ratios(v, t, convention))
        cond = TrueConditions(micromotion_ratios=r, rf_hz=self.p.rf_hz)
        return true_shifts_hz(cond, NU0_CA)["emm"]

    def emm_shift(self, v=None, t: float | None = None, convention: str = "seed") -> float:
        """True EMM shift, fractional (see `emm_shift_hz`)."""
        return self.emm_shift_hz(v, t, convention) / NU0_CA

    def truth(self, t: float | None = None) -> dict:
        """What an analysis is graded against, at `t` (default now) and the applied voltages."""
        t = self.now() if t is None else float(t)
        def floats(a) -> tuple:
            return tuple(float(x) for x in a)

        return {"t_s": t, "v0_v": floats(self.v0(t)), "applied_v": floats(self.applied_v),
                "beta": floats(self.beta(None, t)), "ratios": floats(self.ratios(None, t)),
                "ratios_physical": floats(self.ratios(None, t, "physical")),
                "emm_shift": self.emm_shift(None, t), "rf_hz": self.p.rf_hz,
                "refills_s": tuple(r for r in self.refill_times() if r <= t)}

    # --- pulses -------------------------------------------------------------------------------
    def excitation(self, pulse_s, *, beam: int, order: int = 1, v=None, t: float | None = None,
                   **motion) -> np.ndarray:
        """Dark probability after a pulse of beam 1-3 on a micromotion line, at voltages `v`.

        `order` 0 is the carrier, m the micromotion sideband at m Omega_RF; `v` defaults to
        the applied voltages. `motion` goes to `Motion.excitation` (cooling, dark_time_s,
        detuning_hz, nbar).
        """
        if beam not in BEAMS:
            raise ValueError(f"beam {beam!r}: expected 1, 2 or 3")
        b = self.beta(v, t)[BEAMS.index(beam)]
        coupling = abs(float(special.jv(abs(int(order)), b)))
        return self.motion.excitation(pulse_s, beam=beam, sideband=0, coupling=coupling,
                                      **motion)

    def measure(self, pulse_s, shots, rng: np.random.Generator, *, beam: int, order: int = 1,
                v=None, t: float | None = None, detection_error: float = 0.0,
                **motion) -> np.ndarray:
        """Numbers of dark shots out of `shots` per pulse length (binomial)."""
        p = self.excitation(pulse_s, beam=beam, order=order, v=v, t=t, **motion)
        return dark_counts(p, shots, rng, detection_error)
