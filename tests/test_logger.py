"""The logger service: config checks, the scheduler, and short twin runs.

Scheduler-only tests use a tiny in-test double (a registered fake model); everything else
polls the real drivers against their twins through `ionclock.apparatus.registry`.
"""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import simpy

from ionclock.apparatus import registry
from ionclock.apparatus.registry import make_env_world
from ionclock.commands.main import main
from ionclock.errors import ConfigError, UserError
from ionclock.logger.poller import Logger, load_config, parse_config, resume_time
from ionclock.storage.rollups import recompute

ROOT = Path(__file__).resolve().parents[1]


def ls218_config(path: Path, **over) -> dict:
    """A small LS218 config: two channels on the cryostat twin."""
    cfg = {
        "store": {"path": str(path)},
        "instruments": {"ls218": {"model": "lakeshore218", "resource": "sim://lakeshore218",
                                  "twin": {"seed": 3}}},
        "channels": {
            "lnc_bottom": {"instrument": "ls218", "read": "input_1.temperature",
                           "period_s": 60.0, "unit": "K", "band_min": 75.0, "band_max": 85.0,
                           "refill_drop": 0.5},
            "trap_holder": {"instrument": "ls218", "read": "input_4.temperature",
                            "period_s": 30.0, "unit": "K", "band_min": 75.0, "band_max": 85.0},
        },
        "polling": {"max_backoff_s": 600.0},
    }
    for key, value in over.items():
        cfg[key] = value
    return cfg


def run_twin(cfg: dict, duration: float, seed: int = 1, setup=None) -> tuple[Logger, object]:
    env = simpy.Environment()
    world = make_env_world(env, seed)
    logger = Logger(parse_config(cfg), env, world=world, simulate=True)
    logger.start()
    if setup is not None:
        setup(logger, env, world)
    logger.run(duration)
    logger.close()
    return logger, world


# --- configuration ---------------------------------------------------------------------
@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["channels"]["lnc_bottom"].pop("period_s"), "channels.lnc_bottom.period_s"),
    (lambda c: c["channels"]["lnc_bottom"].update(period_s=0), "channels.lnc_bottom.period_s"),
    (lambda c: c["channels"]["lnc_bottom"].update(instrument="nope"),
     "channels.lnc_bottom.instrument"),
    (lambda c: c["channels"]["lnc_bottom"].update(read="input_1..temperature"),
     "channels.lnc_bottom.read"),
    (lambda c: c["channels"]["lnc_bottom"].update(band_min=90.0),
     "channels.lnc_bottom.band_min"),
    (lambda c: c["channels"]["lnc_bottom"].update(colour="red"), "channels.lnc_bottom.colour"),
    (lambda c: c["instruments"]["ls218"].update(model="ls999"), "instruments.ls218.model"),
    (lambda c: c["instruments"]["ls218"].update(resource="sim://lakeshore224"),
     "instruments.ls218.resource"),
    (lambda c: c.update(channels={}), "channels"),
    (lambda c: c["store"].update(commit_interval_s=5.0), "store.commit_interval_s"),
])
def test_malformed_config_names_the_key(tmp_path, mutate, key):
    cfg = ls218_config(tmp_path / "s.sqlite")
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        parse_config(cfg)
    assert err.value.key == key


def test_unknown_attribute_is_found_at_load(tmp_path):
    cfg = ls218_config(tmp_path / "s.sqlite")
    cfg["channels"]["lnc_bottom"]["read"] = "input_1.temprature"
    with pytest.raises(ConfigError, match="channels.lnc_bottom.read: .*no readable property "
                                          "'temprature' .*temperature"):
        parse_config(cfg)   # at load, against the driver class: nothing opened, no store


@pytest.mark.parametrize("read, expect", [
    ("input_2", "input_2 is a channel of lakeshore218, not a value: .*input_2.temperature"),
    ("input_2.__class__", "'__class__' is private"),
    ("input_2.__dict__", "'__dict__' is private"),
    ("_adapter", "'_adapter' is private"),
    ("adapter.connection", "lakeshore218 has no channel 'adapter'"),
    ("write", "no readable property 'write'"),
    ("input_2.temperature.real", "'temperature' is a property of lakeshore218 input_2"),
])
def test_read_paths_name_only_declared_readable_properties(tmp_path, read, expect):
    cfg = ls218_config(tmp_path / "s.sqlite")
    cfg["channels"]["trap_holder"]["read"] = read
    with pytest.raises(ConfigError, match=f"channels.trap_holder.read: .*{expect}"):
        parse_config(cfg)
    assert not (tmp_path / "s.sqlite").exists()


