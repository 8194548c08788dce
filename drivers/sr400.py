"""SRS SR400 two-channel gated photon counter: detection counts, one gate per clock cycle.

RS-232 or GPIB; commands are two letters plus comma-separated parameters, ended by CR (or LF);
replies end with CR (the RS-232 default end-of-record; ``SE`` changes it). Set commands answer
nothing: a rejected command sets bit 7 of the status byte (``SS``), which the slow-path
settings read back after each set (SR400 manual, "Remote programming" and "Status byte").

Counting sequence (docs/decisions/0101-sr400-one-query-per-cycle.md): `configure_gated()`
sets counter A on INPUT 1 (the PMT), counter T on TRIG with preset 1 so that each detection
trigger from the pulse sequencer is one count period, gate A FIXED with the gate width as the
detection window, N PERIODS = 2000 and scan end mode START (a new scan follows the last
point). `arm()` resets and starts the counters. Each `count()` then sends ONE query,
``QA m``, which reads scan point m from the unit's buffer: every gate is read exactly once,
without polling the data-ready bit (plain ``QA`` may return the same point twice, and ``SS``
first would double the traffic). A point not yet complete reads ``-1``; `count()` then polls
the same point until `count_timeout_s` runs out.
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
MAX_PERIODS = 2000


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

    dwell_time = Instrument.control(
        "DT", "DT %s", """Control the dwell time between count periods in s (2e-3..60).""",
        validator=strict_range, values=(2e-3, 60.0), set_process=_time_text,
        check_set_errors=True)

    gate_mode = Instrument.control(
        "GM 0", "GM 0,%d", """Control gate A's mode: 'cw', 'fixed' or 'scan'.""",
        validator=strict_discrete_set, map_values=True, values={"cw": 0, "fixed": 1, "scan": 2},
        cast=int, check_set_errors=True)

    gate_delay = Instrument.control(
        "GD 0", "GD 0,%s", """Control gate A's delay after the trigger in s (0..999.2e-3).""",
        validator=strict_range, values=(0.0, GATE_MAX_S), set_process=_time_text,
        check_set_errors=True)

    discriminator_level = Instrument.control(
        "DL 0", "DL 0,%.4f", """Control discriminator A's level in V (-0.3..0.3).""",
        validator=strict_range, values=(-0.3, 0.3), check_set_errors=True)

    status_byte = Instrument.measurement(
        "SS", """Get the status byte (bit 1 data ready, 2 scan finished, 7 command error);
        reading clears it.""", cast=int)

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
        self._queries = [f"QA {m}" for m in range(MAX_PERIODS + 1)]

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
                        periods: int = MAX_PERIODS, dwell_time: float = 2e-3) -> None:
        """Set up one gate per external trigger (the clock's detection pulse); then `arm()`."""
        if not 1 <= periods <= MAX_PERIODS:
            raise ValueError(f"periods must be within [1, {MAX_PERIODS}], got {periods!r}")
        self.counting_mode = "A,B"
        self.counter_a_input = "input1"
        self.counter_t_input = "trig"
        self.t_preset = 1
        self.gate_mode = "fixed"
        self.gate_delay = gate_delay
        self.gate_time = gate_time
        self.periods = periods
        self.scan_restart = True
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
        """Reset and start the counters; the next `count()` reads scan point 1.

        Reads N PERIODS back so that `count()` wraps to point 1 where the unit does.
        """
        self.reset_counters()
        self.start()
        self.check_set_errors()
        self.periods  # noqa: B018 - refreshes the cached scan length

    def count(self) -> int:
        """Return the counts of the next gate: ONE ``QA m`` query per call (hot path)."""
        scan = self._scan
        m = scan[0]
        reply = self._exchange(self._queries[m])
        if reply.isdigit() and reply.isascii():
            value = int(reply)
        else:
            value = parse_count(reply, self.name)
            if value is None:
                value = self._poll(m)
        scan[0] = m + 1 if m < scan[1] else 1
        return value

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
