"""Twin of the Cd+ LIF measurement (seed 004 §III, DOMAIN §4; docs/decisions/1200).

A cloud of Cd+ ions sympathetically cooled by Ca+ in a linear Paul trap, probed by a weak
214.5 nm laser on S1/2 -> P3/2; the probe is regulated by the HighFinesse wavemeter's PID to
the course the procedure sets, the fluorescence is counted by a PMT (Hamamatsu H8259-09, the
seed's Fig. 2) into a photon counter (the SR400 twin reads `photon_counts`).

The physics, each piece seeded from its own stream ``np.random.default_rng([seed, 1200, k])``
(never a clock world's generator):

- **Lines** (zero field): 114Cd+ at `CdLineConstants.nu_114_hz`; 111/113Cd+ S1/2(F=1) ->
  P3/2(F=2) at nu_114 + Delta nu_IS + nu_HFS,s / 4 - 3 nu_HFS,p / 8 (seed Eq. 17), with the
  seed's isotope shifts, ground HFS and P3/2 HFS 794.6 / 835.5 MHz by default, or constants
  drawn from the isotope shifts' and HFS's stated uncertainties (`CdLineConstants.drawn`: a
  world the analysis does not know the truth of). The sign convention is the seed's: offsets
  are nu(A) - nu(114).
- **Field**: the probed sigma+ cycling component moves by (g_F' m' - g_F m) muB B / h (seed
  Eqs. 12-13; `ionclock.physics.cd_lif.probed_line_zeeman_hz`), 0.112 MHz at 0.08 G.
- **Cloud**: N Cd+ ions (4e5 by default, the seed's), natural isotopic abundances (the seed
  does not say the cloud was enriched), temperature T (0.1 K) -> Gaussian Doppler FWHM
  nu_G = (nu0/c) sqrt(8 ln2 k T / m) (29.8 MHz for 113Cd+; the seed fits ~30 MHz).
- **Signal** (seed Eq. 15): a rate per ion (Gamma/2) s (pi nu_L / 2) V(nu - nu_c; nu_L, nu_G)
  with the natural width nu_L = 60.13 MHz, s = I / I_sat (5 uW/mm^2 / 7.96 mW/mm^2), V the
  unit-area Voigt (`cadmium.voigt_lif`), so that the Lorentzian limit is (Gamma/2) s /
  (1 + (2 delta / nu_L)^2); for the odd isotopes the fraction of ions in F=1 under the
  microwave repump (3/4); times the detection efficiency (solid angle x PMT QE, `efficiency`).
  Counts in a gate: Poisson of (signal x (1 + intensity noise) + background) x width; the
  probe's relative intensity noise is one Gaussian draw per gate (`intensity_noise`), the
  background (probe scatter plus dark counts, `background_cps`) is Poisson.
- **Probe and wavemeter**: the meter reads the laser plus its calibration error, a fixed
  offset (`wavemeter_offset_hz`, common to every line) plus a random walk
  (`wavemeter_walk_hz_sqrt_s`; the seed's "drift in the wavemeter is less than 0.5 MHz");
  the PID holds the *reading* on the course, so the laser sits at course - error, with a lock
  jitter (`lock_jitter_hz`, white, one draw per gate). The meter's own reading noise and
  its 100 kHz reply resolution (7 decimals in THz) are the wavemeter twin's
  (`SimWavemeterServer`).

Not modelled (the seed mentions them, none is needed to test the analysis): the slight
asymmetry the probe's own heating and cooling give the line, other isotopes' lines (none lies
within 300 MHz of the scanned ones), ion loss, saturation (s ~ 6e-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ionclock.physics.cadmium import ISOTOPES, LORENTZ_FWHM_HZ, isotope, lif_offset, voigt_lif
from ionclock.physics.cd_lif import (
    ISOTOPE_SHIFT_SYS_UNC_HZ,
    doppler_fwhm_hz,
    probed_line_zeeman_hz,
)
from ionclock.sim_instruments.wavemeter import NOMINAL_HZ

PROBE = "214.5"
#: Stream tag of this twin's generators: [seed, STREAM, k].
STREAM = 1200
#: Natural abundances of 111, 113, 114Cd (IUPAC 2013 representative composition).
ABUNDANCE = {111: 0.1280, 113: 0.1222, 114: 0.2873}
#: The seed's P3/2 HFS (Hz), the twin's default truth.
HFS_P_SEED_HZ = {111: 794.6e6, 113: 835.5e6}
HFS_P_SEED_UNC_HZ = {111: 3.6e6, 113: 2.9e6}
I_SAT_W_M2 = 7.96e3               # 7.96 mW/mm^2 (seed, from Foot)
GAUSS = 1e-4


@dataclass(frozen=True)
class CdLineConstants:
    """The twin's atomic truth: the 114 line and, per odd isotope, IS, ground and P3/2 HFS (Hz)."""

    nu_114_hz: float
    isotope_shift_hz: dict
    hfs_s_hz: dict
    hfs_p_hz: dict

    @classmethod
    def seed(cls, nu_114_hz: float = NOMINAL_HZ[PROBE]) -> CdLineConstants:
        """The seed's values (isotope shifts, ground HFS, P3/2 HFS 794.6 / 835.5 MHz)."""
        return cls(nu_114_hz,
                   {a: ISOTOPES[a].isotope_shift_hz for a in (111, 113)},
                   {a: ISOTOPES[a].hfs_s_hz for a in (111, 113)},
                   dict(HFS_P_SEED_HZ))

    @classmethod
    def drawn(cls, rng: np.random.Generator,
              nu_114_hz: float = NOMINAL_HZ[PROBE]) -> CdLineConstants:
        """Constants drawn from the seed's stated uncertainties (IS: statistical and systematic)."""
        base = cls.seed(nu_114_hz)
        shifts, hfs_p = {}, {}
        for a in (111, 113):
            sd = math.hypot(ISOTOPES[a].isotope_shift_unc_hz, ISOTOPE_SHIFT_SYS_UNC_HZ[a])
            shifts[a] = base.isotope_shift_hz[a] + sd * float(rng.standard_normal())
            hfs_p[a] = base.hfs_p_hz[a] + HFS_P_SEED_UNC_HZ[a] * float(rng.standard_normal())
        return replace(base, isotope_shift_hz=shifts, hfs_p_hz=hfs_p)

    def offset_hz(self, mass_number: int) -> float:
        """Zero-field offset nu(A) - nu(114) of the probed line (Hz), seed Eq. 17 (0 for 114)."""
        if mass_number == 114:
            return 0.0
        isotope(mass_number)
        return lif_offset(self.isotope_shift_hz[mass_number], self.hfs_s_hz[mass_number],
                          self.hfs_p_hz[mass_number])


