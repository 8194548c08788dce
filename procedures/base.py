"""The pymeasure `Procedure` base of every characterisation measurement (issue 15; decision 0802).

A measurement is an `IonclockProcedure`: pymeasure `Parameter`s, ``startup()`` opening the
apparatus a clock config describes (`Apparatus`, through `ionclock.apparatus.registry`, the
twin when the resources are ``sim://``), ``execute()`` stepping it and emitting each data row
as it is taken (``emit('results', row)``), ``shutdown()`` leaving it safe
(`ionclock.apparatus.shutdown.safe_shutdown`: the trap RF untouched, coils held or ramped as
the config's ``[shutdown]`` says). ``DATA_COLUMNS`` are the columns of the measurement's
analysis (`ionclock.procedures.analysis`, each module's ``COLUMNS`` and ``OPTIONAL``), so the
pymeasure `Results` file is an analysis input as it stands (pymeasure's header lines start
with '#', which the analyses' reader skips).

The same class runs headless (`run_headless`: pymeasure's `Worker` and `Results`, as the GUI
uses them, with a progress callback) and in pymeasure's ``ManagedWindow`` unchanged.
`PROCEDURES` names them for ``ionclock measure NAME CONFIG``; a module registers its classes
with `register`.

Time: the apparatus has one SimPy environment. `Apparatus.wait` advances it: on the twin as
fast as it can (simulated seconds), in the lab on `simpy.rt.RealtimeEnvironment` (real
seconds); a procedure never reads the wall clock or sleeps itself.

Randomness: a procedure that draws (the twin's shots of a characterisation measurement) takes
its Generator from `Apparatus.rng`, ``default_rng([seed, 15, stream])``: its own stream, never
the clock world's, so that the Ca+ clock's results do not move.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import simpy
import simpy.rt
from pymeasure.experiment import IntegerParameter, Parameter, Procedure, Results, Worker

from ionclock import __version__
from ionclock.apparatus import registry
from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.shutdown import ShutdownPolicy, safe_shutdown
from ionclock.errors import UserError

#: The first element of every procedure stream's seed: issue 15's own streams.
STREAM_BASE = 15


def analysis_columns(module: Any) -> list[str]:
    """The CSV columns of an analysis module, required then optional (its ``COLUMNS``...)."""
    return [*module.COLUMNS, *getattr(module, "OPTIONAL", ())]


class ApparatusClock:
    """The clock of an apparatus a procedure steps: its SimPy environment ``env``."""

    env: Any

    @property
    def now(self) -> float:
        """The apparatus' clock (s): simulated on the twin, real in the lab."""
        return float(self.env.now)

    def wait(self, seconds: float) -> None:
        """Let `seconds` pass on the apparatus' clock (the twin's processes run meanwhile)."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"wait: {seconds!r} s must be >= 0")
        self.env.run(until=self.env.now + seconds)


class Apparatus(ApparatusClock):
    """The instruments of some roles of a clock config, on one SimPy environment.

    `roles`: the config's ``[instruments]`` roles the procedure talks to (each must be there);
    `optional`: roles opened when the config has them (the pattern generator). With any
    ``sim://`` resource in the config the world is the twin (`registry.make_world`, seeded by
    `seed` or the config's ``[twin] seed``) and time is simulated; else real time and no
    world.
    """

    def __init__(self, cfg: dict, roles: tuple[str, ...] = (), seed: int | None = None,
                 optional: tuple[str, ...] = ()):
        self.cfg = cfg
        inst = cfg["instruments"]
        missing = [r for r in roles if r not in inst]
        if missing:
            raise UserError(f"config: this measurement needs [instruments.{missing[0]}] "
                            f"(roles needed: {', '.join(roles)})")
        if seed is not None:
            cfg["twin"]["seed"] = int(seed)
        self.seed = int(cfg["twin"]["seed"])
        self.simulated = any(e["resource"].startswith("sim://") for e in inst.values())
        self.env = (simpy.Environment() if self.simulated
                    else simpy.rt.RealtimeEnvironment(factor=1.0, strict=False))
        self.world = (registry.make_world(self.env, cfg["twin"], cfg["servo"], inst)
                      if self.simulated else None)
        self.events: list[tuple[float, str, str, dict]] = []
        self.instruments: dict[str, Any] = {}
        try:
            for role in (*roles, *(r for r in optional if r in inst and r not in roles)):
                entry = inst[role]
                # a thermometer's locations, a pattern generator's wiring, as a run gives them
                twin_options = registry.twin_options(role, entry)
                options = ({"current_limit_a": entry["current_limit_a"],
                            "slew_a_per_s": entry["slew_a_per_s"]} if role == "coils" else {})
                self.instruments[role] = registry.open_instrument(
                    entry["model"], entry["resource"], world=self.world,
                    key=f"instruments.{role}", twin_options=twin_options, **options)
        except BaseException:
            self.close("error while opening")
            raise


    def rng(self, stream: int) -> np.random.Generator:
        """A Generator of this procedure's own: ``default_rng([seed, 15, stream])``."""
        return np.random.default_rng([self.seed, STREAM_BASE, int(stream)])

    def event(self, kind: str, source: str, **detail: Any) -> None:
        """Record something the procedure did to the apparatus (kept with the results)."""
        self.events.append((self.now, kind, source, detail))

    def characterisation(self) -> Any:
        """The twin's characterisation physics on this world (`registry.characterisation_twin`).

        In the lab there is none: the measurement needs pulse programs the lab's sequencer
        does not run yet, which is a `UserError`, never a silent substitute.
        """
        if self.world is None:
            raise UserError("this measurement runs on the twin only for now: the lab's "
                            "sequencer has no pulse program for it (decision 0802)")
        return registry.characterisation_twin(self.world, self.seed)

    def close(self, reason: str = "end") -> None:
        """Leave the instruments safe and release them (the config's ``[shutdown]``)."""
        if not self.instruments:
            return
        pol = self.cfg["shutdown"]
        policy = ShutdownPolicy(shutters=dict(pol["shutters"]), coils=pol["coils"])
        instruments, self.instruments = self.instruments, {}
        # a twin's coils ramp in simulated time; the lab's on the wall clock
        sleep = self.wait if self.simulated else time.sleep
        safe_shutdown(instruments, policy, sleep=sleep, reason=reason,
                      on_event=lambda t, kind, source, **d: self.events.append(
                          (t, kind, source, d)),
                      clock=lambda: self.now)


