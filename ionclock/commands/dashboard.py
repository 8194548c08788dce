"""`ionclock dashboard STORE|RUN_DIR`: the store on a web page that updates itself.

    ionclock dashboard STORE|RUN_DIR [--config CFG] [--bind ADDR] [--port N] [--refresh S]

Serves on 127.0.0.1 unless told otherwise: ``--bind``, else ``[dashboard] bind`` of the
clock or logger config given with ``--config``, else loopback (the same for the port and the
refresh period). The store is only read (ionclock.dashboard, decision 1100); a file that is
not an ionclock store is refused with one line and exit status 2 before anything is served.
"""

from __future__ import annotations

import sys

from ionclock.commands import arg_type
from ionclock.units import parse_count, parse_finite


def register(sub) -> None:
    p = sub.add_parser(
        "dashboard", help="web page of a store: lock, lines, B, budget, temperatures, events",
        description="Serve a page of a clock run's or a logger's store that updates itself "
                    "every few seconds while the run or the logger writes it (read-only). "
                    "Loopback only unless --bind or the config's [dashboard] bind says "
                    "otherwise.")
    p.add_argument("store", metavar="STORE|RUN_DIR", help="the SQLite store, or a run's folder")
    p.add_argument("--config", help="a clock or logger config whose [dashboard] section "
                                    "(bind, port, refresh_s) to use")
    p.add_argument("--bind", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=arg_type(parse_count), help="TCP port (default 8050)")
    p.add_argument("--refresh", type=arg_type(parse_finite), metavar="S",
                   help="seconds between re-reads of the store (default 3)")
    p.set_defaults(func=run)


def settings(args) -> dict:
    """bind, port and refresh_s: the options, else the config's [dashboard], else defaults."""
    from ionclock.config import DASHBOARD_SCHEMA, check_kind, config_kind, load_toml, validate
    from ionclock.errors import ConfigError

    section: dict = {}
    if args.config:
        data = load_toml(args.config)
        if config_kind(data) not in ("clock", "logger"):
            check_kind(data, "clock", args.config)   # names the kind it is
            raise ConfigError(str(args.config), "not a clock or logger config")
        section = data.get("dashboard", {})
    out = validate(section, DASHBOARD_SCHEMA, "dashboard.")
    if args.bind is not None:
        out["bind"] = args.bind
    if args.port is not None:
        out["port"] = validate({"port": args.port}, DASHBOARD_SCHEMA, "--")["port"]
    if args.refresh is not None:
        out["refresh_s"] = validate({"refresh_s": args.refresh}, DASHBOARD_SCHEMA,
                                    "--")["refresh_s"]
    return out


def run(args) -> int:
    from ionclock.dashboard import resolve, serve

    opts = settings(args)
    store = resolve(args.store)

    def ready(url: str) -> None:
        print(f"ionclock dashboard: {store} on {url} (every {opts['refresh_s']:g} s; "
              "Ctrl-C stops)", flush=True)
        if opts["bind"] not in ("127.0.0.1", "localhost", "::1"):
            print(f"ionclock dashboard: served on {opts['bind']}: reachable from other "
                  "machines", file=sys.stderr, flush=True)

    serve(store, opts["bind"], opts["port"], opts["refresh_s"], on_ready=ready)
    return 0
