"""The clock's other lasers in the twin: where they are, and what the ion sees when one is off.

The seed clock (DOMAIN §1) runs 397 nm (S1/2-P1/2: Doppler cooling, optical pumping,
detection), 866 nm (D3/2-P1/2 repump), 854 nm (D5/2-P3/2: the quench that empties D5/2 after
each detection, 5 µs in each of the 300 sideband-cooling cycles) and the 729 nm clock laser.
The lab keeps the first three locked (to a cavity or to the wavemeter) at their setpoints;
here they sit exactly at them (`NOMINAL_HZ`) until an excursion (`excursion`: a lock lost, a
mode hop) moves one, and the wavemeter twin adds its own reading noise. A laser regulated by
the wavemeter's PID (`lock`, the twin's ``setPidCourseNum``) follows its course instead: its
setpoint becomes the course, and its detuning from the ion's line (`NOMINAL_HZ`, where the
lab sets it) is what the ion sees. The 729 nm is the
world's cavity laser (``ClockWorld.cavity_offset_hz``): its pick-off before the double-pass
AOM sits at nu0 - passes x f_AOM,centre plus the cavity's offset; an excursion of it moves
the cavity light itself (the clock sees it, as a ``laser_jump`` for its duration).

What a detuned laser does to the ion (Lorentzian line shapes, power broadened; natural widths
Γ/2π from the P-level lifetimes, 7.098 ns for P1/2 and 6.924 ns for P3/2, Jin and Church,
PRL 70, 3213 (1993)):

- 397 nm off by δ: the fluorescence at detection falls as 1 / (1 + 4 δ² / w²) with
  w = Γ sqrt(1 + s) (s = 1: detection near saturation);
- 866 nm off by δ: the ion is pumped into D3/2 unless repumped; with the repump the
  bottleneck the fluorescence falls as its rate, 1 / (1 + 4 δ² / w²) (s = 10, a saturated
  repump);
- 854 nm off by δ: the quench light scatters N0 / (1 + 4 δ² / w²) photons over the 1.5 ms it
  is on in each cycle (N0 = (Γ/2) s/(1+s) x 1.5 ms, s = 10), so an ion left in D5/2 by the
  last detection stays there with probability exp(-N) (and the D5/2 decay, tau_D, over the
  cycle): the next detection is dark whatever the clock pulse did.

The clock's bright counts are thinned by the fluorescence factor (a binomial draw per
detection) and the shelved ion kept from this module's own stream
``numpy.random.default_rng([seed, LASER_STREAM])``, only while a laser is off: nothing is
drawn from the world's generators, whose draws stay in step, and with every laser at its
setpoint nothing is drawn at all (the clock's results are the run's without this module).
Cooling is not modelled: a far-detuned 397 nm would also heat the ion out of the trap in the
lab; here the ion goes dark, which is what the servo and the wavemeter see first.
"""

from __future__ import annotations

import math

import numpy as np

from ionclock.sim_instruments.wavemeter import NOMINAL_HZ

#: This module's stream: ``numpy.random.default_rng([seed, LASER_STREAM])``.
LASER_STREAM = 309

#: Natural widths Γ/2π (Hz) of P1/2 and P3/2 (lifetimes 7.098 ns, 6.924 ns; Jin and Church).
GAMMA_P12_HZ = 1.0 / (2.0 * math.pi * 7.098e-9)
GAMMA_P32_HZ = 1.0 / (2.0 * math.pi * 6.924e-9)

#: Saturation parameters assumed: 397 near saturation, 866 and 854 saturated.
SATURATION = {"397": 1.0, "866": 10.0, "854": 10.0}

#: The 854 nm quench light's time in each cycle (DOMAIN §1: 5 µs in each of 100 sideband-
#: cooling cycles per mode, three modes) and the photons it scatters on resonance in it.
QUENCH_S = 300 * 5e-6
QUENCH_PHOTONS = math.pi * GAMMA_P32_HZ * SATURATION["854"] / (1 + SATURATION["854"]) * QUENCH_S


