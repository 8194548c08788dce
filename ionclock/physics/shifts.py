"""Systematic-shift models of the 40Ca+ clock, fractional and in Hz (DOMAIN §2, seed 000).

Every model returns a `ShiftResult`: the shift, its 1-sigma uncertainty, the inputs it used,
the convention that fixes how a printed number was formed, and a validity flag with a
reason. Inputs out of a model's range, missing sensors or empty windows give a row marked
invalid, never a silent zero.

Sign convention: a *shift* is what the environment does to the ion's transition frequency,
so the clock output is corrected by subtracting it (nu = nu_servo - sum(shift) * nu0).

Where the seed's printed numbers need a particular convention to be reproduced, the
convention is named (module constants ``CONV_*``) and stated in the model's docstring:

- BBR: temperature from the envelope of all sensors; half-range and calibration added
  linearly (79.5 +/- 1.4 K and 0.1 K -> +/- 1.5 K); uncertainty Delta(T + dT) - Delta(T)
  (3.5e-19; the linear estimate 4 * shift * dT / T would give 3.4e-19).
- Secular motion: every mode counted with micromotion-doubled kinetic energy,
  TD_i = h f_i / (m c^2); uncertainty the linear (worst-case) sum of the n0 half-ranges and
  the heating-rate uncertainties times the mean probe delay.
- Quadratic Zeeman (DC): the alpha_z and B contributions added linearly (1.35 + 0.03 -> 1.4;
  in quadrature they give 1.35).
- Quadratic Zeeman (AC) and background gas: bound rows: no correction is applied, the
  computed shift magnitude is the uncertainty.

`true_shifts_hz` gives the twin the physical shifts for true conditions, from the same
functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ionclock.physics.constants import (
    ALPHA_Z_HZ_PER_T2,
    ALPHA_Z_UNC_HZ_PER_T2,
    AMU,
    C_LIGHT,
    MASS_CA40,
    NU0_CA,
    RF_MAGIC_HZ,
    RF_MAGIC_UNC_HZ,
    H,
)

# --- conventions (named so that code, docs and budgets can cite them) ---------------------
CONV_BBR_SEED = "envelope_linear_calibration;unc=Delta(T+dT)-Delta(T)"
CONV_BBR_LINEAR = "envelope_linear_calibration;unc=4*shift*dT/T"
CONV_SECULAR_SEED = "TD=h*f/(m*c^2) all modes;unc=linear sum (worst case)"
CONV_SECULAR_QUADRATURE = "TD=h*f/(m*c^2) all modes;unc=quadrature"
CONV_QZ_SEED = "unc=|alpha_z part|+|B part| (linear)"
CONV_QZ_QUADRATURE = "unc=quadrature of alpha_z and B parts"
CONV_BOUND = "bound: shift not corrected, magnitude taken as uncertainty"
CONV_CORRECTED = "corrected: shift applied, uncertainty propagated"
CONV_EMM = "bracket=1-(Omega/Omega_magic)^2;unc=quadrature(dalpha0, Omega_magic, R_i)"

SECULAR_CONVENTIONS = {"seed_linear": CONV_SECULAR_SEED, "quadrature": CONV_SECULAR_QUADRATURE}
QZ_CONVENTIONS = {"seed_linear": CONV_QZ_SEED, "quadrature": CONV_QZ_QUADRATURE}
BOUND_CONVENTIONS = {"seed_bound": CONV_BOUND, "corrected": CONV_CORRECTED}
BBR_CONVENTIONS = {"seed_step": CONV_BBR_SEED, "linear": CONV_BBR_LINEAR}

# --- model constants ------------------------------------------------------------------------
# Delta nu_BBR(300 K) implied by the seed's 45.5e-19 at 79.5 K (DOMAIN §2). The literature
# value is 0.3811(44) Hz; its 1.15 % relative uncertainty is the one on Delta alpha_0 (1 + eta).
BBR_COEFF_300K_SEED_HZ = 0.3792
BBR_COEFF_300K_LIT_HZ = 0.3811
DELTA_ALPHA0_REL_UNC = 0.0044 / 0.3811
# Background gas (seed 000 supplement): Ca+-He collisional shift thermally averaged at
# 78.5 K is 42 uHz at 3 nPa; H2 scaled from He with the Langevin-type cross-section.
BG_HE_SHIFT_HZ = 42e-6
BG_REF_PRESSURE_PA = 3e-9
BG_REF_TEMPERATURE_K = 78.5
ALPHA_HE_A0_3 = 1.38      # static polarisability of He in a0^3
ALPHA_H2_A0_3 = 5.4       # of H2 in a0^3
MASS_HE4 = 4.002602 * AMU
MASS_H2 = 2.01588 * AMU
# Secular-motion nominal parameters (seed 000 Table I).
SECULAR_FREQS_HZ = (3.531e6, 3.166e6, 2.580e6)
N0_RANGES = ((0.0, 0.03), (0.0, 0.04), (0.0, 0.11))
HEATING_RATES = ((0.43, 0.07), (0.53, 0.12), (1.31, 0.43))   # quanta/s, (value, unc)
MEAN_PROBE_DELAY_S = 0.044   # t-bar: about half the interrogation; reproduces -5.8e-19


@dataclass(frozen=True)
class ShiftResult:
    """One budget row: fractional shift and 1-sigma uncertainty, with inputs and validity.

    `components` holds signed 1-sigma fractional contributions keyed by the *input* they
    come from (e.g. ``"alpha_z"``, ``"b_dc"``, ``"delta_alpha0"``). Rows sharing a key are
    correlated through it; the budget builds its covariance from these.
    """

    key: str
    label: str
    value: float            # fractional shift
    uncertainty: float      # fractional, 1 sigma
    nu0_hz: float = NU0_CA
    inputs: Mapping[str, Any] = field(default_factory=dict)
    valid: bool = True
    reason: str = ""
    convention: str = ""
    components: Mapping[str, float] = field(default_factory=dict)

    @property
    def value_hz(self) -> float:
        """The shift in Hz."""
        return self.value * self.nu0_hz

    @property
    def uncertainty_hz(self) -> float:
        """The 1-sigma uncertainty in Hz."""
        return self.uncertainty * self.nu0_hz

    def to_dict(self, unit: float = 1e-19) -> dict:
        """JSON-ready dict; ``shift``/``uncertainty`` in `unit`, the rest SI."""
        return {
            "key": self.key, "effect": self.label,
            "shift": _json_num(self.value / unit),
            "uncertainty": _json_num(self.uncertainty / unit),
            "shift_fractional": _json_num(self.value),
            "uncertainty_fractional": _json_num(self.uncertainty),
            "shift_hz": _json_num(self.value_hz),
            "uncertainty_hz": _json_num(self.uncertainty_hz),
            "valid": self.valid, "reason": self.reason, "convention": self.convention,
            "inputs": {k: _json_value(v) for k, v in self.inputs.items()},
            "components": {k: _json_num(v) for k, v in self.components.items()},
        }


def _json_num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _json_value(v: Any) -> Any:
    if isinstance(v, float):
        return _json_num(v)
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _json_value(x) for k, x in v.items()}
    return v


def invalid(key: str, label: str, reason: str, nu0_hz: float = NU0_CA,
            inputs: Mapping[str, Any] | None = None, convention: str = "",
            value: float = math.nan, uncertainty: float = math.nan) -> ShiftResult:
    """Build a row that could not be evaluated (or lies outside its range); `reason` says why."""
    return ShiftResult(key, label, value, uncertainty, nu0_hz, dict(inputs or {}), False,
                       reason, convention)


def _pick(conventions: Mapping[str, str], name: str, what: str) -> str:
    if name not in conventions:
        raise ValueError(f"{what}: unknown convention {name!r} (allowed: "
                         f"{', '.join(conventions)})")
    return conventions[name]


def _finite(*xs: float) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


# --- BBR ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SensorTrace:
    """Range (K) one temperature channel spanned over the window, and its sample count."""

    channel: str
    low_k: float
    high_k: float
    n: int = 1


@dataclass(frozen=True)
class Envelope:
    """Sensor envelope: mid temperature and half-range (K), before calibration."""

    low_k: float
    high_k: float

    @property
    def temperature_k(self) -> float:
        """Mid-point of the envelope, K."""
        return 0.5 * (self.low_k + self.high_k)

    @property
    def half_range_k(self) -> float:
        """Half the envelope's width, K."""
        return 0.5 * (self.high_k - self.low_k)


