"""Campaigns: many twin runs (cells x seeds) in parallel, resumable, with one report.

One twin run proves little; a servo or config change is judged over grids of seeds, offsets,
Q0 values and field steps, and a stated sigma by the distribution of z = offset / sigma over
many seeds. A campaign is such a grid, written as a spec (TOML, `load_spec`; see
configs/campaigns/), run by `run_campaign`:

- Every run is one `ClockRun` of the twin (the full stack, as ``ionclock sim``), in its own
  folder ``OUT/runs/CELL/sSEED`` with its own store, evaluated there by the report's own
  `summarise` (locked fraction, bias and its batch-means sigma, B error, ADEV/QPN, slips,
  silent wrong-lock frames) into ``summary.json``, written atomically (temp file, rename)
  after the store is closed.
- A run is done when its ``summary.json`` is complete, names the run's key (a hash of the
  validated config with its seed, the duration and the evaluation settings) and its store
  has the size the summary recorded. A campaign started again does only the runs not done;
  a killed run's partial store is cleared and run again (`fresh_store_path`).
- Runs go to dask.distributed: a `LocalCluster` of one-thread worker processes on this
  machine by default, or an existing cluster's scheduler (``tcp://HOST:PORT``); the out
  folder must then be on a filesystem the workers share, at the same path (checked after
  each run). Decision 1000.
- The report (`aggregate`, `write_report`): a table per cell (locked fraction, z, |dB|,
  ADEV/QPN at 100 s, slips, silent wrong-lock frames), the pooled z of the stochastic cells
  against N(0, 1) with a Kolmogorov-Smirnov test, and two figures.

A run's result does not depend on where it ran: the same seed gives the same summary on a
local worker and on a cluster's, but for the fields `VOLATILE` names (wall clock, speed,
paths, the worker); `comparable` drops them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ionclock import __version__, report
from ionclock.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "sim.toml"
SUMMARY_NAME = "summary.json"
RUNS_DIR = "runs"
REPORT_FILES = ("campaign.json", "report.txt", "z.png", "cells.png")

# Fields that differ between two executions of the same run: wall clock, speed, where, and
# the store file's size (the store commits every commit_interval_s of wall clock, so the
# pages its transactions leave depend on the machine's speed; its rows do not).
VOLATILE = frozenset({"wall_s", "cycles_per_second", "store", "files", "worker",
                      "store_bytes"})

CAMPAIGN_KEYS = {"name", "config", "scenario", "duration", "seeds", "first_seed",
                 "deterministic", "settle", "event_settle", "overrides"}
CELL_KEYS = {"name", "config", "scenario", "duration", "seeds", "first_seed", "deterministic",
             "overrides"}
SPEC_SECTIONS = {"campaign", "grid", "cells"}
_SAFE = re.compile(r"[^A-Za-z0-9._=+,-]")
# z of a run: bias / its batch-means standard error (report.BIAS_BATCHES batches), which is
# Student-t with BIAS_BATCHES - 1 degrees of freedom for a run without bias; N(0, 1) is its
# large-sample limit (and what the issue asks the z to be checked against).
Z_T_DOF = report.BIAS_BATCHES - 1
KS_MIN_RUNS = 5   # fewer z values per cell: no per-cell KS test


@dataclass(frozen=True)
class RunSpec:
    """One run of a campaign: a cell's validated config at one seed."""

    cell: str
    seed: int
    duration_s: float
    settle_s: float
    event_settle_s: float
    deterministic: bool
    cfg: dict = field(repr=False, compare=False)
    key: str = ""

    @property
    def folder(self) -> str:
        """The run's folder inside the campaign's out folder."""
        return f"{RUNS_DIR}/{self.cell}/s{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.cell} seed {self.seed}"


@dataclass
class Campaign:
    """The runs of one spec, in the spec's order, and where they go."""

    name: str
    out: Path
    runs: list[RunSpec]
    cells: list[str]
    spec_path: Path | None = None
    deterministic_cells: frozenset[str] = frozenset()


# --- the spec -------------------------------------------------------------------------------
def _check_keys(where: str, table: dict, allowed: set[str]) -> None:
    if not isinstance(table, dict):
        raise UserError(f"campaign: {where}: must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UserError(f"campaign: {where}.{unknown[0]}: unknown key "
                        f"(known: {', '.join(sorted(allowed))})")


