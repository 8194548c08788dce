r"""Twin of the SRS SR400 gated photon counter: its two-letter grammar, counting on TTL edges.

Grammar: commands end with CR (or LF); several may share a line separated by ``;``; set
commands answer nothing; a query answers one record ended by the end-of-record sequence. A
command the unit does not know, or a bad parameter, sets status bit 7 (command error) and
answers nothing, as the real unit does.

End of record (option `interface`, or `eor` explicitly): on RS-232 the default is a carriage
return, changed with ``SE j,k,l,m`` (up to four ASCII codes; bare ``SE`` restores CR) - "The SE
command may only be sent via the RS-232 interface" (SR400 manual rev. 2.7, p. 45, Interface).
On GPIB the unit ends each record with CR LF: the manual section was not at hand, but the
drivers that talk to GPIB units agree (lantz ``drivers/stanford/sr400.py``: read termination
``\r\n``; the Stanford400 InstrumentDriver strips ``'\r\n'`` from ``QA``; pekermilas/
InstrumentControlLibraries ``sr400_PhotonCounter_Control.py`` reads to LF and gets ``'0\r'``).
So `interface="gpib"` answers ``...\r\n`` and rejects ``SE``.

Counting follows the manual (rev. 2.7), driven by edges in simulated time, never by queries:

- "When the START key is pressed, a START command is received from the computer interface,
  or the EXTERNAL START input is pulsed, counter T is enabled to count. The COUNT PERIOD
  begins with the first pulse from T counter's input after START." (Instrument overview,
  Counting, p. 12.) With T on TRIG that is the next TRIG edge; with T on 10 MHz it is at once
  (`CS`), and the period lasts preset x 100 ns.
- "If the input is TRIGGER, the COUNT PERIOD is a fixed number of gates (each trigger provides
  one gate) ... N+1 Triggers are required for N gates per period." (p. 12.) The opening edge
  does not count on T; the period ends at the edge that brings T to its preset, "counting is
  halted on all counters", so that edge's own gate is not in the period.
- Gate A FIXED opens GD after each TRIG edge for GW (Gating, p. 13; the 25 ns insertion delay
  is not modelled); only the part of a gate inside a COUNT PERIOD counts; gate CW counts the
  whole period. A gate's photons: ``world.photon_counts(t_open, width)`` (the whole gate:
  exactly ``(t + GD, GW)``), else the twin's own seeded Poisson source (`mean_counts` per GW).
- "If N PERIODS is greater than 1, then consecutive COUNT PERIODS are separated by the DWELL
  time. During the DWELL time, counting is disabled" (Menus, N PERIODS / AT N, p. 26). With T
  on TRIG the next period begins with the first TRIG edge after the dwell (option
  `dwell_trigger`).
- Scan end (AT N, p. 26): STOP "causes an end of scan pause ... A counter reset is required
  before another scan can begin. If N PERIODS is 1, then each START results in one COUNT
  PERIOD." START waits one DWELL time and begins a new scan; "Scan buffers are reset at the
  start of each scan" (Command list, Continuous data, p. 46; option `restart_clears`).
- ``QA m`` reads scan point m, ``-1`` past the last completed point (Polled data, p. 45);
  ``QA`` the most recent point; ``NN`` the completed points of the scan; ``XA`` the counter's
  contents, "zero" in the dwell, paused or reset (Examine data, p. 46; CW gates read 0 here).
- ``SS``/``SS j``: status byte, bit 1 data ready (set at the end of each count period), bit 2
  scan finished, bit 7 command error; reading clears (p. 48-49, as quoted by pekermilas'
  driver). ``SI j``: bit 2 counting (in a count period).
- ``CS`` starts or resumes; ``CH`` pauses (the period in progress is dropped: "pauses the scan
  at the last completed count period", Instrument setups, Quick check, p. 34) and, when already
  paused or at the end of a scan, resets; ``CR`` resets (buffer lost); changing ``CP`` during a
  scan pauses; reducing ``NP`` past the scan position ends the scan; ``DT 0`` is EXTERNAL
  dwell: the next period starts on `external_start(t)` (the START BNC).

Not modelled: counter B and its gate, the discriminators, gate and level scanning, ``CM 3``
(A for B preset: periods never end), counter T on INPUT 2 (no pulses arrive).

Edges: when the world has ``wire_ttl``, the twin wires ``counter_trig`` to `trigger`; the
world delivers edges in time order, lazily; before answering ANY command line the twin calls
``world.settle()`` (so every edge due by ``env.now`` is in) and then acts at ``env.now``. An
edge delivered ahead of ``env.now`` waits until then. Without a world (or a world without
these hooks) the twin is stand-alone: edges come only from explicit `trigger(t)` calls, and
commands act at the time of the latest edge.

Options where the manual leaves room (see `SimSR400`): `dwell_trigger` ("ignored": a TRIG
edge during the dwell is lost; "latched": it starts the next period as the dwell ends),
`restart_clears` ("dwell_end": scan end START clears the buffer as the dwell ends;
"first_period": when the new scan's first period begins).
"""

