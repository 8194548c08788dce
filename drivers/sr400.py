r"""SRS SR400 two-channel gated photon counter: detection counts, one gate per clock cycle.

RS-232 or GPIB; commands are two letters plus comma-separated parameters, ended by CR (or LF).
Replies end with the end-of-record sequence: CR on RS-232 (the default; ``SE`` changes it,
"The SE command may only be sent via the RS-232 interface", SR400 manual rev. 2.7, p. 45),
CR LF on GPIB (drivers that talk to GPIB units: lantz ``drivers/stanford/sr400.py`` reads to
``\r\n``, pekermilas/InstrumentControlLibraries ``sr400_PhotonCounter_Control.py`` reads to LF
and sees ``'0\r'``). This driver reads to CR and drops a CR or LF left at either end of a
reply, so it works with both (and with a port set to read to LF). Set commands answer
nothing: a rejected command sets bit 7 of the status byte (``SS``), which the slow-path
settings read back after each set (manual, "Status byte", p. 48-49).

Counting (manual rev. 2.7; docs/decisions/0101-sr400-one-query-per-cycle.md):

- Counter T on TRIG: "the COUNT PERIOD is a fixed number of gates (each trigger provides one
  gate) ... N+1 Triggers are required for N gates per period" (Instrument overview, p. 12);
  "The COUNT PERIOD begins with the first pulse from T counter's input after START".
- "consecutive COUNT PERIODS are separated by the DWELL time. During the DWELL time, counting
  is disabled" (Menus, p. 26); the next period begins with the first trigger after the dwell.
- "Scan buffers are reset at the start of each scan ... programs may hang if the counters are
  reset or a new scan is started before all data points from the previous scan are received.
  To prevent this, the scan end mode should be STOP" (Command list, p. 46); with STOP "a
  counter reset is required before another scan can begin" (p. 26).

So with preset 1 a point completes only at the NEXT trigger, and that trigger's own gate falls
in the dwell. The old set-up (one trigger per cycle, scan end START) therefore completed cycle
k's point only at cycle k+1's trigger (a timeout each cycle on hardware) and, with cycles
longer than the dwell, counted every other gate, credited to the wrong cycle.

`configure_gated()` now sets counter A on INPUT 1 (the PMT), counter T on TRIG with preset 1,
gate A FIXED (delay GD, width GW = the detection window), N PERIODS, scan end STOP and the
dwell; the pulse sequencer puts TWO edges on TRIG per cycle, `trigger_offsets()`: one at the
detection start (opens the period; its gate is the detection gate) and one just after that
gate closes (T reaches its preset: the point is complete, and this edge's own gate falls in
the dwell, where nothing is counted). `arm()` resets and starts the counters. Each `count()`
sends ONE query, ``QA m``, reading scan point m from the buffer: every gate is read exactly
once, without polling the data-ready bit (plain ``QA`` may return the same point twice, and
``SS`` first would double the traffic). A point not yet complete reads ``-1``; `count()` then
polls the same point until `count_timeout_s` runs out. After point N PERIODS the unit pauses
(STOP); `count()` then re-arms it (``CR;CS;SS 7``) before the next cycle's first edge.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from pymeasure.instruments import Instrument
from pymeasure.instruments.validators import strict_discrete_set, strict_range
from pyvisa.errors import VisaIOError

from ionclock.drivers.common import line_exchange
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError

GATE_MIN_S = 5e-9
GATE_MAX_S = 999.2e-3
DWELL_MIN_S = 2e-3
DWELL_MAX_S = 60.0
MAX_PERIODS = 2000
#: Spacing of the period-closing TRIG edge after the detection gate closes: 50 us plus 1e-3
#: of GD + GW, which covers the unit's rounding of GD and GW (resolution 1 part in 1000,
#: manual p. 41-42) and the 25 ns trigger-to-gate insertion delay (p. 13).
CLOSE_MARGIN_S = 50e-6
CLOSE_MARGIN_REL = 1e-3


def parse_count(reply: str, instrument: str = "SR400") -> int | None:
    """Parse a ``QA``/``XA`` reply into counts (int >= 0), or None for ``-1`` (point not ready).

    Anything but ASCII digits or ``-1`` is a `ReplyError`; an empty line means nothing
    arrived before the port's timeout (`InstrumentTimeout`).
    """
    if reply.isdigit() and reply.isascii():
        return int(reply)
    if reply == "-1":
        return None
    if not reply:
        raise InstrumentTimeout(instrument, "no count before the timeout")
    raise ReplyError(instrument, f"bad count reply {reply!r}")


def preset_text(n: float) -> str:
    """Format a counter preset 1..9e11 with ONE significant digit as ``dEk`` (the unit's).

    The SR400 uses only the most significant digit of a preset, so any other value is a
    ValueError rather than a silent rounding.
    """
    if not 1 <= n <= 9e11:  # also NaN
        raise ValueError(f"preset must be within [1, 9e11], got {n!r}")
    k = int(math.floor(math.log10(n) + 1e-12))
    d = n / 10.0 ** k
    if abs(d - round(d)) > 1e-9 * d or round(d) == 10:
        raise ValueError(f"preset {n!r} has more than one significant digit (the SR400 "
                         "uses only the first)")
    return f"{round(d)}E{k}"


def _time_text(t: float) -> str:
    # 4 significant digits: the unit's gate resolution is 1 part in 1000 (manual, Gates).
    return f"{t:.3E}"


class SR400(Instrument):
    """SRS SR400 gated photon counter; implements `ionclock.drivers.photon_counter.PhotonCounter`.

    Parameters
    ----------
    adapter:
        A pymeasure adapter or a VISA resource string.
    count_timeout_s:
        How long `count()` polls a point that reads ``-1`` before `InstrumentTimeout`.
    poll_s:
        Pause between such polls (s).
    """

    write_termination = "\r"
    read_termination = "\r"
    # Match the unit's COM menu; 9600 8N2 is a common choice for the SR400.
    serial_settings = {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 2,
                       "timeout": 1.0}

    # pymeasure's CommonBase.__getattribute__ only guards reserved names of dynamic
    # properties (none here); skipping it saves ~1 us per attribute access in count().
    __getattribute__ = object.__getattribute__

    counting_mode = Instrument.control(
        "CM", "CM %d",
        """Control the counting mode: 'A,B' (A and B for T preset), 'A-B', 'A+B', 'A for B'.""",
        validator=strict_discrete_set, map_values=True,
        values={"A,B": 0, "A-B": 1, "A+B": 2, "A for B": 3}, cast=int, check_set_errors=True)

    counter_a_input = Instrument.control(
        "CI 0", "CI 0,%d", """Control counter A's input: '10MHz' or 'input1'.""",
        validator=strict_discrete_set, map_values=True, values={"10MHz": 0, "input1": 1},
        cast=int, check_set_errors=True)

    counter_t_input = Instrument.control(
        "CI 2", "CI 2,%d", """Control counter T's input: '10MHz', 'input2' or 'trig'.""",
        validator=strict_discrete_set, map_values=True,
        values={"10MHz": 0, "input2": 2, "trig": 3}, cast=int, check_set_errors=True)

    t_preset = Instrument.control(
        "CP 2", "CP 2,%s",
        """Control counter T's preset (1..9e11, one significant digit): 10 MHz ticks or
        triggers per count period.""",
        set_process=preset_text, check_set_errors=True)

    scan_restart = Instrument.control(
        "NE", "NE %d", """Control scan end: True = START (a new scan follows), False = STOP.""",
        validator=strict_discrete_set, map_values=True, values={False: 0, True: 1}, cast=int,
        check_set_errors=True)

    gate_mode = Instrument.control(
        "GM 0", "GM 0,%d", """Control gate A's mode: 'cw', 'fixed' or 'scan'.""",
        validator=strict_discrete_set, map_values=True, values={"cw": 0, "fixed": 1, "scan": 2},
        cast=int, check_set_errors=True)

    discriminator_level = Instrument.control(
        "DL 0", "DL 0,%.4f", """Control discriminator A's level in V (-0.3..0.3).""",
        validator=strict_range, values=(-0.3, 0.3), check_set_errors=True)

    status_byte = Instrument.measurement(
        "SS", """Get the status byte (bit 1 data ready, 2 scan finished, 7 command error);
        reading clears it.""", cast=int)

    scan_position = Instrument.measurement(
        "NN", """Get the number of completed count periods in the current scan (int).""",
        cast=int)

    def __init__(self, adapter, name: str = "SR400", *, count_timeout_s: float = 1.0,
                 poll_s: float = 1e-3, sleep: Callable[[float], None] = time.sleep, **kwargs):
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        # Hot path: the adapter's transport methods directly (see Novatech409B for why).
        self._exchange = line_exchange(self.adapter)
        self.count_timeout_s = count_timeout_s
        self.poll_s = poll_s
        self._sleep = sleep
        # [next scan point, points per scan, gate width s or None]: a list so the hot path
        # updates it without CommonBase.__setattr__.
        self._scan: list = [1, MAX_PERIODS, None]
        # [gate delay s, dwell s], None until set or read: for trigger_offsets()
        self._timing: list = [None, None]
        self._queries = [f"QA {m}" for m in range(MAX_PERIODS + 1)]

    def read(self, **kwargs) -> str:
        """Read one reply, without the CR or LF of its end of record (RS-232 or GPIB)."""
        return super().read(**kwargs).strip("\r\n")

    # --- errors ------------------------------------------------------------------------------
    def check_set_errors(self) -> list:
        """Read status bit 7 (command error) after a set; set -> `InstrumentError`."""
        reply = self.ask("SS 7")
        if reply == "0":
            return []
        if reply == "1":
            raise InstrumentError(self.name, "command rejected (status bit 7)", code="SS7")
        if not reply:
            raise InstrumentTimeout(self.name, "no reply to SS 7")
        raise ReplyError(self.name, f"bad status reply {reply!r}")

    def check_errors(self) -> list:
        return self.check_set_errors()

    # --- the gate ------------------------------------------------------------------------------
    @property
    def gate_time(self) -> float:
        """Gate A's width in s (5e-9..999.2e-3): the detection window of one count."""
        cached = self._scan[2]
        if cached is None:
            reply = self.ask("GW 0")
            try:
                cached = float(reply)
            except ValueError:
                raise ReplyError(self.name, f"bad gate width reply {reply!r}") from None
            self._scan[2] = cached
        return cached

    @gate_time.setter
    def gate_time(self, seconds: float) -> None:
        if not GATE_MIN_S <= seconds <= GATE_MAX_S:
            raise ValueError(f"gate time must be within [{GATE_MIN_S}, {GATE_MAX_S}] s, "
                             f"got {seconds!r}")
        self.write("GW 0," + _time_text(seconds))
        self.check_set_errors()
        self._scan[2] = float(_time_text(seconds))

    @property
    def gate_delay(self) -> float:
        """Gate A's delay after its trigger in s (0..999.2e-3)."""
        cached = self._timing[0]
        if cached is None:
            cached = self._time_reply("GD 0")
            self._timing[0] = cached
        return cached

    @gate_delay.setter
    def gate_delay(self, seconds: float) -> None:
        if not 0.0 <= seconds <= GATE_MAX_S:
            raise ValueError(f"gate delay must be within [0, {GATE_MAX_S}] s, got {seconds!r}")
        self.write("GD 0," + _time_text(seconds))
        self.check_set_errors()
        self._timing[0] = float(_time_text(seconds))

    @property
    def dwell_time(self) -> float:
        """The dwell between count periods in s (2e-3..60): counting is disabled in it."""
        cached = self._timing[1]
        if cached is None:
            cached = self._time_reply("DT")
            self._timing[1] = cached
        return cached

    @dwell_time.setter
    def dwell_time(self, seconds: float) -> None:
        if not DWELL_MIN_S <= seconds <= DWELL_MAX_S:
            raise ValueError(f"dwell time must be within [{DWELL_MIN_S}, {DWELL_MAX_S}] s, "
                             f"got {seconds!r}")
        self.write("DT " + _time_text(seconds))
        self.check_set_errors()
        self._timing[1] = float(_time_text(seconds))

    def _time_reply(self, query: str) -> float:
        reply = self.ask(query)
        try:
            return float(reply)
        except ValueError:
            raise ReplyError(self.name, f"bad {query} reply {reply!r}") from None

    # --- the sequencer's edges ------------------------------------------------------------------
    def trigger_offsets(self) -> tuple[float, ...]:
        """TRIG rising edges the pulse sequencer must give each cycle, s from the detection start.

        ``(0.0, GD + GW + margin)``, margin = 50 us + 1e-3 (GD + GW) (`CLOSE_MARGIN_S`):

        - 0.0 opens the count period ("The COUNT PERIOD begins with the first pulse from T
          counter's input after START", manual p. 12) and triggers gate A, which counts the
          detection window [GD, GD + GW];
        - the second edge is the "+1" of "N+1 Triggers are required for N gates per period"
          (p. 12): it brings T to its preset 1 and ends the period once the gate has closed,
          so the point is complete when the cycle ends and `count()` reads it in the same
          cycle. This edge also triggers gate A, but the period has ended and the dwell has
          begun ("During the DWELL time, counting is disabled", p. 26); counting resumes only
          with the next period, which begins at the next cycle's first edge. So its gate counts
          nothing provided the next cycle's first edge comes after the dwell and after that gate
          has closed: cycles at least `min_cycle_time` apart (the clock's ~100 ms cycles are).
        """
        gate = self.gate_delay + self.gate_time
        return (0.0, gate + CLOSE_MARGIN_S + CLOSE_MARGIN_REL * gate)

    @property
    def min_cycle_time(self) -> float:
        """Shortest spacing of the cycles' first edges (s) for which no gate is lost or mixed.

        The second edge plus the longer of the dwell and its own gate (GD + GW), plus margin.
        """
        close = self.trigger_offsets()[-1]
        return close + max(self.dwell_time, self.gate_delay + self.gate_time) + CLOSE_MARGIN_S

    # --- counting ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start (or resume) counting (``CS``)."""
        self.write("CS")

    def stop(self) -> None:
        """Pause counting (``CH``)."""
        self.write("CH")

    def reset_counters(self) -> None:
        """Reset the counters and the scan buffer (``CR``)."""
        self.write("CR")
        self._scan[0] = 1

    def configure_gated(self, gate_time: float, gate_delay: float = 0.0,
                        periods: int = MAX_PERIODS, dwell_time: float = DWELL_MIN_S) -> None:
        """Set up one counted gate per cycle on the edges of `trigger_offsets()`; then `arm()`.

        CM 0 (A,B for T preset), CI 0,1 (A <- INPUT 1, the PMT), CI 2,3 (T <- TRIG), CP 2,1
        (one gate per count period: two edges, the N+1 rule), GM 0,1 (gate A FIXED), GD/GW
        (the detection window), NP `periods`, NE 0 (scan end STOP, as the manual advises
        against hangs), DT `dwell_time`; each set is checked (``SS 7``). Nothing is written
        if an argument is out of range.
        """
        if not (isinstance(periods, int) or (isinstance(periods, float)
                                             and periods.is_integer())) or not (
                1 <= periods <= MAX_PERIODS):
            raise ValueError(f"periods must be an integer in [1, {MAX_PERIODS}], got "
                             f"{periods!r}")
        if not GATE_MIN_S <= gate_time <= GATE_MAX_S:
            raise ValueError(f"gate time must be within [{GATE_MIN_S}, {GATE_MAX_S}] s, "
                             f"got {gate_time!r}")
        if not 0.0 <= gate_delay <= GATE_MAX_S:
            raise ValueError(f"gate delay must be within [0, {GATE_MAX_S}] s, got "
                             f"{gate_delay!r}")
        if not DWELL_MIN_S <= dwell_time <= DWELL_MAX_S:
            raise ValueError(f"dwell time must be within [{DWELL_MIN_S}, {DWELL_MAX_S}] s, "
                             f"got {dwell_time!r}")
        self.counting_mode = "A,B"
        self.counter_a_input = "input1"
        self.counter_t_input = "trig"
        self.t_preset = 1
        self.gate_mode = "fixed"
        self.gate_delay = gate_delay
        self.gate_time = gate_time
        self.periods = int(periods)
        self.scan_restart = False
        self.dwell_time = dwell_time

    @property
    def periods(self) -> int:
        """N PERIODS, the count periods (gates) in one scan (int 1..2000)."""
        reply = self.ask("NP")
        if not (reply.isascii() and reply.isdigit() and 1 <= int(reply) <= MAX_PERIODS):
            raise ReplyError(self.name, f"bad N PERIODS reply {reply!r}")
        self._scan[1] = int(reply)
        return int(reply)

    @periods.setter
    def periods(self, n: int) -> None:
        if not (isinstance(n, int) or (isinstance(n, float) and n.is_integer())) or not (
                1 <= n <= MAX_PERIODS):
            raise ValueError(f"periods must be an integer in [1, {MAX_PERIODS}], got {n!r}")
        self.write(f"NP {int(n)}")
        self.check_set_errors()
        self._scan[1] = int(n)

    def arm(self) -> None:
        """Reset and start the counters (``CR``, ``CS``); the next `count()` reads scan point 1.

        Reads N PERIODS back so that `count()` re-arms after the scan's last point. Call it
        before the first cycle's edges: the first period begins at the first TRIG edge after
        ``CS``.
        """
        self.reset_counters()
        self.start()
        self.check_set_errors()
        self.periods  # noqa: B018 - refreshes the cached scan length

    def count(self) -> int:
        """Return the counts of this cycle's detection gate: ONE ``QA m`` query (hot path).

        After the scan's last point (N PERIODS) the unit is paused (scan end STOP); the same
        call re-arms it with one more exchange, ``CR;CS;SS 7`` (reset, start, command-error
        bit), so that the unit has re-armed before `count()` returns and the next cycle's
        first edge opens point 1 (once per N PERIODS cycles).
        """
        scan = self._scan
        m = scan[0]
        reply = self._exchange(self._queries[m])
        if reply.isdigit() and reply.isascii():
            value = int(reply)
        else:  # a GPIB CR LF read to CR leaves the LF in front of the next reply
            value = parse_count(reply.strip("\r\n"), self.name)
            if value is None:
                value = self._poll(m)
        if m < scan[1]:
            scan[0] = m + 1
        else:
            scan[0] = 1
            self._rearm()
        return value

    def _rearm(self) -> None:
        reply = self._exchange("CR;CS;SS 7").strip("\r\n")
        if reply != "0":
            if reply == "1":
                raise InstrumentError(self.name, "re-arm rejected (status bit 7)", code="SS7")
            if not reply:
                raise InstrumentTimeout(self.name, "no reply to the re-arm")
            raise ReplyError(self.name, f"bad status reply {reply!r}")

    def _poll(self, m: int) -> int:
        deadline = time.monotonic() + self.count_timeout_s
        while True:
            if time.monotonic() >= deadline:
                raise InstrumentTimeout(self.name, f"scan point {m} not complete "
                                                   f"after {self.count_timeout_s} s")
            self._sleep(self.poll_s)
            value = parse_count(self.ask(self._queries[m]), self.name)
            if value is not None:
                return value

    @property
    def current_count(self) -> int:
        """Counter A's present contents (``XA``; zero while reset, paused or dwelling)."""
        value = parse_count(self.ask("XA"), self.name)
        if value is None:
            raise ReplyError(self.name, "XA answered -1")
        return value

    @property
    def next_point(self) -> int:
        """The scan point the next `count()` reads (1..periods)."""
        return self._scan[0]

    # --- liveness -------------------------------------------------------------------------------
    def ping(self) -> bool:
        """Return True when ``NP`` (side-effect-free) answers a number 1..2000."""
        try:
            reply = self.ask("NP")
        except (InstrumentError, InstrumentTimeout, OSError, VisaIOError):
            return False
        return reply.isdigit() and 1 <= int(reply) <= MAX_PERIODS

    def close(self) -> None:
        """Release the port."""
        self.adapter.close()
