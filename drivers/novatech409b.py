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

Hot path: `DdsChannel.frequency` and `DdsChannel.phase` setters and
`DdsChannel.set_table_entry` are plain methods that format one line, write it and compare the
one-line reply with ``OK`` (no regex, no extra query): the clock loop calls them every cycle
(docs/decisions/0100-lean-hot-paths.md).

Table mode (stepped by an external TTL), from the sources that drive real units:

- labscript-suite/labscript-devices ``labscript_devices/NovaTechDDS9M.py`` (BLACS worker,
  DDS9m and "with minor modifications" the 409B) and its docs
  ``docs/source/devices/novatechDDS9m.rst`` (after Appendix A of the DDS9m manual): an entry
  is written as ``t<ch> <aaaa> <ffffffff>,<pppp>,<vvvv>,<dd>`` -- channel 0 or 1, table
  address, frequency in 0.1 Hz units, 14-bit phase word, 10-bit amplitude word, all hex;
  dwell ``ff`` = wait for the external trigger. Only channels 0 and 1 have a table ("the
  first two of which can be stepped through a pre-programmed table"; channels 2, 3 stay
  static). The table holds 16384 entries (its compiler refuses more than 16384 - 2
  instructions plus two dummies). ``m t`` enters table mode, ``m 0`` returns to single-tone
  mode (commit 8195534: ``m a``/``m n`` are the phase modes, ``m 0``/``m t`` switch table
  mode). In automatic update (``I a``) ``m t`` outputs entry 0 at once; each trigger then
  loads and outputs the next entry ("asynchronous": labscript repeats the first line
  because entry 0 is already out before the first edge). With ``I e`` (external update,
  "synchronous", pins 10 and 14 driven together) a rising edge outputs the buffered entry
  and the falling edge loads the next, so the first edge re-outputs entry 0. ``m t`` /
  ``m 0`` is sent before every run (the "double clutch", commit 4ccdf5d) because it "appears
  to reset its memory pointer to the start of the table": the only documented way back to
  entry 0. Changed entries only are rewritten between runs ("smart programming").
- labscript-suite/labscript ``novatech.py`` (2011, commit 3e5f74d, programming a DDS9m):
  the last entry of a table is written with dwell ``00`` -- an end-of-table marker; no
  source says whether the unit then stops or returns to entry 0.
- naqslab/naqslab_devices ``NovaTechDDS/labscript_device.py`` and ``blacs_worker.py``: the
  plain ``NovaTech409B`` is four static channels, "not a triggerable device";
  ``NovaTech409B_AC`` has the table on channels 0, 1 -- the same ``t``/``m t``/``I e``
  lines, each answered ``OK`` or ``?N`` (its ``write_check``/``check_error``). The 409B
  manual (firmware 2.1 or later, section 1.3) says the table can be stepped "from an
  external hardware trigger"; its section 1.5: the -AC option "adds two SMA connectors on
  the rear panel" for externally synchronised updates. Check which the lab's unit has.
- AceChenX/ExpCtrl.py ``hardware.py``: a 409B stepped by a DAQ line, the same ``t0``/``t1``
  lines with dwell ``ff``, ``m 0`` before writing, ``m t`` after, triggers >= 100 us wide.

`DdsChannel.set_table_entry` writes one entry; `Novatech409B.start_table` /
`Novatech409B.stop_table` send ``m t`` / ``m 0``; `CycleTable` runs the segments of a clock
cycle once per cycle (its docstring says exactly how the pointer gets back to entry 0).

