"""`ionclock log CONFIG`: the headless long-term logger (lab: real time; --simulate: twin)."""

from __future__ import annotations

import logging
import signal
import sys

from ionclock.commands import arg_type
from ionclock.units import parse_seed


def register(sub) -> None:
    p = sub.add_parser(
        "log", help="log instrument channels to the store, for months, unattended",
        description="Poll every configured channel at its own period into the SQLite store "
                    "(WAL, <= 1 s at risk), keep 1-min/1-h rollups, detect events, feed "
                    "InfluxDB/Prometheus. Stops cleanly on SIGTERM/SIGINT; restarting appends.")
    p.add_argument("config", metavar="CONFIG", help="logger config (TOML), see "
                                                     "configs/logger.example.toml")
    p.add_argument("--simulate", action="store_true",
                   help="run the twin world as fast as possible (simulated clock)")
    p.add_argument("--duration", default=None,
                   help="stop after this long (simulated time with --simulate), e.g. 30d")
    p.add_argument("--store", default=None, help="override [store] path")
    p.add_argument("--seed", type=arg_type(parse_seed), default=None,
                   help="override [simulate] seed (an integer >= 0)")
    p.add_argument("--witness", default=None,
                   help="diagnostics: append every sample to this text file before it is "
                        "buffered (crash tests compare it with the store)")
    p.add_argument("--quiet", action="store_true", help="warnings only (no progress bar)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (shown on a terminal for a --simulate --duration run)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ionclock.logger.poller import (
        Logger,
        load_config,
        make_environment,
        needs_world,
        resume_time,
        summary,
    )
    from ionclock.units import parse_duration

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    cfg = load_config(args.config, store=args.store)
    duration = parse_duration(args.duration) if args.duration else None
    if args.seed is not None:
        cfg.raw["simulate"]["seed"] = args.seed
    env = make_environment(args.simulate,
                           resume_time(cfg.store_path) if args.simulate else 0.0)
    world = None
    if args.simulate or needs_world(cfg):
        from ionclock.apparatus.registry import make_env_world

        world = make_env_world(env, cfg.raw["simulate"]["seed"], cfg.raw["simulate"]["cryostat"])
    witness = open(args.witness, "a", buffering=1) if args.witness else None  # noqa: SIM115
    logger = Logger(cfg, env, world=world, simulate=args.simulate, witness=witness)
    previous = {}

    def _stop(signum, frame):
        logger.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, _stop)
    try:
        logger.start()
        print(f"ionclock log: logging {len(cfg.channels)} channels to {cfg.store_path}",
              file=sys.stderr, flush=True)
        bar = None
        if args.simulate and duration is not None and not (args.quiet or args.no_progress):
            from ionclock.progress import SimTimeBar

            bar = SimTimeBar(duration, "log")   # on a terminal: simulated time, h:mm:ss
        try:
            logger.run(None if duration is None else env.now + duration,
                       progress=None if bar is None else bar.advance_to)
        finally:
            if bar is not None:
                bar.close()
    finally:
        logger.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if witness is not None:
            witness.close()
    print(summary(logger))
    return 0
