"""Sinks: InfluxDB (a real influxd from Debian's package), Prometheus, alarm hooks.

The `influxd` fixture installs Debian's `influxdb` package when the binary is missing and
starts a private server on a loopback port with a temporary data directory; tests skip with
the reason only when it cannot be had.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ionclock.logger.alarms import AlarmDispatcher
from ionclock.logger.sinks import InfluxSink, PrometheusSink, escape_tag, line_protocol
from ionclock.storage.store import Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_influxd() -> str | None:
    """Path of influxd, installing Debian's influxdb package if needed; None if impossible."""
    path = shutil.which("influxd")
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-q", "influxdb"],
                ["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "influxdb"]):
        subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=False)
        path = shutil.which("influxd")
        if path:
            return path
    return None


class InfluxServer:
    """A private influxd (1.x) on 127.0.0.1 with its own data directory."""

    def __init__(self, binary: str, root: Path):
        self.binary = binary
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "influxdb.conf"
        self.config.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{_free_port()}"
[meta]
  dir = "{root}/meta"
  logging-enabled = false
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[continuous_queries]
  enabled = false
""")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.root / "influxd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([self.binary, "-config", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited: {(self.root / 'influxd.log').read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                    if r.status == 204:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("influxd did not answer /ping")
        self.query("CREATE DATABASE ionclock", post=True)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def query(self, q: str, db: str = "ionclock", post: bool = False) -> dict:
        data = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ns"})
        if post:
            req = urllib.request.Request(self.url + "/query", data=data.encode(), method="POST")
        else:
            req = urllib.request.Request(self.url + "/query?" + data)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def counts(self, measurement: str = "ionclock_sample") -> dict[str, int]:
        """Points per channel tag."""
        out = self.query(f'SELECT count("value") FROM "{measurement}" GROUP BY "channel"')
        series = out["results"][0].get("series", [])
        return {s["tags"]["channel"]: s["values"][0][1] for s in series}

    def drop(self, measurement: str = "ionclock_sample") -> None:
        self.query(f'DROP MEASUREMENT "{measurement}"', post=True)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    binary = _ensure_influxd()
    if binary is None:
        pytest.skip("InfluxDB server unavailable: influxd missing and Debian's influxdb "
                    "package could not be installed (needs root and apt-get)")
    server = InfluxServer(binary, tmp_path_factory.mktemp("influxdb"))
    try:
        server.start()
    except RuntimeError as err:
        pytest.skip(f"InfluxDB server unavailable: {err}")
    yield server
    server.stop()


def _fill(path: Path, n: int, channels=("a", "b"), t0: float = 0.0) -> list[tuple]:
    rows = [(t0 + i, ch, 78.0 + 0.001 * i) for i in range(n) for ch in channels]
    with Store(path) as store:
        store.add_many("samples", rows)
    return rows


# --- line protocol --------------------------------------------------------------------
def test_line_protocol_escapes_and_timestamps():
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    line = line_protocol("m", "trap holder", "K", 1735689600.5, 79.25)
    assert line == "m,channel=trap\\ holder,unit=K value=79.25 1735689600500000000"


def test_body_skips_missing_values(tmp_path):
    sink = InfluxSink("x", tmp_path / "s.sqlite", "http://127.0.0.1:1", t0_unix=10.0)
    body = sink.body([(1.0, "a", 2.0), (2.0, "a", None), (3.0, "a", float("nan"))]).decode()
    assert body == "ionclock_sample,channel=a value=2.0 11000000000"


# --- a real InfluxDB --------------------------------------------------------------------
def test_influx_sink_delivers_everything(influxd, tmp_path):
    influxd.drop()
    path = tmp_path / "s.sqlite"
    rows = _fill(path, 3000)
    sink = InfluxSink("influxdb", path, influxd.url, t0_unix=1735689600.0,
                      units={"a": "K"}, batch=1000, interval_s=0.05).start()
    sink.stop(drain_timeout_s=30)
    assert sink.backlog() == 0
    assert influxd.counts() == {"a": 3000, "b": 3000}
    got = influxd.query('SELECT "value" FROM "ionclock_sample" WHERE "channel" = \'a\''
                        ' ORDER BY time DESC LIMIT 1')["results"][0]["series"][0]
    t_ns, value = got["values"][0]
    assert value == pytest.approx(rows[-2][2])
    assert t_ns == round((1735689600.0 + 2999) * 1e9)


def test_influx_outage_keeps_backlog_and_catches_up(influxd, tmp_path, caplog):
    influxd.drop()
    path = tmp_path / "s.sqlite"
    _fill(path, 500)
    events = []
    sink = InfluxSink("influxdb", path, influxd.url, batch=400, interval_s=0.05,
                      max_backoff_s=0.2, timeout_s=1.0,
                      on_event=lambda kind, src, **d: events.append(kind))
    caplog.set_level(logging.WARNING, "ionclock.logger.sinks")
    influxd.stop()
    try:
        sink.start()
        # Local logging goes on while the server is down: commits are never held up.
        with Store(path) as store:
            for i in range(500, 1500):
                store.add("samples", (float(i), "a", 1.0))
                store.add("samples", (float(i), "b", 2.0))
        deadline = time.monotonic() + 5
        while not events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events == ["sink_down"]
        assert sink.backlog() == 3000
        assert any("delivery failed" in r.message for r in caplog.records)
    finally:
        influxd.start()
    deadline = time.monotonic() + 30
    while sink.backlog() and time.monotonic() < deadline:
        time.sleep(0.1)
    sink.stop()
    assert events == ["sink_down", "sink_up"]
    assert influxd.counts() == {"a": 1500, "b": 1500}


def test_cursor_survives_restart_and_resends_nothing_twice(influxd, tmp_path):
    influxd.drop()
    path = tmp_path / "s.sqlite"
    _fill(path, 100)
    InfluxSink("influxdb", path, influxd.url, interval_s=0.05).start().stop()
    _fill(path, 50, t0=1000.0)
    sink = InfluxSink("influxdb", path, influxd.url, interval_s=0.05).start()
    sink.stop()
    assert sink.sent == 100  # only the new rows
    assert influxd.counts() == {"a": 150, "b": 150}


def test_rows_deleted_before_sending_are_reported_as_a_gap(tmp_path):
    path = tmp_path / "s.sqlite"
    _fill(path, 10, channels=("a",))
    received = []

    class Collect(InfluxSink):
        def deliver(self, rows):
            received.extend(rows)

    events = []
    sink = Collect("c", path, "http://127.0.0.1:1",
                   on_event=lambda kind, src, **d: events.append((kind, d)))
    db = sink._connect()
    sink.batch = 3
    sink.step(db)
    db.execute("DELETE FROM samples WHERE rowid IN (4, 5)")
    while sink.step(db):
        pass
    db.close()
    assert [r[0] for r in received] == [0, 1, 2, 5, 6, 7, 8, 9]
    assert events == [("sink_gap", {"first_rowid": 4, "rows": 2})]


# --- v2 API and refusal, against a loopback HTTP double -------------------------------
class _Recorder(http.server.BaseHTTPRequestHandler):
    status = 204
    requests: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()
        if type(self).status >= 400:
            self.wfile.write(b'{"error":"field type conflict"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    handler = type("Rec", (_Recorder,), {"requests": [], "status": 204})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()
    thread.join()


def test_v2_write_request(recorder, tmp_path):
    server, handler = recorder
    path = tmp_path / "s.sqlite"
    _fill(path, 2, channels=("a",))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    InfluxSink("influxdb", path, url, api="v2", org="lab", bucket="clock", token="tok",
               interval_s=0.05).start().stop()
    (req_path, headers, body), = handler.requests
    assert req_path == "/api/v2/write?org=lab&bucket=clock&precision=ns"
    assert headers["Authorization"] == "Token tok"
    assert body == b"ionclock_sample,channel=a value=78.0 0\nionclock_sample,channel=a " \
                   b"value=78.001 1000000000"


def test_refused_points_are_recorded_not_retried_forever(recorder, tmp_path):
    server, handler = recorder
    handler.status = 400
    path = tmp_path / "s.sqlite"
    _fill(path, 5, channels=("a",))
    events = []
    sink = InfluxSink("influxdb", path, f"http://127.0.0.1:{server.server_address[1]}",
                      interval_s=0.05, on_event=lambda kind, src, **d: events.append(kind))
    sink.start().stop()
    assert events == ["sink_rejected"]
    assert sink.backlog() == 0 and len(handler.requests) == 1


# --- Prometheus ---------------------------------------------------------------------------
def test_prometheus_metrics_on_loopback():
    prom = PrometheusSink(0).start()
    try:
        assert prom._server.server_address[0] == "127.0.0.1"
        prom.sample("trap_holder", "K", 100.0, 79.25)
        prom.instrument("ls218", False)
        prom.event("ln2_refill")
        with urllib.request.urlopen(f"http://127.0.0.1:{prom.port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        prom.stop()
    assert 'ionclock_sample_value{channel="trap_holder",unit="K"} 79.25' in text
    assert 'ionclock_instrument_up{instrument="ls218"} 0.0' in text
    assert 'ionclock_events_total{kind="ln2_refill"} 1.0' in text


# --- alarm hooks --------------------------------------------------------------------------
def test_alarm_webhook_and_command(recorder, tmp_path):
    server, handler = recorder
    path = tmp_path / "s.sqlite"
    out = tmp_path / "alarms.txt"
    with Store(path) as store:
        store.event(10.0, "ln2_refill", "lnc_bottom", drop=2.0)
        store.event(11.0, "in_band", "lnc_bottom")  # not an alarm kind
        store.event(12.0, "ion_lost", "servo")  # written by something else sharing the store
    hook = AlarmDispatcher(
        "hooks", path, kinds=["ln2_refill", "ion_lost"],
        command=[sys.executable, "-c",
                 f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')"],
        webhook=f"http://127.0.0.1:{server.server_address[1]}/hook", batch=1,
        interval_s=0.05)
    hook.start().stop(drain_timeout_s=20)
    posted = [json.loads(b) for _, _, b in handler.requests]
    assert [(p["kind"], p["source"]) for p in posted] == [("ln2_refill", "lnc_bottom"),
                                                          ("ion_lost", "servo")]
    assert posted[0]["detail"] == {"drop": 2.0}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["ln2_refill", "ion_lost"]
    # Restarting does not fire them again (the cursor is in the store).
    again = AlarmDispatcher("hooks", path, kinds=["ln2_refill", "ion_lost"],
                            webhook=f"http://127.0.0.1:{server.server_address[1]}/hook",
                            interval_s=0.05)
    again.start().stop()
    assert len(handler.requests) == 2


def test_failed_webhook_is_retried(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.event(1.0, "instrument_offline", "ls218")
    port = _free_port()  # nothing listens here yet
    hook = AlarmDispatcher("hooks", path, kinds=["instrument_offline"],
                           webhook=f"http://127.0.0.1:{port}/", interval_s=0.05,
                           max_backoff_s=0.1, timeout_s=1.0).start()
    time.sleep(0.5)
    assert hook.failures >= 1 and not hook.fired
    handler = type("Rec", (_Recorder,), {"requests": [], "status": 200})
    server = http.server.HTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not hook.fired and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        hook.stop()
        server.shutdown()
        server.server_close()
        thread.join()
    assert len(handler.requests) == 1 and hook.fired[0]["kind"] == "instrument_offline"
