"""Lake Shore Model 218 eight-input temperature monitor (the clock's PT100 readout).

Link (Model 218 manual §6.2): RS-232, 9600 baud (300/1200 selectable on the front panel),
**7 data bits, odd parity**, 1 start and 1 stop bit, commands and replies end CR LF. Sources
disagree on the parity (pyLabLib opens the port 7E1; the manual and lab notes say odd), so
`parity` is a constructor argument (also reachable from config as a driver option). A null-modem
cable may be needed. The unit wants at least 50 ms between messages and no more than 20
messages per second (§6.2.5): the driver paces itself on real serial/VISA links.

Commands used (§6.3): ``KRDG? n`` kelvin (n = 1..8; 0 = all eight, comma-separated),
``SRDG? n`` sensor units (Ω for platinum), ``RDGST? n`` reading status bits,
``INTYPE g,t`` / ``INTYPE? g`` sensor type of group A (inputs 1–4) or B (5–8),
``INCRV n,c`` / ``INCRV? n`` curve per input, ``INPUT n,0|1`` / ``INPUT? n`` enable,
``FILTER n,on,points,window`` / ``FILTER? n``, ``*IDN?``, ``*ESR?``.

The unit sends nothing back for a command it rejects; the driver therefore reads ``*ESR?``
after every setting and raises `InstrumentError` (code = the ESR value) when the command-error
(32) or execution-error (16) bit is set.

Readings (§6.3 KRDG?/CRDG?): fixed-width ``±nn.nnn`` (sign, five digits, a floating decimal
point). A reading from a disabled input or an open / out-of-range sensor is reported as
overload text (``OVL`` in several spellings) or as an all-zero reading with the status bits
set; both become `Missing` (a NaN carrying the reason), never 0. Anything else that is not a
well-formed reading (garbled, truncated) is a `ReplyError`: a wrong number must not pass.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from pymeasure.instruments import Channel, Instrument
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from ionclock.drivers.common import ANY_FAILURE, LinkMixin
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.rtd import Missing

NAME = "Lake Shore 218"

#: INTYPE sensor types (Model 218 manual, INTYPE command).
SENSOR_TYPES: dict[str, int] = {"diode_2.5V": 0, "diode_7.5V": 1, "platinum_250": 2,
                                "platinum_500": 3, "platinum_5k": 4, "cernox": 5}
#: Standard curve number of the DIN/IEC PT100 curve in the 218's curve table.
PT100_CURVE = 6

_OVERLOAD = re.compile(r"[+-]?(?:OVL|OVLD|OL|OVER|OVERLOAD|OVERRANGE|OVRLD)", re.IGNORECASE)
_LOOSE_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?")

# RDGST? bits (§6.3): why a reading is not valid.
_STATUS_BITS = {1: "invalid reading", 16: "temperature under range",
                32: "temperature over range", 64: "sensor units zero",
                128: "sensor units over range"}


def status_text(bits: int) -> str:
    """Describe RDGST? status bits in words ("ok" for 0)."""
    words = [text for bit, text in _STATUS_BITS.items() if bits & bit]
    return ", ".join(words) if words else "ok"


def parse_reading(token: str, *, instrument: str = NAME, quantity: str = "K",
                  digits: int | None = 5) -> float:
    """Parse one Lake Shore reading: a float, `Missing` for overload/zero, else `ReplyError`.

    `digits` is the fixed number of digits of the unit's reading format (5 for ``±nn.nnn``);
    None accepts any decimal number (for units whose format is not pinned down).
    """
    tok = token.strip()
    if _OVERLOAD.fullmatch(tok):
        return Missing(f"overload ({tok}): open sensor, disabled input or out of range")
    if digits is not None:
        body = tok[1:]
        ok = (len(tok) == digits + 2 and tok[0] in "+-" and body.count(".") == 1
              and body.replace(".", "").isascii() and body.replace(".", "").isdigit())
    else:
        ok = _LOOSE_NUMBER.fullmatch(tok) is not None
    if not ok:
        raise ReplyError(instrument, f"malformed {quantity} reading {token!r}")
    value = float(tok)
    if value == 0.0:
        # An all-zero reading is what the unit shows for an open sensor or a disabled input
        # (status "sensor units zero"); 0 K / 0 Ω is never a real PT100 reading.
        return Missing(f"zero {quantity} reading: open sensor or disabled input")
    if value < 0.0 or not math.isfinite(value):
        raise ReplyError(instrument, f"impossible {quantity} reading {token!r}")
    return value


def parse_int_reply(token: str, name: str, lo: int, hi: int, instrument: str = NAME) -> int:
    tok = token.strip()
    if not (tok.isascii() and tok.isdigit()) or not lo <= int(tok) <= hi:
        raise ReplyError(instrument, f"malformed {name} reply {token!r}")
    return int(tok)


def _reply_int(name: str, lo: int, hi: int):
    def process(value) -> int:
        return parse_int_reply(str(value), name, lo, hi)
    return process


def _reply_bool(value) -> bool:
    return bool(parse_int_reply(str(value), "on/off", 0, 1))


def _no_list(value) -> None:
    raise ReplyError(NAME, f"unexpected multi-field reply {value!r}")


class LakeShoreCommonMixin(LinkMixin):
    """What the Lake Shore 218 and 224 share: ``*ESR?`` check, `idn`, `ping()`, `read_reading`.

    The units send nothing back for a rejected command, so `check_set_errors` reads ``*ESR?``
    (command-error bit 32, execution-error bit 16). `model_prefix` is the ``*IDN?`` prefix
    `ping()` expects (``LSCI,MODEL218`` / ``LSCI,MODEL224``).
    """

    name: str
    model_prefix: str
    digits: int | None
    link_errors = ANY_FAILURE  # a liveness probe: any failure (timeout, link down, VISA) is "no"

    def check_set_errors(self) -> list:
        """Read ``*ESR?``; raise `InstrumentError` if the last command was rejected."""
        reply = self.ask("*ESR?")  # type: ignore[attr-defined]
        esr = parse_int_reply(reply, "*ESR?", 0, 255, self.name)
        if esr & (16 | 32):
            kind = "command error" if esr & 32 else "execution error (value out of range)"
            raise InstrumentError(self.name, f"{kind} in the last command", code=str(esr))
        return []

    @property
    def idn(self) -> str:
        """Get the identification string (``LSCI,MODEL2xx,...``)."""
        return self.ask("*IDN?").strip()  # type: ignore[attr-defined]

    def _ping_query(self) -> bool:
        """True if the unit answers ``*IDN?`` as the expected model (`model_prefix`)."""
        return self.idn.startswith(self.model_prefix)

    def read_reading(self, command: str, quantity: str) -> float:
        """Send a single-reading query and parse its reply (float or `Missing`)."""
        reply = self.ask(command)  # type: ignore[attr-defined]
        if "," in reply:
            raise ReplyError(self.name, f"unexpected multi-field reply {reply!r} to {command}")
        return parse_reading(reply, instrument=self.name, quantity=quantity, digits=self.digits)


class LakeShoreInputMixin:
    """One input of a Lake Shore 218 or 224: readings and the reading filter (same commands).

    `error_name` is the instrument name a malformed ``FILTER?`` reply's `ReplyError` carries.
    """

    id: int | str
    parent: Any
    error_name: str

    @property
    def temperature(self) -> float:
        """Measure the temperature in K (`Missing` for an open/disabled/out-of-range input)."""
        return self.parent.read_reading(f"KRDG? {self.id}", "K")

    @property
    def resistance(self) -> float:
        """Measure the sensor reading in Ω (platinum types; `Missing` when there is none)."""
        return self.parent.read_reading(f"SRDG? {self.id}", "ohm")

    @property
    def filter(self) -> tuple[bool, int, int]:
        """Get the reading filter: (enabled, points 2–64, window in % 1–10)."""
        fields = self.ask("FILTER? {ch}").strip().split(",")  # type: ignore[attr-defined]
        name = self.error_name
        if len(fields) != 3:
            raise ReplyError(name, f"malformed FILTER? reply {','.join(fields)!r}")
        return (bool(parse_int_reply(fields[0], "filter on/off", 0, 1, name)),
                parse_int_reply(fields[1], "filter points", 2, 64, name),
                parse_int_reply(fields[2], "filter window", 1, 10, name))

    def set_filter(self, enabled: bool, points: int = 8, window: int = 2) -> None:
        """Configure the reading filter: on/off, `points` (2–64), `window` in % (1–10)."""
        if not isinstance(enabled, bool):
            raise ValueError(f"filter enabled must be True or False, got {enabled!r}")
        if not (isinstance(points, int) and 2 <= points <= 64):
            raise ValueError(f"filter points must be an integer 2–64, got {points!r}")
        if not (isinstance(window, int) and 1 <= window <= 10):
            raise ValueError(f"filter window must be an integer 1–10 %, got {window!r}")
        self.write(f"FILTER {{ch}},{int(enabled)},{points},{window}")  # type: ignore[attr-defined]
        self.parent.check_set_errors()


class LakeShore218Input(LakeShoreInputMixin, Channel):
    """One sensor input (1–8) of the Lake Shore 218."""

    error_name = NAME

    status = Channel.measurement(
        "RDGST? {ch}",
        """Get the reading status bits (0 = valid; see `status_text`).""",
        cast=str, get_process=_reply_int("RDGST", 0, 255), get_process_list=_no_list)

    enabled = Channel.control(
        "INPUT? {ch}", "INPUT {ch},%d",
        """Control whether the input is scanned (bool).""",
        validator=strict_discrete_set, values={True: 1, False: 0}, map_values=True,
        cast=str, get_process=_reply_bool, get_process_list=_no_list, check_set_errors=True)

    curve = Channel.control(
        "INCRV? {ch}", "INCRV {ch},%d",
        """Control the input's temperature curve number (1–28; 6 = PT100).""",
        validator=strict_range, values=(1, 28), set_process=int,
        cast=str, get_process=_reply_int("INCRV", 0, 28), get_process_list=_no_list,
        check_set_errors=True)


