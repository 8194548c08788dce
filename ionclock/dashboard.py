"""`ionclock dashboard`: a store on a web page that updates itself (issue 17, decision 1100).

Two halves. `snapshot(store)` reads what a store holds at this moment into plain data: the
lock state and uptime, the latest six line offsets and B, the frequency record, the
temperatures with the LN2 refills, the live shift budget (what ``ionclock budget STORE``
prints: `ionclock.apparatus.live_budget.replay_db`), the latest events and which
instruments are online. It reads through `ionclock.storage.store.peek_store`, which never
writes a byte in or beside the store: a finished store is read ``immutable``, a store being
written through its WAL, read-only. A store shows what it has: a logger's (no lock frames)
has temperatures, budget, events and instruments, no lock.

`serve` puts the snapshot on a Bokeh server (the page, its plots and BokehJS come from the
bokeh package: nothing is loaded from the internet); each open page re-reads the snapshot
every `refresh_s` seconds (one read shared by every page open at that moment) and updates
its plots and tables in place over the server's websocket. The layout is one column that
stretches to the screen's width: a phone shows the same page, scrolled.
"""

from __future__ import annotations

import html
import json
import math
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ionclock.apparatus.live_budget import replay_db
from ionclock.config import load_toml
from ionclock.errors import ConfigError, UserError
from ionclock.report import resolve_store
from ionclock.storage.store import lock_holder, peek_store
from ionclock.storage.views import StoreView, refills
from ionclock.units import hms

#: points per plotted series at most (a week of frames is decimated, a month of temperatures
#: read from the rollups: `StoreView.series`)
MAX_POINTS = 1500
#: events listed on the page
N_EVENTS = 15
#: the tables every ionclock store has (`ionclock.storage.store.SCHEMA`)
STORE_TABLES = ("meta", "events", "samples", "channels")
#: events that change the lock's state, newest first decides
STATE_EVENTS = ("servo_started", "locked", "holdover", "ion_lost", "ion_reloaded",
                "fringe_error", "fringe_restored", "slip_corrected", "run_stopped",
                "logger_started", "logger_stopped")


@dataclass
class Snapshot:
    """What a store holds at one moment, ready for the page (times in store seconds)."""

    store: str
    kind: str                        # "clock run (twin)", "clock run (lab)", "logger", ...
    time_base: str                   # "elapsed" (twin clock run) or "calendar"
    t0_unix: float
    t_start: float
    writer: str                      # who writes the store now, or that none does
    writing: bool
    lock_state: str                  # LOCKED, HOLDOVER, ACQUIRING, STOPPED, NO LOCK (logger)
    lock_note: str
    t_last: float | None
    uptime_s: float | None
    frames: int
    cycles: int
    last_frame: dict[str, Any] | None
    frames_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nu_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    corrected_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    b_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    offsets_hz: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    holdover_spans: list[tuple[float, float]] = field(default_factory=list)
    temperatures: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    temperature_table: str = ""
    temperatures_last: list[tuple[str, str]] = field(default_factory=list)
    refills: list[tuple[float, str]] = field(default_factory=list)
    budget: dict | None = None
    budget_error: str = ""
    events: list[tuple[str, str, str, str]] = field(default_factory=list)
    instruments: dict[str, bool] = field(default_factory=dict)
    read_s: float = 0.0

    def stamp(self, t: float) -> str:
        """One store time for a person: ``+h:mm:ss`` of a twin clock run, else a UTC date."""
        if self.time_base == "elapsed":
            return "+" + hms(t - self.t_start)
        stamp = np.array([self.t0_unix + t]).astype("datetime64[s]")[0]
        return f"{stamp}Z"

    def x(self, t: np.ndarray | float) -> np.ndarray | float:
        """Plot abscissa: hours since the start (elapsed), else Unix ms (a datetime axis)."""
        if self.time_base == "elapsed":
            return (np.asarray(t, dtype=float) - self.t_start) / 3600.0
        return (np.asarray(t, dtype=float) + self.t0_unix) * 1e3


def resolve(path: str | Path) -> Path:
    """The store of a STORE or RUN_DIR argument (a run folder: its one store)."""
    try:
        return resolve_store(path)
    except UserError as err:
        raise UserError(str(err).replace("report: ", "dashboard: ", 1)) from None