The ``QUE`` status line: its last field is the firmware version (``21`` = 2.1: ARTIQ's
``novatech409b`` driver checks it as "version number"; the 409B manual applies to "Firmware
version 2.1 or later"). No source documents its other fields; they are kept as text.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymeasure.instruments import Channel, Instrument
from pymeasure.instruments.validators import strict_range
from pyvisa.errors import VisaIOError

from ionclock.drivers.common import line_exchange
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError

_isfinite = math.isfinite

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

TABLE_CHANNELS = (0, 1)
"""Channels with table mode (labscript's NovaTechDDS9M docs; naqslab's 409B-AC)."""
TABLE_SIZE = 16384
"""Table addresses 0 .. 16383 (labscript's NovaTechDDS9M compiler limit, 16384 - 2 + 2)."""
DWELL_CODES: dict[str, str] = {"trigger": "ff", "end": "00"}
"""Dwell field of a table entry: ``ff`` waits for the external trigger; ``00`` marks the end
of the table (labscript's 2011 ``novatech.py`` writes it on the last entry)."""
_DWELL_TRIGGER = DWELL_CODES["trigger"]
_DWELL_END = DWELL_CODES["end"]


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
    """The parsed `QUE` reply: four channel states and the status line.

    `firmware` is the status line's last field, the firmware version (``21`` = 2.1). It says
    nothing about the unit's health: a unit with another firmware is not "unhealthy" (the
    old notion "last field == 21 means healthy" was wrong; PROTOCOLS.md corrections).
    """

    channels: tuple[DdsChannelState, DdsChannelState, DdsChannelState, DdsChannelState]
    status_line: str

    @property
    def status_fields(self) -> tuple[str, ...]:
        """The status line's fields as text (no source documents those before the last)."""
        return tuple(self.status_line.split())

    @property
    def firmware(self) -> str:
        """The firmware version field, as the unit sends it (``21`` for version 2.1)."""
        return self.status_line.split()[-1]


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
    /16384, amplitude word /1023); the fifth line's last field is the firmware version.
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


def table_entry_words(frequency_hz: float, phase_turns: float, amplitude_fraction: float,
                      dwell: str = "trigger") -> tuple[int, int, int, str]:
    """One table entry as the unit's words; anything out of range is a ValueError.

    Returns (frequency in 0.1 Hz units, phase word 0..16383, amplitude word 0..1023, dwell
    code). The same checks and encoding as `DdsChannel.set_table_entry` (which inlines them).
    """
    if not 0.0 <= frequency_hz <= F_MAX_HZ:  # also rejects NaN
        raise ValueError(
            f"frequency must be within [0, {F_MAX_HZ:.0f}] Hz, got {frequency_hz!r}")
    code = DWELL_CODES.get(dwell)
    if code is None:
        raise ValueError(f"dwell must be one of {sorted(DWELL_CODES)}, got {dwell!r}")
    return (round(frequency_hz * 10.0), phase_word(phase_turns),
            amplitude_word(amplitude_fraction), code)


def table_line(channel: int, address: int, frequency_hz: float, phase_turns: float,
               amplitude_fraction: float, dwell: str = "trigger") -> str:
    """The ``t`` line that writes one table entry (labscript's ``t%d %04x %08x,%04x,%04x,ff``)."""
    if channel not in TABLE_CHANNELS:
        raise ValueError(f"channel {channel!r} has no table mode (only {TABLE_CHANNELS})")
    address = _table_address(address)
    fw, pw, aw, code = table_entry_words(frequency_hz, phase_turns, amplitude_fraction, dwell)
    return f"t{channel} {address:04x} {fw:08x},{pw:04x},{aw:04x},{code}"


def parse_table_line(line: str) -> tuple[int, int, float, float, float, str]:
    """Inverse of `table_line`: (channel, address, Hz, turns, fraction, dwell name or code)."""
    head, address, rest = line.split(" ")
    frequency, phase, amplitude, code = rest.split(",")
    names = {v: k for k, v in DWELL_CODES.items()}
    return (int(head[1:]), int(address, 16), int(frequency, 16) / 10.0,
            int(phase, 16) / PHASE_WORDS, int(amplitude, 16) / AMPLITUDE_MAX_WORD,
            names.get(code, code))


