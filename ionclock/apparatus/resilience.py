"""Transport resilience: reconnect a lost instrument with bounded backoff and restore its setpoints.

`ResilientInstrument` wraps any driver the registry opens (``open_instrument(...,
resilient=True)``). Normal calls pass straight through: property gets and sets, method calls,
channels (``aom.ch_0.frequency = f``). When a call fails on the link (`LINK_ERRORS`: the
suite's `InstrumentTimeout`, pyvisa's `VisaIOError`, pyserial's `SerialException`, any
`ConnectionError`/`OSError` such as the twin's `LinkDown`):

1. the wrapper releases the connection (the adapter only: never the driver's ``close()``,
   which on the SC10 moves the shutter), records one ``instrument_offline`` event, and raises
   `InstrumentOffline` carrying ``retry_after_s``;
2. while offline, every call raises `InstrumentOffline` at once, without any I/O and without
   waiting: a SimPy process yields ``env.timeout(err.retry_after_s)`` and tries again
   (`until_online` does exactly that); a script sleeps. Waits are never taken inside the
   wrapper, so it never blocks a SimPy process;
3. the first call after the backoff reconnects (the registry's ``connect`` callable builds a
   fresh driver on a fresh adapter: for a twin, on the *same* twin object; for a pty, TCP or
   ser2net resource, a real OS reopen), checks it with ``ping()``, and re-applies the recorded
   setpoints. Restoring may itself take simulated time (a coil supply is brought back on a
   ramp, never a step): its delays are handed out as `InstrumentOffline` too. When all is
   restored the wrapper records ``instrument_online`` and the call goes through;
4. a failed reconnect doubles the wait, up to ``max_backoff_s`` (bounded: the lab wants the
   unit back whenever it returns, so retries never stop).

Time comes from the injected ``clock`` (``env.now`` for a twin, ``time.monotonic`` in the lab).

What is restored (docs/decisions/0700-resilience-record-and-replay.md): every successful
property set through the wrapper is recorded (last value per property and channel), plus the
calls of state-changing methods (`RestoreSpec.actions`; by default any ``configure*`` /
``set_*`` method). A set that failed on the link is recorded too (it is the caller's latest
intent). On reconnect the records are replayed in the order they were last made; per model,
`RESTORE_SPECS` may merge names into one slot (the SC10's ``open``/``close``), or replace the
replay (coil supplies fold their records into a target and ramp to it). A replayed record the
unit rejects (``ValueError`` / `InstrumentError`) is dropped and reported in the online event.

Device error replies (`InstrumentError`) propagate unchanged: the link works. A garbled reply
(`ReplyError`) propagates too, after the input buffer is flushed; ``max_reply_errors`` of them
in a row (default 3) mean the unit has lost the plot (e.g. power-cycled behind a live link)
and it is treated as lost.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from inspect import getattr_static
from typing import Any

import serial
import simpy
from pymeasure.instruments import Channel
from pyvisa.errors import InvalidSession, VisaIOError

from ionclock.drivers.common import TERMIOS_ERRORS
from ionclock.errors import (
    InstrumentError,
    InstrumentTimeout,
    IonclockError,
    ReplyError,
)

log = logging.getLogger(__name__)

LINK_ERRORS: tuple[type[BaseException], ...] = (
    InstrumentTimeout, TimeoutError, ConnectionError, serial.SerialException, OSError,
    VisaIOError, InvalidSession, *TERMIOS_ERRORS)
"""Exceptions that mean "the link is down or the unit does not answer" (go offline)."""

_RECONNECT_ERRORS: tuple[type[BaseException], ...] = LINK_ERRORS + (IonclockError,)
# While reconnecting, a unit that is still powering up may answer garbage or refuse its first
# command: any suite error there means "not back yet", not a bug.


class InstrumentOffline(IonclockError, ConnectionError):
    """The instrument is offline; try again after `retry_after_s` seconds (on the run's clock).

    Raised immediately, without I/O, by every call on an offline `ResilientInstrument`.
    """

    def __init__(self, instrument: str, retry_after_s: float, reason: str = "offline"):
        self.instrument = instrument
        self.retry_after_s = retry_after_s
        self.reason = reason
        super().__init__(f"{instrument}: {reason}; retry in {retry_after_s:.3g} s")


# --- what to restore -------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """One recorded setpoint: a property set (``kind='set'``) or a method call (``'call'``)."""

    seq: int
    path: tuple[str, ...]
    kind: str
    name: str
    args: tuple
    kwargs: Mapping[str, Any]  # read-only

    @property
    def value(self) -> Any:
        """The value of a property set (the first argument of a call)."""
        return self.args[0] if self.args else None


_NO_KWARGS: Mapping[str, Any] = types.MappingProxyType({})

Resolver = Callable[[tuple[str, ...]], Any]
Restorer = Callable[[Resolver, list[Record]], Iterator[float]]


def _is_default_action(name: str) -> bool:
    return name.startswith(("configure", "set_"))


@dataclass(frozen=True)
class RestoreSpec:
    """Per-model rules for what the wrapper records and how it restores it.

    actions:
        Method name -> slot name of the state-changing methods whose calls are recorded;
        ``None`` as slot keys the record by the call's arguments (each distinct call kept).
        Methods named ``configure*`` and ``set_*`` are recorded that way by default.
    aliases:
        Property name -> slot, for names that set the same state (``phase_rad`` -> ``phase``).
    restore:
        Replaces the default replay: ``restore(resolve, records)`` is a generator performing
        the restore on the fresh driver and yielding the delays (s) it needs between steps.
    """

    actions: Mapping[str, str | None] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    restore: Restorer | None = None
    default_actions: bool = True

    def action_slot(self, name: str) -> tuple[bool, str | None]:
        """(recorded?, slot) for a method `name`."""
        if name in self.actions:
            return True, self.actions[name]
        if self.default_actions and _is_default_action(name):
            return True, None
        return False, None


def replay(resolve: Resolver, records: list[Record]) -> Iterator[float]:
    """Default restore: re-apply each record in order; a generator a method returns is run."""
    for rec in records:
        target = resolve(rec.path)
        if rec.kind == "set":
            setattr(target, rec.name, rec.args[0])
            continue
        result = getattr(target, rec.name)(*rec.args, **rec.kwargs)
        if isinstance(result, types.GeneratorType):
            yield from result


def restore_coils(resolve: Resolver, records: list[Record]) -> Iterator[float]:
    """Coil supplies: fold the records into (compliance, current, output) per channel, then ramp.

    The current is never stepped (docs/decisions/0102-coil-current-safety.md): an output that
    must come on does so at 0 A and ramps to the target; one that must go off ramps down first.
    Records of other names are replayed as usual, before the coils.
    """
    coil_names = {"voltage_setpoint", "current_setpoint", "output_enabled", "ramp", "ramp_to",
                  "ramp_down_and_disable"}
    want: dict[tuple[str, ...], dict[str, Any]] = {}
    others = []
    for rec in records:
        if rec.name not in coil_names:
            others.append(rec)
            continue
        w = want.setdefault(rec.path, {})
        if rec.name == "voltage_setpoint":
            w["volt"] = rec.value
        elif rec.name in ("current_setpoint", "ramp", "ramp_to"):
            w["amps"] = rec.value
        elif rec.name == "output_enabled":
            w["on"] = bool(rec.value)
        else:  # ramp_down_and_disable
            w["amps"], w["on"] = 0.0, False
    yield from replay(resolve, others)
    for path, w in want.items():
        ch = resolve(path)
        if "volt" in w:
            ch.voltage_setpoint = w["volt"]
        on_now = ch.output_enabled
        amps_now = ch.current_setpoint  # also primes the driver's step check
        want_on = w.get("on", on_now)
        target = w.get("amps", amps_now)
        if on_now and not want_on:
            yield from ch.ramp(0.0)
            ch.output_enabled = False
        elif want_on and not on_now:
            if amps_now > 0.0:
                yield from ch.ramp(0.0)  # output off: harmless, and the driver checks steps
            ch.output_enabled = True
        yield from ch.ramp(target)


RESTORE_SPECS: Mapping[str, RestoreSpec] = types.MappingProxyType({
    "novatech409b": RestoreSpec(actions={"apply": "apply"}, aliases={"phase_rad": "phase"}),
    "sr400": RestoreSpec(actions={"configure_gated": "configure", "arm": "run",
                                  "start": "run", "stop": "run"}),
    "sc10": RestoreSpec(actions={"open": "shutter", "close": "shutter"}),
    "keysight_e36312a": RestoreSpec(
        actions={"ramp": "current", "ramp_to": "current", "ramp_down_and_disable": "current"},
        aliases={"current_setpoint": "current"}, restore=restore_coils),
    "rigol_dp832": RestoreSpec(
        actions={"ramp": "current", "ramp_to": "current", "ramp_down_and_disable": "current",
                 "enable_overcurrent_protection": "ocp"},
        aliases={"current_setpoint": "current"}, restore=restore_coils),
    "sg380": RestoreSpec(aliases={"amplitude_vrms": "amplitude_dbm"}),
    "microwave_8257d": RestoreSpec(actions={"enable": "output_enabled",
                                            "disable": "output_enabled",
                                            "tune_to_hfs": "frequency"},
                                   aliases={"power": "power_dbm"}),
})
"""Restore rules of the models that need more than the default (see `RestoreSpec`)."""

DEFAULT_SPEC = RestoreSpec()


# --- helpers ---------------------------------------------------------------------------------
def release_connection(driver: Any) -> None:
    """Release `driver`'s connection only (never its ``close()``: on the SC10 that is the shutter).

    Errors while releasing a dead link are logged and ignored.
    """
    adapter = getattr(driver, "adapter", None)
    closer = getattr(adapter, "close", None) if adapter is not None else None
    if closer is None:
        closer = getattr(driver, "disconnect", None) or getattr(driver, "close", None)
    if closer is None:
        return
    try:
        closer()
    except Exception as err:  # a dead link may fail to close in any way
        log.debug("releasing %r: %s: %s", driver, type(err).__name__, err)


def unwrap(instrument: Any) -> Any:
    """The driver behind `instrument` (itself when it is not a `ResilientInstrument`)."""
    if isinstance(instrument, ResilientInstrument):
        return instrument.driver
    return instrument


def until_online(env: Any, call: Callable[..., Any], *args: Any, **kwargs: Any):
    """Call ``fn(*args, **kwargs)`` from a SimPy process until the instrument is online.

    Use as ``result = yield from until_online(env, fn, *args)``: while `call` raises
    `InstrumentOffline`, yields ``env.timeout(retry_after_s)`` and tries again; returns its
    result. For a property set:
    ``yield from until_online(env, setattr, aom.ch_0, "frequency", f)``.
    """
    while True:
        try:
            return call(*args, **kwargs)
        except InstrumentOffline as off:
            yield env.timeout(off.retry_after_s)


def watch_links(env: Any, instruments: list, period_s: float = 2.0):
    """SimPy process: keep units that no loop talks to often connected and restored.

    Pings each `ResilientInstrument` every `period_s` (a failed ping takes it offline: one
    ``instrument_offline`` event); an offline one is pinged again when its backoff is over,
    which reconnects it and restores its setpoints step by step (a coil supply on its ramp),
    until ``instrument_online``. Ends when interrupted.
    """
    while True:
        wait = period_s
        for inst in instruments:
            if isinstance(inst, ResilientInstrument) and not inst.ping():
                wait = min(wait, max(inst.retry_after_s, 1e-3))
        try:
            yield env.timeout(wait)
        except simpy.Interrupt:
            return


_DATA, _METHOD, _CHANNEL, _PLAIN = range(4)


def _classify(target: Any, name: str) -> int:
    static = getattr_static(target, name, None)
    if isinstance(static, (types.FunctionType, staticmethod, classmethod)):
        return _METHOD
    if hasattr(type(static), "__get__"):  # a property or another descriptor: may do I/O
        return _DATA
    value = getattr(target, name)
    if isinstance(value, Channel):
        return _CHANNEL
    if callable(value):
        return _METHOD
    return _PLAIN


# --- the wrapper -----------------------------------------------------------------------------
class _Node:
    """Attribute access on one object of the driver tree (the driver or one of its channels)."""

    def __init__(self, root: ResilientInstrument, path: tuple[str, ...]):
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_path", path)
        # property name -> record key; filled lazily
        object.__setattr__(self, "_slots", {})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        root = self._root
        target = root._targets[self._path]
        kind = root._kind(target, name)
        if kind == _DATA:
            if not root._ok:
                root._gate()
                target = root._targets[self._path]
            try:
                value = getattr(target, name)
            except InstrumentOffline:
                raise
            except ReplyError as err:
                root._reply_error(err)
                raise
            except LINK_ERRORS as err:
                root._lost(err)
            if root._garbled:
                object.__setattr__(root, "_garbled", 0)
            return value
        if kind == _METHOD:
            method = root._method(self._path, name)
            object.__setattr__(self, name, method)  # next time: no __getattr__ at all
            return method
        if kind == _CHANNEL:
            node = root._node(self._path + (name,))
            object.__setattr__(self, name, node)
            return node
        return getattr(target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        root = self._root
        if not root._ok:
            root._gate()
        path = self._path
        try:
            setattr(root._targets[path], name, value)
        except InstrumentOffline:
            raise
        except ReplyError as err:
            root._reply_error(err)
            raise
        except LINK_ERRORS as err:
            root._record_set(path, name, value)
            root._lost(err)
        if root._garbled:
            object.__setattr__(root, "_garbled", 0)
        # Inline record (hot path): one dict store keyed by (path, slot).
        key = self._slots.get(name)
        if key is None:
            key = self._slots[name] = (path, root._spec.aliases.get(name, name))
        root._records[key] = (next(root._seq), path, "set", name, (value,), _NO_KWARGS)

    def direct(self) -> Any:
        """The driver object behind this node, for a caller's per-cycle hot path.

        Calls made on it bypass this wrapper: no setpoint is recorded, and a lost link is not
        noticed here. Use it only for calls the caller repeats every cycle anyway and makes
        through the wrapper again once such a call has failed (the clock servo does: its
        holdover goes through the wrapper, which reconnects and restores). The object changes
        on a reconnect: ask again afterwards.
        """
        root = self._root
        if not root._ok:
            root._gate()
        return root._targets[self._path]

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._root._targets[self._path])))

    def __repr__(self) -> str:
        return f"<resilient {self._root.source}{''.join('.' + p for p in self._path)}>"


class ResilientInstrument(_Node):
    """A driver that survives a lost link: see the module docstring.

    Parameters
    ----------
    driver:
        The connected driver (already checked by whoever opened it).
    connect:
        Builds a fresh, connected driver of the same kind (the registry passes one that
        keeps the twin / the resource).
    source:
        The instrument's name in events and `InstrumentOffline` (default: the driver's
        ``name``; the registry passes the config key or the model).
    clock:
        Seconds on the run's clock (``lambda: env.now`` for a twin, `time.monotonic` in the
        lab).
    on_event:
        Called as ``on_event(t, kind, source, **detail)`` (`ionclock.storage.store.Store.event`).
    spec:
        What to record and how to restore it (default: `RESTORE_SPECS` of `model`).
    initial_backoff_s, backoff_factor, max_backoff_s:
        The k-th failed attempt in a row waits ``min(max, initial * factor**(k-1))`` s.
    max_reply_errors:
        After this many garbled replies (`ReplyError`) in a row the unit is treated as lost
        (0: never). Each one flushes the input buffer first, so that a stale line cannot pass
        for an answer: a unit power-cycled behind a live link (the 409B echoing again) is
        then caught and restarted.
    """

    def __init__(self, driver: Any, connect: Callable[[], Any], *, source: str | None = None,
                 model: str | None = None, clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[..., None] | None = None, spec: RestoreSpec | None = None,
                 initial_backoff_s: float = 1.0, backoff_factor: float = 2.0,
                 max_backoff_s: float = 60.0, max_reply_errors: int = 3):
        if not (isinstance(max_reply_errors, int) and max_reply_errors >= 0):
            raise ValueError(f"max_reply_errors must be an int >= 0, got {max_reply_errors!r}")
        for what, v in (("initial_backoff_s", initial_backoff_s),
                        ("max_backoff_s", max_backoff_s)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{what} must be a positive number of seconds, got {v!r}")
        if not (isinstance(backoff_factor, (int, float)) and 1.0 <= backoff_factor < math.inf):
            raise ValueError(f"backoff_factor must be >= 1, got {backoff_factor!r}")
        if max_backoff_s < initial_backoff_s:
            raise ValueError("max_backoff_s must be >= initial_backoff_s")
        super().__init__(self, ())
        s = object.__setattr__
        s(self, "source", source or getattr(driver, "name", type(driver).__name__))
        s(self, "model", model)
        s(self, "_connect", connect)
        s(self, "_clock", clock)
        s(self, "_on_event", on_event)
        s(self, "_spec", spec or RESTORE_SPECS.get(model or "", DEFAULT_SPEC))
        s(self, "_backoff", (float(initial_backoff_s), float(backoff_factor),
                             float(max_backoff_s)))
        s(self, "_records", {})
        s(self, "_seq", itertools.count())
        s(self, "_kinds", {})
        s(self, "_methods", {})
        s(self, "_nodes", {})
        s(self, "_ok", True)
        s(self, "_closed", False)
        s(self, "_failures", 0)
        s(self, "_next_try", -math.inf)
        s(self, "_offline_since", None)
        s(self, "_last_error", "")
        s(self, "_restoring", None)
        s(self, "_rejected", [])
        s(self, "_garbled", 0)
        s(self, "_max_garbled", max_reply_errors)
        s(self, "offline_count", 0)
        self._attach(driver)

    # --- public state --------------------------------------------------------------------
    @property
    def driver(self) -> Any:
        """The driver currently behind the wrapper (replaced on every reconnect)."""
        return self._targets[()]

    @property
    def online(self) -> bool:
        """True when connected and restored (calls pass straight through)."""
        return self._ok

    @property
    def retry_after_s(self) -> float:
        """Seconds until the next reconnect attempt (0 when online or due)."""
        if self._ok:
            return 0.0
        return max(0.0, self._next_try - self._clock())

    @property
    def setpoints(self) -> list[Record]:
        """The recorded setpoints, in the order they will be re-applied."""
        return [Record(*r) for r in sorted(self._records.values())]

    # --- public actions ------------------------------------------------------------------
    def ping(self) -> bool:
        """Return True when the unit answers; offline: try to reconnect if the backoff is over.

        A failed ping of an online unit takes it offline (one ``instrument_offline`` event).
        """
        if self._closed:
            return False
        if not self._ok:
            try:
                self._gate()
            except InstrumentOffline:
                return False
            return True
        try:
            alive = bool(self.driver.ping())
        except LINK_ERRORS as err:
            alive, why = False, err
        else:
            why = ConnectionError("no answer to ping()")
        if not alive:
            try:
                self._lost(why)
            except InstrumentOffline:
                pass
        return alive

    def reconnect(self) -> bool:
        """Try to reconnect now, ignoring the backoff; return True when back online."""
        if self._ok or self._closed:
            return self._ok
        object.__setattr__(self, "_next_try", self._clock())
        try:
            self._gate()
        except InstrumentOffline:
            return False
        return True

    def disconnect(self) -> None:
        """Release the connection for good (no more reconnects); the unit stays as it is."""
        object.__setattr__(self, "_closed", True)
        object.__setattr__(self, "_ok", False)
        release_connection(self.driver)

    def close(self) -> None:
        """Release the connection for good, like a driver's ``close()``.

        Except on a unit whose ``close()`` is an action (the SC10 shutter: see its
        ``disconnect()``): there it is that action, passed through and recorded.
        """
        if callable(getattr(self.driver, "disconnect", None)):
            self._method((), "close")()
            return
        self.disconnect()

    # --- internals -----------------------------------------------------------------------
    def _attach(self, driver: Any) -> None:
        targets = {(): driver}
        for path in self._nodes:
            obj = driver
            for part in path:
                obj = getattr(obj, part)
            targets[path] = obj
        object.__setattr__(self, "_targets", targets)

    def _resolve(self, path: tuple[str, ...]) -> Any:
        obj = self._targets[()]
        for part in path:
            obj = getattr(obj, part)
        return obj

    def _node(self, path: tuple[str, ...]) -> _Node:
        node = self._nodes.get(path)
        if node is None:
            node = self._nodes[path] = _Node(self, path)
            self._targets[path] = self._resolve(path)
        return node

    def _kind(self, target: Any, name: str) -> int:
        key = (type(target), name)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _classify(target, name)
        return kind

    def _method(self, path: tuple[str, ...], name: str) -> Callable[..., Any]:
        method = self._methods.get((path, name))
        if method is not None:
            return method
        recorded, slot = self._spec.action_slot(name)
        root = self

        def call(*args: Any, **kwargs: Any) -> Any:
            if not root._ok:
                root._gate()
            try:
                result = getattr(root._targets[path], name)(*args, **kwargs)
            except InstrumentOffline:
                raise
            except ReplyError as err:
                root._reply_error(err)
                raise
            except LINK_ERRORS as err:
                if recorded:
                    root._record_call(path, name, slot, args, kwargs)
                root._lost(err)
            if root._garbled:
                object.__setattr__(root, "_garbled", 0)
            if recorded:
                root._record_call(path, name, slot, args, kwargs)
            if isinstance(result, types.GeneratorType):
                return root._guard(result)
            if isinstance(result, Channel):
                return root._wrap_channel(path, result)
            return result

        call.__name__ = name
        call.__doc__ = getattr(getattr(self._targets[path], name, None), "__doc__", None)
        self._methods[(path, name)] = call
        return call

    def _wrap_channel(self, path: tuple[str, ...], channel: Channel) -> Any:
        parent = self._targets[path]
        for attr, value in vars(parent).items():
            if value is channel:
                return self._node(path + (attr,))
        return channel

    def _guard(self, gen: Iterator[float]) -> Iterator[float]:
        while True:
            try:
                delay = next(gen)
            except StopIteration:
                return
            except InstrumentOffline:
                raise
            except ReplyError as err:
                self._reply_error(err)
                raise
            except LINK_ERRORS as err:
                self._lost(err)
            yield delay

    def _record_set(self, path: tuple[str, ...], name: str, value: Any) -> None:
        slot = self._spec.aliases.get(name, name)
        self._records[(path, slot)] = (next(self._seq), path, "set", name, (value,), _NO_KWARGS)

    def _record_call(self, path: tuple[str, ...], name: str, slot: str | None, args: tuple,
                     kwargs: dict) -> None:
        key = (path, slot) if slot is not None else (path, name, repr((args, sorted(
            kwargs.items()))))
        self._records[key] = (next(self._seq), path, "call", name, args,
                              types.MappingProxyType(dict(kwargs)))

    def _reply_error(self, err: ReplyError) -> None:
        """Count a garbled reply (stream resynchronised); go offline after too many in a row."""
        flush = getattr(getattr(self.driver, "adapter", None), "flush_read_buffer", None)
        if flush is not None:
            try:
                flush()
            except LINK_ERRORS as link_err:
                self._lost(link_err)
        object.__setattr__(self, "_garbled", self._garbled + 1)
        if self._max_garbled and self._garbled >= self._max_garbled:
            object.__setattr__(self, "_garbled", 0)
            self._lost(err)

    def _delay(self) -> float:
        initial, factor, cap = self._backoff
        return min(cap, initial * factor ** min(self._failures - 1, 64))

    def _lost(self, err: BaseException) -> None:
        """Go offline after `err` on the link: release, record the event, raise."""
        now = self._clock()
        release_connection(self.driver)
        s = object.__setattr__
        s(self, "_ok", False)
        s(self, "_restoring", None)
        s(self, "_garbled", 0)
        s(self, "_failures", 1)
        s(self, "_offline_since", now)
        s(self, "_last_error", f"{type(err).__name__}: {err}")
        s(self, "offline_count", self.offline_count + 1)
        delay = self._delay()
        s(self, "_next_try", now + delay)
        log.warning("%s offline: %s", self.source, self._last_error)
        self._event(now, "instrument_offline", error=self._last_error, retry_after_s=delay)
        raise InstrumentOffline(self.source, delay, f"offline ({self._last_error})") from err

    def _gate(self) -> None:
        """Called when not online: raise `InstrumentOffline`, or reconnect and restore."""
        if self._closed:
            raise InstrumentError(self.source, "connection released (disconnect() was called)")
        now = self._clock()
        if now < self._next_try:
            raise InstrumentOffline(self.source, self._next_try - now,
                                    "restoring" if self._restoring else "offline")
        s = object.__setattr__
        if self._restoring is None:
            try:
                release_connection(self.driver)
                driver = self._connect()
                self._attach(driver)
                if not driver.ping():
                    raise ConnectionError("no answer to ping() after reconnect")
            except _RECONNECT_ERRORS as err:
                self._retry_later(now, err)
            s(self, "_rejected", [])
            s(self, "_restoring", self._restore_steps())
        try:
            delay = next(self._restoring)
        except StopIteration:
            self._back_online(now)
            return
        except _RECONNECT_ERRORS as err:
            s(self, "_restoring", None)
            self._retry_later(now, err)
        s(self, "_next_try", now + delay)
        raise InstrumentOffline(self.source, delay, "restoring")

    def _retry_later(self, now: float, err: BaseException) -> None:
        release_connection(self.driver)
        s = object.__setattr__
        s(self, "_failures", self._failures + 1)
        s(self, "_last_error", f"{type(err).__name__}: {err}")
        delay = self._delay()
        s(self, "_next_try", now + delay)
        log.info("%s: reconnect failed (%s); next try in %.3g s", self.source, self._last_error,
                 delay)
        raise InstrumentOffline(self.source, delay, f"offline ({self._last_error})") from err

    def _restore_steps(self) -> Iterator[float]:
        """Re-apply the records; a record the unit rejects is dropped and reported."""
        records = self.setpoints
        restore = self._spec.restore or replay
        if self._spec.restore is not None:
            try:
                yield from restore(self._resolve, records)
            except ReplyError:
                raise
            except (ValueError, InstrumentError) as err:
                self._rejected.append(f"restore: {err}")
            return
        for rec in records:
            try:
                yield from replay(self._resolve, [rec])
            except ReplyError:
                raise  # a garbled reply while coming back: retry the whole restore later
            except (ValueError, InstrumentError) as err:
                self._rejected.append(f"{rec.name}: {err}")
                for key, value in list(self._records.items()):
                    if value[0] == rec.seq:
                        del self._records[key]

    def _back_online(self, now: float) -> None:
        s = object.__setattr__
        down = now - (self._offline_since if self._offline_since is not None else now)
        attempts = self._failures
        s(self, "_ok", True)
        s(self, "_restoring", None)
        s(self, "_failures", 0)
        s(self, "_next_try", -math.inf)
        log.warning("%s online after %.3g s", self.source, down)
        detail: dict[str, Any] = {"downtime_s": down, "attempts": attempts,
                                  "restored": len(self._records)}
        if self._rejected:
            detail["rejected"] = list(self._rejected)
        self._event(now, "instrument_online", **detail)

    def _event(self, t: float, kind: str, **detail: Any) -> None:
        if self._on_event is not None:
            self._on_event(t, kind, self.source, **detail)