def bbr_shift_hz(temperature_k: float,
                 coefficient_300k_hz: float = BBR_COEFF_300K_SEED_HZ) -> float:
    """BBR shift in Hz at temperature T (K), seed 000 Eq. 1.

    Delta nu = -1/2 (831.9 V/m)^2 (T/300 K)^4 Delta alpha_0 (1 + eta) = Delta nu(300 K) (T/300)^4;
    Delta alpha_0 < 0 for 40Ca+, so the shift is positive.
    """
    return coefficient_300k_hz * (temperature_k / 300.0) ** 4


def sensor_envelope(traces: Sequence[SensorTrace], replica_channel: str | None = None,
                    rf_step_k: float = 0.0, rf_off_seen: bool = True) -> Envelope:
    """Envelope (K) of all sensor traces, operational and replica (seed 000, Fig. 1 and S2).

    The trap (replica sensor) cools by about `rf_step_k` when the RF is switched off; if the
    window holds no RF-off period, the replica channel's range is widened downwards by that
    step so the envelope still spans RF on and off, as the seed's evaluation does.
    """
    lows, highs = [], []
    for tr in traces:
        low = tr.low_k
        if tr.channel == replica_channel and not rf_off_seen:
            low -= rf_step_k
        lows.append(low)
        highs.append(tr.high_k)
    return Envelope(min(lows), max(highs))


