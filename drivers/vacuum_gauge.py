"""MKS 937B vacuum gauge controller: the chamber pressure of the background-gas row.

The seed clock's bound on the background-gas shift scales with the chamber pressure, 3 nPa
(DOMAIN §1–§2; ≈ 2.3e-11 Torr). Reading that needs an ionisation gauge: a cold cathode
(inverted magnetron, e.g. MKS 423 I-MAG, 1e-11 to 1e-2 Torr) or a hot cathode on a controller
with a computer interface. This driver subclasses pymeasure's `MKS937B` (docs/decisions/0304),
which already has the framing, the address prefix, the six pressure channels, the twelve
setpoint relays, the channel power and the ion gauge status; what the clock adds is below.

Link (937B Operation Manual §9.1, p. 86): RS-232 or RS-485, 9600 (to 115200) baud, 8 data
bits, no parity, 1 stop bit, no handshake. A query is ``@<aaa><Command>?;FF``, a setting
``@<aaa><Command>!<parameter>;FF``; the reply is ``@<aaa>ACK<Response>;FF`` (manual example:
``@003PR1?;FF`` -> ``@003ACK7.602E+2;FF``). The address is 1–253 (default 253); 254 is the
broadcast address, to which the unit answers with its own address (§6.6.3). pymeasure reads
up to ``;`` and then the two bytes ``FF`` (its ``MKSInstrument``); so does this driver, and
it also checks them.

What this subclass changes:

- Error replies ``@<aaa>NAK<code>;FF`` raise `InstrumentError` with ``code="NAK<code>"``
  (pymeasure's ``check_set_errors`` raised a bare ``ValueError`` and left the ``FF`` unread,
  so the next reply came out shifted; its queries returned the text ``NAK160`` as data). The
  codes (MKS 902B/901P manuals of the same protocol; pymeasure for 152): 152 not an ion gauge,
  160 unrecognized message, 169 invalid argument, 172 value out of range, 175 command/query
  character invalid, 180 protected setting. A reply from another address, a missing ``FF``
  or a reply that is neither ACK nor NAK is a `ReplyError`. Replies without the leading ``@``
  are accepted: the LNLS Sirius IOC for real 937Bs notes that units before a 2012 firmware
  update did not send it (github lnls-sirius/streamdevice-ioc,
  ``mks937b/server/protocol/mks937b_pressure.proto``).
- ``ch_n.pressure`` is in Pa (SI, STYLE §2): the controller answers in its front-panel unit,
  so each reading asks ``U?`` and then ``PRn?`` and converts (TORR, mBAR/MBAR, PASCAL,
  MICRON). The driver never changes the unit behind the lab's back.
- A gauge that has no number to give answers a status word (the LNLS IOC's list: ``OFF``,
  ``RP_OFF``, ``CTRL_OFF``, ``PROT_OFF``, ``WAIT``, ``NOGAUGE``, ``MISCONN``, ``OVER``,
  ``ATM``, and ``<1.00E-11`` below range). Each becomes `Missing` with the reason (a NaN,
  decision 0200), never a number; ``WAIT`` is a cold cathode still in its start delay.
  Anything else is a `ReplyError`.
- `unit` accepts either spelling of millibar on the way back (pymeasure and the LNLS IOC
  write ``mBAR``, the MKS 946 manual's system table ``MBAR``).
- On a real serial/VISA link the driver leaves `message_interval` (10 ms) between messages:
  the LNLS IOC waits 7 ms before and after each exchange ("a small delay is needed between
  subsequent commands").
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from pymeasure.adapters import SerialAdapter, VISAAdapter
from pymeasure.instruments import Instrument
from pymeasure.instruments.mksinst.mks937b import (
    MKS937B,
    IonGaugeAndPressureChannel,
    PressureChannel,
)

from ionclock.drivers.common import LinkMixin
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.physics.rtd import Missing

NAME = "MKS 937B vacuum gauge"

#: Pa per unit of each ``U`` setting; `UNIT_WIRE` is how the driver writes each one.
PA_PER_UNIT: dict[str, float] = {"TORR": 101325.0 / 760.0, "MBAR": 100.0, "PASCAL": 1.0,
                                 "MICRON": 101325.0 / 760.0 * 1e-3}
UNIT_WIRE: dict[str, str] = {"TORR": "TORR", "MBAR": "mBAR", "PASCAL": "PASCAL",
                             "MICRON": "MICRON"}

#: NAK codes of the MKS ``@aaa`` protocol (module docstring).
NAK_CODES: dict[str, str] = {
    "8": "zero adjustment at too high pressure",
    "9": "atmospheric adjustment at too low pressure",
    "152": "not an ion gauge",
    "160": "unrecognized message",
    "169": "invalid argument",
    "172": "value out of range",
    "175": "command/query character invalid",
    "180": "protected setting (locked)",
    "195": "control setpoint enabled",
}

#: Status words a gauge answers instead of a pressure, and what they mean.
STATUS_WORDS: dict[str, str] = {
    "OFF": "gauge switched off",
    "RP_OFF": "gauge switched off from the rear panel",
    "CTRL_OFF": "gauge switched off by its control setpoint",
    "PROT_OFF": "gauge switched off by its protect setpoint (pressure too high for it)",
    "WAIT": "gauge starting (cold-cathode start delay): no reading yet",
    "NOGAUGE": "no gauge on this channel",
    "MISCONN": "gauge misconnected",
    "OVER": "above the gauge's range",
    "ATM": "at atmosphere (above the gauge's range)",
}

_REPLY = re.compile(r"@?(\d{3})?(ACK|NAK)(.*)", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)


def unit_name(value: Any) -> str:
    """Return the canonical name (TORR, MBAR, PASCAL, MICRON) of a unit (text or ``Unit``).

    A pymeasure ``Unit`` or any spelling of the four names; anything else is a `ValueError`.
    """
    text = str(getattr(value, "value", value)).strip().upper()
    if text not in PA_PER_UNIT:
        raise ValueError(f"unit must be one of TORR, MBAR, PASCAL, MICRON, got {value!r}")
    return text


def parse_pressure(token: str, unit: str, instrument: str = NAME) -> float:
    """One ``PRn?`` reply in the controller's `unit` -> Pa, or `Missing` for a status word.

    A number is converted to Pa (a negative one, which only a capacitance manometer below its
    zero can give, is `Missing`); ``<limit`` (or ``LO...``) is below the gauge's range; the
    `STATUS_WORDS` are `Missing` with their meaning; anything else is a `ReplyError`.
    """
    tok = token.strip()
    if _NUMBER.fullmatch(tok):
        value = float(tok) * PA_PER_UNIT[unit]
        if not math.isfinite(value):
            raise ReplyError(instrument, f"impossible pressure reply {token!r}")
        if value < 0:
            return Missing(f"negative reading {tok} {unit}: below the sensor's zero")
        return value
    if (tok.startswith("<") and _NUMBER.fullmatch(tok[1:].strip())) or tok.upper().startswith(
            "LO"):
        return Missing(f"below the gauge's range ({tok} {unit}): the pressure is lower than "
                       "its limit")
    word = tok.upper()
    if word in STATUS_WORDS:
        return Missing(f"{STATUS_WORDS[word]} ({tok})")
    raise ReplyError(instrument, f"malformed pressure reply {token!r}")


class _PressureReading:
    """`pressure` in Pa, read through the controller (unit asked each time)."""

    id: int
    parent: Any

    @property
    def pressure(self) -> float:
        """Measure the pressure in Pa (`Missing` when the gauge answers a status word)."""
        return self.parent.read_pressure(self.id)


class PressureChannel937B(_PressureReading, PressureChannel):
    """A pressure channel (A2, B2, C2): `pressure` in Pa, `power_enabled`."""


class IonGaugeChannel937B(_PressureReading, IonGaugeAndPressureChannel):
    """A channel that can hold an ion gauge (A1, B1, C1): also `ion_gauge_status`."""


class VacuumGauge937B(LinkMixin, MKS937B):
    """MKS 937B gauge controller: pressures in Pa, NAK replies as `InstrumentError`.

    Channels ``ch_1`` .. ``ch_6`` are A1, A2, B1, B2, C1, C2 (``ch_1.pressure`` in Pa);
    `pressures` reads all six at once (``PRZ?``). `address` is the controller's RS-485
    address (1–253; 254 broadcasts). `baudrate` (9600–115200) reconfigures a pyserial port
    the driver was given, for a unit set to another rate on its front panel.
    """

    # No dynamic properties here: pymeasure's attribute hook only guards their names, and
    # skipping it saves ~0.3 us per attribute access (docs/decisions/0100).
    __getattribute__ = object.__getattribute__

    write_termination = ";FF"
    read_termination = ";"
    serial_settings = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1,
                       "timeout": 1.0}
    #: Seconds between messages on a real link (module docstring).
    MESSAGE_INTERVAL = 0.01
    BAUDRATES = (9600, 19200, 38400, 57600, 115200)

    ch_1 = Instrument.ChannelCreator(IonGaugeChannel937B, 1)
    ch_2 = Instrument.ChannelCreator(PressureChannel937B, 2)
    ch_3 = Instrument.ChannelCreator(IonGaugeChannel937B, 3)
    ch_4 = Instrument.ChannelCreator(PressureChannel937B, 4)
    ch_5 = Instrument.ChannelCreator(IonGaugeChannel937B, 5)
    ch_6 = Instrument.ChannelCreator(PressureChannel937B, 6)

    def __init__(self, adapter: Any, name: str = NAME, address: int = 253, *,
                 baudrate: int | None = None, message_interval: float | None = None,
                 **kwargs: Any):
        if not (isinstance(address, int) and not isinstance(address, bool)
                and 1 <= address <= 254):
            raise ValueError(f"address must be an integer 1-254, got {address!r}")
        if baudrate is not None and baudrate not in self.BAUDRATES:
            raise ValueError(f"baudrate must be one of {self.BAUDRATES}, got {baudrate!r}")
        super().__init__(adapter, name, address=address, **kwargs)
        connection = getattr(self.adapter, "connection", None)
        if (baudrate is not None and connection is not None and hasattr(connection, "baudrate")
                and connection.baudrate != baudrate):
            connection.baudrate = baudrate
        real_link = isinstance(self.adapter, (SerialAdapter, VISAAdapter))
        self.message_interval = ((self.MESSAGE_INTERVAL if real_link else 0.0)
                                 if message_interval is None else float(message_interval))
        self._last_message = -math.inf

    # --- framing ---------------------------------------------------------------------------
    def write(self, command: str, **kwargs: Any) -> None:
        """Write ``@<aaa><command>;FF``, keeping the spacing a real unit needs."""
        if self.message_interval > 0:
            wait = self._last_message + self.message_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        # Drop anything stale (a late reply after a timeout, line noise) so that the reply
        # read next belongs to this command.
        self.adapter.flush_read_buffer()
        super().write(command)
        self._last_message = time.monotonic()

    def _read_frame(self) -> tuple[str, str]:
        """Read one ``@<aaa>ACK|NAK<data>;FF`` reply: (``"ACK"`` or ``"NAK"``, data)."""
        try:
            raw = Instrument.read(self)
            tail = Instrument.read_bytes(self, 2)
        except UnicodeDecodeError:
            raise ReplyError(self.name, "non-ASCII bytes in the reply") from None
        self._last_message = time.monotonic()
        if raw == "" and not tail:
            raise InstrumentTimeout(self.name)
        if tail != b"FF":
            raise ReplyError(self.name, f"reply {raw!r} not closed by ';FF' (got {tail!r})")
        m = _REPLY.fullmatch(raw)
        if m is None:
            raise ReplyError(self.name, f"malformed reply {raw!r}")
        address = m.group(1)
        if address is not None and self.address != 254 and int(address) != self.address:
            raise ReplyError(self.name, f"reply from address {address}, expected "
                                        f"{self.address:03d}: {raw!r}")
        return m.group(2), m.group(3)

    def read(self, **kwargs: Any) -> str:
        """Read one reply and return its data; a NAK raises `InstrumentError` (``NAKnnn``)."""
        kind, data = self._read_frame()
        if kind == "NAK":
            code = data.strip()
            raise InstrumentError(self.name, NAK_CODES.get(code, "error reply"),
                                  code=f"NAK{code}")
        return data

    def check_set_errors(self) -> list:
        """Read a setting's reply: ACK passes, NAK raises `InstrumentError` (``NAKnnn``)."""
        self.read()
        return []

    # --- readings --------------------------------------------------------------------------
    @property
    def unit(self) -> str:
        """Control the unit of every reading on the unit's side: TORR, MBAR, PASCAL, MICRON.

        `pressure` is in Pa whatever this is; setting it changes the front panel too.
        """
        reply = self.ask("U?").strip().upper()
        if reply not in PA_PER_UNIT:
            raise ReplyError(self.name, f"unknown unit {reply!r}")
        return reply

    @unit.setter
    def unit(self, value: Any) -> None:
        name = unit_name(value)
        self.write(f"U!{UNIT_WIRE[name]}")
        self.check_set_errors()

    def read_pressure(self, channel: int) -> float:
        """Measure channel `channel` (1–6) in Pa: ``U?`` then ``PR<channel>?``."""
        if channel not in range(1, 7):
            raise ValueError(f"channel must be 1-6, got {channel!r}")
        unit = self.unit
        return parse_pressure(self.ask(f"PR{channel}?"), unit, self.name)

    @property
    def pressures(self) -> list[float]:
        """Measure all six channels in Pa (``U?``, ``PRZ?``): [A1, A2, B1, B2, C1, C2]."""
        unit = self.unit
        fields = self.ask("PRZ?").split(",")
        if len(fields) != 6:
            raise ReplyError(self.name, f"expected six readings to PRZ?, got {fields!r}")
        return [parse_pressure(f, unit, self.name) for f in fields]

    @property
    def serial_number(self) -> str:
        """Get the controller's serial number (``SN?``)."""
        return self.ask("SN?").strip()

    def _ping_query(self) -> bool:
        """True if the controller answers ``SN?`` with a serial number."""
        return bool(self.serial_number)
