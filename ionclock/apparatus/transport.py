"""The suite's transports: an in-process byte-stream link, and VISA with the suite's errors.

`LoopbackAdapter` is a pymeasure `Adapter` that hands a driver's bytes to any object that
behaves like a serial line (``write(bytes)``, ``read_available() -> bytes``), such as a
simulated instrument. The driver cannot tell it from a real port: it writes the same command
strings with the same terminators, and reads replies up to the same read terminator. The
registry is the only place that connects one to a twin (STYLE §1).

`VisaLinkAdapter` is pymeasure's `VISAAdapter` whose link failures are the suite's errors:
a VISA timeout is `InstrumentTimeout`, any other VISA I/O error (connection lost, session
closed) is `LinkError`. pyvisa's `VisaIOError` cannot cross a SimPy process boundary: SimPy
hands a waiting process a copy, ``type(e)(*e.args)``, and ``VisaIOError(message)`` fails in
its own constructor (``TypeError: %d format: a real number is required, not str``); nor is it
an `IonclockError` or `OSError`, the errors the servo holds over on. The registry opens every
VISA resource through it.
"""

from __future__ import annotations

from typing import Any, NoReturn, Protocol

from pymeasure.adapters import Adapter, VISAAdapter
from pyvisa.constants import BufferOperation, StatusCode
from pyvisa.errors import InvalidSession, VisaIOError

from ionclock.errors import InstrumentTimeout, IonclockError


class LinkError(IonclockError, ConnectionError):
    """The link to an instrument failed (connection lost, session closed, I/O error).

    One message argument only, so that SimPy's copy of it, ``type(e)(*e.args)``, works.
    """


class ByteStream(Protocol):
    """What a loopback peer offers: bytes in, bytes out, no blocking."""

    def write(self, data: bytes) -> None:
        """Accept bytes from the host (the device's receive line)."""

    def read_available(self) -> bytes:
        """Return (and consume) every byte the device has sent so far."""

    # Optional: ``exchange(data) -> bytes`` (`write` then `read_available` in one call), and
    # ``shortcut(data) -> bytes | None``: the reply to a whole line the peer answers at once
    # when nothing else is queued, else None (``ionclock.sim_instruments.base.ShortcutLines``).


