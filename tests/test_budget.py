"""Budget: the seed's Table II, correlated totals, renderings, store windows and the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from ionclock.commands.main import main
from ionclock.errors import ConfigError
from ionclock.physics import shifts
from ionclock.physics.budget import (
    Budget,
    BudgetInvalidError,
    load_config,
    nominal_inputs,
)
from ionclock.physics.constants import NU0_CA
from ionclock.storage.budget_inputs import budget_from_store
from ionclock.storage.store import Store

ROOT = Path(__file__).resolve().parents[1]
SEED_CONFIG = ROOT / "configs" / "seed_clock.toml"

# Seed 000, Table II: (key, printed shift, printed uncertainty) in 1e-19.
TABLE_II = [
    ("bbr", 45.5, 3.5), ("emm", 0.0, 1.4), ("secular", -5.8, 0.4), ("qz_dc", 482.9, 1.4),
    ("qz_ac", 0.0, 0.04), ("bg_gas", 0.0, 1.8), ("zeeman1", 0.0, 0.2),
    ("quadrupole", 0.0, 0.1), ("aom_chirp", 0.0, 1.0), ("probe_stark", 0.0, 0.6),
]


def _nominal_json(capsys) -> dict:
    assert main(["budget", "--nominal", str(SEED_CONFIG), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("key, shift, unc", TABLE_II)
def test_cli_nominal_reproduces_table_ii_row(capsys, key, shift, unc):
    data = _nominal_json(capsys)
    rows = {r["key"]: r for r in data["rows"]}
    row = rows[key]
    assert row["valid"]
    assert round(row["shift"], 1) == shift              # to the printed digit
    assert abs(row["uncertainty"] - unc) <= 0.1 + 1e-12  # within 0.1e-19


def test_cli_nominal_total_and_row_order(capsys):
    data = _nominal_json(capsys)
    assert [r["key"] for r in data["rows"]] == [k for k, _, _ in TABLE_II]
    assert round(data["total"]["shift"], 1) == 522.6
    assert round(data["total"]["uncertainty"], 1) == 4.6
    assert data["total"]["valid"] and data["unit"] == 1e-19
    assert data["provenance"]["source"] == "nominal"


def test_corrected_frequency():
    b = Budget.nominal(SEED_CONFIG)
    nu_servo = NU0_CA + 0.5
    nu, sigma = b.corrected_frequency(nu_servo)
    assert nu == pytest.approx(nu_servo - 522.6e-19 * NU0_CA, abs=0.01e-19 * NU0_CA)
    assert sigma == pytest.approx(b.total_uncertainty * NU0_CA)
    assert b.total_hz == pytest.approx(0.02148, abs=1e-5)
    with pytest.raises(ValueError):
        b.corrected_frequency(math.nan)


def test_invalid_row_blocks_corrected_frequency():
    good = shifts.bound_row("a", "A", 1e-19)
    bad = shifts.invalid("b", "B", "sensor missing")
    b = Budget([good, bad])
    assert not b.valid and b.invalid_rows == [bad]
    with pytest.raises(BudgetInvalidError, match="sensor missing"):
        b.corrected_frequency(NU0_CA)
    nu, sigma = b.corrected_frequency(NU0_CA, allow_invalid=True)
    assert (nu, sigma) == (NU0_CA, pytest.approx(1e-19 * NU0_CA))
    assert "INVALID: sensor missing" in b.to_table()
    assert b.to_dict()["total"]["invalid_rows"] == ["b"]


def test_correlated_rows_add_linearly_through_shared_input():
    dc = shifts.quadratic_zeeman_dc(37.197e-6, 0.0, convention="quadrature")
    ac = shifts.quadratic_zeeman_ac(1e-11, 0.0, convention="corrected")   # pure alpha_z parts
    b = Budget([dc, ac])
    assert b.correlations()[0]["rho"] == pytest.approx(1.0)
    assert b.correlations()[0]["via"] == ["alpha_z"]
    assert b.total_uncertainty == pytest.approx(dc.uncertainty + ac.uncertainty)
    independent = math.hypot(dc.uncertainty, ac.uncertainty)
    assert b.total_uncertainty > independent


def test_bbr_and_micromotion_correlate_through_delta_alpha0():
    cfg = load_config(SEED_CONFIG)
    cfg["bbr"]["coefficient_rel_unc"] = 0.01155
    b = Budget.from_inputs(nominal_inputs(cfg))
    (corr,) = b.correlations()
    assert corr["rows"] == ["bbr", "emm"] and corr["via"] == ["delta_alpha0"]
    assert 0 < corr["rho"] <= 1


def test_duplicate_keys_rejected():
    r = shifts.bound_row("a", "A", 1e-19)
    with pytest.raises(ValueError, match="duplicate"):
        Budget([r, r])


def test_renderings_agree():
    b = Budget.nominal(SEED_CONFIG)
    md = b.to_markdown().splitlines()
    assert md[0].startswith("| Effect") and "| **Total** | **522.6** | **4.6** |" in md[12]
    rows = list(csv.DictReader(io.StringIO(b.to_csv())))
    assert len(rows) == 11 and rows[-1]["key"] == "total"
    assert float(rows[0]["shift_fractional"]) == pytest.approx(45.5e-19, abs=0.05e-19)
    table = b.to_table()
    assert "Quadratic Zeeman (DC)" in table and "522.6" in table
    assert json.loads(b.render("json"))["total"]["shift"] == pytest.approx(522.6, abs=0.05)


# --- configuration ---------------------------------------------------------------------
def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="bbr.bogus"):
        load_config({"bbr": {"bogus": 1}})
    with pytest.raises(ConfigError, match="secular.n0_low"):
        load_config({"secular": {"n0_low": [0.0, 0.0]}})
    with pytest.raises(ConfigError, match="micromotion.nominal_ratios"):
        load_config({"micromotion": {"nominal_ratios": [0.1, "x", 0.1]}})
    with pytest.raises(ConfigError, match="high_k"):
        load_config({"bbr": {"nominal": {"s": {"low_k": 80.0, "high_k": 79.0}}}})


def test_cli_bad_input_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[zeeman]\nconvention = 'nope'\n")
    cases = [["budget", "--nominal", str(bad)],
             ["budget", "--nominal", str(tmp_path / "missing.toml")],
             ["budget"],
             ["budget", str(tmp_path / "x.sqlite"), "--nominal", str(SEED_CONFIG)],
             ["budget", str(tmp_path / "nostore.sqlite")],
             ["budget", "--nominal", str(SEED_CONFIG), "--since", "5"]]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("ionclock: error:") and "\n" not in err, err


# --- live budgets from a store -------------------------------------------------------------------
CHANNELS = {"temp.ln2_bottom": 78.2, "temp.endcap": 78.9, "temp.trap_holder": 79.3,
            "temp.bbr_cavity": 78.6, "temp.replica_trap": 80.5}


def _make_store(path: Path, *, skip: tuple[str, ...] = (), frames: bool = True,
                t_end: float = 3600.0) -> Path:
    with Store(path, clock=lambda: 0.0) as st:
        for i in range(0, int(t_end) + 1, 60):
            t = float(i)
            for ch, base in CHANNELS.items():
                if ch not in skip:
                    st.add("samples", (t, ch, base + 0.1 * math.sin(i / 600.0)))
            st.add("samples", (t, "rf.enabled", 0.0 if 1200 <= i < 3100 else 1.0))   # 31 min off
            if frames:
                st.add("lock_frames", (t, i, 0.0, 0.0, 37.197e-6 + 1e-10 * math.cos(i),
                                       0, 0, 0, 0, 0, 0, 1, 0, None, None, None))
        # An out-of-window outlier and a holdover frame that must be ignored.
        if "temp.endcap" not in skip:
            st.add("samples", (t_end + 100.0, "temp.endcap", 300.0))
        if frames:
            st.add("lock_frames", (30.0, 99999, 0.0, 0.0, 50e-6, 0, 0, 0, 0, 0, 0, 1, 1,
                                   None, None, None))
        for ch, r in zip(("mm.r1", "mm.r2", "mm.r3"), (0.02, 0.03, 0.01)):
            if ch not in skip:
                st.add("samples", (-3600.0, ch, r))        # measured before the window
        if "pressure.outside" not in skip:
            st.add("samples", (100.0, "pressure.outside", 2e-9))
            st.add("samples", (200.0, "pressure.outside", 3e-9))
        st.flush()
        st.event(1800.0, "ln2_refill", "cryostat")
    return path


def test_budget_from_store_window(tmp_path):
    path = _make_store(tmp_path / "run.sqlite")
    b = budget_from_store(path, since=0.0, until=3600.0, config=SEED_CONFIG)
    assert b.valid, [(r.key, r.reason) for r in b.invalid_rows]
    bbr = b.row("bbr")
    lo, hi = bbr.inputs["envelope_low_k"], bbr.inputs["envelope_high_k"]
    assert lo == pytest.approx(78.1, abs=0.01) and hi == pytest.approx(80.6, abs=0.01)
    assert bbr.inputs["rf_off_seen"] is True
    qz = b.row("qz_dc")
    assert qz.inputs["n_frames"] == 61          # holdover frame excluded
    assert qz.value == pytest.approx(shifts.quadratic_zeeman_dc(37.197e-6, 0).value, rel=1e-5)
    assert b.row("emm").inputs["ratios"] == pytest.approx([0.02, 0.03, 0.01])
    assert b.row("bg_gas").inputs["pressure_pa"] == 3e-9   # worst pressure in the window
    prov = b.provenance
    assert prov["source"] == "store" and prov["since"] == 0.0 and prov["until"] == 3600.0
    assert prov["channels"]["temp.endcap"]["rows"] == 61
    assert prov["events"] == {"ln2_refill": 1}
    assert prov["config"] == str(SEED_CONFIG)


def test_budget_from_store_rf_step_without_rf_off(tmp_path):
    path = _make_store(tmp_path / "run.sqlite")
    b = budget_from_store(path, since=0.0, until=1000.0, config=SEED_CONFIG)
    bbr = b.row("bbr")
    assert bbr.inputs["rf_off_seen"] is False
    assert bbr.inputs["envelope_low_k"] == pytest.approx(78.2, abs=0.01)  # ln2 is lower
    # With the replica trap sensor alone, its range is widened by the 0.4 K RF step.
    cfg = load_config(SEED_CONFIG)
    cfg["bbr"]["channels"] = ["temp.replica_trap"]
    only = budget_from_store(path, since=0.0, until=1000.0, config=cfg).row("bbr")
    assert only.inputs["envelope_low_k"] == pytest.approx(80.5 - 0.4, abs=0.01)
    with_off = budget_from_store(path, since=0.0, until=3600.0, config=cfg).row("bbr")
    assert with_off.inputs["envelope_low_k"] == pytest.approx(80.4, abs=0.01)


def test_budget_from_store_missing_sensor_and_empty_window(tmp_path):
    path = _make_store(tmp_path / "run.sqlite", skip=("temp.replica_trap", "mm.r2"))
    b = budget_from_store(path, config=SEED_CONFIG)
    assert not b.row("bbr").valid and "temp.replica_trap" in b.row("bbr").reason
    assert not b.row("emm").valid and "mm.r2" in b.row("emm").reason
    assert b.row("qz_dc").valid
    empty = budget_from_store(path, since=10_000.0, until=20_000.0, config=SEED_CONFIG)
    assert not empty.row("qz_dc").valid and "no locked frames" in empty.row("qz_dc").reason
    assert not empty.row("bbr").valid


def test_budget_from_store_last_window(tmp_path):
    path = _make_store(tmp_path / "run.sqlite")
    b = budget_from_store(path, until=3600.0, config=SEED_CONFIG, last_s=600.0)
    assert b.provenance["since"] == 3000.0
    assert b.row("qz_dc").inputs["n_frames"] == 11


def test_cli_store_formats_and_exit_codes(tmp_path, capsys):
    path = _make_store(tmp_path / "run.sqlite")
    argv = ["budget", str(path), "--config", str(SEED_CONFIG), "--since", "0",
            "--until", "3600"]
    assert main(argv + ["--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("key,effect,")
    assert main(argv + ["--format", "markdown"]) == 0
    assert "| **Total** |" in capsys.readouterr().out
    assert main(argv + ["--json", "--servo-hz", str(NU0_CA)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["corrected"]["clock_hz"] == pytest.approx(
        NU0_CA - data["total"]["shift_fractional"] * NU0_CA)
    assert main(argv + ["--last", "10m"]) == 2   # --since and --last together
    capsys.readouterr()
    bad = _make_store(tmp_path / "bad.sqlite", skip=("temp.endcap",))
    assert main(["budget", str(bad), "--config", str(SEED_CONFIG)]) == 1
    assert "temp.endcap" in capsys.readouterr().err
    assert main(["budget", str(path), "--since", "soon"]) == 2


def test_not_a_store_is_user_error(tmp_path, capsys):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    assert main(["budget", str(junk)]) == 2
    assert "store" in capsys.readouterr().err


def test_one_micromotion_reading_keeps_its_own_sigma_in_a_store_budget(tmp_path):
    """The store's budget (--inputs measured) takes a ratio's `.sigma` as the live budget
    does: one monitor reading in reach had a ratio uncertainty of 0 (no spread to take)."""
    path = _make_store(tmp_path / "run.sqlite")
    with Store(path, clock=lambda: 0.0) as st:
        for ch, u in zip(("mm.r1", "mm.r2", "mm.r3"), (0.004, 0.005, 0.002)):
            st.add("samples", (-3600.0, ch + ".sigma", u))
    emm = budget_from_store(path, since=0.0, until=3600.0, config=SEED_CONFIG).row("emm")
    assert emm.inputs["ratio_uncs"] == pytest.approx([0.004, 0.005, 0.002])
    assert emm.inputs["ratios"] == pytest.approx([0.02, 0.03, 0.01])