def snapshot(store: str | Path, now_unix: float | None = None) -> Snapshot:
    """Read the store at `store` as it is now; a file that is not an ionclock store: `UserError`.

    `now_unix` (default: the wall clock) dates a lab store's data.
    """
    path = Path(store)
    start = time.perf_counter()
    snap = peek_store(path, lambda db: _read(db, path, time.time() if now_unix is None
                                             else now_unix), what="dashboard")
    snap.read_s = time.perf_counter() - start
    return snap


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def check_store(db: sqlite3.Connection, path: Path) -> set[str]:
    """The store's tables; a SQLite file without an ionclock store's tables: `UserError`."""
    tables = _tables(db)
    missing = [t for t in STORE_TABLES if t not in tables]
    if missing:
        raise UserError(f"dashboard: {str(path)!r} is not an ionclock store (no "
                        f"{', '.join(missing)} table{'s' if len(missing) > 1 else ''})")
    return tables


def _read(db: sqlite3.Connection, path: Path, now_unix: float) -> Snapshot:
    tables = check_store(db, path)
    view = StoreView(path, db=db)   # the connection is peek_store's: it closes it
    meta = view.meta
    clock_run = view.clock_run
    kind = ("clock run" if clock_run else "logger") + (" (twin)" if view.simulated else "")
    t_start = float(meta.get("t_start_s", 0.0) or 0.0)
    writer, writing = _writer(path)

    has_frames = "lock_frames" in tables
    last = db.execute("SELECT t, frame, nu_hz, drift_hz_s, b_t, o0, o1, o2, o3, o4, o5, "
                      "locked, holdover, nu_abs_hz, corrected_hz, corrected_sigma_hz "
                      "FROM lock_frames ORDER BY frame DESC LIMIT 1").fetchone() \
        if has_frames else None
    frames = int(db.execute("SELECT COUNT(*) FROM lock_frames").fetchone()[0]) \
        if has_frames else 0
    cycles = int(db.execute("SELECT IFNULL(MAX(rowid), 0) FROM servo_cycles").fetchone()[0]) \
        if "servo_cycles" in tables else 0
    last_frame = None
    if last is not None:
        names = ("t", "frame", "nu_hz", "drift_hz_s", "b_t", "o0", "o1", "o2", "o3", "o4",
                 "o5", "locked", "holdover", "nu_abs_hz", "corrected_hz", "corrected_sigma_hz")
        last_frame = dict(zip(names, last))

    t_ends = [r[0] for r in (db.execute(f"SELECT MAX(t) FROM {t}").fetchone()  # noqa: S608
                             for t in ("lock_frames", "events", "samples") if t in tables)
              if r[0] is not None]
    t_last = max(t_ends) if t_ends else None
    if not clock_run:   # a logger's start: its first sample or event
        firsts = [r[0] for r in (db.execute(f"SELECT MIN(t) FROM {t}").fetchone()  # noqa: S608
                                 for t in ("events", "samples")) if r[0] is not None]
        t_start = min(firsts) if firsts else 0.0
    state_events = view.events(kinds=STATE_EVENTS)
    lock_state, lock_note = _lock_state(clock_run, last_frame, state_events, writing, view)
    if t_last is not None and not view.simulated and writing:
        age = now_unix - (view.t0_unix + t_last)
        if age > 120.0:
            lock_note += f"; newest record {age / 60:.0f} min old: the writer is not recording"
    snap = Snapshot(
        store=str(path), kind=kind, time_base=view.time_base, t0_unix=view.t0_unix,
        t_start=t_start, writer=writer, writing=writing, lock_state=lock_state,
        lock_note=lock_note, t_last=t_last,
        uptime_s=None if t_last is None else t_last - t_start, frames=frames, cycles=cycles,
        last_frame=last_frame)
    if has_frames and frames:
        _frame_series(db, snap, frames)
    _temperatures(view, snap)
    evs = view.events(kinds=("ln2_refill", "refill"))
    snap.refills = [(t, "LN2 refill (detected)") for t in refills(evs)] + [
        (t, "LN2 refill (twin)") for t, k, src, _ in evs if k == "refill" and src == "twin"]
    try:
        from ionclock.apparatus.cd_run import is_cd_db, store_budget_db

        # a Cd+ run's budget is its own (the SOZS at the field it tracked), as `ionclock
        # budget` gives it; a 40Ca+ one is the live budget replayed
        budget = (store_budget_db(db, str(path)) if is_cd_db(db)
                  else replay_db(db, str(path)))
        snap.budget = budget.to_dict()
    except UserError as err:
        snap.budget_error = str(err)
    rows = db.execute("SELECT t, kind, source, detail FROM events ORDER BY t DESC, rowid DESC "
                      "LIMIT ?", (N_EVENTS,)).fetchall()
    snap.events = [(snap.stamp(t), k, s, _short(d)) for t, k, s, d in rows]
    snap.instruments = _instruments(view, meta)
    return snap


