"""Twin of a Keithley DAQ6510 with multiplexer cards scanning PT100s (SCPI over LAN, LF).

Each card channel may hold a simulated PT100 whose true temperature comes from
``world.cryostat`` (the `locations` option maps channels to cryostat locations) or, standalone,
from `values` (K). As on the Lake Shore twins, each sensor departs from the IEC curve by its
own error (`sensor_errors`, K): its resistance is ``cvd_resistance(T_true + error)``.
Readings by function: TEMP with a PT100 transducer -> CVD of that resistance in the chosen
unit; FRES -> the resistance; RES (2-wire) -> resistance + `lead_resistance` Ω. A channel with
no sensor, or in `open_channels`, reads the overflow value 9.9E+37.

The parser takes SCPI short or long keywords, several commands per line (``;``), and queues
errors for ``:SYST:ERR?`` (-113 undefined header, -222 data out of range, -221 settings
conflict); a rejected query sends no reply.

Cards (`cards` option: one model for both slots, default "7700", or {slot: model}): 7700 and
7706 have measurement channels 1-20, 7702 and 7708 1-40. Every 3- and 4-wire measurement
(``:SENS:TEMP:TRAN TRTD`` and ``FRTD``, ``:SENS:FUNC 'FRES'``) senses through the paired
channel n+10 (7700, 7706) or n+20 (7702, 7708), so only the primaries take it; on a sense
channel the command is refused and changes nothing. Sources: Model 7700 Multiplexer Module
Instructions (077182400), "Switching module capabilities" ("Primary channels 1 through 10
become paired to channels 11 through 20"; 4-wire functions include "TEMP (4-wire RTD)");
DESY's cmstkmodlab DAQ6510 driver (github DESY-FH-ELab/cmstkmodlab,
devices/Keithley/KeithleyDAQ6510.cpp, ``SetChannelMode``), which puts its 3-wire RTDs, like
every RTD mode, on 7700 channels 1-10 only; the 7702/7706/7708 pairing from
Keithley's card datasheets. Up to now this twin refused 4-wire on a sense channel but took a
3-wire RTD there. The error code is the option `pair_conflict_code` (default -221, "Settings
conflict", SCPI-99's code for a valid command the present configuration cannot execute, and
the code this twin already gave 4-wire on a sense channel): the sources at hand do not quote
the DAQ6510's own code for this case, so a capture from a real unit should set it.
"""

from __future__ import annotations

import random
import re

from ionclock.physics.rtd import T_MAX, T_MIN, cvd_resistance, cvd_temperature
from ionclock.sim_instruments.base import CommandError, SimInstrument

_LONG = {"SENSE": "SENS", "FUNCTION": "FUNC", "TEMPERATURE": "TEMP", "TRANSDUCER": "TRAN",
         "THREE": "THR", "UNIT": "UNIT", "ROUTE": "ROUT", "CREATE": "CRE", "COUNT": "COUN",
         "TRACE": "TRAC", "CLEAR": "CLE", "INITIATE": "INIT", "IMMEDIATE": "IMM",
         "SYSTEM": "SYST", "ERROR": "ERR", "ACTUAL": "ACT", "NEXT": "NEXT"}
_CLIST = re.compile(r"\(@([0-9,:\s]+)\)")
_ERRORS = {-113: "Undefined header", -222: "Data out of range", -221: "Settings conflict",
           -109: "Missing parameter"}
#: {card model: (measurement channels, pair offset)}; see the module docstring.
_CARDS = {"7700": (20, 10), "7706": (20, 10), "7702": (40, 20), "7708": (40, 20)}
_SLOTS = (1, 2)


def _norm_header(header: str) -> str:
    parts = header.strip().lstrip(":").upper().split(":")
    return ":".join(_LONG.get(p.rstrip("?"), p.rstrip("?")) + ("?" if p.endswith("?") else "")
                    for p in parts)


