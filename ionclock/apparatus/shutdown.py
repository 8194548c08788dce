"""Safe shutdown: the state the clock leaves the apparatus in on SIGTERM, SIGINT or a normal end.

The ion outlives the software: a shutdown must never lose it (docs/decisions/
0701-safe-shutdown-leaves-the-ion-trapped.md). `safe_shutdown` therefore

- **RF sources** (trap RF, microwave synthesiser; anything with `output_enabled` that is not
  a coil supply): sends nothing at all, only releases the connection. Never output-off, and
  never a driver's ``shutdown()`` (pymeasure's `Agilent8257D.shutdown` switches the RF off);
- **coil supplies**: keep their currents (no step). With ``coils="ramp_down"`` each enabled
  channel is ramped to 0 A on the driver's own slew, then switched off;
- **shutters** (Thorlabs SC10): put in the configured state per role (``"closed"``, the
  default, ``"open"``, e.g. to keep the cooling beam on the ion, or ``"leave"``), through the
  driver's idempotent ``open()``/``close()``, then ``disconnect()`` (the SC10's
  ``close()`` is the shutter, docs/decisions/0301);
- **everything else**: releases the connection.

Every instrument is handled even when another fails; failures are collected in the report.
An offline `ResilientInstrument` is not touched (its state is unknown): only released. Waits
(coil ramps) go through the injected `sleep`; `shutdown_steps` is the same sequence as a
generator of delays for a SimPy process.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ionclock.apparatus.resilience import ResilientInstrument, release_connection, unwrap
from ionclock.storage.signal_guard import atomic

log = logging.getLogger(__name__)

SHUTTER_STATES = ("closed", "open", "leave")
COIL_MODES = ("hold", "ramp_down")
KINDS = ("rf", "coils", "shutter", "other")


@dataclass(frozen=True)
class ShutdownPolicy:
    """What to leave behind: shutter states per role, coil handling, kind overrides.

    shutters:
        Role -> ``"closed"``, ``"open"`` or ``"leave"``; roles not named get
        `default_shutter`.
    coils:
        ``"hold"`` (keep the currents; default) or ``"ramp_down"`` (ramp to 0 A, then off).
    kinds:
        Role -> ``"rf"``, ``"coils"``, ``"shutter"`` or ``"other"`` where the guess from the
        driver's shape (see `kind_of`) is not wanted.
    """

    shutters: Mapping[str, str] = field(default_factory=dict)
    default_shutter: str = "closed"
    coils: str = "hold"
    kinds: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for role, state in {**self.shutters, "default_shutter": self.default_shutter}.items():
            if state not in SHUTTER_STATES:
                raise ValueError(f"shutter state for {role!r} must be one of {SHUTTER_STATES},"
                                 f" got {state!r}")
        if self.coils not in COIL_MODES:
            raise ValueError(f"coils must be one of {COIL_MODES}, got {self.coils!r}")
        for role, kind in self.kinds.items():
            if kind not in KINDS:
                raise ValueError(f"kind of {role!r} must be one of {KINDS}, got {kind!r}")


@dataclass
class ShutdownReport:
    """What `safe_shutdown` did: per role, the actions taken and any error."""

    actions: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every instrument was handled without error."""
        return not self.errors


def _coil_channels(driver: Any) -> list[Any]:
    channels = getattr(driver, "channels", None)
    if not isinstance(channels, dict):
        return []
    return [ch for ch in channels.values()
            if callable(getattr(ch, "ramp", None)) and hasattr(type(ch), "current_setpoint")]


def kind_of(driver: Any) -> str:
    """Guess a driver's shutdown kind from its shape: shutter, coils, rf or other.

    A shutter has ``open``, ``close`` and ``disconnect``; a coil supply has channels with
    ``ramp`` and ``current_setpoint``; an RF source has ``output_enabled``.
    """
    if all(callable(getattr(driver, n, None)) for n in ("open", "close", "disconnect")):
        return "shutter"
    if _coil_channels(driver):
        return "coils"
    if hasattr(type(driver), "output_enabled"):
        return "rf"
    return "other"


def _ramp_down(driver: Any, note: Callable[[str], None]) -> Iterator[float]:
    for ch in _coil_channels(driver):
        if not ch.output_enabled:
            continue
        start = ch.current_setpoint
        yield from ch.ramp(0.0)
        ch.output_enabled = False
        note(f"ch {ch.id}: ramped {start:g} A -> 0 A, output off")


