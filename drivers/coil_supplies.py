"""Coil supplies for the quantisation field: Keysight E36312A and Rigol DP832, same API.

Both run the coils in constant-current mode: `voltage_setpoint` is the compliance, and the
field is set by `current_setpoint` (A). Every channel has the family's names (STYLE §2):
`current` (measured, A), `current_setpoint` (programmed, A), `current_limit` (the configured
hard limit, A), `output_enabled`, `voltage_setpoint` (V), plus `max_step` and the ramps.

Safety no call can exceed (docs/decisions/0102-coil-current-safety.md):

- `current_limit` is fixed when the driver is built (constructor / config: a float for every
  channel or a dict per channel, never above the channel's rating) and cannot be raised later;
- `current_setpoint` raises ValueError, before any byte is written, for a value below 0, above
  the limit, or more than `max_step` = ``slew_a_per_s * step_interval_s`` away from the last
  setpoint (read from the unit the first time);
- turning an output on with a setpoint above `max_step` is refused (it would be a step),
  unless the output is already on (then nothing changes: a supply left on by the last run);
- a setpoint above the limit (a unit found so) may only come down;
- `ramp(target_a)` is a generator that performs each step and yields the delay (s) before the
  next: ``for d in supply.ch_2.ramp(0.4): yield env.timeout(d)`` in a SimPy process, or
  ``supply.ch_2.ramp_to(0.4)`` (``time.sleep`` by default) in a script.

Every set is followed by ``SYST:ERR?``; a non-zero error raises `InstrumentError` with the
SCPI code (PROTOCOLS.md "SCPI coil supplies").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

from pymeasure.instruments import Channel, Instrument, SCPIMixin
from pymeasure.instruments.keysight.keysightE36312A import KeysightE36312A, VoltageChannel
from pymeasure.instruments.validators import strict_range

from ionclock.drivers.common import LinkMixin, ScpiErrorQueueMixin, parse_number
from ionclock.drivers.common import parse_scpi_error as parse_scpi_error  # re-exported
from ionclock.errors import ReplyError


class _SupplyErrors(ScpiErrorQueueMixin, LinkMixin):
    """What both supplies share: the error queue, `ping()` / `close()`, the lean `query`.

    ``SYST:ERR?`` after every set drains the queue (up to `MAX_ERRORS_READ` entries) and
    raises on the first non-zero code.
    """

    def query(self, command: str) -> str:
        """One query line, one reply line, straight through the adapter (decision 0100).

        The monitored readbacks (`current`, `voltage`) use it: the same bytes as `ask`,
        without pymeasure's per-call logging and wrapper layers.
        """
        adapter = self.adapter
        adapter._write(command)
        return adapter._read()


class CoilChannelMixin:
    """Safety and ramps of one coil channel; the concrete channel supplies the commands.

    Subclasses define `_current_set_cmd` / `_current_get_cmd` (format with ``ch`` and
    ``value``), `_output_set_cmd` (``ch``, ``state``), `_output_get_cmd` (``ch``) and
    `_parse_output(reply)`; `rating_a` gives the channel's own maximum current.
    """

    # pymeasure's CommonBase.__getattribute__ only forbids reading the reserved names of
    # dynamic properties directly (pymeasure itself reads them through their prefix);
    # skipping it halves the cost of a channel query (decision 0100).
    __getattribute__ = object.__getattribute__

    _current_set_cmd: str
    _current_get_cmd: str
    _output_set_cmd: str
    _output_get_cmd: str
    _current_meas_cmd: str
    _voltage_meas_cmd: str
    _on: str = "1"
    _off: str = "0"
    resolution_a: float = 1e-6
    _decimals: int = 6

    def configure_safety(self, limit_a: float, slew_a_per_s: float, step_interval_s: float,
                         rating_a: float) -> None:
        """Fix the hard limit (A) and the slew (A/s per step interval s); called once."""
        if getattr(self, "_safety", None) is not None:
            raise RuntimeError("the safety limits of a channel are fixed once set")
        for name, value in (("current limit", limit_a), ("slew", slew_a_per_s),
                            ("step interval", step_interval_s)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if limit_a > rating_a:
            raise ValueError(f"current limit {limit_a} A exceeds channel {self.id}'s rating "
                             f"of {rating_a} A")
        res = self.resolution_a
        max_step = float(slew_a_per_s) * float(step_interval_s)
        # Setpoints are handled in integer units of the programming resolution, so that what
        # is checked is exactly what goes on the wire (no rounding can add to a step).
        step_units = math.floor(max_step / res + 1e-9)
        if step_units < 1:
            raise ValueError(f"slew * step interval = {max_step:g} A is below the "
                             f"{res:g} A programming resolution")
        self._safety = (float(limit_a), max_step, float(step_interval_s),
                        math.floor(limit_a / res + 1e-9), step_units)
        self._setpoint_u: list[int | None] = [None]

    # --- the family's names ---------------------------------------------------------------
    @property
    def current_limit(self) -> float:
        """The configured hard current limit in A (fixed at construction; read-only)."""
        return self._safety[0]

    @property
    def max_step(self) -> float:
        """The largest allowed setpoint change in A (slew_a_per_s * step_interval_s)."""
        return self._safety[1]

    @property
    def step_interval(self) -> float:
        """The ramp's default step interval in s."""
        return self._safety[2]

    def _text(self, units: int) -> str:
        text = f"{units * self.resolution_a:.{self._decimals}f}".rstrip("0").rstrip(".")
        return text or "0"

    def _known_units(self) -> int:
        units = self._setpoint_u[0]
        if units is None:
            self.current_setpoint  # noqa: B018 - reads the unit's setpoint back
            units = self._setpoint_u[0]
        return units

    @property
    def current_setpoint(self) -> float:
        """Programmed output current in A (the CC setpoint); set with the safety checks."""
        value = parse_number(self.ask(self._current_get_cmd.format(ch=self.id)),
                             self.parent.name, "current setpoint")
        self._setpoint_u[0] = round(value / self.resolution_a)
        return value

    @current_setpoint.setter
    def current_setpoint(self, amps: float) -> None:
        self._check_target(amps)
        self._set_units(round(amps / self.resolution_a))

    def _set_units(self, units: int) -> None:
        previous = self._known_units()
        # above the limit only on the way down: a unit found above it (set by hand, or the
        # limit lowered in the config since) is ramped back under it, never further up
        if units > self._safety[3] and units >= previous:
            raise ValueError(f"channel {self.id}: {self._text(units)} A is above the "
                             f"configured limit {self.current_limit:g} A")
        if abs(units - previous) > self._safety[4]:
            raise ValueError(f"channel {self.id}: step {self._text(previous)} A -> "
                             f"{self._text(units)} A exceeds the maximum step "
                             f"{self.max_step:g} A; use ramp()/ramp_to()")
        self.write(self._current_set_cmd.format(ch=self.id, value=self._text(units)))
        self._setpoint_u[0] = units
        self.check_set_errors()

    def _check_target(self, amps: float) -> None:
        if (isinstance(amps, bool) or not isinstance(amps, (int, float))
                or not 0.0 <= amps <= self.current_limit):
            raise ValueError(f"channel {self.id}: current must be within "
                             f"[0, {self.current_limit:g}] A (the configured limit), "
                             f"got {amps!r}")

    @property
    def output_enabled(self) -> bool:
        """Whether the output is on (bool); turning on needs a setpoint within one step.

        An output that is already on may be set on again at any setpoint: nothing changes.
        """
        return self._parse_output(self.ask(self._output_get_cmd.format(ch=self.id)))

    @output_enabled.setter
    def output_enabled(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise ValueError(f"output_enabled takes True or False, got {on!r}")
        if on:
            units = self._known_units()
            # (the state is read only where it decides: turning on above one step)
            if units > self._safety[4] and not self.output_enabled:
                raise ValueError(f"channel {self.id}: turning on at {self._text(units)} A "
                                 f"would step "
                                 f"the coil current by more than {self.max_step:g} A; set "
                                 "current_setpoint to 0 first, then ramp")
        self.write(self._output_set_cmd.format(ch=self.id, state=self._on if on else self._off))
        self.check_set_errors()

    @property
    def current(self) -> float:
        """Measured output current in A (0 when the output is off)."""
        return parse_number(self.parent.query(self._current_meas_cmd.format(ch=self.id)),
                            self.parent.name, "current")

    @property
    def voltage(self) -> float:
        """Measured output voltage in V."""
        return parse_number(self.parent.query(self._voltage_meas_cmd.format(ch=self.id)),
                            self.parent.name, "voltage")

    # --- ramps ---------------------------------------------------------------------------------
    def ramp(self, target_a: float, dt_s: float | None = None) -> Iterator[float]:
        """Step the setpoint to `target_a`, yielding the delay (s) before each next step.

        Steps are at most ``min(slew * dt_s, max_step)`` (whole units of the programming
        resolution, at least one); the target is checked against the limit before the first
        step. Nothing is yielded after the last step.
        """
        self._check_target(target_a)
        dt = self.step_interval if dt_s is None else dt_s
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt_s must be a positive number of seconds, got {dt_s!r}")
        return self._ramp(float(target_a), float(dt))

    def _ramp(self, target: float, dt: float) -> Iterator[float]:
        res = self.resolution_a
        step = max(1, min(math.floor(self.max_step * dt / self.step_interval / res + 1e-9),
                          self._safety[4]))
        goal = round(target / res)
        current = self._known_units()
        while current != goal:
            delta = goal - current
            current = goal if abs(delta) <= step else current + (step if delta > 0 else -step)
            self._set_units(current)
            if current != goal:
                yield dt

    def ramp_to(self, target_a: float, sleep: Callable[[float], None] = time.sleep,
                dt_s: float | None = None) -> None:
        """Ramp to `target_a` (A) blocking, calling `sleep(dt)` between steps."""
        for delay in self.ramp(target_a, dt_s):
            sleep(delay)

    def ramp_down_and_disable(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Ramp the current to 0 A, then turn the output off."""
        self.ramp_to(0.0, sleep)
        self.output_enabled = False


# --- Keysight E36312A ------------------------------------------------------------------------
E36312A_RATINGS = {1: (6.0, 5.0), 2: (25.0, 1.0), 3: (25.0, 1.0)}  # (V, A)


class CoilChannelE36312A(CoilChannelMixin, VoltageChannel):
    """One E36312A output driving a coil (``CURR <A>, (@n)``)."""

    _current_set_cmd = "CURR {value}, (@{ch})"
    _current_get_cmd = "CURR? (@{ch})"
    _output_set_cmd = "OUTP {state}, (@{ch})"
    _output_get_cmd = "OUTP? (@{ch})"

    voltage_setpoint = Channel.control(
        "VOLT? (@{ch})", "VOLT %g, (@{ch})",
        """Control the compliance voltage in V (range depends on channel).""",
        validator=strict_range, values=[0, 25], dynamic=True, check_set_errors=True)

    _current_meas_cmd = "MEAS:CURR? (@{ch})"
    _voltage_meas_cmd = "MEAS:VOLT? (@{ch})"

    # VoltageChannel (pymeasure) names the CURR setting `current_limit`; here that name is
    # the configured hard limit, and the CC setpoint is `current_setpoint`.
    current_limit = CoilChannelMixin.current_limit
    output_enabled = CoilChannelMixin.output_enabled
    current = CoilChannelMixin.current
    voltage = CoilChannelMixin.voltage

    def _parse_output(self, reply: str) -> bool:
        if reply.strip() in ("0", "1"):
            return reply.strip() == "1"
        raise ReplyError(self.parent.name, f"bad output state reply {reply!r}")


def _per_channel(value: float | dict[int, float] | None, ratings: dict[int, float],
                 what: str) -> dict[int, float]:
    if value is None:
        return dict(ratings)
    if isinstance(value, dict):
        unknown = set(value) - set(ratings)
        if unknown:
            raise ValueError(f"{what}: no channel {sorted(unknown)} (channels "
                             f"{sorted(ratings)})")
        return {ch: value.get(ch, ratings[ch]) for ch in ratings}
    return {ch: value for ch in ratings}


class CoilSupplyE36312A(_SupplyErrors, KeysightE36312A):
    """Keysight E36312A triple supply driving the quantisation-field coils (CC mode).

    Parameters
    ----------
    current_limit_a:
        Hard current limit(s) in A: one float for all channels or ``{channel: A}``;
        default the channel ratings (5, 1, 1 A). Never above a rating.
    slew_a_per_s, step_interval_s:
        Ramp rate and step interval; the largest single step is their product.
    """

    __getattribute__ = object.__getattribute__   # see CoilChannelMixin

    write_termination = "\n"
    read_termination = "\n"

    ch_1 = Instrument.ChannelCreator(CoilChannelE36312A, 1)
    ch_2 = Instrument.ChannelCreator(CoilChannelE36312A, 2)
    ch_3 = Instrument.ChannelCreator(CoilChannelE36312A, 3)

    def __init__(self, adapter, name: str = "Keysight E36312A", *,
                 current_limit_a: float | dict[int, float] | None = None,
                 slew_a_per_s: float = 0.1, step_interval_s: float = 0.1, **kwargs):
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        super().__init__(adapter, name, **kwargs)
        ratings = {ch: amps for ch, (_, amps) in E36312A_RATINGS.items()}
        limits = _per_channel(current_limit_a, ratings, "current_limit_a")
        for ch, channel in self.channels.items():
            channel.voltage_setpoint_values = [0, E36312A_RATINGS[ch][0]]
            channel.configure_safety(limits[ch], slew_a_per_s, step_interval_s, ratings[ch])

    def _ping_query(self) -> bool:
        """True when ``*IDN?`` answers with a Keysight E36312A identity."""
        return "E36312A" in self.ask("*IDN?")


# --- Rigol DP832 ------------------------------------------------------------------------------
DP832_RATINGS = {1: (30.0, 3.0), 2: (30.0, 3.0), 3: (5.0, 3.0)}  # (V, A)
DP832_OCP_RANGE = (0.001, 3.3)  # A; QCoDeS rigol/Rigol_DP832.py ocp_ranges_std


class CoilChannelDP832(CoilChannelMixin, Channel):
    """One DP832 output driving a coil (``:INST:NSEL n;:SOUR:CURR:LEV:IMM:AMPL <A>``).

    The DP832 programs current in 1 mA steps: choose the slew so steps are multiples of it.
    """

    _current_set_cmd = ":INST:NSEL {ch};:SOUR:CURR:LEV:IMM:AMPL {value}"
    _current_get_cmd = ":INST:NSEL {ch};:SOUR:CURR:LEV:IMM:AMPL?"
    _output_set_cmd = ":OUTP:STAT CH{ch},{state}"
    _output_get_cmd = ":OUTP:STAT? CH{ch}"
    _on = "ON"
    _off = "OFF"
    resolution_a = 1e-3  # the DP832 programs current in 1 mA steps
    _decimals = 3

    voltage_setpoint = Channel.control(
        ":INST:NSEL {ch};:SOUR:VOLT:LEV:IMM:AMPL?", ":INST:NSEL {ch};:SOUR:VOLT:LEV:IMM:AMPL %g",
        """Control the compliance voltage in V (0..30 on CH1/CH2, 0..5 on CH3).""",
        validator=strict_range, values=[0, 30], dynamic=True, check_set_errors=True)

    _current_meas_cmd = ":MEAS:CURR:DC? CH{ch}"
    _voltage_meas_cmd = ":MEAS:VOLT:DC? CH{ch}"

    output_mode = Channel.measurement(
        ":OUTP:MODE? CH{ch}",
        """Get the regulation mode: 'CC', 'CV' or 'UR' (unregulated), as the unit words it.

        Meaningful only while the output is on: with it off, units are reported to answer
        'CV' (instro's DP800 driver) where the guide names no reading; `output_enabled`
        says whether the output is on.""",
        cast=str)

    def _parse_output(self, reply: str) -> bool:
        if reply.strip() in ("ON", "OFF"):
            return reply.strip() == "ON"
        raise ReplyError(self.parent.name, f"bad output state reply {reply!r}")

    def enable_overcurrent_protection(self, level_a: float | None = None) -> None:
        """Arm the unit's own OCP at `level_a` (default: the hard limit), a second guard.

        The level must be within the unit's OCP range, 0.001 to 3.3 A (`DP832_OCP_RANGE`);
        ValueError before any byte is written otherwise.
        """
        level = self.current_limit if level_a is None else level_a
        low, high = DP832_OCP_RANGE
        if (isinstance(level, bool) or not isinstance(level, (int, float))
                or not low <= level <= high):
            raise ValueError(f"OCP level must be within [{low:g}, {high:g}] A, got {level!r}")
        self.write(f":INST:NSEL {self.id};:SOUR:CURR:PROT:LEV {level:g}")
        self.check_set_errors()
        self.write(f":INST:NSEL {self.id};:SOUR:CURR:PROT:STAT ON")
        self.check_set_errors()


class CoilSupplyDP832(_SupplyErrors, SCPIMixin, Instrument):
    """Rigol DP832 triple supply driving the quantisation-field coils (CC mode).

    Same constructor options and channel API as `CoilSupplyE36312A`.
    """

    __getattribute__ = object.__getattribute__   # see CoilChannelMixin

    write_termination = "\n"
    read_termination = "\n"
    error_query = ":SYST:ERR?"

    ch_1 = Instrument.ChannelCreator(CoilChannelDP832, 1)
    ch_2 = Instrument.ChannelCreator(CoilChannelDP832, 2)
    ch_3 = Instrument.ChannelCreator(CoilChannelDP832, 3)

    def __init__(self, adapter, name: str = "Rigol DP832", *,
                 current_limit_a: float | dict[int, float] | None = None,
                 slew_a_per_s: float = 0.1, step_interval_s: float = 0.1, **kwargs):
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        super().__init__(adapter, name, **kwargs)
        ratings = {ch: amps for ch, (_, amps) in DP832_RATINGS.items()}
        limits = _per_channel(current_limit_a, ratings, "current_limit_a")
        for ch, channel in self.channels.items():
            channel.voltage_setpoint_values = [0, DP832_RATINGS[ch][0]]
            channel.configure_safety(limits[ch], slew_a_per_s, step_interval_s, ratings[ch])

    def _ping_query(self) -> bool:
        """True when ``*IDN?`` answers with a Rigol DP832 identity."""
        return "DP832" in self.ask("*IDN?")
