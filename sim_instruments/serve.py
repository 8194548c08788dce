"""Serve a twin over a real OS channel: a pseudo-terminal (serial) or loopback TCP (LAN).

Used by the tier-2 tests and by `ionclock twin-serve`, so that real pyserial and pyvisa-py
reach a twin exactly as they reach a lab instrument. Each server runs one explicit thread,
started by `start()` and joined by `close()`; the twin is only touched from that thread
while it is served, under `lock`, so a SimPy world may be advanced under the same lock.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import tty

from ionclock.sim_instruments.base import LinkDown, SimInstrument


class _Server:
    def __init__(self, device: SimInstrument, lock: threading.Lock | None = None):
        self.device = device
        self.lock = lock or threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def _exchange(self, data: bytes) -> bytes:
        with self.lock:
            try:
                self.device.write(data)
                return self.device.read_available()
            except LinkDown:
                return b""

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


class PtyServer(_Server):
    """The twin on the slave side of a pty; `port` is the path pyserial opens."""

    def __init__(self, device: SimInstrument, lock: threading.Lock | None = None):
        super().__init__(device, lock)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            out = self._exchange(data)
            if out:
                os.write(self.master, out)

    def close(self) -> None:
        super().close()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class TcpServer(_Server):
    """The twin behind a loopback TCP port (one client at a time, like most LAN units)."""

    def __init__(self, device: SimInstrument, lock: threading.Lock | None = None,
                 host: str = "127.0.0.1", port: int = 0, greeting: bytes = b""):
        super().__init__(device, lock)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(4)
        self.host, self.port = self.sock.getsockname()
        self.greeting = greeting

    @property
    def resource(self) -> str:
        """The pyvisa resource string for this server."""
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    def _run(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.05)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.greeting:
                    conn.sendall(self.greeting)
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            if self.device.faults.disconnected:
                return
            out = self._exchange(data)
            if out:
                try:
                    conn.sendall(out)
                except OSError:
                    return

    def close(self) -> None:
        super().close()
        self.sock.close()
