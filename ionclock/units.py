"""Parsing of durations and other human-typed quantities."""

from __future__ import annotations

import re

from ionclock.errors import UserError

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """'6h', '30d', '90s', '1.5h', '120' (seconds) -> seconds; bad text is a `UserError`."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*", str(text))
    if not m or m.group(2) not in ("", *_UNITS):
        raise UserError(f"bad duration {text!r} (use e.g. 90s, 15m, 6h, 30d)")
    value = float(m.group(1)) * (_UNITS[m.group(2)] if m.group(2) else 1.0)
    if value <= 0:
        raise UserError(f"duration {text!r} must be positive")
    return value
