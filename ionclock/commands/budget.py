"""`ionclock budget`: the systematic-shift budget, live from a store or at nominal inputs.

    ionclock budget STORE [--config CFG] [--since T] [--until T | --last 6h] [--format F]
                          [--inputs live|measured]
    ionclock budget --nominal CFG [--json]

A STORE's budget is, by default, the running clock's own (`--inputs live`,
ionclock.apparatus.live_budget.replay_store): on a clock run's store the run's last live budget (the
last row of its ``budgets`` table, the same rows, validity and total) with the budget config
the run used; what the clock does not measure (micromotion, pressure, the AC field) at the
config's nominal values, which the output names. `--inputs measured` takes every input from
the store's channels instead (decision 0403: a missing one is an invalid row).

Exit status: 0 budget valid; 1 budget printed but some row is invalid (reason shown);
2 bad input (one line on stderr).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ionclock.commands import arg_type
from ionclock.errors import UserError
from ionclock.units import parse_duration, parse_finite

FORMATS = ("table", "markdown", "csv", "json")


def _store_time(text: str) -> float:
    """Parse a store time in seconds (a plain number, e.g. 3600 or 1.7e9)."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"bad time {text!r}: give store seconds (e.g. 3600); use --last for "
                        "a duration such as 6h") from None
    if not math.isfinite(value):
        raise UserError(f"bad time {text!r}: must be finite")
    return value


def register(sub) -> None:
    p = sub.add_parser(
        "budget", help="systematic-shift budget and corrected frequency",
        description="Evaluate the systematic-shift budget from a store window (live sensors, "
                    "field from the Zeeman splittings, micromotion, pressure) or from a "
                    "config's nominal inputs (--nominal). Exit 1 if a row is invalid.")
    p.add_argument("store", nargs="?", help="SQLite store of a run, or the run's folder")
    p.add_argument("--nominal", metavar="CONFIG", help="evaluate CONFIG's nominal inputs")
    p.add_argument("--calibration", metavar="FILE",
                   help="with --nominal: measured results (`ionclock measure`) in place of "
                        "the config's nominal values, each row naming the result and its age "
                        "(a store keeps the calibration its run used)")
    p.add_argument("--config", help="budget config for a store (default: the one the run "
                                    "used, else configs/seed_clock.toml)")
    p.add_argument("--inputs", choices=("live", "measured"), default="live",
                   help="live (default): the running clock's budget, unmeasured inputs at "
                        "their nominal values (named); measured: every input from the "
                        "store's channels, a missing one invalid")
    p.add_argument("--since", help="window start, store seconds (default: the run's last "
                                   "live-budget window; a logger's store: its start)")
    p.add_argument("--until", help="window end, store seconds (default: as --since; "
                                   "else the store's end)")
    p.add_argument("--last", help="window = this duration before --until (e.g. 6h)")
    p.add_argument("--format", choices=FORMATS, default=None, help="output format")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--servo-hz", type=arg_type(parse_finite), default=None,
                   help="servo frequency (Hz) to correct: prints the corrected clock output")
    p.set_defaults(func=run)


def calibrated_nominal(config: str, path: str):
    """The budget at CONFIG's nominal inputs with the calibration's results laid over them.

    Each row a result changes names it and its age now (decision 0803).
    """
    import time
    from dataclasses import replace

    from ionclock.physics.budget import Budget, load_config, nominal_inputs
    from ionclock.storage import calibration

    if not Path(path).is_file():
        raise UserError(f"--calibration {path!r}: no such file")
    cal = calibration.load(path)
    base = load_config(config)
    skipped = calibration.less_precise(base, cal)
    inputs = nominal_inputs(calibration.apply(base, cal), str(config))
    prov = {**inputs.provenance, "calibration": calibration.provenance(cal, path)}
    budget = Budget.from_inputs(replace(inputs, provenance=prov))
    notes = calibration.row_notes(cal, time.time(), skipped=skipped)
    budget.provenance["row_sources"] = {r.key: notes.get(r.key, "nominal: the config's value")
                                        for r in budget.rows}
    return budget


def run(args) -> int:
    from ionclock.apparatus.live_budget import replay_store
    from ionclock.physics.budget import Budget
    from ionclock.storage.budget_inputs import budget_from_store

    fmt = "json" if args.json else (args.format or "table")
    if args.json and args.format not in (None, "json"):
        raise UserError(f"--json conflicts with --format {args.format}")
    if (args.store is None) == (args.nominal is None):
        raise UserError("give either a STORE or --nominal CONFIG (exactly one)")
    if args.nominal is not None:
        if args.since or args.until or args.last or args.config or args.inputs != "live":
            raise UserError("--since/--until/--last/--config/--inputs apply to a STORE, "
                            "not --nominal")
        from ionclock.apparatus.cd_run import is_cd_config, nominal_budget

        if Path(args.nominal).is_file() and is_cd_config(args.nominal):
            if args.calibration:
                raise UserError("--calibration applies to a 40Ca+ budget config")
            budget = nominal_budget(args.nominal)   # the Cd+ budget at the config's field
        elif args.calibration:
            budget = calibrated_nominal(args.nominal, args.calibration)
        else:
            budget = Budget.nominal(args.nominal)
    else:
        if args.calibration:
            raise UserError("--calibration applies to --nominal: a STORE keeps the "
                            "calibration its run used")
        if args.since and args.last:
            raise UserError("give --since or --last, not both")
        since = _store_time(args.since) if args.since else None
        until = _store_time(args.until) if args.until else None
        last = parse_duration(args.last) if args.last else None
        evaluate = replay_store if args.inputs == "live" else budget_from_store
        store = args.store
        if Path(store).is_dir():    # a run's folder, as `report` takes it: its one store
            from ionclock.report import resolve_store
            store = str(resolve_store(store))
        from ionclock.apparatus.cd_run import is_cd_store, store_budget

        if is_cd_store(store):   # a Cd+ run: its SOZS at the field its servo tracked
            if args.config or args.inputs != "live":
                raise UserError("--config and --inputs apply to a 40Ca+ store, not a Cd+ "
                                "run's (its budget is the SOZS at the field it tracked)")
            budget = store_budget(store, since, until, last)
        else:
            budget = evaluate(store, since, until, args.config, last)
    out = budget.render(fmt)
    if args.servo_hz is not None:
        nu, sigma = budget.corrected_frequency(args.servo_hz, allow_invalid=True)
        if fmt == "json":
            import json
            data = budget.to_dict()
            data["corrected"] = {"servo_hz": args.servo_hz, "clock_hz": nu, "sigma_hz": sigma,
                                 "valid": budget.valid}
            out = json.dumps(data, indent=2, default=str)
        elif fmt != "csv":
            out += (f"\nCorrected: {nu:.6f} Hz +/- {sigma:.6f} Hz"
                    + ("" if budget.valid else " (INVALID rows excluded)"))
    print(out)
    if not budget.valid:
        print("ionclock: warning: budget has invalid rows: " + "; ".join(
            f"{r.label}: {r.reason}" for r in budget.invalid_rows), file=sys.stderr)
        return 1
    return 0
