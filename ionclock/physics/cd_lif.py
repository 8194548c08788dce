"""Cd+ LIF spectroscopy of S1/2 -> P3/2 at 214.5 nm: the pieces beyond `cadmium` (seed 004 §III).

`ionclock.physics.cadmium` holds the Voigt profile (Eq. 15), its fit and Eq. 17; this module
adds what the LIF twin and the HFS analysis need besides (docs/decisions/1200):

- the Doppler (Gaussian) FWHM of a thermal cloud, nu_G = (nu0/c) sqrt(8 ln2 k T / m): 29.8 MHz
  for 113Cd+ at 0.1 K (the seed: "the fitted nu_G is approximately 30 MHz ... the ion
  temperature is estimated to be approximately 0.1 K");
- the first-order Zeeman shift of the probed cycling component, seed Eqs. 12-13
  (E = g_F m_F muB B, g_F = g_J [F(F+1) + J(J+1) - I(I+1)] / [2F(F+1)]): for 111/113Cd+ the
  sigma+ line S1/2(F=1, m=1) -> P3/2(F=2, m=2), for 114Cd+ (I = 0) S1/2(m=1/2) -> P3/2(m=3/2);
  both are 1.0 muB B / h = 0.112 MHz at 0.08 G, the seed's "0.11 MHz";
- the seed's uncertainty combination, read back from its printed numbers:
  per line sigma^2 = stat^2 + drift^2 (wavemeter drift 0.5 MHz on EACH line), on an offset
  sigma^2 = sigma_A^2 + sigma_114^2 + Zeeman^2: sqrt(2 (1.0^2 + 0.5^2) + 0.11^2) = 1.6 MHz as
  printed (one drift term on the difference would give 1.5 MHz);
- the P3/2 HFS uncertainty in two conventions: "seed", the quadrature sum of the offset's
  uncertainty and the isotope shift's statistical and systematic ones, 1314.3(22)[023] /
  555.2(23)[008] MHz read as (2.2 MHz)[2.3 MHz] / (2.3 MHz)[0.8 MHz]: sqrt(1.6^2 + 2.2^2 +
  2.3^2) = 3.6 MHz and sqrt(1.6^2 + 2.3^2 + 0.8^2) = 2.9 MHz, the seed's 794.6(36) /
  835.5(29); and "propagated", the same inputs carried through Eq. 17 (nu_p = 8/3 (...)),
  which multiplies them by 8/3: 9.5 / 7.8 MHz. The seed's figure leaves out the 8/3.

Sign convention (the seed's): offsets and isotope shifts are nu(A) - nu(114Cd+), A = 111 or
113 (Eq. 17, first line), so positive means the odd isotope's line lies above 114's.
"""

from __future__ import annotations

import math

from ionclock.physics.cadmium import (
    G_J_P32,
    G_J_S12,
    isotope,
    p32_hfs_from_offsets,
)
from ionclock.physics.constants import AMU, C_LIGHT, K_B, MU_B_OVER_H

#: Atomic masses of the Cd isotopes (u; AME2020), for the Doppler width of each line.
MASS_U = {111: 110.90418287, 113: 112.90440813, 114: 113.90336509}

#: Seed 004 §III: the uncertainties of one LIF line and of the Zeeman term (Hz).
STAT_PER_LINE_HZ = 1.0e6          # "approximately 1 MHz" per line
WAVEMETER_DRIFT_HZ = 0.5e6        # "less than 0.5 MHz", taken per line (see module docstring)
ZEEMAN_HZ = 0.11e6                # "estimated to be 0.11 MHz"

#: Systematic uncertainty of the isotope shifts Delta nu_IS (the seed's [023] / [008], MHz x 0.1).
ISOTOPE_SHIFT_SYS_UNC_HZ = {111: 2.3e6, 113: 0.8e6}

HFS_CONVENTIONS = ("seed", "propagated")


def doppler_fwhm_hz(temperature_k: float, mass_number: int, nu0_hz: float) -> float:
    """Doppler FWHM (Hz) of a thermal cloud at `temperature_k`: (nu0/c) sqrt(8 ln2 k T / m)."""
    if not (math.isfinite(temperature_k) and temperature_k >= 0):
        raise ValueError(f"temperature must be finite and >= 0 K, got {temperature_k!r}")
    m = MASS_U[mass_number] * AMU
    return nu0_hz / C_LIGHT * math.sqrt(8.0 * math.log(2.0) * K_B * temperature_k / m)


