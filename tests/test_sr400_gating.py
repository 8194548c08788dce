"""SR400 gating per the manual: the N+1 rule, the dwell, scan ends, and one gate per clock cycle.

Manual (rev. 2.7): "N+1 Triggers are required for N gates per period" (p. 12); "During the
DWELL time, counting is disabled" (p. 26); "Scan buffers are reset at the start of each scan
... the scan end mode should be STOP" (p. 46). The twin is driven by TRIG edges in time; the
tests either call `SimSR400.trigger` themselves (stand-alone twin) or play clock cycles in a
`CycleWorld` whose photons name the cycle they came from.
"""

from __future__ import annotations

import itertools

import pytest

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.sr400 import SR400
from ionclock.errors import InstrumentTimeout
from ionclock.sim_instruments.sr400 import SimSR400
from tests.sr400_world import STRAY, CycleWorld


def ask(twin, line: str) -> list[str]:
    """Send one command line; return the reply records."""
    twin.write(line.encode("ascii") + b"\r")
    out = twin.read_available().decode("ascii")
    return [r for r in out.split(twin.eor) if r]


def gated(twin, *, preset: int = 1, periods: int = 2000, end: int = 0, dwell: str = "2E-3",
          width: str = "2E-3", t_input: int = 3) -> None:
    """T on TRIG (or `t_input`) with `preset`, gate A FIXED (delay 0, `width`), armed."""
    ask(twin, f"CM 0;CI 0,1;CI 2,{t_input};CP 2,{preset};GM 0,1;GD 0,0;GW 0,{width};"
              f"NP {periods};NE {end};DT {dwell};CR;CS")
    assert ask(twin, "SS 7") == ["0"]


def open_counter(world, **twin_options) -> SR400:
    return open_instrument("sr400", "sim://sr400", world=world, count_timeout_s=0.0,
                           twin_options=twin_options)


# --- the instrument, stand-alone: edges from the test -------------------------------------------
def test_n_plus_1_triggers_for_n_gates():
    twin = SimSR400(None, mean_counts=50.0)
    gated(twin, preset=1)
    twin.trigger(1.0)  # opens the period and gate A
    assert ask(twin, "QA 1;NN;SI 2") == ["-1", "0", "1"]
    twin.trigger(1.0021)  # the +1: T reaches 1, the period ends, the point is complete
    (first,) = ask(twin, "QA 1")
    assert int(first) > 0 and ask(twin, "NN;SS 1;SS 1;SI 2") == ["1", "1", "0", "0"]

    three = SimSR400(None, mean_counts=50.0)
    gated(three, preset=3, dwell="5E-3")
    for k in range(3):
        three.trigger(1.0 + 0.01 * k)
    assert ask(three, "QA 1") == ["-1"]  # 3 triggers: not yet
    three.trigger(1.03)
    assert ask(three, "NN") == ["1"]


def test_the_period_closing_edges_gate_counts_nothing():
    world = CycleWorld(photons="sequence")
    twin = SimSR400(world)
    gated(twin, preset=1)
    world.edges.extend([1.0, 1.0021])
    world.env.now = 2.0
    assert ask(twin, "QA 1") == ["17"]
    assert world.windows == [(1.0, 2e-3)]  # the closing edge's gate fell in the dwell


def test_dwell_edges_in_detail():
    ignored = SimSR400(None)
    gated(ignored, preset=1, dwell="1E-2")
    for t in (1.0, 1.0021, 1.005, 1.02):
        ignored.trigger(t)
    assert ask(ignored, "NN") == ["1"]  # the dwell edge did nothing; 1.02 opened point 2
    ignored.trigger(1.03)
    assert ask(ignored, "NN") == ["2"]

    latched = SimSR400(None, dwell_trigger="latched")
    gated(latched, preset=1, dwell="1E-2")
    for t in (1.0, 1.0021, 1.005):
        latched.trigger(t)
    assert ask(latched, "NN") == ["1"]
    latched.trigger(1.02)  # point 2 began as the dwell ended (1.0121); this edge closes it
    assert ask(latched, "NN") == ["2"]