class LakeShore218(LakeShoreCommonMixin, Instrument):
    """Lake Shore 218 eight-input temperature monitor (RS-232 9600 7O1, CR LF).

    Inputs are ``input_1`` .. ``input_8`` (`LakeShore218Input`) with `temperature` (K),
    `resistance` (Ω), `status`, `enabled`, `curve` and `filter`; `temperatures` /
    `resistances` read all eight in one query. `parity` ("O" odd, the manual's; "E" even) and
    `baudrate` (300, 1200, 9600) reconfigure a pyserial port the driver was given.
    """

    write_termination = "\r\n"
    read_termination = "\r\n"
    model_prefix = "LSCI,MODEL218"
    serial_settings = {"baudrate": 9600, "bytesize": 7, "parity": "O", "stopbits": 1,
                       "timeout": 1.0}
    #: Seconds between messages the unit needs (§6.2.5), enforced on real links.
    MESSAGE_INTERVAL = 0.05

    input_1 = Instrument.ChannelCreator(LakeShore218Input, 1)
    input_2 = Instrument.ChannelCreator(LakeShore218Input, 2)
    input_3 = Instrument.ChannelCreator(LakeShore218Input, 3)
    input_4 = Instrument.ChannelCreator(LakeShore218Input, 4)
    input_5 = Instrument.ChannelCreator(LakeShore218Input, 5)
    input_6 = Instrument.ChannelCreator(LakeShore218Input, 6)
    input_7 = Instrument.ChannelCreator(LakeShore218Input, 7)
    input_8 = Instrument.ChannelCreator(LakeShore218Input, 8)

    def __init__(self, adapter, name: str = NAME, *, parity: str | None = None,
                 baudrate: int | None = None, strict_format: bool = True,
                 message_interval: float | None = None, **kwargs):
        if parity is not None and parity not in ("O", "E"):
            raise ValueError(f"parity must be 'O' (odd) or 'E' (even), got {parity!r}")
        if baudrate is not None and baudrate not in (300, 1200, 9600):
            raise ValueError(f"baudrate must be 300, 1200 or 9600, got {baudrate!r}")
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        if isinstance(adapter, str) and adapter.startswith("ASRL"):
            from pyvisa.constants import Parity

            kwargs.setdefault("baud_rate", baudrate or 9600)
            kwargs.setdefault("data_bits", 7)
            kwargs.setdefault("parity", Parity.even if parity == "E" else Parity.odd)
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        connection = getattr(self.adapter, "connection", None)
        # A pyserial port handed over by the registry: apply the line settings asked for here.
        if connection is not None and hasattr(connection, "parity") and hasattr(
                connection, "bytesize"):
            # Only touch what differs: each assignment re-applies the whole termios set.
            if parity is not None and connection.parity != parity:
                connection.parity = parity
            if baudrate is not None and connection.baudrate != baudrate:
                connection.baudrate = baudrate
        self.digits = 5 if strict_format else None
        real_link = type(self.adapter).__name__ in ("SerialAdapter", "VISAAdapter")
        self.message_interval = (self.MESSAGE_INTERVAL if real_link else 0.0) \
            if message_interval is None else float(message_interval)
        self._last_message = -math.inf

    # --- pacing and replies -----------------------------------------------------------
    def write(self, command: str, **kwargs) -> None:
        """Write `command`, keeping the unit's minimum spacing between messages."""
        if self.message_interval > 0:
            wait = self._last_message + self.message_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        super().write(command, **kwargs)
        self._last_message = time.monotonic()

    def read(self, **kwargs) -> str:
        """Read one reply line; an empty reply (nothing before the timeout) is a timeout."""
        reply = super().read(**kwargs)
        self._last_message = time.monotonic()
        if reply == "":
            raise InstrumentTimeout(self.name)
        return reply

    def _read_all(self, command: str, quantity: str) -> list[float]:
        reply = self.ask(command)
        fields = reply.split(",")
        if len(fields) != 8:
            raise ReplyError(self.name, f"expected 8 readings to {command}, got {reply!r}")
        return [parse_reading(f, instrument=self.name, quantity=quantity, digits=self.digits)
                for f in fields]

    @property
    def temperatures(self) -> list[float]:
        """Measure all eight inputs in K in one query (`Missing` where there is none)."""
        return self._read_all("KRDG? 0", "K")

    @property
    def resistances(self) -> list[float]:
        """Measure all eight inputs in sensor units (Ω for platinum) in one query."""
        return self._read_all("SRDG? 0", "ohm")

    def input(self, number: int) -> LakeShore218Input:
        """Return input `number` (1–8)."""
        if not (isinstance(number, int) and 1 <= number <= 8):
            raise ValueError(f"input must be an integer 1–8, got {number!r}")
        return getattr(self, f"input_{number}")

    # --- sensor type (per group of four) ----------------------------------------------
    def sensor_type(self, group: str) -> str:
        """Get the sensor type of group "A" (inputs 1–4) or "B" (5–8)."""
        group = self._group(group)
        code = parse_int_reply(self.ask(f"INTYPE? {group}"), "INTYPE", 0, 5, self.name)
        return next(k for k, v in SENSOR_TYPES.items() if v == code)

    def set_sensor_type(self, group: str, sensor_type: str) -> None:
        """Set the sensor type of group "A" or "B" (a key of `SENSOR_TYPES`)."""
        group = self._group(group)
        if sensor_type not in SENSOR_TYPES:
            raise ValueError(f"sensor type must be one of {', '.join(SENSOR_TYPES)}, "
                             f"got {sensor_type!r}")
        self.write(f"INTYPE {group},{SENSOR_TYPES[sensor_type]}")
        self.check_set_errors()

    @staticmethod
    def _group(group: str) -> str:
        if group not in ("A", "B"):
            raise ValueError(f"group must be 'A' (inputs 1–4) or 'B' (inputs 5–8), got {group!r}")
        return group

    def configure_pt100(self, inputs: list[int] | tuple[int, ...] = tuple(range(1, 9))) -> None:
        """Set up `inputs` for PT100s: platinum 250 Ω group type, PT100 curve, enabled."""
        numbers = [self.input(n).id for n in inputs]
        for group in sorted({"A" if n <= 4 else "B" for n in numbers}):
            self.set_sensor_type(group, "platinum_250")
        for n in numbers:
            self.input(n).curve = PT100_CURVE
            self.input(n).enabled = True
