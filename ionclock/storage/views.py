"""Reading a logger store: series for a span, the plot, exports and the status summary.

Spans are relative to the newest sample in the store (``--since 7d`` = the last seven days
of data), so the same command works on a lab store (Unix times) and on a twin run (seconds
since ``meta.t0_unix``). `pick_table` chooses the raw table or a rollup so that a plot never
pulls more than about `max_points` rows per channel: a year is 8760 hourly bins, not 31.5
million raw rows; and only a table that still holds the span's start (retention prunes the
raw rows first, then the 1-min bins).

Time bases (`StoreView.time_base`): a lab store's times are on the calendar (a logger's
are Unix seconds, a clock run's seconds since ``meta.t0_unix``); a twin log's are simulated
seconds on the calendar its config starts (``[simulate] start_unix``); a twin clock run's
are simulated seconds since its start, which no calendar date belongs to (its ``t0_unix``
is the wall clock when it started: six simulated hours later is not a date). Ages in
`status` count from now in the lab and from the newest sample in a twin run.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ionclock.errors import UserError
from ionclock.storage.rollups import ROLLUPS
from ionclock.storage.store import open_readonly
from ionclock.units import hms

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0,
          "y": 365.25 * 86400.0}
TABLES = ("raw", "1m", "1h")
_TABLE_NAMES = {"raw": "samples", "1m": "samples_1m", "1h": "samples_1h"}


def parse_span(text: str) -> float:
    """Seconds in a span like ``90s``, ``15m``, ``12h``, ``7d``, ``2w``, ``1y`` (bare: s)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h|d|w|y)?\s*", text or "")
    if not m:
        raise UserError(f"bad span {text!r}: use a number and one of s, m, h, d, w, y")
    value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if value <= 0:
        raise UserError(f"bad span {text!r}: must be > 0")
    return value


def pick_table(span_s: float, period_s: float = 1.0, max_points: int = 20000,
               holds: dict[str, bool] | None = None) -> str:
    """``raw``, ``1m`` or ``1h``: the finest table giving at most `max_points` per channel.

    `holds`, if given, says which tables still hold the span's start (retention prunes raw
    rows first, then 1-min bins); one that does not is passed over for a coarser one.
    """
    holds = holds or {}
    if span_s / max(period_s, 1e-9) <= max_points and holds.get("raw", True):
        return "raw"
    if span_s / ROLLUPS["samples_1m"] <= max_points and holds.get("1m", True):
        return "1m"
    return "1h"


@dataclass
class Series:
    """One channel over a span: times (s, store clock) and values (mean for rollups)."""

    channel: str
    unit: str
    table: str
    t: np.ndarray
    value: np.ndarray
    vmin: np.ndarray | None = None
    vmax: np.ndarray | None = None
    n: np.ndarray | None = None