def bbr(traces: Sequence[SensorTrace], *, calibration_k: float = 0.1,
        coefficient_300k_hz: float = BBR_COEFF_300K_SEED_HZ,
        coefficient_rel_unc: float = 0.0, required_channels: Sequence[str] = (),
        replica_channel: str | None = None, rf_step_k: float = 0.0, rf_off_seen: bool = True,
        valid_range_k: tuple[float, float] = (70.0, 90.0), convention: str = "seed_step",
        nu0_hz: float = NU0_CA) -> ShiftResult:
    """BBR shift (fractional) from the temperature-sensor envelope (DOMAIN §2, seed 000 Eq. 1).

    T is the envelope's mid-point; dT = half-range + calibration (added linearly: the seed's
    79.5 +/- 1.4 K with 0.1 K calibration gives +/- 1.5 K). Convention ``seed_step``: the
    uncertainty is Delta(T + dT) - Delta(T) (seed: 3.5e-19); ``linear``: 4 shift dT / T.
    `coefficient_rel_unc` (relative uncertainty of Delta alpha_0 (1 + eta)) is added in
    quadrature when non-zero; the seed neglects it (0 in its configuration). It is the
    ``delta_alpha0`` component shared with the micromotion row.
    `required_channels` that have no trace make the row invalid (the envelope would be
    incomplete); temperatures outside `valid_range_k` (the sensors' calibrated range) too.
    """
    label = "BBR"
    conv = _pick(BBR_CONVENTIONS, convention, "bbr")
    present = {tr.channel for tr in traces if tr.n > 0 and _finite(tr.low_k, tr.high_k)}
    usable = [tr for tr in traces if tr.channel in present]
    inputs: dict[str, Any] = {
        "channels": sorted(present), "calibration_k": calibration_k,
        "coefficient_300k_hz": coefficient_300k_hz, "coefficient_rel_unc": coefficient_rel_unc,
        "rf_off_seen": rf_off_seen, "rf_step_k": rf_step_k}
    if not usable:
        return invalid("bbr", label, "no temperature samples in the window", nu0_hz, inputs, conv)
    reversed_ = [tr.channel for tr in usable if tr.high_k < tr.low_k]
    if reversed_:
        return invalid("bbr", label, "high below low on " + ", ".join(reversed_), nu0_hz,
                       inputs, conv)
    env = sensor_envelope(usable, replica_channel, rf_step_k, rf_off_seen)
    lo, hi = valid_range_k
    if not (0.0 < env.low_k and env.high_k <= 10 * hi):
        return invalid("bbr", label, f"sensor envelope {env.low_k:.4g}-{env.high_k:.4g} K is "
                       "not a plausible temperature", nu0_hz, inputs, conv)
    t, dt = env.temperature_k, env.half_range_k + calibration_k
    inputs.update(envelope_low_k=env.low_k, envelope_high_k=env.high_k, temperature_k=t,
                  temperature_unc_k=dt,
                  sensors={tr.channel: [tr.low_k, tr.high_k, tr.n] for tr in usable})
    shift_hz = bbr_shift_hz(t, coefficient_300k_hz)
    if convention == "seed_step":
        unc_t_hz = bbr_shift_hz(t + dt, coefficient_300k_hz) - shift_hz
    else:
        unc_t_hz = 4.0 * shift_hz * dt / t
    coeff_hz = shift_hz * coefficient_rel_unc
    value, unc_t, coeff = shift_hz / nu0_hz, unc_t_hz / nu0_hz, coeff_hz / nu0_hz
    components = {"temperature": unc_t}
    if coefficient_rel_unc:
        components["delta_alpha0"] = coeff
    result = ShiftResult("bbr", label, value, math.hypot(unc_t, coeff), nu0_hz, inputs, True,
                         "", conv, components)
    missing = [c for c in required_channels if c not in present]
    if missing:
        return _invalidate(result, "no samples from " + ", ".join(missing)
                           + " (the envelope would be incomplete)")
    if not (lo <= env.low_k and env.high_k <= hi):
        return _invalidate(result, f"sensor envelope {env.low_k:.2f}-{env.high_k:.2f} K is "
                           f"outside the calibrated range {lo:g}-{hi:g} K")
    return result


