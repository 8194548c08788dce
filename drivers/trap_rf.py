"""Trap RF chain: the SRS SG380 source and the DMM that reads the rectified RF pickoff.

The trap RF (24.801 MHz, DOMAIN §1) comes from an SRS SG38x synthesiser's type-N output;
a capacitive divider at the trap, rectified, gives a DC voltage proportional to the RF
amplitude at the electrodes, which a bench DMM reads. The RF stabiliser
(ionclock.servo.rf_stabiliser) closes the loop between the two.

Both drivers reuse pymeasure's classes (`SG380`, `Agilent34410A`) and add what the clock
needs: validated SI/dBm properties, the device's error query after every set, typed
errors for garbled replies, `ping()` and `close()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pymeasure.instruments.agilent import Agilent34410A
from pymeasure.instruments.generic_types import SCPIUnknownMixin
from pymeasure.instruments.instrument import Instrument
from pymeasure.instruments.srs import SG380
from pymeasure.instruments.validators import strict_range

from ionclock.drivers.common import LinkMixin, ScpiErrorQueueMixin
from ionclock.errors import InstrumentError, ReplyError

#: Reference impedance of the source output (Ω) for dBm <-> volts.
Z0_OHM = 50.0


def dbm_to_vrms(power_dbm: float, z0: float = Z0_OHM) -> float:
    """RMS voltage (V) of `power_dbm` into `z0` ohms: V = sqrt(z0 · 1 mW · 10^(P/10))."""
    return math.sqrt(z0 * 1e-3 * 10.0 ** (power_dbm / 10.0))


def vrms_to_dbm(vrms: float, z0: float = Z0_OHM) -> float:
    """Power (dBm) of an RMS voltage `vrms` (V) into `z0` ohms."""
    if not vrms > 0:
        raise ValueError(f"RMS voltage must be positive, got {vrms!r}")
    return 10.0 * math.log10(vrms * vrms / z0 / 1e-3)


def parse_float(instrument: str, text: str) -> float:
    """One finite float from a reply, else `ReplyError` (never a wrong number)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ReplyError(instrument, f"cannot parse {text!r} as a number") from None
    if not math.isfinite(value):
        raise ReplyError(instrument, f"non-finite reply {text!r}")
    return value


def parse_int(instrument: str, text: str) -> int:
    """One integer from a reply, else `ReplyError`."""
    t = text.strip()
    if not t or not t.lstrip("+-").isdigit():
        raise ReplyError(instrument, f"cannot parse {text!r} as an integer")
    return int(t)


class StrictRepliesMixin:
    """Make pymeasure's `values()` strict: a reply element that does not cast is a ReplyError.

    pymeasure keeps an uncastable element as a string, so a garbled ``"1.2#3"`` would reach
    the caller as text where a float was promised. Here it raises `ReplyError` naming the
    instrument instead. Also maps a transport timeout to `InstrumentTimeout` unchanged
    (it already is one for the loopback link; pyvisa's own timeout error propagates).
    """

    name: str

    def values(self, command: str, separator: str = ",", cast: Callable[[str], Any] = float,
               preprocess_reply: Callable[[str], str] | None = None, maxsplit: int = -1,
               **kwargs: Any) -> list:
        response = self.ask(command, **kwargs).strip()  # type: ignore[attr-defined]
        if callable(preprocess_reply):
            response = preprocess_reply(response)
        out = []
        for item in response.split(separator, maxsplit=maxsplit):
            if cast is float:
                out.append(parse_float(self.name, item))
            elif cast is int:
                out.append(parse_int(self.name, item))
            elif cast is bool:
                out.append(bool(parse_float(self.name, item)))
            else:
                try:
                    out.append(cast(item))
                except Exception:
                    raise ReplyError(self.name, f"cannot parse {item!r}") from None
        return out