def _writer(path: Path) -> tuple[str, bool]:
    """Who writes the store (the lock file's record, its process alive), or that none does."""
    holder = lock_holder(path)
    if not holder or not holder.get("pid"):
        return "no writer: the store is not being recorded", False
    pid = int(holder["pid"])
    if holder.get("host") not in (None, socket.gethostname()):
        return f"pid {pid} on {holder['host']} (cannot be checked from here)", True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return (f"no writer: pid {pid} (`{holder.get('command', '?')}`) ended without "
                "closing the store (killed?)"), False
    except PermissionError:
        pass
    command = " ".join(str(holder.get("command", "?")).split())
    return f"pid {pid} (`{command}`)", True


def _lock_state(clock_run: bool, last: dict | None, state_events: list, writing: bool,
                view: StoreView) -> tuple[str, str]:
    """The lock's state word and a line saying where it comes from."""
    if not clock_run:
        return "NO LOCK", "a logger's store: no clock is locked in it"
    last_event = state_events[-1] if state_events else None
    said = (f"last state event: {last_event[1]} at {view.stamp(last_event[0])}"
            if last_event else "no state event yet")
    if last_event is not None and last_event[1] == "run_stopped":
        return "STOPPED", f"the run ended ({last_event[3].get('reason', '?')}); {said}"
    if not writing:
        return "STOPPED", f"no writer, and no run_stopped event: the run ended unannounced; {said}"
    if last is None:
        return "ACQUIRING", f"no lock frame yet; {said}"
    if last["holdover"]:
        return "HOLDOVER", f"frame {last['frame']} in holdover; {said}"
    if last["locked"]:
        return "LOCKED", f"frame {last['frame']} locked; {said}"
    return "ACQUIRING", f"frame {last['frame']} not locked yet; {said}"


def _frame_series(db: sqlite3.Connection, snap: Snapshot, frames: int) -> None:
    """The frequency record, B and the offsets, decimated to `MAX_POINTS`; holdover spans."""
    # every step-th frame number, then those frames by primary key: a few thousand lookups,
    # not a scan of a month's 2.5 million frames (26 ms against 225 ms here)
    first = db.execute("SELECT MIN(frame) FROM lock_frames").fetchone()[0]
    last = db.execute("SELECT MAX(frame) FROM lock_frames").fetchone()[0]
    step = max(1, math.ceil((last - first + 1) / MAX_POINTS))
    cols = ("t, nu_hz, IFNULL(corrected_hz, 'nan'), b_t, IFNULL(o0, 'nan'), IFNULL(o1, 'nan'), "
            "IFNULL(o2, 'nan'), IFNULL(o3, 'nan'), IFNULL(o4, 'nan'), IFNULL(o5, 'nan'), frame")
    rows = db.execute(f"WITH RECURSIVE pick(n) AS (SELECT ? UNION ALL SELECT n + ? FROM pick "  # noqa: S608
                      f"WHERE n + ? <= ?) SELECT {cols} FROM pick JOIN lock_frames "
                      "ON frame = n ORDER BY frame", (first, step, step, last)).fetchall()
    if not rows or rows[-1][-1] != last:   # the newest frame always on the plot
        rows += db.execute(f"SELECT {cols} FROM lock_frames WHERE frame = ?",  # noqa: S608
                           (last,)).fetchall()
    a = np.array(rows, dtype=float).reshape(-1, 11)
    snap.frames_t, snap.nu_hz, snap.corrected_hz, snap.b_t = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    snap.offsets_hz = a[:, 4:10]
    # every holdover episode, however short (a decimated plot would drop it): islands of
    # consecutive holdover frames
    snap.holdover_spans = [(float(t0), float(t1)) for t0, t1 in db.execute(
        "SELECT MIN(t), MAX(t) FROM (SELECT t, frame - ROW_NUMBER() OVER (ORDER BY frame) "
        "AS island FROM lock_frames WHERE holdover = 1) GROUP BY island ORDER BY 1")]