def _invalidate(result: ShiftResult, reason: str) -> ShiftResult:
    return ShiftResult(result.key, result.label, result.value, result.uncertainty,
                       result.nu0_hz, result.inputs, False, reason, result.convention,
                       result.components)


# --- secular motion (time dilation) --------------------------------------------------------
def time_dilation_per_quantum(frequency_hz: float, mass_kg: float = MASS_CA40) -> float:
    """Fractional time-dilation shift per motional quantum, h f / (m c^2) (seed convention).

    Counts each mode with micromotion-doubled kinetic energy (seed 000 Table I: 3.9, 3.5,
    2.9e-19 for 3.531, 3.166, 2.580 MHz); a pure axial mode would have half of this.
    """
    return H * frequency_hz / (mass_kg * C_LIGHT**2)


def secular_motion(frequencies_hz: Sequence[float] = SECULAR_FREQS_HZ,
                   n0_ranges: Sequence[tuple[float, float]] = N0_RANGES,
                   heating_rates: Sequence[tuple[float, float]] = HEATING_RATES,
                   mean_delay_s: float = MEAN_PROBE_DELAY_S, *, convention: str = "seed_linear",
                   max_nbar: float = 5.0, mass_kg: float = MASS_CA40,
                   nu0_hz: float = NU0_CA) -> ShiftResult:
    """Second-order Doppler (time-dilation) shift of the secular motion, fractional (seed Table I).

    shift = -sum_i TD_i (nbar_i + 1/2), nbar_i = n0_i + ndot_i t_bar, n0_i the mid-point of its
    range, t_bar the mean delay between cooling and probe light (~44 ms reproduces -5.8e-19).
    ``seed_linear``: uncertainty = sum_i TD_i (n0 half-range_i + sigma(ndot_i) t_bar) (0.4e-19);
    ``quadrature``: the same terms in quadrature. Components are per mode (``nbar_x`` ...).
    Invalid if any nbar exceeds `max_nbar` (not sideband-cooled) or inputs are unphysical.
    """
    label = "Secular motion"
    conv = _pick(SECULAR_CONVENTIONS, convention, "secular_motion")
    inputs: dict[str, Any] = {"frequencies_hz": list(frequencies_hz),
                              "n0_ranges": [list(r) for r in n0_ranges],
                              "heating_rates": [list(r) for r in heating_rates],
                              "mean_delay_s": mean_delay_s}
    if not (len(frequencies_hz) == len(n0_ranges) == len(heating_rates) == 3):
        return invalid("secular", label, "need three modes (frequency, n0 range, heating rate)",
                       nu0_hz, inputs, conv)
    flat = [*frequencies_hz, *(x for r in n0_ranges for x in r),
            *(x for r in heating_rates for x in r), mean_delay_s]
    if not _finite(*flat):
        return invalid("secular", label, "non-finite input", nu0_hz, inputs, conv)
    if (any(f <= 0 for f in frequencies_hz) or any(lo < 0 or hi < lo for lo, hi in n0_ranges)
            or any(r < 0 or u < 0 for r, u in heating_rates) or not 0 <= mean_delay_s <= 1.0):
        return invalid("secular", label, "unphysical input (negative rate or occupation, "
                       "reversed range, or delay outside 0-1 s)", nu0_hz, inputs, conv)
    value, terms, components, nbars = 0.0, [], {}, []
    for axis, f, (lo, hi), (rate, rate_unc) in zip("xyz", frequencies_hz, n0_ranges,
                                                   heating_rates):
        td = time_dilation_per_quantum(f, mass_kg)
        nbar = 0.5 * (lo + hi) + rate * mean_delay_s
        nbars.append(nbar)
        value -= td * (nbar + 0.5)
        t_n0, t_rate = td * 0.5 * (hi - lo), td * rate_unc * mean_delay_s
        terms += [t_n0, t_rate]
        # More quanta -> more negative shift: the sign of each component is negative.
        components[f"nbar_{axis}"] = -(t_n0 + t_rate if convention == "seed_linear"
                                       else math.hypot(t_n0, t_rate))
    unc = sum(terms) if convention == "seed_linear" else math.sqrt(sum(t * t for t in terms))
    inputs["nbar"] = nbars
    result = ShiftResult("secular", label, value, unc, nu0_hz, inputs, True, "", conv,
                         components)
    if max(nbars) > max_nbar:
        return _invalidate(result, f"nbar {max(nbars):.2f} exceeds {max_nbar:g}: "
                           "sideband cooling has not reached the evaluated regime")
    return result


