"""Twin of the Agilent/Keysight E8257D microwave synthesiser (the SCPI subset the driver uses).

Commands: ``:FREQ <x> [Hz|kHz|MHz|GHz]``, ``:FREQ?``, ``:POW <x> [dBm]``, ``:POW?``,
``:OUTP 0|1|ON|OFF`` (also ``:OUTPUT``), ``:OUTP?``, ``:SYST:ERR?``, ``*IDN?``, ``*RST``,
``*CLS``; a trailing ``;`` (as pymeasure's base class sends) is accepted. Errors go to the
SCPI queue, read one entry per ``:SYST:ERR?`` as ``<code>,"<text>"`` (``+0,"No error"`` when
empty): -113 undefined header, -131 invalid suffix, -222 data out of range. Each change of
the output calls ``world.microwave_changed(frequency_hz, power_dbm, on)`` where the world
has it.

Sources (the Keysight PSG programming guide was not at hand):

- ``:FREQ``/``:POW``/``:OUTP`` forms and ``:OUTP?`` answering ``1``/``0``: QCoDeS
  ``src/qcodes/instrument_drivers/agilent/Agilent_E8257D.py`` (``output_enabled`` maps
  on/off to ``"1"``/``"0"`` on ``:OUTP?``), pymeasure ``instruments/agilent/agilent8257D.py``
  (``:FREQ?;``, ``:POW?;``, ``:OUTPUT?`` read as numbers/booleans). Query replies are NR3
  numbers; their digit count is this twin's choice (the drivers parse any float).
- Ranges by option, QCoDeS (same file, from Keysight configuration guide 5989-1325 and data
  sheet 5989-0698): frequency 100 kHz to 13/20/31.8/40/50/70 GHz for options
  513/520/532/540/550/567 (521: from 10 MHz); power with the step attenuator (1E1) from
  -135 dBm (-110 dBm above 40 GHz), without it from -20 dBm; maximum +10 dBm (+5 dBm above
  40 GHz) in QCoDeS, which has no entry for the high-power option (decision 0302 takes
  +25 dBm for it). QCoDeS's older contributed driver (``Keysight_E8257D``) starts at 250 kHz.
  Options ``min_frequency_hz`` (100 kHz), ``max_frequency_hz`` (20 GHz, option 520),
  ``min_power_dbm`` (-135 dBm, 1E1), ``max_power_dbm`` (+25 dBm) set them.
- Out-of-range values: no source at hand says what the PSG does. SCPI's -222 "Data out of
  range" means the value was not executed, while Agilent instruments of the same era also
  answer -222 "Data out of range;value clipped to upper limit." (or lower) and apply the
  limit. Option ``out_of_range``: ``"reject"`` (default: -222, setting unchanged) or
  ``"clip"`` (-222 with the clipped text, setting moved to the limit).
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

    OUT_OF_RANGE = ("reject", "clip")

    def __init__(self, world=None, max_frequency_hz: float = 20e9, seed: int | None = 0, *,
                 min_frequency_hz: float = 100e3, min_power_dbm: float = -135.0,
                 max_power_dbm: float = 25.0, out_of_range: str = "reject"):
        if out_of_range not in self.OUT_OF_RANGE:
            raise ValueError(f"out_of_range must be one of {self.OUT_OF_RANGE}, "
                             f"got {out_of_range!r}")
        self.min_frequency_hz = min_frequency_hz
        self.max_frequency_hz = max_frequency_hz
        self.min_power_dbm = min_power_dbm
        self.max_power_dbm = max_power_dbm
        self.out_of_range = out_of_range
        super().__init__(world, seed)

    def reset_settings(self) -> None:
        self.frequency_hz = 1e9
        self.power_dbm = self.min_power_dbm
        self.output_on = False
        self.errors: list[tuple[int, str]] = []

    def _changed(self) -> None:
        hook = getattr(self.world, "microwave_changed", None)
        if hook is not None:
            hook(self.frequency_hz, self.power_dbm, self.output_on)

    def _in_range(self, value: float, low: float, high: float) -> float:
        """Return `value` if within [low, high]; else queue -222 and clip or reject it."""
        if low <= value <= high:
            return value
        if self.out_of_range == "reject":
            raise CommandError("-222", "Data out of range")
        side, limit = ("upper", high) if value > high else ("lower", low)
        self.errors.append((-222, f"Data out of range;value clipped to {side} limit."))
        return limit

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
            hz = self._in_range(hz, self.min_frequency_hz, self.max_frequency_hz)
            self.frequency_hz = round(hz, 3)
            self._changed()
            return None
        m = re.fullmatch(r":?POW\s+" + _NUM + r"\s*(DBM)?", cmd)
        if m:
            dbm = self._in_range(float(m.group(1)), self.min_power_dbm, self.max_power_dbm)
            self.power_dbm = round(dbm, 2)
            self._changed()
            return None
        m = re.fullmatch(r":?OUTP(?:UT)?\s+(0|1|ON|OFF)", cmd)
        if m:
            self.output_on = m.group(1) in ("1", "ON")
            self._changed()
            return None
        raise CommandError("-113", "Undefined header")
