"""SR400 photon counter: protocol (tier 1), twin (tier 2, in-process and over a pty), properties.

The gating itself (the N+1 rule, the dwell, scan ends, the old configuration's lost gates) is
in tests/test_sr400_gating.py.
"""

from __future__ import annotations

import math
import statistics
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.photon_counter import PhotonCounter
from ionclock.drivers.sr400 import CLOSE_MARGIN_S, SR400, parse_count, preset_text
from ionclock.errors import InstrumentError, InstrumentTimeout, IonclockError, ReplyError
from ionclock.sim_instruments.serve import PtyServer
from ionclock.sim_instruments.sr400 import SimSR400
from tests.sr400_world import CycleWorld
from tests.transcripts import RecordingAdapter

OK = ("SS 7", "0")  # the status read-back after each set


def configure_pairs(periods: int = 2000) -> list:
    """`configure_gated(2e-3, periods=periods)`: T on TRIG, preset 1, FIXED gate, end STOP."""
    return [("CM 0", None), OK, ("CI 0,1", None), OK, ("CI 2,3", None), OK,
            ("CP 2,1E0", None), OK, ("GM 0,1", None), OK, ("GD 0,0.000E+00", None), OK,
            ("GW 0,2.000E-03", None), OK, (f"NP {periods}", None), OK, ("NE 0", None), OK,
            ("DT 2.000E-03", None), OK]


CONFIGURE = configure_pairs()
ARM = [("CR", None), ("CS", None), OK, ("NP", "2000")]
REARM = ("CR;CS;SS 7", "0")  # after the scan's last point (scan end STOP)


# (name, action, expected result, pairs); each list starts at the twin's power-on state. The
# twin-parser check replays them in a `CycleWorld` that plays one clock cycle (the driver's
# two TRIG edges) before each QA and answers the n-th gate with 17, 18, 19, ...
TRANSCRIPTS = [
    ("configure", lambda c: c.configure_gated(2e-3), None, CONFIGURE),
    ("arm", lambda c: c.arm(), None, [("CR", None), ("CS", None), OK, ("NP", "1")]),
    ("count", lambda c: (c.configure_gated(2e-3), c.arm(), c.count(), c.count())[2:],
     (17, 18), CONFIGURE + ARM + [("QA 1", "17"), ("QA 2", "18")]),
    ("count_rearms_after_the_last_point",
     lambda c: (c.configure_gated(2e-3, periods=2), c.arm(),
                [c.count() for _ in range(3)])[-1],
     [17, 18, 19], configure_pairs(2) + [("CR", None), ("CS", None), OK, ("NP", "2"),
                                         ("QA 1", "17"), ("QA 2", "18"), REARM,
                                         ("QA 1", "19")]),
    ("gate_time_set", lambda c: setattr(c, "gate_time", 1e-3), None,
     [("GW 0,1.000E-03", None), OK]),
    ("gate_time_get", lambda c: c.gate_time, 5e-6, [("GW 0", "5.0000E-06")]),
    ("gate_delay_set", lambda c: setattr(c, "gate_delay", 1.5e-6), None,
     [("GD 0,1.500E-06", None), OK]),
    ("gate_delay_get", lambda c: c.gate_delay, 0.0, [("GD 0", "0.0000E+00")]),
    ("trigger_offsets", lambda c: c.trigger_offsets(),
     [0.0, 5e-6 + CLOSE_MARGIN_S + 1e-3 * 5e-6], [("GD 0", "0.0000E+00"), ("GW 0", "5.0000E-06")]),
    ("periods_get", lambda c: c.periods, 1, [("NP", "1")]),
    ("counting_mode_get", lambda c: c.counting_mode, "A,B", [("CM", "0")]),
    ("counting_mode_set", lambda c: setattr(c, "counting_mode", "A-B"), None,
     [("CM 1", None), OK]),
    ("t_input_get", lambda c: c.counter_t_input, "10MHz", [("CI 2", "0")]),
    ("t_preset_get", lambda c: c.t_preset, 1e7, [("CP 2", "1E7")]),
    ("t_preset_set", lambda c: setattr(c, "t_preset", 2e6), None, [("CP 2,2E6", None), OK]),
    ("scan_restart_get", lambda c: c.scan_restart, False, [("NE", "0")]),
    ("scan_restart_set", lambda c: setattr(c, "scan_restart", False), None,
     [("NE 0", None), OK]),
    ("gate_mode_set", lambda c: setattr(c, "gate_mode", "fixed"), None, [("GM 0,1", None), OK]),
    ("dwell_set", lambda c: setattr(c, "dwell_time", 0.01), None,
     [("DT 1.000E-02", None), OK]),
    ("dwell_get", lambda c: c.dwell_time, 2e-3, [("DT", "2.0000E-03")]),
    ("discriminator_set", lambda c: setattr(c, "discriminator_level", -0.012), None,
     [("DL 0,-0.0120", None), OK]),
    ("current_count", lambda c: c.current_count, 0, [("XA", "0")]),
    ("scan_position", lambda c: c.scan_position, 0, [("NN", "0")]),
    ("stop", lambda c: c.stop(), None, [("CH", None)]),
    ("ping", lambda c: c.ping(), True, [("NP", "1")]),
    ("status_byte", lambda c: c.status_byte, 0, [("SS", "0")]),
]


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_protocol(name, action, expected, pairs):
    with expected_protocol(SR400, pairs) as counter:
        result = action(counter)
    if expected is not None:
        assert result == pytest.approx(expected)