class LoopbackAdapter(Adapter):
    """pymeasure adapter over an in-process `ByteStream` peer.

    Parameters
    ----------
    peer:
        The byte-stream device.
    write_termination, read_termination:
        As on a VISA resource; ``read_termination=""`` reads everything available.
    name:
        Used in timeout messages.
    """

    def __init__(
        self,
        peer: ByteStream,
        write_termination: str = "\n",
        read_termination: str = "\n",
        name: str = "loopback",
        encoding: str = "ascii",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.peer = peer
        self.write_termination = write_termination
        self.read_termination = read_termination
        self.name = name
        self.encoding = encoding
        self._buffer = b""
        self._term = read_termination.encode(encoding)
        self._term_cut = -len(self._term) or None   # slice end that drops the terminator
        # Short one-line replies met so far, bytes -> text: a unit's replies are a few
        # (``OK``, an error code, a count), so the per-cycle exchange mostly skips the
        # terminator checks and the decoding (docs/decisions/0100-lean-hot-paths.md)
        self._lines: dict[bytes, str] = {}
        # A twin's write-then-read in one call (`SimInstrument.exchange`), when it has one,
        # and its reply to a per-cycle line without the generic framing (`ShortcutLines`)
        self._peer_exchange = getattr(peer, "exchange", None)
        self._peer_shortcut = getattr(peer, "shortcut", None)

    def _write(self, command: str, **kwargs) -> None:
        self.peer.write((command + self.write_termination).encode(self.encoding))

    def exchange(self, command: str) -> str:
        """Write one command line and read one reply line (`_write` inlined, then `_read`).

        The drivers' per-cycle path (``ionclock.drivers.common.line_exchange``): an
        in-process peer has answered by the time `write` returns.
        """
        data = (command + self.write_termination).encode(self.encoding)
        if self._buffer:
            self.peer.write(data)
            return self._read()
        shortcut = self._peer_shortcut
        reply = None if shortcut is None else shortcut(data)
        if reply is None:
            peer_exchange = self._peer_exchange
            if peer_exchange is None:
                self.peer.write(data)
                return self._read()
            reply = peer_exchange(data)
        line = self._lines.get(reply)
        if line is not None:   # a whole line met before: the usual case
            return line
        term = self._term
        if term and reply.endswith(term) and reply.count(term) == 1:
            line = reply[:self._term_cut].decode(self.encoding)   # one whole line
            if len(reply) <= 16:
                lines = self._lines
                if len(lines) >= 256:
                    lines.clear()
                lines[reply] = line
            return line
        self._buffer = reply
        return self._read()

    def _write_bytes(self, content: bytes, **kwargs) -> None:
        self.peer.write(content)

    def _fill(self) -> None:
        self._buffer += self.peer.read_available()

    def _read(self, **kwargs) -> str:
        term = self._term
        buf = self._buffer
        idx = buf.find(term) if term and buf else -1
        if idx < 0:
            buf = buf + self.peer.read_available() if buf else self.peer.read_available()
            if not term:
                self._buffer = b""
                return buf.decode(self.encoding)
            idx = buf.find(term)
            if idx < 0:
                # Nothing more can arrive: an in-process peer answers synchronously.
                self._buffer = buf
                raise InstrumentTimeout(self.name)
        self._buffer = buf[idx + len(term):]
        return buf[:idx].decode(self.encoding)

    def _read_bytes(self, count: int, break_on_termchar: bool, **kwargs) -> bytes:
        self._fill()
        if count < 0:
            data, self._buffer = self._buffer, b""
            return data
        if len(self._buffer) < count:
            raise InstrumentTimeout(self.name)
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def flush_read_buffer(self) -> None:
        self._fill()
        self._buffer = b""

    def close(self) -> None:
        close = getattr(self.peer, "close", None)
        if close is not None:
            close()


class VisaLinkAdapter(VISAAdapter):
    """pymeasure's `VISAAdapter` raising the suite's link errors instead of pyvisa's.

    A VISA timeout becomes `InstrumentTimeout`, every other `VisaIOError` (and
    `InvalidSession`, a closed session) `LinkError`; both chain the original. Errors of the
    operating system (a reset socket: `OSError`) pass unchanged. The calls that succeed cost
    nothing more (a ``try`` block).
    """

    def __init__(self, resource_name: Any, visa_library: str = "", name: str = "",
                 **kwargs: Any):
        self.name = name or str(resource_name)
        try:
            super().__init__(resource_name, visa_library=visa_library, **kwargs)
        except (VisaIOError, InvalidSession) as err:
            self._raise(err)

    def _raise(self, err: Exception) -> NoReturn:
        if isinstance(err, VisaIOError) and err.error_code == StatusCode.error_timeout:
            raise InstrumentTimeout(self.name, f"VISA timeout ({err.abbreviation})") from err
        raise LinkError(f"{self.name}: {err}") from err

    def _write(self, command: str, **kwargs: Any) -> None:
        try:
            self.connection.write(command, **kwargs)
        except (VisaIOError, InvalidSession) as err:
            self._raise(err)

    def _write_bytes(self, content: bytes, **kwargs: Any) -> None:
        try:
            self.connection.write_raw(content, **kwargs)
        except (VisaIOError, InvalidSession) as err:
            self._raise(err)

    def _read(self, **kwargs: Any) -> str:
        try:
            return self.connection.read(**kwargs)
        except (VisaIOError, InvalidSession) as err:
            self._raise(err)

    def _read_bytes(self, count: int, break_on_termchar: bool = False, **kwargs: Any) -> bytes:
        try:
            return super()._read_bytes(count, break_on_termchar, **kwargs)
        except (VisaIOError, InvalidSession) as err:
            self._raise(err)

    def flush_read_buffer(self) -> None:
        """Discard what the input buffer holds (a stale reply must not pass for the next)."""
        connection = self.connection
        try:
            try:
                connection.flush(BufferOperation.discard_read_buffer)
                connection.flush(BufferOperation.discard_receive_buffer)
            except NotImplementedError:   # pyvisa-py's sockets: read what is there
                timeout = connection.timeout
                connection.timeout = 0
                try:
                    VISAAdapter._read_bytes(self, -1)
                finally:
                    connection.timeout = timeout
        except (VisaIOError, InvalidSession) as err:
            self._raise(err)