def _seeds(where: str, seeds, first) -> list[int]:
    from ionclock.units import parse_seed

    if isinstance(seeds, bool) or not isinstance(seeds, (int, list)):
        raise UserError(f"campaign: {where}.seeds: give a count (e.g. 20) or a list of seeds")
    if isinstance(seeds, int):
        if seeds < 1:
            raise UserError(f"campaign: {where}.seeds: {seeds} must be at least 1")
        start = parse_seed(first)
        return list(range(start, start + seeds))
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise UserError(f"campaign: {where}.seeds: {s!r} is not an integer seed")
        out.append(parse_seed(s))
    if not out or len(set(out)) != len(out):
        raise UserError(f"campaign: {where}.seeds: give at least one seed, each once")
    return out


def _duration(where: str, text, allow_zero: bool = False) -> float:
    from ionclock.units import parse_duration

    if allow_zero and str(text).strip() in ("0", "0s", "0.0"):
        return 0.0
    try:
        return parse_duration(str(text))
    except UserError as err:
        raise UserError(f"campaign: {where}: {err}") from None


def _dotted(where: str, key: str, value) -> dict:
    """``"twin.q0_hz" = 15`` -> ``{"twin": {"q0_hz": 15}}``."""
    parts = key.split(".")
    if not all(parts):
        raise UserError(f"campaign: {where}: bad key {key!r} (use SECTION.KEY, e.g. twin.q0_hz)")
    out: dict = value
    for part in reversed(parts):
        out = {part: out}
    return out


def _label(key: str, value) -> str:
    v = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{key.split('.')[-1]}={v}"


