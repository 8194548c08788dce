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

Readings (docs/decisions/0201): the manual prints ``±nn.nnn`` (§6.3 CRDG?/KRDG?), a capture of
a real 218E answers ``+480.00,...,+01.000,...`` (IRTF SpeX LS218 notes,
irtfweb2.ifa.hawaii.edu/~s2/software/ls218/ls218.html), and every public driver (pyLabLib
``pylablib/devices/Lakeshore/base.py``, pymeasure's Lake Shore channels, Lake Shore's own
``lakeshore/model_224.py``) simply parses a float. So a reading is any decimal number text
(``+79.512``, ``+077.123``, ``567.8``, ``77``, ``1.234E+02``); anything else (garbled) is a
`ReplyError`. ``strict_format=True`` also checks the manual's fixed width, which turns a
truncated reply (``+79.5``) into a `ReplyError` on a unit known to keep that width.

A number is not yet a temperature. Open or disabled inputs can read back as a clamped number
(``+480.00`` on open inputs in the capture above; a disabled Lake Shore input can even keep
returning its last kelvin value, simonsobs/socs issue 542 on a Model 240), as overload text
(``OVL`` spellings) or as zero. So every reading, single or bulk, is taken together with that
input's ``RDGST?`` (§6.3: 16 temp under range, 32 temp over range, 64 units under range, 128
units over range; "000" is a valid reading) and its ``INPUT?`` enable state, and checked
against `kelvin_range` (the range of the configured PT100 curve as the clock uses it). A
reading that fails any check becomes `Missing` (a NaN carrying the reason, decision 0200),
never a number.
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
from ionclock.physics.rtd import T_MIN, Missing

NAME = "Lake Shore 218"

#: INTYPE sensor types (Model 218 manual, INTYPE command).
SENSOR_TYPES: dict[str, int] = {"diode_2.5V": 0, "diode_7.5V": 1, "platinum_250": 2,
                                "platinum_500": 3, "platinum_5k": 4, "cernox": 5}
#: Standard curve number of the DIN/IEC PT100 curve in the 218's curve table.
PT100_CURVE = 6

#: Kelvin readings outside this range (K) are clamped or over-range readings, not
#: temperatures. Low end: the floor of the suite's CVD chain (`ionclock.physics.rtd.T_MIN`, below
#: any LN2 cryostat); high end: above any temperature the clock's PT100s see (75–85 K in service, a
#: bake-out stays below 200 °C) and below the 218's ``+480.00`` clamp on open inputs. A driver
#: option (`kelvin_range`) for an apparatus that needs another range.
DEFAULT_KELVIN_RANGE: tuple[float, float] = (T_MIN, 475.0)

_OVERLOAD = re.compile(r"[+-]?(?:OVL|OVLD|OL|OVER|OVERLOAD|OVERRANGE|OVRLD)", re.IGNORECASE)
# Any ASCII decimal number text, as Lake Shore's own driver accepts (float()), but no
# nan/inf/_ and no non-ASCII digits (float() takes those too).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)

#: RDGST? bits of the Model 218 (manual §6.3, RDGST?); "000" is a valid reading.
STATUS_BITS_218: dict[int, str] = {16: "temperature under range", 32: "temperature over range",
                                   64: "sensor units under range",
                                   128: "sensor units over range"}
#: RDGST? bits that invalidate a sensor-units reading (the rest concern the curve only).
SENSOR_UNIT_FAULTS = 1 | 64 | 128

_QUERIES = {"K": "KRDG?", "ohm": "SRDG?", "C": "CRDG?"}


def status_text(bits: int, table: dict[int, str] | None = None) -> str:
    """Describe RDGST? status bits in words ("ok" for 0); `table` defaults to the 218's."""
    table = STATUS_BITS_218 if table is None else table
    words = [table.get(1 << i, f"status bit {1 << i}") for i in range(8) if bits & (1 << i)]
    return ", ".join(words) if words else "ok"