class IonclockProcedure(Procedure):
    """Base of the characterisation procedures (module docstring).

    Subclasses set ``NAME`` (the registry's and the analysis' name), ``ANALYSIS`` (the
    analysis module), ``ROLES`` (instruments opened at startup; ``OPTIONAL_ROLES`` too when
    the config has them), ``DATA_COLUMNS`` (usually `analysis_columns`), ``VERSION``, and
    implement `measure`, a generator of data rows (dicts over DATA_COLUMNS) that may also
    call `progress`.
    """

    NAME: ClassVar[str] = ""
    ANALYSIS: ClassVar[Any] = None
    ROLES: ClassVar[tuple[str, ...]] = ()
    OPTIONAL_ROLES: ClassVar[tuple[str, ...]] = ()
    VERSION: ClassVar[str] = "1"
    DATA_COLUMNS: ClassVar[list[str]] = []

    config = Parameter("Clock config", default="configs/sim.toml")
    seed = IntegerParameter("Twin seed (-1 for the config's)", default=-1, minimum=-1)

    def startup(self) -> None:
        """Load the clock config and open the apparatus (`Apparatus`)."""
        self.cfg = load_clock_config(self.config)
        self.apparatus = Apparatus(self.cfg, self.ROLES,
                                   seed=None if self.seed < 0 else self.seed,
                                   optional=self.OPTIONAL_ROLES)
        self.rows: list[dict] = []

    def execute(self) -> None:
        """Step the apparatus through `measure`, emitting each row as it comes."""
        for row in self.measure():
            missing = [c for c in self.DATA_COLUMNS if c not in row]
            if missing:
                raise ValueError(f"{self.NAME}: a row without {', '.join(missing)}")
            self.rows.append(row)
            self.emit("results", row)
            if self.should_stop():
                break

    def measure(self):
        """Yield the data rows; subclasses implement it."""
        raise NotImplementedError

    def progress(self, fraction: float) -> None:
        """Report progress, 0..1 (pymeasure's 'progress' topic is in per cent)."""
        self.emit("progress", 100.0 * min(max(fraction, 0.0), 1.0))

    def shutdown(self) -> None:
        """Leave the apparatus safe, whatever happened (`Apparatus.close`)."""
        apparatus = getattr(self, "apparatus", None)
        if apparatus is not None:
            apparatus.close("end" if self.status != Procedure.FAILED else "error")

    def truth(self) -> dict | None:
        """The twin's true value(s) this measurement estimates (None in the lab)."""
        return None

    #: The budget rows (`ionclock.physics.budget` row keys) whose numbers the result changes.
    BUDGET_ROWS: ClassVar[tuple[str, ...]] = ()

    def budget_values(self, result: Any) -> dict:
        """What the analysis `result` sets in the budget config: {section: {key: value}}."""
        raise NotImplementedError

    def summary(self, result: Any) -> str:
        """The result in a few words for the budget table (default: the first estimate)."""
        return result.estimates[0].text(4)

    def settings(self) -> dict:
        """The parameters as plain values (for the provenance of a result)."""
        return {name: getattr(self, name) for name in self.parameter_objects()}


