"""`ionclock measure NAME CONFIG`: run a characterisation procedure, fit it, feed the budget.

Runs the named procedure (`ionclock.procedures.base.procedures()`; ``all``: every one, in
name order) headless under pymeasure's Worker on the apparatus of the clock config (the twin
for ``sim://`` resources), with a progress bar on a terminal; writes its pymeasure Results
file DIR/<name>-<UTC time>.csv, runs its analysis (`ionclock.procedures.analysis`), saves the
fit's plot beside it, and records the result with its provenance (time, data file, plot, fit,
value and 95 % interval, procedure version and settings, the twin's truth on the twin) in the
calibration file (``--calibration``, else the one the clock config names in ``[budget]
calibration``, else DIR/calibration.json), which a clock run whose config names that file
(e.g. ``--scenario calibrated`` over configs/sim.toml: runs/measure/calibration.json) and
``ionclock budget`` of its store then use in place of the nominal values (decision 0803).
Each result is recorded as soon as it is fitted: an error in a later procedure of ``all``
keeps the earlier ones.

Exit status: 0 done; 2 a bad name, config, setting or data the fit cannot use (one line).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ionclock.errors import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "measure", help="run a characterisation procedure, fit it, record it for the budget",
        description="Run a characterisation measurement (pymeasure procedure) headless on the "
                    "apparatus of CONFIG (the twin for sim:// resources), analyse it, save "
                    "the data, the fit's plot and the result with its provenance in the "
                    "calibration file the budget reads.")
    p.add_argument("name", metavar="NAME", nargs="?", default=None,
                   help="a procedure (see --list) or 'all'")
    p.add_argument("config", metavar="CONFIG", nargs="?", default=None,
                   help="clock config (e.g. configs/sim.toml)")
    p.add_argument("--out", metavar="DIR", default="runs/measure",
                   help="folder for the data files and plots (default runs/measure)")
    p.add_argument("--calibration", metavar="FILE", default=None,
                   help="calibration file to record into (default: the config's "
                        "[budget] calibration, else DIR/calibration.json)")
    p.add_argument("--seed", type=int, default=None,
                   help="twin seed (default: the config's [twin] seed)")
    p.add_argument("--set", metavar="PARAM=VALUE", action="append", default=[],
                   help="a procedure parameter, e.g. --set lock_s=600 (repeatable)")
    p.add_argument("--list", action="store_true", help="list the procedures and exit")
    p.add_argument("--json", action="store_true", help="end with one JSON object per result")
    p.set_defaults(func=run)


def _settings(pairs: list[str], classes: list) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {pair!r}: expected PARAM=VALUE")
        if not any(key in cls().parameter_objects() for cls in classes):
            names = sorted({n for cls in classes for n in cls().parameter_objects()})
            raise UserError(f"--set {key}: no such parameter (known: {', '.join(names)})")
        out[key] = value.strip()
    return out


def _calibration_path(cfg: dict, given: str | None, out: Path) -> Path:
    """--calibration, else the config's ``[budget] calibration``, else DIR/calibration.json."""
    if given:
        return Path(given)
    path = cfg["budget"].get("calibration", "")
    return Path(path) if path else out / "calibration.json"


def run(args) -> int:
    from ionclock.apparatus.clock_config import load_clock_config
    from ionclock.procedures.base import procedures

    known = procedures()
    if args.list:
        for name, cls in sorted(known.items()):
            print(f"{name:<13} {(cls.__doc__ or '').strip().splitlines()[0]}")
            print(f"{'':<13} budget rows: {', '.join(cls.BUDGET_ROWS) or '-'}")
            for key, param in cls().parameter_objects().items():
                if key not in ("config", "seed"):
                    unit = f" {param.units}" if getattr(param, "units", None) else ""
                    print(f"{'':<13} --set {key}=<{param.value}{unit}>  {param.name}")
        return 0
    if args.name is None:
        raise UserError("give a procedure NAME (or 'all'); --list lists them")
    if args.name != "all" and args.name not in known:
        raise UserError(f"no procedure {args.name!r} (known: {', '.join(sorted(known))}, all)")
    if args.config is None:
        raise UserError("give the clock config: ionclock measure NAME CONFIG")
    config = Path(args.config)
    if config.is_dir() or not config.exists():
        raise UserError(f"CONFIG {str(config)!r}: no such config file")
    cfg = load_clock_config(config)   # a bad config: one line, before anything starts
    out = Path(args.out)
    cal_path = _calibration_path(cfg, args.calibration, out)
    names = sorted(known) if args.name == "all" else [args.name]
    settings = _settings(args.set, [known[n] for n in names])
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a folder")
    results = [measure_one(known[name], config, out, cal_path, args.seed, settings)
               for name in names]
    if args.json:
        for entry in results:
            print(json.dumps(entry, default=str))
    return 0