from __future__ import annotations

import math

import numpy as np

from ionclock.sim_instruments.base import CommandError, ShortcutLines, SimInstrument

_CR = b"\r"
_QA = (b"QA ", b"qa ")
TICK_S = 1e-7          # one period of the internal 10 MHz timebase
_INF = math.inf

_T_10MHZ, _T_INPUT2, _T_TRIG = 0, 2, 3


class SimSR400(ShortcutLines, SimInstrument):
    r"""Byte-level SR400 twin (``SimSR400(world, seed, **options)``).

    Parameters
    ----------
    world:
        The simulated world; uses ``wire_ttl``, ``settle``, ``photon_counts`` and ``env`` where
        present (module docstring).
    seed:
        Seed of the stand-alone Poisson photon source (and of the garble fault).
    mean_counts:
        Stand-alone source: mean photon counts in one whole gate A (GW); a window of another
        length scales it.
    interface:
        "rs232" (end of record CR, ``SE`` changes it) or "gpib" (CR LF, ``SE`` rejected).
    eor:
        End-of-record string overriding the interface's (e.g. ``"\r"`` or ``"\r\n"``).
    dwell_trigger:
        "ignored" (default) or "latched": what a TRIG edge during the dwell does.
    restart_clears:
        "dwell_end" (default) or "first_period": when scan end START resets the buffer.
    """

    input_terminator = _CR
    output_terminator = _CR
    name = "sim SR400"

    def __init__(self, world=None, seed: int | None = 0, *, mean_counts: float = 20.0,
                 interface: str = "rs232", eor: str | None = None,
                 dwell_trigger: str = "ignored", restart_clears: str = "dwell_end"):
        if interface not in ("rs232", "gpib"):
            raise ValueError(f"interface must be 'rs232' or 'gpib', got {interface!r}")
        if dwell_trigger not in ("ignored", "latched"):
            raise ValueError(f"dwell_trigger must be 'ignored' or 'latched', got "
                             f"{dwell_trigger!r}")
        if restart_clears not in ("dwell_end", "first_period"):
            raise ValueError(f"restart_clears must be 'dwell_end' or 'first_period', got "
                             f"{restart_clears!r}")
        if eor is None:
            eor = "\r\n" if interface == "gpib" else "\r"
        if not eor or not eor.isascii():
            raise ValueError(f"eor must be 1 to 4 ASCII characters, got {eor!r}")
        self.interface = interface
        self.output_terminator = eor.encode("ascii")
        self.dwell_trigger = dwell_trigger
        self.restart_clears = restart_clears
        self._photons = getattr(world, "photon_counts", None)
        self._world_settle = getattr(world, "settle", None)
        self._env = getattr(world, "env", None)
        self._np_rng = np.random.default_rng(seed)
        self._pool: list[int] = []
        self._mean = float(mean_counts)
        self._t = 0.0                       # time up to which edges and timers are processed
        self._pending: list[float] = []     # edges delivered ahead of env.now
        self.triggers = 0                   # TRIG edges seen (for tests)
        super().__init__(world, seed)
        wire = getattr(world, "wire_ttl", None)
        if wire is not None:
            wire("counter_trig", self.trigger)

    # --- state ----------------------------------------------------------------------------
    def reset_settings(self) -> None:
        """Power-on (default) settings, counters in reset (the COM menu's end of record stays)."""
        self.cm = 0
        self.ci = [1, 2, 0]           # A <- INPUT 1, B <- INPUT 2, T <- 10 MHz
        self.cp = [0.0, 1e3, 1e7]     # B and T presets (T: 1 s of 10 MHz)
        self.gm = [0, 0]              # gates CW
        self.gw = [5e-6, 5e-6]
        self.gd = [0.0, 0.0]
        self.dl = [-0.01, -0.01, -0.01]
        self.np_ = 1
        self.ne = 0
        self.dt = 2e-3
        self.status = 0
        self.state = "reset"          # reset | counting | paused | done (end of scan, STOP)
        self.phase = "idle"           # while counting: armed | period | dwell
        self.buffer: list[int] = []
        self._t_start = 0.0           # start of the count period in progress
        self._t_count = 0             # counter T's count in it
        self._wake = _INF             # next timer: 10 MHz period end, or dwell end
        self._gates: list[list] = []  # gate A windows [open, width, counts or None]
        self._latched = False
        self._clear_pending = False

    @property
    def mean_counts(self) -> float:
        """Mean counts of the stand-alone source in one whole gate A (no world photons)."""
        return self._mean

    @mean_counts.setter
    def mean_counts(self, value: float) -> None:
        self._mean = float(value)
        self._pool.clear()

    @property
    def eor(self) -> str:
        """The end-of-record sequence the twin ends each reply with."""
        return self.output_terminator.decode("ascii")

    def gate_s(self) -> float:
        """Return the counting window of one point in s (gate A width, or T's 10 MHz period)."""
        if self.gm[0] == 0 and self.ci[2] == _T_10MHZ:
            return self.cp[2] * TICK_S
        return self.gw[0]

    # --- edges and time ---------------------------------------------------------------------
    def trigger(self, t: float) -> None:
        """A rising edge on the TRIG input at simulated time `t` (s)."""
        env = self._env
        if env is not None and t > env.now:
            pending = self._pending  # delivered early: it happens when env.now reaches it
            if pending and t < pending[-1]:
                pending.append(t)
                pending.sort()
            else:
                pending.append(t)
            return
        self._edge(t)

    def external_start(self, t: float) -> None:
        """A pulse on the EXTERNAL START input at `t`: START, or the end of an EXTERNAL dwell."""
        self._sync()
        t = max(float(t), self._t)
        self._advance(t)
        self._t = t
        if self.state == "counting" and self.phase == "dwell" and self.dt == 0.0:
            self._dwell_over(t)
        elif self.state != "counting":
            self._start(t)

    def _now(self) -> float:
        env = self._env
        if env is not None and env.now > self._t:
            return env.now
        return self._t

    def _sync(self) -> float:
        """Bring the counters up to now: pending edges, then timers; return now."""
        if self._world_settle is not None:
            self._world_settle()
        env = self._env   # _now(), inlined: once per clock cycle
        now = env.now if env is not None else self._t
        if now < self._t:
            now = self._t
        pending = self._pending
        while pending and pending[0] <= now:
            self._edge(pending.pop(0))
        if self._wake <= now:
            self._advance(now)
        self._t = now
        return now

    def _edge(self, t: float) -> None:
        if t < self._t:
            t = self._t  # delivered out of order: it acts now
        if self._wake <= t:
            self._advance(t)
        self._t = t
        self.triggers += 1
        gates = self._gates
        if len(gates) > 8 and self.phase != "period":
            # bound the list while nothing counts: what closed by now overlaps no later period
            self._gates = gates = [g for g in gates if g[0] + g[1] > t]
        if self.gm[0]:  # FIXED (or SCAN, its delay stepping not modelled): gate A opens
            gates.append([t + self.gd[0], self.gw[0], None])
        if self.state != "counting" or self.ci[2] != _T_TRIG or self.cm == 3:
            return
        phase = self.phase
        if phase == "armed":
            self._begin_period(t)
        elif phase == "period":
            self._t_count += 1
            if self._t_count >= self.cp[2]:
                self._end_period(t)
        elif phase == "dwell" and self.dwell_trigger == "latched":
            self._latched = True

    def _advance(self, t: float) -> None:
        """Fire the timers due by `t` (10 MHz period ends, dwell ends) in time order."""
        while self._wake <= t:
            tw = self._wake
            if self.state != "counting":
                self._wake = _INF
            elif self.phase == "period":
                self._end_period(tw)
            elif self.phase == "dwell":
                self._dwell_over(tw)
            else:
                self._wake = _INF

    def _start(self, t: float) -> None:
        """Counting (re)starts at `t`: T on 10 MHz begins a period now, else waits for T."""
        self.state = "counting"
        self._clear_pending = False
        self._latched = False
        if self.ci[2] == _T_10MHZ and self.cm != 3:
            self._begin_period(t)
        else:
            self.phase = "armed"
            self._wake = _INF

    def _begin_period(self, t: float) -> None:
        self.phase = "period"
        self._t_start = t
        self._t_count = 0
        if self._clear_pending:
            self.buffer.clear()
            self._clear_pending = False
        gates = self._gates
        if gates:
            self._gates = [g for g in gates if g[0] + g[1] > t]
        if self.ci[2] == _T_10MHZ:
            self._wake = t + self.cp[2] * TICK_S
        else:
            self._wake = _INF

    def _end_period(self, t: float) -> None:
        buf = self.buffer
        buf.append(self._period_counts(self._t_start, t))
        self.status |= 0x02
        if len(buf) >= self.np_:
            self._scan_end(t)
            return
        self._dwell(t)

    def _dwell(self, t: float) -> None:
        self.phase = "dwell"
        self._latched = False
        self._wake = t + self.dt if self.dt > 0.0 else _INF  # DT 0: EXTERNAL

    def _scan_end(self, t: float) -> None:
        self.status |= 0x04
        if self.ne == 0:  # STOP: end of scan pause
            self.state = "done"
            self.phase = "idle"
            self._wake = _INF
            return
        self._clear_pending = True  # START: one dwell, then a new scan
        self._dwell(t)

    def _dwell_over(self, t: float) -> None:
        self._wake = _INF
        if self._clear_pending and self.restart_clears == "dwell_end":
            self.buffer.clear()
            self._clear_pending = False
        if self.cm == 3 or self.ci[2] == _T_INPUT2:
            self.phase = "armed"  # no B preset or INPUT 2 pulses are modelled
        elif self.ci[2] == _T_10MHZ or self._latched:
            self._latched = False
            self._begin_period(t)
        else:
            self.phase = "armed"

    def _period_counts(self, t0: float, t1: float) -> int:
        if self.gm[0] == 0:  # CW: the gate is open for the whole period
            return self._photon(t0, t1 - t0) if t1 > t0 else 0
        total = 0
        for gate in self._gates:
            t_open = gate[0]
            if t_open >= t1 and t_open + gate[1] > t1:
                continue   # opens after the period (the closing edge's own gate): nothing
            total += self._gate_counts(gate, t0, t1)
        return total

    def _gate_counts(self, gate: list, t0: float, t1: float) -> int:
        t_open, width = gate[0], gate[1]
        if t_open >= t0 and t_open + width <= t1:  # the whole gate: asked once, kept
            if gate[2] is None:
                gate[2] = self._photon(t_open, width)
            return gate[2]
        lo = t_open if t_open > t0 else t0
        hi = t_open + width
        if hi > t1:
            hi = t1
        return self._photon(lo, hi - lo) if hi > lo else 0

    def _photon(self, t_open: float, width: float) -> int:
        if self._photons is not None:
            return int(self._photons(t_open, width))
        if width == self.gw[0]:
            if not self._pool:
                self._pool = self._np_rng.poisson(self._mean, 4096).tolist()
            return self._pool.pop()
        return int(self._np_rng.poisson(self._mean * width / self.gw[0]))

    def _live_count(self, now: float) -> int:
        """XA: gates closed by now within the period in progress (0 outside a period)."""
        if self.state != "counting" or self.phase != "period" or self.gm[0] == 0:
            return 0
        t0 = self._t_start
        return sum(self._gate_counts(g, t0, now) for g in self._gates
                   if g[0] >= t0 and g[0] + g[1] <= now)

    # --- the byte stream, specialised for the per-cycle query ---------------------------------
    def _fast(self, data: bytes) -> bytes | None:
        """The reply bytes to a lone ``QA m`` line with no fault, or None (generic path).

        The per-cycle count query (`ShortcutLines`): the same `_sync` and `_qa_point` as the
        parser's ``QA``.
        """
        if (data[:3] in _QA and data[-1:] == _CR and not self._tx and not self._rx
                and not self.record_transcript and data.count(_CR) == 1):
            faults = self.faults
            if not (faults.disconnected or faults.timeout or faults.garble):
                arg = data[3:-1]
                if arg.isdigit():
                    self._sync()
                    reply = self._qa_point(int(arg))
                    return b"" if reply is None else reply.encode("ascii") + self.output_terminator
        return None

    # --- grammar ------------------------------------------------------------------------------
    def handle(self, line: str) -> str | None:
        """Parse one line (commands separated by ``;``) and return the replies."""
        self._sync()
        replies = []
        for part in line.split(";"):
            text = "".join(part.split())  # the unit ignores spaces
            if not text:
                continue
            try:
                reply = self._command(text[:2].upper(), text[2:])
            except CommandError:
                self.status |= 0x80
                continue
            if reply is not None:
                replies.append(reply)
        return self.eor.join(replies) if replies else None

    def _command(self, cmd: str, arg: str) -> str | None:
        args = arg.split(",") if arg else []
        if cmd == "QA":
            if not args:
                return str(self.buffer[-1]) if self.buffer else "-1"
            return self._qa_point(_int(args[0], 1, 2000))
        if cmd == "XA":
            return str(self._live_count(self._t))
        if cmd == "CS":
            self._cmd_start()
            return None
        if cmd == "CH":
            if self.state == "counting":
                self.state = "paused"
                self.phase = "idle"
                self._wake = _INF
            elif self.state in ("paused", "done"):
                self._reset()
            return None
        if cmd in ("CR", "CL"):
            self._reset()
            if cmd == "CL":
                self.status = 0
            return None
        if cmd in ("SS", "SI"):
            value = self.status if cmd == "SS" else self._secondary_status()
            if args:
                bit = _int(args[0], 0, 7)
                if cmd == "SS":
                    self.status &= ~(1 << bit)
                return str((value >> bit) & 1)
            if cmd == "SS":
                self.status = 0
            return str(value)
        if cmd == "SE":
            if self.interface != "rs232" or len(args) > 4:
                _fail()
            codes = [_int(a, 0, 127) for a in args] or [13]
            self.output_terminator = bytes(codes)
            return None
        if cmd == "NN":
            return str(len(self.buffer))
        if cmd == "CM":
            if not args:
                return str(self.cm)
            self.cm = _int(args[0], 0, 3)
            self._reset()  # setting the mode also resets the counters
            return None
        if cmd == "CI":
            i = _int(args[0], 0, 2) if args else _fail()
            if len(args) == 1:
                return str(self.ci[i])
            j = _int(args[1], 0, 3)
            if j not in ((0, 1), (1, 2), (0, 2, 3))[i]:
                _fail()
            self.ci[i] = j
            return None
        if cmd == "CP":
            i = _int(args[0], 1, 2) if args else _fail()
            if len(args) == 1:
                return _preset_out(self.cp[i])
            n = _float(args[1], 1.0, 9e11)
            self.cp[i] = float(f"{n:.0e}")  # only the most significant digit is used
            if self.state == "counting":  # the period in progress is dropped: paused
                self.state = "paused"
                self.phase = "idle"
                self._wake = _INF
            return None
        if cmd in ("NP", "NE", "DT"):
            if not args:
                return {"NP": str(self.np_), "NE": str(self.ne), "DT": f"{self.dt:.4E}"}[cmd]
            if cmd == "NP":
                self.np_ = _int(args[0], 1, 2000)
                if (self.state == "counting" and len(self.buffer) >= self.np_
                        and not self._clear_pending):
                    self._scan_end(self._t)
            elif cmd == "NE":
                self.ne = _int(args[0], 0, 1)
            else:
                value = _float(args[0], 0.0, 60.0)
                if 0.0 < value < 2e-3:
                    _fail()
                self.dt = value  # 0: EXTERNAL
            return None
        if cmd in ("GM", "GW", "GD", "DL"):
            i = _int(args[0], 0, 2 if cmd == "DL" else 1) if args else _fail()
            table = {"GM": self.gm, "GW": self.gw, "GD": self.gd, "DL": self.dl}[cmd]
            if len(args) == 1:
                value = table[i]
                return str(value) if cmd == "GM" else (
                    f"{value:.4f}" if cmd == "DL" else f"{value:.4E}")
            if cmd == "GM":
                table[i] = _int(args[1], 0, 2)
            elif cmd == "GW":
                table[i] = _round4(_float(args[1], 5e-9, 999.2e-3))
            elif cmd == "GD":
                table[i] = _round4(_float(args[1], 0.0, 999.2e-3))
            else:
                table[i] = _float(args[1], -0.3, 0.3)
            return None
        _fail()
        return None  # unreachable

    def _cmd_start(self) -> None:
        state = self.state
        if state == "reset" or (state == "done" and self.np_ == 1):
            self.buffer.clear()  # a new scan
            self._start(self._t)
        elif state == "paused":
            self._start(self._t)
        # counting: nothing; done with N PERIODS > 1: "a counter reset is required"

    def _reset(self) -> None:
        self.state = "reset"
        self.phase = "idle"
        self.buffer.clear()
        self._wake = _INF
        self._latched = False
        self._clear_pending = False

    def _secondary_status(self) -> int:
        return 0x04 if self.state == "counting" and self.phase == "period" else 0

    def _qa_point(self, m: int) -> str | None:
        if not 1 <= m <= 2000:
            self.status |= 0x80
            return None
        buf = self.buffer
        return str(buf[m - 1]) if m <= len(buf) else "-1"


def _fail():
    raise CommandError("cmd", "command error")


def _int(text: str, lo: int, hi: int) -> int:
    if not text.isdigit() or not lo <= int(text) <= hi:
        _fail()
    return int(text)


def _float(text: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        _fail()
    if not lo <= value <= hi:
        _fail()
    return value


def _round4(t: float) -> float:
    return float(f"{t:.3e}") if t else 0.0


def _preset_out(n: float) -> str:
    return f"{n:.0E}".replace("E+", "E").replace("E0", "E") if n else "0"