def _grid_points(grid: dict) -> list[tuple[str, dict]]:
    """The grid's cartesian product: (label, overrides) per point, in the spec's order."""
    if not grid:
        return [("", {})]
    axes = []
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"campaign: grid.{key}: give a non-empty list of values")
        axes.append([(key, v) for v in values])
    points = []
    for combo in itertools.product(*axes):
        over: dict = {}
        for key, value in combo:
            from ionclock.config import merge

            over = merge(over, _dotted(f"grid.{key}", key, value))
        points.append((",".join(_label(k, v) for k, v in combo), over))
    return points


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of the suite's own source (every .py file of the ionclock namespace).

    A run made by other code (a servo fix, a twin change) is not the run the spec asks for
    now: its key differs, so a campaign started again redoes it instead of reporting the old
    code's figures as the new code's.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for folder in ("ionclock", "drivers", "servo", "sim_instruments", "procedures"):
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def run_key(cfg: dict, duration_s: float, settle_s: float, event_settle_s: float) -> str:
    """The identity of a run: what it computes, not where.

    A hash of the config, the settings and the code that computes it (`code_fingerprint`).
    """
    text = json.dumps({"cfg": cfg, "duration_s": duration_s, "settle_s": settle_s,
                       "event_settle_s": event_settle_s, "code": code_fingerprint()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def campaign_from_dict(spec: dict, base_dir: str | Path, out: str | Path,
                       name: str = "campaign", spec_path: Path | None = None) -> Campaign:
    """Build and check every run of a spec (the TOML's tables as a dict) before any runs.

    Relative paths (``config``, a scenario given as a ``.toml`` path) are taken from
    `base_dir`, the spec's folder. Each cell's config is loaded and validated here, with its
    scenario, overrides and duration (`load_clock_config`): a bad cell is one line, exit
    status 2, before anything has started.
    """
    from ionclock.apparatus.clock_config import load_clock_config
    from ionclock.config import merge

    _check_keys("spec", spec, SPEC_SECTIONS)
    base = dict(spec.get("campaign", {}))
    _check_keys("campaign", base, CAMPAIGN_KEYS)
    grid = spec.get("grid", {})
    if not isinstance(grid, dict):
        raise UserError("campaign: grid: must be a table of SECTION.KEY = [values]")
    cells = spec.get("cells", [{}])
    if not isinstance(cells, list) or not cells:
        raise UserError("campaign: cells: give an array of tables ([[cells]])")
    base_dir = Path(base_dir)
    settle_s = _duration("campaign.settle", base.get("settle", "10m"), allow_zero=True)
    event_settle_s = _duration("campaign.event_settle",
                               base.get("event_settle", f"{report.EVENT_SETTLE_S:g}s"),
                               allow_zero=True)
    points = _grid_points(grid)
    runs: list[RunSpec] = []
    names: list[str] = []
    det_cells = set()
    for i, cell in enumerate(cells):
        where = f"cells[{i}]"
        _check_keys(where, cell, CELL_KEYS)
        opt = {**{k: v for k, v in base.items() if k in CELL_KEYS - {"name"}}, **cell}
        config = Path(opt.get("config", DEFAULT_CONFIG))
        config = config if config.is_absolute() else base_dir / config
        scenario = opt.get("scenario")
        if scenario and str(scenario).endswith(".toml") and not Path(scenario).is_absolute():
            scenario = str(base_dir / scenario)
        duration_s = _duration(f"{where}.duration", opt.get("duration", "6h"))
        seeds = _seeds(where, opt.get("seeds", 1), opt.get("first_seed", 1))
        deterministic = opt.get("deterministic", False)
        if not isinstance(deterministic, bool):
            raise UserError(f"campaign: {where}.deterministic: true or false")
        overrides = merge(base.get("overrides", {}), cell.get("overrides", {}))
        if deterministic:
            overrides = merge(overrides, {"twin": {"deterministic": True}})
        stem = cell.get("name") or (Path(str(scenario)).stem if scenario else "base")
        for label, grid_over in points:
            cell_name = ",".join(x for x in (str(stem), label) if x)
            safe = _SAFE.sub("_", cell_name)
            if safe in names:
                raise UserError(f"campaign: {where}: cell {cell_name!r} twice (give each "
                                "[[cells]] its own name)")
            try:
                cfg = load_clock_config(config, scenario=scenario,
                                        overrides=merge(overrides, grid_over),
                                        run_s=duration_s)
            except UserError as err:
                raise UserError(f"campaign: cell {cell_name!r}: {err}") from None
            for role, entry in cfg["instruments"].items():
                if not entry["resource"].startswith("sim://"):
                    raise UserError(f"campaign: cell {cell_name!r}: instruments.{role}: a "
                                    "campaign runs the twin only (sim://MODEL)")
            names.append(safe)
            if deterministic:
                det_cells.add(safe)
            for seed in seeds:
                c = copy.deepcopy(cfg)
                c["twin"]["seed"] = seed
                runs.append(RunSpec(safe, seed, duration_s, settle_s, event_settle_s,
                                    deterministic, c,
                                    run_key(c, duration_s, settle_s, event_settle_s)))
    return Campaign(str(base.get("name", name)), Path(out).resolve(), runs, names, spec_path,
                    frozenset(det_cells))


def load_spec(path: str | Path, out: str | Path | None = None) -> Campaign:
    """A campaign spec file (TOML); `out` defaults to ``runs/campaigns/<spec name>``."""
    from ionclock.config import load_toml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"campaign: {str(path)!r}: no such spec file")
    try:
        spec = load_toml(p)
    except UserError as err:
        raise UserError(f"campaign: {err}") from None
    out = Path(out) if out is not None else Path("runs") / "campaigns" / p.stem
    return campaign_from_dict(spec, p.resolve().parent, out, name=p.stem, spec_path=p)


# --- one run --------------------------------------------------------------------------------
def _clean(obj):
    """JSON-ready: non-finite floats as None, numpy scalars as Python ones."""
    return json.loads(report.to_json(obj))


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write `obj` to `path` so that a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def z_of(rep: dict) -> float | None:
    """The z (bias over its sigma) of the run's evaluated frames (None when either is missing)."""
    b, s = rep.get("bias"), rep.get("bias_sigma")
    if b is None or s is None or not (math.isfinite(b) and math.isfinite(s)) or s <= 0:
        return None
    return float(b / s)


def execute_run(run: RunSpec, out: str) -> dict:
    """Run one campaign run where this is called (a worker), evaluate it, write its summary.

    Returns the summary written to ``OUT/<run.folder>/summary.json``. The store is taken
    under its writer lock (one writer per store: a second campaign, or a worker left over
    from a killed one, is refused rather than writing beside it).
    """
    from ionclock.apparatus.clock_run import ClockRun
    from ionclock.storage.store import WriterLock

    folder = Path(out) / run.folder
    summary_path = folder / SUMMARY_NAME
    wall0 = time.perf_counter()
    cfg = copy.deepcopy(run.cfg)
    store = folder / cfg["run"]["store"]
    with WriterLock(store, create_dir=True):
        summary_path.unlink(missing_ok=True)   # no older summary outlives a redone store
        clock = ClockRun(cfg, folder, seed=run.seed).run(run.duration_s, progress=False)
    if clock.get("interrupted"):
        raise RuntimeError(f"{run.label}: interrupted by {clock['interrupted']}")
    # read once the writer is gone: the reader then leaves no -wal/-shm beside the store
    data = report.load_run(store)
    rep, _ = report.summarise(data, run.settle_s, event_settle_s=run.event_settle_s)
    del data
    summary = _clean({
        "complete": True,
        "key": run.key,
        "cell": run.cell,
        "seed": run.seed,
        "duration_s": run.duration_s,
        "settle_s": run.settle_s,
        "event_settle_s": run.event_settle_s,
        "deterministic": run.deterministic,
        "version": __version__,
        "z": z_of(_clean(rep)),
        "clock": clock,
        "report": rep,
        "store_file": f"{run.folder}/{cfg['run']['store']}",
        "store_bytes": store.stat().st_size,
        "wall_s": time.perf_counter() - wall0,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    })
    write_json_atomic(summary_path, summary)
    return summary


def is_done(out: str | Path, run: RunSpec) -> dict | None:
    """The run's summary when the run is done (complete, same key, its store intact)."""
    path = Path(out) / run.folder / SUMMARY_NAME
    try:
        s = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(s, dict) or s.get("complete") is not True or s.get("key") != run.key:
        return None
    try:
        size = (Path(out) / s["store_file"]).stat().st_size
    except (KeyError, TypeError, OSError):
        return None
    return s if size == s.get("store_bytes") else None


def comparable(summary: dict) -> dict:
    """The summary without the fields that differ between executions (`VOLATILE`)."""
    if isinstance(summary, dict):
        return {k: comparable(v) for k, v in summary.items() if k not in VOLATILE}
    if isinstance(summary, list):
        return [comparable(v) for v in summary]
    return summary


# --- running --------------------------------------------------------------------------------
@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[tuple[object, str]]:
    """A dask.distributed Client: on `scheduler`'s cluster, or on a LocalCluster of this host.

    The local cluster has `workers` processes of one thread each: a twin run is pure Python
    and holds the GIL, so threads would share one core.
    """
    import distributed

    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as err:
            raise UserError(f"campaign: --scheduler {scheduler}: cannot connect "
                            f"({type(err).__name__}: {err})") from None
        try:
            n = len(client.scheduler_info().get("workers", {}))
            yield client, (f"Dask scheduler {scheduler}, {n} worker(s)"
                           + ("" if n else ": none yet, the runs wait for them"))
        finally:
            client.close()
        return
    # its own log at ERROR: a Ctrl-C otherwise ends in screens of warnings about the
    # cancelled tasks and the worker processes it stops; a run's failure is reported here
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
    try:
        client = distributed.Client(cluster)
        try:
            yield client, f"local Dask cluster, {workers} worker process(es)"
        finally:
            client.close()
    finally:
        cluster.close()


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


@dataclass
class Outcome:
    """What a campaign execution left: each run's summary or error, and what was redone."""

    summaries: dict[str, dict]
    failures: dict[str, str]
    ran: list[str]
    already_done: list[str]
    backend: str = ""
    wall_s: float = 0.0


def run_campaign(campaign: Campaign, scheduler: str | None = None,
                 workers: int | None = None, say: Callable[[str], None] = print,
                 progress: bool | None = None) -> Outcome:
    """Run every run of `campaign` not yet done, on Dask; return what each run gave.

    `say` gets the start line (``n done, m to run``), one line per finished run and the
    end; `progress` shows a bar over runs on a terminal (None: when stderr is one).
    """
    from distributed import as_completed

    from ionclock.progress import CountBar
    from ionclock.storage.store import StoreLocked, WriterLock

    out = campaign.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"campaign: --out: cannot create {str(out)!r}: {err.strerror}") from None
    try:
        lock = WriterLock(out / "campaign").acquire()
    except StoreLocked as err:
        raise UserError(f"campaign: {str(out)!r} is in use by another campaign ({err})") \
            from None
    wall0 = time.perf_counter()
    try:
        if campaign.spec_path is not None:
            shutil.copyfile(campaign.spec_path, out / "spec.toml")
        summaries, todo = {}, []
        for run in campaign.runs:
            s = is_done(out, run)
            if s is None:
                todo.append(run)
            else:
                summaries[run.folder] = s
        done_before = list(summaries)
        failures: dict[str, str] = {}
        ran: list[str] = []
        n = len(campaign.runs)
        head = (f"campaign {campaign.name}: {n} runs in {len(campaign.cells)} cell(s), "
                f"{len(done_before)} done, {len(todo)} to run")
        backend = ""
        if not todo:
            say(head)
        else:
            workers = workers or default_workers()
            with dask_client(scheduler, workers) as (client, backend):
                say(f"{head} ({backend}); out {out}")
                futures = {client.submit(execute_run, run, str(out), pure=False,
                                         key=f"ionclock-run-{run.cell}-s{run.seed}-"
                                             f"{uuid.uuid4().hex[:8]}"): run
                           for run in todo}
                bar = CountBar(n, f"campaign {campaign.name}", initial=len(done_before),
                               enabled=progress)
                try:
                    for fut in as_completed(futures):
                        run = futures[fut]
                        ran.append(run.folder)
                        try:
                            s = fut.result()
                        except Exception as err:   # one run's failure is a finding
                            failures[run.folder] = f"{type(err).__name__}: {err}"
                        else:
                            if is_done(out, run) is None:
                                failures[run.folder] = (
                                    f"finished on {s.get('worker')} but its summary or store "
                                    f"is not complete at {out / run.folder}: the out folder "
                                    "must be on a filesystem the workers share, at the same "
                                    "path")
                            else:
                                summaries[run.folder] = s
                        bar.update(1)
                        k = len(summaries) + len(failures)
                        state = failures.get(run.folder) or _run_line(summaries[run.folder])
                        bar.clear()
                        say(f"  [{k}/{n}] {run.label}: {state}")
                        bar.refresh()
                except BaseException:
                    bar.close()
                    say(f"campaign {campaign.name}: stopped with {len(summaries)} of {n} runs "
                        "done; the same command again runs the rest")
                    raise
                bar.close()
    finally:
        lock.release()
    return Outcome(summaries, failures, ran, done_before, backend,
                   time.perf_counter() - wall0)


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else format(v, spec)


