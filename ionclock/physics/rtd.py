"""PT100 thermometry: the Callendar–Van Dusen equation and per-sensor calibration.

The clock's temperature chain (DOMAIN §1, seed §"BBR shift") is: a 3-wire PT100's resistance
-> IEC 60751 Callendar–Van Dusen (CVD) temperature -> that sensor's own calibration
(each sensor calibrated to 0.1 K over 75–85 K) -> a temperature with a standard uncertainty.
The shift budget uses the same chain, so it lives in core.

Missing data is never a number: a reading that does not exist (an open sensor, a disabled
input, an overload) is a `Missing` — a NaN that carries its reason — so that it can neither
be averaged in as zero nor lose the why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# IEC 60751:2008 §4.2 coefficients (alpha = 0.00385 / K platinum).
R0 = 100.0  #: PT100 resistance at 0 °C, Ω
A = 3.9083e-3  #: 1/°C
B = -5.775e-7  #: 1/°C²
C = -4.183e-12  #: 1/°C⁴, used below 0 °C only
ZERO_CELSIUS = 273.15  #: K

#: Range this module converts (K). IEC 60751 specifies −200 °C (73.15 K) to 850 °C; the
#: polynomial is smooth and monotonic a little below, and the clock's sensors sit at 75–85 K,
#: so readings down to 60 K (−213 °C) are converted rather than dropped.
T_MIN = 60.0
T_MAX = 850.0 + ZERO_CELSIUS


class Missing(float):
    """A reading that does not exist: a NaN that carries its `reason` (never 0).

    It is a float so that it can stand wherever a reading goes (arrays, the store, arithmetic
    all see NaN), and `math.isnan` is the one test for it.
    """

    reason: str

    def __new__(cls, reason: str) -> Missing:
        obj = super().__new__(cls, math.nan)
        obj.reason = reason
        return obj

    def __repr__(self) -> str:
        return f"Missing({self.reason!r})"

    def __reduce__(self):
        return (Missing, (self.reason,))


def is_missing(value: float | None) -> bool:
    """Return True for None or NaN (including `Missing`)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def missing_reason(value: float | None) -> str | None:
    """Why `value` is missing (None if it is a real number)."""
    if value is None:
        return "no value"
    if isinstance(value, Missing):
        return value.reason
    if isinstance(value, float) and math.isnan(value):
        return "not a number"
    return None


def _check_temperature(t_kelvin: float) -> None:
    if not (T_MIN <= t_kelvin <= T_MAX):
        raise ValueError(f"temperature {t_kelvin!r} K outside the CVD range {T_MIN}–{T_MAX} K")


def cvd_resistance(t_kelvin: float, r0: float = R0) -> float:
    """PT100 resistance in Ω at `t_kelvin` K (IEC 60751 CVD, C term below 0 °C).

    A missing input (None/NaN) returns a `Missing` with the input's reason; a temperature
    outside `T_MIN`..`T_MAX` is a `ValueError`.
    """
    if is_missing(t_kelvin):
        return Missing(missing_reason(t_kelvin) or "no temperature")
    t_kelvin = float(t_kelvin)
    _check_temperature(t_kelvin)
    t = t_kelvin - ZERO_CELSIUS
    r = 1.0 + A * t + B * t * t
    if t < 0.0:
        r += C * (t - 100.0) * t ** 3
    return r0 * r


def _cvd_slope(t: float, r0: float) -> float:
    """dR/dt in Ω/°C at `t` °C."""
    d = A + 2.0 * B * t
    if t < 0.0:
        d += C * (4.0 * t ** 3 - 300.0 * t * t)
    return r0 * d


def cvd_sensitivity(t_kelvin: float, r0: float = R0) -> float:
    """dR/dT of a PT100 in Ω/K at `t_kelvin` K (≈0.43 Ω/K at 80 K)."""
    _check_temperature(float(t_kelvin))
    return _cvd_slope(float(t_kelvin) - ZERO_CELSIUS, r0)


