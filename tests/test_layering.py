"""STYLE §1: imports run procedures -> servo -> drivers, and only the registry knows the twin;
the core's rooms run commands -> report -> logger -> apparatus -> storage -> physics -> base,
and the physics imports nothing that reads a store or opens an instrument (decision 0009).

import-linter (grimp) finds a package's modules by walking its folder, and the editable
install maps drivers/, servo/, ... into `ionclock.*` from outside that folder. So the test
assembles the installed layout (the wheel's) from pyproject's own package-dir mapping in a
temporary folder and lints that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def assemble(tmp: Path) -> Path:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = meta["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items()):
        dest = tmp.joinpath(*package.split("."))
        src = ROOT / folder
        for path in src.rglob("*.py"):
            rel = path.relative_to(src)
            if rel.parts[0] in {p.split(".")[-1] for p in mapping if p != package
                                and p.startswith(package + ".")}:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    shutil.copyfile(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def lint(tree: Path) -> subprocess.CompletedProcess:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(lint_imports), str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, capture_output=True, text=True, env=env)


def test_import_contracts_hold(tmp_path):
    result = lint(assemble(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken" in result.stdout


def test_the_contract_catches_a_driver_importing_the_twin(tmp_path):
    tree = assemble(tmp_path)
    bad = tree / "ionclock" / "drivers" / "_bad.py"
    bad.write_text("import ionclock.sim_instruments.world\n")
    result = lint(tree)
    assert result.returncode != 0
    assert "broken" in result.stdout


def test_a_procedure_reaches_the_twin_only_through_the_registry(tmp_path):
    tree = assemble(tmp_path)
    ok = tree / "ionclock" / "procedures" / "_through_registry.py"
    ok.write_text("import ionclock.apparatus.registry\n")
    assert lint(tree).returncode == 0
    bad = tree / "ionclock" / "procedures" / "_bad.py"
    bad.write_text("import ionclock.sim_instruments.world\n")
    result = lint(tree)
    assert "Contracts: 4 kept, 1 broken" in result.stdout, result.stdout


@pytest.mark.parametrize("module, line, contracts", [
    # a physics module that reads a store: both core contracts break
    ("physics/_bad.py", "from ionclock.storage.store import open_readonly\n", 2),
    # the store reaching up into the apparatus
    ("storage/_bad.py", "import ionclock.apparatus.registry\n", 1),
    # the apparatus calling the command line
    ("apparatus/_bad.py", "import ionclock.commands.main\n", 1),
    # the apparatus reaching up into the campaigns that run it
    ("apparatus/_bad.py", "import ionclock.campaign\n", 1),
])
def test_the_core_contracts_catch_an_import_up_the_layers(tmp_path, module, line, contracts):
    tree = assemble(tmp_path)
    (tree / "ionclock" / module).write_text(line)
    result = lint(tree)
    assert result.returncode != 0
    assert f"Contracts: {5 - contracts} kept, {contracts} broken" in result.stdout, result.stdout
