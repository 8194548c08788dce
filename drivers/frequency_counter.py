"""Pendulum CNT-91 frequency counter: the comb beat that puts the clock laser on the absolute scale.

The lab's frequency reference is a comb referenced to a maser; the clock laser's beat with
the nearest comb line, counted, gives the laser's absolute frequency (servo/clock_output.py).
This driver subclasses pymeasure's `CNT91` (docs/decisions/0304), which has the gate time,
continuous mode, output format, arming and buffered time series; the clock adds single
checked readings. Sources: the CNT-90/91 Programmer's Handbook (4031 600 90201, ninth
edition; page numbers below are its own), and pymeasure's tests of its CNT91 class.

Link: USB (USBTMC, vendor 0x14EB) or GPIB; SCPI 1991 and IEEE 488.2 (handbook ch. 3: it is an
SCPI instrument, so the driver initialises pymeasure's class without its "SCPI unknown"
warning). Messages end with LF (p. 3-7: NL, or NL with END; responses end NL^END).

Commands used:

- ``:CONF:FREQ (@n)`` (p. 8-28; the inputs as for :MEASure:FREQuency?, p. 8-60): configure
  a frequency measurement on input n (1 A, 2 B, 3 C, 4 E, 6 the internal reference).
  CONFigure, like MEASure?, puts every other setting back to its ``*RST`` value (p. 8-56),
  so the driver sends it first.
- ``:ACQ:APER <s>`` (p. 8-92): the gate ("measurement time"), 20 ns to 1000 s; ``*RST`` 10 ms.
- ``:SYST:TOUT 1`` and ``:SYST:TOUT:TIME <s>`` (p. 8-118/119: 0.01 to 1000 s, 10 ms
  resolution; ``*RST`` off and 0.1 s): without a timeout a measurement with no signal waits
  for ever; with it the counter gives up and answers with an invalid-result marker instead
  of a value: an empty line in its native GPIB mode, ``9.91E37`` in compatible mode
  (table at :FETCh:ARRay?, p. 8-36), and sets the timeout bit of STATus:QUEStionable.
- ``:READ?`` (p. 8-88): ``:ABORt;:INITiate;:FETCh?``, one new measurement and its result.
- ``:INIT`` (p. 8-44) and ``:FETC?`` (p. 8-34): start, then fetch. FETCh? "does not work
  unless a measurement has been made"; during a measurement it completes when the result is
  valid; with none started "an error is returned" (-230 "Data corrupt or stale", ch. 7).
- ``:SYST:ERR?`` (p. 3-17; the codes in ch. 7, "Error Messages"): ``<code>,"<text>"`` in
  order, ``0,"No error"`` when the queue is empty.
- ``*IDN?`` (p. 8-133): ``<manufacturer>, <model>, <serial>, <firmware>``; a CNT-91R also
  answers ``CNT-91``.

Results are in Hz. An invalid-result reply (empty line or ±9.91E37) becomes `Missing` (a NaN
with the reason, decision 0200) after the error queue has been read: an error queued there
(e.g. -230 to a FETCh? with nothing measured) raises `InstrumentError` instead.
"""

from __future__ import annotations

from typing import Any

from pymeasure.instruments import Instrument
from pymeasure.instruments.generic_types import SCPIUnknownMixin
from pymeasure.instruments.pendulum import CNT91
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from ionclock.drivers.common import LinkMixin, ScpiErrorQueueMixin, parse_number
from ionclock.errors import ReplyError
from ionclock.physics.rtd import Missing

NAME = "Pendulum CNT-91"

#: Largest magnitude of a real result; the compatible-mode invalid marker is 9.91E37.
INVALID_MARKER = 9.9e37

MIN_GATE_S, MAX_GATE_S = 2e-8, 1000.0         # :ACQ:APER, p. 8-92
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.01, 1000.0   # :SYST:TOUT:TIME, p. 8-119


