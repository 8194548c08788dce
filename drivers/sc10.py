"""Thorlabs SC10 optical beam shutter controller (RS-232 9600 8N1, CR, echo + ``> `` prompt).

Framing (SC10 manual, "Computer interface"; PROTOCOLS.md): every command line ends with CR;
the unit echoes the command and CR, then, for a query, the value and CR, then the prompt
``"> "`` (no terminator). A rejected command answers ``CMD_NOT_DEFINED`` or
``CMD_ARG_INVALID`` in place of a value. Because the prompt has no terminator, this driver
reads byte by byte up to the prompt rather than by lines, and checks the echo: a missing
echo or prompt, a stray line, or a non-ASCII byte is a `ReplyError`; no prompt in time is an
`InstrumentTimeout`.

The store commands ``savp``, ``save``, ``resp`` and ``default`` (`STORE_COMMANDS`) may answer
a value line between echo and prompt: the SC10 manual's command table gives them no return
value (as quoted by the public ``ThorlabsSC10`` pyvisa class), but InstrumentKit reads one
with ``query()`` and its tests pin echo, ``1``, prompt (github instrumentkit/InstrumentKit,
src/instruments/thorlabs/sc10.py, tests/test_thorlabs/test_thorlabs_sc10.py). This driver
takes both: after those four commands at most one value line is accepted (and ignored, as
InstrumentKit's ``check_cmd`` counts any reply but an error word as success); after any other
setting a value line is still a `ReplyError`. An error word anywhere after the echo, bare
(``CMD_ARG_INVALID``, as ``check_cmd`` compares it) or in the unit's sentence (``Command
error CMD_NOT_DEFINED``, as public SC10/LCC25 scripts quote it), raises `InstrumentError`
with the word as code. See docs/decisions/0301-sc10-framing-and-close.md.

``ens`` TOGGLES the shutter enable, so `open()` and `close()` read ``ens?`` first and send
``ens`` only when the state differs (idempotent), then read it back. For this driver
`close()` means the shutter (the beam is blocked); `disconnect()` releases the port and
`shutdown()` closes the shutter and then releases the port.
"""

from __future__ import annotations

from typing import Any

from pymeasure.instruments import Instrument
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from ionclock.drivers.trap_rf import StrictRepliesMixin
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError

PROMPT = b"> "
ERROR_REPLIES = ("CMD_NOT_DEFINED", "CMD_ARG_INVALID")
#: Commands after which the unit may send one value line (module docstring).
STORE_COMMANDS = frozenset({"savp", "save", "resp", "default"})
MAX_REPLY = 256

MODES = {"manual": 1, "auto": 2, "single": 3, "repeat": 4, "external": 5}


def _one_of(codes, query: str):
    """A reply check: the code must be one the map knows, else `ReplyError` (not KeyError)."""
    allowed = frozenset(codes)

    def check(code: int) -> int:
        if code not in allowed:
            raise ReplyError("SC10", f"{query} answered {code}, not one of {sorted(allowed)}")
        return code
    return check


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000.0))


