"""`ionclock report RUN_DIR`: the lock's evaluation (ADEV vs QPN, bias, B, slips, uptime)."""

from __future__ import annotations

from pathlib import Path


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


def output_folder(store: Path, out: str | None) -> Path:
    """The report's folder, made here: one line (`UserError`) when it cannot be.

    Its parent must exist (a typo is not silently turned into a tree of folders).
    """
    from ionclock.errors import UserError

    folder = Path(out) if out is not None else store.parent / "report"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"report: --out: {str(folder)!r} exists and is not a folder")
    if not folder.parent.is_dir():
        raise UserError(f"report: --out: parent folder {str(folder.parent)!r} does not exist")
    try:
        folder.mkdir(exist_ok=True)
    except OSError as err:
        raise UserError(f"report: --out: cannot create {str(folder)!r}: "
                        f"{err.strerror or err}") from None
    return folder


def run(args) -> int:
    import matplotlib

    from ionclock import report
    from ionclock.errors import UserError
    from ionclock.progress import Stages
    from ionclock.storage.store import left_as_found
    from ionclock.units import parse_duration

    matplotlib.use("Agg")
    settle = 0.0 if args.settle.strip() in ("0", "0s") else parse_duration(args.settle)
    store = report.resolve_store(args.run_dir)
    out = output_folder(store, args.out)
    stage = Stages("ionclock report", enabled=False if args.no_progress else None)
    # `report.make_report`'s steps, one stage line each (a 10-day run takes minutes)
    with left_as_found(store):
        size = store.stat().st_size / 1e6
        stage(f"reading {store} ({size:.0f} MB)")
        data = report.load_run(store)
        if settle < 0:
            raise UserError("report: --settle must not be negative")
        stage(f"ADEV, bias, slips and wrong-lock frames of {len(data.t):,} frames")
        summary, arrays = report.summarise(data, settle, args.taus)
        figures = (report.plot_adev, report.plot_frequency, report.plot_offsets)
        for name, draw in zip(report.FIGURES, figures):
            stage(f"figure {out / name}")
            draw(data, summary, arrays, out / name)
        stage(f"figure {out / report.FIGURES[3]}")
        report.plot_bfield(data, summary, out / report.FIGURES[3])
        stage.done()
    summary["files"] = [str(out / f) for f in (*report.FIGURES, "summary.json")]
    (out / "summary.json").write_text(report.to_json(summary) + "\n")
    print(report.to_json(summary) if args.json else report.format_summary(summary))
    return 0
