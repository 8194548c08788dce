"""`ionclock run CONFIG`: run a clock config in real time (the lab)."""

from __future__ import annotations

import sys
from contextlib import nullcontext

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.units import hms, parse_duration

DEFAULT_DURATION = "3650d"


def register(sub) -> None:
    p = sub.add_parser("run", help="run a clock config in real time (lab instruments)",
                       description="Open the configured instruments (pyvisa resources, "
                                   "pyserial URLs, or sim:// twins), ramp the field, and "
                                   "lock in real time until the duration ends or Ctrl-C.")
    p.add_argument("config", help="clock config (TOML)")
    p.add_argument("--duration", default=DEFAULT_DURATION,
                   help="how long to run (default: until ^C)")
    p.add_argument("--out", default="runs/lab", help="output folder")
    p.add_argument("--json", action="store_true", help="end with one JSON summary line")
    p.set_defaults(func=run)


def run(args) -> int:
    from ionclock.apparatus.clock_run import ClockRun, check_out_dir, dump_json, format_summary
    from ionclock.storage.store import WriterLock

    duration = parse_duration(args.duration)
    cfg = load_clock_config(args.config)
    out = check_out_dir(args.out)
    # one writer per store: a folder that exists may hold a running clock's store, refused
    # here before any instrument is opened; a new folder is made by the run (nothing is
    # created before the instruments are open), whose store takes the lock as it opens
    lock = WriterLock(out / cfg["run"]["store"]) if out.is_dir() else nullcontext()
    with lock:
        clock = ClockRun(cfg, out, realtime=True)
        # the instruments are open: say so, and where the record goes, before the long wait
        until = ("until Ctrl-C" if args.duration == DEFAULT_DURATION
                 else f"for {hms(duration)} (or until Ctrl-C)")
        print(f"ionclock run: {len(clock.instruments)} instruments open; running in real time "
              f"{until}, recording to {clock.store.path}", file=sys.stderr, flush=True)
        summary = clock.run(duration, progress=False)
    print(format_summary(summary))
    if args.json:
        print(dump_json(summary))
    return 0
