"""`ionclock report RUN_DIR`: the lock's evaluation (ADEV vs QPN, bias, B, slips, uptime)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="evaluate a clock run: ADEV vs QPN, bias, B, slips, silent wrong-lock "
                   "frames, figures",
        description="Read a run's store (RUN_DIR/ionclock.sqlite or the store file) and "
                    "write adev.png, frequency.png, offsets.png, bfield.png and "
                    "summary.json. Twin runs are judged against the true line centres; "
                    "lab runs show the ion against the cavity.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder (or its SQLite store)")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    p.add_argument("--settle", default="10m",
                   help="settling time skipped after the servo starts (and, for the silent "
                        "wrong-lock frames, after the first lock), e.g. 10m, 0s")
    p.add_argument("--taus", default="octave", choices=("octave", "decade"),
                   help="averaging times of the Allan deviation")
    p.add_argument("--json", action="store_true",
                   help="print only the summary, as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from ionclock.report import format_summary, make_report, to_json
    from ionclock.units import parse_duration

    settle = 0.0 if args.settle.strip() in ("0", "0s") else parse_duration(args.settle)
    summary = make_report(args.run_dir, args.out, settle_s=settle, taus=args.taus)
    print(to_json(summary) if args.json else format_summary(summary))
    return 0
