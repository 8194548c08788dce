"""Parsing of durations and other human-typed quantities."""

from __future__ import annotations

import math
import re

from ionclock.errors import UserError

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

#: The longest duration taken (s): ten years, the default of `ionclock run` ("until ^C").
MAX_DURATION_S = 3650 * 86400.0


def parse_duration(text: str) -> float:
    """'6h', '30d', '90s', '1.5h', '120' (seconds) -> seconds; bad text is a `UserError`.

    A duration is positive and at most `MAX_DURATION_S` (3650 d): '1e9d' is a typo, not a
    run that would never end.
    """
    m = re.fullmatch(r"\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*", str(text))
    if not m or m.group(2) not in ("", *_UNITS):
        raise UserError(f"bad duration {text!r} (use e.g. 90s, 15m, 6h, 30d)")
    value = float(m.group(1)) * (_UNITS[m.group(2)] if m.group(2) else 1.0)
    if value <= 0:
        raise UserError(f"duration {text!r} must be positive")
    if not value <= MAX_DURATION_S:   # inf included
        raise UserError(f"duration {text!r} is above the maximum {MAX_DURATION_S / 86400:g} d")
    return value


def parse_seed(text: str) -> int:
    """A seed for every random source: an integer >= 0 (numpy's seeds are unsigned)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"bad seed {text!r}: give an integer >= 0") from None
    if value < 0:
        raise UserError(f"bad seed {text!r}: must be >= 0")
    return value


def parse_count(text: str) -> int:
    """A count typed by the user (how many events to list, ...): an integer >= 0."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"bad count {text!r}: give an integer >= 0") from None
    if value < 0:
        raise UserError(f"bad count {text!r}: must be >= 0")
    return value


def parse_finite(text: str) -> float:
    """A finite number typed by the user (e.g. a frequency in Hz)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise UserError(f"bad number {text!r}") from None
    if not math.isfinite(value):
        raise UserError(f"bad number {text!r}: must be finite")
    return value


def hms(seconds: float) -> str:
    """Seconds as ``h:mm:ss``, with days in front from a day on: ``3d 04:05:06``."""
    s = max(0, int(round(seconds)))
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{days}d {h:02d}:{m:02d}:{s:02d}" if days else f"{h}:{m:02d}:{s:02d}")
