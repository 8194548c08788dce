"""HighFinesse WS7/WS8 wavemeter: through libwlmData (ctypes) or the TCP text server.

Both front ends offer the same API, in SI units:

- ``frequency(channel)`` (Hz), ``wavelength(channel)`` (m, vacuum),
- ``temperature`` (K), ``pressure`` (Pa), ``exposure(channel, ccd)`` (s),
- ``channel_count``, ``ping()``, ``close()``.

The library answers in THz, nm, °C, mbar and ms; a return ≤ 0 (for temperature and
pressure, ≤ −1000) is an error code. The codes are HighFinesse's ``wlmConst`` constants (as
shipped with the wavemeter software; copies in RIMS-Code/high_finesse_ws6
``src/headers/wlmConst.py``): ErrNoValue 0, ErrNoSignal −1, ErrBadSignal −2, ErrLowSignal −3
(under-exposed), ErrBigSignal −4 (over-exposed), ErrWlmMissing −5, ErrNotAvailable −6,
InfNothingChanged −7, ErrNoPulse −8, ErrChannelNotAvailable −10, ErrDiv0 −13,
ErrOutOfRange −14, ErrUnitNotAvailable −15; temperature and pressure use ErrTemperature
(−1000) plus one of them (ErrTempNotMeasured −1000, ErrTempWlmMissing −1005,
ErrTempNotAvailable −1006). Each raises a subclass of `WavemeterError` (an
`InstrumentError` carrying the code), never a number.

Laser control (the wavemeter's PID option): ``set_frequency_setpoint(port, hz)`` and
``frequency_setpoint(port)`` write and read the regulation course of a PID port in THz (the
deviation unit set to frequency, as Ulm-IQO/qudi-iqo-modules ``high_finesse_pid.py`` does):
the library's ``SetPIDCourseNum(long Port, char* PIDC)`` / ``GetPIDCourseNum``, the TCP
server's ``setPidCourseNum port,course`` / ``getPidCourseNum port`` (highfinesse-net
``protocol.py``). A set answers a wlmConst ``ResERR_*`` result (0 no error; -1 wavemeter
missing, -2 could not set, -3 parameter out of range, -6 not available, -7 busy, -10 channel
not available, ...); anything but 0 raises `WavemeterError` with that code.

`WavemeterWlmData` loads ``libwlmData.so`` (Linux; reaches a Windows-hosted wavemeter
through ``~/.config/HighFinesse/wlmData.ini``) or any library path given.
`WavemeterTCP` speaks HighFinesse's own TCP server, a closed-source bridge that forwards
wlmData calls and their return values (same units, same error codes). Its manual was not at
hand; the only open client of it is quartiq/highfinesse-net (``highfinesse_net/tcp.py``,
``highfinesse_net/protocol.py``), which this driver follows: port 1234, a ``200`` line on
connect, CRLF both ways, commands ``getFrequencyNum ch``, ``getWavelengthNum ch``,
``getExposureNum ch,ccd``, ``getTemperature``, ``getPressure``, ``getChannelCount`` (not the
library's ``GetChannelsCount`` spelling), ``getVersion``. ``getVersion`` answers four
numbers, on one comma-separated line in current servers (highfinesse-net commit 8238cc1,
"new getVersion") and as four lines, one number each, in older ones (commit 9476e49,
"get_version: is four lines"); `version` reads either.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from typing import Any

from pymeasure.instruments import Instrument

from ionclock.drivers.common import LinkMixin, line_exchange
from ionclock.drivers.trap_rf import parse_float
from ionclock.errors import InstrumentError, ReplyError

C_LIGHT = 299792458.0


class WavemeterError(InstrumentError):
    """A wavemeter error return; `code` is the wlmData error number (as text)."""


class NoValueError(WavemeterError):
    """No measurement yet (0)."""


class NoSignalError(WavemeterError):
    """No signal on the channel (-1)."""


class BadSignalError(WavemeterError):
    """A signal that cannot be evaluated (-2)."""


class UnderexposedError(WavemeterError):
    """Under-exposed (-3)."""


class OverexposedError(WavemeterError):
    """Over-exposed (-4)."""


class WavemeterMissingError(WavemeterError):
    """No wavemeter server running / wavemeter missing (-5)."""


class NotAvailableError(WavemeterError):
    """Function not available on this unit (-6)."""


class OutOfRangeError(WavemeterError):
    """Value out of the measurement range (-14)."""


class ChannelNotAvailableError(WavemeterError):
    """The channel is not available on this unit (ErrChannelNotAvailable, -10)."""


ERRORS: dict[int, tuple[type[WavemeterError], str]] = {
    0: (NoValueError, "no value yet"),
    -1: (NoSignalError, "no signal"),
    -2: (BadSignalError, "bad signal"),
    -3: (UnderexposedError, "under-exposed"),
    -4: (OverexposedError, "over-exposed"),
    -5: (WavemeterMissingError, "wavemeter missing"),
    -6: (NotAvailableError, "not available"),
    -7: (NoValueError, "nothing changed since the last read"),
    -8: (BadSignalError, "signal cannot be separated into pulses"),
    -10: (ChannelNotAvailableError, "channel not available"),
    -13: (WavemeterError, "division by zero"),
    -14: (OutOfRangeError, "out of range"),
    -15: (NotAvailableError, "unit not available"),
}
"""wlmConst return codes (see the module docstring) -> (error class, text)."""


SET_ERRORS: dict[int, str] = {
    -1: "wavemeter missing", -2: "could not set", -3: "parameter out of range",
    -4: "out of resources", -5: "internal error", -6: "not available", -7: "busy",
    -8: "not in measurement mode", -9: "only in measurement mode",
    -10: "channel not available", -11: "channel temporarily not available",
}
"""wlmConst ``ResERR_*`` results of the Set... functions (0 is ResERR_NoErr)."""

#: Digits of a regulation course in THz: 1e-9 THz = 1 kHz, below the meter's resolution.
COURSE_DIGITS = 9


def check_set_result(instrument: str, code: int) -> None:
    """Raise `WavemeterError` for a Set... result other than ResERR_NoErr (0)."""
    if code != 0:
        raise WavemeterError(instrument, f"set failed: {SET_ERRORS.get(code, 'error')}",
                             code=str(code))


def _check_setpoint(hz: float) -> float:
    if isinstance(hz, bool) or not isinstance(hz, (int, float)) or not (
            math.isfinite(hz) and 1e12 < hz < 2e15):
        raise ValueError(f"setpoint must be an optical frequency in Hz (1e12..2e15), got {hz!r}")
    return float(hz)


def check_result(instrument: str, value: float, offset: int = 0) -> float:
    """Return `value` if it is a measurement; raise the typed error for an error code.

    `offset` is subtracted first (temperature and pressure codes are ``-1000 + code``).
    """
    if not math.isfinite(value):
        raise ReplyError(instrument, f"non-finite value {value!r}")
    if (offset == 0 and value > 0) or (offset != 0 and value > offset):
        return value
    code = int(round(value - offset))
    cls, text = ERRORS.get(code, (WavemeterError, "error"))
    raise cls(instrument, text, code=str(code))


def _check_channel(channel: int, count: int) -> int:
    if isinstance(channel, bool) or not isinstance(channel, int) or not 1 <= channel <= count:
        raise ValueError(f"channel must be an integer 1..{count}, got {channel!r}")
    return channel


def _check_ccd(ccd: int) -> int:
    if ccd not in (1, 2) or isinstance(ccd, bool):
        raise ValueError(f"ccd must be 1 or 2, got {ccd!r}")
    return ccd


class WavemeterWlmData:
    """HighFinesse wavemeter through libwlmData (ctypes).

    `library` is a path or name (default: ``libwlmData.so`` found by the loader);
    `channels` the number of switch channels (1..8 on a WS8 with switch).
    Extra keyword arguments (VISA terminations the registry passes) are ignored.
    """

    write_termination = ""
    read_termination = ""

    def __init__(self, library: str | None = None, *, channels: int = 8,
                 name: str = "wavemeter", **_ignored: Any):
        self.name = name
        self.channels = channels
        path = library or ctypes.util.find_library("wlmData") or "libwlmData.so"
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as err:
            raise WavemeterMissingError(name, f"cannot load {path!r}: {err}", code="-5") from None
        i32, dbl = ctypes.c_int32, ctypes.c_double
        for fn, restype, argtypes in [
            ("GetFrequencyNum", dbl, [i32, dbl]),
            ("GetWavelengthNum", dbl, [i32, dbl]),
            ("GetTemperature", dbl, [dbl]),
            ("GetPressure", dbl, [dbl]),
            ("GetExposureNum", i32, [i32, i32, i32]),
            ("GetWLMCount", i32, [i32]),
            ("GetChannelsCount", i32, [i32]),
        ]:
            try:
                f = getattr(self.lib, fn)
            except AttributeError:
                raise WavemeterMissingError(name, f"{path!r} lacks {fn}", code="-5") from None
            f.restype, f.argtypes = restype, argtypes

    def frequency(self, channel: int) -> float:
        """Frequency on `channel` in Hz (GetFrequencyNum, THz)."""
        ch = _check_channel(channel, self.channels)
        return check_result(self.name, self.lib.GetFrequencyNum(ch, 0.0)) * 1e12

    def wavelength(self, channel: int) -> float:
        """Vacuum wavelength on `channel` in m (GetWavelengthNum, nm)."""
        ch = _check_channel(channel, self.channels)
        return check_result(self.name, self.lib.GetWavelengthNum(ch, 0.0)) * 1e-9

    @property
    def temperature(self) -> float:
        """Wavemeter internal temperature in K (GetTemperature, °C)."""
        return check_result(self.name, self.lib.GetTemperature(0.0), offset=-1000) + 273.15

    @property
    def pressure(self) -> float:
        """Wavemeter internal pressure in Pa (GetPressure, mbar)."""
        return check_result(self.name, self.lib.GetPressure(0.0), offset=-1000) * 100.0

    def exposure(self, channel: int, ccd: int = 1) -> float:
        """Exposure time of `ccd` (1 or 2) on `channel` in s (GetExposureNum, ms)."""
        ch = _check_channel(channel, self.channels)
        value = self.lib.GetExposureNum(ch, _check_ccd(ccd), 0)
        if value < 0:
            check_result(self.name, float(value))
        return value / 1000.0

    def set_frequency_setpoint(self, port: int, hz: float) -> None:
        """Set the regulation course of PID `port` to `hz` (Hz; SetPIDCourseNum, THz)."""
        p = _check_channel(port, self.channels)
        course = f"{_check_setpoint(hz) / 1e12:.{COURSE_DIGITS}f}".encode("ascii")
        fn = self._pid_function("SetPIDCourseNum")
        check_set_result(self.name, int(fn(p, ctypes.c_char_p(course))))

    def frequency_setpoint(self, port: int) -> float:
        """The regulation course of PID `port` in Hz (GetPIDCourseNum, THz; a number)."""
        p = _check_channel(port, self.channels)
        buf = ctypes.create_string_buffer(1024)
        check_set_result(self.name, int(self._pid_function("GetPIDCourseNum")(p, buf)))
        text = buf.value.decode("ascii", "replace").strip().lstrip("=").strip()
        try:
            return float(text) * 1e12
        except ValueError:
            raise ReplyError(self.name, f"course {text!r} is not a number") from None

    def _pid_function(self, fn: str):
        """A laser-control function of the library (not every unit has the PID option)."""
        try:
            f = getattr(self.lib, fn)
        except AttributeError:
            raise NotAvailableError(self.name, f"the library lacks {fn}", code="-6") from None
        f.restype, f.argtypes = ctypes.c_int32, [ctypes.c_int32, ctypes.c_char_p]
        return f

    @property
    def wlm_count(self) -> int:
        """Number of wavemeter servers running (GetWLMCount; 0: none)."""
        return int(self.lib.GetWLMCount(0))

    @property
    def channel_count(self) -> int:
        """Number of channels of the unit (GetChannelsCount)."""
        n = int(self.lib.GetChannelsCount(0))
        if n < 0:
            check_result(self.name, float(n))
        return n

    def ping(self) -> bool:
        """Return True if a wavemeter server is running (GetWLMCount > 0)."""
        return self.wlm_count > 0

    def close(self) -> None:
        """Nothing to release: the library stays loaded for the process."""


class WavemeterTCP(LinkMixin, Instrument):
    """HighFinesse wavemeter through its TCP text server (port 1234, CRLF, greets ``200``).

    `expect_greeting` reads the ``200`` the server sends on connect (turn it off for a
    link that is already past the greeting).
    """

    write_termination = "\r\n"
    read_termination = "\r\n"

    # No dynamic properties here: pymeasure's attribute hook only guards their names, and
    # skipping it saves ~1 us per attribute access (docs/decisions/0100).
    __getattribute__ = object.__getattribute__

    def __init__(self, adapter: Any, name: str = "wavemeter", *, channels: int = 8,
                 expect_greeting: bool = True, **kwargs: Any):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.channels = channels
        if expect_greeting:
            greeting = self.read().strip()
            if greeting != "200":
                raise ReplyError(self.name, f"expected the greeting '200', got {greeting!r}")
        # one line out, one back, past pymeasure's logging write()/read() (decision 0100):
        # the apparatus's wavemeter role reads each laser every few seconds for months
        self._exchange = line_exchange(self.adapter)

    def _number(self, command: str) -> float:
        return parse_float(self.name, self._exchange(command))

    def frequency(self, channel: int) -> float:
        """Frequency on `channel` in Hz (``getFrequencyNum ch``, THz)."""
        ch = _check_channel(channel, self.channels)
        return check_result(self.name, self._number(f"getFrequencyNum {ch}")) * 1e12

    def wavelength(self, channel: int) -> float:
        """Vacuum wavelength on `channel` in m (``getWavelengthNum ch``, nm)."""
        ch = _check_channel(channel, self.channels)
        return check_result(self.name, self._number(f"getWavelengthNum {ch}")) * 1e-9

    @property
    def temperature(self) -> float:
        """Wavemeter internal temperature in K (``getTemperature``, °C)."""
        return check_result(self.name, self._number("getTemperature"), offset=-1000) + 273.15

    @property
    def pressure(self) -> float:
        """Wavemeter internal pressure in Pa (``getPressure``, mbar)."""
        return check_result(self.name, self._number("getPressure"), offset=-1000) * 100.0

    def exposure(self, channel: int, ccd: int = 1) -> float:
        """Exposure time of `ccd` on `channel` in s (``getExposureNum ch,ccd``, ms)."""
        ch = _check_channel(channel, self.channels)
        value = self._number(f"getExposureNum {ch},{_check_ccd(ccd)}")
        if value < 0:
            check_result(self.name, value)
        return value / 1000.0

    def set_frequency_setpoint(self, port: int, hz: float) -> None:
        """Set the regulation course of PID `port` to `hz` (Hz; ``setPidCourseNum p,THz``)."""
        p = _check_channel(port, self.channels)
        reply = self.ask(f"setPidCourseNum {p},{_check_setpoint(hz) / 1e12:.{COURSE_DIGITS}f}")
        value = parse_float(self.name, reply)
        if value != int(value):
            raise ReplyError(self.name, f"bad set result {reply!r}")
        check_set_result(self.name, int(value))

    def frequency_setpoint(self, port: int) -> float:
        """The regulation course of PID `port` in Hz (``getPidCourseNum p``, THz)."""
        p = _check_channel(port, self.channels)
        value = self._number(f"getPidCourseNum {p}")
        if value < 0:
            check_set_result(self.name, int(value))
        if value == 0:
            raise NoValueError(self.name, f"no regulation course on port {p}", code="0")
        return value * 1e12

    @property
    def channel_count(self) -> int:
        """Number of channels (``getChannelCount``, highfinesse-net ``get_channel_count``)."""
        value = self._number("getChannelCount")
        if value < 0 or value != int(value):
            raise ReplyError(self.name, f"bad channel count {value!r}")
        return int(value)

    @property
    def version(self) -> tuple[int, ...]:
        """(device type, version, revision, software) from ``getVersion``.

        One comma-separated line (current servers) or four lines (older servers).
        """
        reply = self.ask("getVersion").strip()
        if "," not in reply:
            reply = ",".join([reply] + [self.read().strip() for _ in range(3)])
        try:
            parts = tuple(int(p) for p in reply.split(","))
        except ValueError:
            raise ReplyError(self.name, f"bad version reply {reply!r}") from None
        if len(parts) != 4:
            raise ReplyError(self.name, f"bad version reply {reply!r}")
        return parts

    def _ping_query(self) -> bool:
        """True if the server answers ``getVersion`` with a well-formed version."""
        self.version  # noqa: B018
        return True


def frequency_to_wavelength(frequency_hz: float) -> float:
    """Vacuum wavelength (m) of a frequency (Hz)."""
    return C_LIGHT / frequency_hz
