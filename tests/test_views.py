"""Plot, export and status on a twin-run store (ten days of the cryostat)."""

from __future__ import annotations

import csv
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import simpy

from ionclock.apparatus.registry import make_env_world
from ionclock.commands.main import main
from ionclock.errors import UserError
from ionclock.logger.poller import Logger, parse_config
from ionclock.storage.views import StoreView, export, parse_span, pick_table, plot, status

DAY = 86400.0


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("views") / "env.sqlite"
    channels = {}
    for name, inp in (("lnc_bottom", 1), ("trap_holder", 4), ("bbr_cavity", 5)):
        channels[name] = {"instrument": "ls218", "read": f"input_{inp}.temperature",
                          "period_s": 60.0, "unit": "K", "band_min": 75.0, "band_max": 85.0}
    channels["lnc_bottom"]["refill_drop"] = 0.5
    cfg = {"store": {"path": str(path)},
           "instruments": {"ls218": {"model": "lakeshore218", "resource": "sim://lakeshore218"}},
           "channels": channels}
    env = simpy.Environment()
    world = make_env_world(env, 2)
    logger = Logger(parse_config(cfg), env, world=world, simulate=True).start()

    def excursion():
        yield env.timeout(9 * DAY)
        world.cryostat.inject_excursion(7.0, 3 * 3600.0, "trap_holder")

    env.process(excursion())
    logger.run(10 * DAY)
    logger.close()
    return SimpleNamespace(path=path, refills=len(world.cryostat.refills()))


@pytest.fixture(scope="module")
def store(twin_run):
    return twin_run.path


def test_parse_span_and_pick_table():
    assert parse_span("7d") == 7 * DAY and parse_span("90") == 90.0
    assert parse_span("1.5h") == 5400.0 and parse_span("1y") == 365.25 * DAY
    for bad in ("", "7 days", "-1d", "0s"):
        with pytest.raises(UserError):
            parse_span(bad)
    assert pick_table(5 * 3600, 1.0) == "raw"
    assert pick_table(DAY, 1.0) == "1m" and pick_table(7 * DAY, 1.0) == "1m"
    assert pick_table(365 * DAY, 1.0) == "1h"
    assert pick_table(7 * DAY, 60.0) == "raw"


def test_series_by_span(store):
    with StoreView(store) as view:
        t0, t1 = view.span("1d")
        raw = view.series("lnc_bottom", t0, t1)
        assert raw.table == "raw" and len(raw.t) == 1441
        t0, t1 = view.span("10d")
        roll = view.series("lnc_bottom", t0, t1, max_points=2000)
        assert roll.table == "1h" and len(roll.t) == 241  # the last sample opens bin 241
        assert np.all(roll.vmin <= roll.value) and np.all(roll.value <= roll.vmax)
        assert roll.n.sum() == 14401
        with pytest.raises(UserError, match="no channel 'nope'"):
            view.resolve_channels(["nope"])


def test_plot_marks_refills(store, twin_run, tmp_path):
    out = tmp_path / "fig1.png"
    info = plot(store, None, "10d", out)
    db = sqlite3.connect(store)
    n_refills = db.execute("SELECT count(*) FROM events WHERE kind='ln2_refill'").fetchone()[0]
    assert n_refills == twin_run.refills >= 4 and info["refills"] == n_refills
    assert info["tables"] == ["raw"] and out.stat().st_size > 20000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = plot(store, ["lnc_bottom"], "10d", tmp_path / "h.png", table="1h")
    assert info["points"] == 241