def _table_address(address) -> int:
    """An integer table address in [0, TABLE_SIZE); anything else is a ValueError."""
    try:
        value = operator.index(address)
    except TypeError:
        raise ValueError(f"table address must be an integer, got {address!r}") from None
    if not 0 <= value < TABLE_SIZE:
        raise ValueError(f"table address must be within [0, {TABLE_SIZE - 1}], got {address!r}")
    return value


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
        self._t_prefix = f"t{id} " if id in TABLE_CHANNELS else None
        # [frequency Hz, phase turns] last set; a list so that the hot path stores without
        # going through CommonBase.__setattr__.
        self._last: list[float | None] = [None, None]
        # address -> the words (frequency, phase, amplitude, dwell code) this driver last
        # wrote there (what the unit holds, as far as it knows); `skip_unchanged` uses it.
        self._table_words: dict[int, tuple[int, int, int, str]] = {}

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

    def set_table_entry(self, address: int, frequency_hz: float, phase_turns: float,
                        amplitude_fraction: float, dwell: str = "trigger", *,
                        skip_unchanged: bool = False) -> float:
        """Write table entry `address` of this channel; return the frequency it holds (Hz).

        Frequency in Hz (0 to 171e6, stored in 0.1 Hz units: the returned value is on that
        grid), phase in turns (any finite number, wrapped to the 14-bit word), amplitude as a
        fraction 0..1 (word 0..1023), `dwell` ``"trigger"`` (``ff``: the entry stays until the
        next edge on the external trigger input) or ``"end"`` (``00``: end of the table).
        One line ``t<ch> <aaaa> <ffffffff>,<pppp>,<vvvv>,<dd>`` (labscript-devices'
        NovaTechDDS9M worker), one ``OK``. Only channels 0 and 1 have a table; every check is
        made before a byte is written. With `skip_unchanged`, an entry this driver already
        wrote with the same words is not written again (nothing on the wire).
        """
        prefix = self._t_prefix
        if prefix is None:
            raise ValueError(f"channel {self.id} has no table mode (only {TABLE_CHANNELS})")
        if type(address) is not int or not 0 <= address < TABLE_SIZE:
            address = _table_address(address)
        if not 0.0 <= frequency_hz <= F_MAX_HZ:  # also rejects NaN
            raise ValueError(
                f"frequency must be within [0, {F_MAX_HZ:.0f}] Hz, got {frequency_hz!r}")
        if not 0.0 <= amplitude_fraction <= 1.0:  # also rejects NaN
            raise ValueError(
                f"amplitude must be a fraction in [0, 1], got {amplitude_fraction!r}")
        if not _isfinite(phase_turns):
            raise ValueError(f"phase must be a finite number of turns, got {phase_turns!r}")
        code = DWELL_CODES.get(dwell)
        if code is None:
            raise ValueError(f"dwell must be one of {sorted(DWELL_CODES)}, got {dwell!r}")
        fw = round(frequency_hz * 10.0)
        words = (fw, round(phase_turns % 1.0 * PHASE_WORDS) % PHASE_WORDS,
                 round(amplitude_fraction * AMPLITUDE_MAX_WORD), code)
        written = self._table_words
        if skip_unchanged and written.get(address) == words:
            return fw / 10.0
        written.pop(address, None)  # unknown until the unit says OK
        # %-formatting: 0.3 us faster per line than the same f-string with format specs
        self.parent.command("%s%04x %08x,%04x,%04x,%s" % (prefix, address, *words))  # noqa: UP031
        written[address] = words
        return fw / 10.0

    @property
    def has_table(self) -> bool:
        """True for the channels with table mode (0 and 1)."""
        return self._t_prefix is not None

    def forget_table(self) -> None:
        """Forget which entries this driver wrote (after a reset or power cycle of the unit)."""
        self._table_words.clear()

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
        self._external = False
        self._table_on = [False]  # a list: the per-cycle re-arm stores without __setattr__
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
        self._external = False

    @property
    def external_update(self) -> bool:
        """External (hardware) update ``I e``, or automatic ``I a``; the last value set.

        labscript's "synchronous" table mode: with ``I e`` a rising edge outputs the entry
        loaded by the previous falling edge, so the first edge after ``m t`` re-outputs
        entry 0. `CycleTable` needs automatic update (``I a``, the power-on mode).
        """
        return self._external

    @external_update.setter
    def external_update(self, value: bool) -> None:
        self.command("I e" if value else "I a")
        self._external = bool(value)
        self._simultaneous = False

    # --- table mode -----------------------------------------------------------------------------
    def start_table(self) -> None:
        """Enter table mode (``m t``) at entry 0.

        In automatic update (``I a``) entry 0 is output at once (labscript's NovaTechDDS9M
        docs); each edge on the external trigger input then steps to the next entry. After
        `stop_table` this is the re-arm that brings the pointer back to entry 0 (labscript's
        "double clutch" ``m t``/``m 0``/``m t`` "appears to reset its memory pointer").
        """
        self.command("m t")
        self._table_on[0] = True

    def stop_table(self) -> None:
        """Leave table mode (``m 0``, single-tone mode); the outputs keep their values."""
        self.command("m 0")
        self._table_on[0] = False

    @property
    def table_mode(self) -> bool:
        """True after `start_table`, False after `stop_table` or `reset` (no I/O)."""
        return self._table_on[0]

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
        self._external = False
        self._table_on[0] = False
        for ch in (self.ch_0, self.ch_1):
            ch.forget_table()  # the table lives in static RAM: assume it is gone
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


