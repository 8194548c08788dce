"""The calibration file: measured results the shift budget uses in place of nominal values.

`ionclock measure NAME CONFIG` writes each characterisation result here with its provenance
(decision 0803); the clock config names the file (``[budget] calibration``, a relative path
from the config's folder). One JSON object::

    {"format": "ionclock-calibration", "version": 1,
     "entries": {"zeeman": {
        "name": "zeeman", "procedure": "zeeman/1 (ionclock 0.x)", "time_unix": 1.7e9,
        "time": "2026-12-04T05:50:12Z", "data_file": ".../zeeman.csv",
        "plot_file": ".../zeeman.png", "result": "zeeman: alpha_z = ... (95 % CI, ...)",
        "estimate": {"name": "alpha_z", "value": ..., "sigma": ..., "low": ..., "high": ...,
                     "unit": "Hz/T^2"},
        "settings": {...procedure parameters...}, "config": "configs/sim.toml",
        "budget": {"zeeman": {"alpha_z_hz_per_mt2": 14.1, "alpha_z_unc_hz_per_mt2": 2.0}},
        "rows": ["qz_dc", "qz_ac"], "truth": {...} or null}}}

``budget`` is what the result sets in the budget config (section -> key -> value); ``rows``
the budget rows whose numbers it changes. `apply` lays every entry's ``budget`` over a
budget config (later entries win on the same key) and validates the result as a budget
config; `row_notes` says, per row, which results it uses and how old they are. Writing is
atomic (a temporary file renamed over the old one), so a reader never sees half a file.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ionclock.errors import UserError

FORMAT = "ionclock-calibration"
VERSION = 1


def empty() -> dict:
    """A calibration with no entries."""
    return {"format": FORMAT, "version": VERSION, "entries": {}}


def load(path: str | Path | None) -> dict:
    """The calibration at `path`; an absent file (or None) is an empty one.

    A file that is not a calibration is a `UserError` naming it (one line).
    """
    if path is None or str(path) == "":
        return empty()
    p = Path(path)
    if not p.exists():
        return empty()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"calibration {str(p)!r}: not readable as JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT \
            or not isinstance(data.get("entries"), dict):
        raise UserError(f"calibration {str(p)!r}: not an {FORMAT} file")
    if data.get("version") != VERSION:
        raise UserError(f"calibration {str(p)!r}: version {data.get('version')!r}, this "
                        f"ionclock reads version {VERSION}")
    return data


def record(path: str | Path, entry: dict) -> dict:
    """Put `entry` (its ``name`` the key; an older result of that name is replaced) and save.

    Returns the calibration as written.
    """
    for key in ("name", "time_unix", "budget", "rows"):
        if key not in entry:
            raise ValueError(f"calibration entry without {key!r}")
    p = Path(path)
    data = load(p)
    data["entries"][entry["name"]] = entry
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=_plain)
            fh.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data


def _plain(x: Any) -> Any:
    """JSON for numpy scalars and arrays; NaN stays a float (json writes NaN)."""
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def iso(t_unix: float) -> str:
    """UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_unix))


#: A value a result sets and the budget config key of its uncertainty: a result less precise
#: than the value the config states already is recorded but not laid over it.
UNCERTAINTY_OF = {("zeeman", "alpha_z_hz_per_mt2"): "alpha_z_unc_hz_per_mt2",
                  ("zeeman", "b2_ac_t2"): "b2_ac_unc_t2",
                  ("secular", "heating_rate"): "heating_rate_unc",
                  ("micromotion", "nominal_ratios"): "ratio_unc"}


def less_precise(budget_cfg: dict, calibration: dict) -> dict[str, str]:
    """The entries that would replace a stated value by a less precise one: name -> why.

    A characterisation on an apparatus that cannot reach the seed's precision (alpha_z from
    fields the coil limit keeps within 45 uT: +-63 Hz/mT^2 against the stated +-0.040) must
    not make the budget worse than what is known; the result stays in the file, and each
    row it would have changed says it was not used and why.
    """
    out = {}
    for name, entry in calibration.get("entries", {}).items():
        for (section, key), unc_key in UNCERTAINTY_OF.items():
            new = entry.get("budget", {}).get(section, {})
            old = budget_cfg.get(section, {})
            if key not in new or unc_key not in new or unc_key not in old:
                continue
            new_u, old_u = _worst(new[unc_key]), _worst(old[unc_key])
            if old_u > 0 and new_u > old_u:
                out[name] = (f"{section}.{unc_key} {new_u:.3g} is less precise than the "
                             f"stated {old_u:.3g}")
    return out