def test_typo_in_a_read_path_is_one_line_before_anything_opens(tmp_path):
    text = (ROOT / "configs" / "logger.sim.toml").read_text()
    text = text.replace('read = "input_2.temperature"', 'read = "input_2.temprature"')
    cfg = _write_toml(tmp_path / "typo.toml", text.replace(
        'path = "logger-sim.sqlite"', f'path = "{tmp_path / "s.sqlite"}"'))
    result = subprocess.run([sys.executable, "-m", "ionclock", "log", str(cfg),
                             "--simulate", "--duration", "1h"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "ionclock: error: config: channels.temp.endcap.read: lakeshore218 input_2 has no "
        "readable property 'temprature' (it has: curve, enabled, filter, resistance, status, "
        "temperature)"]
    assert not (tmp_path / "s.sqlite").exists()


def test_a_read_error_is_a_missing_sample_of_that_channel_not_an_offline_unit(tmp_path):
    """A channel whose reading is no number (here the unit's identity string) misses its
    samples with the reason; the instrument stays online and its other channels log on."""
    path = tmp_path / "s.sqlite"
    cfg = ls218_config(path)
    cfg["channels"]["bad"] = {"instrument": "ls218", "read": "idn", "period_s": 60.0}
    logger, _ = run_twin(cfg, 2 * 3600.0)
    db = sqlite3.connect(path)
    n = dict(db.execute("SELECT channel, count(value) FROM samples GROUP BY channel"))
    assert n == {"lnc_bottom": 121, "trap_holder": 241, "bad": 0}
    assert db.execute("SELECT count(*) FROM samples WHERE channel='bad'").fetchone()[0] == 121
    events = db.execute("SELECT kind, source, detail FROM events WHERE kind NOT LIKE "
                        "'logger_%'").fetchall()
    assert [(k, s) for k, s, _ in events] == [("reading_missing", "bad")]
    assert "ValueError" in events[0][2] and "could not convert" in events[0][2]
    assert logger.stats.missing == 121 and logger.stats.events == {"reading_missing": 1}


def _write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    bad = _write_toml(tmp_path / "bad.toml", """
[store]
path = "s.sqlite"
[instruments.ls218]
model = "lakeshore218"
resource = "sim://lakeshore218"
[channels.x]
instrument = "ls218"
read = "input_1.temperature"
period_s = "often"
""")
    assert main(["log", str(bad), "--simulate", "--duration", "1h"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ionclock: error: config: channels.x.period_s: expected a number, got str"]
    good = (ROOT / "configs" / "logger.sim.toml").read_text()
    cfg = _write_toml(tmp_path / "ok.toml", good)
    assert main(["log", str(cfg), "--simulate", "--duration", "1h",
                 "--store", str(tmp_path / "no" / "such" / "dir" / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert main(["status", str(tmp_path / "missing.sqlite")]) == 2
    assert main(["plot", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "x.png")]) == 2
    assert main(["log", str(tmp_path / "nope.toml")]) == 2


def test_example_configs_validate():
    for name in ("logger.example.toml", "logger.sim.toml"):
        cfg = load_config(ROOT / "configs" / name)
        assert cfg.channels


# --- the scheduler, on a tiny double ----------------------------------------------------
class _Double:
    """Scheduler test double: a driver whose `value` reads env.now, or raises when down."""

    def __init__(self, adapter=None, **kw):
        self.env = adapter
        self.down = False
        self.reads: list[float] = []

    @property
    def value(self) -> float:
        if self.down:
            raise TimeoutError("double: no reply")
        self.reads.append(self.env.now)
        return self.env.now

    def close(self):
        pass


@pytest.fixture
def double(monkeypatch):
    """Register the double as model 'double'; its resource gives it the env directly."""
    instances = []

    def open_instrument(model, resource, *, world=None, key="", twin_options=None):
        d = _Double(world.env)
        instances.append(d)
        return d

    monkeypatch.setattr(registry, "open_instrument", open_instrument)
    monkeypatch.setattr(registry, "driver_class", lambda model, key="": _Double)
    return instances


def test_each_channel_keeps_its_own_drift_free_period(tmp_path, double):
    cfg = {"store": {"path": str(tmp_path / "s.sqlite")},
           "instruments": {"d": {"model": "double", "resource": "x"}},
           "channels": {"fast": {"instrument": "d", "read": "value", "period_s": 0.7},
                        "slow": {"instrument": "d", "read": "value", "period_s": 10.0}}}
    env = simpy.Environment()
    logger = Logger(parse_config(cfg), env, world=type("W", (), {"env": env})(), simulate=True)
    logger.start()
    logger.run(100.0)
    logger.close()
    db = sqlite3.connect(tmp_path / "s.sqlite")
    fast = [t for (t,) in db.execute("SELECT t FROM samples WHERE channel='fast' ORDER BY t")]
    slow = [t for (t,) in db.execute("SELECT t FROM samples WHERE channel='slow' ORDER BY t")]
    assert len(fast) == 143 and fast[-1] == pytest.approx(142 * 0.7)
    assert all(t == pytest.approx(k * 0.7, abs=1e-9) for k, t in enumerate(fast))
    assert slow == [10.0 * k for k in range(11)]  # both ends included


def test_offline_instrument_backs_off_and_comes_back(tmp_path, double):
    cfg = {"store": {"path": str(tmp_path / "s.sqlite")},
           "instruments": {"d": {"model": "double", "resource": "x"}},
           "channels": {"c": {"instrument": "d", "read": "value", "period_s": 1.0}},
           "polling": {"max_backoff_s": 16.0}}
    env = simpy.Environment()
    logger = Logger(parse_config(cfg), env, world=type("W", (), {"env": env})(), simulate=True)
    logger.start()
    dev = double[0]

    def outage():
        yield env.timeout(10.5)
        dev.down = True
        yield env.timeout(100.0)
        dev.down = False

    env.process(outage())
    logger.run(200.0)
    logger.close()
    db = sqlite3.connect(tmp_path / "s.sqlite")
    kinds = [(t, k) for t, k in db.execute(
        "SELECT t, kind FROM events WHERE kind LIKE 'instrument%' ORDER BY t")]
    assert kinds == [(11.0, "instrument_offline"), (122.0, "instrument_online")]
    # Attempts while down: 11, then waits of 1, 2, 4, 8, 16, 16, ... (max_backoff_s = 16):
    # 12, 14, 18, 26, 42, 58, 74, 90, 106 fail; 122 (> 110.5) is the first good read.
    times = [t for (t,) in db.execute("SELECT t FROM samples ORDER BY t")]
    assert times[:11] == [float(k) for k in range(11)]
    assert logger.stats.failed_reads == 10
    assert times[11:] == [float(k) for k in range(122, 201)]


# --- twin runs ------------------------------------------------------------------------------
def test_twin_run_records_the_cryostat_with_rollups_and_refills(tmp_path):
    path = tmp_path / "s.sqlite"
    logger, world = run_twin(ls218_config(path), 5 * 86400.0)
    db = sqlite3.connect(path)
    n = dict(db.execute("SELECT channel, count(*) FROM samples GROUP BY channel"))
    assert n == {"lnc_bottom": 5 * 1440 + 1, "trap_holder": 5 * 2880 + 1}
    # Values are the twin's: lnc_bottom at the start is the cryostat's ln2_bottom + the
    # sensor's calibration error, to the unit's 5-digit resolution.
    twin = logger.instruments["ls218"].driver.twin
    first = db.execute("SELECT value FROM samples WHERE channel='lnc_bottom' ORDER BY t"
                       " LIMIT 1").fetchone()[0]
    assert 76.0 < first < 80.0 and twin is not None
    # Rollups equal the raw data they summarise.
    for table in ("samples_1m", "samples_1h"):
        for ch in n:
            stored = db.execute(f"SELECT channel, t, n, vmin, vmax, vsum FROM {table}"
                                " WHERE channel = ? ORDER BY t", (ch,)).fetchall()
            again = recompute(db, table, ch)
            assert [r[:5] for r in stored] == [r[:5] for r in again]
            assert all(math.isclose(a[5], b[5], rel_tol=1e-12) for a, b in zip(stored, again))
    # Every refill the cryostat made is found, within one poll period, and nothing else.
    truth = [r.time for r in world.cryostat.refills()]
    found = [t for (t,) in db.execute("SELECT t FROM events WHERE kind='ln2_refill'")]
    assert len(truth) == 2 and len(found) == len(truth)
    assert all(0 <= f - r <= 60.0 for f, r in zip(found, truth))


def test_out_of_band_and_missing_readings(tmp_path):
    path = tmp_path / "s.sqlite"

    def setup(logger, env, world):
        def excursion():
            yield env.timeout(3600.0)
            world.cryostat.inject_excursion(+8.0, 1800.0, "trap_holder", time_constant=60.0)
            yield env.timeout(7200.0)
            logger.instruments["ls218"].driver.twin.open_inputs.add("1")

        env.process(excursion())

    run_twin(ls218_config(path), 4 * 3600.0, setup=setup)
    db = sqlite3.connect(path)
    ev = db.execute("SELECT t, kind, source FROM events WHERE kind LIKE '%band'"
                    " ORDER BY t").fetchall()
    assert [(k, s) for _, k, s in ev] == [("out_of_band", "trap_holder"),
                                          ("in_band", "trap_holder")]
    assert 3600.0 < ev[0][0] < 3600.0 + 600 and 5400.0 < ev[1][0] < 5400.0 + 1800
    # An open input reads as overload: stored as NULL (missing), never as a number.
    nulls = db.execute("SELECT count(*), min(t) FROM samples WHERE channel='lnc_bottom'"
                       " AND value IS NULL").fetchone()
    assert nulls[0] == 61 and nulls[1] == 10800.0


def test_instrument_dropout_events_and_no_sample_invented(tmp_path):
    path = tmp_path / "s.sqlite"

    def setup(logger, env, world):
        twin = logger.instruments["ls218"].driver.twin

        def faults():
            yield env.timeout(3000.0)
            twin.faults.disconnected = True
            yield env.timeout(1800.0)
            twin.faults.disconnected = False
            yield env.timeout(1800.0)
            twin.faults.garble = True
            yield env.timeout(300.0)
            twin.faults.garble = False

        env.process(faults())

    logger, _ = run_twin(ls218_config(path), 4 * 3600.0, setup=setup)
    db = sqlite3.connect(path)
    ev = db.execute("SELECT t, kind FROM events WHERE kind LIKE 'instrument%'"
                    " ORDER BY t").fetchall()
    assert [k for _, k in ev] == ["instrument_offline", "instrument_online"] * 2
    assert ev[0][0] == 3000.0 and 4800.0 <= ev[1][0] <= 4800.0 + 600
    # No sample inside the outage, and the grid outside it is complete.
    times = [t for (t,) in db.execute("SELECT t FROM samples WHERE channel='trap_holder'"
                                      " ORDER BY t")]
    assert not [t for t in times if 3000.0 <= t < 4800.0]
    assert [t for t in times if t < 3000.0] == [30.0 * k for k in range(100)]
    # Garbled replies never become numbers: every stored value is a plausible temperature.
    lo, hi = db.execute("SELECT min(value), max(value) FROM samples").fetchone()
    assert 75.0 < lo and hi < 85.0


def test_twin_run_resumes_on_the_same_store(tmp_path):
    cfg_path = tmp_path / "log.toml"
    text = (ROOT / "configs" / "logger.sim.toml").read_text().replace(
        'path = "logger-sim.sqlite"', f'path = "{tmp_path / "s.sqlite"}"')
    cfg_path.write_text(text)
    assert main(["log", str(cfg_path), "--simulate", "--duration", "2h", "--quiet"]) == 0
    assert resume_time(tmp_path / "s.sqlite") == 7201.0
    assert main(["log", str(cfg_path), "--simulate", "--duration", "2h", "--quiet"]) == 0
    db = sqlite3.connect(tmp_path / "s.sqlite")
    times = [t for (t,) in db.execute("SELECT t FROM samples WHERE channel='temp.ln2_bottom'"
                                      " ORDER BY t")]
    assert len(times) == len(set(times)) == 242
    assert times[120:122] == [7200.0, 7201.0]
    assert [k for (k,) in db.execute("SELECT kind FROM events ORDER BY rowid")] == [
        "logger_started", "logger_stopped", "logger_started", "logger_stopped"]


def test_sigterm_stops_cleanly(tmp_path):
    """A real-time logger process ends on SIGTERM with everything committed."""
    path = tmp_path / "s.sqlite"
    cfg = tmp_path / "rt.toml"
    cfg.write_text(f"""
[store]
path = "{path}"
[instruments.ls218]
model = "lakeshore218"
resource = "sim://lakeshore218"
[channels.lnc_bottom]
instrument = "ls218"
read = "input_1.temperature"
period_s = 0.05
unit = "K"
""")
    proc = subprocess.Popen([sys.executable, "-m", "ionclock", "log", str(cfg), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "logging 1 channels" in line
        import time

        time.sleep(1.0)
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    n = int(out.split("logged ")[1].split()[0])
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == n > 5
    assert db.execute("SELECT kind FROM events ORDER BY rowid DESC LIMIT 1").fetchone() == (
        "logger_stopped",)
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def test_missing_store_directory_is_a_user_error(tmp_path):
    cfg = ls218_config(tmp_path / "nope" / "s.sqlite")
    env = simpy.Environment()
    with pytest.raises(UserError, match="does not exist"):
        Logger(parse_config(cfg), env, world=make_env_world(env, 1), simulate=True).start()


def test_prometheus_and_alarm_webhook_in_a_run(tmp_path):
    """A twin run with /metrics served and every refill POSTed to a loopback webhook."""
    import http.server
    import json
    import threading
    import urllib.request

    posted = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cfg = ls218_config(tmp_path / "s.sqlite")
    cfg["sinks"] = {"prometheus": {"enabled": True, "port": 0}}
    cfg["alarms"] = {"webhook": f"http://127.0.0.1:{server.server_address[1]}/alarm",
                     "kinds": ["ln2_refill"]}
    env = simpy.Environment()
    world = make_env_world(env, 1)
    logger = Logger(parse_config(cfg), env, world=world, simulate=True).start()
    try:
        logger.run(5 * 86400.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{logger.prometheus.port}/metrics",
                                    timeout=5) as r:
            metrics = r.read().decode()
    finally:
        logger.close(drain_timeout_s=20)
        server.shutdown()
        server.server_close()
        thread.join()
    assert 'ionclock_sample_value{channel="lnc_bottom",unit="K"}' in metrics
    assert 'ionclock_events_total{kind="ln2_refill"} 2.0' in metrics
    assert [p["kind"] for p in posted] == ["ln2_refill", "ln2_refill"]
    assert posted[0]["t_unix"] == pytest.approx(1735689600.0 + world.cryostat.refills()[0].time,
                                                abs=60)


def test_a_prometheus_port_in_use_stops_the_start_with_one_line(tmp_path, capsys):
    """A configured /metrics endpoint that cannot be served is not one WARNING in a
    months-long log: the logger refuses to start, before the store is touched."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        text = (ROOT / "configs" / "logger.sim.toml").read_text().replace(
            'path = "logger-sim.sqlite"', f'path = "{tmp_path / "s.sqlite"}"').replace(
            "[sinks.prometheus]\nenabled = false\nport = 9108",
            f"[sinks.prometheus]\nenabled = true\nport = {port}")
        cfg = _write_toml(tmp_path / "prom.toml", text)
        assert main(["log", str(cfg), "--simulate", "--duration", "1h", "--quiet"]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"ionclock: error: config: sinks.prometheus.port: cannot serve /metrics on "
        f"127.0.0.1:{port}: ")
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x", "localhost:9000",
                                 "http://", "javascript:alert(1)"])
def test_alarm_webhook_must_be_an_http_url(tmp_path, url):
    cfg = ls218_config(tmp_path / "s.sqlite", alarms={"webhook": url})
    with pytest.raises(ConfigError) as err:
        parse_config(cfg)
    assert err.value.key == "alarms.webhook"
    parse_config(ls218_config(tmp_path / "s.sqlite",
                              alarms={"webhook": "https://lab.example.org:8443/hook"}))