def _temperatures(view: StoreView, snap: Snapshot) -> None:
    """Every kelvin channel over the store's span (raw, or a rollup for a long span)."""
    chans = {n: c for n, c in view.channels().items() if c["unit"] == "K"}
    end = view.t_end()
    if not chans or end is None:
        return
    tables = set()
    lines = []
    for name in sorted(chans):
        s = view.series(name, -math.inf, end + 1e-6, "auto", max_points=4 * MAX_POINTS)
        snap.temperatures[name] = (s.t, s.value)
        tables.add(s.table)
        ok = s.value[np.isfinite(s.value)]
        lines.append((name, f"{ok[-1]:.3f} K" if len(ok) else "missing"))
    snap.temperature_table = "/".join(sorted(tables))
    snap.temperatures_last = lines


def _instruments(view: StoreView, meta: dict) -> dict[str, bool]:
    """Each instrument the store knows of: True online, False offline (its last event)."""
    names: list[str] = []
    config = meta.get("config")
    if isinstance(config, dict) and isinstance(config.get("instruments"), dict):
        names += list(config["instruments"])
    elif isinstance(meta.get("logger_config"), str):
        try:
            names += list(load_toml(meta["logger_config"]).get("instruments", {}))
        except ConfigError:
            pass    # the logger's config is not here: its instruments' events still are
    state = dict.fromkeys(names, True)
    for _, kind, source, _ in view.events(kinds=("instrument_offline", "instrument_online",
                                                 "logger_started")):
        if kind == "logger_started":
            state = {name: True for name in state}
        else:
            state[source] = kind == "instrument_online"
    return state


def _short(detail: str, width: int = 90) -> str:
    try:
        data = json.loads(detail)
    except ValueError:
        data = detail
    if data in ({}, "", None):
        return ""
    text = ", ".join(f"{k}={v}" for k, v in data.items()) if isinstance(data, dict) else str(
        data)
    return text if len(text) <= width else text[: width - 3] + "..."


# --- the page's HTML parts ---------------------------------------------------------------
LOCK_COLOURS = {"LOCKED": "#1a7f37", "HOLDOVER": "#d97706", "ACQUIRING": "#2563eb",
                "STOPPED": "#6b7280", "NO LOCK": "#6b7280"}
_TABLE_STYLE = ("<style>div{overflow-wrap:anywhere}"
                "table{border-collapse:collapse;font-size:13px;width:100%}"
                "td,th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:left}"
                "td:first-child{white-space:nowrap}"
                "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
                ".bad{color:#b91c1c;font-weight:bold}</style>")


def _e(x: Any) -> str:
    return html.escape(str(x))


def header_html(s: Snapshot) -> str:
    """Lock state, uptime, counts, the writer: the page's head."""
    colour = LOCK_COLOURS.get(s.lock_state, "#6b7280")
    uptime = "-" if s.uptime_s is None else hms(max(0.0, s.uptime_s))
    last = "-" if s.t_last is None else s.stamp(s.t_last)
    clock = " (simulated)" if s.time_base == "elapsed" else ""
    return (
        f"<div style='font-family:sans-serif;overflow-wrap:anywhere'>"
        f"<div style='font-size:13px;color:#555'>{_e(s.store)} &middot; {_e(s.kind)}</div>"
        f"<div id='lock-state' style='display:inline-block;margin:6px 0;padding:6px 14px;"
        f"border-radius:6px;color:white;font-size:28px;font-weight:bold;"
        f"background:{colour}'>{_e(s.lock_state)}</div>"
        f"<div id='lock-note' style='font-size:13px'>{_e(s.lock_note)}</div>"
        f"<div style='font-size:15px;margin-top:4px'>uptime <b id='uptime'>{uptime}</b>{clock}"
        f" &middot; frames <b id='frames'>{s.frames}</b> &middot; cycles "
        f"<b id='cycles'>{s.cycles}</b> &middot; newest record <b id='t-last'>{_e(last)}</b>"
        f"</div><div style='font-size:13px;color:#555'>writer: <span id='writer'>"
        f"{_e(s.writer)}</span> &middot; read in {s.read_s * 1e3:.0f} ms</div></div>")