def test_protocol_command_error_bit_raises():
    with expected_protocol(SR400, [("CM 0", None), ("SS 7", "1")]) as counter:
        with pytest.raises(InstrumentError) as info:
            counter.counting_mode = "A,B"
    assert info.value.code == "SS7" and "SR400" in str(info.value)


@pytest.mark.parametrize("reply, error", [("1#3", ReplyError), ("\x7f12", ReplyError),
                                          ("", InstrumentTimeout), ("-2", ReplyError),
                                          ("1.5", ReplyError)])
def test_protocol_bad_count_reply(reply, error):
    with expected_protocol(SR400, [("QA 1", reply)]) as counter:
        with pytest.raises(error):
            counter.count()


def test_protocol_point_not_ready_polls_then_times_out():
    pairs = [("QA 1", "-1"), ("QA 1", "-1"), ("QA 1", "42")]
    with expected_protocol(SR400, pairs, sleep=lambda s: None) as counter:
        assert counter.count() == 42
        assert counter.next_point == 2
    with expected_protocol(SR400, [("QA 1", "-1")], count_timeout_s=0.0) as counter:
        with pytest.raises(InstrumentTimeout):
            counter.count()


@pytest.mark.parametrize("attr, value", [
    ("gate_time", 0.0), ("gate_time", 1.0), ("gate_time", math.nan), ("periods", 0),
    ("periods", 2001), ("t_preset", 12), ("t_preset", 0.5), ("gate_delay", -1e-9),
    ("dwell_time", 1e-3), ("dwell_time", math.nan), ("gate_delay", 1.0),
    ("discriminator_level", 0.31), ("counting_mode", "A*B")])
def test_bad_input_writes_nothing(attr, value):
    with expected_protocol(SR400, []) as counter:
        with pytest.raises(ValueError):
            setattr(counter, attr, value)


@pytest.mark.parametrize("kwargs", [dict(gate_time=0.0), dict(gate_time=2e-3, gate_delay=-1.0),
                                    dict(gate_time=2e-3, periods=0),
                                    dict(gate_time=2e-3, periods=2.5),
                                    dict(gate_time=2e-3, dwell_time=61.0)])
def test_configure_gated_bad_input_writes_nothing(kwargs):
    with expected_protocol(SR400, []) as counter:
        with pytest.raises(ValueError):
            counter.configure_gated(**kwargs)


def test_protocol_gpib_end_of_record_lf_is_dropped():
    """GPIB ends each record with CR LF: read to CR, the LF comes first in the next reply."""
    pairs = [("CR", None), ("CS", None), ("SS 7", "\n0"), ("NP", "\n2000"),
             ("QA 1", "\n17"), ("QA 2", "\n-1"), ("QA 2", "\n18"), ("SS", "\n6")]
    with expected_protocol(SR400, pairs, sleep=lambda s: None) as counter:
        counter.arm()
        assert [counter.count(), counter.count()] == [17, 18]
        assert counter.status_byte == 6


def test_protocol_reply_read_to_lf_keeps_a_cr_that_is_dropped():
    with expected_protocol(SR400, [("QA 1", "17\r"), ("NP", "5\r")]) as counter:
        assert counter.count() == 17
        assert counter.ping()


def test_sr400_is_a_photon_counter():
    members = [m for m in dir(PhotonCounter) if not m.startswith("_")]
    assert sorted(members) == ["close", "count", "gate_time", "ping"]
    for member in members:
        assert hasattr(SR400, member)
    assert isinstance(SR400.gate_time, property) and SR400.gate_time.fset is not None


# --- tier 2: twin -----------------------------------------------------------------------------
def _replay(twin, world, pairs):
    eor = twin.eor.encode()
    for cmd, reply in pairs:
        assert cmd is not None
        if cmd.startswith("QA"):
            world.cycle()  # one clock cycle: the driver's two TRIG edges, then the query
        twin.write(cmd.encode("ascii") + b"\r")
        out = twin.read_available()
        assert out == (b"" if reply is None else reply.encode() + eor), cmd


def _sequence_world():
    return CycleWorld(offsets=(0.0, 2e-3 + 60e-6), photons="sequence")


@pytest.mark.parametrize("eor", ["\r", "\r\n"])
@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_twin_parser_matches_transcript(name, action, expected, pairs, eor):
    world = _sequence_world()
    _replay(SimSR400(world, eor=eor), world, pairs)


@pytest.mark.parametrize("twin_options", [{}, {"interface": "gpib"}, {"eor": "\r\n"},
                                          {"dwell_trigger": "latched"},
                                          {"restart_clears": "first_period"}])