def shutdown_steps(instruments: Mapping[str, Any], policy: ShutdownPolicy,
                   report: ShutdownReport) -> Iterator[float]:
    """The shutdown as a generator of delays (s): shutters first, then coils, then release.

    Shutters go first so that the configured beams are set before anything slow happens.
    """
    kinds = {role: policy.kinds.get(role) or kind_of(unwrap(inst))
             for role, inst in instruments.items()}
    order = sorted(instruments, key=lambda r: ("shutter", "coils", "rf", "other").index(
        kinds[r]))
    for role in order:
        inst = instruments[role]
        notes = report.actions.setdefault(role, [])
        offline = isinstance(inst, ResilientInstrument) and not inst.online
        driver = unwrap(inst)
        kind = kinds[role]
        try:
            if offline:
                notes.append("offline: left as it is")
            elif kind == "shutter":
                state = policy.shutters.get(role, policy.default_shutter)
                if state == "closed":
                    driver.close()  # the SC10's close() is the shutter (decision 0301)
                elif state == "open":
                    driver.open()
                notes.append(f"shutter {state}")
            elif kind == "coils":
                if policy.coils == "ramp_down":
                    yield from _ramp_down(driver, notes.append)
                else:
                    notes.append("currents held")
            elif kind == "rf":
                notes.append("output untouched")
        except Exception as err:  # one instrument's failure must not stop the others
            report.errors[role] = f"{type(err).__name__}: {err}"
            log.error("shutdown of %s: %s", role, report.errors[role])
        finally:
            if isinstance(inst, ResilientInstrument):
                inst.disconnect()
            else:
                release_connection(driver)
            notes.append("connection released")


def safe_shutdown(instruments: Mapping[str, Any], policy: ShutdownPolicy | None = None, *,
                  sleep: Callable[[float], None] = time.sleep, reason: str = "end",
                  on_event: Callable[..., None] | None = None,
                  clock: Callable[[], float] = time.monotonic) -> ShutdownReport:
    """Leave `instruments` (role -> driver or wrapper) safe and release them; see the module.

    `sleep(s)` waits between coil ramp steps. `on_event(t, "shutdown", "shutdown", ...)`
    records what was done (`ionclock.storage.store.Store.event`).
    """
    policy = policy or ShutdownPolicy()
    report = ShutdownReport()
    for delay in shutdown_steps(instruments, policy, report):
        sleep(delay)
    if on_event is not None:
        on_event(clock(), "shutdown", "shutdown", reason=reason, actions=report.actions,
                 errors=report.errors)
    return report


class ShutdownRequested(SystemExit):
    """Raised in the main thread by SIGTERM/SIGINT inside `shutdown_on_signals`.

    Its exit status is 128 + the signal number (the shell's "killed by signal N"). The only
    argument is that status, so that a copy made by SimPy (which re-raises a process's
    exception as ``type(e)(*e.args)``) is the same request.
    """

    @classmethod
    def for_signal(cls, signum: int) -> ShutdownRequested:
        """The request for signal `signum`."""
        return cls(128 + signum)

    @property
    def signum(self) -> int:
        """The signal that asked for the shutdown."""
        return int(self.code) - 128


@contextmanager
def shutdown_on_signals(shutdown: Callable[[str], Any],
                        signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
    """Run ``shutdown(reason)`` once on leaving the block: normal end, error, SIGTERM or SIGINT.

    A signal raises `ShutdownRequested` (a `SystemExit` with status 128 + N) in the main
    thread, so the running loop unwinds through its ``finally`` blocks first. Further signals
    are ignored while `shutdown` runs (a second Ctrl-C must not cut a coil ramp short); the
    previous handlers are restored afterwards. Outside the main thread no handler is
    installed, and `shutdown` still runs on leaving the block.
    """
    main = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        def raise_now() -> None:
            raise ShutdownRequested.for_signal(signum)

        # Inside a store commit (ionclock.storage.signal_guard) the request waits for its end.
        atomic.hold_or_run(raise_now)

    if main:
        for sig in signals:
            previous[sig] = signal.signal(sig, handler)
    reason = "end"
    try:
        yield
    except ShutdownRequested as req:
        reason = signal.Signals(req.signum).name
        raise
    except BaseException as err:
        reason = f"error: {type(err).__name__}"
        raise
    finally:
        if main:
            for sig in signals:
                signal.signal(sig, signal.SIG_IGN)
        try:
            shutdown(reason)
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
