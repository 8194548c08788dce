"""The README's commands, run as written in a fresh copy of the tree after `make run`.

Every line of the README's ``sh`` blocks is run in order, in a folder holding the tree's
files (as a fresh clone has them) and this environment's venv (``.venv``, linked; `make` is
told the venv is built, so it never reinstalls into it). `make test` is this suite itself
and is not run again. A command whose comment says "until Ctrl-C" is started in the
background, the next ones run once it has printed its first line, and it gets its Ctrl-C
(SIGINT) at the end of its block; every command must exit 0.

`ionclock budget` on the `make run` store must also reproduce the run's last live budget:
its total and uncertainty equal the last row of the run's `budgets` table to 1e-22.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
NOT_RUN = {"make test"}          # the suite that runs this test
BACKGROUND = "until Ctrl-C"
STEP_TIMEOUT_S = 300


def readme_blocks(text: str) -> list[list[tuple[str, str]]]:
    """The ``sh`` blocks of the README: lists of (command, comment)."""
    blocks = []
    for body in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        commands = []
        for line in body.splitlines():
            if not line.strip():
                continue
            command = shlex.join(shlex.split(line, comments=True))
            comment = line.split(" #", 1)[1] if " #" in line else ""
            commands.append((command, comment))
        blocks.append(commands)
    return blocks


def test_readme_lists_the_commands_of_every_subcommand():
    commands = [c for block in readme_blocks((ROOT / "README.md").read_text())
                for c, _ in block]
    for sub in ("sim", "report", "budget", "status", "plot", "export", "log", "twin-serve",
                "run", "campaign"):
        assert any(c.startswith(f"ionclock {sub} ") for c in commands), sub


def _fresh_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                            "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        src = ROOT / name
        if name and src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(VENV, target_is_directory=True)


def _wait_for_output(log: Path, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and "\n" in log.read_text():
            return
        if proc.poll() is not None:
            pytest.fail(f"{what} ended with {proc.returncode}: {log.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"{what} printed nothing in 120 s")


def _stop(proc: subprocess.Popen, what: str, log: Path) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{what} did not end on Ctrl-C")
    assert rc == 0, f"{what} (Ctrl-C) -> {rc}:\n{log.read_text()}"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_every_readme_command_runs_as_written_after_make_run(tmp_path):
    tree = tmp_path / "clone"
    _fresh_tree(tree)
    env = dict(os.environ, PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}")
    blocks = readme_blocks((tree / "README.md").read_text())
    first = [c for c, _ in blocks[0]]
    assert first[0] == "make run", "the README starts with `make run`"
    done: list[str] = []
    background: list[tuple[subprocess.Popen, str, Path]] = []
    try:
        _run_blocks(blocks, tree, env, tmp_path, done, background)
    finally:   # a failed step leaves no server running
        for proc, _, _ in background:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert "make run" in done and any(c.startswith("ionclock run ") for c in done)
    _check_budget_of_make_run(tree, env)


def _run_blocks(blocks, tree: Path, env: dict, tmp_path: Path, done: list[str],
                background: list) -> None:
    for block in blocks:
        started = len(background)
        for command, comment in block:
            if command in NOT_RUN:
                continue
            argv = shlex.split(command)
            if argv[0] == "make":   # the venv is built: make must not reinstall into it
                argv[1:1] = ["-o", ".venv/.installed"]
            log = tmp_path / f"step{len(done):02d}.log"
            if BACKGROUND in comment:
                proc = subprocess.Popen(argv, cwd=tree, env=env, stdin=subprocess.DEVNULL,
                                        stdout=log.open("w"), stderr=subprocess.STDOUT)
                background.append((proc, command, log))
                _wait_for_output(log, proc, command)
                time.sleep(2.0)   # into its work (a run: past opening its instruments)
            else:
                result = subprocess.run(argv, cwd=tree, env=env, capture_output=True,
                                        text=True, timeout=STEP_TIMEOUT_S)
                log.write_text(result.stdout + result.stderr)
                assert result.returncode == 0, (
                    f"`{command}` -> {result.returncode}:\n{result.stdout}\n{result.stderr}")
                assert "Traceback" not in result.stderr, command
            done.append(command)
        for proc, command, log in reversed(background[started:]):
            _stop(proc, command, log)


def _check_budget_of_make_run(tree: Path, env: dict) -> None:
    """On the make-run store, `ionclock budget` gives the run's last live budget."""
    store = tree / "runs" / "latest" / "ionclock.sqlite"
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        t, total, sigma, valid = db.execute(
            "SELECT t, total_fractional, sigma_fractional, valid FROM budgets "
            "ORDER BY t DESC LIMIT 1").fetchone()
    finally:
        db.close()
    result = subprocess.run(["ionclock", "budget", "runs/latest/ionclock.sqlite", "--json"],
                            cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    print(f"make run: last budgets row t = {t} s: total {total!r}, sigma {sigma!r}, valid "
          f"{valid}; ionclock budget: total {data['total']['shift_fractional']!r}, sigma "
          f"{data['total']['uncertainty_fractional']!r}")
    assert valid == 1 and data["total"]["valid"] is True
    assert abs(data["total"]["shift_fractional"] - total) <= 1e-22
    assert abs(data["total"]["uncertainty_fractional"] - sigma) <= 1e-22