def lines_html(s: Snapshot) -> str:
    """The six line offsets and B of the newest frame."""
    f = s.last_frame
    if f is None:
        return "<div id='lines'>no lock frames in this store</div>"
    cells = "".join(
        f"<tr><td>line {i}</td><td class='n'>"
        f"{'-' if f[f'o{i}'] is None else format(f[f'o{i}'], '+.3f')} Hz</td></tr>"
        for i in range(6))
    corrected = ("-" if f["corrected_hz"] is None else
                 f"{f['corrected_hz']:+.3f} &plusmn; {f['corrected_sigma_hz']:.3f} Hz")
    return (f"{_TABLE_STYLE}<div id='lines' style='font-family:sans-serif'>"
            f"<b>Newest frame</b> ({_e(s.stamp(f['t']))})<table>"
            f"<tr><td>B</td><td class='n'>{f['b_t'] * 1e6:.5f} &micro;T</td></tr>"
            f"<tr><td>laser steering &nu;</td><td class='n'>{f['nu_hz']:+.3f} Hz</td></tr>"
            f"<tr><td>drift</td><td class='n'>{f['drift_hz_s'] * 1e3:+.3f} mHz/s</td></tr>"
            f"<tr><td>corrected output</td><td class='n'>{corrected}</td></tr>"
            f"{cells}</table></div>")


def budget_html(s: Snapshot) -> str:
    """The live shift budget (what ``ionclock budget STORE`` prints), its total, validity."""
    if s.budget is None:
        return (f"<div id='budget' style='font-family:sans-serif'><b>Live budget</b>: "
                f"{_e(s.budget_error or 'none')}</div>")
    b = s.budget
    unit = f"1e{round(math.log10(b['unit']))}"
    rows = "".join(
        f"<tr><td>{_e(r['effect'])}</td><td class='n'>{_num(r['shift'])}</td>"
        f"<td class='n'>{_num(r['uncertainty'])}</td>"
        f"<td{'' if r['valid'] else ' class=bad'}>"
        f"{'' if r['valid'] else 'INVALID: ' + _e(r['reason'])}</td></tr>" for r in b["rows"])
    tot = b["total"]
    prov = b.get("provenance", {})
    window = (f"window {_e(s.stamp(prov['since']))} to {_e(s.stamp(prov['until']))}"
              if "since" in prov and "until" in prov else "")
    nominal = ", ".join(prov.get("nominal_inputs", []))
    return (f"{_TABLE_STYLE}<div id='budget' style='font-family:sans-serif'>"
            f"<b>Live shift budget</b> <span style='font-size:12px;color:#555'>{window}"
            f"{'; nominal: ' + _e(nominal) if nominal else ''}</span>"
            f"<table><tr><th>effect</th><th class='n'>shift ({unit})</th>"
            f"<th class='n'>unc. ({unit})</th><th></th></tr>{rows}"
            f"<tr><th>Total</th><th class='n'>{_num(tot['shift'])}</th>"
            f"<th class='n'>{_num(tot['uncertainty'])}</th>"
            f"<th{'' if tot['valid'] else ' class=bad'}>"
            f"{'valid' if tot['valid'] else 'excludes invalid rows'}</th></tr></table>"
            f"<div style='font-size:13px'>{tot['shift_hz']:+.4g} Hz &plusmn; "
            f"{tot['uncertainty_hz']:.3g} Hz</div></div>")


def _num(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}"


def events_html(s: Snapshot) -> str:
    """The newest events, newest first."""
    rows = "".join(f"<tr><td>{_e(t)}</td><td>{_e(k)}</td><td>{_e(src)}</td>"
                   f"<td style='font-size:11px'>{_e(d)}</td></tr>" for t, k, src, d in s.events)
    return (f"{_TABLE_STYLE}<div id='events' style='font-family:sans-serif'>"
            f"<b>Events</b> (newest first)<table>{rows or '<tr><td>none</td></tr>'}"
            f"</table></div>")


