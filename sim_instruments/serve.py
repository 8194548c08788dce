"""Serve a twin over a real OS channel: a pseudo-terminal (serial) or loopback TCP (LAN).

Used by the tier-2 tests and by `ionclock twin-serve`, so that real pyserial and pyvisa-py
reach a twin exactly as they reach a lab instrument. Each server runs one explicit thread,
started by `start()` and joined by `close()`; the twin is only touched from that thread
while it is served, under `lock`, so a SimPy world may be advanced under the same lock
(`advance`, called under the lock before each exchange, brings the world to the present).

Faults of the link itself, for `ionclock twin-serve` and the tests:

- `drop()`: the server side of the link closes. TCP: the client's connection is closed (the
  port keeps listening); pty: the pty is closed (the client reads a hang-up) and a new one
  opened, its path given to the stable symlink `link` when there is one.
- `hang(seconds)`: the unit stops answering for that long; what arrives meanwhile is lost,
  as on a unit that froze. (`device.faults.timeout` instead keeps acting on commands and
  only stops the replies.)

A pty is served to one client after another, as a serial port is to one program after
another: the server keeps only the master side open, so it sees when the last client has
closed the slave (a read gives EIO), and then puts the pty's settings back as a fresh pty
has them. Without that, on the kernel this was found on (Linux 6.18), the second client of
a Lake Shore 218 pty could not open it: the kernel reports 8 bits without parity whatever
the first client set (7O1), and then refuses 7O1 again (``tcsetattr`` EINVAL in pyserial).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import termios
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from ionclock.sim_instruments.base import LinkDown, SimInstrument


class _Server:
    def __init__(self, device: SimInstrument, lock: threading.Lock | None = None,
                 advance: Callable[[], None] | None = None):
        self.device = device
        self.lock = lock or threading.Lock()
        self.advance = advance
        self.hang_until = -1.0   # time.monotonic() until which nothing is answered
        self.drops = 0
        self._drop = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def hang(self, seconds: float) -> None:
        """Stop answering for `seconds` (input meanwhile is discarded)."""
        self.hang_until = time.monotonic() + seconds

    @property
    def hung(self) -> bool:
        """True while a `hang` lasts."""
        return time.monotonic() < self.hang_until

    def drop(self) -> None:
        """Close the server side of the link (done by the serving thread within ~50 ms)."""
        self._drop.set()

    def _exchange(self, data: bytes) -> bytes:
        with self.lock:
            if self.hung:
                return b""
            if self.advance is not None:
                self.advance()
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
    """The twin on the slave side of a pty; `port` is the path pyserial opens.

    With `link`, a symlink at that path names the current pty (re-pointed on `drop()`), so a
    client that reopens `link` finds the new one; a server started again with the same
    `link` (e.g. `ionclock twin-serve` restarted) is found at the same path.
    """

    def __init__(self, device: SimInstrument, lock: threading.Lock | None = None,
                 advance: Callable[[], None] | None = None, link: str | Path | None = None):
        super().__init__(device, lock, advance)
        self.link = Path(link) if link is not None else None
        self._open()

    def _open(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self._fresh = termios.tcgetattr(slave)   # what each new client finds (see above)
        self.pty = os.ttyname(slave)
        os.close(slave)   # only clients hold it: the master then sees the last one close
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.pty)
            os.replace(tmp, self.link)   # atomic: a client sees the old pty or the new one

    @property
    def port(self) -> str:
        """The path a client opens: the stable `link` when there is one, else the pty."""
        return str(self.link) if self.link is not None else self.pty

    @property
    def slave(self) -> int:
        """An fd for the pty's line settings (``termios.tcgetattr``): the master's.

        Linux's termios calls on a pty master act on its slave side; the server itself keeps
        no slave open (see the module docstring).
        """
        return self.master

    def _close_fds(self) -> None:
        try:
            os.close(self.master)
        except OSError:
            pass

    def _idle(self) -> None:
        """No client holds the pty: its settings back to a fresh pty's, then a short wait."""
        try:
            if termios.tcgetattr(self.master) != self._fresh:
                termios.tcsetattr(self.master, termios.TCSANOW, self._fresh)
        except termios.error:
            pass
        self._stop.wait(0.05)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._drop.is_set():
                self._drop.clear()
                self._close_fds()
                self.drops += 1
                self._open()
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError as err:
                if err.errno != errno.EIO:
                    return
                self._idle()   # no client (none yet, or the last one closed the pty)
                continue
            out = self._exchange(data)
            if out:
                os.write(self.master, out)

    def close(self) -> None:
        super().close()
        self._close_fds()
        if self.link is not None and self.link.is_symlink() and \
                os.readlink(self.link) == self.pty:
            self.link.unlink()   # no symlink left to a pty that may be handed out again


class TcpServer(_Server):
    """The twin behind a loopback TCP port (one client at a time, like most LAN units).

    `port` 0 takes any free port; a given port is bound again after a restart
    (``SO_REUSEADDR``).
    """

    def __init__(self, device: SimInstrument, lock: threading.Lock | None = None,
                 host: str = "127.0.0.1", port: int = 0, greeting: bytes = b"",
                 advance: Callable[[], None] | None = None):
        super().__init__(device, lock, advance)
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
            self._drop.clear()   # nothing to drop without a client
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
            if self._drop.is_set():
                self._drop.clear()
                self.drops += 1
                return
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
