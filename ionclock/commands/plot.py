"""`ionclock plot STORE`: the logged record as a PNG, LN2 refills marked (seed Fig. 1)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("plot", help="plot logged channels (refills and outages marked)",
                       description="Plot channels from a logger store. The raw table or a "
                                   "1-min/1-h rollup is chosen by the span.")
    p.add_argument("store", metavar="STORE", help="the SQLite store")
    p.add_argument("--channels", default="", help="comma-separated channel names (all)")
    p.add_argument("--since", default=None, help="span back from the newest sample, e.g. 7d")
    p.add_argument("--until", default=None, help="end this far before the newest sample")
    p.add_argument("--table", default="auto", choices=("auto", "raw", "1m", "1h"))
    p.add_argument("--title", default=None)
    p.add_argument("--out", required=True, help="output image (.png, .pdf, .svg)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ionclock.storage.views import plot

    channels = [c for c in args.channels.split(",") if c] or None
    info = plot(args.store, channels, args.since, args.out, until=args.until, table=args.table,
                title=args.title)
    print(f"wrote {info['out']}: {len(info['channels'])} channels, {info['points']} points "
          f"from the {'/'.join(info['tables'])} table, {info['refills']} refills marked")
    return 0