def test_xa_is_zero_in_the_dwell_and_counts_closed_gates_in_a_period():
    world = CycleWorld(photons="sequence")
    twin = SimSR400(world)
    gated(twin, preset=3, dwell="1E-2")
    world.edges.extend([1.0, 1.01])
    world.env.now = 1.015
    assert ask(twin, "XA") == [str(17 + 18)]   # two closed gates in the period
    world.edges.extend([1.02, 1.03])
    world.env.now = 1.035                      # period over at 1.03: dwell
    assert ask(twin, "XA;QA 1") == ["0", str(17 + 18 + 19)]


def test_t_on_10mhz_periods_start_at_cs_and_follow_the_dwell():
    world = CycleWorld(photons="sequence")
    twin = SimSR400(world)
    world.env.now = 1.0
    # T on 10 MHz, preset 3E4 = 3 ms per period, dwell 2 ms: periods [1, 1.003], [1.005, 1.008]
    gated(twin, preset=30000, t_input=0, width="1E-3")
    world.edges.extend([1.0005, 1.0035, 1.0055])  # gates: inside, in the dwell, inside
    world.env.now = 1.009
    assert ask(twin, "QA 1;QA 2;QA 3") == ["17", "18", "-1"]
    assert world.windows == [(1.0005, 1e-3), (1.0055, 1e-3)]


def test_cw_gate_counts_the_whole_period():
    world = CycleWorld(photons="sequence")
    twin = SimSR400(world)
    world.env.now = 2.0
    ask(twin, "CM 0;CI 2,0;CP 2,2E4;GM 0,0;NP 5;CR;CS")
    world.env.now = 2.0021
    assert ask(twin, "QA 1") == ["17"]
    assert world.windows == [(2.0, pytest.approx(2e-3))]


def test_scan_end_stop_pauses_until_reset():
    twin = SimSR400(None, mean_counts=30.0)
    gated(twin, preset=1, periods=2, end=0)
    for t in (1.0, 1.0021, 1.1, 1.1021):
        twin.trigger(t)
    points = ask(twin, "QA 1;QA 2")
    assert "-1" not in points and ask(twin, "SS 2") == ["1"]
    for t in (1.2, 1.2021):
        twin.trigger(t)
    assert ask(twin, "NN;QA 1;QA 2") == ["2"] + points  # paused: nothing overwritten
    ask(twin, "CS")                                      # START alone does not restart
    twin.trigger(1.3)
    twin.trigger(1.3021)
    assert ask(twin, "NN") == ["2"]
    ask(twin, "CR;CS")                                   # "a counter reset is required"
    assert ask(twin, "NN;QA 1") == ["0", "-1"]
    twin.trigger(1.4)
    twin.trigger(1.4021)
    assert ask(twin, "NN") == ["1"]


def test_one_period_scans_restart_on_each_start():
    twin = SimSR400(None)
    gated(twin, preset=1, periods=1, end=0)
    twin.trigger(1.0)
    twin.trigger(1.0021)
    assert ask(twin, "NN") == ["1"]
    ask(twin, "CS")  # "If N PERIODS is 1, then each START results in one COUNT PERIOD"
    twin.trigger(1.1)
    twin.trigger(1.1021)
    assert ask(twin, "NN") == ["1"]


@pytest.mark.parametrize("clears", ["dwell_end", "first_period"])
def test_scan_end_start_resets_the_buffer_for_the_next_scan(clears):
    twin = SimSR400(None, restart_clears=clears)
    gated(twin, preset=1, periods=2, end=1, dwell="1E-2")
    for t in (1.0, 1.0021, 1.1, 1.1021):
        twin.trigger(t)
    last = ask(twin, "QA 2")
    assert last != ["-1"]
    twin.trigger(1.2)  # after the dwell: the new scan's first period begins
    assert ask(twin, "QA 2;NN") == ["-1", "0"]  # the previous scan's points are gone
    twin.trigger(1.2021)
    assert ask(twin, "NN") == ["1"]


