"""Characterisation shots on an `Apparatus`: the clock's sequencer lent to a procedure.

The procedures of the motional measurements (thermometry, Debye–Waller, micromotion and its
compensation scan; DOMAIN §3) step the apparatus shot by shot through the same hardware the
clock uses: the clock AOM's Novatech 409B (its cycle table, and channel 2 for the laser's lock
offset), the SR400 counter and the DG645 start trigger, playing `ProbeProgram`s through
`ProbeSequencer` (decision 0804). The quantisation field is brought up first (the coil ramp of
the clock, ``[instruments.coils]``), so the Zeeman lines sit where the clock finds them.

A shot: the table loaded, the pulser triggered, the apparatus' clock advanced by the shot's
length (`Apparatus.wait`: simulated on the twin), the counter read; dark when its counts are
below ``[servo] threshold_counts``. The carrier (line ``line`` of
`ionclock.physics.constants.ZEEMAN_LINES`) is taken at the config's nominal field and the
laser with its AOM at centre (its offset from nu0 is not known to a procedure: the twin's
2 Hz and its ULE drift of 0.05 Hz/s, a few hundred Hz over an hour, are far inside the
narrowest resonance probed, a ground-state sideband of beam 2 at ~9 kHz).

The probe's TTL pattern (`ProbeProgram.edges`) is played by the config's pattern generator
when the apparatus has one (``[instruments.pattern]``, a PrawnDO: `PatternLoader` with the
config's wiring, as a clock run loads it; decision 0311), in the lab and on the twin; else on
the twin the world plays it as loaded by hand. In the lab without a pattern generator nothing
can play it: `ProbeRig` refuses with one line instead of measuring something else.
"""

from __future__ import annotations

from ionclock.apparatus.clock_run import program_pattern
from ionclock.drivers.sequencer import ProbeProgram, ProbeSequencer, PulseProgram, TableSequencer
from ionclock.errors import UserError
from ionclock.physics.constants import ZEEMAN_LINES

#: The instruments of the probe: the clock's sequencer and the field.
PROBE_ROLES = ("aom", "counter", "pulser", "coils")
#: Opened too when the config has it: the pattern generator that plays the probe's pattern.
PROBE_OPTIONAL_ROLES = ("pattern",)


class ProbeRig:
    """The clock's sequencer and field on `apparatus`, and shots on them (module docstring)."""

    def __init__(self, apparatus, line: int = 0):
        generator = apparatus.instruments.get("pattern")
        world = apparatus.world
        if generator is None and world is None:
            raise UserError("this measurement needs a pattern generator in the lab "
                            "([instruments.pattern], a PrawnDO; decision 0311): nothing else "
                            "plays the probe's TTL pattern")
        self.apparatus = apparatus
        cfg = apparatus.cfg
        s, inst, mm = cfg["servo"], cfg["instruments"], cfg["micromotion"]
        ins = apparatus.instruments
        ins["aom"].external_update = False
        program = PulseProgram(pi_time_s=s["pi_time_s"], ramsey_time_s=s["ramsey_time_s"],
                               cycle_time_s=s["cycle_time_s"], prepare_s=s["prepare_s"])
        self.seq = TableSequencer(ins["aom"], inst["aom"]["channel"], ins["counter"],
                                  ins["pulser"], program, s["aom_center_hz"],
                                  pulse_step_hz=s["pulse_step_hz"])
        program = self.seq.configure(inst["counter"]["gate_time_s"])
        # the generator plays the clock's pattern and each shot's, else the twin's world
        program_pattern(self.seq, program, generator, inst.get("pattern", {}).get("wiring"),
                        world)
        # the laser's lock offset: the twin's own, else the config's (the monitor's settings)
        center, sign = ((world.p.lock_offset_center_hz, world.p.lock_offset_sign)
                        if world is not None else
                        (mm["lock_offset_center_hz"], mm["lock_offset_sign"]))
        self.probe = ProbeSequencer(self.seq, self.seq.pattern_loader,
                                    lock_offset=getattr(ins["aom"],
                                                        f"ch_{mm['lock_offset_channel']}"),
                                    lock_offset_center_hz=center, lock_offset_sign=sign)
        self.threshold = s["threshold_counts"]
        self.carrier_hz = ZEEMAN_LINES[line].zeeman_hz_per_t * cfg["clock"]["b_nominal_t"]
        self.shots_run = 0
        self._field_up()

    def _field_up(self) -> None:
        """Ramp the coils to the config's current, as the clock does (never a step)."""
        entry = self.apparatus.cfg["instruments"]["coils"]
        coil = getattr(self.apparatus.instruments["coils"], f"ch_{entry['channel']}")
        coil.voltage_setpoint = entry["compliance_v"]
        if not coil.output_enabled:
            coil.output_enabled = True
        for delay in coil.ramp(entry["current_a"]):
            self.apparatus.wait(delay)
        self.apparatus.event("field_ready", "probe", current_a=entry["current_a"])

    def shots(self, n: int, *, beam: int, pulse_s: float, detuning_hz: float = 0.0,
              cooling: str = "sideband", dark_time_s: float = 0.0) -> int:
        """`n` shots of one pulse `detuning_hz` from the carrier; the number found dark."""
        program = ProbeProgram(beam=beam, pulse_s=pulse_s, cooling=cooling,
                               dark_time_s=dark_time_s)
        hz = self.carrier_hz + detuning_hz
        _, moved = self.probe.load(program, hz)
        if moved:
            self.apparatus.wait(self.probe.relock_s)
        cycle = self.probe.program.cycle_time_s
        seq, wait, threshold = self.seq, self.apparatus.wait, self.threshold
        dark = 0
        for i in range(n):
            if i:
                self.probe.load(program, hz)
            seq.start()
            wait(cycle)
            dark += seq.count() < threshold
        self.shots_run += n
        return dark

    def close(self) -> None:
        """The sequencer back to the clock's pattern, the lock offset at its centre."""
        self.probe.restore()