def _run_line(s: dict) -> str:
    rep = s["report"]
    return (f"locked {s['clock']['locked_fraction']:.4f}, z {_fmt(s.get('z'), '+.2f')}, "
            f"slips {rep['slips']}, silent {rep['silent_wrong_lock_frames_after_settling']} "
            f"({s['wall_s']:.1f} s on {s['worker']})")


# --- the report -----------------------------------------------------------------------------
def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def _ks(z: list[float]) -> dict | None:
    """Kolmogorov-Smirnov of `z` against N(0, 1) and against Student-t (Z_T_DOF)."""
    from scipy import stats

    if len(z) < KS_MIN_RUNS:
        return None
    norm = stats.kstest(z, "norm")
    t = stats.kstest(z, "t", args=(Z_T_DOF,))
    return {"n": len(z), "statistic": float(norm.statistic), "pvalue": float(norm.pvalue),
            "t_dof": Z_T_DOF, "t_statistic": float(t.statistic), "t_pvalue": float(t.pvalue)}


def run_row(s: dict) -> dict:
    """One run's figures in the campaign table."""
    rep, clock = s["report"], s["clock"]
    b = rep.get("b_error_t")
    return {"cell": s["cell"], "seed": s["seed"], "z": s.get("z"),
            "locked_fraction": clock["locked_fraction"],
            "offset_hz": None if rep.get("bias") is None else rep["bias"] * rep["nu0_hz"],
            "offset_sigma_hz": (None if rep.get("bias_sigma") is None
                                else rep["bias_sigma"] * rep["nu0_hz"]),
            "abs_b_error_t": None if b is None else abs(b),
            "adev_over_qpn_100s": rep.get("adev_over_qpn", {}).get("100"),
            "slips": rep["slips"],
            "silent_frames": rep["silent_wrong_lock_frames_after_settling"],
            "wall_s": s.get("wall_s")}


