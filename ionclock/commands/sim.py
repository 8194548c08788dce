"""`ionclock sim`: run the digital twin of the clock as fast as it can."""

from __future__ import annotations

from pathlib import Path

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.commands import arg_type
from ionclock.units import parse_duration, parse_seed

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim.toml"


def register(sub) -> None:
    p = sub.add_parser("sim", help="run the simulated clock (twin) as fast as possible",
                       description="Run the twin of the clock: drivers -> twin -> servo -> "
                                   "store, with a progress bar; prints the lock summary.")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="clock config (TOML)")
    p.add_argument("--duration", default="6h", help="simulated time, e.g. 90s, 6h, 10d")
    p.add_argument("--seed", type=arg_type(parse_seed), default=None,
                   help="seed of every random source (an integer >= 0)")
    p.add_argument("--out", default="runs/latest", help="output folder (store, report)")
    p.add_argument("--scenario", default=None,
                   help="twin scenario: a name in configs/scenarios/ or a TOML path "
                        "(merged over --config)")
    p.add_argument("--deterministic", action="store_true",
                   help="expectation values instead of random outcomes (bias studies)")
    p.add_argument("--json", action="store_true", help="end with one JSON summary line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ionclock.apparatus.clock_run import ClockRun, check_out_dir, dump_json, format_summary
    from ionclock.storage.store import WriterLock

    duration = parse_duration(args.duration)
    from ionclock.apparatus.cd_run import is_cd_config

    if is_cd_config(args.config):   # [clock] species = "113Cd+" / "111Cd+"
        return _run_cd(args, duration)
    overrides = {"twin": {"deterministic": True}} if args.deterministic else None
    cfg = load_clock_config(args.config, scenario=args.scenario, overrides=overrides,
                            run_s=duration)
    for role, entry in cfg["instruments"].items():
        if not entry["resource"].startswith("sim://"):
            from ionclock.errors import ConfigError

            raise ConfigError(f"instruments.{role}.resource",
                              "`ionclock sim` runs the twin only (sim://MODEL); "
                              "use `ionclock run` for real instruments")
    out = check_out_dir(args.out)
    # one writer per store: refused here, before an earlier run's store is cleared
    with WriterLock(out / cfg["run"]["store"], create_dir=True):
        run_ = ClockRun(cfg, out, seed=args.seed)
        summary = run_.run(duration, progress=not args.no_progress)
    print(format_summary(summary))
    if args.json:
        print(dump_json(summary))
    return 0


def _run_cd(args, duration: float) -> int:
    """The 111/113Cd+ microwave clock's twin (`ionclock.apparatus.cd_run`)."""
    from ionclock.apparatus.cd_run import CdRun, format_cd_summary, load_cd_config
    from ionclock.apparatus.clock_run import check_out_dir, dump_json
    from ionclock.errors import UserError
    from ionclock.storage.store import WriterLock

    if args.scenario or args.deterministic:
        raise UserError("--scenario and --deterministic apply to the 40Ca+ clock, not the "
                        "Cd+ one")
    cfg = load_cd_config(args.config, run_s=duration)
    out = check_out_dir(args.out)
    with WriterLock(out / cfg["run"]["store"], create_dir=True):
        run_ = CdRun(cfg, out, seed=args.seed)
        summary = run_.run(duration, progress=not args.no_progress)
    print(format_cd_summary(summary))
    if args.json:
        print(dump_json(summary))
    return 0
