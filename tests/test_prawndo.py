"""PrawnDO pattern generator: twin vs the firmware, driver protocol, the loader, the world's starts.

Firmware replies are those of labscript-suite/prawn_digital_output ``prawn_do/prawn_do.c``
(1.3.0) and the host side labscript-suite/labscript-devices
``labscript_devices/PrawnDO/blacs_workers.py``.
"""

from __future__ import annotations

import struct

import pytest
from pymeasure.test import expected_protocol

from ionclock.apparatus.transport import LoopbackAdapter
from ionclock.drivers.pattern import PatternLoader, compile_block, program_of
from ionclock.drivers.prawndo import PrawnDO, pack_instructions, parse_status
from ionclock.drivers.sequencer import ProbeProgram, PulseProgram
from ionclock.errors import InstrumentError, ReplyError
from ionclock.sim_instruments.prawndo import SimPrawnDO
from ionclock.sim_instruments.world import ClockWorld

WIRING = {"dds_step": 0, "counter_trig": 1, "probe_end": 2, "detection": 3,
          "shutter_gate_fall": 4, "shutter_gate_rise": 5, "sideband_cooling": 6,
          "cooling_end": 7, "beam_1": 8, "beam_2": 9, "beam_3": 10}


def _ask(twin, line: bytes) -> bytes:
    twin.write(line)
    return twin.read_available()


# --- twin against the firmware's replies (prawn_do.c) ---------------------------------------
def test_twin_replies_as_the_firmware():
    t = SimPrawnDO()
    assert _ask(t, b"ver\r\n") == b"Version: 1.3.0\r\n"
    assert _ask(t, b"sts\r\n") == b"run-status:0 clock-status:0\r\n"
    assert _ask(t, b"gto\r\n") == b"0\r\n"
    assert _ask(t, b"man 00a5\r\n") == b"ok\r\n"
    assert _ask(t, b"gto\r\n") == b"a5\r\n"
    assert _ask(t, b"abt\r\n") == b"Can only abort when status is 1 or 2\r\n"
    # the received line is quoted with its CR LF (fast_serial_read_until keeps the LF)
    assert _ask(t, b"xyz\r\n") == b"Invalid command: xyz\r\n\r\n"
    assert _ask(t, b"\r\n") == b"Invalid command: \r\n\r\n"
    assert _ask(t, b"set 0 10000 5\r\n") == b"Invalid output specification 10000\r\n"
    assert _ask(t, b"set 0 1 3\r\n") == b"Reps must be 0 or greater than 4, got 3\r\n"
    assert _ask(t, b"set 7530 1 5\r\n") == b"Invalid instruction address 7530\r\n"
    assert _ask(t, b"adm 0\r\n") == b"Invalid request\r\n"
    assert _ask(t, b"adm 7000 531\r\n") == (
        b"Invalid address and/or too many instructions (28672 + 1329).\r\n")
    assert _ask(t, b"clk 3 100000000\r\n") == b"invalid clock source request\r\n"


def test_adm_block_stores_reps_as_the_firmware_and_get_adds_four_back():
    t = SimPrawnDO()
    block = struct.pack("<HIHIHI", 1, 10, 0, 0, 0, 0)
    assert _ask(t, b"adm 0 3\r\n" + block) == b"ready\r\nok\r\n"
    assert t.do_cmds == [1, 6, 0, 0, 0, 0]          # reps - 4 stored, 0 kept (a wait)
    assert _ask(t, b"get 0\r\n") == b"1 a\r\n"
    assert _ask(t, b"get 1\r\n") == b"0 0\r\n"
    assert _ask(t, b"len\r\n") == b"Number of command lines: 6\r\nNumber of instructions: 3\r\n"
    bad = struct.pack("<HIHI", 1, 3, 2, 4)
    assert _ask(t, b"adm 0 2\r\n" + bad) == (
        b"ready\r\nInvalid number of reps in 2 instructions, most recent error at instruction"
        b" 2. Setting reps to zero for these instructions.\r\n")
    assert t.do_cmds == [1, 0, 2, 0]