def test_scan_end_start_reset_timing_option():
    """When the buffer of a finished scan goes: as the dwell ends, or at the next period."""
    nn = {}
    for clears in ("dwell_end", "first_period"):
        world = CycleWorld(photons="sequence")
        twin = SimSR400(world, restart_clears=clears)
        gated(twin, preset=1, periods=1, end=1, dwell="1E-2")
        world.edges.extend([1.0, 1.0021])
        world.env.now = 1.005                  # in the dwell after the scan
        before = ask(twin, "NN")
        world.env.now = 1.05                   # the dwell is over, no edge yet
        after_dwell = ask(twin, "NN")
        world.edges.append(1.06)               # the new scan's first period begins
        world.env.now = 1.07
        nn[clears] = (before, after_dwell, ask(twin, "NN"))
    assert nn["dwell_end"] == (["1"], ["0"], ["0"])
    assert nn["first_period"] == (["1"], ["1"], ["0"])


def test_qa_point_range_and_pause():
    twin = SimSR400(None)
    gated(twin, preset=1, periods=5)
    assert ask(twin, "QA 2001;SS 7;QA 0;SS 7;QA 5") == ["1", "1", "-1"]
    twin.trigger(1.0)
    ask(twin, "CH")  # the period in progress is dropped
    twin.trigger(1.0021)
    assert ask(twin, "NN") == ["0"]
    ask(twin, "CS")
    twin.trigger(1.1)
    twin.trigger(1.1021)
    assert ask(twin, "NN") == ["1"]
    ask(twin, "CH;CH")  # pause, then reset
    assert ask(twin, "NN;QA 1") == ["0", "-1"]


def test_changing_the_preset_pauses_and_np_below_the_position_ends_the_scan():
    twin = SimSR400(None)
    gated(twin, preset=1, periods=5)
    for t in (1.0, 1.0021, 1.1, 1.1021):
        twin.trigger(t)
    ask(twin, "NP 2")
    assert ask(twin, "SS 2") == ["1"]
    ask(twin, "NP 5;CR;CS;CP 2,1")
    twin.trigger(1.2)
    twin.trigger(1.2021)
    assert ask(twin, "NN") == ["0"]  # paused by CP


def test_external_dwell_waits_for_the_start_input():
    twin = SimSR400(None)
    gated(twin, preset=1, dwell="0")
    twin.trigger(1.0)
    twin.trigger(1.0021)
    twin.trigger(5.0)
    twin.trigger(5.0021)
    assert ask(twin, "NN") == ["1"]  # still in the EXTERNAL dwell
    twin.external_start(6.0)
    twin.trigger(6.1)
    twin.trigger(6.1021)
    assert ask(twin, "NN") == ["2"]


def test_world_edges_wait_for_their_time_and_settle_comes_first():
    world = CycleWorld(photons="sequence")
    twin = SimSR400(world)
    gated(twin, preset=1)
    twin.trigger(0.5)      # delivered ahead of env.now = 0: acts when time gets there
    twin.trigger(0.5021)
    assert ask(twin, "NN") == ["0"]
    world.env.now = 0.6
    assert ask(twin, "NN") == ["1"]
    world.edges.extend([0.7, 0.7021])  # due, but only settle() delivers them
    world.env.now = 0.8
    settles = world.settles
    assert ask(twin, "NN") == ["2"]
    assert world.settles > settles
    world.edges.extend([0.9, 0.9021])
    world.env.now = 1.0
    assert twin.write(b"QA 3\r") is None and twin.read_available() != b"-1\r"  # fast path


# --- the driver on the twin: one gate per clock cycle ---------------------------------------------
def _old_configuration(counter: SR400) -> None:
    """The previous `configure_gated(2e-3)`: T on TRIG, preset 1, one edge per cycle, NE START."""
    counter.counting_mode = "A,B"
    counter.counter_a_input = "input1"
    counter.counter_t_input = "trig"
    counter.t_preset = 1
    counter.gate_mode = "fixed"
    counter.gate_delay = 0.0
    counter.gate_time = 2e-3
    counter.periods = 2000
    counter.scan_restart = True
    counter.dwell_time = 2e-3