class SC10(StrictRepliesMixin, Instrument):
    """Thorlabs SC10 shutter controller; times in seconds (ms on the wire, 0 to 999.999 s)."""

    # No dynamic properties here: pymeasure's attribute hook only guards their names, and
    # skipping it saves ~0.3 us per attribute access (docs/decisions/0100).
    __getattribute__ = object.__getattribute__

    write_termination = "\r"
    read_termination = "\r"
    serial_settings = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1,
                       "timeout": 1.0}

    mode = Instrument.control(
        "mode?", "mode=%d",
        """Control the operating mode: 'manual', 'auto', 'single', 'repeat', 'external'.""",
        validator=strict_discrete_set, values=MODES, map_values=True, cast=int,
        get_process=_one_of(MODES.values(), "mode?"))

    trigger = Instrument.control(
        "trig?", "trig=%d",
        """Control the trigger source: 'internal' (0) or 'external' (1).""",
        validator=strict_discrete_set, values={"internal": 0, "external": 1},
        map_values=True, cast=int, get_process=_one_of((0, 1), "trig?"))

    trigger_out = Instrument.control(
        "xto?", "xto=%d",
        """Control what the trigger output follows: 'shutter' (0) or 'controller' (1).""",
        validator=strict_discrete_set, values={"shutter": 0, "controller": 1},
        map_values=True, cast=int, get_process=_one_of((0, 1), "xto?"))

    open_time = Instrument.control(
        "open?", "open=%d",
        """Control the open time in s (float, 0 to 999.999; 1 ms resolution).""",
        validator=strict_range, values=(0.0, 999.999), set_process=_ms,
        get_process=lambda ms: ms / 1000.0, cast=int)

    shut_time = Instrument.control(
        "shut?", "shut=%d",
        """Control the shut time in s (float, 0 to 999.999; 1 ms resolution).""",
        validator=strict_range, values=(0.0, 999.999), set_process=_ms,
        get_process=lambda ms: ms / 1000.0, cast=int)

    repeat_count = Instrument.control(
        "rep?", "rep=%d",
        """Control the repeat count of 'repeat' mode (int, 1 to 99).""",
        validator=strict_discrete_set, values=range(1, 100), cast=int)

    def __init__(self, adapter: Any, name: str = "SC10 shutter", **kwargs: Any):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)

    # --- framing ------------------------------------------------------------------------------
    def _read_to_prompt(self) -> bytes:
        # byte by byte (the reply has no terminator, only the prompt), through the adapter's
        # transport read: its public read_bytes() adds a DEBUG log call per byte (decision
        # 0100); the exchange is in the transcript of a twin or a spy:// link all the same
        read = self.adapter._read_bytes
        buf = bytearray()
        while not buf.endswith(PROMPT):
            chunk = read(1, False)
            if not chunk:
                raise InstrumentTimeout(self.name, "no prompt before the timeout")
            buf += chunk
            if len(buf) > MAX_REPLY:
                raise ReplyError(self.name, f"no prompt within {MAX_REPLY} bytes")
        return bytes(buf[:-len(PROMPT)])

    def _exchange(self, command: str, query: bool) -> str | None:
        # Drop anything stale (a late prompt after a timeout, line noise) so that the reply
        # read below belongs to this command.
        self.adapter.flush_read_buffer()
        super().write(command)
        raw = self._read_to_prompt()
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ReplyError(self.name, f"non-ASCII reply {raw!r}") from None
        lines = text.split("\r")
        if lines[-1] != "":
            raise ReplyError(self.name, f"prompt not after a line end in {text!r}")
        lines = lines[:-1]
        if not lines or lines[0] != command:
            raise ReplyError(self.name, f"echo {lines[:1]!r} does not match {command!r}")
        rest = lines[1:]
        for line in rest:
            for code in ERROR_REPLIES:
                if code in line:
                    raise InstrumentError(self.name, f"{command!r} rejected", code=code)
        if query:
            if len(rest) != 1 or not rest[0]:
                raise ReplyError(self.name, f"expected one value after {command!r}, got {rest!r}")
            return rest[0]
        if command in STORE_COMMANDS and len(rest) == 1 and rest[0]:
            return None  # the value line some units send (InstrumentKit: "1"); no error word
        if rest:
            raise ReplyError(self.name, f"unexpected reply {rest!r} to {command!r}")
        return None

    def write(self, command: str, **kwargs: Any) -> None:
        """Send a setting command; consume its echo, a store command's value line, the prompt.

        An error word raises `InstrumentError`; any other unexpected line `ReplyError`.
        """
        self._exchange(command, query=False)

    def ask(self, command: str, query_delay: float | None = None) -> str:
        """Send a query; return its value line (echo and prompt consumed, errors raise)."""
        value = self._exchange(command, query=True)
        assert value is not None
        return value

    def _flag(self, command: str) -> bool:
        reply = self.ask(command).strip()
        if reply not in ("0", "1"):
            raise ReplyError(self.name, f"{command} must answer 0 or 1, got {reply!r}")
        return reply == "1"

    # --- state --------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether the shutter output is enabled (``ens?``; in manual mode: open)."""
        return self._flag("ens?")

    @property
    def is_closed(self) -> bool:
        """Whether the controller reports the shutter closed (``closed?``)."""
        return self._flag("closed?")

    @property
    def interlock_tripped(self) -> bool:
        """Whether the interlock is tripped (``interlock?``): the shutter cannot open."""
        return self._flag("interlock?")

    @property
    def identity(self) -> str:
        """Model and firmware version (``id?``)."""
        return self.ask("id?")

    # --- actions ------------------------------------------------------------------------------
    def _set_enabled(self, on: bool) -> None:
        if self.enabled != on:
            self.write("ens")  # toggles
            if self.enabled != on:
                why = " (interlock tripped)" if on and self.interlock_tripped else ""
                raise InstrumentError(self.name, f"shutter did not {'open' if on else 'close'}"
                                      f"{why}", code="ens")

    def open(self) -> None:
        """Open the shutter (manual mode): no-op if already open; verified by ``ens?``."""
        self._set_enabled(True)

    def close(self) -> None:
        """Close the shutter (manual mode): no-op if already closed; verified by ``ens?``.

        Unlike other drivers' `close()`, this keeps the link: for a shutter, "close" must
        mean the beam. `disconnect()` releases the port; `shutdown()` does both.
        """
        self._set_enabled(False)

    def disconnect(self) -> None:
        """Release the serial connection (the shutter stays as it is)."""
        self.adapter.close()

    def shutdown(self) -> None:
        """Close the shutter (a safe state: beam blocked), then release the connection."""
        try:
            self.close()
        finally:
            self.disconnect()
            super().shutdown()

    def save(self) -> None:
        """Store mode, times and repeat count in non-volatile memory (``savp``).

        A value line in the reply (InstrumentKit: ``1``) is accepted; an error word raises.
        """
        self.write("savp")

    def save_mode(self) -> None:
        """Store trigger-out mode and baud rate in non-volatile memory (``save``).

        A value line in the reply (InstrumentKit: ``1``) is accepted; an error word raises.
        """
        self.write("save")

    def restore(self) -> None:
        """Load the stored parameters (``resp``); a value line in reply is accepted."""
        self.write("resp")

    def factory_default(self) -> None:
        """Restore the factory settings (``default``); a value line in reply is accepted."""
        self.write("default")

    def ping(self) -> bool:
        """Return True if the unit answers ``id?`` with an SC10 identity."""
        try:
            return "SC10" in self.ask("id?").upper()
        except (InstrumentError, InstrumentTimeout, OSError):
            return False