def test_run_status_machine_and_refusals_while_running():
    world = ClockWorld(seed=1)
    t = SimPrawnDO(world, wiring=WIRING)
    prog = pack_instructions([(1, 20), (0, 0), (0, 0)])
    assert _ask(t, b"adm 0 3\r\n" + prog) == b"ready\r\nok\r\n"
    assert _ask(t, b"run\r\n") == b"ok\r\n"
    assert _ask(t, b"sts\r\n") == b"run-status:2 clock-status:0\r\n"
    assert _ask(t, b"cls\r\n") == (
        b"Cannot execute command cls\r\n during buffered execution.\r\n")
    assert _ask(t, b"abt\r\n") == b"ok\r\n"
    assert _ask(t, b"sts\r\n") == b"run-status:5 clock-status:0\r\n"
    assert _ask(t, b"run\r\n") == b"ok\r\n"   # allowed again once aborted
    assert t.trigger(0.0) == (((0.0, "dds_step"),), 0.0)
    world.env.run(until=1e-6)
    assert _ask(t, b"sts\r\n") == b"run-status:0 clock-status:0\r\n"   # the stop reached
    assert t.trigger(1.0) is None and t.dark_triggers == 1


# --- driver protocol ----------------------------------------------------------------------
def test_driver_protocol():
    with expected_protocol(PrawnDO, [("ver", "Version: 1.3.0")]) as d:
        assert d.version() == (1, 3, 0)
    with expected_protocol(PrawnDO, [("sts", "run-status:2 clock-status:0")]) as d:
        assert d.status().run_name == "running"
    with expected_protocol(PrawnDO, [("gto", "a5")]) as d:
        assert d.output_state() == 0xA5
    with expected_protocol(PrawnDO, [("man 00a5", "ok")]) as d:
        d.manual(0xA5)
    with expected_protocol(PrawnDO, [("run", "ok"), ("swr", "ok"), ("abt", "ok")]) as d:
        d.run()
        d.software_run()
        d.abort()
    block = struct.pack("<HIHIHI", 1, 20, 0, 0, 0, 0)
    with expected_protocol(PrawnDO, [("cls", "ok"), ("adm 0 3", "ready"), (block, "ok")]) as d:
        assert d.load([(1, 20), (0, 0), (0, 0)]) == 3
    with expected_protocol(PrawnDO, [("cls", "Cannot execute command cls"),
                                     (None, " during buffered execution.")]) as d:
        with pytest.raises(InstrumentError, match="during buffered execution"):
            d.clear()
    with expected_protocol(PrawnDO, []) as d:
        with pytest.raises(ValueError):
            d.load([(1, 3)])
        with pytest.raises(ValueError):
            d.manual(0x10000)
    with pytest.raises(ReplyError):
        parse_status("run-status:x")


def test_driver_on_the_twin():
    t = SimPrawnDO()
    d = PrawnDO(LoopbackAdapter(t, "\r\n", "\r\n"))
    assert d.ping()
    d.load([(3, 50), (0, 0), (0, 0)])
    d.run()
    assert d.status().run == 2
    with pytest.raises(InstrumentError, match="during buffered execution"):
        d.manual(1)
    assert d.status().run == 2   # the quoted second line was read: the link is in step
    d.abort()
    assert d.status().run == 5


# --- the loader ---------------------------------------------------------------------------
def _times(block, bit):
    """(start tick, ticks high) of each pulse of output `bit` in a block."""
    t, out, high = 0, [], False
    for word, reps in block:
        on = bool(word >> bit & 1)
        if on and high:
            out[-1] = (out[-1][0], out[-1][1] + reps)
        elif on:
            out.append((t, reps))
        high = on
        t += reps
    return out


def test_clock_program_compiles_to_10ns_pulses_and_k_copies():
    p = PulseProgram(counter_offsets_s=(0.0, 0.0021), shutter_gate_s=(0.0005, 0.1))
    block = compile_block(p.edges(), p.detection_s, WIRING)
    ticks = lambda s: round(s / 10e-9)   # noqa: E731
    assert [t for t, _ in _times(block, 0)] == [ticks(x) for x in p.segment_starts_s] + [
        ticks(p.probe_end_s)]
    assert all(w == 20 for _, w in _times(block, 0))                       # 200 ns pulses
    assert _times(block, 3) == [(ticks(p.detection_start_s), ticks(p.detection_s))]
    assert block[-1] == (0, 0) and all(r >= 5 for _, r in block[:-1])
    program, k = program_of(block)
    assert k == 256 and len(program) == k * len(block) + 1 <= 30000
    assert program_of(block, max_copies=10**6)[1] == 29999 // len(block)   # memory full
    assert program[-2:] == [(0, 0), (0, 0)]                               # the stop