# --- quadratic Zeeman ----------------------------------------------------------------------
def quadratic_zeeman_dc(b_rms_t: float, b_unc_t: float, *,
                        alpha_z: float = ALPHA_Z_HZ_PER_T2,
                        alpha_z_unc: float = ALPHA_Z_UNC_HZ_PER_T2,
                        convention: str = "seed_linear",
                        valid_range_t: tuple[float, float] = (1e-6, 200e-6),
                        n_frames: int | None = None, nu0_hz: float = NU0_CA) -> ShiftResult:
    """Quadratic Zeeman shift of the six-line mean from the DC field, fractional (seed Eq. 2).

    shift = alpha_z <B^2>, alpha_z = 14.345(40) Hz/mT^2, B from the Zeeman splittings
    (`b_rms_t` = sqrt(<B^2>) over the window). Components: ``alpha_z`` = B^2 sigma(alpha_z),
    ``b_dc`` = 2 alpha_z B sigma(B). ``seed_linear`` adds them linearly (1.35 + 0.03 -> 1.4e-19,
    the seed's 1.4); ``quadrature`` gives 1.35e-19.
    """
    label = "Quadratic Zeeman (DC)"
    conv = _pick(QZ_CONVENTIONS, convention, "quadratic_zeeman_dc")
    inputs: dict[str, Any] = {"b_rms_t": b_rms_t, "b_unc_t": b_unc_t, "alpha_z_hz_per_t2": alpha_z,
                              "alpha_z_unc_hz_per_t2": alpha_z_unc}
    if n_frames is not None:
        inputs["n_frames"] = n_frames
        if n_frames == 0:
            return invalid("qz_dc", label, "no locked frames (no field from the splittings) "
                           "in the window", nu0_hz, inputs, conv)
    if not _finite(b_rms_t, b_unc_t, alpha_z, alpha_z_unc) or b_unc_t < 0 or alpha_z_unc < 0:
        return invalid("qz_dc", label, "non-finite or negative input", nu0_hz, inputs, conv)
    lo, hi = valid_range_t
    if not abs(b_rms_t) <= 1.0:
        return invalid("qz_dc", label, f"B = {b_rms_t:.3g} T is not a plausible trap field",
                       nu0_hz, inputs, conv)
    value = alpha_z * b_rms_t**2 / nu0_hz
    c_alpha = alpha_z_unc * b_rms_t**2 / nu0_hz
    c_b = 2 * alpha_z * abs(b_rms_t) * b_unc_t / nu0_hz
    unc = c_alpha + c_b if convention == "seed_linear" else math.hypot(c_alpha, c_b)
    result = ShiftResult("qz_dc", label, value, unc, nu0_hz, inputs, True, "", conv,
                         {"alpha_z": c_alpha, "b_dc": c_b})
    if not lo <= abs(b_rms_t) <= hi:
        return _invalidate(result, f"B = {b_rms_t * 1e6:.3f} uT is outside the model's range "
                           f"{lo * 1e6:g}-{hi * 1e6:g} uT")
    return result


