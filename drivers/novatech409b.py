"""Novatech 409B four-channel DDS (AD9959), the clock AOM's RF source.

RS-232, 19200 baud 8N1, no flow control, CRLF both ways (PROTOCOLS.md "Novatech 409B").
Every command answers ``OK`` or an error code ``?0`` ... ``?8``, ``?f``; ``QUE`` answers five
lines; ``R`` answers nothing. Units in this API are SI: frequency in Hz, phase in **turns**
(1 turn = 2 pi rad = 360 deg; the device's 14-bit word is N = turns * 16384 mod 16384),
amplitude as a fraction 0..1 of full scale (the device's 10-bit word, 0..1023).

Quirks taken from the manual as quoted by ARTIQ's ``novatech409b`` controller:

- the unit powers up with echo on, so ``E d`` is sent first and an echoed ``E d`` line is
  skipped before its ``OK``;
- ``V<ch> N`` with N > 1023 is *not* rejected by the unit (the 10-bit DAC wraps), so the
  driver validates the fraction and never writes a word above 1023;
- a phase of exactly one turn is word 16384, which wraps to 0 (phase is periodic);
- ``R`` resets without a reply; the unit needs about a second before the next command.

Hot path: `DdsChannel.frequency` and `DdsChannel.phase` setters are plain properties that
format one line, write it and compare the one-line reply with ``OK`` (no regex, no extra
query): the clock loop sets them every cycle (docs/decisions/0100-lean-hot-paths.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from pymeasure.instruments import Channel, Instrument
from pymeasure.instruments.validators import strict_range
from pyvisa.errors import VisaIOError

from ionclock.drivers.common import line_exchange
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError

#: Device error codes (PROTOCOLS.md; ARTIQ's controller uses the same table).
ERROR_CODES: dict[str, str] = {
    "?0": "unrecognised command",
    "?1": "bad frequency",
    "?2": "bad AM command",
    "?3": "input line too long",
    "?4": "bad phase",
    "?5": "bad time",
    "?6": "bad mode",
    "?7": "bad amplitude",
    "?8": "bad constant",
    "?f": "bad byte",
}

F_MAX_HZ = 171e6
"""Highest frequency the driver writes (Hz); the unit's own limit is 171.1276031 MHz."""
PHASE_WORDS = 16384
AMPLITUDE_MAX_WORD = 1023
HEALTHY_STATUS = "21"


@dataclass(frozen=True)
class DdsChannelState:
    """One channel as `QUE` reports it: frequency (Hz), phase (turns), amplitude (0..1)."""

    frequency_hz: float
    phase_turns: float
    amplitude_fraction: float
    frequency_word: int
    phase_word: int
    amplitude_word: int


@dataclass(frozen=True)
class Novatech409BStatus:
    """The parsed `QUE` reply: four channel states and the status line."""

    channels: tuple[DdsChannelState, DdsChannelState, DdsChannelState, DdsChannelState]
    status_line: str

    @property
    def healthy(self) -> bool:
        """True when the status line's last field is ``21`` (a healthy unit)."""
        return self.status_line.split()[-1] == HEALTHY_STATUS


def _hex_field(text: str, width: int, name: str, instrument: str, line: str) -> int:
    if len(text) != width:
        raise ReplyError(instrument, f"QUE: bad {name} field {text!r} in {line!r}")
    try:
        return int(text, 16)
    except ValueError:
        raise ReplyError(instrument, f"QUE: bad {name} field {text!r} in {line!r}") from None


def parse_que(lines: list[str], instrument: str = "Novatech 409B") -> Novatech409BStatus:
    """Parse the five `QUE` lines into a `Novatech409BStatus`; bad text is a `ReplyError`.

    Channel lines are ``FFFFFFFF PPPP AAAA ...`` (hex: frequency in 0.1 Hz units, phase word
    /16384, amplitude word /1023); the fifth line's last field is ``21`` on a healthy unit.
    """
    if len(lines) != 5:
        raise ReplyError(instrument, f"QUE: expected 5 lines, got {len(lines)}")
    states = []
    for line in lines[:4]:
        fields = line.split()
        if len(fields) < 3:
            raise ReplyError(instrument, f"QUE: short channel line {line!r}")
        fw = _hex_field(fields[0], 8, "frequency", instrument, line)
        pw = _hex_field(fields[1], 4, "phase", instrument, line)
        aw = _hex_field(fields[2], 4, "amplitude", instrument, line)
        if pw >= PHASE_WORDS or aw > AMPLITUDE_MAX_WORD:
            raise ReplyError(instrument, f"QUE: word out of range in {line!r}")
        states.append(DdsChannelState(fw / 10.0, pw / PHASE_WORDS, aw / AMPLITUDE_MAX_WORD,
                                      fw, pw, aw))
    status = lines[4]
    fields = status.split()
    if not fields or not all(f.isalnum() and f.isascii() for f in fields):
        raise ReplyError(instrument, f"QUE: bad status line {status!r}")
    return Novatech409BStatus(tuple(states), status)  # type: ignore[arg-type]