class FrequencyCounterCNT91(ScpiErrorQueueMixin, LinkMixin, CNT91):
    """Pendulum CNT-91 counting the comb beat; `frequency` (Hz) one checked measurement.

    `configure_frequency(channel, gate_time_s, timeout_s)` sets the measurement up once;
    `frequency` then measures (``:READ?``); `initiate()` + `fetch()` split it. Errors from
    ``:SYST:ERR?`` raise `InstrumentError` (code = the SCPI code).
    """

    # No dynamic properties here: pymeasure's attribute hook only guards their names, and
    # skipping it saves ~0.3 us per attribute access (docs/decisions/0100).
    __getattribute__ = object.__getattribute__

    write_termination = "\n"
    read_termination = "\n"
    error_query = ":SYST:ERR?"

    timeout_enabled = Instrument.control(
        ":SYST:TOUT?", ":SYST:TOUT %d",
        """Control whether a measurement without a signal gives up after
        `measurement_timeout` (bool; :SYST:TOUT, ``*RST`` off).""",
        validator=strict_discrete_set, values={True: 1, False: 0}, map_values=True,
        cast=int, check_set_errors=True)

    measurement_timeout = Instrument.control(
        ":SYST:TOUT:TIME?", ":SYST:TOUT:TIME %.2f",
        """Control the measurement timeout in s (float, 0.01 to 1000; 10 ms resolution).""",
        validator=strict_range, values=(MIN_TIMEOUT_S, MAX_TIMEOUT_S), check_set_errors=True)

    def __init__(self, adapter: Any, name: str = NAME, **kwargs: Any):
        # CNT91 derives from SCPIUnknownMixin (a FutureWarning); the CNT-91 is an SCPI
        # instrument (Programmer's Handbook ch. 3), so initialise through SCPIMixin directly.
        super(SCPIUnknownMixin, self).__init__(adapter, name, **kwargs)

    # --- set-up ----------------------------------------------------------------------------
    def configure_frequency(self, channel: str = "A", gate_time_s: float = 1.0,
                            timeout_s: float | None = None) -> None:
        """Set up frequency measurements on `channel` (A, B, C, E, INTREF) with a gate in s.

        Sends ``:CONF:FREQ (@n)`` first (it resets the rest to ``*RST``), then the gate and a
        measurement timeout (default: twice the gate plus 0.1 s, within 0.01–1000 s), then
        reads the error queue.
        """
        if channel not in self.CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(self.CHANNELS)}, "
                             f"got {channel!r}")
        gate = float(gate_time_s)
        if not MIN_GATE_S <= gate <= MAX_GATE_S:
            raise ValueError(f"gate_time_s must be {MIN_GATE_S:g} to {MAX_GATE_S:g} s, "
                             f"got {gate_time_s!r}")
        timeout = min(MAX_TIMEOUT_S, 2.0 * gate + 0.1) if timeout_s is None else float(
            timeout_s)
        if not MIN_TIMEOUT_S <= timeout <= MAX_TIMEOUT_S:
            raise ValueError(f"timeout_s must be {MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g} s, "
                             f"got {timeout_s!r}")
        self.write(f":CONF:FREQ (@{self.CHANNELS[channel]})")
        self.write(f":ACQ:APER {gate:.9g}")
        self.write(":SYST:TOUT 1")
        self.write(f":SYST:TOUT:TIME {timeout:.2f}")
        self.check_errors()

    def read(self, **kwargs: Any) -> str:
        """Read one reply line; bytes that are not ASCII are a `ReplyError`."""
        try:
            return super().read(**kwargs)
        except UnicodeDecodeError:
            raise ReplyError(self.name, "non-ASCII bytes in the reply") from None

    # --- measurements ----------------------------------------------------------------------
    def _result(self, reply: str, command: str) -> float:
        text = reply.strip()
        if text == "":
            self.check_errors()      # an error queued with it (e.g. -230) raises here
            return Missing(f"no valid result to {command}: the measurement timed out "
                           "(no signal at the input?)")
        value = parse_number(text, self.name, command)
        if abs(value) >= INVALID_MARKER:
            self.check_errors()
            return Missing(f"invalid result {text} to {command}: the measurement timed out "
                           "(no signal at the input?)")
        return value

    @property
    def frequency(self) -> float:
        """Measure one frequency in Hz with the present set-up (``:READ?``), or `Missing`."""
        return self._result(self.ask(":READ?"), ":READ?")

    def initiate(self) -> None:
        """Start one measurement (``:INIT``); `fetch()` returns its result."""
        self.write(":INIT")

    def fetch(self) -> float:
        """Return the last measurement's result in Hz (``:FETC?``), or `Missing`.

        With no measurement made the counter queues -230 and this raises `InstrumentError`.
        """
        return self._result(self.ask(":FETC?"), ":FETC?")

    @property
    def identity(self) -> str:
        """Get the identification (``*IDN?``: manufacturer, model, serial, firmware)."""
        return self.ask("*IDN?").strip()

    def _ping_query(self) -> bool:
        """True if the unit identifies as a CNT-9x counter."""
        fields = [f.strip().upper() for f in self.identity.split(",")]
        if len(fields) < 2:
            raise ReplyError(self.name, f"bad *IDN? reply {fields!r}")
        return fields[1].startswith("CNT-9")
