"""Lab-scale sinks: InfluxDB (line protocol over HTTP) and a Prometheus /metrics endpoint.

A sink that is down must never block or lose local logging (issue 5). So a push sink does
not sit in the logging path at all: the SQLite store *is* its backlog. Each push sink runs
one explicit worker thread (`CursorPump`, started by `start()`, joined by `stop()`) with its
own read connection; it reads committed ``samples`` rows after its cursor (the rowid of the
last row the server acknowledged, kept in the store's ``cursors`` table), posts them, and
advances the cursor only on a 2xx reply. Down means: warn once, back off (doubling up to
`max_backoff_s`), keep the cursor, catch up when the server answers again. The backlog is
bounded by the raw-retention horizon: rows deleted before they were sent are reported as a
``sink_gap`` event, never silently skipped. Re-sending after a crash is harmless: InfluxDB
keys a point by measurement, tags and timestamp, so a repeated point overwrites itself.

Prometheus is a pull sink: `PrometheusSink` holds gauges that the logger sets as samples
arrive and serves them with prometheus_client's HTTP server, bound to 127.0.0.1 unless the
config says otherwise.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("ionclock.logger.sinks")


def escape_tag(value: str) -> str:
    """Escape a tag key or value for the line protocol (commas, spaces, equals signs)."""
    return (value.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")
            .replace("=", "\\="))


def line_protocol(measurement: str, channel: str, unit: str, t_unix: float,
                  value: float) -> str:
    """One InfluxDB line-protocol point: ``meas,channel=..,unit=.. value=.. <ns>``.

    Timestamps are integer nanoseconds since the Unix epoch (InfluxDB line protocol
    reference, "Timestamp").
    """
    tags = f"{escape_tag(measurement)},channel={escape_tag(channel)}"
    if unit:
        tags += f",unit={escape_tag(unit)}"
    return f"{tags} value={value!r} {round(t_unix * 1e9)}"


class CursorPump:
    """A worker thread that drains a store table past a durable cursor (base class).

    Subclasses implement `deliver(rows) -> None` (raise to retry later) and set `table` /
    `columns`. The cursor row ``cursors(name)`` is written by this pump's own connection.
    """

    table = "samples"
    columns = "t, channel, value"

    def __init__(self, name: str, store_path: str | Path, *, batch: int = 5000,
                 interval_s: float = 1.0, max_backoff_s: float = 60.0,
                 on_event: Callable[..., None] | None = None):
        self.name = name
        self.store_path = str(store_path)
        self.batch = batch
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.on_event = on_event
        self.sent = 0
        self.failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drain_deadline = 0.0

    # --- life cycle -------------------------------------------------------------------
    def start(self) -> CursorPump:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name=f"pump-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Ask the worker to send what is committed (for at most `drain_timeout_s`) and end."""
        self._drain_deadline = time.monotonic() + drain_timeout_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_timeout_s + 30.0)
            self._thread = None

    # --- the cursor -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.store_path, isolation_level=None, timeout=30.0)
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def cursor(self, db: sqlite3.Connection) -> int:
        """Rowid of the last row acknowledged (0: none yet)."""
        row = db.execute("SELECT last_rowid FROM cursors WHERE name = ?",
                         (self.key,)).fetchone()
        return row[0] if row else 0

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    kind = "sink"

    def _set_cursor(self, db: sqlite3.Connection, rowid: int) -> None:
        db.execute("INSERT INTO cursors VALUES (?,?,?) ON CONFLICT(name) DO UPDATE SET"
                   " last_rowid = excluded.last_rowid, t_updated = excluded.t_updated",
                   (self.key, rowid, time.time()))

    def backlog(self, db: sqlite3.Connection | None = None) -> int:
        """Rows committed but not yet acknowledged."""
        own = db is None
        db = db or self._connect()
        try:
            return db.execute(f"SELECT count(*) FROM {self.table} WHERE rowid > ?",
                              (self.cursor(db),)).fetchone()[0]
        finally:
            if own:
                db.close()

    # --- the loop ---------------------------------------------------------------------
    def step(self, db: sqlite3.Connection) -> int:
        """Deliver one batch past the cursor; return how many rows were acknowledged."""
        cur = self.cursor(db)
        top = db.execute(f"SELECT max(rowid) FROM {self.table}").fetchone()[0] or 0
        if cur > top:
            # The table was emptied by retention and rowids restarted: start over.
            log.warning("%s: cursor %d past the end of %s (%d); restarting", self.key, cur,
                        self.table, top)
            cur = 0
        rows = db.execute(f"SELECT rowid, {self.columns} FROM {self.table} WHERE rowid > ?"
                          f" ORDER BY rowid LIMIT ?", (cur, self.batch)).fetchall()
        if not rows:
            return 0
        if cur and rows[0][0] > cur + 1 and self.table == "samples":
            lost = rows[0][0] - cur - 1
            self._event("sink_gap", first_rowid=cur + 1, rows=lost)
        self.deliver([r[1:] for r in rows])
        self._set_cursor(db, rows[-1][0])
        self.sent += len(rows)
        return len(rows)

    def deliver(self, rows: list[tuple]) -> None:
        raise NotImplementedError

    def _event(self, kind: str, **detail) -> None:
        if self.on_event is not None:
            self.on_event(kind, self.key, **detail)

    def _run(self) -> None:
        db = self._connect()
        backoff = 0.0
        down = False
        try:
            while True:
                stopping = self._stop.is_set()
                if stopping and time.monotonic() > self._drain_deadline:
                    return
                try:
                    n = self.step(db)
                except Exception as err:  # a sink failure must never reach the logger
                    self.failures += 1
                    self.last_error = f"{type(err).__name__}: {err}"
                    backoff = min(self.max_backoff_s, max(self.interval_s, backoff * 2))
                    if not down:
                        log.warning("%s: delivery failed (%s); backlog kept, retrying",
                                    self.key, self.last_error)
                        self._event("sink_down", error=self.last_error)
                        down = True
                    if stopping:
                        return
                    self._stop.wait(backoff)
                    continue
                if down:
                    log.warning("%s: delivering again", self.key)
                    self._event("sink_up", failures=self.failures)
                    down = False
                backoff = 0.0
                if n < self.batch:
                    if stopping:
                        return
                    self._stop.wait(self.interval_s)
        finally:
            db.close()


