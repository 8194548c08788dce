"""`ionclock campaign SPEC.toml`: a grid of twin runs in parallel, resumable, one report."""

from __future__ import annotations

from ionclock.commands import arg_type
from ionclock.errors import UserError
from ionclock.units import parse_count


def parse_workers(text: str) -> int:
    """How many local worker processes: an integer >= 1."""
    value = parse_count(text)
    if value < 1:
        raise UserError(f"bad worker count {text!r}: must be at least 1")
    return value


def register(sub) -> None:
    p = sub.add_parser(
        "campaign", help="run a grid of twin runs (cells x seeds) in parallel, resumably, "
                         "with one report",
        description="Run every run of a campaign spec (configs/campaigns/*.toml) not yet "
                    "done, on the local cores (a Dask LocalCluster) or on an existing Dask "
                    "cluster (--scheduler), each run with its own store and summary under "
                    "OUT/runs/CELL/sSEED; then write the report (per-cell table, z against "
                    "N(0,1) with a KS test, figures) into OUT. Started again, it runs only "
                    "the missing runs. Exit status 1 if a run failed.")
    p.add_argument("spec", metavar="SPEC", help="campaign spec (TOML)")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/campaigns/SPEC_NAME); on a Dask "
                        "cluster, a folder the workers share at the same path")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="an existing Dask scheduler (started by `dask scheduler`)")
    p.add_argument("--workers", type=arg_type(parse_workers), default=None,
                   help="worker processes of the local cluster (default: the cores here)")
    p.add_argument("--json", action="store_true",
                   help="end with the campaign report as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar over runs")
    p.set_defaults(func=run)


def run(args) -> int:
    from ionclock import campaign, report

    if args.scheduler and args.workers:
        raise UserError("campaign: --workers is for the local cluster; a --scheduler's "
                        "cluster has the workers it was given")
    if args.scheduler and "://" not in args.scheduler:
        raise UserError(f"campaign: --scheduler {args.scheduler!r}: give an address such as "
                        "tcp://HOST:PORT")
    spec = campaign.load_spec(args.spec, args.out)
    outcome = campaign.run_campaign(spec, scheduler=args.scheduler, workers=args.workers,
                                    say=lambda text: print(text, flush=True),
                                    progress=False if args.no_progress else None)
    agg = campaign.write_report(spec, outcome)
    print()
    print(campaign.format_report(agg))
    print(f"wrote {', '.join(agg['files'])}")
    if args.json:
        print(report.to_json(agg))
    return 1 if agg["failed"] else 0