def aggregate(campaign: Campaign, outcome: Outcome) -> dict:
    """Per-cell table, pooled z with its KS test, per-run rows, failures: JSON-ready."""
    cells = []
    rows_all = []
    for cell in campaign.cells:
        mine = [r for r in campaign.runs if r.cell == cell]
        rows = [run_row(outcome.summaries[r.folder]) for r in mine
                if r.folder in outcome.summaries]
        rows_all += rows
        z = [r["z"] for r in rows if r["z"] is not None]
        lf = [r["locked_fraction"] for r in rows]
        db = [r["abs_b_error_t"] for r in rows if r["abs_b_error_t"] is not None]
        aq = [r["adev_over_qpn_100s"] for r in rows if r["adev_over_qpn_100s"] is not None]
        silent = [r["silent_frames"] for r in rows if r["silent_frames"] is not None]
        cells.append({
            "cell": cell, "runs": len(mine), "done": len(rows),
            "failed": sum(1 for r in mine if r.folder in outcome.failures),
            "deterministic": cell in campaign.deterministic_cells,
            "locked_fraction_mean": _mean(lf), "locked_fraction_min": min(lf) if lf else None,
            "z_n": len(z), "z_mean": _mean(z),
            "z_std": float(np.std(z, ddof=1)) if len(z) > 1 else None,
            "ks": _ks(z),
            "abs_b_error_mean_t": _mean(db), "abs_b_error_max_t": max(db) if db else None,
            "adev_over_qpn_100s_mean": _mean(aq),
            "slips": sum(r["slips"] for r in rows),
            "silent_frames": sum(silent),
            "silent_runs": sum(1 for v in silent if v),
        })
    pooled = [r["z"] for r in rows_all
              if r["z"] is not None and r["cell"] not in campaign.deterministic_cells]
    return {
        "name": campaign.name,
        "out": str(campaign.out),
        "runs": len(campaign.runs),
        "done": len(outcome.summaries),
        "failed": len(outcome.failures),
        "ran_now": len(outcome.ran),
        "done_before": len(outcome.already_done),
        "cells": cells,
        "z": {"n": len(pooled), "mean": _mean(pooled),
              "std": float(np.std(pooled, ddof=1)) if len(pooled) > 1 else None,
              "beyond_2": (sum(1 for v in pooled if abs(v) > 2) / len(pooled)
                           if pooled else None),
              "ks": _ks(pooled),
              "excluded_cells": sorted(campaign.deterministic_cells)},
        "rows": rows_all,
        "failures": dict(sorted(outcome.failures.items())),
    }


