"""Reading a logger store: series for a span, the plot, exports and the status summary.

Spans are relative to the newest sample in the store (``--since 7d`` = the last seven days
of data), so the same command works on a lab store (Unix times) and on a twin run (seconds
since ``meta.t0_unix``). `pick_table` chooses the raw table or a rollup so that a plot never
pulls more than about `max_points` rows per channel: a year is 8760 hourly bins, not 31.5
million raw rows.
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

from ionclock.downsample import ROLLUPS
from ionclock.errors import UserError
from ionclock.store import open_readonly

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


def pick_table(span_s: float, period_s: float = 1.0, max_points: int = 20000) -> str:
    """``raw``, ``1m`` or ``1h``: the finest table giving at most `max_points` per channel."""
    if span_s / max(period_s, 1e-9) <= max_points:
        return "raw"
    if span_s / ROLLUPS["samples_1m"] <= max_points:
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

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db: sqlite3.Connection = open_readonly(self.path)
        try:
            self.meta = {k: json.loads(v) for k, v in self.db.execute(
                "SELECT key, value FROM meta")}
        except sqlite3.DatabaseError as err:
            raise UserError(f"store: {str(self.path)!r} is not an ionclock store: {err}") from None
        self.t0_unix = float(self.meta.get("t0_unix", 0.0) or 0.0)

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
            span = (t1 - t0) if math.isfinite(t0) else t1 - (self._t_first(channel) or t1)
            table = pick_table(span, info.get("period_s") or 1.0, max_points)
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
def plot(store: str | Path, channels: list[str] | None, since: str | None, out: str | Path,
         until: str | None = None, table: str = "auto", title: str | None = None) -> dict:
    """Draw the channels' record with refills marked (seed Fig. 1 style) to a PNG/PDF/SVG.

    Rollups draw the mean with the min-max envelope shaded. Returns what was drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"plot: directory {str(out.parent)!r} does not exist")
    with StoreView(store) as view:
        names = view.resolve_channels(channels)
        t0, t1 = view.span(since, until)
        series = [view.series(ch, t0, t1, table) for ch in names]
        evs = view.events(t0, t1)
        info = view.channels()
        units = sorted({s.unit for s in series})
        fig, ax = plt.subplots(figsize=(10, 5.2), dpi=110)
        for s in series:
            x = view.to_datetime(s.t)
            line, = ax.plot(x, s.value, lw=0.9, label=s.channel)
            if s.vmin is not None and len(s.t):
                ax.fill_between(x, s.vmin, s.vmax, color=line.get_color(), alpha=0.18, lw=0)
        refill_t = refills(evs)
        for i, t in enumerate(refill_t):
            ax.axvline(view.to_datetime(np.array([t]))[0], color="tab:blue", ls="--", lw=0.8,
                       alpha=0.7, label="LN2 refill" if i == 0 else None)
        offline = [e for e in evs if e[1] == "instrument_offline"]
        for i, (t, _, src, _) in enumerate(offline):
            ax.axvline(view.to_datetime(np.array([t]))[0], color="tab:red", ls=":", lw=0.8,
                       label="instrument offline" if i == 0 else None)
        bands = {info[ch]["band"] for ch in names if ch in info and None not in info[ch]["band"]}
        if len(bands) == 1:
            # Shade the calibrated band without letting it set the scale of the data.
            ylim = ax.get_ylim()
            lo, hi = bands.pop()
            ax.axhspan(lo, hi, color="0.5", alpha=0.06, lw=0, label="calibrated band")
            if any(len(s.t) for s in series):
                ax.set_ylim(ylim)
        tables = sorted({s.table for s in series})
        ax.set_ylabel(f"value ({', '.join(u for u in units if u) or 'unitless'})"
                      if len(units) != 1 or not units[0] else _quantity(units[0]))
        ax.set_xlabel("time (UTC)")
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        ax.set_title(title or f"{Path(store).name}: {', '.join(names)}"
                     f"  [{'/'.join(tables)} table{'s' if len(tables) > 1 else ''}]", fontsize=10)
        ax.grid(alpha=0.3)
        # Below the axes: a month of traces leaves no empty corner for it.
        ax.legend(fontsize=8, ncol=min(5, len(names) + 2), loc="upper center",
                  bbox_to_anchor=(0.5, -0.14), frameon=False)
        fig.tight_layout()
        fig.savefig(out)
        plt.close(fig)
        return {"channels": names, "tables": tables, "points": sum(len(s.t) for s in series),
                "refills": len(refill_t), "out": str(out)}


def _quantity(unit: str) -> str:
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
    """Summarise a store for the terminal: channels (last value, age), events, size."""
    path = Path(store)
    with StoreView(path) as view:
        chans = view.channels()
        end = view.t_end()
        simulated = bool(view.meta.get("logger_simulate"))
        if now is None:
            # A lab store's clock is Unix time; a twin run's ages count from its last sample.
            now = end if (simulated or end is None) else time.time()
        lines = [f"store {path}  ({_size(path)})"]
        if end is not None:
            stamp = view.to_datetime(np.array([end]))[0]
            lines.append(f"newest sample {stamp}Z" + ("  (twin run)" if simulated else ""))
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
                age = _age(max(0.0, now - row[0]))
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
            stamp = view.to_datetime(np.array([t]))[0]
            lines.append(f"  {stamp}Z  {kind:<20} {source:<18} {_short(detail)}")
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
