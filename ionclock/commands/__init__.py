"""The `ionclock` subcommands, one module each (see ionclock.commands.main)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ionclock.errors import UserError


def arg_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` from one of ionclock.units' parsers (its `UserError` message).

    argparse then names the option in its one-line error (ionclock.commands.main.Parser).
    """
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except UserError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert
