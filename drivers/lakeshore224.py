"""Lake Shore Model 224 twelve-input temperature monitor, as the clock uses it.

pymeasure's `LakeShore224` (inputs ``input_A``, ``input_B``, ``input_C1``..``input_D5`` with
``kelvin``, ``celsius``, ``sensor``) is the base. The clock needs more, added here:
readings that turn overload / open-sensor replies into `Missing` and garbled replies into
`ReplyError` (a bare ``float`` of a garbled line is never a reading), the sensor set-up
(``INTYPE``, ``INCRV``, ``FILTER``), ``*ESR?`` checks after settings (the unit sends nothing for a
rejected command), `ping()`, `close()` and the link attributes the registry reads.

Link: Ethernet (TCP port 7777), USB (virtual serial, 57600 baud 7O1) or GPIB; CR LF both ways.
Readings (KRDG?/SRDG?) are fixed-width ``+nnnnnn`` — a sign, six digits and a floating decimal
point — checked strictly unless `strict_format=False`.
``INTYPE <input>,<type>,<autorange>,<range>,<compensation>,<units>``: type 0 disabled,
1 diode, 2 platinum RTD, 3 NTC RTD; units 1 K, 2 °C, 3 sensor.
"""

from __future__ import annotations

from pymeasure.instruments import Instrument
from pymeasure.instruments.generic_types import SCPIUnknownMixin
from pymeasure.instruments.lakeshore.lakeshore224 import LakeShore224
from pymeasure.instruments.lakeshore.lakeshore_base import LakeShoreTemperatureChannel

from ionclock.drivers.lakeshore218 import (
    LakeShoreCommonMixin,
    LakeShoreInputMixin,
    parse_int_reply,
    parse_reading,
)
from ionclock.errors import InstrumentTimeout, ReplyError

NAME = "Lake Shore 224"
INPUTS: tuple[str, ...] = ("A", "B", "C1", "C2", "C3", "C4", "C5", "D1", "D2", "D3", "D4", "D5")
#: Standard curve number of the PT100 curve in the 224's curve table.
PT100_CURVE = 6
#: INTYPE sensor types.
SENSOR_TYPES: dict[str, int] = {"disabled": 0, "diode": 1, "platinum": 2, "ntc": 3}


class LakeShore224Input(LakeShoreInputMixin, LakeShoreTemperatureChannel):
    """One input of the Lake Shore 224 with the clock's checked readings."""

    error_name = NAME

    @property
    def status(self) -> int:
        """Get the reading status bits (0 = valid)."""
        return parse_int_reply(self.ask("RDGST? {ch}"), "RDGST", 0, 255, NAME)

    @property
    def sensor_type(self) -> str:
        """Get the sensor type ("disabled", "diode", "platinum", "ntc")."""
        fields = self.ask("INTYPE? {ch}").split(",")
        if len(fields) != 5:
            raise ReplyError(NAME, f"malformed INTYPE? reply {','.join(fields)!r}")
        code = parse_int_reply(fields[0], "INTYPE type", 0, 3, NAME)
        return next(k for k, v in SENSOR_TYPES.items() if v == code)

    @property
    def enabled(self) -> bool:
        """Get whether the input is enabled (its sensor type is not "disabled")."""
        return self.sensor_type != "disabled"

    def disable(self) -> None:
        """Disable the input (INTYPE type 0)."""
        self.write("INTYPE {ch},0")
        self.parent.check_set_errors()

    def configure_pt100(self) -> None:
        """Set the input up for a PT100: platinum RTD, autorange, compensation, kelvin, curve."""
        self.write("INTYPE {ch},2,1,0,1,1")
        self.parent.check_set_errors()
        self.curve = PT100_CURVE

    @property
    def curve(self) -> int:
        """Control the input's curve number (1–59; 6 = PT100)."""
        return parse_int_reply(self.ask("INCRV? {ch}"), "INCRV", 0, 59, NAME)

    @curve.setter
    def curve(self, number: int) -> None:
        if not (isinstance(number, int) and 1 <= number <= 59):
            raise ValueError(f"curve must be an integer 1–59, got {number!r}")
        self.write(f"INCRV {{ch}},{number}")
        self.parent.check_set_errors()


