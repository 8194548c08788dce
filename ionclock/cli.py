"""The `ionclock` command line.

Each subcommand lives in its own module under `ionclock.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (returns an exit status).
User errors (`UserError`, including `ConfigError`) print one line and exit with status 2.
"""

from __future__ import annotations

import os

# The twin is built to run on one core: keep BLAS from spreading its small matrix products
# over threads (set before numpy loads; an explicit setting in the environment wins).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402

from ionclock import __version__  # noqa: E402
from ionclock.errors import UserError  # noqa: E402

# The subcommand modules, in the order `ionclock --help` lists them.
COMMANDS = [
    "ionclock.commands.sim",
    "ionclock.commands.run",
    "ionclock.commands.twin_serve",
    "ionclock.commands.budget",
    "ionclock.commands.log",
    "ionclock.commands.plot",
    "ionclock.commands.export",
    "ionclock.commands.status",
    "ionclock.commands.report",
    "ionclock.commands.analyse",
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="ionclock", description="Run trapped-ion clocks and their digital twin.")
    parser.add_argument("--version", action="version", version=f"ionclock {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn user errors into one line and status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"ionclock: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ionclock: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`ionclock ... | head`): stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