def _lorentzian(delta_hz: float, gamma_hz: float, s: float) -> float:
    """The power-broadened line relative to its peak: 1 / (1 + 4 δ² / (Γ² (1 + s)))."""
    return 1.0 / (1.0 + 4.0 * delta_hz * delta_hz / (gamma_hz * gamma_hz * (1.0 + s)))


class Lasers:
    """The 397, 866, 854 (and other) lasers on a `ClockWorld` (see the module docstring).

    `frequency(name)` (Hz) is where a laser is now; `excursion(name, offset_hz)` moves one
    (0 puts it back); `lock(name, hz)` regulates one to a new setpoint; the world reads
    `fluorescence` and `left_shelved`.
    """

    def __init__(self, world, seed: int):
        self.world = world
        self.setpoints = dict(NOMINAL_HZ)
        self.offsets = {name: 0.0 for name in self.setpoints}
        self.rng = np.random.default_rng([int(seed), LASER_STREAM])
        self.fluorescence = 1.0      # bright counts relative to every laser at its setpoint
        self.left_shelved = 0.0      # chance the quench leaves a shelved ion in D5/2

    def frequency(self, name: str) -> float:
        """The laser `name`'s optical frequency now (Hz); KeyError for an unknown laser."""
        if name == "729":   # the cavity light before the double-pass clock AOM
            w = self.world
            return (w.p.nu0_hz + w.cavity_offset_hz()
                    - w.p.aom_passes * w.p.aom_center_hz)
        return self.setpoints[name] + self.offsets[name]

    def excursion(self, name: str, offset_hz: float) -> None:
        """Put laser `name` `offset_hz` off its setpoint (0: back on it)."""
        if name not in self.offsets:
            raise ValueError(f"unknown laser {name!r} (lasers: {', '.join(self.offsets)})")
        if name == "729":   # the cavity light itself: the clock sees the step
            self.world._laser_steps_hz += offset_hz - self.offsets[name]
            self.world._cavity_t = math.nan
        self.offsets[name] = float(offset_hz)
        self._update()

    def lock(self, name: str, setpoint_hz: float) -> None:
        """Laser `name` regulated to `setpoint_hz` (Hz) by the wavemeter's PID from now on."""
        if name not in self.setpoints or name == "729":
            raise ValueError(f"laser {name!r} is not one the wavemeter regulates here")
        self.setpoints[name] = float(setpoint_hz)
        self._update()

    def _update(self) -> None:
        # each laser's detuning from where the ion wants it (the nominal frequencies)
        off = {name: self.setpoints[name] + self.offsets[name] - NOMINAL_HZ[name]
               for name in ("397", "866", "854")}
        self.fluorescence = (_lorentzian(off["397"], GAMMA_P12_HZ, SATURATION["397"])
                             * _lorentzian(off["866"], GAMMA_P12_HZ, SATURATION["866"]))
        if off["397"] == 0.0 and off["866"] == 0.0:
            self.fluorescence = 1.0
        photons = QUENCH_PHOTONS * _lorentzian(off["854"], GAMMA_P32_HZ, SATURATION["854"])
        self.left_shelved = 0.0 if off["854"] == 0.0 else math.exp(-photons)
        self.world.fluorescence = self.fluorescence
        self.world.left_shelved = self.left_shelved

    def dim(self, counts: int) -> int:
        """Bright counts thinned by the fluorescence factor (this module's stream)."""
        return int(self.rng.binomial(counts, self.fluorescence))

    def still_shelved(self, dt_s: float, tau_s: float) -> bool:
        """Whether an ion shelved `dt_s` ago is still in D5/2 after the cycle's quench."""
        return bool(self.rng.random() < self.left_shelved * math.exp(-dt_s / tau_s))
