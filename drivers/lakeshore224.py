"""Lake Shore Model 224 twelve-input temperature monitor, as the clock uses it.

pymeasure's `LakeShore224` (inputs ``input_A``, ``input_B``, ``input_C1``..``input_D5`` with
``kelvin``, ``celsius``, ``sensor``) is the base. The clock needs more, added here:
checked readings (``kelvin``, ``celsius`` and ``sensor`` are checked too, so pymeasure's names
cannot bypass the checks), the sensor set-up (``INTYPE``, ``INCRV``, ``FILTER``), ``*ESR?``
checks after settings (the unit sends nothing for a rejected command), `ping()`, `close()` and
the link attributes the registry reads.

Link: Ethernet (TCP port 7777), USB (virtual serial, 57600 baud 7O1) or GPIB; CR LF both ways.

Readings (KRDG?/SRDG?/CRDG?): any decimal number text. Lake Shore's own driver
(lakeshorecryotronics/python-driver, ``lakeshore/model_224.py`` ``get_kelvin_reading``) does
``float(reply)`` and its tests (``tests/test_224.py``) feed replies such as ``567.8``,
``123.4`` and ``32.0``; the unit's fixed-width form (``+077.123``: sign, six digits, point) is
checked only with ``strict_format=True``. Garbage is a `ReplyError`.

Each reading comes with its input's ``RDGST?`` (python-driver ``Model224ReadingStatusRegister``:
1 invalid reading, 16 temperature under range, 32 temperature over range, 64 sensor units zero,
128 sensor units over range) and its ``INTYPE?`` (type 0 = disabled), and is checked against
`kelvin_range`; a reading that fails is `Missing` (decision 0200), never a number.

``INTYPE <input>,<type>,<autorange>,<range>,<compensation>,<units>``: type 0 disabled,
1 diode, 2 platinum RTD, 3 NTC RTD; units 1 K, 2 °C, 3 sensor (python-driver
``Model224InputSensorType``/``Model224InputSensorUnits``). ``INCRV <input>,<curve>``: a curve
that does not fit the input's sensor type is refused *silently* — the input is left on curve 0
(none). Lake Shore's driver (``Model224.set_input_curve``) reads ``INCRV?`` back and raises
"The specified curve type does not match the configured input type"; the Model 346 manual
(manuals.lakeshore.com, Curve Related Commands) states the rule: "a curve that matches the
configured sensor type can be assigned ... non-matching curves are rejected". So the `curve`
setter here reads ``INCRV?`` back and raises `InstrumentError` unless the unit took the curve.
"""

from __future__ import annotations

from pymeasure.instruments import Instrument
from pymeasure.instruments.generic_types import SCPIUnknownMixin
from pymeasure.instruments.lakeshore.lakeshore224 import LakeShore224
from pymeasure.instruments.lakeshore.lakeshore_base import LakeShoreTemperatureChannel

from ionclock.drivers.lakeshore218 import (
    DEFAULT_KELVIN_RANGE,
    LakeShoreCommonMixin,
    LakeShoreInputMixin,
    check_kelvin_range,
    parse_int_reply,
)
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError

NAME = "Lake Shore 224"
INPUTS: tuple[str, ...] = ("A", "B", "C1", "C2", "C3", "C4", "C5", "D1", "D2", "D3", "D4", "D5")
#: Standard curve number of the PT100 curve in the 224's curve table.
PT100_CURVE = 6
#: INTYPE sensor types.
SENSOR_TYPES: dict[str, int] = {"disabled": 0, "diode": 1, "platinum": 2, "ntc": 3}
#: RDGST? bits of the Model 224 (python-driver ``Model224ReadingStatusRegister``).
STATUS_BITS_224: dict[int, str] = {1: "invalid reading", 16: "temperature under range",
                                   32: "temperature over range", 64: "sensor units zero",
                                   128: "sensor units over range"}


def parse_intype(reply: str) -> tuple[int, ...]:
    """Parse an ``INTYPE?`` reply: (type, autorange, range, compensation, units)."""
    fields = reply.split(",")
    if len(fields) != 5:
        raise ReplyError(NAME, f"malformed INTYPE? reply {reply!r}")
    limits = ((0, 3), (0, 1), (0, 8), (0, 1), (1, 3))
    return tuple(parse_int_reply(f, "INTYPE?", lo, hi, NAME)
                 for f, (lo, hi) in zip(fields, limits))