PROCEDURES: dict[str, type[IonclockProcedure]] = {}


def procedures() -> dict[str, type[IonclockProcedure]]:
    """Every registered procedure: each module of this package is imported (and registers).

    A new measurement is a module here with an `IonclockProcedure` class under `register`;
    nothing else names it.
    """
    import importlib
    import pkgutil

    import ionclock.procedures as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("base", "analysis") and not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    return dict(PROCEDURES)


def register(cls: type[IonclockProcedure]) -> type[IonclockProcedure]:
    """Class decorator: put `cls` in `PROCEDURES` under its ``NAME``."""
    if not cls.NAME or cls.NAME in PROCEDURES and PROCEDURES[cls.NAME] is not cls:
        raise ValueError(f"procedure name {cls.NAME!r} is empty or taken")
    PROCEDURES[cls.NAME] = cls
    return cls


class MeasurementFailed(UserError):
    """The procedure stopped on an error; the message is the error's, on one line."""


class _HeadlessWorker(Worker):
    """pymeasure's Worker, with the progress passed on and the error kept (not only logged)."""

    def __init__(self, results: Results, on_progress: Callable[[float], None] | None):
        super().__init__(results)
        self.on_progress = on_progress
        self.error: BaseException | None = None

    def emit(self, topic: str, record: Any) -> None:
        super().emit(topic, record)
        if topic == "progress" and self.on_progress is not None:
            self.on_progress(float(record))

    def handle_error(self) -> None:
        self.error = sys.exc_info()[1]
        self.emit("error", traceback.format_exc())
        self.update_status(Procedure.FAILED)


def run_headless(procedure: IonclockProcedure, data_path: str | Path,
                 on_progress: Callable[[float], None] | None = None) -> Results:
    """Run `procedure` under pymeasure's `Worker` into a new `Results` file at `data_path`.

    Returns the `Results`. An error inside the procedure is raised here: a `UserError` as it
    is (one line at the CLI), anything else as `MeasurementFailed` naming its type, with the
    original chained. A file that exists already is refused (pymeasure would append to it).
    """
    path = Path(data_path)
    if path.exists():
        raise UserError(f"{str(path)!r} exists: a Results file is never appended to")
    path.parent.mkdir(parents=True, exist_ok=True)
    results = Results(procedure, str(path))
    worker = _HeadlessWorker(results, on_progress)
    worker.start()
    # Thread's own join: pymeasure's StoppableThread.join(timeout) stops the worker after it
    try:
        while worker.is_alive():
            threading.Thread.join(worker, 0.1)
    except KeyboardInterrupt:   # Ctrl-C: the procedure stops between rows, shuts down safely
        worker.stop()
        threading.Thread.join(worker)
        raise
    if worker.error is not None:
        err = worker.error
        if isinstance(err, UserError):
            raise err
        raise MeasurementFailed(f"{procedure.NAME}: {type(err).__name__}: {err}") from err
    if procedure.status != Procedure.FINISHED:
        raise MeasurementFailed(f"{procedure.NAME}: stopped before the end "
                                f"(status {procedure.status})")
    return results


def version_of(cls: type[IonclockProcedure]) -> str:
    """The procedure's version string: ``NAME/VERSION (ionclock X)``."""
    return f"{cls.NAME}/{cls.VERSION} (ionclock {__version__})"
