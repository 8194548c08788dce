"""`ionclock status STORE`: what is being logged, how fresh it is, what happened."""

from __future__ import annotations

from ionclock.commands import arg_type
from ionclock.units import parse_count


def register(sub) -> None:
    p = sub.add_parser("status", help="summary of a logger store (channels, ages, events)")
    p.add_argument("store", metavar="STORE", help="the SQLite store")
    p.add_argument("--events", type=arg_type(parse_count), default=10,
                   help="how many recent events to list")
    p.set_defaults(func=run)


def run(args) -> int:
    from ionclock.storage.views import status

    print(status(args.store, n_events=args.events))
    return 0