def test_old_configuration_loses_every_other_gate_and_credits_the_rest_a_cycle_late():
    world = CycleWorld(offsets=(0.0,))  # one TRIG edge per cycle, at the detection start
    counter = open_counter(world)
    _old_configuration(counter)
    counter.arm()
    results = []
    for _ in range(40):
        world.cycle()
        try:
            results.append(counter.count())
        except InstrumentTimeout:  # on hardware: a timeout each such cycle
            results.append(None)
    for k, value in enumerate(results):
        if k % 2 == 0:
            assert value is None                 # cycle k's point completes only at k+1
        else:
            assert value == 100 + (k - 1)        # ... and is read as cycle k's count
            assert value != 100 + k
    # Half of the detection gates were never counted: each odd cycle's edge closed the
    # previous period, so its own gate fell in the dwell.
    assert world.windows == [(world.detection_start(k), 2e-3) for k in range(0, 40, 2)]


@pytest.mark.parametrize("periods", [7, 2000])
def test_new_configuration_counts_every_cycles_gate_over_5000_cycles(periods):
    world = CycleWorld()
    counter = open_counter(world)
    counter.configure_gated(2e-3, periods=periods)
    world.offsets = counter.trigger_offsets()
    assert world.offsets[0] == 0.0 and world.offsets[1] > 2e-3
    assert counter.min_cycle_time < world.cycle_s
    counter.arm()
    n = 5000
    counts = []
    for _ in range(n):
        world.cycle()
        counts.append(counter.count())
    assert counts == [100 + k for k in range(n)]
    assert STRAY not in counts
    assert world.windows == [(world.detection_start(k), 2e-3) for k in range(n)]
    assert len(world.delivered) == 2 * n
    assert counter.twin.np_ == periods and counter.twin.ne == 0


@pytest.mark.parametrize("dwell_trigger, restart_clears, interface", list(itertools.product(
    ["ignored", "latched"], ["dwell_end", "first_period"], ["rs232", "gpib"])))
def test_new_configuration_works_with_every_reading_of_the_manual(dwell_trigger,
                                                                  restart_clears, interface):
    world = CycleWorld()
    counter = open_counter(world, dwell_trigger=dwell_trigger, restart_clears=restart_clears,
                           interface=interface)
    counter.configure_gated(2e-3, periods=5)
    world.offsets = counter.trigger_offsets()
    counter.arm()
    counts = []
    for _ in range(23):
        world.cycle()
        counts.append(counter.count())
    assert counts == [100 + k for k in range(23)]


def test_gate_delay_moves_the_gate_and_the_closing_edge():
    world = CycleWorld(photons="sequence")
    counter = open_counter(world)
    counter.configure_gated(2e-3, gate_delay=10e-6, periods=4)
    offsets = counter.trigger_offsets()
    assert offsets[1] == pytest.approx(10e-6 + 2e-3 + 50e-6 + 1e-3 * (10e-6 + 2e-3))
    world.offsets = offsets
    counter.arm()
    for _ in range(6):
        world.cycle()
        counter.count()
    assert world.windows == [(world.detection_start(k) + 10e-6, 2e-3) for k in range(6)]


def test_cycles_closer_than_min_cycle_time_lose_gates():
    """The documented limit: the next first edge must come after the dwell."""
    world = CycleWorld(cycle_s=3e-3, detection_at_s=0.0)  # 3 ms < 2.05 + 2 ms
    counter = open_counter(world)
    counter.configure_gated(2e-3, periods=50)
    world.offsets = counter.trigger_offsets()
    assert counter.min_cycle_time > world.cycle_s
    counter.arm()
    results = []
    for _ in range(6):
        world.cycle()
        try:
            results.append(counter.count())
        except InstrumentTimeout:
            results.append(None)
    assert results != [100 + k for k in range(6)]
