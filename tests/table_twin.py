"""A quiet twin world and the table sequencer on the twins of its 409B, SR400 and DG645."""

from __future__ import annotations

import simpy

from ionclock.apparatus import registry
from ionclock.drivers.sequencer import PulseProgram, TableSequencer
from ionclock.physics.constants import B_NOMINAL
from ionclock.sim_instruments.world import ClockWorld, TwinParams


def quiet_world(laser_offset_hz: float, **kw) -> ClockWorld:
    """A world without flicker, field noise, cryostat or shifts; the field at B_NOMINAL."""
    params = TwinParams(**{"flicker_floor": 0.0, "b_noise_t": 0.0, "cryostat": False,
                           "apply_shifts": False, "laser_offset_hz": laser_offset_hz, **kw})
    world = ClockWorld(simpy.Environment(), params, seed=3)
    world.coil_changed(params.coil_channel, B_NOMINAL / params.coil_t_per_a)
    return world


def table_sequencer(world: ClockWorld, **kw):
    """The sequencer on channel 0 of the world's 409B, its SR400 and DG645; (seq, 409B twin).

    The counter's trigger offsets are those of the program (checked), and the world plays
    the program's TTL pattern.
    """
    def open_(model):
        return registry.open_instrument(model, f"sim://{model}", world=world, resilient=True)

    dds, counter, pulser = open_("novatech409b"), open_("sr400"), open_("dg645")
    seq = TableSequencer(dds, 0, counter, pulser, PulseProgram(), world.p.aom_center_hz, **kw)
    program = seq.configure(0.002)
    assert program.counter_offsets_s == tuple(counter.trigger_offsets())
    world.load_pattern(program.edges(), program.detection_s)
    return seq, dds.twin
