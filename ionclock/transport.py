"""Transports that are not a VISA or serial port: an in-process byte-stream link.

`LoopbackAdapter` is a pymeasure `Adapter` that hands a driver's bytes to any object that
behaves like a serial line (``write(bytes)``, ``read_available() -> bytes``), such as a
simulated instrument. The driver cannot tell it from a real port: it writes the same command
strings with the same terminators, and reads replies up to the same read terminator. The
registry is the only place that connects one to a twin (STYLE §1).
"""

from __future__ import annotations

from typing import Protocol

from pymeasure.adapters import Adapter

from ionclock.errors import InstrumentTimeout


class ByteStream(Protocol):
    """What a loopback peer offers: bytes in, bytes out, no blocking."""

    def write(self, data: bytes) -> None:
        """Accept bytes from the host (the device's receive line)."""

    def read_available(self) -> bytes:
        """Return (and consume) every byte the device has sent so far."""


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
        # A twin's write-then-read in one call (`SimInstrument.exchange`), when it has one
        self._peer_exchange = getattr(peer, "exchange", None)

    def _write(self, command: str, **kwargs) -> None:
        self.peer.write((command + self.write_termination).encode(self.encoding))

    def exchange(self, command: str) -> str:
        """Write one command line and read one reply line (`_write` inlined, then `_read`).

        The drivers' per-cycle path (``ionclock.drivers.common.line_exchange``): an
        in-process peer has answered by the time `write` returns.
        """
        data = (command + self.write_termination).encode(self.encoding)
        peer_exchange = self._peer_exchange
        if peer_exchange is None or self._buffer:
            self.peer.write(data)
            return self._read()
        reply = peer_exchange(data)
        term = self._term
        if term and reply.endswith(term) and reply.count(term) == 1:
            return reply[:self._term_cut].decode(self.encoding)   # one whole line: the usual case
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