def test_export_csv_and_hdf5(store, tmp_path):
    counts = export(store, ["lnc_bottom", "trap_holder"], "2d", "csv", tmp_path / "x.csv")
    assert counts == {"lnc_bottom": 2881, "trap_holder": 2881}
    rows = list(csv.reader((tmp_path / "x.csv").open()))
    assert rows[0] == ["time_utc", "t", "channel", "value"] and len(rows) == 1 + 2 * 2881
    db = sqlite3.connect(store)
    last = db.execute("SELECT t, value FROM samples WHERE channel='lnc_bottom'"
                      " ORDER BY t DESC LIMIT 1").fetchone()
    lnc = [r for r in rows[1:] if r[2] == "lnc_bottom"]
    assert float(lnc[-1][1]) == last[0] and float(lnc[-1][3]) == last[1]
    assert lnc[-1][0] == "2025-01-11T00:00:00Z"
    counts = export(store, None, None, "hdf5", tmp_path / "x.h5", table="1m")
    with h5py.File(tmp_path / "x.h5") as f:
        assert set(f) == {"lnc_bottom", "trap_holder", "bbr_cavity"}
        g = f["trap_holder"]
        assert g.attrs["unit"] == "K" and g["n"][:].sum() == 14401
        assert len(g["mean"]) == counts["trap_holder"] == 14401  # one sample per minute


def test_status_summary(store, twin_run):
    text = status(store)
    assert "lnc_bottom" in text and "trap_holder" in text
    assert f"ln2_refill {twin_run.refills}" in text
    assert "out_of_band 1" in text and "in_band 1" in text
    assert "(twin run: simulated time" in text and "MB" in text


def test_cli_views(store, tmp_path, capsys):
    assert main(["plot", str(store), "--channels", "lnc_bottom,trap_holder", "--since", "7d",
                 "--out", str(tmp_path / "p.png")]) == 0
    assert main(["export", str(store), "--since", "1d", "--out", str(tmp_path / "e.csv")]) == 0
    assert main(["status", str(store)]) == 0
    out = capsys.readouterr().out
    assert "refills marked" in out and "wrote" in out and "events:" in out
    assert main(["export", str(store), "--out", str(tmp_path / "e.txt")]) == 2
    assert main(["plot", str(store), "--channels", "nope", "--out", str(tmp_path / "q.png")]) == 2
    assert main(["plot", str(store), "--out", str(tmp_path / "missing" / "q.png")]) == 2


# --- issue 12: what a new user trips over ---------------------------------------------------
@pytest.fixture(scope="module")
def clock_store(tmp_path_factory):
    """A twin clock run's store (20 simulated minutes): simulated seconds since its start."""
    out = tmp_path_factory.mktemp("clock") / "run"
    assert main(["sim", "--duration", "20m", "--seed", "4", "--no-progress",
                 "--out", str(out)]) == 0
    return out / "ionclock.sqlite"


def test_status_of_a_clock_run_knows_simulated_from_wall_time(clock_store):
    text = status(clock_store, now=2e9)   # a wall clock far beyond the run changes nothing
    lines = text.splitlines()
    # the roles sample up to the run's end (20 min); the thermometer's last is at 19:15
    assert re.search(r"newest sample \+0:(19:\d\d|20:00) of simulated time", lines[1]), lines[1]
    rows = {line.split()[0]: line for line in lines if line.startswith("temp.")}
    assert sorted(rows) == ["temp.bbr_cavity", "temp.endcap", "temp.ln2_bottom",
                            "temp.replica_trap", "temp.trap_holder"]
    for name, row in rows.items():
        # the unit, an age on the run's own clock (from the run's newest sample, under the
        # thermometer's 60 s period), the source
        age = re.search(r" K +(\d+) s ", row)
        assert age and int(age.group(1)) < 60, row
        assert "lakeshore218 sim://lakeshore218 input_" in row, row
    assert " d " not in text and "2026" not in text.split("events:")[1].splitlines()[1]
    assert "  +0:20:00  run_stopped" in text   # event times on the run's own clock


def test_status_of_a_lab_store_counts_ages_from_now(tmp_path):
    from ionclock.storage.store import Store

    path = tmp_path / "lab.sqlite"
    with Store(path, clock=lambda: 0.0) as st:   # a lab log: Unix seconds
        st.add("samples", (1_700_000_000.0, "temp.trap_holder", 79.5))
    text = status(path, now=1_700_000_000.0 + 90.0)
    assert "newest sample 2023-11-14T22:13:20Z  (90 s ago)" in text
    assert "79.5" in text and " 90 s " in text