@dataclass(frozen=True)
class LifParams:
    """Cloud, probe, detection and wavemeter parameters of the LIF twin (SI)."""

    ions: float = 4e5                       # Cd+ in the cloud (seed: ~4e5)
    temperature_k: float = 0.1              # seed: ~0.1 K
    b_t: float = 0.08 * GAUSS               # seed: ~0.08 G
    intensity_w_m2: float = 5.0             # 5 uW/mm^2 (seed: "below")
    efficiency: float = 2e-7                # counted per scattered photon (see below)
    background_cps: float = 400.0           # probe scatter + PMT dark counts
    intensity_noise: float = 0.02           # relative, per gate
    wavemeter_offset_hz: float = 0.0        # calibration offset, common to all lines
    wavemeter_walk_hz_sqrt_s: float = 25e3  # calibration random walk
    lock_jitter_hz: float = 0.3e6           # laser about its regulated frequency, per gate
    polarisation: int = +1                  # sigma+ (seed: circular, cycling)

    def __post_init__(self) -> None:
        for name in ("ions", "temperature_k", "intensity_w_m2", "efficiency", "background_cps",
                     "intensity_noise", "wavemeter_walk_hz_sqrt_s", "lock_jitter_hz"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not math.isfinite(self.b_t) or not math.isfinite(self.wavemeter_offset_hz):
            raise ValueError("b_t and wavemeter_offset_hz must be finite")
        if self.polarisation not in (+1, -1):
            raise ValueError(f"polarisation must be +1 or -1, got {self.polarisation!r}")


class CdLifWorld:
    """The Cd+ LIF physics world on a SimPy environment (module docstring).

    `isotope` is the species the probe addresses (111, 113 or 114); switching it is what the
    lab does by moving the probe by GHz, so the world answers for the isotope whose line the
    probe is nearest. Hooks: ``laser_frequency`` / ``lock_laser`` / ``wavemeter_error_hz``
    (the wavemeter twin), ``photon_counts`` (the photon-counter twin), ``env``.
    """

    def __init__(self, env, seed: int = 0, params: LifParams | None = None,
                 constants: CdLineConstants | str = "seed"):
        self.env = env
        self.seed = seed
        self.params = params or LifParams()
        if constants == "seed":
            constants = CdLineConstants.seed()
        elif constants == "drawn":
            constants = CdLineConstants.drawn(np.random.default_rng([seed, STREAM, 0]))
        elif not isinstance(constants, CdLineConstants):
            raise ValueError(f"constants must be 'seed', 'drawn' or CdLineConstants, got "
                             f"{constants!r}")
        self.constants = constants
        self._rng_counts = np.random.default_rng([seed, STREAM, 1])
        self._rng_meter = np.random.default_rng([seed, STREAM, 2])
        self._rng_jitter = np.random.default_rng([seed, STREAM, 3])
        self._meter = (0.0, 0.0)          # (t, random-walk part of the calibration error)
        self._setpoint: dict[str, float] = {}

    # --- truth ------------------------------------------------------------------------------
    def line_center_hz(self, mass_number: int) -> float:
        """Where the probed line of `mass_number` lies in the field (Hz): truth."""
        p = self.params
        return (self.constants.nu_114_hz + self.constants.offset_hz(mass_number)
                + probed_line_zeeman_hz(mass_number, p.b_t, p.polarisation))

    def gauss_fwhm_hz(self, mass_number: int) -> float:
        """Doppler FWHM of the line (Hz) at the cloud's temperature."""
        return doppler_fwhm_hz(self.params.temperature_k, mass_number,
                               self.line_center_hz(mass_number))

    def true_p32_hfs_hz(self, mass_number: int) -> float:
        """The twin's P3/2 HFS of 111/113Cd+ (Hz)."""
        return self.constants.hfs_p_hz[mass_number]

    def peak_signal_cps(self, mass_number: int) -> float:
        """Counted fluorescence rate at the line centre (counts/s), background excluded."""
        return self.signal_cps(self.line_center_hz(mass_number), mass_number)

    def signal_cps(self, nu_hz: float | np.ndarray, mass_number: int) -> float | np.ndarray:
        """Counted LIF rate (counts/s) at probe frequency `nu_hz`: seed Eq. 15 (docstring)."""
        p = self.params
        gamma = 2.0 * math.pi * LORENTZ_FWHM_HZ
        s = p.intensity_w_m2 / I_SAT_W_M2
        in_cycle = 1.0 if mass_number == 114 else 0.75
        ions = p.ions * ABUNDANCE[mass_number] * in_cycle
        per_ion = (gamma / 2.0) * s * (math.pi * LORENTZ_FWHM_HZ / 2.0) * voigt_lif(
            nu_hz, self.line_center_hz(mass_number), 1.0, 0.0, LORENTZ_FWHM_HZ,
            self.gauss_fwhm_hz(mass_number))
        return p.efficiency * ions * per_ion

    def addressed_isotope(self, nu_hz: float) -> int:
        """The isotope whose probed line is nearest to `nu_hz`."""
        return min((111, 113, 114), key=lambda a: abs(self.line_center_hz(a) - nu_hz))

    # --- wavemeter and probe ----------------------------------------------------------------
    def wavemeter_error_hz(self) -> float:
        """The wavemeter's calibration error now (Hz): offset + random walk (SimPy time)."""
        t = self.env.now
        t0, x = self._meter
        if t > t0:
            x += self.params.wavemeter_walk_hz_sqrt_s * math.sqrt(t - t0) * float(
                self._rng_meter.standard_normal())
            self._meter = (t, x)
        return self.params.wavemeter_offset_hz + x

    def lock_laser(self, name: str, setpoint_hz: float) -> None:
        """The wavemeter's PID now regulates laser `name` so that its reading is `setpoint_hz`."""
        self._setpoint[name] = float(setpoint_hz)

    def laser_frequency(self, name: str) -> float:
        """The true frequency of laser `name` (Hz): course - meter error when regulated."""
        if name in self._setpoint:
            return self._setpoint[name] - self.wavemeter_error_hz()
        return NOMINAL_HZ[name]

    # --- detection --------------------------------------------------------------------------
    def photon_counts(self, t_open: float, width: float) -> int:
        """Counts of the PMT in the gate [t_open, t_open + width] (s): one Poisson draw.

        The laser frequency and the probe intensity are taken once per gate (the gate's
        middle; the lock's jitter averages within it).
        """
        if width <= 0:
            return 0
        p = self.params
        nu = self.laser_frequency(PROBE) if PROBE in self._setpoint else NOMINAL_HZ[PROBE]
        nu += p.lock_jitter_hz * float(self._rng_jitter.standard_normal())
        a = self.addressed_isotope(nu)
        gain = max(0.0, 1.0 + p.intensity_noise * float(self._rng_counts.standard_normal()))
        mean = (gain * float(self.signal_cps(nu, a)) + p.background_cps) * width
        return int(self._rng_counts.poisson(mean))