class InfluxSink(CursorPump):
    """Push ``samples`` to InfluxDB: v1 ``/write?db=`` or v2 ``/api/v2/write?bucket=``.

    `t0_unix` is added to store times (a twin run's clock starts at 0); `units` maps channel
    names to unit tags.
    """

    def __init__(self, name: str, store_path: str | Path, url: str, *, api: str = "v1",
                 database: str = "ionclock", org: str = "", bucket: str = "",
                 token: str = "", measurement: str = "ionclock_sample", timeout_s: float = 5.0,
                 t0_unix: float = 0.0, units: Mapping[str, str] | None = None, **kw):
        super().__init__(name, store_path, **kw)
        if api not in ("v1", "v2"):
            raise ValueError(f"api must be 'v1' or 'v2', not {api!r}")
        base = url.rstrip("/")
        if api == "v1":
            self.endpoint = f"{base}/write?" + urllib.parse.urlencode(
                {"db": database, "precision": "ns"})
        else:
            self.endpoint = f"{base}/api/v2/write?" + urllib.parse.urlencode(
                {"org": org, "bucket": bucket or database, "precision": "ns"})
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        if token:
            self.headers["Authorization"] = f"Token {token}"
        self.measurement = measurement
        self.timeout_s = timeout_s
        self.t0_unix = t0_unix
        self.units = dict(units or {})

    def body(self, rows: list[tuple]) -> bytes:
        """Line-protocol body for (t, channel, value) rows; missing values are skipped."""
        lines = [line_protocol(self.measurement, ch, self.units.get(ch, ""), self.t0_unix + t, v)
                 for t, ch, v in rows if v is not None and math.isfinite(v)]
        return "\n".join(lines).encode()

    def deliver(self, rows: list[tuple]) -> None:
        data = self.body(rows)
        if not data:
            return
        req = urllib.request.Request(self.endpoint, data=data, headers=self.headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as reply:
                reply.read()
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500 and err.code not in (401, 403, 408, 429):
                # The server understood and refused these points (a type conflict, say):
                # retrying cannot help, so record it and move on rather than wedge the sink.
                detail = err.read()[:300].decode(errors="replace")
                log.error("%s: InfluxDB rejected %d rows: %s", self.key, len(rows), detail)
                self._event("sink_rejected", rows=len(rows), status=err.code, reply=detail)
                return
            raise


class PrometheusSink:
    """Gauges for every channel, served at ``http://<bind>:<port>/metrics``.

    Metrics: ``ionclock_sample_value{channel,unit}`` (last value),
    ``ionclock_sample_time_seconds{channel}`` (its Unix time),
    ``ionclock_instrument_up{instrument}`` (1/0), ``ionclock_events_total{kind}``.
    Each sink has its own registry (no process-global state).
    """

    def __init__(self, port: int, bind: str = "127.0.0.1", t0_unix: float = 0.0):
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.value = Gauge("ionclock_sample_value", "Last value of a logged channel (SI unit)",
                           ["channel", "unit"], registry=self.registry)
        self.time = Gauge("ionclock_sample_time_seconds", "Unix time of the last value",
                          ["channel"], registry=self.registry)
        self.up = Gauge("ionclock_instrument_up", "1 if the instrument answers, else 0",
                        ["instrument"], registry=self.registry)
        self.events = Counter("ionclock_events", "Events recorded by the logger", ["kind"],
                              registry=self.registry)
        self.port = port
        self.bind = bind
        self.t0_unix = t0_unix
        self._server = None
        self._thread = None

    def start(self) -> PrometheusSink:
        """Start serving (prometheus_client's HTTP server thread)."""
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(self.port, addr=self.bind,
                                                       registry=self.registry)
        self.port = self._server.server_address[1]
        return self

    def sample(self, channel: str, unit: str, t: float, value: float | None) -> None:
        if value is None or not math.isfinite(value):
            return
        self.value.labels(channel=channel, unit=unit).set(value)
        self.time.labels(channel=channel).set(self.t0_unix + t)

    def instrument(self, name: str, up: bool) -> None:
        self.up.labels(instrument=name).set(1 if up else 0)

    def event(self, kind: str) -> None:
        self.events.labels(kind=kind).inc()

    def stop(self) -> None:
        """Stop serving and join the server thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