def cvd_temperature(resistance: float, r0: float = R0) -> float:
    """Temperature in K of a PT100 reading `resistance` Ω (inverse IEC 60751 CVD).

    At and above 0 °C the quadratic is solved in closed form. Below 0 °C the quartic has no
    convenient closed form: a safeguarded Newton iteration (bisection whenever a step would
    leave the bracket) starts from the quadratic's root and converges to 1e-9 K in a few
    steps anywhere in `T_MIN`..0 °C. A missing input returns `Missing`; a resistance outside
    the convertible range is a `ValueError`.
    """
    if is_missing(resistance):
        return Missing(missing_reason(resistance) or "no resistance")
    r = float(resistance)
    if not math.isfinite(r) or r0 <= 0:
        raise ValueError(f"resistance {resistance!r} Ω is not a finite value")
    r_min = cvd_resistance(T_MIN, r0)
    r_max = cvd_resistance(T_MAX, r0)
    if not (r_min <= r <= r_max):
        raise ValueError(f"resistance {r!r} Ω outside the CVD range {r_min:.4f}–{r_max:.2f} Ω "
                         f"({T_MIN}–{T_MAX} K)")
    # Quadratic part (exact at t >= 0): B t² + A t + (1 - r/r0) = 0, the root near A t ≈ r/r0-1.
    disc = A * A - 4.0 * B * (1.0 - r / r0)
    t = (-A + math.sqrt(disc)) / (2.0 * B)
    if r >= r0:
        return t + ZERO_CELSIUS
    lo, hi = T_MIN - ZERO_CELSIUS, 0.0
    t = min(max(t, lo), hi)
    for _ in range(60):
        f = cvd_resistance(t + ZERO_CELSIUS, r0) - r
        if f > 0:
            hi = t
        else:
            lo = t
        step = f / _cvd_slope(t, r0)
        t_new = t - step
        if not (lo <= t_new <= hi):
            t_new = 0.5 * (lo + hi)
        if abs(t_new - t) < 1e-10:
            t = t_new
            break
        t = t_new
    return t + ZERO_CELSIUS


@dataclass(frozen=True)
class TemperatureReading:
    """A calibrated temperature in K with its standard uncertainty in K.

    `value` is a `Missing` (NaN) when there is no reading; `reason` then says why.
    `in_calibrated_range` is False when the sensor's calibration was extrapolated.
    """

    value: float
    uncertainty: float
    sensor: str = ""
    reason: str | None = None
    in_calibrated_range: bool = True

    @property
    def missing(self) -> bool:
        """True when there is no temperature."""
        return is_missing(self.value)

    @classmethod
    def absent(cls, reason: str, sensor: str = "") -> TemperatureReading:
        """Make a missing reading that carries its reason."""
        return cls(Missing(reason), math.nan, sensor, reason, False)