def phase_word(turns: float) -> int:
    """Phase in turns -> the device word 0..16383 (N * 360 deg / 16384), wrapped mod 1 turn."""
    if not math.isfinite(turns):
        raise ValueError(f"phase must be a finite number of turns, got {turns!r}")
    return round(turns % 1.0 * PHASE_WORDS) % PHASE_WORDS


def amplitude_word(fraction: float) -> int:
    """Amplitude fraction 0..1 -> the device word 0..1023; anything else is a ValueError."""
    if not 0.0 <= fraction <= 1.0:  # also rejects NaN
        raise ValueError(f"amplitude must be a fraction in [0, 1], got {fraction!r}")
    return round(fraction * AMPLITUDE_MAX_WORD)


def frequency_mhz_text(hz: float) -> str:
    """Frequency in Hz -> the device's ``<MHz>`` text (7 decimals = 0.1 Hz resolution)."""
    if not 0.0 <= hz <= F_MAX_HZ:  # also rejects NaN
        raise ValueError(f"frequency must be within [0, {F_MAX_HZ:.0f}] Hz, got {hz!r}")
    return "%.7f" % (hz * 1e-6)


class DdsChannel(Channel):
    """One output of the 409B (``ch`` 0..3)."""

    # pymeasure's CommonBase.__getattribute__/__setattr__ only guard the reserved names of
    # dynamic properties (none here); skipping them saves ~1 us per attribute access and
    # ~2 us per property set on the hot path.
    __getattribute__ = object.__getattribute__
    __setattr__ = object.__setattr__

    def __init__(self, parent: Novatech409B, id: int, **kwargs):
        super().__init__(parent, id, **kwargs)
        self._f_prefix = f"F{id} "
        self._p_prefix = f"P{id} "
        # [frequency Hz, phase turns] last set; a list so that the hot path stores without
        # going through CommonBase.__setattr__.
        self._last: list[float | None] = [None, None]

    # --- hot path: plain properties (one write, one OK line) ------------------------------
    @property
    def frequency(self) -> float:
        """Output frequency in Hz (float, 0 to 171e6; 0.1 Hz resolution); reads via QUE."""
        return self.parent.status().channels[self.id].frequency_hz

    @frequency.setter
    def frequency(self, hz: float) -> None:
        self.set_frequency(hz)

    def set_frequency(self, hz: float) -> float:
        """Set the output frequency (Hz); returns what the unit runs (its 0.1 Hz grid)."""
        if not 0.0 <= hz <= F_MAX_HZ:  # also rejects NaN; before any byte is written
            raise ValueError(f"frequency must be within [0, {F_MAX_HZ:.0f}] Hz, got {hz!r}")
        text = "%.7f" % (hz * 1e-6)
        self.parent.command(self._f_prefix + text)
        applied = self._last[0] = float(text) * 1e6
        return applied

    @property
    def phase(self) -> float:
        """Phase offset in turns (1 turn = 2 pi rad), wrapped to [0, 1); reads via QUE."""
        return self.parent.status().channels[self.id].phase_turns

    @phase.setter
    def phase(self, turns: float) -> None:
        if not math.isfinite(turns):
            raise ValueError(f"phase must be a finite number of turns, got {turns!r}")
        self.parent.command(self._p_prefix + str(round(turns % 1.0 * PHASE_WORDS) % PHASE_WORDS))
        self._last[1] = turns

    @property
    def phase_rad(self) -> float:
        """Phase offset in radians, wrapped to [0, 2 pi); reads via QUE."""
        return self.phase * 2.0 * math.pi

    @phase_rad.setter
    def phase_rad(self, rad: float) -> None:
        self.phase = rad / (2.0 * math.pi)

    # --- slow path: ordinary pymeasure settings -------------------------------------------
    amplitude = Channel.setting(
        "V{ch} %d",
        """Set the output amplitude as a fraction of full scale (float 0..1 -> word 0..1023).

        The unit silently accepts words above 1023; the validator makes sure none is sent.""",
        validator=strict_range, values=(0.0, 1.0),
        set_process=lambda f: round(f * AMPLITUDE_MAX_WORD), check_set_errors=True)

    @property
    def amplitude_fraction(self) -> float:
        """Output amplitude as a fraction of full scale, read via QUE."""
        return self.parent.status().channels[self.id].amplitude_fraction

    @property
    def last_frequency(self) -> float | None:
        """The frequency the channel runs since the last set (Hz, on the 0.1 Hz grid), no I/O."""
        return self._last[0]

    @property
    def last_phase(self) -> float | None:
        """The last phase this driver set on the channel (turns), without any I/O."""
        return self._last[1]