@pytest.fixture(scope="module")
def pruned_store(tmp_path_factory):
    """12 days of a 10-min channel, raw rows kept 5 days (1-min bins: forever)."""
    path = tmp_path_factory.mktemp("pruned") / "env.sqlite"
    cfg = {"store": {"path": str(path)},
           "retention": {"raw_days": 5.0, "rollup_1m_days": 0.0, "check_interval_s": 3600.0},
           "instruments": {"ls218": {"model": "lakeshore218", "resource": "sim://lakeshore218"},
                           "coils": {"model": "keysight_e36312a",
                                     "resource": "sim://keysight_e36312a"}},
           "channels": {"temp.trap_holder": {"instrument": "ls218",
                                             "read": "input_4.temperature",
                                             "period_s": 600.0, "unit": "K"},
                        "coil.current": {"instrument": "coils", "read": "ch_3.current",
                                         "period_s": 600.0, "unit": "A"}},
           "simulate": {"faults": [{"instrument": "coils", "kind": "disconnected",
                                    "at_s": 3 * DAY, "duration_s": 6 * 3600.0}]}}
    env = simpy.Environment()
    logger = Logger(parse_config(cfg), env, world=make_env_world(env, 5), simulate=True).start()
    logger.run(12 * DAY)
    logger.close()
    return path


def test_plot_after_retention_takes_the_table_that_holds_the_span(pruned_store, tmp_path):
    db = sqlite3.connect(f"file:{pruned_store}?mode=ro", uri=True)
    first_raw = db.execute("SELECT min(t) FROM samples").fetchone()[0]
    db.close()
    assert first_raw > 6 * DAY     # raw rows pruned to the last 5 days; the 1-min bins kept
    # 12 days at one sample per 10 min would fit the raw table's point budget: taken by
    # the span alone, the first week would be drawn empty
    info = plot(pruned_store, ["temp.trap_holder"], None, tmp_path / "p.png")
    assert info["tables"] == ["1m"] and info["points"] > 1000
    with StoreView(pruned_store) as view:
        t0, t1 = view.span(None)
        s = view.series("temp.trap_holder", t0, t1)
    assert s.table == "1m" and s.t[0] < 600.0      # the first week is there, from the bins


def test_plot_groups_channels_by_unit_and_draws_outages_as_spans(pruned_store, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = []
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(fig, *args, **kwargs):
        saved.append(fig)
        return real_savefig(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = keep
    try:
        info = plot(pruned_store, None, None, tmp_path / "all.png")
    finally:
        matplotlib.figure.Figure.savefig = real_savefig
    axes = saved[0].axes
    assert len(axes) == 2 and info["units"] == ["A", "K"]      # one panel per unit
    assert [ax.get_ylabel() for ax in axes] == ["current (A)", "temperature (K)"]
    # the coil supply's 6-hour outage: one shaded span from offline to online, per panel
    assert info["outages"] == 1
    for ax in axes:
        spans = [p for p in ax.patches if p.get_label() == "instrument offline"]
        assert len(spans) == 1
        x0, x1 = spans[0].get_x(), spans[0].get_x() + spans[0].get_width()
        assert 0.24 < x1 - x0 < 0.27         # 6 h in days (matplotlib date units)
    plt.close("all")


def test_reading_a_finished_store_leaves_no_wal_or_shm(clock_store, tmp_path, capsys):
    side = [Path(f"{clock_store}-wal"), Path(f"{clock_store}-shm")]
    assert not any(f.exists() for f in side)       # the run itself left none
    for argv in (["status", str(clock_store)],
                 ["plot", str(clock_store), "--out", str(tmp_path / "p.png")],
                 ["export", str(clock_store), "--out", str(tmp_path / "e.csv")],
                 ["budget", str(clock_store)],
                 ["report", str(clock_store.parent), "--out", str(tmp_path / "r")]):
        assert main(argv) in (0, 1), argv
        assert not any(f.exists() for f in side), argv
    capsys.readouterr()