class CycleTable:
    """The segments of one clock cycle as table entries of one channel, run every cycle.

    The hardware sequencer times the segments: one edge on the 409B's external trigger input
    at the start of each segment and one at the end of the last (``n + 1`` edges per cycle).
    The unit is in automatic update (``I a``): ``m t`` outputs entry 0, edge *k* outputs
    entry *k* (labscript's asynchronous mode). Layout:

    - entry 0: idle (``idle_frequency_hz``, phase 0, amplitude 0: no clock light), written
      once; ``m t`` puts it out, so arming never flashes light;
    - entries 1 .. n: the segments, dwell ``ff``;
    - ``restart="rearm"`` (default): entry n + 1 is idle too (dwell ``ff``), so the last
      edge darkens the light. Before the next cycle `prepare` sends ``m 0``, rewrites the
      changed entries in single-tone mode and sends ``m t``, which returns the pointer to
      entry 0 -- the "double clutch" labscript's NovaTechDDS9M worker relies on before every
      run (commit 4ccdf5d: it "appears to reset its memory pointer to the start of the
      table"). Works whatever the unit does at the end of its table.
    - ``restart="wrap"``: entry n (the last segment) is written with dwell ``00``, the end
      marker of labscript's 2011 ``novatech.py``, and the unit is assumed to go back to
      entry 0 (idle) on the next edge: no serial traffic between cycles but the rewritten
      entries. No source confirms the wrap: check it on the unit before choosing this.

    `prepare` returns the frequencies the segments hold (Hz, 0.1 Hz grid).
    """

    def __init__(self, channel: DdsChannel, n_segments: int, *, idle_frequency_hz: float,
                 restart: str = "rearm"):
        if restart not in ("rearm", "wrap"):
            raise ValueError(f"restart must be 'rearm' or 'wrap', got {restart!r}")
        if not channel.has_table:
            raise ValueError(f"channel {channel.id} has no table mode (only {TABLE_CHANNELS})")
        if not (isinstance(n_segments, int) and 1 <= n_segments <= TABLE_SIZE - 2):
            raise ValueError(f"n_segments must be an int in [1, {TABLE_SIZE - 2}]")
        table_entry_words(idle_frequency_hz, 0.0, 0.0)  # validates
        self.channel = channel
        self.n_segments = n_segments
        self.restart = restart
        self.idle_frequency_hz = float(idle_frequency_hz)
        self._last: list[tuple | None] = [None] * n_segments   # segments as last written
        self._applied = [0.0] * n_segments                      # their frequencies (Hz)
        # A segment's line in parts (docs/decisions/0100-lean-hot-paths.md): the head
        # "t<ch> <aaaa> " per address, and the tail ",<pppp>,<vvvv>,<dd>" per phase and
        # amplitude words met (a few: the pulses' phases, on or off), so a changed entry
        # costs one "%08x" (its frequency word) and two joins. The text is the same.
        self._heads = ["%s%04x " % (channel._t_prefix, address)  # noqa: UP031
                       for address in range(n_segments + 1)]
        self._tails: dict[int, str] = {}   # phase word << 11 | amplitude word << 1 | end

    @property
    def edges_per_cycle(self) -> int:
        """Trigger edges the sequencer gives per cycle: one per segment, one to end it."""
        return self.n_segments + 1

    def prepare(self, segments: Sequence[tuple[float, float, float]]) -> list[float]:
        """Load this cycle's ``(frequency_hz, phase_turns, amplitude_fraction)`` segments.

        Every value is checked before any byte is written; only entries whose words changed
        since this driver last wrote them go on the wire; then the table is (re-)armed as
        `restart` says. Call it once per cycle, after the previous cycle's edges. (The clock
        loop calls it every cycle: the words are compared inline, as `set_table_entry` with
        ``skip_unchanged`` would, without its per-call checks.)
        """
        n = self.n_segments
        if len(segments) != n:
            raise ValueError(f"expected {n} segments, got {len(segments)}")
        ch = self.channel
        written = ch._table_words
        last = self._last
        applied = self._applied
        wrap = self.restart == "wrap"
        heads = self._heads
        tails = self._tails
        todo = []
        for i in range(n):  # every check before any byte: no half-written table
            seg = segments[i]
            address = i + 1
            if last[i] == seg and address in written:   # as written last cycle: nothing to do
                continue
            f, p, a = seg
            if not (0.0 <= f <= F_MAX_HZ and 0.0 <= a <= 1.0 and _isfinite(p)):
                table_entry_words(f, p, a)  # raises the ValueError that says what is wrong
            fw = round(f * 10.0)
            applied[i] = fw / 10.0
            pw = round(p % 1.0 * PHASE_WORDS) % PHASE_WORDS
            aw = round(a * AMPLITUDE_MAX_WORD)
            end = wrap and address == n
            code = _DWELL_END if end else _DWELL_TRIGGER
            entry = (fw, pw, aw, code)
            if written.get(address) == entry:   # the same words (a change below the grid)
                last[i] = seg
                continue
            key = pw << 11 | aw << 1 | end
            tail = tails.get(key)
            if tail is None:
                if len(tails) >= 1024:   # arbitrary phases: keep the cache small
                    tails.clear()
                tail = tails[key] = ",%04x,%04x,%s" % (pw, aw, code)  # noqa: UP031
            # the line set_table_entry writes: "t<ch> <aaaa> <ffffffff>,<pppp>,<vvvv>,<dd>"
            todo.append((address, seg, entry, heads[address] + "%08x" % fw + tail))  # noqa: UP031
        dds = ch.parent
        table_on = dds._table_on
        # Novatech409B.command, inlined (up to six lines per cycle): one line, its OK
        exchange = dds._exchange
        running = table_on[0]
        if running and not wrap:
            reply = exchange("m 0")   # stop_table(), inlined
            if reply != "OK":
                dds._bad_reply(reply, "m 0")
            table_on[0] = False
        if not running:  # first cycle, or after a reset / stop: the idle entries too
            if dds.external_update or dds.simultaneous_update:
                raise ValueError("CycleTable needs automatic update (I a): edge k outputs "
                                 "entry k only there")
            idle = self.idle_frequency_hz
            ch.set_table_entry(0, idle, 0.0, 0.0, skip_unchanged=True)
            if not wrap:
                ch.set_table_entry(n + 1, idle, 0.0, 0.0, skip_unchanged=True)
        for address, seg, entry, line in todo:
            try:
                reply = exchange(line)
                if reply != "OK":
                    dds._bad_reply(reply, line)
            except BaseException:
                written.pop(address, None)  # unknown: the unit may or may not hold it
                last[address - 1] = None
                raise
            written[address] = entry
            last[address - 1] = seg
        if not (running and wrap):
            reply = exchange("m t")   # start_table(), inlined
            if reply != "OK":
                dds._bad_reply(reply, "m t")
            table_on[0] = True
        return list(applied)