@dataclass(frozen=True)
class SensorCalibration:
    """One PT100's calibration against a reference thermometer, applied after CVD.

    The corrected temperature is ``T = T_cvd + Σ_k c_k (T_cvd - reference)^k`` (K), with the
    polynomial `coefficients` c_0, c_1, ... (c_0 an offset in K, c_1 dimensionless, ...).
    `uncertainty` is the calibration's standard uncertainty (K) over `valid_range` (K); outside
    it the correction is still applied but the uncertainty grows by `extrapolation_per_kelvin`
    (K per K beyond the range) and the reading says it was extrapolated. `r0` is the sensor's
    own ice-point resistance (Ω) if it was measured, else the nominal 100 Ω.
    """

    name: str = ""
    coefficients: tuple[float, ...] = (0.0,)
    uncertainty: float = 0.1
    valid_range: tuple[float, float] = (75.0, 85.0)
    reference: float = 80.0
    r0: float = R0
    extrapolation_per_kelvin: float = 0.05

    def __post_init__(self) -> None:
        if not self.coefficients or not all(math.isfinite(c) for c in self.coefficients):
            raise ValueError(f"calibration {self.name!r}: coefficients must be finite numbers")
        if not (math.isfinite(self.uncertainty) and self.uncertainty >= 0):
            raise ValueError(f"calibration {self.name!r}: uncertainty must be >= 0 K")
        lo, hi = self.valid_range
        if not (T_MIN <= lo < hi <= T_MAX):
            raise ValueError(f"calibration {self.name!r}: valid_range {self.valid_range!r} K "
                             f"must be increasing inside {T_MIN}–{T_MAX} K")
        if not (math.isfinite(self.r0) and 50.0 < self.r0 < 150.0):
            raise ValueError(f"calibration {self.name!r}: r0 {self.r0!r} Ω is not a PT100's")
        if self.extrapolation_per_kelvin < 0:
            raise ValueError(f"calibration {self.name!r}: extrapolation_per_kelvin must be >= 0")
        object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))

    @classmethod
    def fit(cls, name: str, cvd_temperatures: Sequence[float], reference_temperatures:
            Sequence[float], *, degree: int = 1, reference_uncertainty: float = 0.05,
            reference: float = 80.0, r0: float = R0) -> SensorCalibration:
        """Fit a calibration from simultaneous CVD and reference-thermometer readings (K).

        The correction polynomial of `degree` is fitted by least squares to
        ``reference - cvd``; its standard uncertainty combines `reference_uncertainty` (K) and
        the rms residual in quadrature; the valid range is the span of the points.
        """
        import numpy as np

        x = np.asarray(cvd_temperatures, dtype=float)
        y = np.asarray(reference_temperatures, dtype=float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError("calibration fit: need two equal-length 1-D sequences")
        if len(x) < degree + 2:
            raise ValueError(f"calibration fit: need at least {degree + 2} points for degree "
                             f"{degree} (got {len(x)})")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("calibration fit: points must be finite (drop missing readings)")
        coef = np.polynomial.polynomial.polyfit(x - reference, y - x, degree)
        resid = (y - x) - np.polynomial.polynomial.polyval(x - reference, coef)
        dof = max(len(x) - (degree + 1), 1)
        rms = float(np.sqrt(np.sum(resid ** 2) / dof))
        u = math.hypot(reference_uncertainty, rms)
        return cls(name, tuple(float(c) for c in coef), u, (float(x.min()), float(x.max())),
                   reference, r0)

    def correction(self, t_cvd: float) -> float:
        """Return the correction in K to add to a CVD temperature `t_cvd` K."""
        dx = t_cvd - self.reference
        return sum(c * dx ** k for k, c in enumerate(self.coefficients))

    def apply(self, t_cvd: float, u_reading: float = 0.0) -> TemperatureReading:
        """Calibrated temperature from a CVD (or instrument-linearised) temperature in K.

        `u_reading` (K) is the reading's own standard uncertainty (resolution, noise), added in
        quadrature to the calibration's. A missing input stays missing with its reason.
        """
        if is_missing(t_cvd):
            return TemperatureReading.absent(missing_reason(t_cvd) or "no reading", self.name)
        t_cvd = float(t_cvd)
        if not math.isfinite(t_cvd) or t_cvd <= 0:
            return TemperatureReading.absent(f"unphysical reading {t_cvd!r} K", self.name)
        lo, hi = self.valid_range
        beyond = max(lo - t_cvd, t_cvd - hi, 0.0)
        u_cal = self.uncertainty + self.extrapolation_per_kelvin * beyond
        return TemperatureReading(t_cvd + self.correction(t_cvd), math.hypot(u_cal, u_reading),
                                  self.name, None, beyond == 0.0)

    def from_resistance(self, resistance: float, u_resistance: float = 0.0) -> TemperatureReading:
        """Calibrated temperature in K from a resistance in Ω (CVD with this sensor's r0).

        `u_resistance` (Ω) is converted to K through the CVD slope. Never raises on data: an
        unconvertible resistance becomes a missing reading with the reason.
        """
        if is_missing(resistance):
            return TemperatureReading.absent(missing_reason(resistance) or "no reading",
                                             self.name)
        try:
            t = cvd_temperature(resistance, self.r0)
        except ValueError as err:
            return TemperatureReading.absent(str(err), self.name)
        u_t = abs(u_resistance) / _cvd_slope(t - ZERO_CELSIUS, self.r0)
        return self.apply(t, u_t)


#: The calibration a sensor has before it is calibrated: nominal CVD, 0.1 K class claim only
#: over the clock's range (a lab config should replace it with each sensor's own).
NOMINAL = SensorCalibration("nominal")


@dataclass(frozen=True)
class Envelope:
    """The envelope of several sensors: midpoint and half-range, in K (seed BBR method).

    `half_width` is half the spread of the sensors; `uncertainty` adds the largest calibration
    uncertainty linearly, as the seed does (79.5 ± 1.4 K -> ± 1.5 K with 0.1 K calibration).
    `missing` names the sensors left out and why.
    """

    midpoint: float
    half_width: float
    uncertainty: float
    used: tuple[str, ...]
    missing: dict[str, str]


def temperature_envelope(readings: Iterable[TemperatureReading]) -> Envelope:
    """Midpoint ± (half-range + calibration) over every reading that exists (K).

    With no usable reading the envelope's numbers are `Missing`.
    """
    good: list[TemperatureReading] = []
    missing: dict[str, str] = {}
    for i, rd in enumerate(readings):
        if rd.missing:
            missing[rd.sensor or f"#{i}"] = rd.reason or "missing"
        else:
            good.append(rd)
    if not good:
        m = Missing("no sensor reading")
        return Envelope(m, m, m, (), missing)
    lo = min(r.value for r in good)
    hi = max(r.value for r in good)
    u_cal = max(r.uncertainty for r in good)
    half = 0.5 * (hi - lo)
    return Envelope(0.5 * (hi + lo), half, half + u_cal,
                    tuple(r.sensor for r in good), missing)
