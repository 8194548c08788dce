"""Physical constants and the 40Ca+ clock's atomic structure (DOMAIN.md §1, §5).

Everything SI. Constants are CODATA 2018 (exact where SI defines them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# --- constants (CODATA 2018) ------------------------------------------------------------
H = 6.62607015e-34            # Planck constant, J s (exact)
HBAR = H / (2 * math.pi)
C_LIGHT = 299792458.0         # m/s (exact)
E_CHARGE = 1.602176634e-19    # C (exact)
K_B = 1.380649e-23            # J/K (exact)
AMU = 1.66053906660e-27       # kg
A0 = 5.29177210903e-11        # Bohr radius, m
EPS0 = 8.8541878128e-12       # F/m
MU_B_OVER_H = 13.996245e9     # Bohr magneton / h in Hz/T, as DOMAIN §1 uses it
ATOMIC_UNIT_POLARIZABILITY = 1.64878e-41  # C^2 m^2 / J (DOMAIN §2)

# --- 40Ca+ clock transition 4S1/2 -> 3D5/2 (DOMAIN §1) ----------------------------------
NU0_CA = 411_042_129_776_400.0   # Hz
TAU_D52 = 1.168                  # s, D5/2 lifetime
MASS_CA40 = 39.962590863 * AMU   # kg
G_S12 = 2.00225664               # Lande g of 4S1/2
G_D52 = 1.2003340                # Lande g of 3D5/2
B_NOMINAL = 37.197e-6            # T, the seed's operating field
J_D = 2.5                        # J of D5/2


@dataclass(frozen=True)
class ZeemanLine:
    """One S1/2(m_s) -> D5/2(m_d) component used by the clock servo."""

    index: int      # 0..5, the servo's line number
    pair: str       # "A", "B" or "C" (DOMAIN §1 table)
    m_s: float
    m_d: float

    @property
    def zeeman_hz_per_t(self) -> float:
        """First-order Zeeman coefficient (g_D m_D - g_S m_S) muB/h, Hz/T."""
        return (G_D52 * self.m_d - G_S12 * self.m_s) * MU_B_OVER_H

    @property
    def quadrupole_weight(self) -> float:
        """Normalised [J(J+1) - 3 m_D^2] weight: +0.8, +0.2, -1.0 for |m_D| = 1/2, 3/2, 5/2.

        The electric-quadrupole and tensor-Stark shifts of this line are Q0 times this weight;
        summed over the three pairs they vanish (DOMAIN §1).
        """
        return (J_D * (J_D + 1) - 3 * self.m_d**2) / 10.0

    def offset_hz(self, b_tesla: float, q0_hz: float = 0.0) -> float:
        """Line offset from nu0 in Hz at field B with quadrupole amplitude Q0 (Hz)."""
        return self.zeeman_hz_per_t * b_tesla + q0_hz * self.quadrupole_weight


# The three pairs of DOMAIN §1: A: S -/+1/2 -> D -/+3/2, B: S +/-1/2 -> D -/+1/2,
# C: S -/+1/2 -> D -/+5/2. Lines 2k and 2k+1 are the two members of pair k; the first
# member has the negative offset.
ZEEMAN_LINES: tuple[ZeemanLine, ...] = (
    ZeemanLine(0, "A", -0.5, -1.5), ZeemanLine(1, "A", +0.5, +1.5),
    ZeemanLine(2, "B", +0.5, -0.5), ZeemanLine(3, "B", -0.5, +0.5),
    ZeemanLine(4, "C", -0.5, -2.5), ZeemanLine(5, "C", +0.5, +2.5),
)

PAIR_SPLITTING_HZ_PER_T = tuple(
    ZEEMAN_LINES[2 * k + 1].zeeman_hz_per_t - ZEEMAN_LINES[2 * k].zeeman_hz_per_t
    for k in range(3))


def b_from_splitting(pair: int, splitting_hz: float) -> float:
    """Field (T) from the splitting (Hz) of pair 0/1/2 (= A/B/C); quadrupole-free."""
    return splitting_hz / PAIR_SPLITTING_HZ_PER_T[pair]


def ramsey_contrast(ramsey_time_s: float, tau_s: float = TAU_D52) -> float:
    """Ramsey contrast left by D5/2 decay during the free evolution: exp(-T / (2 tau)).

    With T = 80 ms and tau = 1.168 s this is 0.966, the contrast C of DOMAIN §5.
    """
    return math.exp(-ramsey_time_s / (2.0 * tau_s))


def qpn_sigma(tau_s: float, ramsey_time_s: float = 0.080, cycle_time_s: float = 0.105,
              contrast: float | None = None, detection_error: float = 1e-3,
              nu0_hz: float = NU0_CA) -> float:
    """Quantum-projection-noise Allan deviation of the six-line mean (DOMAIN §5).

    sigma_y(tau) = 1 / (2 pi nu0 T C (1 - 2 eps)) * sqrt(Tc / tau).
    """
    c = ramsey_contrast(ramsey_time_s) if contrast is None else contrast
    return (1.0 / (2 * math.pi * nu0_hz * ramsey_time_s * c * (1 - 2 * detection_error))
            * math.sqrt(cycle_time_s / tau_s))


# --- shift-model constants (added for the systematic-shift budget, DOMAIN §2) ----------------
# Mean quadratic Zeeman coefficient of the three Zeeman pairs, 14.345(40) Hz/mT^2 (seed 000,
# Eq. 2 and Fig. 10), here in Hz/T^2.
ALPHA_Z_HZ_PER_T2 = 14.345e6
ALPHA_Z_UNC_HZ_PER_T2 = 0.040e6
# Magic trap-drive frequency of 40Ca+, 24.801(2) MHz: EMM Doppler and Stark shifts cancel.
RF_MAGIC_HZ = 24.801e6
RF_MAGIC_UNC_HZ = 2e3
# RMS electric field of a 300 K blackbody, V/m (seed 000, Eq. 1).
E_BBR_300K_V_PER_M = 831.9


# --- the g-factor ratio under the RF-induced AC field (DOMAIN §3, seed supplement Eq. 6) ------
# Shared by the ac-field analysis (procedures/analysis/ac_field.py, which solves it for
# <B_perp^2>) and the twin's Zeeman lines (sim_instruments/zeeman.py, which applies it).
#: g_D/g_S implied by the seed's r = 0.599488818(9) and <B_perp^2> = 11(9)e-14 T^2: the seed
#: cites its "precisely measured" value without printing it (decision 0800). G_D52 / G_S12
#: (DOMAIN §1) is 0.5994906, 3e-6 away.
G_RATIO_SEED = 0.599488791
G_RATIO_SEED_UNC = 2.0e-8
AC_FIELD_CONVENTIONS = ("seed", "physical")


def ac_zeeman_coefficients(b0_t: float, rf_hz: float = RF_MAGIC_HZ,
                           convention: str = "seed") -> tuple[float, float]:
    """(a, b): the AC field's fractional shifts of the D5/2 and S1/2 Zeeman splittings per x.

    An AC field B_perp cos(Omega_RF t) perpendicular to the DC field B0 multiplies the Larmor
    frequencies omega_D, omega_S by (1 + a x) and (1 + b x), x = <B_perp^2> / B0^2, so
    r / (g_D/g_S) = (1 + a x) / (1 + b x) (seed Eq. 6). omega_J = 2 pi g_J (muB/h) B0.
    ``seed`` (default): Eq. 6 as printed, a = omega_D^2 / 2 (omega_S^2 - Omega_RF^2),
    b = omega_S^2 / 2 (omega_D^2 - Omega_RF^2); ``physical``: each level by its own
    off-resonant drive (Bloch–Siegert), a = omega_D^2 / 2 (omega_D^2 - Omega_RF^2) and
    b = omega_S^2 / 2 (omega_S^2 - Omega_RF^2): the seed swaps the denominators.
    """
    if convention not in AC_FIELD_CONVENTIONS:
        raise ValueError(f"convention {convention!r}: expected one of "
                         f"{', '.join(AC_FIELD_CONVENTIONS)}")
    w_s = 2 * math.pi * G_S12 * MU_B_OVER_H * b0_t
    w_d = 2 * math.pi * G_D52 * MU_B_OVER_H * b0_t
    w_rf = 2 * math.pi * rf_hz
    if convention == "seed":
        return (0.5 * w_d ** 2 / (w_s ** 2 - w_rf ** 2), 0.5 * w_s ** 2 / (w_d ** 2 - w_rf ** 2))
    return (0.5 * w_d ** 2 / (w_d ** 2 - w_rf ** 2), 0.5 * w_s ** 2 / (w_s ** 2 - w_rf ** 2))


def g_ratio_with_ac_field(b_perp2_t2: float, b0_t: float, g_ratio: float = G_RATIO_SEED,
                          rf_hz: float = RF_MAGIC_HZ, convention: str = "seed") -> float:
    """The ratio r that an AC field <B_perp^2> (T^2) makes of g_D/g_S at B0 (seed Eq. 6)."""
    a, b = ac_zeeman_coefficients(b0_t, rf_hz, convention)
    x = b_perp2_t2 / b0_t ** 2
    return g_ratio * (1 + a * x) / (1 + b * x)
