"""`ionclock export STORE`: logged channels to CSV or HDF5."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export logged channels to CSV or HDF5")
    p.add_argument("store", metavar="STORE", help="the SQLite store")
    p.add_argument("--channels", default="", help="comma-separated channel names (all)")
    p.add_argument("--since", default=None, help="span back from the newest sample, e.g. 7d")
    p.add_argument("--until", default=None, help="end this far before the newest sample")
    p.add_argument("--table", default="raw", choices=("auto", "raw", "1m", "1h"))
    p.add_argument("--format", default=None, choices=("csv", "hdf5"),
                   help="default: from the --out suffix (.csv, .h5/.hdf5)")
    p.add_argument("--out", required=True, help="output file")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ionclock.errors import UserError
    from ionclock.storage.views import export

    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower()
        fmt = {".csv": "csv", ".h5": "hdf5", ".hdf5": "hdf5"}.get(suffix)
        if fmt is None:
            raise UserError(f"export: cannot tell the format from {args.out!r}; give --format")
    channels = [c for c in args.channels.split(",") if c] or None
    counts = export(args.store, channels, args.since, fmt, args.out, until=args.until,
                    table=args.table)
    print(f"wrote {args.out}: " + ", ".join(f"{c} {n} rows" for c, n in counts.items()))
    return 0
