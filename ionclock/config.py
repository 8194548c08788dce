"""Configuration: TOML files checked against a schema before anything starts.

A schema is a nested dict whose leaves are `Field`s. `validate(data, schema)` returns the
data with defaults filled in, or raises `ConfigError` naming the first bad key (dotted path)
and what is allowed. Sections named in `OPEN_SECTIONS` hold tables keyed by user names
(instruments, channels), each checked against a sub-schema.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ionclock.errors import ConfigError

_MISSING = object()


@dataclass(frozen=True)
class Field:
    """One configuration value: its type, allowed range or choices, default and meaning."""

    type: type | tuple[type, ...]
    default: Any = _MISSING
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    doc: str = ""

    def check(self, key: str, value: Any) -> Any:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in types:
            raise ConfigError(key, f"expected {_names(types)}, got a boolean")
        if not isinstance(value, types):
            raise ConfigError(key, f"expected {_names(types)}, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(key, "must be a finite number")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ConfigError(key, f"{value!r} is not one of {allowed}")
        if self.min is not None and value < self.min:
            raise ConfigError(key, f"{value!r} is below the minimum {self.min!r}")
        if self.max is not None and value > self.max:
            raise ConfigError(key, f"{value!r} is above the maximum {self.max!r}")
        return value


@dataclass(frozen=True)
class Table:
    """A section of user-named entries (e.g. instruments), each checked against `entry`."""

    entry: dict
    doc: str = ""
    required: bool = False
    default: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ListOf:
    """An array of tables (TOML ``[[section]]``), each checked against `entry`."""

    entry: dict
    doc: str = ""


#: ``[dashboard]`` of a clock or logger config: where ``ionclock dashboard`` serves its page
DASHBOARD_SCHEMA = {
    "bind": Field(str, "127.0.0.1", doc="address the page is served on (default: loopback "
                                        "only; 0.0.0.0 exposes it to the lab's network)"),
    "port": Field(int, 8050, min=1, max=65535, doc="TCP port of the page"),
    "refresh_s": Field(float, 3.0, min=0.5, max=600.0,
                       doc="seconds between the page's re-reads of the store"),
}


def _names(types: tuple[type, ...]) -> str:
    return " or ".join({float: "a number", int: "an integer", str: "a string",
                        bool: "true/false", list: "a list", dict: "a table"}.get(t, t.__name__)
                       for t in types)


def validate(data: dict, schema: dict, prefix: str = "") -> dict:
    """Check `data` against `schema`; return a new dict with defaults filled in."""
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "<top>", "expected a table")
    out: dict = {}
    for key in data:
        if key not in schema:
            allowed = ", ".join(sorted(schema)) or "nothing"
            raise ConfigError(prefix + key, f"unknown key (allowed here: {allowed})")
    for key, spec in schema.items():
        path = prefix + key
        if isinstance(spec, Field):
            if key in data:
                out[key] = spec.check(path, data[key])
            elif spec.default is _MISSING:
                raise ConfigError(path, "is required" + (f" ({spec.doc})" if spec.doc else ""))
            else:
                out[key] = spec.default
        elif isinstance(spec, Table):
            entries = data.get(key, spec.default)
            if not isinstance(entries, dict):
                raise ConfigError(path, "expected a table of named entries")
            if spec.required and not entries:
                raise ConfigError(path, "needs at least one entry")
            out[key] = {name: validate(entry, spec.entry, f"{path}.{name}.")
                        for name, entry in entries.items()}
        elif isinstance(spec, ListOf):
            items = data.get(key, [])
            if not isinstance(items, list):
                raise ConfigError(path, "expected an array of tables ([[...]])")
            out[key] = [validate(item, spec.entry, f"{path}[{i}].")
                        for i, item in enumerate(items)]
        else:  # a nested section
            out[key] = validate(data.get(key, {}), spec, path + ".")
    return out


def merge(base: dict, override: dict) -> dict:
    """Deep-merge `override` onto `base` (tables merge key by key; anything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_toml(path: str | Path) -> dict:
    """Read a TOML file; a missing or malformed file is a `ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(path), "no such config file")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), f"not valid TOML: {err}") from None


# Sections only one kind of config has, and what reads that kind (`check_kind`).
_KINDS = {
    "clock": (("servo", "run", "twin", "shutdown", "budget"),
              "a clock config (ionclock sim --config, ionclock run; e.g. configs/sim.toml)"),
    "logger": (("channels", "polling", "sinks", "alarms", "simulate", "retention"),
               "a logger config (ionclock log; e.g. configs/logger.sim.toml)"),
    "budget": (("bbr", "secular", "zeeman", "micromotion", "background_gas", "residuals"),
               "a shift-budget config (ionclock budget --nominal/--config; e.g. "
               "configs/seed_clock.toml)"),
}


def config_kind(data: dict) -> str | None:
    """'clock', 'logger' or 'budget': the kind whose own sections `data` has most of."""
    scores = {kind: sum(key in data for key in sections)
              for kind, (sections, _) in _KINDS.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] else None


def check_kind(data: dict, want: str, path: str | Path) -> None:
    """Refuse a config file of another kind with one line that says which kind it is.

    E.g. ``ionclock budget --nominal configs/sim.toml``: a clock config, whose own budget
    config is named by its ``[budget] config``.
    """
    kind = config_kind(data) if isinstance(data, dict) else None
    if kind is None or kind == want:
        return
    hint = ""
    budget = data.get("budget")
    if want == "budget" and kind == "clock" and isinstance(budget, dict) and budget.get(
            "config"):
        hint = f"; its budget config is {str(Path(path).parent / budget['config'])!r}"
    raise ConfigError(str(path), f"this is {_KINDS[kind][1]}, not {_KINDS[want][1]}{hint}")
