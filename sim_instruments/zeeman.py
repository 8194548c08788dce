"""Zeeman physics of the twin's characterisation measurements (DOMAIN §2-§3, seed Eqs. 2, 6).

The AC field in the g-factor ratio, and the quadratic Zeeman shift at other fields, with
the truth exposed (`ZeemanLines.truth`, `ZeemanComparison.truth`).

**AC field in the g-factor ratio** (`ZeemanLines`). The trap RF makes an AC magnetic field at
the ion with mean squares <B_x^2>, <B_y^2>, <B_z^2>. With the DC field B0 along an axis, the
perpendicular part <B_perp^2> (the other two) multiplies the Larmor frequencies of S1/2 and
D5/2 by (1 + b x) and (1 + a x), x = <B_perp^2> / B0^2, with (a, b) from seed Eq. 6
(`ionclock.physics.constants.ac_zeeman_coefficients`, the formula the ac-field analysis inverts; the
``seed`` convention by default, ``physical`` kept): f_S = g_S (muB/h) B0 (1 + b x),
f_D = (g_D/g_S) g_S (muB/h) B0 (1 + a x). The six lines sit at m_D f_D - m_S f_S from the
quadratic Zeeman centre alpha_z (B0^2 + <B_par^2>) (the parallel part shifts every line
alike, DOMAIN §2's AC row). The ratio r the splittings give is then seed Eq. 6 exactly:
with the pairs A (lines 0, 1: 3 f_D - f_S) and B (lines 2, 3: f_D + f_S) that the seed
locks to, r = (A + B) / (3 B - A). `ramsey` samples a two-point Ramsey measurement of a line
at a probe frequency, p+- = 1/2 [1 -+ C sin(2 pi delta T)] (DOMAIN §5's form of the
hyper-Ramsey response), binomial over N shots.

Defaults: <B_y^2> = 1e-13 T^2 (`ionclock.physics.shifts.TrueConditions`, what the world's AC row
applies), <B_z^2> = 1e-14 T^2, <B_x^2> = 0, so with B0 along x the ratio sees
<B_perp^2> = 11e-14 T^2 (the seed's 11(9)e-14); the unperturbed g_D/g_S is the value the
seed's numbers imply (`ionclock.physics.constants.G_RATIO_SEED`, decision 0800). The clock world's
own lines use DOMAIN §1's g_D (G_D52 / G_S12 = 0.5994906): pass ``g_ratio=G_D52 / G_S12``
for lines that agree with it.

**Quadratic Zeeman at other fields** (`ZeemanComparison`). The clock transition's shift at a
field B is ``ionclock.physics.shifts.true_shifts_hz``'s ``qz_dc`` = alpha_z B^2 (DOMAIN §2, the same
function the world applies at its own field). A comparison of a clock at B against a
reference at B0 (seed Eq. 2, Figs. 9-10) sees delta_z = alpha_z (B^2 - B0^2) plus the
difference of the two clocks' other shifts (the seed: (10.7 +/- 39.0)e-18), with the two
clocks' white frequency noise over the averaging time: the mean of many projection-noise
limited cycles, Gaussian with sigma = sqrt(2) sigma_y(1 s) nu0 / sqrt(tau) (DOMAIN §5's QPN
limit for each clock). With a world, B0 defaults to the world's true field.

Nothing here draws from the world's random streams; every sample comes from the Generator
passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ionclock.physics.constants import (
    AC_FIELD_CONVENTIONS,
    G_RATIO_SEED,
    G_S12,
    MU_B_OVER_H,
    NU0_CA,
    RF_MAGIC_HZ,
    ZEEMAN_LINES,
    ac_zeeman_coefficients,
    qpn_sigma,
    ramsey_contrast,
)
from ionclock.physics.shifts import TrueConditions, true_shifts_hz
from ionclock.sim_instruments.shots import dark_counts

AXES = ("x", "y", "z")
#: Lines of the pairs the seed locks to for r: A (S -+1/2 -> D -+3/2), B (S +-1/2 -> D -+1/2).
RATIO_LINES = (0, 1, 2, 3)
#: The seed's two clocks differ by (10.7 +/- 39.0)e-18 in their other shifts (supplement).
COMPARISON_OFFSET_SEED = 10.7e-18


def ratio_from_splittings(split_a_hz, split_b_hz):
    """The ratio r = g_D/g_S the splittings of pairs A and B give: (A + B) / (3 B - A).

    A = 3 f_D - f_S and B = f_D + f_S (DOMAIN §1's offsets (g_D m_D - g_S m_S) muB B / h).
    """
    a, b = np.asarray(split_a_hz, float), np.asarray(split_b_hz, float)
    return (a + b) / (3.0 * b - a)


@dataclass(frozen=True)
class AcFieldParams:
    """True AC field and g-factors (SI)."""

    b2_t2: tuple[float, float, float] = (0.0, TrueConditions().b2_ac_t2, 1e-14)  # x, y, z
    g_ratio: float = G_RATIO_SEED       # unperturbed g_D / g_S
    g_s: float = G_S12
    rf_hz: float = RF_MAGIC_HZ
    convention: str = "seed"            # seed Eq. 6 as printed; "physical" kept
    alpha_z: float = TrueConditions().alpha_z   # Hz/T^2, the quadratic Zeeman centre

    def __post_init__(self) -> None:
        if len(self.b2_t2) != 3 or not all(math.isfinite(x) and x >= 0 for x in self.b2_t2):
            raise ValueError(f"b2_t2: expected three mean squares >= 0 (T^2), got {self.b2_t2!r}")
        if self.convention not in AC_FIELD_CONVENTIONS:
            raise ValueError(f"convention {self.convention!r}: expected one of "
                             f"{', '.join(AC_FIELD_CONVENTIONS)}")
        if not (0 < self.g_ratio < 10 and 0 < self.g_s < 10 and 0 < self.rf_hz < 1e10):
            raise ValueError("g_ratio, g_s and rf_hz must be positive and plausible")


def _axis(axis: str) -> int:
    if axis not in AXES:
        raise ValueError(f"axis {axis!r}: expected one of x, y, z")
    return AXES.index(axis)


class ZeemanLines:
    """The six clock lines at a DC field B0 along an axis, with the RF's AC field (docstring)."""

    def __init__(self, params: AcFieldParams | None = None):
        self.p = params or AcFieldParams()

    def b_perp2(self, axis: str = "x") -> float:
        """True <B_perp^2> (T^2): the AC field's mean square perpendicular to `axis`."""
        i = _axis(axis)
        return float(sum(b for k, b in enumerate(self.p.b2_t2) if k != i))

    def larmor_hz(self, b0_t: float, axis: str = "x") -> tuple[float, float]:
        """(f_S, f_D): the Larmor frequencies (Hz) of S1/2 and D5/2 at B0 with the AC field."""
        if not (math.isfinite(b0_t) and b0_t > 0):
            raise ValueError(f"b0_t {b0_t!r}: expected a field > 0 T")
        p = self.p
        a, b = ac_zeeman_coefficients(b0_t, p.rf_hz, p.convention)
        x = self.b_perp2(axis) / b0_t ** 2
        f_s = p.g_s * MU_B_OVER_H * b0_t
        return f_s * (1 + b * x), p.g_ratio * f_s * (1 + a * x)

    def line_offsets_hz(self, b0_t: float, axis: str = "x") -> np.ndarray:
        """True centres of the six lines (`ZEEMAN_LINES` order), Hz from nu0."""
        f_s, f_d = self.larmor_hz(b0_t, axis)
        centre = self.p.alpha_z * (b0_t ** 2 + self.p.b2_t2[_axis(axis)])
        return np.array([centre + line.m_d * f_d - line.m_s * f_s for line in ZEEMAN_LINES])

    def ratio(self, b0_t: float, axis: str = "x") -> float:
        """The true r the splittings give at B0 (= seed Eq. 6 of the true <B_perp^2>)."""
        f_s, f_d = self.larmor_hz(b0_t, axis)
        return f_d / f_s

    def qz_ac_shift_hz(self, axis: str = "y") -> float:
        """The AC field's quadratic Zeeman shift of the line centre, alpha_z <B_par^2> (Hz)."""
        return self.p.alpha_z * self.p.b2_t2[_axis(axis)]

    def ramsey(self, b0_t: float, probe_hz, shots, rng: np.random.Generator, *,
               lines=RATIO_LINES, axis: str = "x", ramsey_time_s: float = 0.080,
               contrast: float | None = None,
               detection_error: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Two-point Ramsey on `lines` with the laser at `probe_hz` (Hz from nu0, one per line).

        Returns the dark counts (n+, n-) out of `shots` per side and line:
        p+- = 1/2 [1 -+ C sin(2 pi (probe - centre) T)], C = exp(-T / 2 tau) by default.
        """
        lines = list(lines)
        probe = np.broadcast_to(np.asarray(probe_hz, dtype=float), (len(lines),))
        c = ramsey_contrast(ramsey_time_s) if contrast is None else contrast
        delta = probe - self.line_offsets_hz(b0_t, axis)[lines]
        s = c * np.sin(2 * math.pi * delta * ramsey_time_s)
        n_plus = dark_counts(0.5 * (1 - s), shots, rng, detection_error)
        n_minus = dark_counts(0.5 * (1 + s), shots, rng, detection_error)
        return n_plus, n_minus

    def truth(self, b0_t: float, axis: str = "x") -> dict:
        """The true <B_perp^2>, r and line centres at B0 along `axis`."""
        return {"b0_t": b0_t, "axis": axis, "b2_t2": tuple(self.p.b2_t2),
                "b_perp2_t2": self.b_perp2(axis), "ratio": self.ratio(b0_t, axis),
                "g_ratio": self.p.g_ratio, "convention": self.p.convention,
                "rf_hz": self.p.rf_hz, "line_offsets_hz": tuple(self.line_offsets_hz(b0_t, axis)),
                "qz_ac_shift_hz": self.qz_ac_shift_hz("y")}


@dataclass(frozen=True)
class ComparisonParams:
    """True parameters of a two-clock comparison (SI)."""

    alpha_z: float = TrueConditions().alpha_z          # Hz/T^2 (DOMAIN §2: 14.345 Hz/mT^2)
    offset_hz: float = COMPARISON_OFFSET_SEED * NU0_CA    # the clocks' other shifts differ
    sigma_y_1s: float = qpn_sigma(1.0)                  # each clock's QPN at 1 s (DOMAIN §5)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.alpha_z) and math.isfinite(self.offset_hz)):
            raise ValueError("alpha_z and offset_hz must be finite")
        if not (math.isfinite(self.sigma_y_1s) and self.sigma_y_1s >= 0):
            raise ValueError(f"sigma_y_1s {self.sigma_y_1s!r}: expected >= 0")


class ZeemanComparison:
    """A clock at field B against a reference clock at B0 (seed Eq. 2; module docstring)."""

    def __init__(self, world=None, params: ComparisonParams | None = None):
        self.world = world
        self.p = params or ComparisonParams()

    def _b0(self, b0_t: float | None) -> float:
        if b0_t is not None:
            return float(b0_t)
        if self.world is None:
            raise ValueError("b0_t: give the reference field (no world to take it from)")
        return float(self.world.b_true())

    def shift_hz(self, b_t: float) -> float:
        """The clock transition's quadratic Zeeman shift at B (Hz): alpha_z B^2 (shifts)."""
        return true_shifts_hz(TrueConditions(b_t=b_t, alpha_z=self.p.alpha_z))["qz_dc"]

    def difference_hz(self, b_t, b0_t: float | None = None) -> np.ndarray:
        """True delta_z (Hz) of a clock at each B against the reference at B0."""
        b0 = self._b0(b0_t)
        ref = self.shift_hz(b0)
        return np.array([self.shift_hz(float(b)) - ref + self.p.offset_hz
                         for b in np.atleast_1d(b_t)])

    def sigma_hz(self, duration_s) -> np.ndarray:
        """Standard deviation (Hz) of one comparison averaged over `duration_s` (s)."""
        tau = np.asarray(duration_s, dtype=float)
        if np.any(tau <= 0):
            raise ValueError("duration_s must be > 0 s")
        return math.sqrt(2.0) * self.p.sigma_y_1s * NU0_CA / np.sqrt(tau)

    def measure(self, b_t, duration_s, rng: np.random.Generator,
                b0_t: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Measured delta_z (Hz) at each B, and its standard deviation (Hz)."""
        truth = self.difference_hz(b_t, b0_t)
        sigma = np.broadcast_to(self.sigma_hz(duration_s), truth.shape).astype(float)
        return truth + sigma * rng.standard_normal(truth.shape), sigma

    def truth(self) -> dict:
        """The true alpha_z (Hz/T^2) and the clocks' offset (Hz)."""
        return {"alpha_z": self.p.alpha_z, "offset_hz": self.p.offset_hz,
                "sigma_y_1s": self.p.sigma_y_1s}