class LakeShore224Clock(LakeShoreCommonMixin, LakeShore224):
    """Lake Shore 224 for the clock: checked readings, PT100 set-up, ping/close (CR LF)."""

    write_termination = "\r\n"
    read_termination = "\r\n"
    model_prefix = "LSCI,MODEL224"
    serial_settings = {"baudrate": 57600, "bytesize": 7, "parity": "O", "stopbits": 1,
                       "timeout": 1.0}

    input_A = Instrument.ChannelCreator(LakeShore224Input, "A")
    input_B = Instrument.ChannelCreator(LakeShore224Input, "B")
    input_C1 = Instrument.ChannelCreator(LakeShore224Input, "C1")
    input_C2 = Instrument.ChannelCreator(LakeShore224Input, "C2")
    input_C3 = Instrument.ChannelCreator(LakeShore224Input, "C3")
    input_C4 = Instrument.ChannelCreator(LakeShore224Input, "C4")
    input_C5 = Instrument.ChannelCreator(LakeShore224Input, "C5")
    input_D1 = Instrument.ChannelCreator(LakeShore224Input, "D1")
    input_D2 = Instrument.ChannelCreator(LakeShore224Input, "D2")
    input_D3 = Instrument.ChannelCreator(LakeShore224Input, "D3")
    input_D4 = Instrument.ChannelCreator(LakeShore224Input, "D4")
    input_D5 = Instrument.ChannelCreator(LakeShore224Input, "D5")

    def __init__(self, adapter, name: str = NAME, *, strict_format: bool = True, **kwargs):
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        # Skip SCPIUnknownMixin's warning: the 224 speaks the common IEEE-488.2 commands
        # (*IDN?, *ESR?, *CLS, *RST) and no SCPI tree; nothing here relies on SCPI.
        super(SCPIUnknownMixin, self).__init__(adapter, name, **kwargs)
        self.digits = 6 if strict_format else None

    def read(self, **kwargs) -> str:
        """Read one reply line; an empty reply (nothing before the timeout) is a timeout."""
        reply = super().read(**kwargs)
        if reply == "":
            raise InstrumentTimeout(self.name)
        return reply

    def input(self, name: str) -> LakeShore224Input:
        """Return input `name` ("A", "B", "C1".."C5", "D1".."D5")."""
        if name not in INPUTS:
            raise ValueError(f"input must be one of {', '.join(INPUTS)}, got {name!r}")
        return getattr(self, f"input_{name}")

    def _read_all(self, command: str, quantity: str) -> dict[str, float]:
        reply = self.ask(command)
        fields = reply.split(",")
        if len(fields) != len(INPUTS):
            raise ReplyError(self.name, f"expected {len(INPUTS)} readings to {command}, "
                             f"got {reply!r}")
        return {name: parse_reading(f, instrument=self.name, quantity=quantity,
                                    digits=self.digits) for name, f in zip(INPUTS, fields)}

    @property
    def temperatures(self) -> dict[str, float]:
        """Measure all twelve inputs in K in one query ({input: K or `Missing`})."""
        return self._read_all("KRDG? 0", "K")

    @property
    def resistances(self) -> dict[str, float]:
        """Measure all twelve inputs in sensor units (Ω for platinum) in one query."""
        return self._read_all("SRDG? 0", "ohm")

    def configure_pt100(self, inputs=INPUTS) -> None:
        """Set up each of `inputs` for a PT100 (platinum RTD, kelvin, PT100 curve)."""
        for name in inputs:
            self.input(name)  # validate them all before writing anything
        for name in inputs:
            self.input(name).configure_pt100()