def check_kelvin_range(kelvin_range) -> tuple[float, float]:
    """Validate a (low, high) K range: finite, 0 < low < high; return it as floats."""
    try:
        lo, hi = (float(v) for v in kelvin_range)
    except (TypeError, ValueError):
        raise ValueError(f"kelvin_range must be (low, high) in K, got {kelvin_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo < hi):
        raise ValueError(f"kelvin_range must satisfy 0 < low < high, got {kelvin_range!r}")
    return lo, hi


def parse_reading(token: str, *, instrument: str = NAME, quantity: str = "K",
                  digits: int | None = None,
                  kelvin_range: tuple[float, float] | None = None) -> float:
    """Parse one Lake Shore reading: a float, `Missing` for overload/zero/out of range.

    Any decimal number text is a reading (``+79.512``, ``567.8``, ``77``, ``1.234E+02``);
    anything else is a `ReplyError`. `digits` pins the unit's fixed width (sign, `digits`
    digits and a point: 5 for the 218's ``±nn.nnn``); None accepts any number. `quantity` is
    "K", "ohm" or "C": a zero K or Ω reading (an open sensor or disabled input on some
    firmware) is `Missing`, a negative one is impossible (`ReplyError`); a K or °C reading
    outside `kelvin_range` is a clamped reading, `Missing`.
    """
    tok = token.strip()
    if _OVERLOAD.fullmatch(tok):
        return Missing(f"overload ({tok}): open sensor, disabled input or out of range")
    if digits is not None:
        body = tok[1:]
        ok = (len(tok) == digits + 2 and tok[:1] in ("+", "-") and body.count(".") == 1
              and body.replace(".", "").isascii() and body.replace(".", "").isdigit())
    else:
        ok = _NUMBER.fullmatch(tok) is not None
    if not ok:
        raise ReplyError(instrument, f"malformed {quantity} reading {token!r}")
    value = float(tok)
    if not math.isfinite(value):
        raise ReplyError(instrument, f"impossible {quantity} reading {token!r}")
    if quantity == "C":
        kelvin = value + 273.15
    else:
        if value == 0.0:
            # An all-zero reading is what some firmware shows for an open sensor or a disabled
            # input; 0 K / 0 Ω is never a real PT100 reading.
            return Missing(f"zero {quantity} reading: open sensor or disabled input")
        if value < 0.0:
            raise ReplyError(instrument, f"impossible {quantity} reading {token!r}")
        kelvin = value if quantity == "K" else None
    if kelvin is not None and kelvin_range is not None:
        lo, hi = kelvin_range
        if not lo <= kelvin <= hi:
            return Missing(f"reading {tok} {quantity} outside {lo:g}–{hi:g} K: a clamped or "
                           "over-range reading (open sensor, wrong curve), not a temperature")
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
    """What the Lake Shore 218 and 224 share: ``*ESR?`` check, `idn`, `ping()`, checked readings.

    The units send nothing back for a rejected command, so `check_set_errors` reads ``*ESR?``
    (command-error bit 32, execution-error bit 16). `model_prefix` is the ``*IDN?`` prefix
    `ping()` expects (``LSCI,MODEL218`` / ``LSCI,MODEL224``). A model supplies `inputs` (the
    input names in ``KRDG? 0`` order), `status_bits` and `input_enabled(label)`.
    """

    name: str
    model_prefix: str
    digits: int | None
    kelvin_range: tuple[float, float]
    inputs: tuple[str, ...]
    status_bits: dict[int, str] = STATUS_BITS_218
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

    # --- checked readings ---------------------------------------------------------------
    def input_status(self, label: str) -> int:
        """Read ``RDGST? <label>``: the input's reading status bits (0 = valid reading)."""
        reply = self.ask(f"RDGST? {label}")  # type: ignore[attr-defined]
        return parse_int_reply(reply, "RDGST?", 0, 255, self.name)

    def input_enabled(self, label: str) -> bool:
        """Whether input `label` is enabled (model-specific query)."""
        raise NotImplementedError

    def _parse(self, token: str, quantity: str) -> float:
        return parse_reading(token, instrument=self.name, quantity=quantity,
                             digits=self.digits, kelvin_range=self.kelvin_range)

    def _judge(self, label: str, token: str, value: float, quantity: str, status: int,
               enabled: bool) -> float:
        """The reading of input `label` given its status and enable state (float or Missing)."""
        if not enabled:
            return Missing(f"input {label} disabled: its reading {token.strip()!r} is not a "
                           "measurement")
        faults = status if quantity in ("K", "C") else status & SENSOR_UNIT_FAULTS
        if faults:
            return Missing(f"input {label} reading {token.strip()!r} with RDGST? {status:03d} "
                           f"({status_text(faults, self.status_bits)})")
        return value

    def read_input(self, label: str, quantity: str) -> float:
        """One checked reading of input `label` ("K", "ohm" or "C"): float or `Missing`.

        Three queries: the reading, ``RDGST?`` and the enable state, in that order.
        """
        command = f"{_QUERIES[quantity]} {label}"
        reply = self.ask(command)  # type: ignore[attr-defined]
        if "," in reply:
            raise ReplyError(self.name, f"unexpected multi-field reply {reply!r} to {command}")
        value = self._parse(reply, quantity)
        status = self.input_status(label)
        enabled = self.input_enabled(label)
        return self._judge(label, reply, value, quantity, status, enabled)

    def read_all(self, quantity: str) -> list[float]:
        """All inputs in one reading query (``KRDG? 0``), each checked with its status.

        1 + 2 × (number of inputs) queries: the bulk reading, then ``RDGST?`` and the enable
        state of every input. A malformed field is a `ReplyError` before any further query.
        """
        command = f"{_QUERIES[quantity]} 0"
        reply = self.ask(command)  # type: ignore[attr-defined]
        fields = reply.split(",")
        if len(fields) != len(self.inputs):
            raise ReplyError(self.name, f"expected {len(self.inputs)} readings to {command}, "
                             f"got {reply!r}")
        values = [self._parse(f, quantity) for f in fields]
        checks = [(self.input_status(label), self.input_enabled(label))
                  for label in self.inputs]
        return [self._judge(label, tok, v, quantity, status, enabled)
                for label, tok, v, (status, enabled) in zip(self.inputs, fields, values, checks)]


class LakeShoreInputMixin:
    """One input of a Lake Shore 218 or 224: checked readings and the reading filter.

    `error_name` is the instrument name a malformed ``FILTER?`` reply's `ReplyError` carries.
    """

    id: int | str
    parent: Any
    error_name: str

    @property
    def temperature(self) -> float:
        """Measure the temperature in K (`Missing` for an open/disabled/out-of-range input)."""
        return self.parent.read_input(str(self.id), "K")

    @property
    def resistance(self) -> float:
        """Measure the sensor reading in Ω (platinum types; `Missing` when there is none)."""
        return self.parent.read_input(str(self.id), "ohm")

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

    # No dynamic properties here: pymeasure's attribute hook only guards their names, and
    # skipping it saves ~0.3 us per attribute access (docs/decisions/0100).
    __getattribute__ = object.__getattribute__

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
    `resistances` read all eight (a list indexed by input − 1). Every reading is checked with
    its input's ``RDGST?`` and ``INPUT?`` and against `kelvin_range` (module docstring).
    `parity` ("O" odd, the manual's; "E" even) and `baudrate` (300, 1200, 9600) reconfigure a
    pyserial port the driver was given; `strict_format` checks the ``±nn.nnn`` width.
    """

    # No dynamic properties here: pymeasure's attribute hook only guards their names, and
    # skipping it saves ~0.3 us per attribute access (docs/decisions/0100).
    __getattribute__ = object.__getattribute__

    write_termination = "\r\n"
    read_termination = "\r\n"
    model_prefix = "LSCI,MODEL218"
    serial_settings = {"baudrate": 9600, "bytesize": 7, "parity": "O", "stopbits": 1,
                       "timeout": 1.0}
    #: Seconds between messages the unit needs (§6.2.5), enforced on real links.
    MESSAGE_INTERVAL = 0.05
    inputs = tuple(str(n) for n in range(1, 9))
    status_bits = STATUS_BITS_218

    input_1 = Instrument.ChannelCreator(LakeShore218Input, 1)
    input_2 = Instrument.ChannelCreator(LakeShore218Input, 2)
    input_3 = Instrument.ChannelCreator(LakeShore218Input, 3)
    input_4 = Instrument.ChannelCreator(LakeShore218Input, 4)
    input_5 = Instrument.ChannelCreator(LakeShore218Input, 5)
    input_6 = Instrument.ChannelCreator(LakeShore218Input, 6)
    input_7 = Instrument.ChannelCreator(LakeShore218Input, 7)
    input_8 = Instrument.ChannelCreator(LakeShore218Input, 8)

    def __init__(self, adapter, name: str = NAME, *, parity: str | None = None,
                 baudrate: int | None = None, strict_format: bool = False,
                 kelvin_range: tuple[float, float] = DEFAULT_KELVIN_RANGE,
                 message_interval: float | None = None, **kwargs):
        if parity is not None and parity not in ("O", "E"):
            raise ValueError(f"parity must be 'O' (odd) or 'E' (even), got {parity!r}")
        if baudrate is not None and baudrate not in (300, 1200, 9600):
            raise ValueError(f"baudrate must be 300, 1200 or 9600, got {baudrate!r}")
        valid_range = check_kelvin_range(kelvin_range)
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
        self.kelvin_range = valid_range
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
        # the adapter's transport write/read, past pymeasure's DEBUG log call on each (decision
        # 0100): a poll of all inputs is 17 queries, once a minute for months
        self.adapter._write(command, **kwargs)
        self._last_message = time.monotonic()

    def read(self, **kwargs) -> str:
        """Read one reply line; an empty reply (nothing before the timeout) is a timeout."""
        reply = self.adapter._read(**kwargs)
        self._last_message = time.monotonic()
        if reply == "":
            raise InstrumentTimeout(self.name)
        return reply

    def input_enabled(self, label: str) -> bool:
        """Read ``INPUT? <label>``: whether the input is scanned."""
        return bool(parse_int_reply(self.ask(f"INPUT? {label}"), "INPUT?", 0, 1, self.name))

    @property
    def temperatures(self) -> list[float]:
        """Measure all eight inputs in K: [input 1, …, input 8], `Missing` where there is none.

        ``KRDG? 0`` then ``RDGST? n`` and ``INPUT? n`` for each input (17 queries, under a
        second at the unit's pacing: fine for a once-a-minute poll).
        """
        return self.read_all("K")

    @property
    def resistances(self) -> list[float]:
        """Measure all eight inputs in sensor units (Ω for platinum), checked as `temperatures`."""
        return self.read_all("ohm")

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
