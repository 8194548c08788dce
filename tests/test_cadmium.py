"""The 111/113Cd+ standard (ionclock/physics/cadmium.py) against seed 004."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from ionclock.physics import cadmium as cd


@pytest.mark.parametrize("mass, k0", [(111, 270.1), (113, 258.2)])
def test_sozs_coefficient(mass, k0):
    value, unc = cd.sozs_coefficient_hz_per_g2(mass)
    assert round(value, 1) == k0
    assert unc < 0.1           # the seed's (1) is a rounded-up bound of the g_J part


def test_sozs_shift_at_operating_field_and_g_j_uncertainty():
    s = cd.sozs_shift(113, 0.08 * cd.GAUSS)
    assert s.shift_hz == pytest.approx(258.18 * 0.08**2, rel=1e-4)
    assert s.fractional_unc_g_j == pytest.approx(4.3e-15, rel=0.02)
    with_b = cd.sozs_shift(113, 0.08 * cd.GAUSS, 0.001 * cd.GAUSS)
    assert with_b.uncertainty_hz > s.uncertainty_hz
    # Doubling the field quadruples the shift.
    assert cd.sozs_shift(111, 0.16 * cd.GAUSS).shift_hz == pytest.approx(
        4 * cd.sozs_shift(111, 0.08 * cd.GAUSS).shift_hz)


def test_sozs_bad_input():
    with pytest.raises(ValueError, match="111 or 113"):
        cd.sozs_coefficient(114)
    with pytest.raises(ValueError):
        cd.sozs_shift(113, float("nan"))
    row = cd.sozs_row(113, 2.0 * cd.GAUSS)
    assert not row.valid and "weak-field" in row.reason


@pytest.mark.parametrize("mass, printed_mhz", [(111, 794.6), (113, 835.5)])
def test_p32_hfs_from_offsets(mass, printed_mhz):
    nu_p, unc = cd.p32_hfs(mass)
    # Printed inputs are rounded to 0.1 MHz; Eq. 17 amplifies that by 8/3 (+/-0.13 MHz).
    assert nu_p / 1e6 == pytest.approx(printed_mhz, abs=0.15)
    assert unc / 1e6 == pytest.approx(8 / 3 * np.hypot(1.6, cd.isotope(mass)
                                                       .isotope_shift_unc_hz / 1e6), rel=1e-3)
    iso = cd.isotope(mass)
    assert cd.lif_offset(iso.isotope_shift_hz, iso.hfs_s_hz, nu_p) == pytest.approx(
        iso.lif_offset_hz)


def test_voigt_profile_area_and_limits():
    area = 1e9
    # Integrate in MHz (u = nu / 1 MHz) so quad sees an O(1) scale.
    total, _ = quad(lambda u: 1e6 * cd.voigt_lif(1e6 * u, 0.0, area), -np.inf, np.inf,
                    limit=200)
    assert total == pytest.approx(area, rel=1e-6)
    # Pure Lorentzian limit: the seed's F_L with FWHM nu_L (peak 2A / (pi nu_L)).
    peak = cd.voigt_lif(0.0, 0.0, area, gauss_fwhm_hz=0.0)
    assert peak == pytest.approx(2 * area / (np.pi * cd.LORENTZ_FWHM_HZ))
    half = cd.voigt_lif(cd.LORENTZ_FWHM_HZ / 2, 0.0, area, gauss_fwhm_hz=0.0)
    assert half == pytest.approx(peak / 2)
    assert cd.voigt_lif(0.0, 0.0, area, offset=5.0) == pytest.approx(
        5.0 + cd.voigt_lif(0.0, 0.0, area))
    with pytest.raises(ValueError):
        cd.voigt_lif(0.0, 0.0, 1.0, lorentz_fwhm_hz=0.0, gauss_fwhm_hz=0.0)


def test_voigt_fit_recovers_centre_and_doppler_width():
    rng = np.random.default_rng(20240601)
    nu = np.linspace(-300e6, 300e6, 151)
    truth = cd.voigt_lif(nu, 7e6, 2e9, 10.0, gauss_fwhm_hz=30e6)
    noisy = truth + rng.normal(0.0, 0.01 * truth.max(), nu.size)
    fit = cd.fit_voigt_lif(nu, noisy)
    assert abs(fit["center_hz"] - 7e6) < 4 * fit["center_hz_unc"]
    assert fit["center_hz_unc"] < 1e6
    assert fit["gauss_fwhm_hz"] == pytest.approx(30e6, rel=0.3)
    with pytest.raises(ValueError):
        cd.fit_voigt_lif([1.0, 2.0], [1.0, 2.0])


def test_cadmium_budget_uses_the_same_machinery():
    b = cd.cadmium_budget(113, 0.08 * cd.GAUSS, bounds=[("other", "Other (bound)", 1e-15)])
    assert b.species == "113Cd+" and b.unit == 1e-15
    assert b.row("sozs").value == pytest.approx(1.087e-10, rel=1e-3)
    assert b.total_uncertainty == pytest.approx(np.hypot(4.34e-15, 1e-15), rel=0.01)
    assert "Second-order Zeeman" in b.to_markdown()
    nu, sigma = b.corrected_frequency(cd.isotope(113).hfs_s_hz + 1.65)
    assert nu == pytest.approx(cd.isotope(113).hfs_s_hz, abs=0.01)
