"""Twin of the HighFinesse wavemeter's TCP server, reading the world's lasers.

The server is HighFinesse's own closed-source bridge in front of the wlmData library: each
command names a wlmData function and the reply is that function's return value, so units and
error codes are wlmData's. Its manual was not at hand; the grammar follows the one open
client of it, quartiq/highfinesse-net (``highfinesse_net/tcp.py``: port 1234, a ``200``
line on connect, CRLF both ways; ``highfinesse_net/protocol.py``: ``getFrequencyNum ch``
(THz), ``getWavelengthNum ch`` (nm, vacuum), ``getExposureNum ch,ccd`` (ms, integer),
``getTemperature`` (°C), ``getPressure`` (mbar), ``getChannelCount`` (an integer),
``getVersion``). Error codes are the wlmConst values (HighFinesse's header; copy in
RIMS-Code/high_finesse_ws6 ``src/headers/wlmConst.py``): ErrNoValue 0, ErrNoSignal -1,
ErrBadSignal -2, ErrLowSignal -3, ErrBigSignal -4, ErrWlmMissing -5, ErrNotAvailable -6,
InfNothingChanged -7, ErrNoPulse -8, ErrChannelNotAvailable -10, ErrDiv0 -13,
ErrOutOfRange -14, ErrUnitNotAvailable -15; temperature/pressure ErrTemperature -1000 plus
one of them.

Option `version_reply` (sources disagree by server version): ``"line"`` answers
``getVersion`` with one line ``type,version,revision,software`` (highfinesse-net commit
8238cc1, "new getVersion"); ``"lines"`` with four lines, one number each (commit 9476e49,
"get_version: is four lines", the older server).

The twin's own choices (no source says): the number of decimals in replies; an unknown
command is answered ``-6`` (ErrNotAvailable); a switch channel with no laser assigned
answers ErrNoSignal (-1), as an unlit fibre would.

Per-channel laser frequencies come from ``world.laser_frequency(name)`` (Hz) where the world
has it; otherwise from this module's `LaserBank`: nominal frequencies of the clock's lasers
with a seeded random-walk drift per laser (SimPy time where the world has ``env``) and the
wavemeter's own reading noise. Replies follow the server: one number per line, CRLF,
frequency in THz, wavelength in nm (vacuum), temperature in °C, pressure in mbar, exposure in
ms, and the wlmData error codes for a channel without light (-1), over-exposure (-4), etc.

Laser control (the wavemeter's PID option; docs/decisions/1200): ``setPidCourseNum port,course``
sets the regulation course of `port` and answers a wlmData set result (ResERR_NoErr 0,
ResERR_ParmOutOfRange -3, ResERR_ChannelNotAvailable -10; ResERR constants as in HighFinesse's
wlmConst header); ``getPidCourseNum port`` answers the course (highfinesse-net
``protocol.py``: ``set_pid_course_num``/``get_pid_course_num``; the library's
``SetPIDCourseNum(long Port, char* PIDC)``, e.g. Ulm-IQO/qudi-iqo-modules
``high_finesse_pid.py``, which writes the setpoint in THz with the deviation unit set to
frequency). The course is taken as a number in THz, optionally after ``=``; the library's
course *expressions* (``"619.1 + 0.001 * sawtooth(t/10)"``) are not modelled and answer -3.
The twin's choice (no source says): regulation port n drives the laser on switch channel n.
A world with ``lock_laser(name, setpoint_hz)`` is told of each new course (its laser then
follows the regulation); a world with ``wavemeter_error_hz()`` (Hz) adds that calibration
error to every reading, so a laser locked to the meter sits at course - error.

Options: ``channels`` ({channel: laser name}), ``version_reply`` (above), ``greet`` (queue
the ``200`` greeting at construction, as the server sends it on connect; use False behind
`TcpServer(greeting=...)`), ``seed`` (default: the world's; 0 without one). Per-channel
faults: ``channel_errors[channel] = code``.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ionclock.sim_instruments.base import SimInstrument

C_LIGHT = 299792458.0

#: Nominal laser frequencies (Hz): 40Ca+ S1/2-P1/2 397 nm, D3/2-P1/2 866 nm, D5/2-P3/2 854 nm,
#: the 729 nm clock transition (DOMAIN §1), Ca 423 nm photo-ionisation, Cd+ S1/2-P3/2
#: 214.5 nm (DOMAIN §4).
NOMINAL_HZ = {
    "397": 755.222766e12,
    "866": 346.000235e12,
    "854": 350.862882e12,
    "729": 411.042129776e12,
    "423": 709.078373e12,
    "214.5": 1397.592e12,
}

DEFAULT_CHANNELS = {1: "397", 2: "866", 3: "854", 4: "729", 5: "423", 6: "214.5"}

#: getVersion's four numbers: device type (8: WS8), version, revision, software build.
VERSION = ("8", "1234", "567", "8901")


class LaserBank:
    """Free-running-ish lasers: nominal + random walk (Hz/sqrt(s)), sampled at SimPy time."""

    def __init__(self, env=None, seed: int = 0, walk_hz_sqrt_s: float = 2e6 / math.sqrt(3600),
                 nominal: dict[str, float] | None = None):
        self.env = env
        self.nominal = dict(NOMINAL_HZ if nominal is None else nominal)
        self.walk = walk_hz_sqrt_s
        self._rng = np.random.default_rng([seed, 11])
        self._state = {name: (0.0, 0.0) for name in self.nominal}  # (t, offset)

    def frequency(self, name: str) -> float:
        """Return the laser frequency now (Hz)."""
        t = self.env.now if self.env is not None else 0.0
        t0, x = self._state[name]
        if t > t0:
            x += self.walk * math.sqrt(t - t0) * float(self._rng.standard_normal())
            self._state[name] = (t, x)
        return self.nominal[name] + x


class SimWavemeterServer(SimInstrument):
    """The HighFinesse TCP text server (see the module docstring)."""

    input_terminator = b"\n"
    output_terminator = b"\r\n"
    name = "sim-wavemeter"

    VERSION_REPLIES = ("line", "lines")

    def __init__(self, world=None, channels: dict[int, str] | None = None, greet: bool = True,
                 noise_hz: float = 0.2e6, seed: int | None = None,
                 version_reply: str = "line"):
        if version_reply not in self.VERSION_REPLIES:
            raise ValueError(f"version_reply must be one of {self.VERSION_REPLIES}, "
                             f"got {version_reply!r}")
        self.version_reply = version_reply
        self.channel_names = dict(DEFAULT_CHANNELS if channels is None else channels)
        self.noise_hz = noise_hz
        if seed is None:   # the world's seed: each run's reading noise its own
            seed = int(getattr(world, "seed", 0) or 0)
        self._noise = np.random.default_rng([seed, 12])
        self.lasers = LaserBank(getattr(world, "env", None), seed or 0)
        self.channel_errors: dict[int, int] = {}
        self.temperature_c = 24.62
        self.pressure_mbar = 1004.3
        self.exposure_ms = {1: 12, 2: 40}
        self.pid_course: dict[int, str] = {}
        super().__init__(world, seed)
        self.greet = greet
        if greet:
            self._send("200")

    def served_greeting(self) -> bytes:
        """The greeting a socket server in front of this twin sends each client on connect.

        `ionclock twin-serve` calls it once: from then on the server greets (as HighFinesse's
        does, before any command) and the twin queues no greeting of its own.
        """
        self.greet = False
        self._tx.clear()
        return b"200" + self.output_terminator

    def connection_opened(self) -> None:
        """A new client connected (the registry's reconnect): the server greets it again."""
        self._rx = b""
        self._tx.clear()
        if self.greet:
            self._send("200")

    def laser_hz(self, channel: int) -> float:
        """Return the true frequency on `channel` (Hz), from the world or the bank."""
        name = self.channel_names[channel]
        hook = getattr(self.world, "laser_frequency", None)
        return hook(name) if hook is not None else self.lasers.frequency(name)

    def _measure(self, channel: int) -> float | int:
        if channel not in self.channel_names:
            return -1  # no light on an unused channel
        if channel in self.channel_errors:
            return self.channel_errors[channel]
        error = getattr(self.world, "wavemeter_error_hz", None)
        reading = self.laser_hz(channel) + (error() if error is not None else 0.0)
        return reading + self.noise_hz * float(self._noise.standard_normal())

    def _set_course(self, port: int, course: str) -> str:
        """``setPidCourseNum``: store the course, tell the world; a wlmData set result."""
        if port not in self.channel_names:
            return "-10"  # ResERR_ChannelNotAvailable
        text = course.strip()
        text = text[1:].strip() if text.startswith("=") else text
        try:
            thz = float(text)
        except ValueError:
            return "-3"  # ResERR_ParmOutOfRange: an expression course is not modelled
        if not (math.isfinite(thz) and thz > 0):
            return "-3"
        self.pid_course[port] = text
        hook = getattr(self.world, "lock_laser", None)
        if hook is not None:
            hook(self.channel_names[port], thz * 1e12)
        return "0"

    def handle(self, line: str) -> str | None:
        cmd = line.strip()
        m = re.fullmatch(r"(getFrequencyNum|getWavelengthNum)\s+(\d+)", cmd)
        if m:
            value = self._measure(int(m.group(2)))
            if isinstance(value, int):
                return str(value)
            if m.group(1) == "getFrequencyNum":
                return f"{value / 1e12:.7f}"
            return f"{C_LIGHT / value * 1e9:.7f}"
        m = re.fullmatch(r"setPidCourseNum\s+(\d+),(.*)", cmd)
        if m:
            return self._set_course(int(m.group(1)), m.group(2))
        m = re.fullmatch(r"getPidCourseNum\s+(\d+)", cmd)
        if m:
            port = int(m.group(1))
            if port not in self.channel_names:
                return "-10"
            return self.pid_course.get(port, "0")
        m = re.fullmatch(r"getExposureNum\s+(\d+),\s*(\d+)", cmd)
        if m:
            ch, ccd = int(m.group(1)), int(m.group(2))
            if ch not in self.channel_names or ccd not in self.exposure_ms:
                return "-6"
            return str(self.exposure_ms[ccd])
        if cmd == "getTemperature":
            return f"{self.temperature_c:.2f}"
        if cmd == "getPressure":
            return f"{self.pressure_mbar:.1f}"
        if cmd == "getChannelCount":
            return "8"
        if cmd == "getVersion":
            if self.version_reply == "lines":
                return "\r\n".join(VERSION)
            return ",".join(VERSION)
        return "-6"  # the server answers an unknown function as "not available"