def instruments_html(s: Snapshot) -> str:
    """Each instrument online or offline; the temperatures' newest readings."""
    inst = " ".join(
        f"<span style='display:inline-block;margin:2px;padding:2px 8px;border-radius:4px;"
        f"color:white;background:{'#1a7f37' if ok else '#b91c1c'}'>{_e(name)} "
        f"{'online' if ok else 'OFFLINE'}</span>" for name, ok in sorted(s.instruments.items()))
    temps = "".join(f"<tr><td>{_e(n)}</td><td class='n'>{_e(v)}</td></tr>"
                    for n, v in s.temperatures_last)
    return (f"{_TABLE_STYLE}<div id='instruments' style='font-family:sans-serif'>"
            f"<b>Instruments</b><div>{inst or 'none named in the store'}</div>"
            f"{'<b>Temperatures</b><table>' + temps + '</table>' if temps else ''}</div>")


# --- the Bokeh page ------------------------------------------------------------------------
class SharedSnapshot:
    """One snapshot of the store for every page open, re-read at most every `max_age_s`."""

    def __init__(self, store: Path, max_age_s: float):
        self.store, self.max_age_s = store, max_age_s
        self._snap: Snapshot | None = None
        self._at = -math.inf
        self.error = ""

    def get(self) -> Snapshot | None:
        now = time.monotonic()
        if self._snap is None or now - self._at >= self.max_age_s:
            try:
                self._snap, self.error = snapshot(self.store), ""
            except UserError as err:   # the store went away or broke: say so on the page
                self.error = str(err)
            self._at = now
        return self._snap