class SimKeithleyDAQ6510(SimInstrument):
    """Twin of the DAQ6510 + 7700 (LF terminated SCPI; see the module docstring).

    Options: `locations` ({channel: cryostat location}; default 101–106 on the five
    operational sensors and the replica trap sensor), `values` (fixed K, standalone),
    `sensor_errors` (K; seeded by default), `lead_resistance` (Ω, 2-wire), `open_channels`,
    `cards` ("7700", "7702", "7706", "7708" in both slots, or {slot: model or None}),
    `pair_conflict_code` (the error queued for a 3-/4-wire setting on a sense channel), `seed`.
    """

    name = "sim-daq6510"
    input_terminator = b"\n"
    output_terminator = b"\n"
    idn = "KEITHLEY INSTRUMENTS,MODEL DAQ6510,04999999,1.7.12b"
    default_locations = {101: "ln2_bottom", 102: "endcap_1", 103: "endcap_2",
                         104: "trap_holder", 105: "bbr_cavity", 106: "trap"}

    def __init__(self, world=None, *, locations: dict | None = None, values: dict | None = None,
                 sensor_errors: dict | None = None, lead_resistance: float = 0.6,
                 open_channels=(), cards: str | int | dict = "7700",
                 pair_conflict_code: int = -221, seed: int | None = 0):
        spec = cards if isinstance(cards, dict) else {slot: cards for slot in _SLOTS}
        # a TOML config gives the slots as strings
        spec = {int(k) if isinstance(k, str) and k.isdigit() else k: m for k, m in spec.items()}
        if set(spec) - set(_SLOTS) or any(m is not None and str(m) not in _CARDS
                                          for m in spec.values()):
            raise ValueError(f"cards must be models of {sorted(_CARDS)} in slots {_SLOTS}, "
                             f"got {cards!r}")
        self.cards = {int(slot): str(m) for slot, m in spec.items() if m is not None}
        self.pair_conflict_code = int(pair_conflict_code)
        self.locations = {int(k): v for k, v in
                          (self.default_locations if locations is None else locations).items()}
        self.values = {int(k): float(v) for k, v in (values or {}).items()}
        rng = random.Random(seed)
        self.sensor_errors = {ch: rng.gauss(0.0, 0.03) for ch in self.all_channels()}
        self.sensor_errors.update({int(k): float(v) for k, v in (sensor_errors or {}).items()})
        self.lead_resistance = float(lead_resistance)
        self.open_channels = {int(c) for c in open_channels}
        super().__init__(world, seed)

    def all_channels(self) -> list[int]:
        """Every measurement channel of the fitted cards (2-wire; current channels aside)."""
        return [s * 100 + n for s in sorted(self.cards)
                for n in range(1, _CARDS[self.cards[s]][0] + 1)]

    def _check_primaries(self, chans: list[int], what: str) -> None:
        """Refuse a 3-/4-wire setting on a card's sense channel (n > pair offset)."""
        sense = [c for c in chans if c % 100 > _CARDS[self.cards[c // 100]][1]]
        if sense:
            raise CommandError(str(self.pair_conflict_code),
                               f"{what} on sense channel(s) {sense}")

    # --- state ------------------------------------------------------------------------
    def reset_settings(self) -> None:
        self.errors: list[int] = []
        self.function: dict[int, str] = {}
        self.transducer: dict[int, str] = {}
        self.rtd_type: dict[int, str] = {}
        self.unit: dict[int, str] = {}
        self.scan_list: list[int] = []
        self.scan_count = 1
        self.buffer: list[tuple[int, float]] = []

    # --- sensor model -------------------------------------------------------------------
    def sensor_resistance(self, ch: int) -> float | None:
        """Return the PT100 resistance in Ω on channel `ch` (None: nothing connected)."""
        if ch in self.open_channels:
            return None
        cryostat = getattr(self.world, "cryostat", None) if self.world is not None else None
        location = self.locations.get(ch)
        if cryostat is not None and location is not None:
            t = float(cryostat.temperature(location))
        elif ch in self.values:
            t = self.values[ch]
        elif location is not None:
            t = 79.5
        else:
            return None
        t += self.sensor_errors.get(ch, 0.0)
        return cvd_resistance(min(max(t, T_MIN), T_MAX))

    def reading(self, ch: int) -> float:
        """Return what the unit measures on channel `ch` now (9.9E37 for overflow)."""
        r = self.sensor_resistance(ch)
        func = self.function.get(ch, "VOLT")
        if r is None:
            return 9.9e37
        if func == "FRES":
            return r
        if func == "RES":
            return r + self.lead_resistance
        if func == "TEMP" and self.transducer.get(ch) in ("RTD", "TRTD", "FRTD") \
                and self.rtd_type.get(ch, "PT100") in ("PT100", "PT385"):
            # a 2-wire RTD reads its leads too; 3- and 4-wire cancel them
            lead = self.lead_resistance if self.transducer[ch] == "RTD" else 0.0
            k = cvd_temperature(r + lead)
            return {"KELV": k, "CELS": k - 273.15, "FAHR": (k - 273.15) * 1.8 + 32}[
                self.unit.get(ch, "CELS")]
        return 0.0  # a DC-volts reading across a passive sensor

    # --- parser -----------------------------------------------------------------------
    def error_reply(self, err: CommandError) -> str | None:
        self.errors.append(int(err.code))
        return None

    def _channels(self, text: str) -> list[int]:
        m = _CLIST.fullmatch(text.strip())
        if not m:
            raise CommandError("-222", f"bad channel list {text!r}")
        out: list[int] = []
        for part in m.group(1).split(","):
            lo, _, hi = part.strip().partition(":")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise CommandError("-222", f"bad channel list {text!r}")
            a, b = int(lo), int(hi or lo)
            if b < a or a // 100 != b // 100:
                raise CommandError("-222", f"bad channel range {part!r}")
            out.extend(range(a, b + 1))
        valid = set(self.all_channels())
        if not out or any(c not in valid for c in out):
            raise CommandError("-222", f"channel out of range in {text!r}")
        return out

    def handle(self, line: str) -> str | None:
        replies = []
        for command in line.split(";"):
            if not command.strip():
                continue
            try:
                reply = self._one(command.strip())
            except CommandError as err:
                self.error_reply(err)
                return None if not replies else ";".join(replies)
            if reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def _one(self, command: str) -> str | None:
        header, _, rest = command.partition(" ")
        head = _norm_header(header)
        rest = rest.strip()
        if head == "*IDN?":
            return self.idn
        if head == "*OPC?":
            return "1"
        if head in ("*CLS",):
            self.errors.clear()
            return None
        if head == "*RST":
            self.reset_settings()
            return None
        if head == "SYST:ERR?" or head == "SYST:ERR:NEXT?":
            if not self.errors:
                return '0,"No error"'
            code = self.errors.pop(0)
            return f'{code},"{_ERRORS.get(code, "Error")}"'
        if head == "SENS:FUNC":
            func, clist = self._split_arg(rest)
            func = func.strip("'\"").upper()
            func = {"TEMPERATURE": "TEMP", "FRESISTANCE": "FRES", "RESISTANCE": "RES",
                    "VOLTAGE:DC": "VOLT", "VOLT:DC": "VOLT"}.get(func, func)
            if func not in ("TEMP", "FRES", "RES", "VOLT"):
                raise CommandError("-222", f"bad function {func!r}")
            chans = self._channels(clist)
            if func == "FRES":
                self._check_primaries(chans, "4-wire resistance")
            for c in chans:
                self.function[c] = func
            return None
        if head == "SENS:TEMP:TRAN":
            value, clist = self._split_arg(rest)
            value = value.upper()
            if value not in ("TRTD", "FRTD", "TC", "THER", "RTD"):
                raise CommandError("-222", f"bad transducer {value!r}")
            chans = self._channels(clist)
            if value in ("FRTD", "TRTD"):
                self._check_primaries(chans, f"{value} (paired-channel RTD)")
            for c in chans:
                # RTD is the 2-wire RTD (with :RTD:TWO), as in cmstkmodlab's driver: any channel
                self.transducer[c] = value
            return None
        if head in ("SENS:TEMP:RTD:THR", "SENS:TEMP:RTD:FOUR", "SENS:TEMP:RTD:TWO"):
            value, clist = self._split_arg(rest)
            value = value.upper()
            if value not in ("PT100", "PT385", "PT3916", "D100", "F100", "USER"):
                raise CommandError("-222", f"bad RTD type {value!r}")
            for c in self._channels(clist):
                self.rtd_type[c] = value
            return None
        if head == "SENS:TEMP:UNIT":
            value, clist = self._split_arg(rest)
            value = {"KELVIN": "KELV", "CELSIUS": "CELS", "FAHRENHEIT": "FAHR", "K": "KELV",
                     "C": "CELS", "F": "FAHR"}.get(value.upper(), value.upper())
            if value not in ("KELV", "CELS", "FAHR"):
                raise CommandError("-222", f"bad unit {value!r}")
            for c in self._channels(clist):
                self.unit[c] = value
            return None
        if head == "ROUT:SCAN:CRE" or head == "ROUT:SCAN":
            self.scan_list = self._channels(rest)
            return None
        if head == "ROUT:SCAN:COUN:SCAN":
            if not rest.isdigit() or not 1 <= int(rest) <= 100000:
                raise CommandError("-222", f"bad scan count {rest!r}")
            self.scan_count = int(rest)
            return None
        if head == "TRAC:CLE":
            self._buffer_name(rest or "'defbuffer1'")
            self.buffer.clear()
            return None
        if head in ("INIT:IMM", "INIT"):
            if not self.scan_list:
                raise CommandError("-221", "no scan list")
            for _ in range(self.scan_count):
                self.buffer.extend((c, self.reading(c)) for c in self.scan_list)
            return None
        if head == "TRAC:ACT?":
            self._buffer_name(rest or "'defbuffer1'")
            return str(len(self.buffer))
        if head == "TRAC:DATA?":
            return self._trace_data(rest)
        raise CommandError("-113", f"undefined header {header!r}")

    @staticmethod
    def _split_arg(rest: str) -> tuple[str, str]:
        value, sep, clist = rest.partition(",")
        if not sep or not value.strip():
            raise CommandError("-109", f"missing parameter in {rest!r}")
        return value.strip(), clist.strip()

    @staticmethod
    def _buffer_name(text: str) -> str:
        name = text.strip().strip("'\"").lower()
        if name not in ("defbuffer1", "defbuffer2"):
            raise CommandError("-222", f"no buffer {text!r}")
        return name

    def _trace_data(self, rest: str) -> str:
        parts = [p.strip() for p in rest.split(",")]
        if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise CommandError("-109", f"bad :TRAC:DATA? parameters {rest!r}")
        start, end = int(parts[0]), int(parts[1])
        self._buffer_name(parts[2])
        if not (1 <= start <= end <= len(self.buffer)):
            raise CommandError("-222", f"buffer index {start}..{end} of {len(self.buffer)}")
        elements = [p.upper() for p in parts[3:]] or ["READ"]
        out: list[str] = []
        for ch, value in self.buffer[start - 1:end]:
            for element in elements:
                if element in ("CHAN", "CHANNEL"):
                    out.append(str(ch))
                elif element in ("READ", "READING"):
                    out.append(f"{value:+.6E}")
                else:
                    raise CommandError("-222", f"unsupported buffer element {element!r}")
        return ",".join(out)
