"""A serial twin reached through ser2net (RFC 2217), as a unit on another lab PC would be.

The Novatech 409B twin is served on a pty (PtyServer); ser2net 4.x (Debian's package,
installed here when missing) runs in the foreground on loopback with a YAML connection
``telnet(rfc2217),tcp,127.0.0.1,PORT`` -> ``serialdev,/dev/pts/N``; the driver is opened
with ``ionclock.apparatus.registry.open_instrument("novatech409b", "rfc2217://127.0.0.1:PORT?...")``.

``?ign_set_control`` in the URL: ser2net does not answer pyserial's RFC 2217 SET_CONTROL
(flow control) on a ``local`` port, so pyserial would time out waiting for it
(docs/decisions/0702-ser2net-rfc2217-url.md).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import termios
import time
from pathlib import Path

import pytest
import serial.rfc2217

from ionclock.apparatus import registry
from ionclock.apparatus.resilience import InstrumentOffline
from ionclock.sim_instruments.novatech409b import SimNovatech409B
from ionclock.sim_instruments.serve import PtyServer
from ionclock.storage.store import Store

pytestmark = [
    pytest.mark.ostransport,
    # pyserial 3.5's RFC 2217 client names its reader thread with deprecated setters
    pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:setName:DeprecationWarning"),
]

SER2NET = "/usr/sbin/ser2net"


@pytest.fixture(scope="session")
def ser2net_binary() -> str:
    """The ser2net program; installed from Debian's package when missing."""
    if not Path(SER2NET).exists():
        apt = shutil.which("apt-get")
        if apt is None:
            pytest.skip("ser2net is not installed and there is no apt-get to install it")
        try:
            subprocess.run([apt, "update"], check=True, capture_output=True, timeout=300)
            subprocess.run([apt, "install", "-y", "ser2net"], check=True, capture_output=True,
                           timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
            pytest.skip(f"ser2net is not installed and apt-get could not install it: {err}")
        if not Path(SER2NET).exists():
            pytest.skip("apt-get install ser2net did not provide /usr/sbin/ser2net")
    return SER2NET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ser2net:
    """One ser2net process in the foreground, serving `device` on 127.0.0.1:`port`."""

    def __init__(self, binary: str, workdir: Path, device: str, port: int,
                 line: str = "9600n81"):
        self.binary, self.device, self.port = binary, device, port
        self.config = workdir / f"ser2net-{port}.yaml"
        self.pidfile = workdir / f"ser2net-{port}.pid"
        self.config.write_text(
            "%YAML 1.1\n---\n"
            "connection: &twin\n"
            f"    accepter: telnet(rfc2217),tcp,127.0.0.1,{port}\n"
            f"    connector: serialdev,{device},{line},local\n"
            "    options:\n"
            "      kickolduser: true\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Ser2net:
        self.proc = subprocess.Popen(
            [self.binary, "-n", "-d", "-c", str(self.config), "-P", str(self.pidfile)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError(f"ser2net exited ({self.proc.returncode}): {out}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"ser2net did not listen on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()
        self.proc = None

    @property
    def url(self) -> str:
        return f"rfc2217://127.0.0.1:{self.port}?ign_set_control"


@pytest.fixture
def served(ser2net_binary, tmp_path):
    """(twin, pty server, ser2net) for a Novatech 409B twin; the connector starts at 9600."""
    twin = SimNovatech409B(None)
    pty = PtyServer(twin).start()
    bridge = Ser2net(ser2net_binary, tmp_path, pty.port, free_port()).start()
    try:
        yield twin, pty, bridge
    finally:
        bridge.stop()
        pty.close()


def test_novatech_through_ser2net_end_to_end(served):
    twin, pty, bridge = served
    aom = registry.open_instrument("novatech409b", bridge.url)
    try:
        assert isinstance(aom.adapter.connection, serial.rfc2217.Serial)
        # RFC 2217 carried the driver's line settings to the far port: ser2net opened it at
        # 9600 baud (its config) and the driver's 19200 8N1 arrived over the telnet option.
        attrs = termios.tcgetattr(pty.slave)
        assert attrs[4] == attrs[5] == termios.B19200
        assert aom.ping()
        aom.ch_0.frequency = 80.1234567e6
        aom.ch_0.phase = 0.25
        aom.ch_2.frequency = 1.5e6
        aom.ch_2.amplitude = 0.5
        with pytest.raises(ValueError):
            aom.ch_1.amplitude = 1.2  # refused before the wire, whatever the transport
        status = aom.status()
    finally:
        aom.close()
    assert status.firmware == "21"   # the twin's firmware field (its default)
    assert twin.channel_state(0)[:2] == (pytest.approx(80.1234567e6, abs=0.05), 0.25)
    assert status.channels[0].frequency_hz == pytest.approx(80.1234567e6, abs=0.05)
    assert status.channels[2].amplitude_word == 512 == twin.applied[2][2]
    assert status.channels[1].amplitude_word == twin.applied[1][2] == 1023


def test_resilient_driver_survives_a_ser2net_restart(served, tmp_path):
    twin, pty, bridge = served
    store = Store(tmp_path / "events.sqlite", commit_interval=0.0)
    aom = registry.open_instrument(
        "novatech409b", bridge.url, key="aom", resilient=True,
        resilience={"on_event": store.event, "initial_backoff_s": 0.05,
                    "max_backoff_s": 0.4})
    try:
        aom.ch_0.frequency = 80e6
        aom.ch_1.phase = 0.5
        bridge.stop()  # the lab PC's bridge goes away ...
        with pytest.raises(InstrumentOffline):
            for _ in range(5):  # a write may still be buffered: the read then fails
                aom.ch_0.frequency = 80.5e6
        twin.power_cycle()  # ... and the unit is power-cycled meanwhile
        bridge.start()
        deadline = time.monotonic() + 30.0
        while True:
            try:
                aom.ch_0.frequency = 81e6
                break
            except InstrumentOffline as off:
                assert time.monotonic() < deadline, "not back within 30 s"
                time.sleep(off.retry_after_s)
        assert aom.online and isinstance(aom.adapter.connection, serial.rfc2217.Serial)
        assert twin.channel_state(0)[0] == 81e6
        assert twin.channel_state(1)[1] == 0.5  # restored after the power cycle
        assert not twin.echo
    finally:
        aom.disconnect()
    kinds = [(kind, source) for _, kind, source, _ in store.events()]
    assert kinds == [("instrument_offline", "aom"), ("instrument_online", "aom")]
    store.close()
