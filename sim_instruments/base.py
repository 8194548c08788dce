"""Base of every simulated instrument: a byte-stream front end over the world.

A twin receives the very bytes a driver writes, splits them at the device's input
terminator, parses each line with the same grammar as the real unit, and queues the reply
bytes, with the real unit's terminators, echo and prompt. A command changes world state at
``world.env.now``; a query samples it at ``world.env.now`` (STYLE §4).

Time: a twin acts at ``world.env.now``, after every TTL edge of the sequencer due by then has
reached the instruments (``world.settle()``, called before any byte is handled), so a twin
never answers with what has not happened yet and never acts before what came earlier.

Faults are part of the twin: `faults.timeout` (the unit stops answering), `faults.garble`
(replies are corrupted), `faults.disconnected` (the link is down: writes raise), and
`power_cycle()` (the unit forgets its settings).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


class LinkDown(ConnectionError):
    """Raised by a twin whose link is down (a pulled cable, a powered-off unit)."""


@dataclass
class Faults:
    """Switchable faults of one simulated instrument."""

    timeout: bool = False
    garble: bool = False
    disconnected: bool = False


class SimInstrument:
    """A line-oriented instrument twin.

    Subclasses set `input_terminator` / `output_terminator` and implement `handle(line)`,
    returning the reply text (without terminator) or None for no reply. A `CommandError`
    raised by `handle` is turned into the device's own error reply by `error_reply`.
    """

    input_terminator: bytes = b"\n"
    output_terminator: bytes = b"\n"
    max_line: int = 4096
    name: str = "sim"

    def __init__(self, world=None, seed: int | None = 0):
        self.world = world
        self._settle = getattr(world, "settle", None)
        self.faults = Faults()
        self._rx = b""
        self._tx = bytearray()
        self._garble_rng = random.Random(seed)
        self.transcript: list[tuple[str, str | None]] = []
        self.record_transcript = False
        self.reset_settings()

    # --- settings -------------------------------------------------------------------
    def reset_settings(self) -> None:
        """Put the unit in its power-on state (override)."""

    def power_cycle(self) -> None:
        """Simulate a power cycle: input and output dropped, settings back to power-on."""
        self._rx = b""
        self._tx.clear()
        self.reset_settings()

    # --- byte stream ------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Receive bytes from the host."""
        if self.faults.disconnected:
            raise LinkDown(f"{self.name}: link down")
        if self._settle is not None:
            self._settle()
        self._rx += data
        term = self.input_terminator
        while True:
            idx = self._rx.find(term)
            if idx < 0:
                if len(self._rx) > self.max_line:
                    self._rx = b""
                    self._send(self.line_too_long())
                return
            raw, self._rx = self._rx[:idx], self._rx[idx + len(term):]
            self._dispatch(raw)

    def exchange(self, data: bytes) -> bytes:
        """`write(data)`, then `read_available()`: the in-process link's per-command path.

        Twins whose per-cycle lines have a shortcut return its reply directly (when nothing
        else is queued before it); the bytes are the same either way.
        """
        self.write(data)
        return self.read_available()

    def read_available(self) -> bytes:
        """Return and consume every reply byte queued so far."""
        if self.faults.disconnected:
            raise LinkDown(f"{self.name}: link down")
        out = bytes(self._tx)
        self._tx.clear()
        return out

    def close(self) -> None:
        """Nothing to release for an in-process twin."""

    def _dispatch(self, raw: bytes) -> None:
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            self._send(self.bad_byte())
            return
        self.before_reply(line)
        try:
            reply = self.handle(line)
        except CommandError as err:
            reply = self.error_reply(err)
        if self.record_transcript:
            self.transcript.append((line, reply))
        if self.faults.timeout:
            return
        if reply is not None:
            self._send(reply)
        self.after_reply(line)

    def _send(self, reply: str | None) -> None:
        if reply is None:
            return
        data = reply.encode("ascii") + self.output_terminator
        if self.faults.garble and data:
            data = self._corrupt(data)
        self._tx += data

    def _corrupt(self, data: bytes) -> bytes:
        rng = self._garble_rng
        kind = rng.randrange(3)
        body, term = data[: -len(self.output_terminator)], self.output_terminator
        if kind == 0 and body:  # truncated
            return body[: rng.randrange(len(body))] + term
        if kind == 1 and body:  # a flipped character
            i = rng.randrange(len(body))
            return body[:i] + bytes([rng.choice(b"#@!~%")]) + body[i + 1:] + term
        return b"\x7f" + body + term  # line noise in front

    # --- hooks for subclasses ---------------------------------------------------------------
    def handle(self, line: str) -> str | None:
        """Parse one command line and return the reply text (override)."""
        raise NotImplementedError

    def before_reply(self, line: str) -> None:
        """Emit anything the unit sends before its reply (an echo, say)."""

    def after_reply(self, line: str) -> None:
        """Emit anything the unit sends after its reply (a prompt, say)."""

    def error_reply(self, err: CommandError) -> str | None:
        """The unit's reply to a rejected command (override)."""
        return None

    def line_too_long(self) -> str | None:
        """The unit's reply to an over-long line (override)."""
        return None

    def bad_byte(self) -> str | None:
        """The unit's reply to a non-ASCII byte (override)."""
        return None


class CommandError(Exception):
    """Raised inside `handle` for a command the real unit rejects; `code` is its error code."""

    def __init__(self, code: str, message: str = ""):
        self.code = code
        super().__init__(message or code)


class ShortcutLines:
    """Mixin (before `SimInstrument`) for a twin whose per-cycle lines have a shortcut.

    The twin's `_fast(data)` returns the reply bytes of a line it handles itself (the same
    grammar as its `handle`, without the generic framing), or None for the generic path; it
    returns None whenever a reply is still queued (``_tx``), so that no reply overtakes one
    sent before it. `exchange` hands such a reply straight back; a link may call it directly
    as `shortcut` (`ionclock.apparatus.transport.LoopbackAdapter`: one call less per line).
    """

    def _fast(self, data: bytes) -> bytes | None:   # pragma: no cover - overridden
        return None

    @property
    def shortcut(self):
        """`_fast`, bound: ``shortcut(data) -> bytes | None`` (a link's direct call).

        The reply bytes of a whole shortcut line when nothing else is queued, else None (then
        `write` and `read_available`).
        """
        return self._fast

    def write(self, data: bytes) -> None:
        """Receive bytes: a shortcut line's reply is queued, anything else goes the usual way."""
        reply = self._fast(data)
        if reply is None:
            super().write(data)
        else:
            self._tx += reply

    def exchange(self, data: bytes) -> bytes:
        """`write` then `read_available`; a shortcut line's reply comes back directly."""
        if not self._tx:
            reply = self._fast(data)
            if reply is not None:
                return reply
        return super().exchange(data)