class StoreView:
    """Read-only access to a logger store."""

    def __init__(self, path: str | Path, db: sqlite3.Connection | None = None):
        """Open the store at `path` read-only, or view it through `db`, already open on it."""
        self.path = Path(path)
        self.db: sqlite3.Connection = open_readonly(self.path) if db is None else db
        try:
            self.meta = {k: json.loads(v) for k, v in self.db.execute(
                "SELECT key, value FROM meta")}
        except sqlite3.DatabaseError as err:
            raise UserError(f"store: {str(self.path)!r} is not an ionclock store: {err}") from None
        self.t0_unix = float(self.meta.get("t0_unix", 0.0) or 0.0)
        #: a clock run's store (ionclock sim / run) rather than a logger's
        self.clock_run = "servo" in self.meta or "simulated" in self.meta
        self.simulated = bool(self.meta.get("simulated") if self.clock_run
                              else self.meta.get("logger_simulate"))
        #: "calendar": t0_unix + t is a date (lab stores, twin logs); "elapsed": simulated
        #: seconds since a twin clock run's start, no date
        self.time_base = "elapsed" if self.clock_run and self.simulated else "calendar"

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- catalogue ------------------------------------------------------------------
    def channels(self) -> dict[str, dict]:
        """Known channels: from the channels table, plus any name seen in the rollups."""
        out = {name: {"unit": unit, "band": (lo, hi), "source": src, "period_s": p}
               for name, unit, lo, hi, src, p in self.db.execute(
                   "SELECT name, unit, band_min, band_max, source, period_s FROM channels")}
        for (name,) in self.db.execute("SELECT DISTINCT channel FROM samples_1h"):
            out.setdefault(name, {"unit": "", "band": (None, None), "source": "",
                                  "period_s": None})
        return out

    def t_end(self) -> float | None:
        """Newest sample time (s, store clock), from the hourly rollup's last bins."""
        row = self.db.execute("SELECT max(t) FROM samples_1h").fetchone()
        if row[0] is None:
            return None
        # The newest raw row lies in the newest hour bin: one indexed probe per channel.
        best = None
        for (ch,) in self.db.execute("SELECT DISTINCT channel FROM samples_1h"):
            t = self.db.execute("SELECT max(t) FROM samples WHERE channel = ?", (ch,)).fetchone()[0]
            if t is not None and (best is None or t > best):
                best = t
        return best if best is not None else row[0] + 3600.0

    def to_datetime(self, t: np.ndarray) -> np.ndarray:
        """Store times (s) as numpy datetime64 (UTC)."""
        return (np.asarray(t, dtype=float) + self.t0_unix).astype("datetime64[s]") if len(
            t) else np.array([], dtype="datetime64[s]")

    @staticmethod
    def stamp_unix(t_unix: float) -> str:
        """A Unix time as a UTC stamp to the second."""
        return f"{np.array([t_unix]).astype('datetime64[s]')[0]}Z"

    def stamp(self, t: float) -> str:
        """One store time for a person: a UTC date, or ``+h:mm:ss`` of a twin clock run."""
        if self.time_base == "elapsed":
            return "+" + hms(t - float(self.meta.get("t_start_s", 0.0) or 0.0))
        return f"{self.to_datetime(np.array([t]))[0]}Z"

    def age(self, t: float, end: float, now_unix: float) -> float:
        """How old a sample at store time `t` is (s): from now in the lab, else from `end`."""
        return end - t if self.simulated else now_unix - (self.t0_unix + t)

    def first_t(self, channel: str, table: str) -> float | None:
        """The channel's oldest time in `table` (raw, 1m, 1h); None if it has none there."""
        return self.db.execute(f"SELECT min(t) FROM {_TABLE_NAMES[table]} WHERE channel = ?",
                               (channel,)).fetchone()[0]

    def resolve_channels(self, names: list[str] | None) -> list[str]:
        known = self.channels()
        if not names:
            return sorted(known)
        missing = [n for n in names if n not in known]
        if missing:
            raise UserError(f"no channel {missing[0]!r} in {str(self.path)!r} "
                            f"(known: {', '.join(sorted(known)) or 'none'})")
        return names

    def span(self, since: str | None, until: str | None = None) -> tuple[float, float]:
        """(t0, t1) store times for ``--since``/``--until`` spans back from the newest sample."""
        end = self.t_end()
        if end is None:
            raise UserError(f"store {str(self.path)!r} holds no samples")
        t1 = end - (parse_span(until) if until else 0.0)
        t0 = t1 - parse_span(since) if since else -math.inf
        return t0, t1 + 1e-6

    # --- series -----------------------------------------------------------------------
    def series(self, channel: str, t0: float, t1: float, table: str = "auto",
               max_points: int = 20000) -> Series:
        """One channel between store times t0 and t1 from `table` (``auto``: `pick_table`)."""
        info = self.channels().get(channel, {})
        if table == "auto":
            oldest = self._t_first(channel)   # hourly bins: kept longest (forever, default)
            start = max(t0, oldest) if oldest is not None else t1
            # a finer table holds the span when its first row is within the hour of the
            # start; a month pruned by retention is not (it would be drawn empty)
            holds = {name: (first := self.first_t(channel, name)) is not None
                     and first <= start + ROLLUPS["samples_1h"] for name in ("raw", "1m")}
            table = pick_table(t1 - start, info.get("period_s") or 1.0, max_points, holds)
        if table not in TABLES:
            raise UserError(f"table must be one of {', '.join(TABLES)} or auto")
        name = _TABLE_NAMES[table]
        if table == "raw":
            rows = self.db.execute(
                "SELECT t, value FROM samples WHERE channel = ? AND t >= ? AND t < ?"
                " ORDER BY t", (channel, t0, t1)).fetchall()
            arr = np.array(rows, dtype=float).reshape(-1, 2)
            return Series(channel, info.get("unit", ""), table, arr[:, 0], arr[:, 1])
        rows = self.db.execute(
            f"SELECT t, vsum / n, vmin, vmax, n FROM {name} WHERE channel = ? AND t >= ?"
            f" AND t < ? ORDER BY t", (channel, _floor(t0, ROLLUPS[name]), t1)).fetchall()
        arr = np.array(rows, dtype=float).reshape(-1, 5)
        width = ROLLUPS[name]
        return Series(channel, info.get("unit", ""), table, arr[:, 0] + width / 2, arr[:, 1],
                      arr[:, 2], arr[:, 3], arr[:, 4])

    def _t_first(self, channel: str) -> float | None:
        return self.db.execute("SELECT min(t) FROM samples_1h WHERE channel = ?",
                               (channel,)).fetchone()[0]

    def events(self, t0: float = -math.inf, t1: float = math.inf,
               kinds: tuple[str, ...] | None = None) -> list[tuple[float, str, str, dict]]:
        sql = "SELECT t, kind, source, detail FROM events WHERE t >= ? AND t < ?"
        params: list = [t0, t1]
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            params += list(kinds)
        return [(t, k, s, json.loads(d)) for t, k, s, d in
                self.db.execute(sql + " ORDER BY t", params)]