class TrapRFSource(LinkMixin, StrictRepliesMixin, SG380):
    """SRS SG382/384/386 RF source for the trap drive (type-N output, GPIB/LAN/RS-232).

    Commands used (SG380 manual, "Remote programming"): ``FREQ`` (Hz), ``AMPR`` (type-N
    amplitude, dBm), ``ENBR`` (type-N output enable), ``LERR?`` (last error; 0 = none),
    ``*IDN?``. LAN port 5025; the unit accepts CR or LF and ends replies with CR LF.

    `max_amplitude_dbm` is the lab's safety ceiling (the trap and its resonator would be
    damaged above it): no call can send a larger ``AMPR``. The hardware ceiling is
    +16.5 dBm (type-N, below 4 GHz).

    `sg_model` ("SG382", "SG384" or "SG386") sets the frequency range the unit accepts:
    2.025, 4.05 or 6.075 GHz (SG380 manual, frequency ranges by model); a larger
    ``FREQ`` raises `ValueError` before the wire instead of error 10 from the unit.
    """

    write_termination = "\n"
    read_termination = "\r\n"

    HW_MIN_DBM = -110.0
    HW_MAX_DBM = 16.5
    #: Highest frequency of each model (Hz; type-N output).
    MAX_FREQUENCY_HZ = {"SG382": 2.025e9, "SG384": 4.05e9, "SG386": 6.075e9}

    frequency = Instrument.control(
        "FREQ?", "FREQ%.6f",
        """Control the RF frequency in Hz (float, 0 to the model's maximum).""",
        validator=strict_range, values=(0.0, 4.05e9), dynamic=True, check_set_errors=True)

    amplitude_dbm = Instrument.control(
        "AMPR?", "AMPR%.2f",
        """Control the type-N output amplitude in dBm (float, within the safety limits).""",
        validator=strict_range, values=(HW_MIN_DBM, HW_MAX_DBM), dynamic=True,
        check_set_errors=True)

    def __init__(self, adapter: Any, name: str = "SG380 trap RF", *,
                 min_amplitude_dbm: float = HW_MIN_DBM,
                 max_amplitude_dbm: float = HW_MAX_DBM, sg_model: str = "SG384",
                 **kwargs: Any):
        if sg_model not in self.MAX_FREQUENCY_HZ:
            raise ValueError(
                f"sg_model must be one of {sorted(self.MAX_FREQUENCY_HZ)}, got {sg_model!r}")
        lo, hi = float(min_amplitude_dbm), float(max_amplitude_dbm)
        if not (self.HW_MIN_DBM <= lo <= hi <= self.HW_MAX_DBM):
            raise ValueError(
                f"amplitude limits ({lo}, {hi}) dBm must lie within "
                f"({self.HW_MIN_DBM}, {self.HW_MAX_DBM}) and be ordered")
        # Skip SCPIUnknownMixin's FutureWarning: the SG380 speaks the IEEE-488.2 common
        # commands but reports errors through LERR?, which check_errors handles below.
        super(SCPIUnknownMixin, self).__init__(adapter, name, **kwargs)
        self.amplitude_dbm_values = (lo, hi)
        self._amplitude_limits = (lo, hi)
        self.sg_model = sg_model
        self.frequency_values = (0.0, self.MAX_FREQUENCY_HZ[sg_model])

    @property
    def output_enabled(self) -> bool:
        """Control whether the type-N output is on (bool; ``ENBR?`` / ``ENBR0|1``)."""
        code = parse_int(self.name, self.ask("ENBR?"))
        if code not in (0, 1):
            raise ReplyError(self.name, f"ENBR? must answer 0 or 1, got {code}")
        return bool(code)

    @output_enabled.setter
    def output_enabled(self, on: bool) -> None:
        if not isinstance(on, (bool, int)) or on not in (0, 1):
            raise ValueError(f"output_enabled must be True or False, got {on!r}")
        self.write(f"ENBR{int(on)}")
        self.check_set_errors()

    @property
    def amplitude_limits_dbm(self) -> tuple[float, float]:
        """The (low, high) safety limits of `amplitude_dbm` in dBm."""
        return self._amplitude_limits

    @property
    def amplitude_vrms(self) -> float:
        """Output amplitude in V rms into 50 Ω (from ``AMPR?``)."""
        return dbm_to_vrms(self.amplitude_dbm)

    @amplitude_vrms.setter
    def amplitude_vrms(self, vrms: float) -> None:
        self.amplitude_dbm = round(vrms_to_dbm(vrms), 2)

    def check_errors(self) -> list:
        """Raise `InstrumentError` if ``LERR?`` reports an error (code != 0)."""
        code = parse_int(self.name, self.ask("LERR?"))
        if code != 0:
            raise InstrumentError(self.name, "command rejected", code=str(code))
        return []

    def check_set_errors(self) -> list:
        return self.check_errors()

    def check_get_errors(self) -> list:
        return self.check_errors()

    def _ping_query(self) -> bool:
        """True if the unit answers ``*IDN?`` with an SRS SG38x identity."""
        return "SG38" in self.ask("*IDN?")


