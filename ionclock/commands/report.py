"""`ionclock report RUN_DIR`: the lock's evaluation (ADEV vs QPN, bias, B, slips, uptime)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="evaluate a clock run: ADEV vs QPN, bias, B, slips, silent wrong-lock "
                   "frames, figures",
        description="Read a run's store (RUN_DIR/ionclock.sqlite or the store file) and "
                    "write adev.png, frequency.png, offsets.png, bfield.png and "
                    "summary.json. Twin runs are judged against the true line centres; "
                    "lab runs show the ion against the cavity. On a terminal, each stage "
                    "is shown as it runs.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder (or its SQLite store)")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    p.add_argument("--settle", default="10m",
                   help="settling time skipped after the servo starts (and, for the silent "
                        "wrong-lock frames, after the first lock), e.g. 10m, 0s")
    p.add_argument("--taus", default="octave", choices=("octave", "decade"),
                   help="averaging times of the Allan deviation")
    p.add_argument("--json", action="store_true",
                   help="print only the summary, as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no stage lines")
    p.set_defaults(func=run)


def run(args) -> int:
    from ionclock import report
    from ionclock.progress import Stages
    from ionclock.storage.store import left_as_found
    from ionclock.units import parse_duration

    settle = 0.0 if args.settle.strip() in ("0", "0s") else parse_duration(args.settle)
    store = report.resolve_store(args.run_dir)
    stage = Stages("ionclock report", enabled=False if args.no_progress else None)
    with left_as_found(store):
        summary = report.make_report(store, args.out, settle, args.taus, stage=stage)
        stage.done()
    print(report.to_json(summary) if args.json else report.format_summary(summary))
    return 0
