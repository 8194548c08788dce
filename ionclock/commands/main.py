"""The `ionclock` command line.

Each subcommand lives in its own module under `ionclock.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (returns an exit status).
User errors (`UserError`, including `ConfigError`) print one line and exit with status 2;
so do command-line errors argparse finds (no usage block: the line says where to look).
A value that starts with '-' after an option that takes one (``--duration -5m``) is that
option's value, checked by the option's own parser, not an unknown option.
"""

from __future__ import annotations

import os

# The twin is built to run on one core: keep BLAS from spreading its small matrix products
# over threads (set before numpy loads; an explicit setting in the environment wins).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import re  # noqa: E402
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
    "ionclock.commands.dashboard",
    "ionclock.commands.analyse",
    "ionclock.commands.measure",
    "ionclock.commands.campaign",
]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``PROG: error: MESSAGE (see 'PROG --help')``, status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# A value such as -5m, -1 or -.5h after an option that takes a value
_NEGATIVE_VALUE = re.compile(r"-\.?[0-9]")


def join_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--opt -5m`` -> ``--opt=-5m`` for the subcommand's options that take a value.

    argparse reads a token such as ``-5m`` as an unknown option and stops with "expected one
    argument"; joined, it reaches the option's own check ("must be positive").
    """
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
               None)
    if sub is None or not argv or argv[0] not in sub.choices:
        return list(argv)
    takes_value = {opt for action in sub.choices[argv[0]]._actions if action.nargs != 0
                   for opt in action.option_strings}
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if (tok in takes_value and i + 1 < len(argv)
                and _NEGATIVE_VALUE.match(argv[i + 1])):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = Parser(
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
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(join_negative_values(parser, argv))
    except SystemExit as stop:   # --help, --version, or a one-line argparse error
        return stop.code if isinstance(stop.code, int) else 2
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