class PickoffDMM(ScpiErrorQueueMixin, LinkMixin, StrictRepliesMixin, Agilent34410A):
    """Keysight 34465A / 34410A (and compatible) reading the rectified RF pickoff (V DC).

    ``configure_voltage_dc(range, nplc)`` sets ``CONF:VOLT:DC <range>`` and
    ``VOLT:DC:NPLC <n>`` once; `reading` then triggers and returns one reading (``READ?``).
    A reading of ±9.9e37 is the unit's overload marker: it raises `InstrumentError`
    (code ``overload``), never a number. Errors from ``SYST:ERR?`` raise `InstrumentError`.
    LAN port 5025, LF-terminated.
    """

    # No dynamic properties here: pymeasure's attribute hook only guards their names, and
    # skipping it saves ~0.3 us per attribute access (docs/decisions/0100).
    __getattribute__ = object.__getattribute__

    write_termination = "\n"
    read_termination = "\n"
    # One queue entry read per check: a single rejected command queues a single error.
    max_errors_read = 1

    RANGES_V = (0.1, 1.0, 10.0, 100.0, 1000.0)
    # 34465A without the DIG option; 0.06 also exists on the 34410A (Truevolt guide, NPLC).
    NPLCS = (0.02, 0.06, 0.2, 1.0, 10.0, 100.0)

    def __init__(self, adapter: Any, name: str = "pickoff DMM", **kwargs: Any):
        # Agilent34410A derives from SCPIUnknownMixin (FutureWarning); the 34410A/34465A
        # are SCPI instruments, so initialise through SCPIMixin directly.
        super(SCPIUnknownMixin, self).__init__(adapter, name, **kwargs)

    def _checked_reading(self, command: str) -> float:
        value = parse_float(self.name, self.ask(command))
        if abs(value) >= 9.8e37:
            raise InstrumentError(self.name, "input overload", code="overload")
        return value

    @property
    def reading(self) -> float:
        """Trigger and return one reading with the present configuration (V, ``READ?``)."""
        return self._checked_reading("READ?")

    @property
    def voltage_dc(self) -> float:
        """Measure DC voltage with default range/resolution (V, ``MEAS:VOLT:DC? DEF,DEF``)."""
        return self._checked_reading("MEAS:VOLT:DC? DEF,DEF")

    def configure_voltage_dc(self, range_v: float = 10.0, nplc: float = 10.0) -> None:
        """Configure DC volts on a fixed range (V) and integration time (power-line cycles)."""
        if range_v not in self.RANGES_V:
            raise ValueError(f"range_v must be one of {self.RANGES_V}, got {range_v!r}")
        if nplc not in self.NPLCS:
            raise ValueError(f"nplc must be one of {self.NPLCS}, got {nplc!r}")
        self.write(f"CONF:VOLT:DC {range_v:g}")
        self.write(f"VOLT:DC:NPLC {nplc:g}")
        self.check_errors()

    def _ping_query(self) -> bool:
        """True if the unit answers ``*IDN?`` (any non-empty identity)."""
        return bool(self.ask("*IDN?").strip())
