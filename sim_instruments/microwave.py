"""Twin of the Agilent/Keysight E8257D microwave synthesiser (the SCPI subset the driver uses).

Commands: ``:FREQ <x> [Hz|kHz|MHz|GHz]``, ``:FREQ?``, ``:POW <x> [dBm]``, ``:POW?``,
``:OUTP 0|1|ON|OFF`` (also ``:OUTPUT``), ``:OUTP?``, ``:SYST:ERR?``, ``*IDN?``, ``*RST``,
``*CLS``; a trailing ``;`` (as pymeasure's base class sends) is accepted. Errors go to the
SCPI queue: -113 undefined header, -222 data out of range. Each change of the output calls
``world.microwave_changed(frequency_hz, power_dbm, on)`` where the world has it.
Options: ``max_frequency_hz`` (installed option, default 20 GHz).
"""

from __future__ import annotations

import re

from ionclock.sim_instruments.base import CommandError, SimInstrument

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_HZ = {"": 1.0, "HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9}


class SimAgilent8257D(SimInstrument):
    """E8257D twin (LF-terminated SCPI)."""

    input_terminator = b"\n"
    output_terminator = b"\n"
    name = "sim-e8257d"
    IDN = "Agilent Technologies, E8257D, US00000000, C.06.28"

    def __init__(self, world=None, max_frequency_hz: float = 20e9, seed: int | None = 0):
        self.max_frequency_hz = max_frequency_hz
        super().__init__(world, seed)

    def reset_settings(self) -> None:
        self.frequency_hz = 1e9
        self.power_dbm = -135.0
        self.output_on = False
        self.errors: list[tuple[int, str]] = []

    def _changed(self) -> None:
        hook = getattr(self.world, "microwave_changed", None)
        if hook is not None:
            hook(self.frequency_hz, self.power_dbm, self.output_on)

    def error_reply(self, err: CommandError) -> str | None:
        self.errors.append((int(err.code), str(err)))
        return None

    def handle(self, line: str) -> str | None:
        cmd = line.strip().rstrip(";").strip().upper()
        if cmd == "*IDN?":
            return self.IDN
        if cmd in ("*RST", "*CLS"):
            if cmd == "*RST":
                self.reset_settings()
                self._changed()
            self.errors.clear()
            return None
        if cmd in (":SYST:ERR?", "SYST:ERR?", ":SYSTEM:ERROR?"):
            if not self.errors:
                return '+0,"No error"'
            code, text = self.errors.pop(0)
            return f'{code:+d},"{text}"'
        if cmd in (":FREQ?", "FREQ?"):
            return f"{self.frequency_hz:+.15E}"
        if cmd in (":POW?", "POW?"):
            return f"{self.power_dbm:+.8E}"
        if cmd in (":OUTP?", ":OUTPUT?", "OUTP?"):
            return "1" if self.output_on else "0"
        m = re.fullmatch(r":?FREQ\s+" + _NUM + r"\s*([A-Z]*)", cmd)
        if m:
            if m.group(2) not in _HZ:
                raise CommandError("-131", "Invalid suffix")
            hz = float(m.group(1)) * _HZ[m.group(2)]
            if not 250e3 <= hz <= self.max_frequency_hz:
                raise CommandError("-222", "Data out of range")
            self.frequency_hz = round(hz, 3)
            self._changed()
            return None
        m = re.fullmatch(r":?POW\s+" + _NUM + r"\s*(DBM)?", cmd)
        if m:
            dbm = float(m.group(1))
            if not -135.0 <= dbm <= 25.0:
                raise CommandError("-222", "Data out of range")
            self.power_dbm = round(dbm, 2)
            self._changed()
            return None
        m = re.fullmatch(r":?OUTP(?:UT)?\s+(0|1|ON|OFF)", cmd)
        if m:
            self.output_on = m.group(1) in ("1", "ON")
            self._changed()
            return None
        raise CommandError("-113", "Undefined header")
