"""Keithley DAQ6510 with multiplexer cards scanning the clock's PT100s (LAN SCPI).

pymeasure's `KeithleyDAQ6510` is the base; it has no RTD helpers, so this subclass adds them
(DAQ6510 reference manual, SENSe:TEMPerature and ROUTe:SCAN subsystems):

- RTD mode: ``:SENS:FUNC 'TEMP',(@list)``, ``:SENS:TEMP:TRAN TRTD,(@list)`` (3-wire;
  ``FRTD`` 4-wire), ``:SENS:TEMP:RTD:THR PT100,(@list)`` (4-wire: ``:SENS:TEMP:RTD:FOUR``),
  ``:SENS:TEMP:UNIT KELV,(@list)``: the instrument linearises with the IEC 60751 PT100 curve
  and the driver applies each sensor's calibration (`ionclock.physics.rtd.SensorCalibration.apply`).
  The command words are those of DESY's cmstkmodlab driver, which runs real DAQ6510 + 7700
  units (github DESY-FH-ELab/cmstkmodlab, devices/Keithley/KeithleyDAQ6510.cpp).
- Resistance mode: ``:SENS:FUNC 'FRES',(@list)`` (4-wire; ``'RES'`` 2-wire with a lead
  correction): the driver converts with CVD and the sensor's calibration
  (`SensorCalibration.from_resistance`), so the whole chain is the suite's own.

A scan is ``:ROUT:SCAN:CRE (@list)``, then per reading ``:TRAC:CLE 'defbuffer1'``,
``:INIT:IMM``, ``*OPC?`` (waits for the scan), ``:TRAC:ACT?`` (the scan stored N readings) and
``:TRAC:DATA? 1,N,'defbuffer1',CHAN,READ``,
parsed into {channel: value}. The reply is checked strictly: channel numbers must be the scanned
ones, each once; readings must be SCPI NR3 numbers (``±d.ddddddE±dd``), so a truncated or
corrupted line is a `ReplyError`, never a wrong number. The overflow value 9.9E37 (an open
sensor) becomes `Missing`. Device errors are read from ``:SYST:ERR?`` after each configuration
and raised as `InstrumentError` with the SCPI error code.

Channels per card and wiring (`CARDS`, `allowed_channels`): a channel is slot*100 + n.
2-wire measurements (``RES``, a voltage) may use every measurement channel of the card; 3-wire
RTD (``TRTD``) and 4-wire (``FRTD``, ``FRES``) need a sense path through the card's paired
channel, n + `pair_offset`, so only the primaries 1..`pair_offset` may be configured. On the
7700: "Primary channels 1 through 10 become paired to channels 11 through 20" and the 4-wire
functions include "TEMP (4-wire RTD)" (Model 7700 Multiplexer Module Instructions, 077182400,
"Switching module capabilities"); channels 21-22 are current-only. cmstkmodlab's driver (above;
``SetChannelMode``/``ActivateChannel``) likewise puts every RTD mode, 3-wire included, on 7700
channels 1-10 only. A 3-wire RTD on a sense channel (111-120) was accepted by this driver up
to now and reached the unit, which refuses it (the twin answers -221 "Settings conflict"; see
its docstring for why that code); it is now a `ValueError` before any byte is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pymeasure.instruments.keithley.keithleyDAQ6510 import KeithleyDAQ6510

from ionclock.drivers.common import ANY_FAILURE, LinkMixin
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.physics.rtd import NOMINAL, Missing, SensorCalibration, TemperatureReading

NAME = "Keithley DAQ6510"
OVERFLOW = 9.9e37
_NR3 = re.compile(r"[+-]?\d\.\d+E[+-]\d{2}")
_CHANNEL = re.compile(r"\d{3}")
_ERROR = re.compile(r'([+-]?\d+),"([^"]*)"')
#: Slots of a DAQ6510 (two rear card slots).
SLOTS = (1, 2)


@dataclass(frozen=True)
class CardLayout:
    """Measurement channels of one DAQ6510 switching card.

    `channels`: 2-wire measurement channels 1..channels. `pair_offset`: a 3- or 4-wire
    measurement on primary n senses through channel n + pair_offset, so only primaries
    1..pair_offset take 3-/4-wire functions. `current`: current-only channels (no RTD, no
    resistance). `source`: where the layout comes from.
    """

    model: str
    channels: int
    pair_offset: int
    current: tuple[int, ...]
    source: str


#: Cards whose channel layout this driver knows. 7700: Model 7700 Multiplexer Module
#: Instructions (077182400), "Switching module capabilities": channels 1-20 2-pole (or 10
#: 4-pole, 1-10 paired with 11-20), 21-22 current only. 7702/7706/7708: from Keithley's card
#: datasheets as read for this driver (not checked against a stored copy): 7706 20 channels
#: paired like the 7700, no current channels; 7702 40 channels paired n/n+20, current on
#: 41-42; 7708 40 channels paired n/n+20.
CARDS: dict[str, CardLayout] = {
    "7700": CardLayout("7700", 20, 10, (21, 22), "7700 instructions 077182400"),
    "7706": CardLayout("7706", 20, 10, (), "7706 datasheet"),
    "7702": CardLayout("7702", 40, 20, (41, 42), "7702 datasheet"),
    "7708": CardLayout("7708", 40, 20, (), "7708 datasheet"),
}


#: A card model for both slots, or {slot: model, layout or None}.
CardSpec = str | int | Mapping[int, "str | int | CardLayout | None"]


def card_layouts(card: CardSpec = "7700") -> dict[int, CardLayout | None]:
    """{slot: CardLayout or None}: one model for both slots, or a {slot: model} mapping."""
    spec = card if isinstance(card, Mapping) else {slot: card for slot in SLOTS}
    out: dict[int, CardLayout | None] = {slot: None for slot in SLOTS}
    for slot, model in spec.items():
        # a TOML config gives the slots as strings
        slot = int(slot) if isinstance(slot, str) and slot.isdigit() else slot
        if slot not in SLOTS:
            raise ValueError(f"DAQ6510 slots are {SLOTS}, got slot {slot!r}")
        if model is None or isinstance(model, CardLayout):
            out[slot] = model
            continue
        if str(model) not in CARDS:
            raise ValueError(f"unknown card {model!r} in slot {slot} "
                             f"(known: {', '.join(CARDS)})")
        out[slot] = CARDS[str(model)]
    if not any(out.values()):
        raise ValueError(f"no card in any slot: {card!r}")
    return out


def allowed_channels(layout: CardLayout, wires: int) -> range:
    """Card channel numbers (1..) that take a `wires`-wire measurement (2, 3 or 4)."""
    if wires == 2:
        return range(1, layout.channels + 1)
    if wires in (3, 4):
        return range(1, layout.pair_offset + 1)
    raise ValueError(f"wires must be 2, 3 or 4, got {wires!r}")


def channel_list(channels: Iterable[int], four_wire: bool = False, *, wires: int | None = None,
                 card: CardSpec = "7700") -> str:
    """Format channels as a SCPI channel list ``(@101,102)``; bad channels: ValueError.

    `wires` (2, 3 or 4; default 4 if `four_wire` else 2) picks the channels the card allows
    (`allowed_channels`); `card` is the model in both slots or a {slot: model} mapping.
    """
    if wires is None:
        wires = 4 if four_wire else 2
    layouts = card_layouts(card)
    chans = list(channels)
    if not chans:
        raise ValueError("channel list is empty")
    for ch in chans:
        if isinstance(ch, bool) or not isinstance(ch, int):
            raise ValueError(f"bad channel {ch!r} (e.g. 101, 212)")
        slot, n = divmod(ch, 100)
        layout = layouts.get(slot)
        if layout is None:
            fitted = {s: c.model for s, c in layouts.items() if c is not None}
            raise ValueError(f"bad channel {ch!r}: no card in slot {slot} (cards: {fitted})")
        allowed = allowed_channels(layout, wires)
        if n not in allowed:
            kind = {2: "2-wire", 3: "3-wire RTD", 4: "4-wire"}[wires]
            why = (f"; {slot}{n - layout.pair_offset:02d} is the primary whose sense channel "
                   f"it is" if wires > 2 and layout.pair_offset < n <= layout.channels else
                   "; current-only channel" if n in layout.current else "")
            raise ValueError(f"bad {layout.model} {kind} channel {ch!r}: {kind} takes "
                             f"{slot}{allowed.start:02d}-{slot}{allowed.stop - 1:02d}{why}")
    if len(set(chans)) != len(chans):
        raise ValueError(f"channel list has duplicates: {chans}")
    return "(@" + ",".join(str(c) for c in chans) + ")"


def parse_scan(reply: str, channels: list[int], instrument: str = NAME) -> dict[int, float]:
    """Parse a ``CHAN,READ`` buffer reply into {channel: reading} (overflow -> `Missing`)."""
    fields = reply.strip().split(",")
    if len(fields) != 2 * len(channels):
        raise ReplyError(instrument, f"expected {len(channels)} channel/reading pairs, "
                         f"got {reply!r}")
    out: dict[int, float] = {}
    for chan_txt, read_txt in zip(fields[::2], fields[1::2]):
        if not _CHANNEL.fullmatch(chan_txt) or int(chan_txt) not in channels \
                or int(chan_txt) in out:
            raise ReplyError(instrument, f"unexpected channel {chan_txt!r} in {reply!r}")
        if not _NR3.fullmatch(read_txt):
            raise ReplyError(instrument, f"malformed reading {read_txt!r} in {reply!r}")
        value = float(read_txt)
        if abs(value) >= OVERFLOW * 0.99:
            out[int(chan_txt)] = Missing(f"overflow on channel {chan_txt}: open sensor")
        elif not math.isfinite(value):
            raise ReplyError(instrument, f"non-finite reading {read_txt!r}")
        else:
            out[int(chan_txt)] = value
    return out


class KeithleyDAQ6510RTD(LinkMixin, KeithleyDAQ6510):
    """Keithley DAQ6510 + 7700 scanning PT100s (RTD or resistance mode), LAN, LF.

    `calibrations` maps channels to their sensors' `SensorCalibration` (default nominal).
    `card` is the switching card in both slots ("7700", default; "7702", "7706", "7708") or a
    {slot: model or None} mapping; it decides which channels take which wiring (`CARDS`).
    Use `configure_rtd` or `configure_resistance`, then `create_scan`, then `scan()` for raw
    {channel: K or Ω} and `scan_temperatures()` for calibrated readings.
    """

    write_termination = "\n"
    read_termination = "\n"
    link_errors = ANY_FAILURE  # a liveness probe: any failure (timeout, link down, VISA) is "no"

    def __init__(self, adapter, name: str = NAME, *,
                 calibrations: Mapping[int, SensorCalibration] | None = None,
                 card: CardSpec = "7700", **kwargs):
        # A bad card is a ValueError before the link is touched.
        self.cards: dict[int, CardLayout | None] = card_layouts(card)
        kwargs.setdefault("write_termination", self.write_termination)
        kwargs.setdefault("read_termination", self.read_termination)
        super().__init__(adapter, name, **kwargs)
        self.calibrations: dict[int, SensorCalibration] = dict(calibrations or {})
        self.modes: dict[int, str] = {}
        self.lead_resistance: dict[int, float] = {}
        self.scan_channels: list[int] = []

    def read(self, **kwargs) -> str:
        """Read one reply line; an empty reply (nothing before the timeout) is a timeout."""
        reply = super().read(**kwargs)
        if reply == "":
            raise InstrumentTimeout(self.name)
        return reply

    # --- errors -----------------------------------------------------------------------
    def check_errors(self) -> list:
        """Drain ``:SYST:ERR?``; raise `InstrumentError` (first code) if any error was queued."""
        errors = []
        for _ in range(32):
            reply = self.ask(":SYST:ERR?").strip()
            m = _ERROR.fullmatch(reply)
            if not m:
                raise ReplyError(self.name, f"malformed :SYST:ERR? reply {reply!r}")
            if int(m.group(1)) == 0:
                break
            errors.append((int(m.group(1)), m.group(2)))
        if errors:
            code, text = errors[0]
            more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
            raise InstrumentError(self.name, f"{text}{more}", code=str(code))
        return errors

    # --- configuration ----------------------------------------------------------------
    def configure_rtd(self, channels: Iterable[int], wires: int = 3,
                      rtd_type: str = "PT100") -> None:
        """Measure `channels` as RTD temperatures in K (3- or 4-wire PT100/PT385/PT3916...).

        Both wirings sense through the card's paired channel, so only primaries take them
        (7700: 101-110, 201-210; see `CARDS`); a sense channel is a `ValueError` here rather
        than the unit's settings conflict after the bytes went out. 2-wire RTD is not
        offered: use `configure_resistance(four_wire=False, lead_resistance=...)`.
        """
        if wires not in (3, 4):
            raise ValueError(f"wires must be 3 or 4, got {wires!r}")
        if rtd_type not in ("PT100", "PT385", "PT3916", "D100", "F100", "USER"):
            raise ValueError(f"rtd_type must be PT100, PT385, PT3916, D100, F100 or USER, "
                             f"got {rtd_type!r}")
        chans = list(channels)
        clist = channel_list(chans, wires=wires, card=self.cards)
        self.write(f":SENS:FUNC 'TEMP',{clist}")
        if wires == 3:
            self.write(f":SENS:TEMP:TRAN TRTD,{clist}")
            self.write(f":SENS:TEMP:RTD:THR {rtd_type},{clist}")
        else:
            self.write(f":SENS:TEMP:TRAN FRTD,{clist}")
            self.write(f":SENS:TEMP:RTD:FOUR {rtd_type},{clist}")
        self.write(f":SENS:TEMP:UNIT KELV,{clist}")
        self.check_errors()
        for ch in chans:
            self.modes[ch] = "rtd"
            self.lead_resistance.pop(ch, None)

    def configure_resistance(self, channels: Iterable[int], four_wire: bool = True,
                             lead_resistance: float = 0.0) -> None:
        """Measure `channels` as resistances in Ω (4-wire; or 2-wire less `lead_resistance` Ω)."""
        if four_wire and lead_resistance != 0.0:
            raise ValueError("lead_resistance applies to 2-wire measurements only")
        if not (math.isfinite(lead_resistance) and 0.0 <= lead_resistance <= 10.0):
            raise ValueError(f"lead_resistance must be 0–10 Ω, got {lead_resistance!r}")
        chans = list(channels)
        clist = channel_list(chans, wires=4 if four_wire else 2, card=self.cards)
        self.write(f":SENS:FUNC '{'FRES' if four_wire else 'RES'}',{clist}")
        self.check_errors()
        for ch in chans:
            self.modes[ch] = "resistance"
            self.lead_resistance[ch] = float(lead_resistance)

    def create_scan(self, channels: Iterable[int]) -> None:
        """Define the scan list (configured channels only) with one scan per trigger."""
        chans = list(channels)
        clist = channel_list(chans, wires=2, card=self.cards)
        unconfigured = [c for c in chans if c not in self.modes]
        if unconfigured:
            raise ValueError(f"configure channels {unconfigured} (configure_rtd or "
                             f"configure_resistance) before scanning them")
        self.write(f":ROUT:SCAN:CRE {clist}")
        self.write(":ROUT:SCAN:COUN:SCAN 1")
        self.check_errors()
        self.scan_channels = chans

    # --- reading ------------------------------------------------------------------------
    def scan(self) -> dict[int, float]:
        """Run the scan once; return {channel: K (RTD) or Ω (resistance) or `Missing`}."""
        if not self.scan_channels:
            raise ValueError("no scan list: call create_scan first")
        n = len(self.scan_channels)
        self.write(":TRAC:CLE 'defbuffer1'")
        self.write(":INIT:IMM")
        done = self.ask("*OPC?").strip()
        if done != "1":
            raise ReplyError(self.name, f"malformed *OPC? reply {done!r}")
        # A scan that could not run (lost scan list after a power cycle, a trigger conflict)
        # leaves the buffer short: report the unit's own error rather than a timeout.
        count = self.ask(":TRAC:ACT? 'defbuffer1'").strip()
        if not (count.isascii() and count.isdigit()):
            raise ReplyError(self.name, f"malformed :TRAC:ACT? reply {count!r}")
        if int(count) != n:
            self.check_errors()
            raise InstrumentError(self.name, f"scan stored {count} readings, expected {n}")
        reply = self.ask(f":TRAC:DATA? 1,{n},'defbuffer1',CHAN,READ")
        return parse_scan(reply, self.scan_channels, self.name)

    def scan_temperatures(self, u_reading: float = 0.0) -> dict[int, TemperatureReading]:
        """Run the scan once; return calibrated temperatures {channel: TemperatureReading}.

        RTD channels get their sensor's calibration applied to the instrument's CVD kelvin
        reading; resistance channels go through `ionclock.physics.rtd` CVD and the calibration.
        `u_reading` is the reading's own standard uncertainty (K or Ω by mode).
        """
        out: dict[int, TemperatureReading] = {}
        for ch, value in self.scan().items():
            cal = self.calibrations.get(ch, NOMINAL)
            if self.modes[ch] == "rtd":
                out[ch] = cal.apply(value, u_reading)
            else:
                r = value - self.lead_resistance.get(ch, 0.0) \
                    if not isinstance(value, Missing) else value
                out[ch] = cal.from_resistance(r, u_reading)
        return out

    # --- liveness ---------------------------------------------------------------------
    @property
    def idn(self) -> str:
        """Get the identification string."""
        return self.ask("*IDN?").strip()

    def _ping_query(self) -> bool:
        """True if the unit answers ``*IDN?`` as a DAQ6510."""
        return "DAQ6510" in self.idn
