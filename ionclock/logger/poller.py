"""The long-term logger: poll every channel at its own period, for months, losing nothing.

A *channel* is an instrument entry (registry model + resource) plus the driver attribute
path to read (``ch_1.temperature``, ``current``, ...), a period, a unit and, optionally, a
calibrated band and event detectors. Nothing here knows a particular driver: any model in
`ionclock.apparatus.registry.MODELS` whose driver exposes the attribute can be logged.

Time: one SimPy process per channel. In the lab the environment is
`simpy.rt.RealtimeEnvironment` starting at the Unix time (store times are Unix seconds); a
twin run (`simulate=True`) uses `simpy.Environment` from 0 and records ``meta.t0_unix``
(store times are seconds since then). The poll loop is the same generator in both.

Durability: samples go to the store's buffer and are committed in batches no more than
``store.commit_interval_s`` (<= 1 s) apart: in the lab a flusher process commits on that
cadence even when no sample arrives; a twin run commits by wall clock inside `Store.add`.
SQLite in WAL mode, rollups in the same transaction (ionclock.storage.rollups). Restarting on the
same store appends; a store the run's times would not fit is refused (`check_log_store`: a
clock run's store, a lab log for a twin run or the reverse, another ``t0_unix``), and so is
a store another process is writing (the store's writer lock, ionclock.storage.store).
SIGTERM/SIGINT end the run cleanly (`request_stop`): flush, drain the sinks for a few
seconds, close the instruments and the store.

Faults: a read whose link fails (a timeout, a lost connection: `LINK_ERRORS`) marks the
instrument offline (one ``instrument_offline`` event), and the instrument is retried with
exponential backoff (period · 2^k, at most ``polling.max_backoff_s``); the first read that
gets an answer records ``instrument_online``. A read the instrument answered but that gives
no number (a garbled reply, a device error, an open sensor: a `Missing` reading) is a
missing sample of that channel alone (NULL), never a link failure: the other channels of the
instrument go on, and one ``reading_missing`` event (source: the channel) gives the reason
when the channel starts to miss, one ``reading_restored`` when it reads again.

Read paths are checked at load against what the driver declares (`registry.check_read_path`):
its channels, then one of their readable properties; nothing else is ever read. Sinks and
alarm hooks run in their own worker threads off the committed store, so a dead InfluxDB or
webhook never delays a poll (ionclock.logger.sinks).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import simpy
import simpy.rt

from ionclock.apparatus import registry
from ionclock.config import DASHBOARD_SCHEMA, Field, Table, check_kind, load_toml, validate
from ionclock.errors import ConfigError, UserError
from ionclock.logger.alarms import (
    DEFAULT_ALARM_KINDS,
    AlarmDispatcher,
    BandDetector,
    IonLostDetector,
    RefillDetector,
)
from ionclock.logger.sinks import InfluxSink, PrometheusSink
from ionclock.storage.missing import MissingReadings
from ionclock.storage.rollups import apply_retention
from ionclock.storage.store import Store

log = logging.getLogger("ionclock.logger.poller")

DAY = 86400.0
_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

INSTRUMENT_SCHEMA = {
    "model": Field(str, doc="a model in ionclock.apparatus.registry.MODELS"),
    "resource": Field(str, doc="VISA resource, serial URL or sim://<model>"),
    "twin": Field(dict, default={}, doc="options of the twin (sim:// resources only)"),
}

CHANNEL_SCHEMA = {
    "instrument": Field(str, doc="name of an [instruments] entry"),
    "read": Field(str, doc="driver attribute path to read, e.g. ch_1.temperature"),
    "period_s": Field(float, min=0.01, max=30 * DAY, doc="poll period, s"),
    "unit": Field(str, default="", doc="SI unit of the value (K, A, V, Hz, ...)"),
    "band_min": Field(float, default=None, doc="lower end of the calibrated band"),
    "band_max": Field(float, default=None, doc="upper end of the calibrated band"),
    "refill_drop": Field(float, default=0.0, min=0.0,
                         doc="a drop of this much below the window maximum is an LN2 refill"),
    "refill_window_s": Field(float, default=900.0, min=1.0),
    "refill_holdoff_s": Field(float, default=6 * 3600.0, min=0.0),
    "ion_lost_below": Field(float, default=None, doc="counts below this mean no ion"),
    "ion_lost_count": Field(int, default=3, min=1),
}

SCHEMA = {
    "store": {
        "path": Field(str, doc="the SQLite store (its directory must exist)"),
        "commit_interval_s": Field(float, default=0.5, min=0.01, max=1.0,
                                   doc="longest time a sample waits for its commit, s"),
    },
    "retention": {
        "raw_days": Field(float, default=90.0, min=0.0, doc="0 keeps forever"),
        "rollup_1m_days": Field(float, default=730.0, min=0.0, doc="0 keeps forever"),
        "rollup_1h_days": Field(float, default=0.0, min=0.0, doc="0 keeps forever"),
        "check_interval_s": Field(float, default=3600.0, min=1.0),
    },
    "polling": {
        "max_backoff_s": Field(float, default=300.0, min=0.0,
                               doc="longest wait between retries of an offline instrument"),
    },
    "instruments": Table(INSTRUMENT_SCHEMA, required=True),
    "channels": Table(CHANNEL_SCHEMA, required=True),
    "dashboard": DASHBOARD_SCHEMA,
    "sinks": {
        "influxdb": {
            "enabled": Field(bool, default=False),
            "url": Field(str, default="http://127.0.0.1:8086"),
            "api": Field(str, default="v1", choices=("v1", "v2")),
            "database": Field(str, default="ionclock", doc="v1 database (v2: bucket default)"),
            "org": Field(str, default=""),
            "bucket": Field(str, default=""),
            "token": Field(str, default=""),
            "measurement": Field(str, default="ionclock_sample"),
            "batch": Field(int, default=5000, min=1),
            "interval_s": Field(float, default=1.0, min=0.01),
            "max_backoff_s": Field(float, default=60.0, min=0.01),
            "timeout_s": Field(float, default=5.0, min=0.1),
        },
        "prometheus": {
            "enabled": Field(bool, default=False),
            "bind": Field(str, default="127.0.0.1"),
            "port": Field(int, default=9108, min=0, max=65535),
        },
    },
    "alarms": {
        "command": Field(list, default=[], doc="argv run per alarm; event JSON on stdin"),
        "webhook": Field(str, default="", doc="URL that receives each alarm as a JSON POST"),
        "kinds": Field(list, default=list(DEFAULT_ALARM_KINDS)),
        "timeout_s": Field(float, default=10.0, min=0.1),
        "max_backoff_s": Field(float, default=300.0, min=0.01),
    },
    "simulate": {
        "seed": Field(int, default=1, min=0),
        "start_unix": Field(float, default=1735689600.0, doc="Unix time of t = 0 (2025-01-01)"),
        "faults": Field(list, default=[], doc="[{instrument, kind, at_s, duration_s}]"),
        "cryostat": Field(dict, default={}, doc="options of the cryostat twin"),
    },
}

FAULT_KINDS = ("disconnected", "timeout", "garble")


@dataclass
class ChannelSpec:
    """One logged channel (see `CHANNEL_SCHEMA`)."""

    name: str
    instrument: str
    read: str
    period_s: float
    unit: str = ""
    band_min: float | None = None
    band_max: float | None = None
    refill_drop: float = 0.0
    refill_window_s: float = 900.0
    refill_holdoff_s: float = 6 * 3600.0
    ion_lost_below: float | None = None
    ion_lost_count: int = 3


@dataclass
class LoggerConfig:
    """A validated logger configuration."""

    raw: dict
    store_path: Path
    channels: dict[str, ChannelSpec]
    instruments: dict[str, dict]
    path: Path | None = None

    @property
    def retention_s(self) -> dict[str, float]:
        r = self.raw["retention"]
        return {"samples": r["raw_days"] * DAY, "samples_1m": r["rollup_1m_days"] * DAY,
                "samples_1h": r["rollup_1h_days"] * DAY}


def parse_config(data: dict, base_dir: Path | None = None) -> LoggerConfig:
    """Validate a logger config dict; a bad entry is a `ConfigError` naming its key."""
    cfg = validate(data, SCHEMA)
    for name, inst in cfg["instruments"].items():
        registry.driver_class(inst["model"], f"instruments.{name}.model")
        if inst["resource"].startswith("sim://") and inst["resource"][6:] not in (
                "", inst["model"]):
            raise ConfigError(f"instruments.{name}.resource",
                              f"{inst['resource']} does not simulate model {inst['model']!r}")
        if inst["twin"]:   # checked at load, not when the twin is built after the store opens
            registry.check_twin_options(inst["model"], inst["twin"], f"instruments.{name}.twin")
    channels = {}
    for name, ch in cfg["channels"].items():
        key = f"channels.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
            raise ConfigError(key, "channel names use letters, digits and _ . : - only")
        if ch["instrument"] not in cfg["instruments"]:
            known = ", ".join(sorted(cfg["instruments"])) or "none"
            raise ConfigError(key + ".instrument",
                              f"no instrument {ch['instrument']!r} (known: {known})")
        if not _PATH.match(ch["read"]):
            raise ConfigError(key + ".read",
                              f"{ch['read']!r} is not an attribute path like ch_1.temperature")
        registry.check_read_path(cfg["instruments"][ch["instrument"]]["model"], ch["read"],
                                 key + ".read")
        lo, hi = ch["band_min"], ch["band_max"]
        if lo is not None and hi is not None and lo >= hi:
            raise ConfigError(key + ".band_min", f"{lo!r} is not below band_max {hi!r}")
        channels[name] = ChannelSpec(name=name, **ch)
    for i, fault in enumerate(cfg["simulate"]["faults"]):
        _check_fault(fault, cfg["instruments"], f"simulate.faults[{i}]")
    for key in ("command", "kinds"):
        if not all(isinstance(x, str) for x in cfg["alarms"][key]):
            raise ConfigError(f"alarms.{key}", "expected a list of strings")
    if cfg["alarms"]["webhook"]:
        _check_http_url(cfg["alarms"]["webhook"], "alarms.webhook")
    _check_http_url(cfg["sinks"]["influxdb"]["url"], "sinks.influxdb.url")
    store_path = Path(cfg["store"]["path"])
    if base_dir is not None and not store_path.is_absolute():
        store_path = base_dir / store_path
    return LoggerConfig(cfg, store_path, channels, cfg["instruments"])


def _check_http_url(url: str, key: str) -> None:
    """An http:// or https:// URL with a host (no file://, ftp://, a bare host name)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"{url!r} is not an http:// or https:// URL with a host "
                               "(e.g. http://127.0.0.1:9000/ionclock)")