def quadratic_zeeman_ac(b2_t2: float, b2_unc_t2: float, *, alpha_z: float = ALPHA_Z_HZ_PER_T2,
                        alpha_z_unc: float = ALPHA_Z_UNC_HZ_PER_T2,
                        convention: str = "seed_bound", max_b2_t2: float = 1e-10,
                        nu0_hz: float = NU0_CA) -> ShiftResult:
    """Quadratic Zeeman shift from the RF-induced AC field, fractional (seed 000 supplement).

    shift = alpha_z <B_y^2>, <B_y^2> <= 1(1)e-13 T^2. ``seed_bound``: the seed applies no
    correction and quotes alpha_z <B_y^2> = 3.5e-21 (printed 4e-21, 0.04e-19) as the bound;
    ``corrected``: shift alpha_z <B^2>, uncertainty from sigma(<B^2>) and alpha_z (shares the
    ``alpha_z`` component with the DC row).
    """
    label = "Quadratic Zeeman (AC)"
    conv = _pick(BOUND_CONVENTIONS, convention, "quadratic_zeeman_ac")
    inputs = {"b2_t2": b2_t2, "b2_unc_t2": b2_unc_t2, "alpha_z_hz_per_t2": alpha_z}
    if not _finite(b2_t2, b2_unc_t2) or b2_t2 < 0 or b2_unc_t2 < 0:
        return invalid("qz_ac", label, "<B^2> must be finite and non-negative", nu0_hz,
                       inputs, conv)
    if b2_t2 > max_b2_t2:
        return invalid("qz_ac", label, f"<B^2> = {b2_t2:.3g} T^2 exceeds {max_b2_t2:.3g} T^2: "
                       "AC field outside the perturbative model", nu0_hz, inputs, conv)
    shift = alpha_z * b2_t2 / nu0_hz
    if convention == "seed_bound":
        return ShiftResult("qz_ac", label, 0.0, shift, nu0_hz, inputs, True, "", conv,
                           {"b2_ac": shift})
    c_b2 = alpha_z * b2_unc_t2 / nu0_hz
    c_alpha = alpha_z_unc * b2_t2 / nu0_hz
    return ShiftResult("qz_ac", label, shift, math.hypot(c_b2, c_alpha), nu0_hz, inputs, True,
                       "", conv, {"b2_ac": c_b2, "alpha_z": c_alpha})


# --- excess micromotion --------------------------------------------------------------------
def micromotion(ratios: Sequence[float], ratio_uncs: Sequence[float] | None = None, *,
                rf_hz: float = RF_MAGIC_HZ, rf_magic_hz: float = RF_MAGIC_HZ,
                rf_magic_unc_hz: float = RF_MAGIC_UNC_HZ,
                delta_alpha0_rel_unc: float = DELTA_ALPHA0_REL_UNC, max_ratio: float = 0.3,
                nu0_hz: float = NU0_CA) -> ShiftResult:
    """Excess-micromotion shift (second-order Doppler + Stark), fractional (seed 000 Eq. 5).

    Delta nu / nu0 = -(Omega / 2 pi nu0)^2 [1 + Delta alpha_0/(h nu0) (m Omega c / e)^2] sum R_i^2.
    Delta alpha_0 is expressed through the magic drive frequency, where the bracket vanishes:
    bracket = 1 - (Omega / Omega_magic)^2, so the magic condition and the seed's
    "bracket ~ 0 at 24.801 MHz" hold exactly. Uncertainty: quadrature of the Delta alpha_0
    relative uncertainty (``delta_alpha0``, shared with BBR), of Omega_magic (``rf_magic``)
    and of each R_i. Invalid for R_i > `max_ratio` (lowest-order formula) or not three beams.
    """
    label = "Excess micromotion"
    inputs: dict[str, Any] = {"ratios": list(ratios), "rf_hz": rf_hz, "rf_magic_hz": rf_magic_hz,
                              "rf_magic_unc_hz": rf_magic_unc_hz,
                              "delta_alpha0_rel_unc": delta_alpha0_rel_unc}
    uncs = list(ratio_uncs) if ratio_uncs is not None else [0.0] * len(ratios)
    inputs["ratio_uncs"] = uncs
    if len(ratios) != 3 or len(uncs) != 3:
        return invalid("emm", label, f"need sideband ratios from 3 beams, got {len(ratios)}",
                       nu0_hz, inputs, CONV_EMM)
    if not _finite(*ratios, *uncs, rf_hz, rf_magic_hz) or min(ratios) < 0 or min(uncs) < 0:
        return invalid("emm", label, "sideband ratios must be finite and non-negative",
                       nu0_hz, inputs, CONV_EMM)
    if max(ratios) > 1.0 or max(uncs) > 1.0 or not 0 < rf_hz < 1e10 or rf_magic_hz <= 0:
        return invalid("emm", label, "sideband ratios above 1 or implausible drive frequency",
                       nu0_hz, inputs, CONV_EMM)
    k = (rf_hz / nu0_hz) ** 2
    q = (rf_hz / rf_magic_hz) ** 2
    bracket = 1.0 - q
    s2 = sum(r * r for r in ratios)
    value = -k * bracket * s2 + 0.0   # + 0.0: no "-0.0" at the magic drive
    components = {
        # |Delta alpha_0| up by its relative sigma -> bracket down by q * rel -> shift up.
        "delta_alpha0": k * s2 * q * delta_alpha0_rel_unc,
        "rf_magic": -k * s2 * 2 * q * rf_magic_unc_hz / rf_magic_hz,
    }
    for i, (r, u) in enumerate(zip(ratios, uncs), start=1):
        components[f"r{i}"] = -k * bracket * 2 * r * u
    unc = math.sqrt(sum(c * c for c in components.values()))
    inputs["bracket"] = bracket
    result = ShiftResult("emm", label, value, unc, nu0_hz, inputs, True, "", CONV_EMM,
                         components)
    if max(ratios) > max_ratio:
        return _invalidate(result, f"sideband ratio {max(ratios):.3g} exceeds {max_ratio:g}: "
                           "micromotion not compensated (lowest-order formula invalid)")
    return result


