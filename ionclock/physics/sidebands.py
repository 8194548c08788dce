"""Motional couplings of one trapped 40Ca+ ion (DOMAIN §1, §3; seed Eqs. 3-4, Table I).

Lamb–Dicke parameters of the 729 nm beams on the three secular modes, the Laguerre Rabi
frequencies of the carrier and the motional sidebands, and the thermal populations. The
characterisation analyses (``procedures/analysis``: thermometry, debye_waller) fit with them
and the twin's motional states (``sim_instruments/motion.py``) simulate with them, so this
physics lives in one place. numpy and scipy are imported here, not in `ionclock.physics.constants`,
which the command line loads without them.

Beams (DOMAIN §1): 1, 2, 3 are mutually orthogonal; beam 2 cools (Table I gives its eta on
x, y, z: 0.025, 0.027, 0.043); beams 1 and 3 read the Debye–Waller factor (seed Eqs. 3-4),
beam 3 vertical with no projection on z. Two conventions for beams 1 and 3 (decision 0800):

- ``seed`` (default): one eta = k sqrt(hbar / 2 m omega_x) cos 45 deg = 0.0365 for every
  beam–mode pair of Eqs. 3-4 (beam 3 none on z): what reproduces the seed's 2.6, 2.6, 4.8;
- ``geometric``: the beams' own projections: beam 3 at 45 deg to x and y, beam 1 completing
  beams 2 and 3 to an orthonormal set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from ionclock.physics.constants import C_LIGHT, HBAR, MASS_CA40, NU0_CA
from ionclock.physics.shifts import SECULAR_FREQS_HZ

#: Seed Table I (DOMAIN §1): Lamb–Dicke parameters of beam 2 (the cooling beam) on x, y, z.
ETA_BEAM2_SEED = (0.025, 0.027, 0.043)
ETA_CONVENTIONS = ("seed", "geometric")


def lamb_dicke(frequency_hz: float, wavelength_m: float = C_LIGHT / NU0_CA,
               mass_kg: float = MASS_CA40) -> float:
    """Lamb–Dicke parameter k sqrt(hbar / 2 m omega) of a 729 nm beam along a mode (f in Hz)."""
    k = 2 * math.pi / wavelength_m
    return k * math.sqrt(HBAR / (2 * mass_kg * 2 * math.pi * frequency_hz))


#: The seed's single Lamb–Dicke parameter of Eqs. 3-4 (module docstring): 0.0365.
SEED_ETA = lamb_dicke(SECULAR_FREQS_HZ[0]) / math.sqrt(2)


def seed_eta_matrix() -> np.ndarray:
    """Beams 1 and 3 (rows) on x, y, z (columns), the seed's convention: one eta, 0.0365."""
    return np.array([[SEED_ETA, SEED_ETA, SEED_ETA], [SEED_ETA, SEED_ETA, 0.0]])


def geometric_eta_matrix(eta_beam2: Sequence[float] = ETA_BEAM2_SEED,
                         frequencies_hz: Sequence[float] = SECULAR_FREQS_HZ) -> np.ndarray:
    """Beams 1 and 3 on x, y, z from the geometry (beam 3 vertical, beams orthonormal).

    cos^2 of beam 2 from its Table I eta; beam 3 at 45 deg to x and y, none on z; beam 1
    takes what is left of each mode (sum over three orthogonal beams of cos^2 = 1).
    """
    full = np.array([lamb_dicke(f) for f in frequencies_hz])
    c2 = (np.asarray(eta_beam2) / full) ** 2
    c3 = np.array([0.5, 0.5, 0.0])
    c1 = np.clip(1.0 - c2 - c3, 0.0, None)
    return np.vstack([full * np.sqrt(c1), full * np.sqrt(c3)])


def beam_eta_matrix(convention: str = "seed",
                    eta_beam2: Sequence[float] = ETA_BEAM2_SEED) -> np.ndarray:
    """Lamb–Dicke parameters of beams 1, 2, 3 (rows) on x, y, z (columns), 3 x 3."""
    if convention == "seed":
        b13 = seed_eta_matrix()
    elif convention == "geometric":
        b13 = geometric_eta_matrix(eta_beam2)
    else:
        raise ValueError(f"eta convention {convention!r}: expected one of "
                         f"{', '.join(ETA_CONVENTIONS)}")
    return np.vstack([b13[0], np.asarray(eta_beam2, dtype=float), b13[1]])


# --- Rabi frequencies (DOMAIN §3) ---------------------------------------------------------------
def sideband_rabi_frequency(n, s: int, eta: float, omega0: float = 1.0) -> np.ndarray:
    """Omega_{n,n+s} (units of `omega0`) for Fock states n, sideband order s (DOMAIN §3).

    Omega0 exp(-eta^2/2) eta^|s| sqrt(n<!/n>!) L_{n<}^{|s|}(eta^2) (Wineland et al. 1998,
    the seed's ref. [40]); s = 0 is the carrier, whose thermal mean is the Debye–Waller
    factor exp(-eta^2 (nbar + 1/2)); zero where n + s < 0 (a red pulse cannot drive n = 0).
    """
    n = np.asarray(n, dtype=float)
    a = abs(int(s))
    lo = np.minimum(n, n + s)
    hi = np.maximum(n, n + s)
    ok = lo >= 0
    lo_ok = np.where(ok, lo, 0.0)
    ratio = np.exp(0.5 * (special.gammaln(lo_ok + 1) - special.gammaln(np.where(ok, hi, 0) + 1)))
    lag = special.eval_genlaguerre(lo_ok, a, eta * eta)
    out = omega0 * math.exp(-0.5 * eta * eta) * eta ** a * ratio * lag
    return np.where(ok, out, 0.0)


def thermal_cutoff(nbar: float, tail: float, cap: int = 4000) -> int:
    """Number of Fock states of a thermal state whose weight leaves out less than `tail`.

    The thermal tail beyond N states is q^N, q = nbar / (nbar + 1); at most `cap` states.
    """
    if nbar <= 0:
        return 1
    q = nbar / (nbar + 1.0)
    return int(min(cap, math.ceil(math.log(tail) / math.log(q)) + 1))


def thermal_populations(nbar: float, n_max: int) -> np.ndarray:
    """p_n = nbar^n / (nbar + 1)^(n+1) for n = 0 .. n_max - 1 (DOMAIN §3)."""
    n = np.arange(n_max)
    if nbar <= 0:
        return (n == 0).astype(float)
    return np.exp(n * math.log(nbar / (nbar + 1.0)) - math.log(nbar + 1.0))


__all__ = [
    "ETA_BEAM2_SEED", "ETA_CONVENTIONS", "SEED_ETA", "beam_eta_matrix", "geometric_eta_matrix",
    "lamb_dicke", "seed_eta_matrix", "sideband_rabi_frequency", "thermal_cutoff",
    "thermal_populations",
]
