"""Bad command lines: one line on stderr, exit status 2, no traceback, no usage block."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ionclock.commands.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("short") / "run"
    assert main(["sim", "--duration", "5m", "--seed", "2", "--no-progress",
                 "--out", str(out)]) == 0
    return out


def _one_line_exit_2(capsys, argv: list[str], expect: str) -> str:
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "usage:" not in err
    assert expect in err, err
    return err


@pytest.mark.parametrize("argv, expect", [
    (["sim", "--seed", "-1", "--duration", "1m"], "must be >= 0"),
    (["log", "configs/logger.sim.toml", "--simulate", "--seed", "-3"], "must be >= 0"),
    (["sim", "--duration", "-5m"], "'-5m' must be positive"),
    (["sim", "--duration", "1e9d"], "above the maximum 3650 d"),
    (["sim", "--duration", "1e999"], "above the maximum"),
    (["status", "{store}", "--events", "-3"], "must be >= 0"),
    (["budget", "--nominal", "configs/seed_clock.toml", "--servo-hz", "nan"], "finite"),
    (["sim", "--no-such-option"], "unrecognized arguments"),
])
def test_bad_arguments_are_one_line_and_exit_2(short_run, tmp_path, capsys, monkeypatch,
                                               argv, expect):
    monkeypatch.chdir(ROOT)
    argv = [a.replace("{store}", str(short_run / "ionclock.sqlite")) for a in argv]
    if argv[0] == "sim":
        argv = [*argv, "--out", str(tmp_path / "o")]
    _one_line_exit_2(capsys, argv, expect)
    assert not (tmp_path / "o").exists()


def test_a_negative_seed_never_reaches_numpy():
    """The traceback the issue saw came from numpy; the CLI now stops at the argument."""
    result = subprocess.run([sys.executable, "-m", "ionclock", "sim", "--seed", "-1",
                             "--duration", "1m", "--no-progress", "--out", "/nonexistent/o"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("name, expect", [
    ("sim.toml", "this is a clock config"),
    ("logger.sim.toml", "this is a logger config"),
])
def test_budget_nominal_names_the_wrong_kind_of_config(capsys, name, expect):
    err = _one_line_exit_2(capsys, ["budget", "--nominal", str(ROOT / "configs" / name)],
                           expect)
    assert "shift-budget config" in err
    if name == "sim.toml":   # and it points at the budget config the clock config uses
        assert "seed_clock.toml" in err


def test_other_commands_name_the_wrong_kind_of_config(tmp_path, capsys):
    configs = ROOT / "configs"
    _one_line_exit_2(capsys, ["sim", "--config", str(configs / "seed_clock.toml"),
                              "--out", str(tmp_path / "o")], "this is a shift-budget config")
    _one_line_exit_2(capsys, ["log", str(configs / "sim.toml"), "--simulate"],
                     "this is a clock config")


def test_plot_to_an_unknown_image_format(short_run, tmp_path, capsys):
    store = str(short_run / "ionclock.sqlite")
    _one_line_exit_2(capsys, ["plot", store, "--out", str(tmp_path / "x.xyz")],
                     "'.xyz' is not an image format")
    _one_line_exit_2(capsys, ["plot", store, "--out", str(tmp_path / "noext")],
                     "is not an image format")
    assert not list(tmp_path.iterdir())


def test_report_into_a_folder_that_cannot_be_made(short_run, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    _one_line_exit_2(capsys, ["report", str(short_run), "--out", str(a_file)],
                     "is not a folder")
    _one_line_exit_2(capsys, ["report", str(short_run), "--out", str(a_file / "report")],
                     "--out")
    if Path("/proc/self").is_dir():   # a folder no one can make one in
        _one_line_exit_2(capsys, ["report", str(short_run), "--out", "/proc/ionclock_report"],
                         "cannot create")
    assert a_file.read_text() == "not a folder"


def _subcommands() -> list[str]:
    import argparse

    from ionclock.commands.main import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in _subcommands()])
def test_every_help_text_prints(capsys, argv):
    """argparse formats help strings with %: a bare '95 % CI' crashed `ionclock --help`."""
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ionclock")
