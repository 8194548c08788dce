"""The 111/113Cd+ microwave frequency standard (DOMAIN §4, seed 004).

- Second-order Zeeman shift (SOZS) of the ground-state clock transition
  S1/2 F=0, m=0 -> F=1, m=0: Delta nu = (g_J - g_I)^2 muB^2 B^2 / (2 h^2 nu_HFS) = K0 B^2
  (seed 004 Eq. 18), K0 = 270.1 / 258.2 Hz/G^2 for 111/113Cd+, with the g_J uncertainty
  propagated (~4.3e-15 fractional at 0.08 G for 113Cd+).
- The P3/2 hyperfine splitting from the measured LIF offsets relative to 114Cd+ (Eq. 17):
  Delta nu_meas = Delta nu_IS + 1/4 nu_HFS,s - 3/8 nu_HFS,p.
- The Voigt LIF line profile (Eq. 15).
- `cadmium_budget`: the same `Budget` machinery renders a Cd+ budget.

SI inside (Hz, T); lab-unit helpers say so in their names (``_hz_per_g2``, ``_gauss``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import voigt_profile

from ionclock.physics.budget import Budget
from ionclock.physics.constants import MU_B_OVER_H
from ionclock.physics.shifts import ShiftResult, bound_row, invalid

GAUSS = 1e-4   # T

# Seed 004: recommended g_J of 5s 2S1/2 (conservative) and the nuclear g factor.
G_J_S12 = 2.00226
G_J_S12_UNC = 0.00004
G_I = 0.6223009e-3
G_I_UNC = 0.0000009e-3
G_J_P12 = 0.665817
G_J_P32 = 1.334056

# g_I conventions of Eq. 18's (g_J - g_I) (DOMAIN §4). "seed": the seed's 0.6223009e-3 for
# both isotopes, which is the 113Cd magnetic moment in nuclear magnetons times 1e-3, not a
# g-factor. "physical": the nuclear g-factor in Bohr magnetons in the convention of
# H = muB B (g_J J_z + g_I I_z) (Steck's alkali tables), g_I = -mu_I / (I muB) =
# -mu_I[muN] / (I * m_p/m_e): +6.778e-4 (113Cd, mu = -0.6223009 muN) and +6.480e-4 (111Cd,
# mu = -0.5948861 muN; Stone, INDC(NDS)-0658, 2014). In the other common convention,
# g_I = mu_I / (I muB) = -6.78e-4 / -6.48e-4, the same combination reads g_J + g_I.
# m_p/m_e = 1836.15267343 (CODATA 2018).
G_I_CONVENTIONS = ("seed", "physical")
_PROTON_ELECTRON_MASS_RATIO = 1836.15267343
_MU_I_NUCLEAR_MAGNETONS = {111: -0.5948861, 113: -0.6223009}


def g_i(mass_number: int, convention: str = "seed") -> float:
    """g_I entering Eq. 18 as (g_J - g_I): the seed's number, or the physical g-factor.

    "seed": 0.6223009e-3 for either isotope (the seed's value); "physical": -mu_I/(I muB)
    of the isotope (I = 1/2), +6.778e-4 for 113Cd and +6.480e-4 for 111Cd.
    """
    isotope(mass_number)
    if convention == "seed":
        return G_I
    if convention == "physical":
        return -_MU_I_NUCLEAR_MAGNETONS[mass_number] / (0.5 * _PROTON_ELECTRON_MASS_RATIO)
    raise ValueError(f"g_I convention must be one of {G_I_CONVENTIONS}, got {convention!r}")


@dataclass(frozen=True)
class CdIsotope:
    """Data of one odd Cd+ isotope (I = 1/2), seed 004 (frequencies in Hz)."""

    mass_number: int
    hfs_s_hz: float              # ground-state HFS in the ion trap
    hfs_s_unc_hz: float
    isotope_shift_hz: float      # Delta nu_IS of S1/2 -> P3/2 relative to 114Cd+
    isotope_shift_unc_hz: float
    lif_offset_hz: float         # measured S1/2(F=1) -> P3/2(F=2) offset from 114Cd+
    lif_offset_unc_hz: float


ISOTOPES: dict[int, CdIsotope] = {
    111: CdIsotope(111, 14_530.5073499e6, 0.0000011e6, 1314.3e6, 2.2e6, 4649.0e6, 1.6e6),
    113: CdIsotope(113, 15_199.86285496e6, 0.00000012e6, 555.2e6, 2.3e6, 4041.8e6, 1.6e6),
}

# LIF profile parameters (seed 004 §III): natural width and Doppler width at ~0.1 K.
LORENTZ_FWHM_HZ = 60.13e6
GAUSS_FWHM_HZ = 30e6


def isotope(mass_number: int) -> CdIsotope:
    """Return the data of 111Cd+ or 113Cd+; anything else is a ValueError."""
    if mass_number not in ISOTOPES:
        raise ValueError(f"Cd+ isotope must be 111 or 113, got {mass_number!r}")
    return ISOTOPES[mass_number]


def sozs_coefficient(mass_number: int, g_j: float = G_J_S12, g_i: float | None = None,
                     convention: str = "seed") -> float:
    """SOZS coefficient K0 in Hz/T^2: (g_J - g_I)^2 (muB/h)^2 / (2 nu_HFS) (seed 004 Eq. 18).

    `g_i` None takes g_I of `convention` ("seed" by default, see `g_i`).
    """
    nu = isotope(mass_number).hfs_s_hz
    gi = _g_i_of(mass_number, convention) if g_i is None else g_i
    return (g_j - gi) ** 2 * MU_B_OVER_H**2 / (2.0 * nu)


_g_i_of = g_i   # for `sozs_coefficient`, whose argument `g_i` hides the function


def sozs_coefficient_hz_per_g2(mass_number: int, convention: str = "seed"
                               ) -> tuple[float, float]:
    """K0 and its 1-sigma (from g_J and g_I) in Hz/G^2: 270.1(1) and 258.2(1) for 111/113.

    The "physical" g_I gives 270.07 / 258.17 Hz/G^2 (seed: 270.07 / 258.18): g_J - g_I differs
    by 2.6e-5 (111) / 5.6e-5 (113), i.e. 2.6e-5 / 5.6e-5 relative in K0, which moves the SOZS
    at 0.08 G by 3.1e-15 / 6.0e-15 fractionally (see `g_i`).
    """
    k0 = sozs_coefficient(mass_number, convention=convention)
    rel = 2.0 * math.hypot(G_J_S12_UNC, G_I_UNC) / (G_J_S12 - g_i(mass_number, convention))
    return k0 * GAUSS**2, k0 * GAUSS**2 * rel


def zeeman_pm1_hz_per_t(mass_number: int, convention: str = "seed") -> float:
    """First-order shift of the F=0,m=0 -> F=1,m=+-1 lines per tesla, Hz/T (each line).

    Breit-Rabi for J = I = 1/2 with H = A I.J + muB B (g_J J_z + g_I I_z): the stretched
    states F=1, m=+-1 move by +-(g_J + g_I) muB B / 2 exactly, F=0 by -(h nu/2)(sqrt(1+x^2)-1)
    with x = (g_J - g_I) muB B / (h nu). So nu(m=+-1) = nu (1 + sqrt(1 + x^2)) / 2
    +- (g_J + g_I) muB B / (2 h): the pair splits by (g_J + g_I) muB B / h (the weak-field
    g_F = g_J / 2 of DOMAIN §4 plus the nuclear term) and its mean carries half the clock
    line's second-order shift.
    """
    return 0.5 * (G_J_S12 + g_i(mass_number, convention)) * MU_B_OVER_H


def zeeman_pm1_lines_hz(mass_number: int, b_t: float, nu0_hz: float | None = None,
                        convention: str = "seed") -> tuple[float, float, float]:
    """Frequencies (Hz) of the m=-1, 0-0 and m=+1 lines at field `b_t` (T), exact Breit-Rabi.

    `nu0_hz` defaults to the isotope's ground HFS (seed 004).
    """
    nu = isotope(mass_number).hfs_s_hz if nu0_hz is None else nu0_hz
    x = (G_J_S12 - g_i(mass_number, convention)) * MU_B_OVER_H * b_t / nu
    root = math.sqrt(1.0 + x * x)
    first = zeeman_pm1_hz_per_t(mass_number, convention) * b_t
    mean = 0.5 * nu * (1.0 + root)
    return mean - first, nu * root, mean + first


def field_from_splitting(mass_number: int, splitting_hz: float, splitting_unc_hz: float = 0.0,
                         convention: str = "seed") -> tuple[float, float]:
    """B (T) and its 1-sigma from the m=+1 minus m=-1 splitting (Hz): B = df / (2 dnu/dB)."""
    per_t = 2.0 * zeeman_pm1_hz_per_t(mass_number, convention)
    return splitting_hz / per_t, abs(splitting_unc_hz) / per_t


@dataclass(frozen=True)
class SozsShift:
    """SOZS at a field: shift and its uncertainty in Hz and fractional (of nu_HFS)."""

    shift_hz: float
    unc_g_j_hz: float      # from the g_J (and g_I) uncertainty
    unc_b_hz: float        # from the field uncertainty
    nu_hfs_hz: float

    @property
    def uncertainty_hz(self) -> float:
        """Total 1-sigma in Hz (g_J and B parts in quadrature)."""
        return math.hypot(self.unc_g_j_hz, self.unc_b_hz)

    @property
    def fractional(self) -> float:
        """Shift as a fraction of the clock frequency."""
        return self.shift_hz / self.nu_hfs_hz

    @property
    def fractional_unc_g_j(self) -> float:
        """Fractional uncertainty from g_J alone (seed: ~4.3e-15 at 0.08 G for 113Cd+)."""
        return self.unc_g_j_hz / self.nu_hfs_hz

    @property
    def fractional_uncertainty(self) -> float:
        """Total fractional 1-sigma."""
        return self.uncertainty_hz / self.nu_hfs_hz


def sozs_shift(mass_number: int, b_t: float, b_unc_t: float = 0.0,
               convention: str = "seed") -> SozsShift:
    """SOZS (Hz) of the 0-0 clock transition at field B (T), g_J and B uncertainties propagated.

    d(Delta nu)/d g_J = 2 Delta nu / (g_J - g_I); d(Delta nu)/dB = 2 Delta nu / B.
    `convention` picks g_I ("seed" default, or "physical"; see `g_i`).
    """
    if not (math.isfinite(b_t) and math.isfinite(b_unc_t)) or b_unc_t < 0:
        raise ValueError("field and its uncertainty must be finite, uncertainty >= 0")
    k0 = sozs_coefficient(mass_number, convention=convention)
    shift = k0 * b_t**2
    gi = g_i(mass_number, convention)
    unc_g = 2.0 * shift * math.hypot(G_J_S12_UNC, G_I_UNC) / (G_J_S12 - gi)
    unc_b = 2.0 * k0 * abs(b_t) * b_unc_t
    return SozsShift(shift, unc_g, unc_b, isotope(mass_number).hfs_s_hz)


def sozs_row(mass_number: int, b_t: float, b_unc_t: float = 0.0,
             valid_max_t: float = 1e-4, convention: str = "seed") -> ShiftResult:
    """Build the SOZS budget row (fractional of nu_HFS); invalid beyond the weak-field range.

    `valid_max_t` (1 G) keeps muB B far below the hyperfine splitting (A/muB ~ 0.5 T), where
    the quadratic expansion of Breit-Rabi holds to better than 1e-7.
    """
    nu = isotope(mass_number).hfs_s_hz
    label = "Second-order Zeeman"
    inputs = {"isotope": mass_number, "b_t": b_t, "b_unc_t": b_unc_t, "g_j": G_J_S12,
              "g_j_unc": G_J_S12_UNC, "g_i": g_i(mass_number, convention),
              "g_i_convention": convention}
    try:
        s = sozs_shift(mass_number, b_t, b_unc_t, convention)
    except ValueError as err:
        return invalid("sozs", label, str(err), nu, inputs)
    if abs(b_t) > valid_max_t:
        return invalid("sozs", label, f"B = {b_t / GAUSS:.3g} G beyond the weak-field range "
                       f"({valid_max_t / GAUSS:g} G)", nu, inputs,
                       value=s.fractional, uncertainty=s.fractional_uncertainty)
    return ShiftResult("sozs", label, s.fractional, s.fractional_uncertainty, nu, inputs, True,
                       "", "K0 B^2; unc: g_J and B in quadrature",
                       {"g_j": s.fractional_unc_g_j, "b_dc": s.unc_b_hz / nu})


def cadmium_budget(mass_number: int = 113, b_t: float = 0.08 * GAUSS, b_unc_t: float = 0.0,
                   bounds: Sequence[tuple[str, str, float]] = (),
                   unit: float = 1e-15, convention: str = "seed",
                   provenance: dict | None = None) -> Budget:
    """Build a Cd+ budget: the SOZS row plus (key, label, fractional bound) rows, unit 1e-15."""
    nu = isotope(mass_number).hfs_s_hz
    rows = [sozs_row(mass_number, b_t, b_unc_t, convention=convention)]
    rows += [bound_row(key, label, bound, nu0_hz=nu) for key, label, bound in bounds]
    prov = {"source": "cadmium", "isotope": mass_number, "b_t": b_t,
            "g_i_convention": convention}
    prov.update(provenance or {})
    return Budget(rows, nu, f"{mass_number}Cd+", unit, prov)


# --- P3/2 hyperfine splitting from the LIF offsets ------------------------------------------------
def p32_hfs_from_offsets(measured_offset_hz: float, isotope_shift_hz: float, hfs_s_hz: float,
                         measured_unc_hz: float = 0.0, isotope_shift_unc_hz: float = 0.0,
                         hfs_s_unc_hz: float = 0.0) -> tuple[float, float]:
    """nu_HFS,p (Hz) and its 1-sigma from Delta nu_meas = Delta nu_IS + nu_s/4 - 3 nu_p/8 (Eq. 17).

    nu_p = (8/3) (Delta nu_IS + nu_s / 4 - Delta nu_meas); the input uncertainties are
    propagated linearly in quadrature.
    """
    nu_p = 8.0 / 3.0 * (isotope_shift_hz + hfs_s_hz / 4.0 - measured_offset_hz)
    unc = 8.0 / 3.0 * math.sqrt(isotope_shift_unc_hz**2 + (hfs_s_unc_hz / 4.0) ** 2
                                + measured_unc_hz**2)
    return nu_p, unc


def p32_hfs(mass_number: int) -> tuple[float, float]:
    """P3/2 HFS (Hz) of 111/113Cd+ from the seed's offsets: 794.5 / 835.6 MHz.

    The seed prints 794.6(36) / 835.5(29) MHz: the central values agree within the 8/3-times
    amplified rounding (+/-0.13 MHz) of the printed 0.1 MHz inputs; the printed uncertainties
    are smaller than the linear propagation of the printed input uncertainties (7.3 / 7.5 MHz),
    which is what this returns (see docs/decisions/0402).
    """
    iso = isotope(mass_number)
    return p32_hfs_from_offsets(iso.lif_offset_hz, iso.isotope_shift_hz, iso.hfs_s_hz,
                                iso.lif_offset_unc_hz, iso.isotope_shift_unc_hz, iso.hfs_s_unc_hz)


def lif_offset(isotope_shift_hz: float, hfs_s_hz: float, hfs_p_hz: float) -> float:
    """Predicted S1/2(F=1) -> P3/2(F=2) offset from 114Cd+ (Hz), Eq. 17 forwards."""
    return isotope_shift_hz + hfs_s_hz / 4.0 - 3.0 * hfs_p_hz / 8.0


# --- LIF line profile ---------------------------------------------------------------------------
def voigt_lif(nu_hz: np.ndarray | float, center_hz: float, area: float, offset: float = 0.0,
              lorentz_fwhm_hz: float = LORENTZ_FWHM_HZ,
              gauss_fwhm_hz: float = GAUSS_FWHM_HZ) -> np.ndarray:
    """Voigt LIF profile F(nu) = F0 + [F_L * F_G](nu) (seed 004 Eq. 15), counts per Hz x area.

    F_L = (2A/pi) nu_L / (4 (nu - nu_c)^2 + nu_L^2) (area A, FWHM nu_L) convolved with the
    unit-area Gaussian of FWHM nu_G; evaluated with scipy's Faddeeva-based voigt_profile
    (sigma = nu_G / (2 sqrt(2 ln 2)), gamma = nu_L / 2).
    """
    if lorentz_fwhm_hz < 0 or gauss_fwhm_hz < 0 or (lorentz_fwhm_hz == gauss_fwhm_hz == 0):
        raise ValueError("widths must be non-negative and not both zero")
    sigma = gauss_fwhm_hz / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    gamma = lorentz_fwhm_hz / 2.0
    x = np.asarray(nu_hz, dtype=float) - center_hz
    return offset + area * voigt_profile(x, sigma, gamma)


def fit_voigt_lif(nu_hz: Sequence[float], counts: Sequence[float],
                  lorentz_fwhm_hz: float = LORENTZ_FWHM_HZ) -> dict[str, float]:
    """Fit centre, area, offset and Gaussian width (natural width fixed) to a LIF scan.

    Returns the values and 1-sigma uncertainties (Hz for frequencies) from the covariance.
    """
    from scipy.optimize import curve_fit

    x = np.asarray(nu_hz, dtype=float)
    y = np.asarray(counts, dtype=float)
    if x.shape != y.shape or x.size < 5 or not (np.all(np.isfinite(x))
                                                and np.all(np.isfinite(y))):
        raise ValueError("need at least 5 finite (frequency, counts) pairs of equal length")
    c0 = float(x[np.argmax(y)])
    f0 = float(np.min(y))
    a0 = float(np.trapezoid(y - f0, x)) if hasattr(np, "trapezoid") else float(
        np.trapz(y - f0, x))

    def model(nu, center, area, offset, g_fwhm):
        return voigt_lif(nu, center, area, offset, lorentz_fwhm_hz, abs(g_fwhm))

    popt, pcov = curve_fit(model, x, y, p0=[c0, max(a0, 1e-30), f0, GAUSS_FWHM_HZ],
                           maxfev=20000)
    err = np.sqrt(np.diag(pcov))
    names = ("center_hz", "area", "offset", "gauss_fwhm_hz")
    out = {n: float(v) for n, v in zip(names, popt)}
    out["gauss_fwhm_hz"] = abs(out["gauss_fwhm_hz"])
    out.update({f"{n}_unc": float(e) for n, e in zip(names, err)})
    return out


# --- the microwave clock's detection-noise limit ------------------------------------------------
def ramsey_snr(bright_counts: float, background_counts: float, contrast: float,
               n_ions: int) -> float:
    """Signal-to-noise ratio of one Ramsey probe at half fringe (the lock's operating point).

    Counts n = bg + A p with p = (1 + C cos(2 pi x T)) / 2: the half-fringe amplitude A C / 2
    over the noise at p = 1/2, photon shot noise of the mean (bg + A/2) and the cloud's
    projection noise (A/N)^2 N p (1 - p) = A^2 / (4N), added in variance:
    SNR = (A C / 2) / sqrt(bg + A/2 + A^2 / (4N)). Projection noise alone gives C sqrt(N)
    (Itano et al., Phys. Rev. A 47, 3554 (1993)).
    """
    if bright_counts <= 0 or background_counts < 0 or not 0 < contrast <= 1 or n_ions < 1:
        raise ValueError("need bright_counts > 0, background_counts >= 0, 0 < contrast <= 1, "
                         "n_ions >= 1")
    a = bright_counts
    return 0.5 * a * contrast / math.sqrt(background_counts + 0.5 * a + a * a / (4.0 * n_ions))


def ramsey_instability(tau_s: float, ramsey_time_s: float, cycle_time_s: float, snr: float,
                       nu0_hz: float) -> float:
    """Allan deviation of a Ramsey-locked standard limited by detection noise.

    sigma_y(tau) = 1 / (2 pi nu0 T SNR) sqrt(Tc / tau): the textbook sigma_y = sqrt(Tc/tau) /
    (pi Q SNR) with the Ramsey line Q = nu0 / (1/(2T)) (F. Riehle, Frequency Standards, Wiley
    2004, ch. 5; Santarelli et al., PRL 82, 4619 (1999) for SNR = C sqrt(N)); DOMAIN §5's QPN
    line is the same with SNR = C (1 - 2 eps) for one ion.
    `cycle_time_s` is the time per clock probe (the cycle over the clock-probe duty cycle).
    """
    return math.sqrt(cycle_time_s / tau_s) / (2.0 * math.pi * nu0_hz * ramsey_time_s * snr)


def ramsey_probability(detuning_hz, ramsey_time_s: float, rabi_rad_s: float, pulse_s: float):
    """Excitation of one two-level ion by two square pulses around free evolution (exact).

    P = 4 (W/W')^2 sin^2(W' tau / 2) [cos(W' tau / 2) cos(D T / 2)
        - (D / W') sin(W' tau / 2) sin(D T / 2)]^2,  W' = sqrt(W^2 + D^2), D = 2 pi detuning
    (N. F. Ramsey, Phys. Rev. 78, 695 (1950); J. Vanier and C. Audoin, The Quantum Physics
    of Atomic Frequency Standards, 1989, ch. 5). Near the centre the fringes repeat every
    1/(T + 4 tau / pi) for pi/2 pulses, not 1/T. Works on floats and numpy arrays.
    """
    d = 2.0 * np.pi * np.asarray(detuning_hz, dtype=float)
    w = np.hypot(rabi_rad_s, d)
    half = 0.5 * w * pulse_s
    amp = (rabi_rad_s / w) * np.sin(half)
    inner = (np.cos(half) * np.cos(0.5 * d * ramsey_time_s)
             - (d / w) * np.sin(half) * np.sin(0.5 * d * ramsey_time_s))
    p = 4.0 * amp * amp * inner * inner
    return float(p) if p.ndim == 0 else p
