"""Plot, export and status on a twin-run store (ten days of the cryostat)."""

from __future__ import annotations

import csv
import sqlite3
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import simpy

from ionclock.cli import main
from ionclock.errors import UserError
from ionclock.logger import Logger, parse_config
from ionclock.registry import make_env_world
from ionclock.views import StoreView, export, parse_span, pick_table, plot, status

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
    assert "(twin run)" in text and "MB" in text


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