def make_document(doc, shared: SharedSnapshot, refresh_s: float) -> None:
    """Build one page (a Bokeh document) and keep it updated every `refresh_s`."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, Div, Legend
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure

    snap = shared.get()
    if snap is None:
        doc.add_root(Div(text=f"<b>ionclock dashboard</b>: {_e(shared.error)}"))
        return
    elapsed = snap.time_base == "elapsed"
    x_label = "simulated hours since the start" if elapsed else "time (UTC)"
    axis = "linear" if elapsed else "datetime"

    def fig(title: str, y_label: str):
        # the legend inside and a hidden toolbar: a phone's width is all plot
        p = figure(title=title, height=230, sizing_mode="stretch_width", x_axis_type=axis,
                   tools="pan,box_zoom,wheel_zoom,reset,save", toolbar_location="right",
                   min_width=280)
        p.toolbar.autohide = True
        p.xaxis.axis_label, p.yaxis.axis_label = x_label, y_label
        p.add_layout(Legend(click_policy="hide", label_text_font_size="8pt",
                            location="top_left", background_fill_alpha=0.6,
                            spacing=0, padding=4, glyph_height=12, label_height=12))
        return p

    header = Div(text=header_html(snap), sizing_mode="stretch_width")
    lines = Div(text=lines_html(snap), sizing_mode="stretch_width")
    budget = Div(text=budget_html(snap), sizing_mode="stretch_width")
    events = Div(text=events_html(snap), sizing_mode="stretch_width")
    instruments = Div(text=instruments_html(snap), sizing_mode="stretch_width")
    error = Div(text="", sizing_mode="stretch_width", styles={"color": "#b91c1c"})
    children = [header, error, lines, budget, instruments]

    frames = ColumnDataSource(data=_frame_data(snap))
    spans = ColumnDataSource(data=_span_data(snap))
    refill_src = ColumnDataSource(data=_refill_data(snap))
    temps = ColumnDataSource(data=_temperature_data(snap))
    if snap.kind.startswith("clock run"):
        p_nu = fig("Frequency record", "Hz at the ion")
        p_nu.vstrip(x0="x0", x1="x1", source=spans, color="#d97706", alpha=0.2,
                    legend_label="holdover")
        p_nu.line("x", "nu", source=frames, color="#2563eb", legend_label="laser steering")
        p_nu.line("x", "corrected", source=frames, color="#1a7f37",
                  legend_label="corrected output")
        p_off = fig("Line offsets, each minus its mean", "Hz")
        for i in range(6):
            p_off.line("x", f"o{i}", source=frames, color=Category10_10[i],
                       legend_label=f"line {i}")
        p_b = fig("Field B (Zeeman splittings)", "µT")
        p_b.line("x", "b_ut", source=frames, color="#7c3aed", legend_label="B")
        children += [p_nu, p_off, p_b]
    p_t = fig("Temperatures" + (f" [{snap.temperature_table} table]"
                                if snap.temperature_table else ""), "K")
    for i, name in enumerate(sorted(snap.temperatures)):
        p_t.line(f"x_{i}", f"y_{i}", source=temps, color=Category10_10[i % 10], legend_label=name)
    p_t.vspan(x="x", source=refill_src, color="#0891b2", line_dash="dashed", line_width=2,
              legend_label="LN2 refill")
    for p in children[5:]:   # one time axis: zoom one plot, all follow
        p.x_range = p_t.x_range
    children += [p_t, events]
    doc.add_root(column(*children, sizing_mode="stretch_width",
                        styles={"max-width": "1400px", "margin": "auto"}))
    doc.title = f"ionclock dashboard: {Path(snap.store).name}"

    def update() -> None:
        s = shared.get()
        error.text = f"<b>cannot read the store</b>: {_e(shared.error)}" if shared.error else ""
        if s is None:
            return
        header.text, lines.text = header_html(s), lines_html(s)
        budget.text, events.text = budget_html(s), events_html(s)
        instruments.text = instruments_html(s)
        frames.data, spans.data = _frame_data(s), _span_data(s)
        refill_src.data = _refill_data(s)
        data = _temperature_data(s)
        if set(data) == set(temps.data):   # a channel that appears later waits for a reload
            temps.data = data

    doc.add_periodic_callback(update, int(refresh_s * 1000))


def _frame_data(s: Snapshot) -> dict:
    x = s.x(s.frames_t)
    data = {"x": x, "nu": s.nu_hz, "corrected": s.corrected_hz, "b_ut": s.b_t * 1e6}
    # each offset about its mean over the plot: the Zeeman pattern (MHz) would hide the
    # residual structure (Hz) a slip or the quadrupole shift shows up in
    for i in range(6):
        col = s.offsets_hz[:, i]
        ok = col[np.isfinite(col)]
        data[f"o{i}"] = col - (ok.mean() if len(ok) else 0.0)
    return data


def _span_data(s: Snapshot) -> dict:
    return {"x0": [s.x(a) for a, _ in s.holdover_spans],
            "x1": [s.x(b) for _, b in s.holdover_spans]}


def _refill_data(s: Snapshot) -> dict:
    return {"x": [s.x(t) for t, _ in s.refills], "what": [w for _, w in s.refills]}


def _temperature_data(s: Snapshot) -> dict:
    # one source for all channels: columns of one length, padded with NaN (a gap)
    n = max((len(t) for t, _ in s.temperatures.values()), default=0)
    data: dict[str, np.ndarray] = {}
    for i, name in enumerate(sorted(s.temperatures)):
        t, v = s.temperatures[name]
        data[f"x_{i}"] = np.concatenate([s.x(t), np.full(n - len(t), np.nan)])
        data[f"y_{i}"] = np.concatenate([v, np.full(n - len(v), np.nan)])
    return data


def serve(store: Path, bind: str, port: int, refresh_s: float, on_ready=None) -> None:
    """Serve the dashboard of `store` on `bind`:`port` until interrupted (SIGINT/SIGTERM).

    The store is read once first, so a file that is not an ionclock store is refused before
    anything is served. `on_ready(url)` is called once the server listens.
    """
    import signal
    from functools import partial

    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    shared = SharedSnapshot(store, max_age_s=max(0.5, refresh_s / 2))
    if shared.get() is None:
        raise UserError(shared.error)
    # the page's websocket is accepted from the names the page is reached by: this machine's
    # for a loopback bind, any for an exposed one
    origins = ([f"127.0.0.1:{port}", f"localhost:{port}"] if bind in ("127.0.0.1", "localhost")
               else [f"*:{port}"])
    app = Application(FunctionHandler(partial(make_document, shared=shared,
                                              refresh_s=refresh_s)))
    try:
        server = Server({"/": app}, address=bind, port=port, allow_websocket_origin=origins,
                        num_procs=1)
    except OSError as err:
        raise UserError(f"dashboard: cannot serve on {bind}:{port}: {err.strerror}") from None
    server.start()
    loop = server.io_loop

    # through asyncio's own handlers: they wake the loop at once (a plain Python handler
    # waits for the loop's next wake-up when the signal lands on another thread)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.asyncio_loop.add_signal_handler(sig, loop.stop)
    host = f"[{bind}]" if ":" in bind else bind
    if on_ready is not None:
        on_ready(f"http://{host}:{server.port}/")
    try:
        loop.start()
    finally:
        server.stop()
