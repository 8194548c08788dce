"""Microwave synthesiser for the 111/113Cd+ ground hyperfine transitions (DOMAIN §4).

The Cd+ standard drives the ground HFS at 14.530 507 GHz (111Cd+) or 15.199 863 GHz (113Cd+)
with ~23 dBm to repump F=0 during detection. Of the sources PROTOCOLS.md names, the Anapico
APSIN12G stops at 12 GHz and the SG38x family at 6 GHz (a doubler would be needed), while the
Agilent/Keysight E8257D (options 520/532/540/550/567: 20–67 GHz) covers 15.2 GHz directly with
+23 dBm available (high-power option), so this driver subclasses pymeasure's `Agilent8257D`
(decision 0302).

pymeasure's class writes ``:FREQ %e Hz`` (six digits after the point: 10 kHz steps at 15 GHz)
and validates nothing; here frequency goes out with mHz resolution, power and frequency are
checked against the instrument's range and the lab's safety ceiling before any byte is
written, and ``SYST:ERR?`` is read after every set.
"""

from __future__ import annotations

from typing import Any

from pymeasure.instruments import Instrument
from pymeasure.instruments.agilent import Agilent8257D
from pymeasure.instruments.generic_types import SCPIUnknownMixin
from pymeasure.instruments.validators import strict_range

from ionclock.drivers.common import LinkMixin, ScpiErrorQueueMixin
from ionclock.drivers.trap_rf import StrictRepliesMixin, parse_int
from ionclock.errors import ReplyError

#: Ground-state HFS of the trapped ions, Hz (DOMAIN §4, seed 004).
CD_HFS_HZ = {111: 14_530_507_349.9, 113: 15_199_862_854.96}


class MicrowaveSynth8257D(ScpiErrorQueueMixin, LinkMixin, StrictRepliesMixin, Agilent8257D):
    """Agilent/Keysight E8257D PSG as the Cd+ HFS source (SCPI; LAN port 5025, LF).

    `max_frequency_hz` is the installed frequency option (default 20 GHz, option 520);
    `max_power_dbm` the safety ceiling (default +25 dBm, the high-power option's maximum;
    set it to what the horn/amplifier chain tolerates).
    """

    write_termination = "\n"
    read_termination = "\n"
    # One queue entry read per set: a single rejected command queues a single error.
    error_query = ":SYST:ERR?"
    max_errors_read = 1

    HW_MIN_HZ = 250e3
    HW_MIN_DBM = -135.0
    HW_MAX_DBM = 25.0

    frequency = Instrument.control(
        ":FREQ?", ":FREQ %.3f Hz",
        """Control the CW frequency in Hz (float, 250 kHz to the installed option; 1 mHz).""",
        validator=strict_range, values=(HW_MIN_HZ, 20e9), dynamic=True,
        check_set_errors=True)

    power_dbm = Instrument.control(
        ":POW?", ":POW %.2f dBm",
        """Control the output power in dBm (float, within the safety limits).""",
        validator=strict_range, values=(HW_MIN_DBM, HW_MAX_DBM), dynamic=True,
        check_set_errors=True)

    def __init__(self, adapter: Any, name: str = "E8257D microwave", *,
                 max_frequency_hz: float = 20e9, max_power_dbm: float = HW_MAX_DBM,
                 **kwargs: Any):
        if not self.HW_MIN_HZ < max_frequency_hz <= 67e9:
            raise ValueError(f"max_frequency_hz must be within (250 kHz, 67 GHz], "
                             f"got {max_frequency_hz!r}")
        if not self.HW_MIN_DBM < max_power_dbm <= self.HW_MAX_DBM:
            raise ValueError(f"max_power_dbm must be within ({self.HW_MIN_DBM}, "
                             f"{self.HW_MAX_DBM}], got {max_power_dbm!r}")
        # Skip SCPIUnknownMixin's FutureWarning: the PSG is a SCPI instrument.
        super(SCPIUnknownMixin, self).__init__(adapter, name, **kwargs)
        self.frequency_values = (self.HW_MIN_HZ, float(max_frequency_hz))
        self.power_dbm_values = (self.HW_MIN_DBM, float(max_power_dbm))
        self.max_power_dbm = float(max_power_dbm)

    @property
    def power(self) -> float:
        """Alias of `power_dbm` (pymeasure's name), validated the same way."""
        return self.power_dbm

    @power.setter
    def power(self, value: float) -> None:
        self.power_dbm = value

    @property
    def output_enabled(self) -> bool:
        """Control whether the RF output is on (bool; ``:OUTP?`` / ``:OUTP 0|1``)."""
        code = parse_int(self.name, self.ask(":OUTP?"))
        if code not in (0, 1):
            raise ReplyError(self.name, f":OUTP? must answer 0 or 1, got {code}")
        return bool(code)

    @output_enabled.setter
    def output_enabled(self, on: bool) -> None:
        if not isinstance(on, (bool, int)) or on not in (0, 1):
            raise ValueError(f"output_enabled must be True or False, got {on!r}")
        self.write(f":OUTP {int(on)}")
        self.check_set_errors()

    def enable(self) -> None:
        """Switch the output on (checked)."""
        self.output_enabled = True

    def disable(self) -> None:
        """Switch the output off (checked)."""
        self.output_enabled = False

    def tune_to_hfs(self, isotope: int, offset_hz: float = 0.0) -> float:
        """Set the frequency to the ground HFS of 111Cd+ or 113Cd+ plus `offset_hz`; return it."""
        if isotope not in CD_HFS_HZ:
            raise ValueError(f"isotope must be one of {sorted(CD_HFS_HZ)}, got {isotope!r}")
        f = CD_HFS_HZ[isotope] + offset_hz
        self.frequency = f
        return f

    def _ping_query(self) -> bool:
        """True if the unit identifies as an 8257 PSG (``*IDN?``)."""
        return "8257" in self.ask("*IDN?")