class Novatech409B(Instrument):
    """Novatech 409B four-channel DDS (RS-232, 19200 8N1, CRLF).

    Parameters
    ----------
    adapter:
        A pymeasure adapter or a VISA resource string.
    name:
        Used in error messages.
    phase_continuous, simultaneous_update:
        When not None, set on connect (``M n``/``M a``, ``I m``/``I a``).
    echo_off:
        Send ``E d`` on connect (default; the unit powers up echoing).
    """

    write_termination = "\r\n"
    read_termination = "\r\n"
    serial_settings = {"baudrate": 19200, "bytesize": 8, "parity": "N", "stopbits": 1,
                       "xonxoff": False, "rtscts": False, "timeout": 1.0}

    __getattribute__ = object.__getattribute__  # see DdsChannel

    ch_0 = Instrument.ChannelCreator(DdsChannel, 0)
    ch_1 = Instrument.ChannelCreator(DdsChannel, 1)
    ch_2 = Instrument.ChannelCreator(DdsChannel, 2)
    ch_3 = Instrument.ChannelCreator(DdsChannel, 3)

    def __init__(self, adapter, name: str = "Novatech 409B", *,
                 phase_continuous: bool | None = None,
                 simultaneous_update: bool | None = None,
                 echo_off: bool = True, **kwargs):
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        # The hot path talks to the adapter's transport methods directly: pymeasure's public
        # write()/read() add two DEBUG log calls (~0.9 us) per exchange, a third of the
        # per-cycle budget (docs/decisions/0100-lean-hot-paths.md). Traffic is still visible
        # in the twin's transcript and with a serial spy:// URL.
        self._exchange = line_exchange(self.adapter)
        self._simultaneous = False
        if echo_off:
            self.echo_off()
        if phase_continuous is not None:
            self.phase_continuous = phase_continuous
        if simultaneous_update is not None:
            self.simultaneous_update = simultaneous_update

    # --- the OK/?N reply --------------------------------------------------------------------
    def command(self, cmd: str) -> None:
        """Write one command line and consume its ``OK``; ``?N`` -> `InstrumentError`."""
        reply = self._exchange(cmd)
        if reply != "OK":
            self._bad_reply(reply, cmd)

    def _bad_reply(self, reply: str, cmd: str) -> None:
        if not reply:
            raise InstrumentTimeout(self.name, f"no reply to {cmd!r}")
        message = ERROR_CODES.get(reply)
        if message is not None:
            raise InstrumentError(self.name, f"{cmd!r} rejected: {message}", code=reply)
        raise ReplyError(self.name, f"unexpected reply {reply!r} to {cmd!r}")

    def check_set_errors(self) -> list:
        """Consume the ``OK`` a setting answers (pymeasure's check_set_errors hook)."""
        reply = self.read()
        if reply != "OK":
            self._bad_reply(reply, "<setting>")
        return []

    def check_errors(self) -> list:
        """Return no errors: the 409B has no error queue, each reply carries its own."""
        return []

    # --- connection and modes ---------------------------------------------------------------
    def echo_off(self) -> None:
        """Send ``E d``; skip the echoed line a unit with echo on sends before ``OK``."""
        self.write("E d")
        reply = self.read()
        if reply == "E d":
            reply = self.read()
        if reply != "OK":
            self._bad_reply(reply, "E d")

    @property
    def phase_continuous(self) -> bool:
        """Phase-continuous frequency changes (``M n``) or auto-clear phase (``M a``)."""
        raise LookupError("the 409B's mode cannot be read back; keep what you set")

    @phase_continuous.setter
    def phase_continuous(self, value: bool) -> None:
        self.command("M n" if value else "M a")

    @property
    def simultaneous_update(self) -> bool:
        """Manual simultaneous update (``I m``: apply on `apply()`) or automatic (``I a``)."""
        return self._simultaneous

    @simultaneous_update.setter
    def simultaneous_update(self, value: bool) -> None:
        self.command("I m" if value else "I a")
        self._simultaneous = bool(value)

    def apply(self) -> None:
        """Apply pending changes in simultaneous-update mode (``I p``)."""
        self.command("I p")

    def save(self) -> None:
        """Save the current state as the power-on state (``S``)."""
        self.command("S")

    def reset(self, settle_s: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> None:
        """Reset the unit (``R``, no reply), wait `settle_s` seconds, then turn echo off."""
        self.write("R")
        sleep(settle_s)
        self._simultaneous = False
        self.echo_off()

    # --- status -------------------------------------------------------------------------------
    def status(self) -> Novatech409BStatus:
        """Query ``QUE`` and parse its five lines (frequencies, phases, amplitudes, status)."""
        self.write("QUE")
        first = self.read()
        if first in ERROR_CODES:
            raise InstrumentError(self.name, "QUE rejected: " + ERROR_CODES[first], code=first)
        lines = [first] + [self.read() for _ in range(4)]
        if not all(lines):
            raise InstrumentTimeout(self.name, "QUE reply incomplete")
        return parse_que(lines, self.name)

    def ping(self) -> bool:
        """Return True when a bare line answers ``OK`` (cheap liveness check)."""
        try:
            self.command("")
        except (InstrumentError, InstrumentTimeout, OSError, VisaIOError):
            return False
        return True

    def close(self) -> None:
        """Release the port."""
        self.adapter.close()