# --- background gas -----------------------------------------------------------------------
def h2_to_he_shift_ratio() -> float:
    """Ratio of H2 to He collisional shifts in the Langevin-type worst case (seed 000 Eq. 8).

    delta omega ~ n v sigma with sigma ~ (mu alpha)^(1/3) at equal collision energy and
    v ~ mu^(-1/2) at equal temperature: ratio ~ 1.75 (the seed quotes ~1.8 and 74 uHz).
    """
    def mu(m: float) -> float:
        return m * MASS_CA40 / (m + MASS_CA40)
    sigma = (mu(MASS_H2) * ALPHA_H2_A0_3 / (mu(MASS_HE4) * ALPHA_HE_A0_3)) ** (1 / 3)
    speed = math.sqrt(mu(MASS_HE4) / mu(MASS_H2))
    return sigma * speed


def background_gas_shift_hz(pressure_pa: float, he_shift_hz: float = BG_HE_SHIFT_HZ,
                            ref_pressure_pa: float = BG_REF_PRESSURE_PA,
                            h2_ratio: float | None = None) -> float:
    """Worst-case (H2) collisional shift in Hz at a pressure (Pa): linear in n_bg, i.e. in P."""
    ratio = h2_to_he_shift_ratio() if h2_ratio is None else h2_ratio
    return he_shift_hz * ratio * pressure_pa / ref_pressure_pa


def background_gas(pressure_pa: float, *, gas_temperature_k: float = BG_REF_TEMPERATURE_K,
                   he_shift_hz: float = BG_HE_SHIFT_HZ, ref_pressure_pa: float = BG_REF_PRESSURE_PA,
                   valid_range_k: tuple[float, float] = (70.0, 90.0),
                   max_pressure_pa: float = 1e-6, nu0_hz: float = NU0_CA) -> ShiftResult:
    """Background-gas collisional shift bound, fractional (seed 000 supplement, Eqs. 7-8).

    Bound row: shift 0, uncertainty = (He shift at the reference) x (H2/He ratio) x P / P_ref
    (seed: 42 uHz x 1.75 at 3 nPa -> 74 uHz -> 1.8e-19). The He shift is a thermal average at
    78.5 K, so gas temperatures outside `valid_range_k` make the row invalid; pressures above
    `max_pressure_pa` leave the single-collision regime.
    """
    label = "Background gas"
    ratio = h2_to_he_shift_ratio()
    inputs = {"pressure_pa": pressure_pa, "gas_temperature_k": gas_temperature_k,
              "he_shift_hz_at_ref": he_shift_hz, "ref_pressure_pa": ref_pressure_pa,
              "h2_he_ratio": ratio}
    if not _finite(pressure_pa, gas_temperature_k) or pressure_pa < 0:
        return invalid("bg_gas", label, "pressure must be finite and non-negative", nu0_hz,
                       inputs, CONV_BOUND)
    bound = background_gas_shift_hz(pressure_pa, he_shift_hz, ref_pressure_pa, ratio) / nu0_hz
    result = ShiftResult("bg_gas", label, 0.0, bound, nu0_hz, inputs, True, "", CONV_BOUND,
                         {"pressure": bound})
    if pressure_pa > max_pressure_pa:
        return _invalidate(result, f"pressure {pressure_pa:.3g} Pa exceeds "
                           f"{max_pressure_pa:.3g} Pa (model's single-collision regime)")
    lo, hi = valid_range_k
    if not lo <= gas_temperature_k <= hi:
        return _invalidate(result, f"gas temperature {gas_temperature_k:.1f} K is outside "
                           f"{lo:g}-{hi:g} K, where the thermal average was computed")
    return result


