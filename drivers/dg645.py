"""SRS DG645 digital delay generator: the per-cycle start trigger of the clock's pulse sequence.

Each clock cycle the host sends one ``*TRG``; with the trigger source set to *single shot*
(``TSRC 5``) the DG645 fires one delay cycle whose outputs start the lab's TTL pattern.

Protocol, as used here (sources in brackets; SRS's own Python driver is "srsinst"):

- Links: RS-232 (default 9600 baud 8N1, RTS/CTS hardware handshake), GPIB, and LAN (raw socket
  on TCP port 5025, VXI-11). [srsinst: thinkSRS/srsinst.dg645 ``instruments/dg645.py`` and
  ``tests/conftest.py``; ISIS wiki "Stanford DG645" (default baud 9600); EPICS
  epics-modules/delaygen ``iocs/.../iocdelaygen/dg645.cmd`` ("the device actually uses
  hardware handshaking") and ``st.cmd`` (port 5025)]
- Terminators: the host ends a command with LF (a CR is accepted too); every reply ends with
  CR LF. [delaygen ``dg645.cmd``: input EOS CR LF, output EOS LF; InstrumentKit
  ``srs/srsdg645.py`` strips two characters from GPIB replies; QCoDeS contrib
  ``StanfordResearchSystems/DG645.py`` uses CR LF]
- ``*IDN?`` -> ``Stanford Research Systems,DG645,s/n001776,ver1.14.10E`` (as logged by the
  ``dg645-ioc`` package's documentation).
- ``TSRC i`` / ``TSRC?``: 0 internal, 1 external rising, 2 external falling, 3 single-shot
  external rising, 4 single-shot external falling, 5 single shot, 6 line; *RST gives 5.
  [srsinst ``components.py`` Trigger.TriggerSourceDict and ``tests/test_dg645.py``
  (``TSRC 7`` -> error 10); QCoDeS TRIGGER_MAPPING; delaygen ``drvDG645.db``]
- ``*TRG``: no reply. "When configured for single shot triggers, initiates a single trigger;
  when configured for externally triggered single shots, arms the DG645 to trigger on the
  next external trigger." [srsinst Interface.trigger docstring; delaygen and QCoDeS send it
  write-only]. In any other source it does not start a delay cycle (see the twin).
- ``DLAY c,d,t`` sets channel c to t seconds after channel d; ``DLAY?c`` answers ``d,+t``
  (e.g. ``2,+0.001000000000``, seconds with 12 decimals). Channels T0, T1, A..H are 0..9;
  only A..H (2..9) carry settable delays and T1 is no reference. Delays span 0 to 2000 s with
  5 ps resolution. [srsinst ``components.py`` FloatDualIndexCommand and README; delaygen
  ``drvAsynDG645.cpp`` command table (DLAY 2..9); QCoDeS (delay/link only for A..H, links
  exclude T1)]
- ``LAMP b,v`` / ``LAMP?b`` and ``LOFF b,v`` / ``LOFF?b``: output b (T0, AB, CD, EF, GH =
  0..4) amplitude 0.5..5.0 V and offset -3..3 V (srsinst Outputs ranges; ``LAMP 1,10.0`` ->
  error 10 in srsinst's hardware tests). QCoDeS's contrib driver writes ``LAMP v,b``, the
  wrong order: srsinst and delaygen agree on ``b,v``.
- ``LERR?``: one code from the error queue, 0 when empty (reading removes it); ``*CLS``
  clears it. Codes from delaygen's ``statusMsg`` table (`ERROR_CODES`).
- There is no ``INSM`` command; the instrument status register is ``INSR?`` (read clears;
  bit 0 TRIG, bit 2 END_OF_DELAY [srsinst Status.InsrBitDict]).

Hot path: `SRSDG645.trigger` is one write of ``*TRG`` through the adapter's transport method,
bound once at construction (no pymeasure logging, no reply, no error query): an error is
read from the queue only on the slow path (`check_errors`; docs/decisions/0100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pymeasure.instruments import Instrument

from ionclock.drivers.common import LinkMixin, parse_number
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError

#: ``TSRC`` codes by name.
TRIGGER_SOURCES: dict[str, int] = {
    "internal": 0,
    "external_rising": 1,
    "external_falling": 2,
    "single_shot_external_rising": 3,
    "single_shot_external_falling": 4,
    "single_shot": 5,
    "line": 6,
}
_SOURCE_NAMES = {code: name for name, code in TRIGGER_SOURCES.items()}

#: Delay channel numbers (``DLAY``).
CHANNELS: dict[str, int] = {"T0": 0, "T1": 1, "A": 2, "B": 3, "C": 4, "D": 5, "E": 6, "F": 7,
                            "G": 8, "H": 9}
_CHANNEL_NAMES = {code: name for name, code in CHANNELS.items()}
#: Channels whose delay can be set, and channels a delay can refer to.
DELAY_CHANNELS = ("A", "B", "C", "D", "E", "F", "G", "H")
REFERENCE_CHANNELS = ("T0",) + DELAY_CHANNELS

#: Output BNCs (``LAMP``/``LOFF``).
OUTPUTS: dict[str, int] = {"T0": 0, "AB": 1, "CD": 2, "EF": 3, "GH": 4}

DELAY_MAX_S = 2000.0
"""Delays are below 2000 s (5 ps resolution); the driver refuses negative delays too."""
_PS_PER_S = 10**12
_DELAY_MAX_PS = 2000 * _PS_PER_S
AMPLITUDE_RANGE_V = (0.5, 5.0)
OFFSET_RANGE_V = (-3.0, 3.0)

#: ``LERR?`` codes (epics-modules/delaygen ``drvAsynDG645.cpp`` statusMsg, from the manual).
ERROR_CODES: dict[int, str] = {
    0: "no error", 10: "illegal value", 11: "illegal mode", 12: "illegal delay",
    13: "illegal link", 14: "recall failed", 15: "not allowed", 16: "failed self test",
    17: "failed auto calibration", 30: "lost data", 32: "no listener",
    40: "failed ROM check", 41: "failed offset T0 test", 42: "failed offset AB test",
    43: "failed offset CD test", 44: "failed offset EF test", 45: "failed offset GH test",
    46: "failed amplitude T0 test", 47: "failed amplitude AB test",
    48: "failed amplitude CD test", 49: "failed amplitude EF test",
    50: "failed amplitude GH test", 51: "failed FPGA communications test",
    52: "failed GPIB communications test", 53: "failed DDS communications test",
    54: "failed serial EEPROM communications test",
    55: "failed temperature sensor communications test",
    56: "failed PLL communications test", 57: "failed DAC 0 communications test",
    58: "failed DAC 1 communications test", 59: "failed DAC 2 communications test",
    60: "failed sample and hold operations test", 61: "failed Vjitter operations test",
    62: "failed channel T0 analog delay test", 63: "failed channel T1 analog delay test",
    64: "failed channel A analog delay test", 65: "failed channel B analog delay test",
    66: "failed channel C analog delay test", 67: "failed channel D analog delay test",
    68: "failed channel E analog delay test", 69: "failed channel F analog delay test",
    70: "failed channel G analog delay test", 71: "failed channel H analog delay test",
    80: "failed sample and hold calibration", 81: "failed T0 calibration",
    82: "failed T1 calibration", 83: "failed A calibration", 84: "failed B calibration",
    85: "failed C calibration", 86: "failed D calibration", 87: "failed E calibration",
    88: "failed F calibration", 89: "failed G calibration", 90: "failed H calibration",
    91: "failed Vjitter calibration", 110: "illegal command", 111: "undefined command",
    112: "illegal query", 113: "illegal set", 114: "null parameter",
    115: "extra parameters", 116: "missing parameters", 117: "parameter overflow",
    118: "invalid floating point number", 120: "invalid integer", 121: "integer overflow",
    122: "invalid hexadecimal", 126: "syntax error", 170: "communication error",
    171: "over run", 254: "too many errors",
}

#: How many ``LERR?`` entries one `SRSDG645.check_errors` reads at most.
MAX_ERRORS_READ = 21


@dataclass(frozen=True)
class DG645Identity:
    """The parsed ``*IDN?`` reply."""

    manufacturer: str
    model: str
    serial: str
    firmware: str


def parse_idn(reply: str, instrument: str = "DG645") -> DG645Identity:
    """Parse ``Stanford Research Systems,DG645,s/n001776,ver1.14.10E``; else `ReplyError`."""
    fields = [f.strip() for f in reply.split(",")]
    if len(fields) != 4 or not all(fields):
        if not reply:
            raise InstrumentTimeout(instrument, "no reply to *IDN?")
        raise ReplyError(instrument, f"bad *IDN? reply {reply!r}")
    return DG645Identity(*fields)


def delay_text(seconds: float) -> str:
    """A delay in seconds -> the ``DLAY`` text (12 decimals, 1 ps steps).

    Outside [0, 2000) s, or NaN, is a `ValueError`. The unit itself keeps 5 ps steps.
    """
    if not 0.0 <= seconds < DELAY_MAX_S:  # also rejects NaN
        raise ValueError(f"delay must be within [0, {DELAY_MAX_S:.0f}) s, got {seconds!r}")
    ps = round(seconds * 1e12)
    if ps >= _DELAY_MAX_PS:  # 1999.9999999999998 s rounds up to 2000 s
        raise ValueError(f"delay must be below {DELAY_MAX_S:.0f} s, got {seconds!r}")
    whole, frac = divmod(ps, _PS_PER_S)
    return f"{whole}.{frac:012d}"


def parse_delay(reply: str, instrument: str = "DG645") -> tuple[str, float]:
    """Parse a ``DLAY?`` reply ``d,+t`` into (reference channel name, seconds)."""
    ref_text, sep, t_text = reply.partition(",")
    ref_text = ref_text.strip()
    if not sep or len(ref_text) != 1 or not _digits(ref_text):
        if not reply:
            raise InstrumentTimeout(instrument, "no reply to DLAY?")
        raise ReplyError(instrument, f"bad DLAY? reply {reply!r}")
    try:
        seconds = float(t_text)
    except ValueError:
        raise ReplyError(instrument, f"bad DLAY? reply {reply!r}") from None
    if not math.isfinite(seconds) or "_" in t_text:
        raise ReplyError(instrument, f"bad DLAY? reply {reply!r}")
    return _CHANNEL_NAMES[int(ref_text)], seconds


def parse_error_code(reply: str, instrument: str = "DG645") -> int:
    """Parse a ``LERR?`` reply (a bare integer) into the code; else `ReplyError`."""
    text = reply.strip()
    if not _digits(text):
        if not reply:
            raise InstrumentTimeout(instrument, "no reply to LERR?")
        raise ReplyError(instrument, f"bad LERR? reply {reply!r}")
    return int(text)


def _digits(text: str) -> bool:
    """True for a non-empty run of ASCII digits (str.isdigit alone admits '²')."""
    return text.isdigit() and text.isascii()


def _channel(name: str, allowed: tuple[str, ...], what: str) -> int:
    if not isinstance(name, str) or name.upper() not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {name!r}")
    return CHANNELS[name.upper()]


def _output(name: str) -> int:
    if not isinstance(name, str) or name.upper() not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {name!r}")
    return OUTPUTS[name.upper()]


class SRSDG645(LinkMixin, Instrument):
    """SRS DG645 digital delay generator (RS-232 9600 8N1 RTS/CTS, GPIB or LAN port 5025).

    Parameters
    ----------
    adapter:
        A pymeasure adapter or a VISA resource string.
    name:
        Used in error messages.
    """

    write_termination = "\n"
    read_termination = "\r\n"
    serial_settings = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1,
                       "xonxoff": False, "rtscts": True, "timeout": 1.0}

    # No dynamic properties here: pymeasure's attribute hook only guards their names, and
    # skipping it saves ~1 us per attribute access on the hot path (docs/decisions/0100).
    __getattribute__ = object.__getattribute__

    def __init__(self, adapter, name: str = "DG645", **kwargs):
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        # The adapter's transport write, bound once: pymeasure's public write() adds a DEBUG
        # log call per command. Traffic stays visible in the twin's transcript / spy:// URL.
        self._send = self.adapter._write

    # --- hot path -------------------------------------------------------------------------
    def trigger(self) -> None:
        """Send ``*TRG`` (no reply): fires one delay cycle when the source is single shot.

        Nothing is read back: a rejected trigger shows up in `check_errors` (slow path).
        """
        self._send("*TRG")

    # --- errors -----------------------------------------------------------------------------
    def check_errors(self) -> list:
        """Read ``LERR?`` until 0; raise `InstrumentError` (code = the DG645's) for the first."""
        ask = self.ask
        codes = []
        for _ in range(MAX_ERRORS_READ):
            code = parse_error_code(ask("LERR?"), self.name)
            if code == 0:
                break
            codes.append(code)
        if codes:
            code = codes[0]
            message = ERROR_CODES.get(code, "unknown error")
            more = f" (+{len(codes) - 1} more: {codes[1:]})" if len(codes) > 1 else ""
            raise InstrumentError(self.name, message + more, code=str(code))
        return codes

    def check_set_errors(self) -> list:
        return self.check_errors()

    def _set(self, command: str) -> None:
        self.write(command)
        self.check_errors()

    # --- trigger source ---------------------------------------------------------------------
    @property
    def trigger_source(self) -> str:
        """Trigger source (``TSRC``): one of `TRIGGER_SOURCES` ("single_shot" for ``*TRG``)."""
        reply = self.ask("TSRC?")
        text = reply.strip()
        if len(text) != 1 or not _digits(text) or int(text) not in _SOURCE_NAMES:
            if not reply:
                raise InstrumentTimeout(self.name, "no reply to TSRC?")
            raise ReplyError(self.name, f"bad TSRC? reply {reply!r}")
        return _SOURCE_NAMES[int(text)]

    @trigger_source.setter
    def trigger_source(self, source: str) -> None:
        code = TRIGGER_SOURCES.get(source) if isinstance(source, str) else None
        if code is None:
            raise ValueError(f"trigger source must be one of {', '.join(TRIGGER_SOURCES)}, "
                             f"got {source!r}")
        self._set(f"TSRC {code}")

    # --- delays -----------------------------------------------------------------------------
    def delay(self, channel: str) -> tuple[str, float]:
        """(reference channel, delay in s) of `channel` (A..H), from ``DLAY?c``."""
        c = _channel(channel, DELAY_CHANNELS, "channel")
        return parse_delay(self.ask(f"DLAY?{c}"), self.name)

    def set_delay(self, channel: str, reference: str, seconds: float) -> None:
        """Set `channel` (A..H) to `seconds` (0 <= t < 2000 s) after `reference` (T0, A..H).

        ``DLAY c,d,t`` then the error queue: a link loop is error 13, an absolute delay out of
        range error 12, both raised as `InstrumentError`.
        """
        c = _channel(channel, DELAY_CHANNELS, "channel")
        d = _channel(reference, REFERENCE_CHANNELS, "reference")
        if c == d:
            raise ValueError(f"channel {channel!r} cannot refer to itself")
        self._set(f"DLAY {c},{d},{delay_text(seconds)}")

    # --- output levels ----------------------------------------------------------------------
    def level_amplitude(self, output: str) -> float:
        """Amplitude (V) of `output` (T0, AB, CD, EF, GH), from ``LAMP?b``."""
        return parse_number(self.ask(f"LAMP?{_output(output)}"), self.name, "LAMP?")

    def set_level_amplitude(self, output: str, volts: float) -> None:
        """Set the amplitude of `output` to `volts` (0.5 to 5.0 V, 10 mV steps sent)."""
        b = _output(output)
        lo, hi = AMPLITUDE_RANGE_V
        if not lo <= volts <= hi:  # also rejects NaN
            raise ValueError(f"amplitude must be within [{lo}, {hi}] V, got {volts!r}")
        self._set(f"LAMP {b},{volts:.2f}")

    def level_offset(self, output: str) -> float:
        """Offset (V) of `output` (T0, AB, CD, EF, GH), from ``LOFF?b``."""
        return parse_number(self.ask(f"LOFF?{_output(output)}"), self.name, "LOFF?")

    def set_level_offset(self, output: str, volts: float) -> None:
        """Set the offset of `output` to `volts` (-3.0 to 3.0 V, 10 mV steps sent)."""
        b = _output(output)
        lo, hi = OFFSET_RANGE_V
        if not lo <= volts <= hi:  # also rejects NaN
            raise ValueError(f"offset must be within [{lo}, {hi}] V, got {volts!r}")
        self._set(f"LOFF {b},{volts:.2f}")

    # --- status and housekeeping -------------------------------------------------------------
    def read_instrument_status(self) -> int:
        """Read (and so clear) the instrument status register ``INSR?`` (bit 0 TRIG, ...)."""
        reply = self.ask("INSR?")
        text = reply.strip()
        if not _digits(text) or int(text) > 255:
            if not reply:
                raise InstrumentTimeout(self.name, "no reply to INSR?")
            raise ReplyError(self.name, f"bad INSR? reply {reply!r}")
        return int(text)

    def clear_status(self) -> None:
        """``*CLS``: clear the status registers and the error queue."""
        self.write("*CLS")

    def reset(self) -> None:
        """``*RST``: factory defaults (trigger source single shot, A=T0, B=A+10 ns, ...)."""
        self.write("*RST")

    @property
    def identity(self) -> DG645Identity:
        """The parsed ``*IDN?`` reply."""
        return parse_idn(self.ask("*IDN?"), self.name)

    def _ping_query(self) -> bool:
        ident = self.identity
        return ident.manufacturer == "Stanford Research Systems" and ident.model == "DG645"