def format_report(agg: dict) -> str:
    """The campaign report as text: one table row per cell, the pooled z, the failures."""
    head = (f"{'cell':<28} {'runs':>7} {'locked mean/min':>16} {'z mean':>7} {'z std':>6} "
            f"{'KS p':>6} {'|dB| mean/max (pT)':>19} {'ADEV/QPN@100s':>13} {'slips':>5} "
            f"{'silent (runs)':>13}")
    lines = [f"campaign {agg['name']}: {agg['done']}/{agg['runs']} runs done"
             + (f", {agg['failed']} failed" if agg["failed"] else "")
             + f" ({agg['done_before']} from before, {agg['ran_now']} run now)",
             "", head, "-" * len(head)]
    for c in agg["cells"]:
        lf = (f"{_fmt(c['locked_fraction_mean'], '.4f')}/"
              f"{_fmt(c['locked_fraction_min'], '.4f')}")
        db = (f"{_fmt(c['abs_b_error_mean_t'] and c['abs_b_error_mean_t'] * 1e12, '.2f')}/"
              f"{_fmt(c['abs_b_error_max_t'] and c['abs_b_error_max_t'] * 1e12, '.2f')}")
        ks = c["ks"]["pvalue"] if c["ks"] else None
        lines.append(
            f"{c['cell'][:28]:<28} {c['done']:>3}/{c['runs']:<3} {lf:>16} "
            f"{_fmt(c['z_mean'], '+.2f'):>7} {_fmt(c['z_std'], '.2f'):>6} "
            f"{_fmt(ks, '.3f'):>6} {db:>19} {_fmt(c['adev_over_qpn_100s_mean'], '.2f'):>13} "
            f"{c['slips']:>5} {c['silent_frames']:>6} ({c['silent_runs']})"
            + ("  deterministic" if c["deterministic"] else "")
            + (f"  {c['failed']} failed" if c["failed"] else ""))
    z = agg["z"]
    lines.append("")
    if z["ks"]:
        k = z["ks"]
        lines.append(
            f"z = offset/sigma over {z['n']} runs: mean {z['mean']:+.3f}, std {z['std']:.3f}, "
            f"|z| > 2 in {z['beyond_2']:.1%} (N(0,1): 4.6%); KS against N(0,1): "
            f"D = {k['statistic']:.3f}, p = {k['pvalue']:.3g}; against Student-t "
            f"({k['t_dof']} dof, batch means): D = {k['t_statistic']:.3f}, "
            f"p = {k['t_pvalue']:.3g}")
    else:
        lines.append(f"z = offset/sigma over {z['n']} runs: too few for a KS test "
                     f"(at least {KS_MIN_RUNS})")
    if z["excluded_cells"]:
        lines.append("  not pooled (deterministic: outcomes replaced by expectation values, "
                     "sigma is no noise): " + ", ".join(z["excluded_cells"]))
    for run, err in agg["failures"].items():
        lines.append(f"FAILED {run}: {err}")
    return "\n".join(lines)