def _floor(t: float, width: float) -> float:
    return math.floor(t / width) * width if math.isfinite(t) else t


def refills(events: list[tuple[float, str, str, dict]], merge_s: float = 3600.0) -> list[float]:
    """Refill times: ``ln2_refill`` events of all channels, those within `merge_s` merged."""
    times = sorted(t for t, kind, _, _ in events if kind == "ln2_refill")
    out: list[float] = []
    for t in times:
        if not out or t - out[-1] > merge_s:
            out.append(t)
    return out


# --- plot ----------------------------------------------------------------------------
def image_format(out: str | Path) -> str:
    """The image format of `out` from its suffix; one matplotlib cannot write is a `UserError`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    suffix = Path(out).suffix.lower()
    known = FigureCanvasAgg.get_supported_filetypes()
    if suffix[1:] not in known:
        what = (f"{suffix!r} is not an image format" if suffix
                else "a name without a suffix is not an image format")
        raise UserError(f"plot: --out {str(out)!r}: {what} (use .png, .pdf, .svg; also "
                        f"{', '.join(sorted(set(known) - {'png', 'pdf', 'svg'}))})")
    return suffix[1:]


def outages(events: list[tuple[float, str, str, dict]], t_end: float) -> list[tuple]:
    """(t0, t1, source) of each instrument outage: ``instrument_offline`` to its online.

    An instrument still offline at `t_end` (or when the logger stopped or restarted) is
    drawn to there.
    """
    spans: list[tuple[float, float, str]] = []
    open_: dict[str, float] = {}
    for t, kind, source, _ in events:
        if kind == "instrument_offline":
            open_.setdefault(source, t)
        elif kind == "instrument_online" and source in open_:
            spans.append((open_.pop(source), t, source))
        elif kind in ("logger_stopped", "run_stopped"):
            spans += [(t0, t, src) for src, t0 in open_.items()]
            open_.clear()
    spans += [(t0, t_end, src) for src, t0 in open_.items()]
    return sorted(spans)


def plot(store: str | Path, channels: list[str] | None, since: str | None, out: str | Path,
         until: str | None = None, table: str = "auto", title: str | None = None) -> dict:
    """Draw the channels' record with refills marked (seed Fig. 1 style) to a PNG/PDF/SVG.

    One panel per unit (K, A, V, ...; a shared time axis), each with its calibrated band
    when its channels share one; rollups draw the mean with the min-max envelope shaded;
    LN2 refills are dashed lines, instrument outages shaded spans. A twin clock run's time
    axis is its simulated hours (no date belongs to them). Returns what was drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out = Path(out)
    image_format(out)
    if not out.parent.is_dir():
        raise UserError(f"plot: directory {str(out.parent)!r} does not exist")
    with StoreView(store) as view:
        names = view.resolve_channels(channels)
        t0, t1 = view.span(since, until)
        series = [view.series(ch, t0, t1, table) for ch in names]
        evs = view.events(t0, t1)
        info = view.channels()
        groups: dict[str, list[Series]] = {}
        for s in series:
            groups.setdefault(s.unit, []).append(s)
        # the unit with most channels on top (the temperatures of a cryostat log)
        units = sorted(groups, key=lambda u: (u == "", -len(groups[u]), u))
        elapsed = view.time_base == "elapsed"
        t_start = float(view.meta.get("t_start_s", 0.0) or 0.0)

        def x_of(t: np.ndarray) -> np.ndarray:
            t = np.asarray(t, dtype=float)
            return (t - t_start) / 3600.0 if elapsed else view.to_datetime(t)

        fig, axes = plt.subplots(len(units), 1, sharex=True, squeeze=False, dpi=110,
                                 figsize=(10, 2.2 + 2.6 * len(units)))
        axes = axes[:, 0]
        t_last = max((float(s.t[-1]) for s in series if len(s.t)), default=t1)
        refill_t = refills(evs)
        spans = outages(evs, t_last)
        for ax, unit in zip(axes, units):
            members = groups[unit]
            for s in members:
                x = x_of(s.t)
                line, = ax.plot(x, s.value, lw=0.9, label=s.channel)
                if s.vmin is not None and len(s.t):
                    ax.fill_between(x, s.vmin, s.vmax, color=line.get_color(), alpha=0.18, lw=0)
            ylim = ax.get_ylim()
            for i, t in enumerate(refill_t):
                ax.axvline(x_of(np.array([t]))[0], color="tab:blue", ls="--", lw=0.8,
                           alpha=0.7, label="LN2 refill" if i == 0 else None)
            for i, (a, b, src) in enumerate(spans):
                xa, xb = x_of(np.array([a, b]))
                ax.axvspan(xa, xb, color="tab:red", alpha=0.15, lw=0,
                           label="instrument offline" if i == 0 else None)
            bands = {info[s.channel]["band"] for s in members
                     if s.channel in info and None not in info[s.channel]["band"]}
            if len(bands) == 1:
                # Shade the calibrated band without letting it set the scale of the data.
                lo, hi = bands.pop()
                ax.axhspan(lo, hi, color="0.5", alpha=0.06, lw=0, label="calibrated band")
            if any(len(s.t) for s in members):
                ax.set_ylim(ylim)
            ax.set_ylabel(_quantity(unit))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        tables = sorted({s.table for s in series})
        if elapsed:
            axes[-1].set_xlabel("simulated time since the start of the run (h)")
        else:
            axes[-1].set_xlabel("time (UTC)" + (" (twin run: simulated)" if view.simulated
                                               else ""))
            axes[-1].xaxis.set_major_formatter(
                mdates.ConciseDateFormatter(axes[-1].xaxis.get_major_locator()))
        axes[0].set_title(title or f"{Path(store).name}: {', '.join(names)}"
                          f"  [{'/'.join(tables)} table{'s' if len(tables) > 1 else ''}]",
                          fontsize=10)
        fig.tight_layout()
        fig.savefig(out)
        plt.close(fig)
        return {"channels": names, "tables": tables, "points": sum(len(s.t) for s in series),
                "refills": len(refill_t), "units": units, "outages": len(spans),
                "out": str(out)}