def test_twin_driver_counts_each_cycles_gate(twin_options):
    world = CycleWorld()
    counter = open_instrument("sr400", "sim://sr400", world=world, count_timeout_s=0.0,
                              twin_options=twin_options)
    counter.configure_gated(2e-3, periods=3)
    world.offsets = counter.trigger_offsets()
    counter.arm()
    counts = []
    for _ in range(7):
        world.cycle()
        counts.append(counter.count())
    assert counts == [100 + k for k in range(7)]
    assert world.windows == [(world.detection_start(k), 2e-3) for k in range(7)]
    assert world.lines == ["counter_trig"]
    assert counter.gate_time == 2e-3
    assert counter.ping()


def test_twin_not_armed_reads_minus_one():
    world = CycleWorld()
    counter = open_instrument("sr400", "sim://sr400", world=world, count_timeout_s=0.0)
    world.cycle()
    with pytest.raises(InstrumentTimeout):
        counter.count()


def test_twin_own_poisson_is_seeded():
    def counts(seed):
        counter = open_instrument("sr400", "sim://sr400", world=object(), count_timeout_s=0.0,
                                  twin_options={"seed": seed, "mean_counts": 40.0})
        counter.configure_gated(2e-3, periods=100)
        counter.arm()
        offsets = counter.trigger_offsets()
        out = []
        for k in range(400):  # stand-alone: the test plays the sequencer
            for offset in offsets:
                counter.twin.trigger(0.1 * k + offset)
            out.append(counter.count())
        return out

    first = counts(3)
    assert first == counts(3)
    assert first != counts(4)
    assert statistics.mean(first) == pytest.approx(40.0, abs=1.5)


def test_twin_unknown_command_sets_error_bit():
    twin = SimSR400(None)
    twin.write(b"ZZ 3\rSS 7\rSS 7\r")
    assert twin.read_available() == b"1\r0\r"


@pytest.mark.parametrize("options, out", [({}, b"5\r0\r"), ({"interface": "gpib"}, b"5\r\n0\r\n")])
def test_twin_several_commands_per_line(options, out):
    twin = SimSR400(None, **options)
    twin.write(b"NP 5;NP;cm\r")
    assert twin.read_available() == out


def test_twin_se_sets_the_rs232_end_of_record_and_gpib_rejects_it():
    twin = SimSR400(None)
    twin.write(b"SE 13,10\rNP\rSE\rNP\r")
    assert twin.read_available() == b"1\r\n1\r"
    gpib = SimSR400(None, interface="gpib")
    gpib.write(b"SE 13\rSS 7\r")
    assert gpib.read_available() == b"1\r\n"


def test_twin_bad_options():
    for options in ({"interface": "usb"}, {"dwell_trigger": "maybe"},
                    {"restart_clears": "never"}, {"eor": ""}):
        with pytest.raises(ValueError):
            SimSR400(None, **options)


def test_twin_garble_never_a_silent_non_number():
    world = CycleWorld()
    counter = open_instrument("sr400", "sim://sr400", world=world, count_timeout_s=0.0)
    counter.configure_gated(2e-3)
    world.offsets = counter.trigger_offsets()
    counter.arm()
    counter.twin.faults.garble = True
    for _ in range(60):
        world.cycle()
        try:
            value = counter.count()
        except IonclockError:
            continue
        # The one corruption no line protocol can see: a reply cut after a digit. It can only
        # shrink the number, never produce one that was not a prefix of the true count.
        assert isinstance(value, int) and value >= 0


@pytest.mark.ostransport
@pytest.mark.parametrize("interface", ["rs232", "gpib"])
def test_twin_over_pty(interface):
    world = CycleWorld()
    lock = threading.Lock()
    with PtyServer(SimSR400(world, interface=interface), lock) as server:
        counter = open_instrument("sr400", server.port, count_timeout_s=0.5)
        try:
            counter.configure_gated(1e-3, periods=2)
            world.offsets = counter.trigger_offsets()
            world.detection_s = 1e-3
            counter.arm()
            counts = []
            for _ in range(3):
                with lock:
                    world.cycle()
                counts.append(counter.count())
            assert counts == [100, 101, 102]
            assert counter.ping()
        finally:
            counter.close()


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_no_out_of_range_gate_time_reaches_the_wire(t):
    adapter = RecordingAdapter("0")
    counter = SR400(adapter)
    try:
        counter.gate_time = t
    except ValueError:
        assert adapter.written == []
        return
    assert adapter.written[0].startswith("GW 0,")
    assert 5e-9 <= float(adapter.written[0][5:]) <= 999.2e-3


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_presets_have_one_significant_digit(n):
    try:
        text = preset_text(n)
    except ValueError:
        return
    digit, exponent = text.split("E")
    assert len(digit) == 1 and digit != "0"
    assert float(text) == pytest.approx(n, rel=1e-9)
    assert float(text) >= 1 and float(text) <= 9e11


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=14))
def test_count_parser_is_exact_or_typed_error(reply):
    try:
        value = parse_count(reply)
    except (ReplyError, InstrumentTimeout):
        return
    if value is None:
        assert reply == "-1"
    else:
        assert reply.isascii() and reply.isdigit() and value == int(reply)