class LakeShore224Input(LakeShoreInputMixin, LakeShoreTemperatureChannel):
    """One input of the Lake Shore 224 with the clock's checked readings."""

    error_name = NAME

    @property
    def kelvin(self) -> float:
        """Measure the temperature in K, checked (the same as `temperature`)."""
        return self.parent.read_input(self.id, "K")

    @property
    def celsius(self) -> float:
        """Measure the temperature in °C, checked like `temperature`."""
        return self.parent.read_input(self.id, "C")

    @property
    def sensor(self) -> float:
        """Measure the sensor reading in sensor units, checked (the same as `resistance`)."""
        return self.parent.read_input(self.id, "ohm")

    @property
    def status(self) -> int:
        """Get the reading status bits (0 = valid)."""
        return self.parent.input_status(self.id)

    @property
    def sensor_type(self) -> str:
        """Get the sensor type ("disabled", "diode", "platinum", "ntc")."""
        code = parse_intype(self.ask("INTYPE? {ch}"))[0]
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
        """Control the input's curve number (1–59; 6 = PT100; reads 0 for none).

        Setting reads ``INCRV?`` back: the unit refuses a curve that does not fit the input's
        sensor type without an error (it leaves curve 0); that is an `InstrumentError` here.
        """
        return parse_int_reply(self.ask("INCRV? {ch}"), "INCRV", 0, 59, NAME)

    @curve.setter
    def curve(self, number: int) -> None:
        if not (isinstance(number, int) and 1 <= number <= 59):
            raise ValueError(f"curve must be an integer 1–59, got {number!r}")
        self.write(f"INCRV {{ch}},{number}")
        self.parent.check_set_errors()
        taken = self.curve
        if taken != number:
            raise InstrumentError(
                NAME, f"input {self.id} did not take curve {number} (INCRV? reads {taken}): "
                "the curve does not fit the input's sensor type (INTYPE)")


class LakeShore224Clock(LakeShoreCommonMixin, LakeShore224):
    """Lake Shore 224 for the clock: checked readings, PT100 set-up, ping/close (CR LF).

    `strict_format` checks the fixed ``±nnnnnn.`` width; `kelvin_range` (K) is the range
    outside which a kelvin reading is a clamp, not a temperature.
    """

    write_termination = "\r\n"
    read_termination = "\r\n"
    model_prefix = "LSCI,MODEL224"
    serial_settings = {"baudrate": 57600, "bytesize": 7, "parity": "O", "stopbits": 1,
                       "timeout": 1.0}
    inputs = INPUTS
    status_bits = STATUS_BITS_224

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

    def __init__(self, adapter, name: str = NAME, *, strict_format: bool = False,
                 kelvin_range: tuple[float, float] = DEFAULT_KELVIN_RANGE, **kwargs):
        valid_range = check_kelvin_range(kelvin_range)
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        # Skip SCPIUnknownMixin's warning: the 224 speaks the common IEEE-488.2 commands
        # (*IDN?, *ESR?, *CLS, *RST) and no SCPI tree; nothing here relies on SCPI.
        super(SCPIUnknownMixin, self).__init__(adapter, name, **kwargs)
        self.digits = 6 if strict_format else None
        self.kelvin_range = valid_range

    def read(self, **kwargs) -> str:
        """Read one reply line; an empty reply (nothing before the timeout) is a timeout."""
        reply = super().read(**kwargs)
        if reply == "":
            raise InstrumentTimeout(self.name)
        return reply

    def input_enabled(self, label: str) -> bool:
        """Read ``INTYPE? <label>``: enabled unless the sensor type is 0 (disabled)."""
        return parse_intype(self.ask(f"INTYPE? {label}"))[0] != 0

    def input(self, name: str) -> LakeShore224Input:
        """Return input `name` ("A", "B", "C1".."C5", "D1".."D5")."""
        if name not in INPUTS:
            raise ValueError(f"input must be one of {', '.join(INPUTS)}, got {name!r}")
        return getattr(self, f"input_{name}")

    @property
    def temperatures(self) -> dict[str, float]:
        """Measure all twelve inputs in K ({input: K or `Missing`}), each checked.

        ``KRDG? 0`` then ``RDGST?`` and ``INTYPE?`` of each input (25 queries).
        """
        return dict(zip(INPUTS, self.read_all("K")))

    @property
    def resistances(self) -> dict[str, float]:
        """Measure all twelve inputs in sensor units (Ω for platinum), checked."""
        return dict(zip(INPUTS, self.read_all("ohm")))

    def configure_pt100(self, inputs=INPUTS) -> None:
        """Set up each of `inputs` for a PT100 (platinum RTD, kelvin, PT100 curve)."""
        for name in inputs:
            self.input(name)  # validate them all before writing anything
        for name in inputs:
            self.input(name).configure_pt100()