def temperature_from_doppler_fwhm(fwhm_hz: float, mass_number: int, nu0_hz: float) -> float:
    """Inverse of `doppler_fwhm_hz`: the temperature (K) of a Gaussian FWHM (Hz)."""
    m = MASS_U[mass_number] * AMU
    return m * (fwhm_hz * C_LIGHT / nu0_hz) ** 2 / (8.0 * math.log(2.0) * K_B)


def g_f(g_j: float, f: float, j: float, i: float) -> float:
    """Weak-field g_F = g_J [F(F+1) + J(J+1) - I(I+1)] / [2F(F+1)] (seed 004 Eq. 13)."""
    return g_j * (f * (f + 1) + j * (j + 1) - i * (i + 1)) / (2.0 * f * (f + 1))


def probed_line_zeeman_hz(mass_number: int, b_t: float, polarisation: int = +1) -> float:
    """First-order Zeeman shift (Hz) of the probed cycling component at field `b_t` (T).

    Seed Eqs. 12-13: (g_F' m' - g_F m) muB B / h for sigma+ (`polarisation` +1) from the
    stretched ground state, S1/2(F=1, m=1) -> P3/2(F=2, m=2) for 111/113Cd+ and S1/2(m=1/2) ->
    P3/2(m=3/2) for 114Cd+; -1 is the sigma- mirror image (the opposite shift).
    """
    if polarisation not in (+1, -1):
        raise ValueError(f"polarisation must be +1 or -1, got {polarisation!r}")
    if mass_number == 114:
        g_lower, g_upper, m_lower, m_upper = G_J_S12, G_J_P32, 0.5, 1.5
    else:
        isotope(mass_number)
        g_lower = g_f(G_J_S12, 1.0, 0.5, 0.5)
        g_upper = g_f(G_J_P32, 2.0, 1.5, 0.5)
        m_lower, m_upper = 1.0, 2.0
    return polarisation * (g_upper * m_upper - g_lower * m_lower) * MU_B_OVER_H * b_t


def line_uncertainty_hz(stat_hz: float, drift_hz: float = WAVEMETER_DRIFT_HZ) -> float:
    """One line centre's standard uncertainty (Hz): statistics and wavemeter drift in quadrature."""
    return math.hypot(stat_hz, drift_hz)


def offset_uncertainty_hz(line_a_unc_hz: float, line_114_unc_hz: float,
                          zeeman_hz: float = ZEEMAN_HZ) -> float:
    """An offset nu(A) - nu(114)'s standard uncertainty (Hz), as the seed combines it.

    sqrt(sigma_A^2 + sigma_114^2 + Zeeman^2), each line's sigma from `line_uncertainty_hz`.
    """
    return math.sqrt(line_a_unc_hz ** 2 + line_114_unc_hz ** 2 + zeeman_hz ** 2)


def p32_hfs(mass_number: int, offset_hz: float, offset_unc_hz: float,
            convention: str = "seed", isotope_shift_hz: float | None = None,
            isotope_shift_unc_hz: float | None = None,
            isotope_shift_sys_unc_hz: float | None = None) -> tuple[float, float]:
    """nu_HFS,p (Hz) and its standard uncertainty from a measured offset, Eq. 17.

    The value is `cadmium.p32_hfs_from_offsets`; the uncertainty is the seed's quadrature sum
    (``"seed"``, default) or Eq. 17's linear propagation (``"propagated"``); the isotope shift
    and its statistical and systematic uncertainties default to the seed's (module docstring).
    """
    if convention not in HFS_CONVENTIONS:
        raise ValueError(f"HFS convention must be one of {HFS_CONVENTIONS}, got {convention!r}")
    iso = isotope(mass_number)
    is_hz = iso.isotope_shift_hz if isotope_shift_hz is None else isotope_shift_hz
    is_stat = iso.isotope_shift_unc_hz if isotope_shift_unc_hz is None else isotope_shift_unc_hz
    is_sys = (ISOTOPE_SHIFT_SYS_UNC_HZ[mass_number] if isotope_shift_sys_unc_hz is None
              else isotope_shift_sys_unc_hz)
    is_unc = math.hypot(is_stat, is_sys)
    nu_p, propagated = p32_hfs_from_offsets(offset_hz, is_hz, iso.hfs_s_hz, offset_unc_hz,
                                            is_unc, iso.hfs_s_unc_hz)
    if convention == "propagated":
        return nu_p, propagated
    return nu_p, math.sqrt(offset_unc_hz ** 2 + is_unc ** 2 + (iso.hfs_s_unc_hz / 4.0) ** 2)
