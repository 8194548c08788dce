"""The pulse-sequencer role: one clock cycle's light, timed by hardware, and its counts back.

Within a clock cycle the pulses are timed by hardware, not by Python (DOMAIN §1 cycle, §5
"Double-pass AOM"): the servo hands the sequencer the settings of the next cycle (the probe
frequency, the sign of the final pulse's phase, whether the clock light is on), starts the
cycle, and reads the detection counts once the cycle is over. `PulseSequencer` is that
interface; an FPGA sequencer that loads a cycle's DDS words and returns its counts
implements it directly. `TableSequencer` implements it on the named instruments:

- the clock AOM's DDS (Novatech 409B) holds the cycle's four light segments as table entries
  (pi/2 pulse, free evolution with the light off, pi pulse, final pi/2 pulse), each applied
  on an edge of the sequencer's TTL on the DDS's external trigger input (labscript's
  NovaTechDDS9M loads its table the same way);
- the photon counter (SRS SR400) counts one gate per cycle, triggered by the TTLs that the
  counter's driver asks for (`SR400.trigger_offsets`);
- a pulse generator (SRS DG645 in single-shot mode) starts each cycle on a software trigger;
  its outputs start the TTL pattern of `PulseProgram.edges()`.

Hyper-Ramsey on a double-pass AOM (DOMAIN §5): the light is shifted by twice the RF
frequency and its phase by twice the RF phase, so the light's pulse phases 0, pi, +-pi/2 are
DDS phases 0, 1/4 and +-1/8 turn, and the frequency step during the pulses is half the step
wanted on the light. (A single-pass AOM, `double_pass=False`, takes the light's values.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

#: TTL lines of the pattern (names shared with the twin's pattern hardware).
DDS_STEP = "dds_step"
COUNTER_TRIG = "counter_trig"
PROBE_END = "probe_end"
DETECTION = "detection"
#: The shutters' gate (the SC10s' external gate input, decision 0305): falls to close the
#: blades before the probe, rises to open them for the detection and the next cooling.
SHUTTER_GATE_FALL = "shutter_gate_fall"
SHUTTER_GATE_RISE = "shutter_gate_rise"
#: Lines of the characterisation probes (`ProbeProgram`): sideband cooling on after the
#: Doppler cooling, the end of all cooling light, and the RF switch of each probe beam's
#: switching AOM (beams 1, 2, 3 of DOMAIN §1; decision 0804).
SIDEBAND_COOLING = "sideband_cooling"
COOLING_END = "cooling_end"
BEAM_LINES = ("beam_1", "beam_2", "beam_3")
#: The probe beams' RF switches close: the falling edge of the `BEAM_LINES` level, which
#: a pattern generator plays as that line going low (no output of its own).
BEAM_OFF = "beam_off"
#: How long before a shot's pulse its light entry is in the DDS (the beam's RF switch,
#: not the DDS, times the pulse: decision 0311).
PULSE_DDS_LEAD_S = 1e-6
COOLINGS = ("doppler", "sideband")


@dataclass(frozen=True)
class PulseProgram:
    """The timing of one clock cycle (s, from the cycle's start trigger), DOMAIN §1.

    Doppler cooling 1.5 ms, optical pumping, 3D sideband cooling 10 ms and the shutters
    closing make up `prepare_s`; then hyper-Ramsey (pi/2 of half the pi time, free evolution
    T, pi, pi/2), then detection (`detection_s` after `detection_delay_s`).
    `counter_offsets_s` are the counter's TTL edges relative to the detection start.
    """

    pi_time_s: float = 0.004
    ramsey_time_s: float = 0.080
    cycle_time_s: float = 0.105
    prepare_s: float = 0.0125
    detection_delay_s: float = 0.0005
    detection_s: float = 0.002
    counter_offsets_s: tuple[float, ...] = (0.0,)
    dds_end_edge: bool = True
    #: (fall, rise) of the shutters' gate from the cycle's start (s), or None: no gate.
    #: The blades close `latency` after the fall and open `latency` after the rise, so the
    #: fall leads the first pulse and the rise the detection by at least the blades' latency.
    shutter_gate_s: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("pi_time_s", "ramsey_time_s", "cycle_time_s", "detection_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("prepare_s", "detection_delay_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.counter_offsets_s or min(self.counter_offsets_s) < 0:
            raise ValueError("counter_offsets_s must be one or more offsets >= 0")
        if self.shutter_gate_s is not None:
            fall, rise = self.shutter_gate_s
            if not 0.0 <= fall <= self.prepare_s:
                raise ValueError(f"the shutters' gate must fall within the preparation "
                                 f"(0 to {self.prepare_s * 1e3:.2f} ms), got "
                                 f"{fall * 1e3:.2f} ms")
            if not fall < rise < self.cycle_time_s:
                raise ValueError(f"the shutters' gate must rise after it falls "
                                 f"({fall * 1e3:.2f} ms) and within the cycle, got "
                                 f"{rise * 1e3:.2f} ms")
        last = self.detection_start_s + max(self.detection_s, max(self.counter_offsets_s))
        if last >= self.cycle_time_s:
            raise ValueError(f"the pulse program needs {last * 1e3:.2f} ms, more than the "
                             f"cycle time {self.cycle_time_s * 1e3:.2f} ms")

    @property
    def segment_starts_s(self) -> tuple[float, float, float, float]:
        """Start of each light segment: pi/2, free evolution, pi, final pi/2 (s)."""
        half = 0.5 * self.pi_time_s
        p = self.prepare_s
        return (p, p + half, p + half + self.ramsey_time_s,
                p + half + self.ramsey_time_s + self.pi_time_s)

    @property
    def probe_end_s(self) -> float:
        """End of the final pi/2 pulse (s)."""
        return self.prepare_s + 2 * self.pi_time_s + self.ramsey_time_s

    @property
    def ramsey_mid_s(self) -> float:
        """Middle of the free evolution: when the laser's frequency counts (s)."""
        return self.prepare_s + 0.5 * (self.pi_time_s + self.ramsey_time_s)

    @property
    def detection_start_s(self) -> float:
        """Start of the detection window (s)."""
        return self.probe_end_s + self.detection_delay_s

    def edges(self) -> tuple[tuple[float, str], ...]:
        """The TTL pattern of one cycle: (offset s, line), in time order.

        `DDS_STEP` applies the next table entry, `PROBE_END` marks the end of the light,
        `DETECTION` opens the detection light for `detection_s`, `COUNTER_TRIG` triggers
        the counter; with `shutter_gate_s`, `SHUTTER_GATE_FALL` and `SHUTTER_GATE_RISE`
        are the shutters' gate.
        """
        d0 = self.detection_start_s
        edges = [(t, DDS_STEP) for t in self.segment_starts_s]
        if self.dds_end_edge:
            edges.append((self.probe_end_s, DDS_STEP))
        edges.append((self.probe_end_s, PROBE_END))
        edges.append((d0, DETECTION))
        edges.extend((d0 + dt, COUNTER_TRIG) for dt in self.counter_offsets_s)
        if self.shutter_gate_s is not None:
            edges += [(self.shutter_gate_s[0], SHUTTER_GATE_FALL),
                      (self.shutter_gate_s[1], SHUTTER_GATE_RISE)]
        order = {DDS_STEP: 0, PROBE_END: 1, DETECTION: 2, COUNTER_TRIG: 3,
                 SHUTTER_GATE_FALL: 4, SHUTTER_GATE_RISE: 5}
        return tuple(sorted(edges, key=lambda e: (e[0], order[e[1]])))


class PulseSequencer(Protocol):
    """What the clock servo needs from the pulse sequencer, one call each per cycle."""

    program: PulseProgram

    def prepare(self, probe_hz: float, phase_sign: int, light: bool = True) -> float:
        """Load the next cycle; return the free-evolution probe as run (Hz, on the DDS grid).

        `probe_hz` is at the ion, `phase_sign` the sign of the final pulse's phase, `light`
        whether the clock light is on (off: an ion check).
        """
        ...

    def prepare_rabi(self, probe_hz: float, kind: str = "fine") -> float:
        """Load a Rabi cycle in the same TTL pattern; return the probe as run (Hz).

        `kind` "fine": light in all four segments at `probe_hz`, phase 0, at the amplitude
        whose area over the whole light time is pi (`rabi_fine_amplitude`); "coarse": a pi
        pulse at full amplitude in the pi slot only (the other segments dark).
        """
        ...

    def start(self) -> None:
        """Start the loaded cycle now; it lasts `program.cycle_time_s`."""
        ...

    def count(self) -> int:
        """The photon counts of the last finished cycle's detection."""
        ...

    def use_direct(self, direct: bool) -> None:
        """Per-cycle calls through the instruments' direct handles, or through themselves."""
        ...


#: The light's phases (turns) of the four segments: pi/2 at 0, free, pi at 1/2, final.
_LIGHT_PHASE = (0.0, 0.0, 0.5)
_FINAL_LIGHT = {+1: 0.25, -1: 0.75}

#: Kinds of Rabi cycle (`PulseSequencer.prepare_rabi`).
RABI_KINDS = ("fine", "coarse")

#: The DDS's amplitude word: 10 bits (Novatech 409B, 0..1023 of full scale).
AMPLITUDE_WORDS = 1023


def rabi_fine_amplitude(program: PulseProgram, full: float = 1.0,
                        words: int = AMPLITUDE_WORDS) -> float:
    """Amplitude (fraction of full scale) of a Rabi pi pulse spread over all the light.

    At `full` the pi slot (`pi_time_s`) is a pi pulse; the light of a cycle lasts
    2 pi_time_s + ramsey_time_s (88 ms on the default program), so a pulse of that length
    with area pi needs full * pi_time_s / light time (4/88 = 0.04545), rounded to the DDS's
    amplitude grid (`words` steps): word 46 of 1023 on the default program, an area of
    0.989 pi (excitation 0.9997 on resonance).
    """
    light = 2.0 * program.pi_time_s + program.ramsey_time_s
    return round(full * program.pi_time_s / light * words) / words


class TableSequencer:
    """`PulseSequencer` on a table-mode DDS channel, a gated counter and a start trigger.

    Parameters
    ----------
    dds: the DDS (`ionclock.drivers.novatech409b.Novatech409B`, possibly wrapped for
        resilience); its channel's table holds the cycle (`CycleTable`).
    channel: its channel driving the clock AOM (a table-capable one).
    counter: the photon counter (`SR400`): `configure_gated`, `arm`, `count`,
        `trigger_offsets`.
    trigger: the cycle's start (`SRSDG645`): `trigger()`.
    program: the cycle's timing.
    aom_center_hz: the AOM's centre frequency (Hz, RF).
    pulse_step_hz: the frequency step of the light during the pulses (Hz at the ion).
    double_pass: the AOM is double pass (light = 2 x RF in frequency and phase).
    table: builds the cycle table on a DDS channel (default: the 409B's `CycleTable` with
        four segments, idle at the AOM centre).
    """

    def __init__(self, dds, channel: int, counter, trigger, program: PulseProgram,
                 aom_center_hz: float, pulse_step_hz: float = 0.0, amplitude: float = 1.0,
                 double_pass: bool = True, table=None):
        if not 0.0 < amplitude <= 1.0:
            raise ValueError(f"amplitude must be within (0, 1], got {amplitude!r}")
        self.dds = dds
        self.channel = channel
        self.counter = counter
        self.trigger = trigger
        self.program = program
        self.aom_center_hz = aom_center_hz
        self.pulse_step_hz = pulse_step_hz
        self.amplitude = amplitude
        self.passes = 2 if double_pass else 1
        self._make_table = table or self._cycle_table
        self._table = None
        self._table_loaded = False   # a reload after the first one follows a failure
        self._direct = False
        self.use_direct(False)
        # programs the pulse hardware's TTL pattern, load_pattern(edges, detection_s): the
        # twin's (`ClockWorld.load_pattern`); None where no software loads it (the lab's).
        # The characterisation shots need it (`ProbeSequencer`, decision 0804). A pattern
        # generator's loader (`ionclock.drivers.pattern.PatternLoader`, decision 0311) also
        # re-arms the unit: `before_trigger` runs before each start, `rearm` after a failure.
        self.pattern_loader = None
        self._before_trigger = None

    def _cycle_table(self, channel):
        from ionclock.drivers.novatech409b import CycleTable

        return CycleTable(channel, 4, idle_frequency_hz=self.aom_center_hz)

    # --- set-up ------------------------------------------------------------------------------
    def configure(self, gate_time_s: float) -> PulseProgram:
        """Put the counter and the trigger in the modes the cycle needs (slow path).

        The program then takes the detection gate and the counter's own TTL edges
        (`trigger_offsets`, which depend on its gate settings); it is returned, since it is
        what the pulse hardware must play.
        """
        counter = self.counter
        counter.configure_gated(gate_time_s)
        offsets = getattr(counter, "trigger_offsets", None)
        self.program = replace(
            self.program, detection_s=gate_time_s,
            counter_offsets_s=tuple(offsets()) if offsets is not None else (0.0,))
        counter.arm()
        if hasattr(self.trigger, "trigger_source"):
            self.trigger.trigger_source = "single_shot"
        return self.program

    def use_direct(self, direct: bool) -> None:
        """Through the direct handles (hot path) or the wrappers (which reconnect).

        Going back to the wrappers means something failed: the DDS may have been power
        cycled and the counter may hold a point no cycle owns, so before the next cycle the
        table is loaded anew on whatever driver the wrapper then holds and the counter is
        re-armed (`_reload`).
        """
        def handle(inst):
            get = getattr(inst, "direct", None) if direct else None
            return get() if get is not None else inst

        self._count = handle(self.counter).count
        self._trigger = handle(self.trigger).trigger
        self._direct = direct
        if not direct:
            self._table = None

    def _reload(self):
        """After a failure: the DDS's cycle table loaded anew, the counter re-armed.

        A cycle started but never counted (the counter's link failed between the two) left a
        point in the counter that no cycle owns; re-arming clears its buffer, so the next
        count is the next cycle's. Both calls go through the wrappers: they reconnect a lost
        unit (and raise while it is offline).
        """
        self.counter.arm()
        rearm = getattr(self.pattern_loader, "rearm", None)
        if rearm is not None:   # the pattern generator may have been aborted or power cycled
            rearm()
        # A unit power-cycled behind a live link (the 409B echoing again) is found by a ping
        # through the wrapper, which then reconnects it (start-up) and restores it; the
        # table below is written on the direct driver, whose errors the wrapper never sees.
        ping = getattr(self.dds, "ping", None)
        if ping is not None and self._table_loaded:
            ping()
        self._table_loaded = True
        self.dds.stop_table()
        get = getattr(self.dds, "direct", None)
        driver = get() if get is not None else self.dds
        channel = getattr(driver, f"ch_{self.channel}")
        channel.forget_table()   # whatever the unit went through, every entry is written
        self._table = self._make_table(channel)
        return self._table

    # --- one cycle -----------------------------------------------------------------------------
    def entries(self, probe_hz: float, phase_sign: int, light: bool = True):
        """The four segments (RF Hz, RF phase turns, amplitude) of one cycle."""
        n = self.passes
        c = self.aom_center_hz
        f_free = c + probe_hz / n
        f_pulse = c + (probe_hz + self.pulse_step_hz) / n
        a = self.amplitude if light else 0.0
        final = _FINAL_LIGHT[phase_sign] / n
        return ((f_pulse, _LIGHT_PHASE[0] / n, a), (f_free, _LIGHT_PHASE[1] / n, 0.0),
                (f_pulse, _LIGHT_PHASE[2] / n, a), (f_pulse, final, a))

    def prepare(self, probe_hz: float, phase_sign: int, light: bool = True) -> float:
        """Load the next cycle's segments (changed entries only); the probe as run (Hz)."""
        table = self._table or self._reload()
        applied = table.prepare(self.entries(probe_hz, phase_sign, light))
        return self.passes * (applied[1] - self.aom_center_hz)

    def rabi_entries(self, probe_hz: float, kind: str = "fine"):
        """The four segments (RF Hz, RF phase turns, amplitude) of a Rabi cycle.

        Every segment at the probe frequency (no pulse step) and phase 0, so the light is one
        continuous pulse: "fine" lights all four at `rabi_fine_amplitude` (an 88 ms pi pulse
        on the default program, FWHM ~9 Hz), "coarse" only the pi slot at full amplitude.
        """
        if kind not in RABI_KINDS:
            raise ValueError(f"kind must be one of {RABI_KINDS}, got {kind!r}")
        f = self.aom_center_hz + probe_hz / self.passes
        if kind == "fine":
            a = rabi_fine_amplitude(self.program, self.amplitude)
            return ((f, 0.0, a),) * 4
        a = self.amplitude
        return ((f, 0.0, 0.0), (f, 0.0, 0.0), (f, 0.0, a), (f, 0.0, 0.0))

    def prepare_rabi(self, probe_hz: float, kind: str = "fine") -> float:
        """Load a Rabi cycle (`rabi_entries`); the probe as run (Hz at the ion, DDS grid)."""
        table = self._table or self._reload()
        applied = table.prepare(self.rabi_entries(probe_hz, kind))
        return self.passes * (applied[1] - self.aom_center_hz)

    def use_pattern_loader(self, loader) -> None:
        """Program the pulse hardware through `loader` (its `before_trigger` runs each start)."""
        self.pattern_loader = loader
        self._before_trigger = getattr(loader, "before_trigger", None)

    def start(self) -> None:
        """Start the loaded cycle (the pulse generator's software trigger)."""
        before = self._before_trigger
        if before is not None:
            before()
        self._trigger()

    def count(self) -> int:
        """Counts of the last cycle's detection gate."""
        return self._count()


# --- characterisation probes: one Rabi pulse of a chosen beam after cooling and a dark time ----
@dataclass(frozen=True)
class ProbeProgram:
    """The timing of one characterisation shot (s, from its start trigger), DOMAIN §1, §3.

    Doppler cooling (`doppler_s`, with optical pumping), then with ``cooling="sideband"`` 3D
    sideband cooling (`sideband_cooling_s`), then a dark time with every light off
    (`dark_time_s`: the modes heat), then one Rabi pulse of `pulse_s` on probe beam `beam`
    (1, 2, 3), then detection. The TTL pattern (`edges`):

    - ``sideband_cooling`` at the end of the Doppler cooling when sideband cooling is on,
      ``cooling_end`` when all cooling light is off (the dark time starts);
    - ``dds_step`` `PULSE_DDS_LEAD_S` (1 us) before the pulse (table entry 1: the light at
      the probe frequency), then 1 us after its end the table's three dark entries and its
      end edge 1 us apart (the clock's four-entry table, `CycleTable`, needs five edges);
    - ``beam_<b>`` at the pulse's start and ``beam_off`` at its end: the RF switch of beam
      b's switching AOM, a level (only the chosen beam's light reaches the ion, decision
      0804). The switch times the pulse, not the DDS: a pattern generator plays a level as
      short as 5 of its ticks (50 ns) to its 10 ns grid, where two DDS trigger pulses need
      5 ticks high and 5 low each (decision 0311); ``probe_end`` with ``beam_off``;
    - ``detection``, ``counter_trig`` as in the clock's `PulseProgram`.
    """

    beam: int = 1
    pulse_s: float = 1e-6
    cooling: str = "sideband"
    dark_time_s: float = 0.0
    doppler_s: float = 0.0015
    sideband_cooling_s: float = 0.010
    detection_delay_s: float = 0.0005
    detection_s: float = 0.002
    counter_offsets_s: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        if self.beam not in (1, 2, 3):
            raise ValueError(f"beam must be 1, 2 or 3, got {self.beam!r}")
        if self.cooling not in COOLINGS:
            raise ValueError(f"cooling must be one of {COOLINGS}, got {self.cooling!r}")
        for name in ("pulse_s", "doppler_s", "detection_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and v < 10.0):
                raise ValueError(f"{name} must be > 0 s, got {v!r}")
        for name in ("dark_time_s", "sideband_cooling_s", "detection_delay_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 10.0):
                raise ValueError(f"{name} must be >= 0 s, got {v!r}")
        if not self.counter_offsets_s or min(self.counter_offsets_s) < 0:
            raise ValueError("counter_offsets_s must be one or more offsets >= 0")

    @property
    def cooling_end_s(self) -> float:
        """End of the cooling light: the dark time starts (s)."""
        return self.doppler_s + (self.sideband_cooling_s if self.cooling == "sideband" else 0.0)

    @property
    def pulse_start_s(self) -> float:
        """Start of the Rabi pulse (s)."""
        return self.cooling_end_s + self.dark_time_s

    @property
    def probe_end_s(self) -> float:
        """End of the Rabi pulse (s)."""
        return self.pulse_start_s + self.pulse_s

    @property
    def detection_start_s(self) -> float:
        """Start of the detection window (s)."""
        return self.probe_end_s + max(self.detection_delay_s, 5e-6)

    @property
    def cycle_time_s(self) -> float:
        """The shot's length: its last edge and detection, plus 0.5 ms (s)."""
        d0 = self.detection_start_s
        return d0 + max(self.detection_s, max(self.counter_offsets_s)) + 5e-4

    def edges(self) -> tuple[tuple[float, str], ...]:
        """The TTL pattern of one shot: (offset s, line), in time order (class docstring)."""
        t_p, t_e, d0 = self.pulse_start_s, self.probe_end_s, self.detection_start_s
        edges = []
        if self.cooling == "sideband":
            edges.append((self.doppler_s, SIDEBAND_COOLING))
        edges.append((self.cooling_end_s, COOLING_END))
        edges += [(t_p - PULSE_DDS_LEAD_S, DDS_STEP), (t_p, BEAM_LINES[self.beam - 1]),
                  (t_e, BEAM_OFF), (t_e, PROBE_END), (t_e + 1e-6, DDS_STEP),
                  (t_e + 2e-6, DDS_STEP), (t_e + 3e-6, DDS_STEP), (t_e + 4e-6, DDS_STEP),
                  (d0, DETECTION)]
        edges.extend((d0 + dt, COUNTER_TRIG) for dt in self.counter_offsets_s)
        order = {SIDEBAND_COOLING: 0, COOLING_END: 1, DDS_STEP: 2, BEAM_OFF: 4, PROBE_END: 5,
                 DETECTION: 6, COUNTER_TRIG: 7}
        return tuple(sorted(edges, key=lambda e: (e[0], order.get(e[1], 3))))


class ProbeSequencer:
    """Characterisation shots on the clock's sequencer while the clock is held (decision 0804).

    One shot is a `ProbeProgram` at a detuning from the clock laser's nominal frequency (Hz
    at the ion, as `PulseSequencer.prepare`'s `probe_hz`). The light's frequency takes two
    paths:

    - the clock's double-pass AOM (its DDS table, `TableSequencer`): up to
      ``aom_reach_hz`` from its centre at the ion (the carrier and the secular sidebands, a
      few MHz);
    - the laser's lock offset (``lock_offset``: the DDS channel driving the EOM whose
      sideband the clock laser is locked to the ULE cavity with, at
      ``lock_offset_center_hz``; the laser follows it, times ``lock_offset_sign``) for whole
      multiples of the trap drive ``rf_hz`` (the micromotion sidebands at +-24.801 MHz,
      beyond what a double-pass AOM deflects into its fibre). The laser relocks after the
      step (``relock_s``, which the caller waits before the first shot).

    `load_pattern(edges, detection_s)` programs the pulse hardware's pattern (the twin's
    sequencer hardware, `ClockWorld.load_pattern`; the lab's pattern generator). `restore`
    gives the sequencer back to the clock: its pattern and the lock offset at its centre.
    """

    def __init__(self, sequencer: TableSequencer, load_pattern, *, lock_offset=None,
                 lock_offset_center_hz: float = 50e6, lock_offset_sign: int = 1,
                 aom_reach_hz: float = 10e6, rf_hz: float = 24.801e6, relock_s: float = 0.005):
        if lock_offset_sign not in (1, -1):
            raise ValueError(f"lock_offset_sign must be +1 or -1, got {lock_offset_sign!r}")
        if not (aom_reach_hz > 0 and rf_hz > 0 and relock_s >= 0):
            raise ValueError("aom_reach_hz and rf_hz must be > 0 Hz, relock_s >= 0 s")
        self.seq = sequencer
        self.load_pattern = load_pattern
        # the pulse hardware's time grid (a pattern generator's tick, `PatternLoader.tick_s`):
        # a shot's pulse is run on it, and `program` says the length as run
        self.pulse_grid_s = getattr(load_pattern, "tick_s", None)
        self.lock_offset = lock_offset
        self.lock_offset_center_hz = float(lock_offset_center_hz)
        self.lock_offset_sign = lock_offset_sign
        self.aom_reach_hz = float(aom_reach_hz)
        self.rf_hz = float(rf_hz)
        self.relock_s = float(relock_s)
        # as loaded: the counter's gate in it, the pulse on the hardware's grid
        self.program: ProbeProgram | None = None
        self._asked: ProbeProgram | None = None    # as asked for
        self._offset_hz = 0.0        # the lock offset's step from its centre (at the ion)
        self._step = 0.0             # the step asked for

    def split(self, detuning_hz: float) -> tuple[float, float]:
        """(lock-offset step, AOM detuning) at the ion for a detuning from the clock laser."""
        if not math.isfinite(detuning_hz):
            raise ValueError(f"detuning must be finite, got {detuning_hz!r}")
        if abs(detuning_hz) <= self.aom_reach_hz:
            return 0.0, detuning_hz
        m = round(detuning_hz / self.rf_hz)
        step = m * self.rf_hz
        rest = detuning_hz - step
        if abs(rest) > self.aom_reach_hz:
            raise ValueError(f"detuning {detuning_hz / 1e6:.4f} MHz: neither the AOM "
                             f"(+-{self.aom_reach_hz / 1e6:g} MHz) nor the lock offset "
                             f"(multiples of {self.rf_hz / 1e6:g} MHz) reaches it")
        if step and self.lock_offset is None:
            raise ValueError("a detuning beyond the AOM's reach needs the lock offset's "
                             "DDS channel (lock_offset)")
        return step, rest

    def _set_offset(self, step_hz: float) -> float:
        """Put the lock offset `step_hz` (at the ion) from its centre; return it as run."""
        if self.lock_offset is None:
            return 0.0
        rf = self.lock_offset_center_hz + self.lock_offset_sign * step_hz
        applied = self.lock_offset.set_frequency(rf)
        self._offset_hz = self.lock_offset_sign * (applied - self.lock_offset_center_hz)
        return self._offset_hz

    def load(self, program: ProbeProgram, detuning_hz: float,
             amplitude: float | None = None) -> tuple[float, bool]:
        """Load one shot; return (the detuning as run, Hz at the ion; whether the laser moved).

        The pattern is loaded when the program changed, the lock offset set when its step
        changed (then the caller waits `relock_s` before starting), the table's entries
        written when they changed. `amplitude` defaults to the sequencer's.
        """
        step, rest = self.split(detuning_hz)
        moved = step != self._step
        if moved:
            self._set_offset(step)
            self._step = step
        seq = self.seq
        if self.program is None:
            # the first shot since the clock had the sequencer: re-arm the counter, so its
            # scan point is this shot's gate. A clock that did not read every gate (the
            # deterministic twin reads expectation values) left gates in the buffer, and the
            # shots would read those old cycles' counts (`_reload` does the same after a
            # failure).
            seq.counter.arm()
        if program is not self._asked and program != self._asked:
            p = replace(program, detection_s=seq.program.detection_s,
                        counter_offsets_s=seq.program.counter_offsets_s)
            grid = self.pulse_grid_s
            if grid:   # the pulse as the hardware runs it: a whole number of its ticks
                p = replace(p, pulse_s=max(1, round(program.pulse_s / grid)) * grid)
            self.load_pattern(p.edges(), p.detection_s)
            self.program, self._asked = p, program
        a = seq.amplitude if amplitude is None else amplitude
        if not 0.0 < a <= 1.0:
            raise ValueError(f"amplitude must be within (0, 1], got {a!r}")
        f = seq.aom_center_hz + rest / seq.passes
        table = seq._table or seq._reload()
        applied = table.prepare(((f, 0.0, a), (f, 0.0, 0.0), (f, 0.0, 0.0), (f, 0.0, 0.0)))
        return self._offset_hz + seq.passes * (applied[0] - seq.aom_center_hz), moved

    def restore(self) -> None:
        """Give the sequencer back to the clock: its pattern, the lock offset at its centre."""
        if self._step and self.lock_offset is not None:
            self._set_offset(0.0)
        self._offset_hz = self._step = 0.0
        if self.program is not None:
            self.load_pattern(self.seq.program.edges(), self.seq.program.detection_s)
        self.program = self._asked = None
