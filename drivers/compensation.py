"""The micromotion-compensation electrodes' supply: a Keysight E36312A in constant voltage.

Stray fields push the ion off the RF null; DC voltages on three compensation electrodes push it
back (DOMAIN §3: "compensation-electrode voltages optimised after each LN2 refill"). Each
E36312A output (floating, isolated) drives one electrode against the trap's DC ground in
constant-voltage mode: an electrode draws no current, so the current setting is only a
protective limit (`current_limit_a`, 10 mA by default) and the output sits at
`voltage_setpoint`. Electrode j is output j (1: 0-6 V, 2 and 3: 0-25 V, the unit's ratings);
`max_v` narrows the range a program may set (the trap's electrodes, not the supply's rating).

The commands are pymeasure's `KeysightE36312A` channel controls (``VOLT %g, (@n)``,
``CURR %g, (@n)``, ``OUTPut %d, (@n)``, ``MEASure:VOLTage? (@n)``; Keysight E36300 Series
Programming Guide, the same as drivers/coil_supplies.py cites), each set followed by
``SYST:ERR?`` (an error raises `InstrumentError`).
"""

from __future__ import annotations

import math

from pymeasure.instruments import Channel, Instrument
from pymeasure.instruments.keysight.keysightE36312A import KeysightE36312A, VoltageChannel
from pymeasure.instruments.validators import strict_range

from ionclock.drivers.coil_supplies import E36312A_RATINGS, _SupplyErrors

#: Current limit of an electrode output (A): an electrode draws none, a short trips at once.
ELECTRODE_LIMIT_A = 0.010


class ElectrodeChannelE36312A(VoltageChannel):
    """One E36312A output driving a compensation electrode (constant voltage)."""

    voltage_setpoint = Channel.control(
        "VOLT? (@{ch})", "VOLT %g, (@{ch})",
        """Control the electrode's voltage in V (0 to the channel's max_v).""",
        validator=strict_range, values=[0, 25], dynamic=True, check_set_errors=True)
    current_limit = Channel.control(
        "CURR? (@{ch})", "CURR %g, (@{ch})",
        """Control the protective current limit in A.""",
        validator=strict_range, values=[0, 1], dynamic=True, check_set_errors=True)
    output_enabled = Channel.control(
        "OUTP? (@{ch})", "OUTP %d, (@{ch})",
        """Control whether the output is on (bool).""",
        map_values=True, values={True: 1, False: 0}, check_set_errors=True)
    voltage = Channel.measurement(
        "MEAS:VOLT? (@{ch})", """Measure the output's voltage in V.""")

    def set_voltage(self, volts: float) -> float:
        """Put the electrode at `volts` (V, output on); return the voltage read back."""
        if not (isinstance(volts, (int, float)) and math.isfinite(volts)):
            raise ValueError(f"voltage must be a finite number of volts, got {volts!r}")
        hi = self.max_v
        if not 0.0 <= volts <= hi:
            raise ValueError(f"electrode {self.id}: {volts} V is outside 0 to {hi} V")
        self.voltage_setpoint = volts
        if not self.output_enabled:
            self.current_limit = self.parent.electrode_current_limit_a
            self.output_enabled = True
        return float(self.voltage)


class CompensationSupplyE36312A(_SupplyErrors, KeysightE36312A):
    """Keysight E36312A driving the three compensation electrodes (module docstring).

    Parameters
    ----------
    max_v: the highest voltage a program may set, one float for every output or
        ``{channel: V}``; never above a channel's rating (6, 25, 25 V).
    current_limit_a: the outputs' protective current limit (A).
    """

    write_termination = "\n"
    read_termination = "\n"

    ch_1 = Instrument.ChannelCreator(ElectrodeChannelE36312A, 1)
    ch_2 = Instrument.ChannelCreator(ElectrodeChannelE36312A, 2)
    ch_3 = Instrument.ChannelCreator(ElectrodeChannelE36312A, 3)

    def __init__(self, adapter, name: str = "Keysight E36312A (compensation)", *,
                 max_v: float | dict[int, float] | None = None,
                 current_limit_a: float = ELECTRODE_LIMIT_A, **kwargs):
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        super().__init__(adapter, name, **kwargs)
        for ch, channel in self.channels.items():
            rating = E36312A_RATINGS[ch][0]
            v = max_v.get(ch, rating) if isinstance(max_v, dict) else (max_v or rating)
            if not 0 < v <= rating:
                raise ValueError(f"max_v of channel {ch}: {v} V is not within (0, {rating}] V")
            channel.voltage_setpoint_values = [0, v]
            channel.max_v = v
        if not 0 < current_limit_a <= 1.0:
            raise ValueError(f"current_limit_a {current_limit_a!r}: expected (0, 1] A")
        self.electrode_current_limit_a = current_limit_a

    def voltages(self) -> tuple[float, float, float]:
        """The three electrodes' measured voltages (V; 0 where an output is off)."""
        return tuple(float(getattr(self, f"ch_{j}").voltage) for j in (1, 2, 3))

    def _ping_query(self) -> bool:
        """True when ``*IDN?`` answers with a Keysight E36312A identity."""
        return "E36312A" in self.ask("*IDN?")