def _quantity(unit: str) -> str:
    if not unit:
        return "value (no unit)"
    return {"K": "temperature (K)", "A": "current (A)", "V": "voltage (V)",
            "Hz": "frequency (Hz)", "W": "power (W)"}.get(unit, f"value ({unit})")


# --- export ----------------------------------------------------------------------------
def export(store: str | Path, channels: list[str] | None, since: str | None, fmt: str,
           out: str | Path, until: str | None = None, table: str = "raw") -> dict:
    """Write the channels' data to CSV or HDF5; returns rows written per channel.

    CSV columns: ``time_utc, t, channel, value`` (raw) or ``time_utc, t, channel, n, min,
    mean, max`` (rollups; t = bin centre). HDF5: one group per channel with datasets ``t``,
    ``time_unix`` and ``value`` (or ``n``, ``min``, ``mean``, ``max``), unit as an attribute.
    """
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"export: directory {str(out.parent)!r} does not exist")
    if fmt not in ("csv", "hdf5"):
        raise UserError(f"export: format must be csv or hdf5, not {fmt!r}")
    with StoreView(store) as view:
        names = view.resolve_channels(channels)
        t0, t1 = view.span(since, until)
        series = [view.series(ch, t0, t1, table) for ch in names]
        counts = {s.channel: len(s.t) for s in series}
        if fmt == "csv":
            with out.open("w", newline="") as f:
                w = csv.writer(f)
                rollup = any(s.vmin is not None for s in series)
                w.writerow(["time_utc", "t", "channel"] + (["n", "min", "mean", "max"]
                                                           if rollup else ["value"]))
                for s in series:
                    stamps = view.to_datetime(s.t)
                    for i in range(len(s.t)):
                        head = [f"{stamps[i]}Z", repr(float(s.t[i])), s.channel]
                        if rollup:
                            w.writerow(head + [int(s.n[i]), repr(float(s.vmin[i])),
                                               repr(float(s.value[i])), repr(float(s.vmax[i]))])
                        else:
                            v = s.value[i]
                            w.writerow(head + ["" if math.isnan(v) else repr(float(v))])
        else:
            import h5py

            with h5py.File(out, "w") as f:
                f.attrs["store"] = str(store)
                f.attrs["t0_unix"] = view.t0_unix
                f.attrs["table"] = series[0].table if series else table
                for s in series:
                    g = f.create_group(s.channel)
                    g.attrs["unit"] = s.unit
                    g.create_dataset("t", data=s.t)
                    g.create_dataset("time_unix", data=s.t + view.t0_unix)
                    if s.vmin is None:
                        g.create_dataset("value", data=s.value)
                    else:
                        g.create_dataset("mean", data=s.value)
                        g.create_dataset("min", data=s.vmin)
                        g.create_dataset("max", data=s.vmax)
                        g.create_dataset("n", data=s.n.astype(np.int64))
        return counts