def _worst(value: Any) -> float:
    values = value if isinstance(value, (list, tuple)) else [value]
    return max(abs(float(v)) for v in values)


def apply(budget_cfg: dict, calibration: dict) -> dict:
    """A copy of `budget_cfg` with every entry's ``budget`` values laid over it, validated.

    An entry less precise than what the config states (`less_precise`) is left out. A value
    the budget config schema refuses is a `ConfigError` naming the key (and the entry that
    set it in the message).
    """
    from ionclock.errors import ConfigError
    from ionclock.physics.budget import load_config

    cfg = copy.deepcopy(budget_cfg)
    skipped = less_precise(budget_cfg, calibration)
    for name, entry in sorted(calibration.get("entries", {}).items(),
                              key=lambda kv: kv[1].get("time_unix", 0.0)):
        if name in skipped:
            continue
        for section, values in entry["budget"].items():
            if section not in cfg or not isinstance(cfg[section], dict):
                raise ConfigError(f"calibration.{name}", f"unknown budget section {section!r}")
            cfg[section].update(copy.deepcopy(values))
    try:
        return load_config(cfg)
    except ConfigError as err:
        raise UserError(f"calibration: {err} (a value the calibration file sets)") from None


def age_text(age_s: float) -> str:
    """An age for a person: 45 s, 12 min, 3.2 h, 4.5 d."""
    if not math.isfinite(age_s):
        return "age unknown"
    if age_s < 0:
        return f"{-age_s:.0f} s in the future (clock?)"
    if age_s < 120:
        return f"{age_s:.0f} s"
    if age_s < 7200:
        return f"{age_s / 60:.0f} min"
    if age_s < 2 * 86400:
        return f"{age_s / 3600:.1f} h"
    return f"{age_s / 86400:.1f} d"


def budget_keys(entry: dict) -> set[tuple[str, str]]:
    """The (section, key) pairs of the budget config an entry sets."""
    return {(section, key) for section, values in entry.get("budget", {}).items()
            for key in values}


def row_notes(calibration: dict, at_unix: float | None,
              used: dict[str, set[tuple[str, str]]] | None = None,
              skipped: dict[str, str] | None = None) -> dict[str, str]:
    """Per budget row: which calibration results it uses and how old each is at `at_unix`.

    E.g. ``{"qz_dc": "calibration zeeman: alpha_z = 14.1 +/- 2.0 Hz/mT^2, measured
    2026-12-04T05:50:12Z (3.1 h old)"}``. `used`: the (section, key) pairs each row took
    from the config this time (a live budget: an input measured live leaves the config's
    value, and the calibration's, unused); a result none of whose keys the row used is named
    as not used, never as the row's source. None: every row uses every key (nominal inputs).
    `skipped`: entries `apply` left out (`less_precise`), named as not used with the reason.
    """
    notes: dict[str, list[str]] = {}
    for name, entry in sorted(calibration.get("entries", {}).items()):
        t = float(entry.get("time_unix", math.nan))
        age = (at_unix - t) if at_unix is not None else math.nan
        what = entry.get("summary") or name
        text = (f"calibration {name}: {what}, measured {iso(t) if math.isfinite(t) else '?'}"
                f" ({age_text(age)} old)")
        keys = budget_keys(entry)
        for row in entry.get("rows", ()):
            if skipped and name in skipped:
                notes.setdefault(row, []).append(f"calibration {name} not used "
                                                 f"({skipped[name]})")
            elif used is None or keys & used.get(row, set()):
                notes.setdefault(row, []).append(text)
            else:
                notes.setdefault(row, []).append(f"calibration {name} not used (measured live)")
    return {row: "; ".join(texts) for row, texts in notes.items()}


def provenance(calibration: dict, path: str | Path | None) -> dict:
    """What a budget's provenance keeps of the calibration: the file and each entry's time."""
    return {"file": str(path) if path else "",
            "entries": {name: {"time": e.get("time"), "data_file": e.get("data_file"),
                               "procedure": e.get("procedure"), "rows": e.get("rows")}
                        for name, e in calibration.get("entries", {}).items()}}