# --- residual bounds --------------------------------------------------------------------------
def bound_row(key: str, label: str, bound: float, source: str = "",
              nu0_hz: float = NU0_CA) -> ShiftResult:
    """Build a residual row known only as a bound (fractional): shift 0, uncertainty `bound`."""
    if not _finite(bound) or bound < 0:
        return invalid(key, label, "bound must be finite and non-negative", nu0_hz,
                       {"bound": bound, "source": source}, CONV_BOUND)
    return ShiftResult(key, label, 0.0, bound, nu0_hz, {"bound": bound, "source": source},
                       True, "", CONV_BOUND, {key: bound})


# --- the twin's truth ---------------------------------------------------------------------
@dataclass(frozen=True)
class TrueConditions:
    """True physical conditions at the ion (SI) for the twin.

    `nbar` are the true mean occupations during the probe; `micromotion_ratios` the true
    R_i; `b2_ac_t2` the true <B_y^2> of the RF-induced field; `bg_shift_per_pa_hz` the true
    collisional shift per pascal (default: the He-only thermal average, 42 uHz / 3 nPa).
    """

    temperature_k: float = 79.5
    b_t: float = 37.197e-6
    nbar: tuple[float, float, float] = (0.034, 0.043, 0.113)
    micromotion_ratios: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pressure_pa: float = 3e-9
    b2_ac_t2: float = 1e-13
    rf_hz: float = RF_MAGIC_HZ
    secular_freqs_hz: tuple[float, float, float] = SECULAR_FREQS_HZ
    bbr_coefficient_300k_hz: float = BBR_COEFF_300K_SEED_HZ
    alpha_z: float = ALPHA_Z_HZ_PER_T2
    rf_magic_hz: float = RF_MAGIC_HZ
    bg_shift_per_pa_hz: float = BG_HE_SHIFT_HZ / BG_REF_PRESSURE_PA


def true_shifts_hz(cond: TrueConditions, nu0_hz: float = NU0_CA) -> dict[str, float]:
    """Physical shift of each effect in Hz for true conditions (same formulas as the budget).

    Keys match the budget rows: bbr, emm, secular, qz_dc, qz_ac, bg_gas. Residual bound rows
    (first-order Zeeman, quadrupole, AOM chirp, probe Stark) are zero-mean here: the twin
    models those mechanisms itself where it simulates them.
    """
    k = (cond.rf_hz / nu0_hz) ** 2
    bracket = 1.0 - (cond.rf_hz / cond.rf_magic_hz) ** 2
    secular = -sum(time_dilation_per_quantum(f) * (n + 0.5)
                   for f, n in zip(cond.secular_freqs_hz, cond.nbar))
    return {
        "bbr": bbr_shift_hz(cond.temperature_k, cond.bbr_coefficient_300k_hz),
        "emm": -k * bracket * sum(r * r for r in cond.micromotion_ratios) * nu0_hz,
        "secular": secular * nu0_hz,
        "qz_dc": cond.alpha_z * cond.b_t**2,
        "qz_ac": cond.alpha_z * cond.b2_ac_t2,
        "bg_gas": cond.bg_shift_per_pa_hz * cond.pressure_pa,
    }


def true_shift_hz(cond: TrueConditions, nu0_hz: float = NU0_CA) -> float:
    """Total physical shift of the six-line mean in Hz for true conditions (for the twin)."""
    return math.fsum(true_shifts_hz(cond, nu0_hz).values())


__all__ = [
    "ShiftResult", "SensorTrace", "Envelope", "TrueConditions", "bbr", "bbr_shift_hz",
    "sensor_envelope", "secular_motion", "time_dilation_per_quantum", "quadratic_zeeman_dc",
    "quadratic_zeeman_ac", "micromotion", "background_gas", "background_gas_shift_hz",
    "h2_to_he_shift_ratio", "bound_row", "invalid", "true_shifts_hz", "true_shift_hz",
]