# --- status ----------------------------------------------------------------------------
def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def status(store: str | Path, n_events: int = 10, now: float | None = None) -> str:
    """Summarise a store for the terminal: channels (last value, age), events, size.

    `now` is the Unix time ages count from in the lab (default: the wall clock); a twin
    run's ages count from its newest sample, on its simulated clock.
    """
    path = Path(store)
    with StoreView(path) as view:
        chans = view.channels()
        end = view.t_end()
        now_unix = time.time() if now is None else now
        lines = [f"store {path}  ({_size(path)})"]
        if end is not None:
            if view.time_base == "elapsed":
                started = view.stamp_unix(view.t0_unix)
                lines.append(f"newest sample {view.stamp(end)} of simulated time (twin clock "
                             f"run started {started} wall clock; ages from the newest sample)")
            elif view.simulated:
                lines.append(f"newest sample {view.stamp(end)}  (twin run: simulated time on "
                             "its config's calendar; ages from the newest sample)")
            else:
                age = _age(max(0.0, view.age(end, end, now_unix)))
                lines.append(f"newest sample {view.stamp(end)}  ({age} ago)")
        lines.append("")
        lines.append(f"{'channel':<22}{'last value':>16}  {'age':>8}  {'rows (raw)':>10}  source")
        for name in sorted(chans):
            row = view.db.execute("SELECT t, value FROM samples WHERE channel = ?"
                                  " ORDER BY t DESC LIMIT 1", (name,)).fetchone()
            count = view.db.execute("SELECT count(*) FROM samples WHERE channel = ?",
                                    (name,)).fetchone()[0]
            unit = chans[name]["unit"]
            if row is None:
                value, age = "-", "-"
            else:
                value = "missing" if row[1] is None else f"{row[1]:.6g} {unit}".strip()
                age = _age(max(0.0, view.age(row[0], end, now_unix)))
            lo, hi = chans[name]["band"]
            flag = ""
            if row is not None and row[1] is not None and lo is not None and hi is not None \
                    and not lo <= row[1] <= hi:
                flag = "  OUT OF BAND"
            lines.append(f"{name:<22}{value:>16}  {age:>8}  {count:>10}  "
                         f"{chans[name]['source']}{flag}")
        counts = view.db.execute("SELECT kind, count(*) FROM events GROUP BY kind"
                                 " ORDER BY kind").fetchall()
        lines.append("")
        lines.append("events: " + (", ".join(f"{k} {n}" for k, n in counts) or "none"))
        offline = _offline_now(view)
        if offline:
            lines.append("OFFLINE now: " + ", ".join(offline))
        recent = view.db.execute("SELECT t, kind, source, detail FROM events ORDER BY t DESC"
                                 " LIMIT ?", (n_events,)).fetchall()
        for t, kind, source, detail in reversed(recent):
            lines.append(f"  {view.stamp(t)}  {kind:<20} {source:<18} {_short(detail)}")
        cursors = view.db.execute("SELECT name, last_rowid FROM cursors").fetchall()
        if cursors:
            top = {"sink": view.db.execute("SELECT max(rowid) FROM samples").fetchone()[0] or 0,
                   "alarm": view.db.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0}
            lines.append("")
            for name, rowid in cursors:
                lag = top.get(name.split(":")[0], 0) - rowid
                lines.append(f"{name}: {max(lag, 0)} rows behind")
        return "\n".join(lines)


def _offline_now(view: StoreView) -> list[str]:
    state: dict[str, bool] = {}
    for _, kind, source, _ in view.events(kinds=("instrument_offline", "instrument_online",
                                                 "logger_started")):
        if kind == "logger_started":
            state.clear()
        else:
            state[source] = kind == "instrument_offline"
    return sorted(s for s, off in state.items() if off)


def _short(detail: str, width: int = 60) -> str:
    text = detail if len(detail) <= width else detail[: width - 3] + "..."
    return "" if text == "{}" else text


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
                if p.exists())
    for unit in ("B", "kB", "MB", "GB"):
        if total < 1024 or unit == "GB":
            return f"{total:.0f} {unit}" if unit == "B" else f"{total:.1f} {unit}"
        total /= 1024
    return f"{total} B"


def utc(t_unix: float) -> str:
    """ISO UTC stamp of a Unix time."""
    return dt.datetime.fromtimestamp(t_unix, dt.timezone.utc).isoformat()