def _check_fault(fault: Any, instruments: dict, key: str) -> None:
    if not isinstance(fault, dict):
        raise ConfigError(key, "expected a table {instrument, kind, at_s, duration_s}")
    extra = set(fault) - {"instrument", "kind", "at_s", "duration_s"}
    if extra:
        raise ConfigError(key, f"unknown key(s) {', '.join(sorted(extra))}")
    if fault.get("instrument") not in instruments:
        raise ConfigError(key + ".instrument", f"no instrument {fault.get('instrument')!r}")
    if fault.get("kind") not in FAULT_KINDS:
        raise ConfigError(key + ".kind", f"one of {', '.join(FAULT_KINDS)}")
    for k in ("at_s", "duration_s"):
        v = fault.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"{key}.{k}", "expected a number >= 0 (s)")


def load_config(path: str | Path, store: str | Path | None = None) -> LoggerConfig:
    """Read and validate a logger TOML file (relative store paths: from the working dir)."""
    data = load_toml(path)
    check_kind(data, "logger", path)
    if store is not None:
        data.setdefault("store", {})["path"] = str(store)
    cfg = parse_config(data)
    cfg.path = Path(path)
    return cfg


def resolve(obj: Any, path: str) -> Any:
    """Read the attribute path `path` (``ch_1.temperature``) on `obj`."""
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


