"""PrawnDO: a programmable 16-output TTL pattern generator (labscript suite, Raspberry Pi Pico).

The pulse hardware that plays the clock's TTL pattern and the characterisation shots'
(decision 0311): 16 digital outputs, one instruction = an output word held for `reps` clock
cycles (10 ns at the default 100 MHz, at least 5), 30,000 instructions, a hardware trigger on
GPIO 16 that starts a program (``run``) and ends each indefinite wait.

Protocol (sources in brackets):

- USB CDC virtual serial port; the host ends each command with CR LF, the unit each reply
  with CR LF; commands are three letters, numbers in hex. [labscript-suite/labscript-devices
  ``labscript_devices/PrawnDO/blacs_workers.py`` (``send_command`` adds CR LF, reads one
  line); labscript-suite/prawn_digital_output ``prawn_do/prawn_do.c`` (``fast_serial_printf``
  with CR LF)]
- ``ver`` -> ``Version: 1.3.0``; ``sts`` -> ``run-status:<r> clock-status:<c>`` (r: 0 stopped,
  1 transition to running, 2 running, 3 abort requested, 4 aborting, 5 aborted, 6 transition
  to stop; c: 0 internal, 1 external clock); ``gto`` -> the outputs in hex; ``man <hex>``,
  ``cls``, ``run`` (wait for the hardware trigger), ``swr`` (start now), ``abt`` (only while
  running) -> ``ok``. [prawn_do.c main loop; blacs_workers.py ``status``, ``output_state``,
  ``program_manual``, ``abort_buffered``]
- ``adm <start> <count>`` (hex) -> ``ready``, then ``count`` instructions as one binary block,
  6 bytes each: ``<u2`` output word, ``<u4`` reps (0: a wait; two 0 in a row: the stop),
  -> ``ok``, or ``Invalid number of reps in ...`` when some reps were 1-4 (set to 0 by the
  unit). [blacs_workers.py ``adm_batch``; prawn_do.c ``adm``]
- Every command but ``ver``, ``sts``, ``abt`` (and ``brd``, ``deb``, ``ndb``) is refused
  while running: ``Cannot execute command <the line, with its CR LF> during buffered
  execution.``; an unknown one is ``Invalid command: <the line>``: both quote the received
  line with its terminator, so their reply spans two lines (`_drain_quoted`). [prawn_do.c;
  ``fast_serial.c`` ``fast_serial_read_until`` keeps the LF]
- Specifications: labscript-suite/labscript-devices ``docs/source/devices/prawndo.rst`` and
  ``labscript_devices/PrawnDO/labscript_devices.py`` (``max_instructions = 30000``,
  ``clock_resolution = 10e-9``, ``minimum_duration = 50e-9``, ``input_response_time``
  50 ns, ``trigger_minimum_duration`` 160 ns).

A reply other than the expected one raises `InstrumentError` carrying the unit's text; an
unreadable ``sts``/``gto``/``ver`` reply is `ReplyError`; no reply is `InstrumentTimeout`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pymeasure.instruments import Instrument

from ionclock.drivers.common import LinkMixin
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError

#: Instructions the unit holds (prawn_do.c MAX_INSTR; labscript's ``max_instructions``).
MAX_INSTRUCTIONS = 30000
#: Fewest clock cycles an instruction lasts (reps 1-4 are refused: prawn_do.c).
MIN_REPS = 5
MAX_REPS = 2**32 - 1
CLOCK_HZ = 100e6
#: The oldest firmware whose ``adm`` takes a start address and answers ``ready``.
MIN_VERSION = (1, 3, 0)
#: Run status codes (``sts``).
RUN_STATUS = {0: "stopped", 1: "transition_to_running", 2: "running", 3: "abort_requested",
              4: "aborting", 5: "aborted", 6: "transition_to_stop"}
_STATUS = re.compile(r"run-status:(\d) clock-status:(\d)\Z")
_VERSION = re.compile(r"Version: (\d+)\.(\d+)\.(\d+)\Z")
#: Replies that quote the command line with its CR LF: one more line follows.
_QUOTING = ("Cannot execute command", "Invalid command:")


@dataclass(frozen=True)
class PrawnStatus:
    """The parsed ``sts`` reply."""

    run: int
    clock: int

    @property
    def run_name(self) -> str:
        """The run status by name (`RUN_STATUS`)."""
        return RUN_STATUS.get(self.run, "unknown")


def parse_status(reply: str, instrument: str = "PrawnDO") -> PrawnStatus:
    """Parse ``run-status:2 clock-status:0``; else `ReplyError` (empty: `InstrumentTimeout`)."""
    m = _STATUS.match(reply)
    if m is None:
        if not reply:
            raise InstrumentTimeout(instrument, "no reply to sts")
        raise ReplyError(instrument, f"bad sts reply {reply!r}")
    return PrawnStatus(int(m.group(1)), int(m.group(2)))


def parse_version(reply: str, instrument: str = "PrawnDO") -> tuple[int, int, int]:
    """Parse ``Version: 1.3.0`` into (1, 3, 0); else `ReplyError`."""
    m = _VERSION.match(reply)
    if m is None:
        if not reply:
            raise InstrumentTimeout(instrument, "no reply to ver")
        raise ReplyError(instrument, f"bad ver reply {reply!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def parse_outputs(reply: str, instrument: str = "PrawnDO") -> int:
    """Parse a ``gto`` reply (hex, e.g. ``a5``) into the 16-bit output word."""
    text = reply.strip()
    if not text or len(text) > 4 or not all(c in "0123456789abcdefABCDEF" for c in text):
        if not reply:
            raise InstrumentTimeout(instrument, "no reply to gto")
        raise ReplyError(instrument, f"bad gto reply {reply!r}")
    return int(text, 16)


def pack_instructions(instructions: Iterable[tuple[int, int]]) -> bytes:
    """The ``adm`` block: per instruction ``<u2`` output word, ``<u4`` reps (checked).

    A word outside 0..0xFFFF or reps other than 0 or 5..2**32-1 is a `ValueError` (the unit
    would set reps 1-4 to 0, a wait).
    """
    out = bytearray()
    for i, (word, reps) in enumerate(instructions):
        if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word <= 0xFFFF:
            raise ValueError(f"instruction {i}: output word must be 0..0xFFFF, got {word!r}")
        if (isinstance(reps, bool) or not isinstance(reps, int)
                or not (reps == 0 or MIN_REPS <= reps <= MAX_REPS)):
            raise ValueError(f"instruction {i}: reps must be 0 or {MIN_REPS}..{MAX_REPS}, "
                             f"got {reps!r}")
        out += struct.pack("<HI", word, reps)
    return bytes(out)


class PrawnDO(LinkMixin, Instrument):
    """PrawnDO 16-output pattern generator on its USB serial port.

    Parameters
    ----------
    adapter:
        A pymeasure adapter or a serial resource (``/dev/serial/by-id/usb-...``).
    name:
        Used in error messages.
    """

    write_termination = "\r\n"
    read_termination = "\r\n"
    # USB CDC: the baud rate is not used on the wire; blacs_workers.py opens it at 10 MBd
    serial_settings = {"baudrate": 10_000_000, "bytesize": 8, "parity": "N", "stopbits": 1,
                       "timeout": 1.0}

    __getattribute__ = object.__getattribute__   # no dynamic properties (decision 0100)

    def __init__(self, adapter, name: str = "PrawnDO", **kwargs):
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.instructions_loaded = 0

    # --- the exchange ----------------------------------------------------------------------
    def _ask(self, command: str) -> str:
        self.write(command)
        return self.read()

    def _drain_quoted(self, reply: str) -> str:
        """A reply quoting the command (with its CR LF) has a second line: read it too."""
        if reply.startswith(_QUOTING):
            reply = reply + "\r\n" + self.read()
        return reply

    def _ok(self, command: str, expected: str = "ok") -> None:
        reply = self._ask(command)
        if reply != expected:
            if not reply:
                raise InstrumentTimeout(self.name, f"no reply to {command.split()[0]}")
            raise InstrumentError(self.name, self._drain_quoted(reply).strip(),
                                  code=command.split()[0])

    # --- queries ---------------------------------------------------------------------------
    def version(self) -> tuple[int, int, int]:
        """The firmware version (``ver``), e.g. (1, 3, 0)."""
        return parse_version(self._ask("ver"), self.name)

    def status(self) -> PrawnStatus:
        """Run and clock status (``sts``)."""
        return parse_status(self._ask("sts"), self.name)

    def output_state(self) -> int:
        """The 16 outputs now (``gto``), bit n = output n."""
        reply = self._ask("gto")
        if reply.startswith(_QUOTING):
            raise InstrumentError(self.name, self._drain_quoted(reply).strip(), code="gto")
        return parse_outputs(reply, self.name)

    # --- actions ---------------------------------------------------------------------------
    def manual(self, word: int) -> None:
        """Set the outputs to `word` (0..0xFFFF) now (``man``; stopped or aborted only)."""
        if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word <= 0xFFFF:
            raise ValueError(f"output word must be 0..0xFFFF, got {word!r}")
        self._ok(f"man {word:04x}")

    def clear(self) -> None:
        """Empty the instruction memory (``cls``)."""
        self._ok("cls")
        self.instructions_loaded = 0

    def load(self, instructions) -> int:
        """Replace the program: ``cls``, then ``adm 0 <n>`` and its binary block; returns n.

        `instructions`: (output word, reps) pairs; reps in clock cycles (10 ns at 100 MHz),
        0 for an indefinite wait, and the program's end two 0 reps in a row (the stop).
        Checked before a byte is written (`pack_instructions`, at most 30,000).
        """
        instructions = list(instructions)
        if not instructions:
            raise ValueError("a program needs at least one instruction")
        if len(instructions) > MAX_INSTRUCTIONS:
            raise ValueError(f"{len(instructions)} instructions: the unit holds "
                             f"{MAX_INSTRUCTIONS}")
        block = pack_instructions(instructions)
        self.clear()
        self._ok(f"adm 0 {len(instructions):x}", expected="ready")
        self.adapter.write_bytes(block)
        reply = self.read()
        if reply != "ok":
            if not reply:
                raise InstrumentTimeout(self.name, "no reply after the adm block")
            raise InstrumentError(self.name, reply, code="adm")
        self.instructions_loaded = len(instructions)
        return len(instructions)

    def run(self) -> None:
        """Start the program on the next hardware trigger (``run``)."""
        self._ok("run")

    def software_run(self) -> None:
        """Start the program now (``swr``)."""
        self._ok("swr")

    def abort(self) -> None:
        """Stop a running program (``abt``); the outputs keep their state."""
        self._ok("abt")

    def set_clock(self, frequency_hz: float = CLOCK_HZ, external: bool = False) -> None:
        """The system clock (``clk <0|1> <Hz>``): internal, or external on GPIO 20 (Hz)."""
        if not 0 < frequency_hz <= 133e6:
            raise ValueError(f"clock frequency must be within (0, 133e6] Hz, got "
                             f"{frequency_hz!r}")
        self._ok(f"clk {1 if external else 0} {round(frequency_hz)}")

    def _ping_query(self) -> bool:
        return self.version() >= MIN_VERSION