def test_probe_program_dds_steps_1us_apart_stay_separate():
    q = ProbeProgram(pulse_s=3e-6)
    block = compile_block(q.edges(), q.detection_s, WIRING)
    starts = [t for t, _ in _times(block, 0)]
    # the light entry 1 us before the switch opens, the dark entries from 1 us after it shuts
    assert [b - a for a, b in zip(starts, starts[1:])] == [500, 100, 100, 100]
    with pytest.raises(ValueError, match="no output"):
        compile_block(q.edges(), q.detection_s, {"dds_step": 0})


@pytest.mark.parametrize("pulse_s", [50e-9, 71.4e-9, 240e-9, 9.4e-6])
def test_a_shots_pulse_is_the_beam_switch_level_on_the_10ns_grid(pulse_s):
    """The monitor's carrier pulses (~70 ns) and sideband pulses (us): the beam's RF switch
    line is high for the pulse, to the nearest tick; no other change crowds it (decision 0311);
    the twin plays it back as the beam line's rise and a beam_off at its fall."""
    q = ProbeProgram(beam=2, pulse_s=pulse_s)
    block = compile_block(q.edges(), q.detection_s, WIRING)
    (start, width), = _times(block, 9)
    assert start == round(q.pulse_start_s / 10e-9) and width == round(pulse_s / 10e-9)
    assert all(r >= 5 for _, r in block[:-1])
    world, twin, loader = _rig()
    loader(q.edges(), q.detection_s)
    assert world.start_cycle(0.0)
    lines = dict((line, t) for t, line in world._pattern if line.startswith("beam"))
    assert lines["beam_off"] - lines["beam_2"] == pytest.approx(width * 10e-9, abs=1e-12)


def test_shots_pulse_as_run_on_the_generator_grid():
    """ProbeSequencer runs a shot's pulse on the loader's 10 ns grid and says so (`program`),
    so the monitor computes R with the length as run, not as asked."""
    from ionclock.drivers.sequencer import ProbeSequencer

    world, twin, loader = _rig()

    class _Table:
        def prepare(self, segments):
            return [f for f, _, _ in segments]

    class _Seq:   # what ProbeSequencer.load uses of a TableSequencer
        program = PulseProgram()
        counter = type("C", (), {"arm": staticmethod(lambda: None)})()
        amplitude, aom_center_hz, passes, _table = 1.0, 80e6, 2, _Table()

    probe = ProbeSequencer(_Seq(), loader)
    assert probe.pulse_grid_s == 10e-9
    probe.load(ProbeProgram(pulse_s=71.4e-9), 0.0)
    assert probe.program.pulse_s == pytest.approx(70e-9, abs=1e-15)
    assert world.start_cycle(0.0)
    on = {line: t for t, line in world._pattern if line.startswith("beam")}
    assert on["beam_off"] - on["beam_1"] == pytest.approx(probe.program.pulse_s, abs=1e-12)


def _rig():
    world = ClockWorld(seed=1)
    twin = SimPrawnDO(world, wiring=WIRING)
    loader = PatternLoader(PrawnDO(LoopbackAdapter(twin, "\r\n", "\r\n")), WIRING)
    return world, twin, loader


def test_world_plays_the_loaded_pattern_and_rearms_after_k():
    world, twin, loader = _rig()
    p = PulseProgram(counter_offsets_s=(0.0, 0.0021))
    loader(p.edges(), p.detection_s)
    assert twin.status == 2
    k = loader.copies
    t = 0.0
    for i in range(k + 3):
        loader.before_trigger()
        assert world.start_cycle(t), i
        if i == 0:
            got = [(round(x, 8), line) for x, line in world._pattern]
            assert got == [(round(x, 8), line) for x, line in p.edges()]
            assert world.detection_s == pytest.approx(p.detection_s, abs=1e-12)
        t += 0.2
        world.env.run(until=t)
    assert loader.rearms == 1 and world.dark_cycles == 0


def test_unarmed_generator_gives_dark_cycles():
    world, twin, loader = _rig()
    p = PulseProgram()
    loader(p.edges(), p.detection_s)
    loader.generator.abort()
    assert not world.start_cycle(0.0)
    assert world.dark_cycles == 1 and world.cycles_started == 0