#: Errors of the link to an instrument (the instrument is offline): timeouts, lost
#: connections, serial and socket errors (pyvisa's come as these, ionclock.apparatus.transport).
#: Anything else a read raises is that channel's reading, missing.
LINK_ERRORS = (OSError,)


class InstrumentState:
    """An open instrument and its liveness: online, failures in a row, next retry time."""

    def __init__(self, name: str, model: str, resource: str, driver: Any):
        self.name = name
        self.model = model
        self.resource = resource
        self.driver = driver
        self.online = True
        self.failures = 0
        self.next_try = -math.inf
        self.offline_since: float | None = None

    def available(self, now: float) -> bool:
        return self.online or now >= self.next_try


@dataclass
class Stats:
    """Counters of one run (for tests and the summary line)."""

    samples: int = 0
    missing: int = 0
    failed_reads: int = 0
    skipped_polls: int = 0
    events: dict[str, int] = field(default_factory=dict)


class Logger:
    """The logging service on a SimPy environment (see the module docstring).

    `env` is a RealtimeEnvironment in the lab (``env.now`` = Unix time) or an Environment
    for twin runs. `world` is the simulated world for ``sim://`` resources. `witness`, if
    given, is a text file that receives every sample (``wall t channel value``) *before* it
    enters the store's buffer: the crash tests compare it with what was committed.
    """

    def __init__(self, config: LoggerConfig, env: simpy.Environment, *, world: Any = None,
                 simulate: bool = False, witness: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.env = env
        self.world = world
        self.simulate = simulate
        self.witness = witness
        self.clock = clock
        self.stats = Stats()
        self.instruments: dict[str, InstrumentState] = {}
        self.store: Store | None = None
        self.sinks: list = []
        self.prometheus: PrometheusSink | None = None
        self.alarms: AlarmDispatcher | None = None
        self._stop_requested = False
        self._stopped = env.event()
        self._pump_events: queue.SimpleQueue = queue.SimpleQueue()
        self._detectors: dict[str, list] = {}
        self.last: dict[str, tuple[float, float | None]] = {}
        self._missing = MissingReadings(self._event)   # reading_missing / _restored episodes
        self.t0_unix = config.raw["simulate"]["start_unix"] if simulate else 0.0
        # Sample times: the simulated clock in a twin run; in the lab the Unix time of the
        # read itself (a slow read or an NTP step must not shift the stamps of later reads,
        # and the real-time environment's clock is monotonic, not Unix).
        self.now: Callable[[], float] = (lambda: env.now) if simulate else time.time

    # --- start --------------------------------------------------------------------------
    def start(self) -> Logger:
        """Open the store and the instruments, write the channel table, start processes.

        The Prometheus endpoint is bound first: a configured port that is taken stops the
        start with one line (`UserError`) before the store is touched, rather than leaving a
        months-long run without the metrics it was set up to serve.
        """
        cfg = self.config
        self._start_prometheus()
        try:
            self.store = Store(cfg.store_path,
                               commit_interval=cfg.raw["store"]["commit_interval_s"],
                               clock=self.clock)
        except BaseException:
            self._stop_prometheus()
            raise
        try:
            check_log_store(self.store, self.simulate, self.t0_unix)
            self._open_instruments()
        except BaseException:
            # nothing written: `close` (which records logger_stopped) has nothing to do
            self._close_instruments()
            self._stop_prometheus()
            self.store.close()
            self.store = None
            raise
        self._write_channels()
        now = self.env.now
        self.store.event(now, "logger_started", "logger", channels=sorted(cfg.channels),
                         simulate=self.simulate)
        for spec in cfg.channels.values():
            self._detectors[spec.name] = self._make_detectors(spec)
            self.env.process(self._poll(spec))
        self.env.process(self._housekeeping())
        if not self.simulate:
            self.env.process(self._flusher())
        self.env.process(self._watch_stop())
        if self.simulate:
            for fault in cfg.raw["simulate"]["faults"]:
                self.env.process(self._fault(fault))
        self._start_sinks()
        return self

    def _open_instruments(self) -> None:
        for name, inst in self.config.instruments.items():
            twin = inst["twin"] if inst["resource"].startswith("sim://") else None
            driver = registry.open_instrument(inst["model"], inst["resource"], world=self.world,
                                              key=f"instruments.{name}", twin_options=twin)
            self.instruments[name] = InstrumentState(name, inst["model"], inst["resource"],
                                                     driver)

    def _write_channels(self) -> None:
        meta = {"logger_config": str(self.config.path or ""), "logger_simulate": self.simulate}
        if self.simulate:
            meta["t0_unix"] = self.t0_unix
        self.store.set_meta(**meta)
        rows = []
        for spec in self.config.channels.values():
            inst = self.config.instruments[spec.instrument]
            rows.append((spec.name, spec.unit, spec.band_min, spec.band_max,
                         f"{inst['model']} {inst['resource']} {spec.read}", spec.period_s))
        with self.store.db:
            self.store.db.executemany(
                "INSERT OR REPLACE INTO channels VALUES (?,?,?,?,?,?)", rows)

    def _make_detectors(self, spec: ChannelSpec) -> list:
        dets: list = []
        if spec.band_min is not None or spec.band_max is not None:
            dets.append(BandDetector(spec.band_min, spec.band_max))
        if spec.refill_drop > 0:
            dets.append(RefillDetector(spec.refill_drop, spec.refill_window_s,
                                       spec.refill_holdoff_s))
        if spec.ion_lost_below is not None:
            dets.append(IonLostDetector(spec.ion_lost_below, spec.ion_lost_count))
        return dets

    def _start_sinks(self) -> None:
        raw = self.config.raw
        path = self.config.store_path
        influx = raw["sinks"]["influxdb"]
        if influx["enabled"]:
            units = {s.name: s.unit for s in self.config.channels.values()}
            sink = InfluxSink(
                "influxdb", path, influx["url"], api=influx["api"], database=influx["database"],
                org=influx["org"], bucket=influx["bucket"], token=influx["token"],
                measurement=influx["measurement"], timeout_s=influx["timeout_s"],
                t0_unix=self.t0_unix, units=units, batch=influx["batch"],
                interval_s=influx["interval_s"], max_backoff_s=influx["max_backoff_s"],
                on_event=self._queue_event)
            self.sinks.append(sink.start())
        alarms = raw["alarms"]
        if alarms["command"] or alarms["webhook"]:
            self.alarms = AlarmDispatcher(
                "hooks", path, kinds=alarms["kinds"], command=alarms["command"],
                webhook=alarms["webhook"], timeout_s=alarms["timeout_s"], t0_unix=self.t0_unix,
                batch=1, interval_s=0.2, max_backoff_s=alarms["max_backoff_s"])
            self.alarms.start()

    def _start_prometheus(self) -> None:
        prom = self.config.raw["sinks"]["prometheus"]
        if not prom["enabled"]:
            return
        try:
            self.prometheus = PrometheusSink(prom["port"], prom["bind"], self.t0_unix).start()
        except OSError as err:
            raise ConfigError("sinks.prometheus.port",
                              f"cannot serve /metrics on {prom['bind']}:{prom['port']}: "
                              f"{err.strerror or err} (another logger? choose another port, or "
                              "enabled = false)") from None

    def _stop_prometheus(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
            self.prometheus = None

    # --- processes ----------------------------------------------------------------------
    def _poll(self, spec: ChannelSpec):
        """Read one channel every `period_s`, on a drift-free grid from the start."""
        env = self.env
        inst = self.instruments[spec.instrument]
        t_start = self.now()
        k = 0
        while True:
            now = self.now()
            if inst.available(now):
                self._read(spec, inst, now)
            else:
                self.stats.skipped_polls += 1
            k += 1
            nxt = t_start + k * spec.period_s
            late = self.now()
            if nxt <= late:  # a read overran (real time): skip missed ticks, keep the grid
                k = math.floor((late - t_start) / spec.period_s) + 1
                nxt = t_start + k * spec.period_s
            yield env.timeout(max(0.0, nxt - late))

    def _read(self, spec: ChannelSpec, inst: InstrumentState, now: float) -> None:
        reason = None
        try:
            raw = resolve(inst.driver, spec.read)
            value = None if raw is None else float(raw)
        except LINK_ERRORS as err:  # the link failed: the instrument is offline (issue 5)
            self._read_failed(inst, now, err)
            return
        except Exception as err:  # an answer that is no number: this channel's sample only
            self.stats.failed_reads += 1
            self._flush_link(inst)
            value, reason = None, f"{type(err).__name__}: {err}"
        else:
            if value is None:
                reason = f"{spec.read} returned None"
            elif math.isnan(value):   # a missing reading (e.g. an open sensor): NULL
                value, reason = None, getattr(raw, "reason", None) or "no reading (NaN)"
        if not inst.online:
            inst.online = True
            down = now - (inst.offline_since or now)
            self._event(now, "instrument_online", inst.name, after_failures=inst.failures,
                        downtime_s=down)
            if self.prometheus:
                self.prometheus.instrument(inst.name, True)
        inst.failures = 0
        self._record(spec, now, value, reason)

    @staticmethod
    def _flush_link(inst: InstrumentState) -> None:
        """Drop what the link holds: a late reply must not answer the next query."""
        flush = getattr(getattr(inst.driver, "adapter", None), "flush_read_buffer", None)
        if flush is not None:
            try:
                flush()
            except Exception:  # the link may be down; the next read will tell
                pass

    def _read_failed(self, inst: InstrumentState, now: float, err: Exception) -> None:
        self.stats.failed_reads += 1
        inst.failures += 1
        periods = [s.period_s for s in self.config.channels.values()
                   if s.instrument == inst.name]
        base = min(periods) if periods else 1.0
        wait = min(self.config.raw["polling"]["max_backoff_s"],
                   base * 2 ** min(inst.failures - 1, 30))
        inst.next_try = now + wait
        self._flush_link(inst)
        if inst.online:
            inst.online = False
            inst.offline_since = now
            log.warning("%s offline: %s: %s", inst.name, type(err).__name__, err)
            self._event(now, "instrument_offline", inst.name,
                        error=f"{type(err).__name__}: {err}")
            if self.prometheus:
                self.prometheus.instrument(inst.name, False)

    def _record(self, spec: ChannelSpec, t: float, value: float | None,
                reason: str | None = None) -> None:
        if self.witness is not None:
            self.witness.write(f"{time.time():.6f} {spec.name} {t!r} {value!r}\n")
            self.witness.flush()
        self.store.add("samples", (t, spec.name, value))
        self.stats.samples += 1
        self.last[spec.name] = (t, value)
        if self.prometheus:
            self.prometheus.sample(spec.name, spec.unit, t, value)
        if value is None:
            self.stats.missing += 1
            if self._missing.update(t, spec.name, None, reason, instrument=spec.instrument,
                                    read=spec.read):
                log.warning("%s: reading missing: %s", spec.name, reason)
            return
        self._missing.update(t, spec.name, value)
        for det in self._detectors[spec.name]:
            if isinstance(det, RefillDetector):
                hit = det.update(t, value)
                if hit:
                    self._event(hit["t_refill"], "ln2_refill", spec.name, detected_at=t, **hit)
            else:
                kind = det.update(value)
                if kind:
                    detail: dict = {"value": value}
                    if isinstance(det, BandDetector):
                        detail.update(band=[spec.band_min, spec.band_max], unit=spec.unit)
                    self._event(t, kind, spec.name, **detail)

    def _event(self, t: float, kind: str, source: str, **detail) -> None:
        self.stats.events[kind] = self.stats.events.get(kind, 0) + 1
        self.store.event(t, kind, source, **detail)
        if self.prometheus:
            self.prometheus.event(kind)

    def _queue_event(self, kind: str, source: str, **detail) -> None:
        """Events from worker threads: queued, written by the SimPy thread."""
        self._pump_events.put((kind, source, detail))

    def _drain_pump_events(self) -> None:
        while True:
            try:
                kind, source, detail = self._pump_events.get_nowait()
            except queue.Empty:
                return
            self._event(self.env.now, kind, source, **detail)

    def _flusher(self):
        """Lab mode: commit at least every commit interval, samples or not."""
        period = self.config.raw["store"]["commit_interval_s"]
        while True:
            yield self.env.timeout(period)
            self.store.flush()
            self._drain_pump_events()

    def _housekeeping(self):
        """Retention and pump events, every `retention.check_interval_s`."""
        period = self.config.raw["retention"]["check_interval_s"]
        while True:
            yield self.env.timeout(period)
            self._drain_pump_events()
            self.store.flush()
            deleted = apply_retention(self.store.db, self.env.now, self.config.retention_s)
            if any(deleted.values()):
                log.info("retention: deleted %s", deleted)

    def _watch_stop(self):
        period = 0.1 if not self.simulate else 60.0
        while not self._stop_requested:
            yield self.env.timeout(period)
        if not self._stopped.triggered:
            self._stopped.succeed()

    def _fault(self, fault: dict):
        """Switch a twin fault on for a while (simulated fault from config)."""
        yield self.env.timeout(fault["at_s"])
        twin = getattr(self.instruments[fault["instrument"]].driver, "twin", None)
        if twin is None:
            return
        setattr(twin.faults, fault["kind"], True)
        yield self.env.timeout(fault["duration_s"])
        setattr(twin.faults, fault["kind"], False)

    # --- running and stopping ----------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the run to end at the next check (safe from a signal handler)."""
        self._stop_requested = True

    def run(self, until: float | None = None,
            progress: Callable[[float], None] | None = None, steps: int = 200) -> None:
        """Run until `until` (env time), or until `request_stop`.

        `progress`, if given, is called with the time run so far (s) at `steps` points on
        the way (a twin run's bar); the processes see the same events either way.
        """
        if until is None:
            self.env.run(until=self._stopped)
            return
        if self._stop_requested:
            return
        if progress is None:
            stop_at = self.env.timeout(max(0.0, until - self.env.now))
            self.env.run(until=self.env.any_of([stop_at, self._stopped]))
            return
        start = self.env.now
        step = max((until - start) / steps, 1e-6)
        while self.env.now < until and not self._stopped.triggered:
            stop_at = self.env.timeout(min(step, until - self.env.now))
            self.env.run(until=self.env.any_of([stop_at, self._stopped]))
            progress(self.env.now - start)

    def close(self, drain_timeout_s: float = 5.0) -> None:
        """Flush, stop the sinks (after draining what they can), close everything."""
        if self.store is None:
            return
        self.store.flush()
        for sink in self.sinks:
            sink.stop(drain_timeout_s)
        if self.alarms is not None:
            self.alarms.stop(drain_timeout_s)
        if self.prometheus is not None:
            self.prometheus.stop()
        self._drain_pump_events()
        self.store.event(self.env.now, "logger_stopped", "logger", samples=self.stats.samples)
        self._close_instruments()
        self.store.close()
        self.store = None

    def _close_instruments(self) -> None:
        for inst in self.instruments.values():
            try:
                inst.driver.close()
            except Exception as err:  # closing a dead link must not lose the store's close
                log.warning("%s: close failed: %s", inst.name, err)


#: meta keys only a clock run (ionclock.apparatus.clock_run) writes
CLOCK_RUN_META = ("servo", "simulated")


def check_log_store(store: Store, simulate: bool, t0_unix: float) -> None:
    """Refuse (`UserError`) a store this logger run's times would not fit.

    A clock run's store (``ionclock sim`` / ``ionclock run``: meta ``servo``, ``simulated``,
    or any clock cycle or frame) counts its times from its own start; a twin log's from
    ``meta.t0_unix``; a lab log's are Unix seconds. Appending samples on another time base,
    or rewriting ``t0_unix``, would re-anchor every time already stored.
    """
    meta = store.meta()
    path = str(store.path)
    if any(key in meta for key in CLOCK_RUN_META) or any(
            store.query(f"SELECT 1 FROM {table} LIMIT 1")
            for table in ("lock_frames", "servo_cycles")):
        raise UserError(f"store: {path!r} holds a clock run (written by `ionclock sim` or "
                        "`ionclock run`); the logger keeps its own store: choose another "
                        "[store] path or --store")
    was_simulated = meta.get("logger_simulate")
    if was_simulated is not None and bool(was_simulated) != simulate:
        held, this = (("a twin log (--simulate, seconds from meta.t0_unix)", "a lab log")
                      if was_simulated else ("a lab log (Unix seconds)", "a twin log"))
        raise UserError(f"store: {path!r} holds {held}; {this} would mix its times with "
                        "them: choose another store")
    if simulate and "t0_unix" in meta and meta["t0_unix"] != t0_unix:
        raise UserError(f"store: {path!r} counts its times from meta.t0_unix = "
                        f"{meta['t0_unix']!r}; this config's [simulate] start_unix is "
                        f"{t0_unix!r}: set it to that, or choose another store")


def make_environment(simulate: bool, initial_time: float = 0.0) -> simpy.Environment:
    """Return a fast SimPy environment for twin runs, a real-time one (Unix time) in the lab."""
    if simulate:
        return simpy.Environment(initial_time=initial_time)
    return simpy.rt.RealtimeEnvironment(initial_time=time.time(), factor=1.0, strict=False)


def resume_time(store_path: str | Path) -> float:
    """Where a twin run on an existing store resumes: just after its newest sample (s).

    A lab store needs nothing (its clock is Unix time); a twin run's clock would otherwise
    start at 0 again and overlap what is stored.
    """
    import sqlite3

    path = Path(store_path)
    if not path.is_file():
        return 0.0
    db = sqlite3.connect(str(path))
    try:
        last = None
        for (channel,) in db.execute("SELECT DISTINCT channel FROM samples_1h").fetchall():
            t = db.execute("SELECT max(t) FROM samples WHERE channel = ?",  # (channel, t) index
                           (channel,)).fetchone()[0]
            if t is not None and (last is None or t > last):
                last = t
        return 0.0 if last is None else float(math.floor(last) + 1)
    except sqlite3.DatabaseError:
        return 0.0
    finally:
        db.close()


def needs_world(config: LoggerConfig) -> bool:
    return any(i["resource"].startswith("sim://") for i in config.instruments.values())


def summary(logger: Logger) -> str:
    """One line on what a run did."""
    ev = ", ".join(f"{k} {v}" for k, v in sorted(logger.stats.events.items())) or "none"
    return (f"logged {logger.stats.samples} samples ({logger.stats.missing} missing), "
            f"{logger.stats.failed_reads} failed reads;"
            f" events: {ev}")


def event_detail(text: str) -> dict:
    """Decode an events.detail column."""
    return json.loads(text)