def plot_z(agg: dict, path: Path) -> None:
    """Histogram and empirical CDF of the pooled z against N(0, 1)."""
    import matplotlib.pyplot as plt
    from scipy import stats

    z = np.sort([r["z"] for r in agg["rows"] if r["z"] is not None
                 and r["cell"] not in agg["z"]["excluded_cells"]])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.linspace(min(-4.0, *(z if len(z) else [0])), max(4.0, *(z if len(z) else [0])), 400)
    if len(z):
        ax1.hist(z, bins=max(5, min(40, int(np.sqrt(len(z))) * 2)), density=True,
                 alpha=0.6, label=f"{len(z)} runs")
        ax2.step(z, np.arange(1, len(z) + 1) / len(z), where="post", label="runs (ECDF)")
    ax1.plot(x, stats.norm.pdf(x), "k-", label="N(0, 1)")
    ax2.plot(x, stats.norm.cdf(x), "k-", label="N(0, 1)")
    ax1.set_xlabel("z = offset / sigma")
    ax1.set_ylabel("density")
    ax2.set_xlabel("z = offset / sigma")
    ax2.set_ylabel("cumulative fraction")
    ks = agg["z"]["ks"]
    fig.suptitle(f"campaign {agg['name']}: z of {len(z)} runs"
                 + (f"; KS against N(0,1): D = {ks['statistic']:.3f}, p = {ks['pvalue']:.3g}"
                    if ks else ""))
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cells(agg: dict, path: Path) -> None:
    """Per cell: each run's z and locked fraction (points), the cell's mean (bar)."""
    import matplotlib.pyplot as plt

    names = [c["cell"] for c in agg["cells"]]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6.0, 0.6 * len(names) + 3), 6),
                                   sharex=True)
    for i, name in enumerate(names):
        rows = [r for r in agg["rows"] if r["cell"] == name]
        jitter = np.linspace(-0.15, 0.15, len(rows)) if len(rows) > 1 else np.zeros(len(rows))
        z = [(i + j, r["z"]) for j, r in zip(jitter, rows) if r["z"] is not None]
        if z:
            ax1.plot(*zip(*z), "o", ms=3, color="tab:blue")
            ax1.plot([i - 0.3, i + 0.3], [np.mean([v for _, v in z])] * 2, "k-")
        lf = [(i + j, r["locked_fraction"]) for j, r in zip(jitter, rows)]
        if lf:
            ax2.plot(*zip(*lf), "o", ms=3, color="tab:green")
    for v, style in ((0, "-"), (1, ":"), (-1, ":"), (2, "--"), (-2, "--")):
        ax1.axhline(v, color="grey", ls=style, lw=0.8)
    ax1.set_ylabel("z = offset / sigma")
    ax2.set_ylabel("locked fraction")
    ax2.set_xticks(range(len(names)))
    ax2.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    fig.suptitle(f"campaign {agg['name']}: per cell")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(campaign: Campaign, outcome: Outcome) -> dict:
    """Aggregate, then write campaign.json, report.txt, z.png and cells.png into OUT."""
    import matplotlib

    matplotlib.use("Agg")
    agg = aggregate(campaign, outcome)
    out = campaign.out
    agg["files"] = [str(out / f) for f in REPORT_FILES]
    write_json_atomic(out / "campaign.json", _clean(agg))
    (out / "report.txt").write_text(format_report(agg) + "\n")
    plot_z(agg, out / "z.png")
    plot_cells(agg, out / "cells.png")
    return agg