def measure_one(cls, config: Path, out: Path, cal_path: Path, seed: int | None,
                settings: dict[str, str]) -> dict:
    """Run, analyse, plot and record one procedure; print its line; return its entry."""
    from tqdm import tqdm

    from ionclock.procedures.analysis import ANALYSES, DataError
    from ionclock.procedures.base import run_headless, version_of
    from ionclock.progress import on_terminal
    from ionclock.storage import calibration

    proc = cls(config=str(config), seed=-1 if seed is None else seed)
    for key, value in settings.items():
        if key in proc.parameter_objects():
            try:
                setattr(proc, key, value)
                proc.parameter_objects()[key].value   # pymeasure checks it here
            except (ValueError, TypeError) as err:
                raise UserError(f"--set {key}={value}: {err}") from None
    t_start = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t_start))
    data = out / f"{cls.NAME}-{stamp}.csv"
    bar = tqdm(total=100.0, desc=f"measure {cls.NAME}", unit="%", disable=not on_terminal(),
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
    try:
        run_headless(proc, data, on_progress=lambda pct: bar.update(pct - bar.n))
    finally:
        bar.close()
    if cls.NAME not in ANALYSES:
        raise UserError(f"procedure {cls.NAME!r} has no analysis of that name "
                        "(ionclock analyse --help lists them)")
    analysis = ANALYSES[cls.NAME]
    try:
        result = analysis.from_csv(data)
    except DataError as err:
        raise UserError(f"{str(data)!r}: {err}") from None
    png = analysis.plot(result, data.with_suffix(".png"))
    est = result.estimates[0]
    t_done = time.time()
    truth = proc.truth()
    try:
        budget, rows = proc.budget_values(result), list(cls.BUDGET_ROWS)
    except NotImplementedError:   # a measurement no budget row rests on: recorded, said so
        budget, rows = {}, []
    entry = {
        "name": cls.NAME, "procedure": version_of(cls), "time_unix": t_done,
        "time": calibration.iso(t_done), "started": calibration.iso(t_start),
        "data_file": str(data.resolve()), "plot_file": str(Path(png).resolve()),
        "result": result.line(), "summary": proc.summary(result),
        "interval": result.interval, "convention": result.convention, "points": result.n_points,
        "estimate": {"name": est.name, "value": est.value, "sigma": est.sigma,
                     "low": est.low, "high": est.high, "unit": est.unit},
        "settings": proc.settings(), "config": str(config.resolve()),
        "simulated": proc.apparatus.world is not None,
        "apparatus_time_s": proc.apparatus.now,
        "budget": budget, "rows": rows,
        "truth": truth,
        # what the procedure did to the apparatus, on its clock (s): locks, RF switched, shutdown
        "events": [{"t_s": t, "kind": kind, "source": source, **detail}
                   for t, kind, source, detail in proc.apparatus.events],
    }
    calibration.record(cal_path, entry)
    print(result.line())
    if truth:
        print(f"  twin truth: {', '.join(f'{k} = {v:.6g}' for k, v in truth.items())}")
    print(f"  budget rows {', '.join(rows)}: {entry['summary']}" if rows
          else f"  no budget row uses it: {entry['summary']}")
    print(f"  wrote {data}, {png}; recorded in {cal_path}")
    return entry
