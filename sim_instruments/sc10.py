"""Twin of the Thorlabs SC10 shutter controller: echo, value, ``> `` prompt; a real shutter.

Byte-level behaviour as the unit (PROTOCOLS.md): each CR-terminated command is echoed with
CR, a query's value follows with CR, then the prompt ``"> "``; bad commands answer
``CMD_NOT_DEFINED`` / ``CMD_ARG_INVALID``. ``ens`` toggles the enable.

Behind the protocol sits a shutter with an actuation latency (`latency_s`, SimPy time when
the world has an ``env``; immediate otherwise). Modes: manual (1) follows the enable;
auto (2) cycles open/shut while enabled; single (3) opens once for the open time; repeat (4)
cycles `rep` times; external gate (5) follows `set_gate()`. Whenever the physical shutter
moves, ``world.shutter_changed(shutter, is_open)`` is called if the world has it.

The store commands ``savp``, ``save``, ``resp`` and ``default`` are answered in one of two
readings of the sources (option `store_reply`). None (default): the echo and the prompt only,
as the SC10 manual's command table gives no return value for them (the table is quoted by the
public ``ThorlabsSC10`` pyvisa class: "savp | Store configuration", "save | Save mode
information", "resp | Load configuration"; it has no ``default`` row; PROTOCOLS.md). A string
(``"1"``): that value line between echo and prompt, as InstrumentKit pins it (github
instrumentkit/InstrumentKit, tests/test_thorlabs/test_thorlabs_sc10.py: ``["savp", "1", "> "]``
and likewise for ``save``, ``resp``, ``default``; src/instruments/thorlabs/sc10.py reads that
line with ``query()`` and documents it as "1 if successful, zero otherwise"). Errors are the
word ``CMD_NOT_DEFINED`` / ``CMD_ARG_INVALID`` after option `error_prefix`: "" (the bare word,
as InstrumentKit's ``thorlabs_utils.check_cmd`` compares it) or ``"Command error "`` (the text
Thorlabs serial units send, e.g. to an empty line, as public SC10 and LCC25/TC200 scripts
quote it).

Faults: the base ones plus ``faults.stuck_open`` (once open, the blade stays open whatever
the controller does, and the controller does not know: ``closed?`` still follows the drive,
as on the real unit, which has no position sensor) and ``faults.interlock`` (the interlock
is tripped: the shutter cannot be enabled). The manual's command table (SC10 manual, "Keywords
(Commands and Queries)": ``closed?`` "Returns 1 if the shutter is closed or 0 if open",
``interlock?`` "Returns 1 if interlock is tripped") names no state beyond the controller's
own output and the interlock, so a jammed blade is a fault the unit cannot report.

External gate (mode 5, the sequencer's TTL): with a world that plays TTL patterns
(``wire_ttl``), the twin's gate input hangs on the lines ``shutter_gate_fall`` and
``shutter_gate_rise`` (`ionclock.drivers.sequencer.PulseProgram.edges` with a shutter gate);
each edge, while enabled in mode 5, drives the blade, which arrives `latency_s` later. Those
moves are kept as a short history rather than SimPy processes (two edges per clock cycle), so
`open_between(t0, t1)` answers whether light passed in an interval; a world that models stray
light asks it for each probe (``world.add_shutter(shutter, twin)`` registers the blade).
``leak_fraction`` is the fraction of the beam the open blade lets through (1; a blade stuck
part-way lets less, `stick`).
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

from ionclock.sim_instruments.base import CommandError, Faults, SimInstrument


@dataclass
class SC10Faults(Faults):
    """Base faults plus a blade stuck open and a tripped interlock."""

    stuck_open: bool = False
    interlock: bool = False


#: Gate-driven moves kept until the blade is asked about (a few cycles' edges).
MOVES_KEPT = 16

_SET = re.compile(r"(mode|trig|xto|open|shut|rep|baud)=(\d{1,7})")


class _GateBus:
    """The shutters' gate lines of one world, shared by its SC10 twins.

    Every unit's gate input hangs on the same DG645 output. An edge costs one append to the
    bus's log (two edges per clock cycle); each unit takes the edges it has not seen when it
    is next asked about or commanded (`SimSC10._sync`), as a gate-mode unit would have
    followed them. The log keeps the last `MOVES_KEPT` edges.
    """

    def __init__(self):
        self.log: deque[tuple[float, bool]] = deque(maxlen=MOVES_KEPT)
        self.n = 0   # edges so far

    def fall(self, t: float) -> None:
        self.log.append((t, False))
        self.n += 1

    def rise(self, t: float) -> None:
        self.log.append((t, True))
        self.n += 1


class SimSC10(SimInstrument):
    """SC10 twin; see the module docstring for the sources of the reply options.

    Options: ``shutter`` (name passed to the world hook), ``latency_s``, ``store_reply``
    (value line after ``savp``/``save``/``resp``/``default``, or None for none),
    ``error_prefix`` (text before ``CMD_NOT_DEFINED``/``CMD_ARG_INVALID``).
    """

    input_terminator = b"\r"
    output_terminator = b"\r"
    name = "sim-sc10"
    IDN = "THORLABS SC10 VERSION 1.07"

    def __init__(self, world=None, shutter: str = "sc10", latency_s: float = 0.012,
                 store_reply: str | None = None, error_prefix: str = "",
                 seed: int | None = 0):
        if store_reply is not None and (not store_reply or "\r" in store_reply):
            raise ValueError(f"store_reply must be None or one non-empty line, "
                             f"got {store_reply!r}")
        self.shutter = shutter
        self.store_reply = store_reply
        self.error_prefix = str(error_prefix)
        if not latency_s >= 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s!r}")
        self.latency_s = float(latency_s)
        self._open = False
        # gate-driven moves not yet applied to the blade, (arrival time, open), applied when
        # the blade is asked about (`_arrive`); the oldest give way to newer ones (a unit
        # nobody asks about keeps the last few edges only)
        self._moves: deque[tuple[float, bool]] = deque(maxlen=MOVES_KEPT)
        self._history: list[tuple[float, bool]] = [(-math.inf, False)]   # (t, blade open)
        self.leak_fraction = 1.0
        self._bus: _GateBus | None = None   # the world's gate lines (`_sync`)
        self._seen = 0
        self._hook = getattr(world, "shutter_changed", None)
        self._token = 0
        self._cmd_t = -math.inf   # when the unit was last commanded, reset or jammed
        self.saved: dict = {}
        super().__init__(world, seed)
        self.faults = SC10Faults()
        wire = getattr(world, "wire_ttl", None)
        if wire is not None:
            # one receiver of the gate lines per world for all its SC10s (one call per edge)
            bus = getattr(world, "_sc10_gate_bus", None)
            if bus is None:
                bus = world._sc10_gate_bus = _GateBus()
                wire("shutter_gate_fall", bus.fall)
                wire("shutter_gate_rise", bus.rise)
            self._bus = bus
            self._seen = bus.n
        register = getattr(world, "add_shutter", None)
        if register is not None:
            register(shutter, self)

    # --- settings ----------------------------------------------------------------------------
    def reset_settings(self) -> None:
        self.params = {"mode": 1, "trig": 0, "xto": 0, "open": 10, "shut": 10, "rep": 1,
                       "baud": 0}
        self.params.update(getattr(self, "saved", {}))
        self.enabled = False
        self.drive_open = False
        self._token = getattr(self, "_token", 0) + 1
        self._cmd_t = self._now()
        self.gate = False
        self._moves = deque(maxlen=MOVES_KEPT)
        bus = getattr(self, "_bus", None)
        if bus is not None:   # the edges so far reached the unit before it was reset
            self._seen = bus.n
        if getattr(self, "_open", False):
            self._move(False)

    # --- the shutter --------------------------------------------------------------------------
    @property
    def _env(self):
        return getattr(self.world, "env", None)

    def _now(self) -> float:
        env = self._env
        return env.now if env is not None else math.inf

    @property
    def is_physically_open(self) -> bool:
        """Whether the blade lets the light through now (the truth; no query tells it)."""
        self._arrive(self._now())
        return self._open

    def _move(self, want_open: bool, t: float | None = None) -> None:
        # a stuck blade stays open once it is open; it still opens when told to
        physical = want_open or (self.faults.stuck_open and self._open)
        if physical != self._open:
            self._open = physical
            history = self._history
            history.append((self._now() if t is None else t, physical))
            if len(history) > 8:
                del history[:-4]
            hook = self._hook
            if hook is not None:
                hook(self.shutter, physical)

    def _sync(self) -> None:
        """Take the gate edges the unit has not seen yet.

        In external gate mode, enabled, each drives the blade, which arrives `latency_s`
        after it; otherwise only the gate level is kept.
        """
        bus = self._bus
        if bus is None or bus.n == self._seen:
            return
        new = bus.n - self._seen
        self._seen = bus.n
        log = bus.log
        if not (self.enabled and self.params["mode"] == 5):
            self.gate = log[-1][1]
            return
        latency = self.latency_s
        append = self._moves.append
        n = len(log)
        for k in range(n - min(new, n), n):   # the unseen edges, oldest first
            t, high = log[k]
            append((t + latency, high))
        self.gate = self.drive_open = log[-1][1]

    def _arrive(self, now: float) -> None:
        """Apply the gate-driven moves that have arrived by `now` (in time order).

        The world asks this of the quench beam's blade once per probe (`open_between`), with
        two gate edges new each time: `_sync` is skipped when the bus has nothing new, and a
        move that changes the blade is `_move`, inlined when nothing else is at stake (no
        jam, no world hook).
        """
        bus = self._bus
        if bus is not None and bus.n != self._seen:
            self._sync()
        moves = self._moves
        if not moves or moves[0][0] > now:
            return
        if self.faults.stuck_open or self._hook is not None:
            while moves and moves[0][0] <= now:
                t, want_open = moves.popleft()
                self._move(want_open, t)
            return
        history = self._history
        while moves and moves[0][0] <= now:
            t, want_open = moves.popleft()
            if want_open != self._open:   # `_move(want_open, t)`, inlined
                self._open = want_open
                history.append((t, want_open))
                if len(history) > 8:
                    del history[:-4]

    def _gate_edge(self, t: float, high: bool) -> None:
        """An edge on the gate input at `t`: in mode 5, enabled, the blade follows it.

        The move is queued (arriving `latency_s` later) and applied when the blade is next
        asked about.
        """
        self._cmd_t = self._now()
        self._sync()
        self.gate = high
        if self.enabled and self.params["mode"] == 5:
            self.drive_open = high
            self._moves.append((t + self.latency_s, high))

    def open_between(self, t0: float, t1: float) -> bool:
        """Whether the blade was open at any time in [t0, t1] (t1 not in the future).

        The world asks this of the quench beam's blade once per probe. When the last gate
        edge to reach the blade by `t1` (edge + latency) is a fall that had closed it by `t0`,
        with the unit following the gate (mode 5, enabled, not jammed) and neither a command,
        a reset nor a jam nor any move of the blade since that edge, the blade is closed
        throughout: False at once, the edges left for `_sync` (the bus keeps the last
        `MOVES_KEPT`). (The gate's rise that opens the blade for the detection is usually on
        the bus already: it arrives after `t1`.)
        """
        bus = self._bus
        if (bus is not None and self.enabled and self.params["mode"] == 5
                and not self.faults.stuck_open):
            log, latency = bus.log, self.latency_s
            k = len(log) - 1
            while k >= 0 and log[k][0] + latency > t1:   # edges that reach it after t1
                k -= 1
            if k >= 0:
                t_fall, high = log[k]
                closed = t_fall + latency
                if (not high and closed <= t0 and self._cmd_t <= t_fall
                        and self._history[-1][0] <= closed):
                    return False
        self._arrive(t1)
        history = self._history
        i = len(history) - 1
        while i > 0 and history[i][0] > t1:
            i -= 1
        while i >= 0:
            t, is_open = history[i]
            if is_open:
                return True
            if t <= t0:
                return False
            i -= 1
        return False

    def stick(self, stuck: bool, fraction: float = 1.0) -> None:
        """A jammed blade (``faults.stuck_open``) letting `fraction` of the beam through."""
        self._cmd_t = self._now()
        self._arrive(self._now())   # the moves before now happened before the jam
        self.faults.stuck_open = bool(stuck)
        if stuck:
            self.leak_fraction = float(fraction)
        elif not self.drive_open:
            # freed: the blade falls to where the controller drives it
            self._arrive(self._now())
            self._move(False)

    def _drive(self, want_open: bool) -> None:
        """Command the blade; it arrives after the latency (SimPy time) or at once."""
        self._cmd_t = self._now()
        self._arrive(self._now())
        self._moves.clear()   # a command overrides the gate's moves still under way
        self.drive_open = want_open
        env = self._env
        if env is None or self.latency_s <= 0:
            self._move(want_open)
            return

        def actuate():
            yield env.timeout(self.latency_s)
            if self.drive_open == want_open:
                self._move(want_open)
        env.process(actuate())

    def _run_sequence(self, cycles: int | None) -> None:
        """Open/shut cycling of auto (cycles None: until disabled), single and repeat."""
        self._token += 1
        token = self._token
        env = self._env
        open_s, shut_s = self.params["open"] / 1000.0, self.params["shut"] / 1000.0
        if env is None:
            # without a clock the sequence collapses: it ends closed (single/repeat) or open
            self._drive(cycles is None)
            if cycles is not None:
                self.enabled = False
            return

        def sequence():
            n = 0
            while token == self._token and (cycles is None or n < cycles):
                self._drive(True)
                yield env.timeout(open_s)
                if token != self._token:
                    return
                self._drive(False)
                n += 1
                yield env.timeout(shut_s)
            if token == self._token and cycles is not None:
                self.enabled = False
        env.process(sequence())

    def _toggle(self) -> None:
        self._sync()   # the gate's edges so far, as the unit followed them
        if not self.enabled and self.faults.interlock:
            return  # the interlock forbids enabling
        self.enabled = not self.enabled
        mode = self.params["mode"]
        if not self.enabled:
            self._token += 1  # stop any running sequence
            self._drive(False)
        elif mode == 1:
            self._drive(True)
        elif mode == 2:
            self._run_sequence(None)
        elif mode == 3:
            self._run_sequence(1)
        elif mode == 4:
            self._run_sequence(self.params["rep"])
        else:
            self._drive(self.gate)

    def set_gate(self, high: bool) -> None:
        """Drive the external gate input now (mode 5: the shutter follows it while enabled)."""
        self._gate_edge(self._now() if self._env is not None else 0.0, bool(high))
        if self._env is None:
            self._arrive(math.inf)

    # --- protocol -------------------------------------------------------------------------------
    def before_reply(self, line: str) -> None:
        if not self.faults.timeout:
            self._send(line)  # the echo

    def after_reply(self, line: str) -> None:
        data = b"> "
        if self.faults.garble:
            data = self._corrupt(data + self.output_terminator)[:-1]
        self._tx += data

    def error_reply(self, err: CommandError) -> str | None:
        return self.error_prefix + err.code

    def handle(self, line: str) -> str | None:
        self._cmd_t = self._now()   # any line: `open_between`'s shortcut waits for an edge
        self._sync()   # the gate's edges up to now (a mode change below ends following)
        cmd = line.strip()
        if cmd == "id?":
            return self.IDN
        if cmd == "ens?":
            return "1" if self.enabled else "0"
        if cmd == "ens":
            self._toggle()
            return None
        if cmd == "closed?":
            return "0" if self.drive_open else "1"
        if cmd == "interlock?":
            return "1" if self.faults.interlock else "0"
        if cmd.endswith("?") and cmd[:-1] in self.params:
            return str(self.params[cmd[:-1]])
        if cmd == "savp":
            self.saved = {k: self.params[k] for k in ("mode", "trig", "open", "shut", "rep")}
            return self.store_reply
        if cmd == "save":
            self.saved.update({k: self.params[k] for k in ("xto", "baud")})
            return self.store_reply
        if cmd == "resp":
            self.params.update(self.saved)
            return self.store_reply
        if cmd == "default":
            self.saved = {}
            self.reset_settings()
            return self.store_reply
        m = _SET.fullmatch(cmd)
        if m is None:
            if "=" in cmd and cmd.split("=")[0] in self.params:
                raise CommandError("CMD_ARG_INVALID")
            raise CommandError("CMD_NOT_DEFINED")
        key, value = m.group(1), int(m.group(2))
        limits = {"mode": (1, 5), "trig": (0, 1), "xto": (0, 1), "open": (0, 999999),
                  "shut": (0, 999999), "rep": (1, 99), "baud": (0, 1)}[key]
        if not limits[0] <= value <= limits[1]:
            raise CommandError("CMD_ARG_INVALID")
        self.params[key] = value
        if key == "mode" and self.enabled:
            self._toggle()  # changing mode disables the output, as on the unit
        return None
