"""Every config value and cross-reference is checked at load (issue 11).

Each bad value is refused by the command line before anything starts: exit status 2, one
line on stderr (``ionclock: error: config: KEY: ...``), no traceback, no output folder, no
store. Limits come from the drivers (registry.channel_ids / input_ids / channel_ratings).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ionclock.apparatus import registry
from ionclock.apparatus.clock_config import SEED_BUDGET, load_clock_config, scenario_names
from ionclock.errors import ConfigError
from ionclock.logger.poller import load_config as load_logger_config

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "configs" / "sim.toml"
LAB = ROOT / "configs" / "lab.example.toml"
LOGGER_SIM = ROOT / "configs" / "logger.sim.toml"
_EXE = Path(sys.executable).with_name("ionclock")
IONCLOCK = [str(_EXE)] if _EXE.exists() else [sys.executable, "-m", "ionclock"]

SHUTTER = """
[instruments.cooling_shutter]     # Thorlabs SC10 on the cooling beam
model = "sc10"
resource = "sim://sc10"
"""


def edited(text: str, *edits: tuple[str, str], extra: str = "") -> str:
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text + extra


def clock_config(folder: Path, *edits: tuple[str, str], extra: str = "",
                 name: str = "clock.toml") -> Path:
    """sim.toml with `edits`, written to `folder` beside a copy of its budget config."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SEED_BUDGET, folder / "seed_clock.toml")
    path = folder / name
    path.write_text(edited(SIM.read_text(), *edits, extra=extra))
    return path


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*IONCLOCK, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def assert_refused(result: subprocess.CompletedProcess, expect: str, root: Path) -> None:
    """Exit 2, one `ionclock: error:` line naming `expect`, and nothing made under `root`."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ionclock: error: config: "), lines[0]
    assert expect in lines[0]
    assert result.stdout == ""
    assert not (root / "out").exists()
    assert not [p for p in root.rglob("*") if "sqlite" in p.name or p.suffix == ".lock"]


# --- the cases of issue 11, through the command line -------------------------------------
CLOCK_CASES = {
    # 1. a bad shutter state was found only at shutdown (traceback, no safe shutdown)
    "shutter_state": (
        [("shutters = {}", 'shutters = { cooling_shutter = "ajar" }')], SHUTTER,
        "shutdown.shutters.cooling_shutter: 'ajar' is not one of 'closed', 'open', 'leave'"),
    # 2. a shutter role that does not exist, or is not a shutter
    "shutter_role_missing": (
        [("shutters = {}", 'shutters = { cooling = "closed" }')], SHUTTER,
        "shutdown.shutters.cooling: no instrument 'cooling'"),
    "shutter_role_not_a_shutter": (
        [("shutters = {}", 'shutters = { aom = "closed" }')], "",
        "shutdown.shutters.aom: 'aom' is a novatech409b, not a shutter"),
    # 3. a DDS channel the 4-channel 409B does not have, or one without table mode
    "aom_channel_15": (
        [("channel = 0\n", "channel = 15\n")], "",
        "instruments.aom.channel: 15 is not a channel of the novatech409b (channels 0-3"),
    "aom_channel_without_table": (
        [("channel = 0\n", "channel = 2\n")], "",
        "instruments.aom.channel: channel 2 of the novatech409b has no table mode"),
    # 4. thermometer inputs outside the Lake Shore 218's eight, or not numbers
    "sensor_input_99": (
        [('"temp.endcap" = 2', '"temp.endcap" = 99')], "",
        'instruments.thermometer.sensors."temp.endcap": 99 is not an input of the '
        "lakeshore218 (inputs 1-8"),
    "sensor_input_one": (
        [('"temp.endcap" = 2', '"temp.endcap" = "one"')], "",
        "instruments.thermometer.sensors.\"temp.endcap\": 'one' is not an input number"),
    # 5. a store path out of the output folder
    "store_escapes_out": (
        [('store = "ionclock.sqlite"', 'store = "../../x.sqlite"')], "",
        "run.store: '../../x.sqlite' is not a file name inside the output folder"),
    # 6. the budget config is looked for beside the config file, not in the repository
    "budget_config_from_repository": (
        [('config = "seed_clock.toml"', 'config = "configs/seed_clock.toml"')], "",
        "budget.config: no such file"),
}


@pytest.mark.parametrize("command", ["sim", "run"])
@pytest.mark.parametrize("case", sorted(CLOCK_CASES))
def test_clock_command_refuses_bad_config_before_anything_starts(tmp_path, command, case):
    edits, extra, expect = CLOCK_CASES[case]
    cfg = clock_config(tmp_path / "cfg", *edits, extra=extra)
    out = tmp_path / "out"
    args = (["sim", "--config", str(cfg), "--no-progress"] if command == "sim"
            else ["run", str(cfg)])
    result = cli(*args, "--duration", "60s", "--out", str(out), cwd=tmp_path)
    assert_refused(result, expect, tmp_path)


LOGGER_CASES = {
    "ls218_input_99": (('read = "input_1.temperature"', 'read = "input_99.temperature"'),
                       "channels.temp.ln2_bottom.read: lakeshore218 has no input_99 "
                       "(it has input_1 to input_8"),
    "ls218_input_one": (('read = "input_1.temperature"', 'read = "input_one.temperature"'),
                        "channels.temp.ln2_bottom.read: lakeshore218 has no input_one"),
    "ls224_input_9": (('read = "input_A.temperature"', 'read = "input_9.temperature"'),
                      "channels.temp.replica_trap.read: lakeshore224 has no input_9 "
                      "(it has input_A, input_B, input_C1"),
    "supply_output_5": (('read = "ch_3.current"', 'read = "ch_5.current"'),
                        "channels.coil.current.read: keysight_e36312a has no ch_5 "
                        "(it has ch_1 to ch_3"),
    "twin_location_input": (('locations = { A = "trap" }', 'locations = { Z = "trap" }'),
                            "instruments.ls224.twin: lakeshore224 twin: "),
    "twin_location_name": (('locations = { A = "trap" }', 'locations = { A = "moon" }'),
                           "instruments.ls224.twin.locations.A: unknown cryostat location"),
    "twin_option": (("twin = { seed = 3 }", "twin = { sead = 3 }"),
                    "instruments.ls218.twin: lakeshore218 twin: "),
}


@pytest.mark.parametrize("case", sorted(LOGGER_CASES))
def test_log_command_refuses_bad_config_before_anything_starts(tmp_path, case):
    edit, expect = LOGGER_CASES[case]
    cfg = tmp_path / "logger.toml"
    cfg.write_text(edited(LOGGER_SIM.read_text(), edit))
    result = cli("log", str(cfg), "--simulate", "--duration", "1h",
                 "--store", str(tmp_path / "env.sqlite"), cwd=tmp_path)
    assert_refused(result, expect, tmp_path)


# --- what the checks let through -------------------------------------------------------
def test_shipped_configs_still_load():
    for path in (SIM, LAB):
        cfg = load_clock_config(path)
        assert cfg["budget"]["config"] == str(SEED_BUDGET)
        assert cfg["run"]["store"] == "ionclock.sqlite"
    for name in scenario_names():
        load_clock_config(SIM, scenario=name)
    for name in ("logger.example.toml", "logger.sim.toml"):
        assert load_logger_config(ROOT / "configs" / name).channels


def test_budget_config_is_found_beside_the_config_file(tmp_path, monkeypatch):
    lab = tmp_path / "lab"
    cfg = clock_config(lab, ('config = "seed_clock.toml"', 'config = "budget/clock.toml"'))
    (lab / "budget").mkdir()
    shutil.copy(SEED_BUDGET, lab / "budget" / "clock.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_clock_config(Path("..") / "lab" / "clock.toml")
    assert loaded["budget"]["config"] == str(lab / "budget" / "clock.toml")
    # an absolute path stays as it is; without the key, the shipped budget config
    absolute = clock_config(tmp_path / "abs", ('config = "seed_clock.toml"',
                                               f'config = "{lab / "budget" / "clock.toml"}"'))
    assert load_clock_config(absolute)["budget"]["config"] == str(lab / "budget" / "clock.toml")
    default = clock_config(tmp_path / "default", ('config = "seed_clock.toml"', ""))
    assert load_clock_config(default)["budget"]["config"] == str(SEED_BUDGET)
    assert load_clock_config(cfg)["budget"]["config"] == str(lab / "budget" / "clock.toml")


def test_a_budget_config_that_does_not_load_is_refused(tmp_path):
    cfg = clock_config(tmp_path, ('config = "seed_clock.toml"', 'config = "clock.toml"'))
    with pytest.raises(ConfigError, match=r"budget.config: '.*clock.toml': this is a clock "
                                          r"config .*, not a shift-budget config"):
        load_clock_config(cfg)
    # with the budget off its file is not read (the path is still resolved)
    off = clock_config(tmp_path / "off", ("enabled = true", "enabled = false"),
                       ('config = "seed_clock.toml"', 'config = "missing.toml"'))
    assert load_clock_config(off)["budget"]["config"] == str(tmp_path / "off" / "missing.toml")


def test_twin_with_relative_budget_and_a_shutter_runs_and_leaves_it_as_configured(tmp_path):
    """The positive side of cases 1, 2 and 6: from another folder, a shutter left open."""
    lab = tmp_path / "lab"
    cfg = clock_config(lab, ("shutters = {}", 'shutters = { cooling_shutter = "open" }'),
                       extra=SHUTTER)
    out = tmp_path / "out"
    result = cli("sim", "--config", str(cfg.relative_to(tmp_path)), "--duration", "60s",
                 "--no-progress", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(out / "ionclock.sqlite")
    try:
        (detail,) = db.execute("SELECT detail FROM events WHERE kind = 'shutdown'").fetchone()
        assert db.execute("SELECT COUNT(*) FROM budgets").fetchone()[0] >= 1
    finally:
        db.close()
    shutdown = json.loads(detail)
    assert shutdown["errors"] == {}
    assert "shutter open" in shutdown["actions"]["cooling_shutter"]


# --- the other references, at load ------------------------------------------------------
@pytest.mark.parametrize("edits,extra,key,expect", [
    ([('model = "sr400"\nresource = "sim://sr400"', 'model = "dg645"\nresource = "sim://dg645"')],
     "", "instruments.counter.model", "'dg645' cannot be the counter (allowed: sr400)"),
    ([('resource = "sim://sr400"', 'resource = "sim://dg645"')], "",
     "instruments.counter.resource", "sim://dg645 does not simulate model 'sr400'"),
    ([("channel = 2\n", "channel = 0\n")], "",
     "instruments.coils.channel", "0 is not an output of the keysight_e36312a (outputs 1-3"),
    ([("channel = 2\n", "channel = 1\n")], "",       # output 1 is the 6 V / 5 A one
     "instruments.coils.compliance_v", "10.0 V is above output 1's rating of 6.0 V"),
    ([("compliance_v = 10.0", "compliance_v = 30.0")], "",
     "instruments.coils.compliance_v", "30.0 V is above output 2's rating of 25.0 V"),
    ([("current_limit_a = 0.9", "current_limit_a = 2.0")], "",
     "instruments.coils.current_limit_a", "2.0 A is above 1.0 A, the lowest output rating"),
    ([('model = "lakeshore218"\nresource = "sim://lakeshore218"',
       'model = "lakeshore224"\nresource = "sim://lakeshore224"')], "",
     "instruments.thermometer.sensors", "lakeshore224 has inputs named A, B, C1"),
    ([('model = "lakeshore218"\nresource = "sim://lakeshore218"',
       'model = "keithley_daq6510"\nresource = "sim://keithley_daq6510"')], "",
     "instruments.thermometer.sensors", "keithley_daq6510 has no inputs read as input_N"),
    ([('"temp.endcap" = 2', '"temp.endcap" = 2.0')], "",
     'instruments.thermometer.sensors."temp.endcap"', "2.0 is not an input number"),
    ([('"temp.endcap" = 2', '"temp.endcap" = true')], "",
     'instruments.thermometer.sensors."temp.endcap"', "True is not an input number"),
    ([('2 = "endcap_1"', '9 = "endcap_1"')], "",
     "instruments.thermometer.locations.9", "'9' is not an input of the lakeshore218"),
    ([('2 = "endcap_1"', '2 = "moon"')], "",
     "instruments.thermometer.locations.2", "unknown cryostat location 'moon'"),
    ([('resource = "sim://dg645"\n', 'resource = "sim://dg645"\nsensors = { "x" = 1 }\n')], "",
     "instruments.pulser.sensors", "only the thermometer's are used"),
    ([('resource = "sim://mks937b"\nchannel = 1', 'resource = "sim://mks937b"\nchannel = 7')],
     "", "instruments.pressure.channel", "7 is not a gauge channel of the mks937b"),
    ([('model = "mks937b"', 'model = "sr400"'), ('"sim://mks937b"', '"sim://sr400"')], "",
     "instruments.pressure.model", "'sr400' cannot be the pressure"),
])
def test_reference_errors_name_the_key(tmp_path, edits, extra, key, expect):
    cfg = clock_config(tmp_path, *edits, extra=extra)
    with pytest.raises(ConfigError) as err:
        load_clock_config(cfg)
    assert err.value.key == key
    assert expect in str(err.value)


def test_a_dp832_on_its_third_output_is_checked_against_its_own_rating(tmp_path):
    dp832 = [('model = "keysight_e36312a"\nresource = "sim://keysight_e36312a"',
              'model = "rigol_dp832"\nresource = "sim://rigol_dp832"')]
    assert load_clock_config(clock_config(tmp_path / "a", *dp832))
    with pytest.raises(ConfigError, match="10.0 V is above output 3's rating of 5.0 V"):
        load_clock_config(clock_config(tmp_path / "b", *dp832, ("channel = 2\n", "channel = 3\n")))


@pytest.mark.parametrize("name", ["../x.sqlite", "/tmp/x.sqlite", "sub/x.sqlite", "..", ".",
                                  "", "x.sqlite/", "a\\..\\..\\x.sqlite"])
def test_store_name_must_stay_in_the_output_folder(tmp_path, name):
    cfg = clock_config(tmp_path, ('store = "ionclock.sqlite"', f"store = {json.dumps(name)}"))
    with pytest.raises(ConfigError, match="run.store: .* is not a file name inside the output"):
        load_clock_config(cfg)


@given(st.text(min_size=1, max_size=12))
def test_an_accepted_store_name_is_a_file_directly_in_the_output_folder(name):
    from ionclock.apparatus.clock_config import _check_store_name

    out = Path("/srv/runs/x")
    try:
        _check_store_name(name)
    except ConfigError:
        return
    assert (out / name).parent == out and (out / name).name == name not in (".", "..")


# --- what the registry reads from the drivers -------------------------------------------
def test_model_channels_come_from_the_drivers():
    assert registry.channel_ids("novatech409b") == (0, 1, 2, 3)
    assert registry.channel_ids("keysight_e36312a") == (1, 2, 3)
    assert registry.channel_ids("rigol_dp832") == (1, 2, 3)
    assert registry.input_ids("lakeshore218") == tuple(range(1, 9))
    assert registry.input_ids("lakeshore224") == ("A", "B", "C1", "C2", "C3", "C4", "C5",
                                                  "D1", "D2", "D3", "D4", "D5")
    assert registry.input_ids("keithley_daq6510") == ()
    assert registry.channel_ratings("keysight_e36312a") == {1: (6.0, 5.0), 2: (25.0, 1.0),
                                                           3: (25.0, 1.0)}
    assert registry.channel_ratings("sr400") is None


def test_read_paths_check_only_channels():
    registry.check_read_path("lakeshore218", "input_8.temperature", "k")
    registry.check_read_path("lakeshore224", "input_D5.temperature", "k")
    registry.check_read_path("dmm_34465a", "voltage_dc", "k")     # no channel: checked live
    registry.check_read_path("sr400", "current_count", "k")
    with pytest.raises(ConfigError, match="k: lakeshore218 has no input_0"):
        registry.check_read_path("lakeshore218", "input_0.temperature", "k")


@pytest.mark.parametrize("channel,expect", [
    ("101", None), ("120", None), ("121", "current-only"), ("999", "no card in slot 9"),
])
def test_daq6510_twin_locations_are_channels_of_its_cards(channel, expect):
    options = {"locations": {channel: "trap"}}
    if expect is None:
        registry.check_twin_options("keithley_daq6510", options, "t")
    else:
        with pytest.raises(ConfigError, match=expect):
            registry.check_twin_options("keithley_daq6510", options, "t")


def test_the_lab_example_names_every_role_of_the_twin_with_a_real_resource():
    """Every instrument role of configs/sim.toml is in configs/lab.example.toml, each on a
    resource of its own (a pyvisa resource string or a serial device), none a twin's."""
    sim = load_clock_config(ROOT / "configs" / "sim.toml")["instruments"]
    lab = load_clock_config(LAB)["instruments"]
    assert set(lab) == set(sim)
    resources = [e["resource"] for e in lab.values()]
    assert len(set(resources)) == len(resources)
    assert all(not r.startswith("sim://") for r in resources)
    assert all(lab[role]["model"] == sim[role]["model"] for role in sim)
