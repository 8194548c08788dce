"""SR400 photon counter: protocol (tier 1), twin (tier 2, in-process and over a pty), properties."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ionclock.drivers.photon_counter import PhotonCounter
from ionclock.drivers.sr400 import SR400, parse_count, preset_text
from ionclock.sim_instruments.serve import PtyServer
from ionclock.sim_instruments.sr400 import SimSR400
from pymeasure.adapters import Adapter
from pymeasure.test import expected_protocol

from ionclock.errors import InstrumentError, InstrumentTimeout, IonclockError, ReplyError
from ionclock.registry import open_instrument

OK = ("SS 7", "0")  # the status read-back after each set
CONFIGURE = [("CM 0", None), OK, ("CI 0,1", None), OK, ("CI 2,3", None), OK,
             ("CP 2,1E0", None), OK, ("GM 0,1", None), OK, ("GD 0,0.000E+00", None), OK,
             ("GW 0,2.000E-03", None), OK, ("NP 2000", None), OK, ("NE 1", None), OK,
             ("DT 2.000E-03", None), OK]
ARM = [("CR", None), ("CS", None), OK, ("NP", "2000")]
START = [("NP 2000", None), OK, ("NE 1", None), OK]  # power-on is NP 1, NE STOP

def _start(counter, periods=2000):
    counter.periods = periods
    counter.scan_restart = True


# (name, action, expected result, pairs); each list starts at the twin's power-on state and
# the twin's world answers detect() with 17, 18, 19, ... so the counts are known.
TRANSCRIPTS = [
    ("configure", lambda c: c.configure_gated(2e-3), None, CONFIGURE),
    ("arm", lambda c: c.arm(), None, [("CR", None), ("CS", None), OK, ("NP", "1")]),
    ("count", lambda c: (_start(c), c.arm(), c.count(), c.count())[2:], (17, 18),
     START + ARM + [("QA 1", "17"), ("QA 2", "18")]),
    ("count_wraps_to_point_1",
     lambda c: (_start(c, 2), c.arm(), [c.count() for _ in range(3)])[-1],
     [17, 18, 19], [("NP 2", None), OK, ("NE 1", None), OK, ("CR", None), ("CS", None), OK,
                    ("NP", "2"), ("QA 1", "17"), ("QA 2", "18"), ("QA 1", "19")]),
    ("gate_time_set", lambda c: setattr(c, "gate_time", 1e-3), None,
     [("GW 0,1.000E-03", None), OK]),
    ("gate_time_get", lambda c: c.gate_time, 5e-6, [("GW 0", "5.0000E-06")]),
    ("gate_delay_set", lambda c: setattr(c, "gate_delay", 1.5e-6), None,
     [("GD 0,1.500E-06", None), OK]),
    ("periods_get", lambda c: c.periods, 1, [("NP", "1")]),
    ("counting_mode_get", lambda c: c.counting_mode, "A,B", [("CM", "0")]),
    ("counting_mode_set", lambda c: setattr(c, "counting_mode", "A-B"), None,
     [("CM 1", None), OK]),
    ("t_input_get", lambda c: c.counter_t_input, "10MHz", [("CI 2", "0")]),
    ("t_preset_get", lambda c: c.t_preset, 1e7, [("CP 2", "1E7")]),
    ("t_preset_set", lambda c: setattr(c, "t_preset", 2e6), None, [("CP 2,2E6", None), OK]),
    ("scan_restart_get", lambda c: c.scan_restart, False, [("NE", "0")]),
    ("gate_mode_set", lambda c: setattr(c, "gate_mode", "fixed"), None, [("GM 0,1", None), OK]),
    ("dwell_set", lambda c: setattr(c, "dwell_time", 0.01), None,
     [("DT 1.000E-02", None), OK]),
    ("discriminator_set", lambda c: setattr(c, "discriminator_level", -0.012), None,
     [("DL 0,-0.0120", None), OK]),
    ("current_count", lambda c: c.current_count, 0, [("XA", "0")]),
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
    ("dwell_time", 1e-3), ("discriminator_level", 0.31), ("counting_mode", "A*B")])
def test_bad_input_writes_nothing(attr, value):
    with expected_protocol(SR400, []) as counter:
        with pytest.raises(ValueError):
            setattr(counter, attr, value)


def test_sr400_is_a_photon_counter():
    members = [m for m in dir(PhotonCounter) if not m.startswith("_")]
    assert sorted(members) == ["close", "count", "gate_time", "ping"]
    for member in members:
        assert hasattr(SR400, member)
    assert isinstance(SR400.gate_time, property) and SR400.gate_time.fset is not None


# --- tier 2: twin -----------------------------------------------------------------------------
class CountingWorld:
    """A world whose detection returns 17, 18, 19, ... and records the gate lengths."""

    def __init__(self):
        self.gates = []

    def detect(self, gate_s):
        self.gates.append(gate_s)
        return 16 + len(self.gates)


def _replay(twin, pairs):
    for cmd, reply in pairs:
        assert cmd is not None
        twin.write(cmd.encode("ascii") + b"\r")
        out = twin.read_available()
        assert out == (b"" if reply is None else reply.encode() + b"\r"), cmd


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_twin_parser_matches_transcript(name, action, expected, pairs):
    _replay(SimSR400(CountingWorld()), pairs)


def test_twin_driver_counts_from_world_detect():
    world = CountingWorld()
    counter = open_instrument("sr400", "sim://sr400", world=world, count_timeout_s=0.0)
    counter.configure_gated(2e-3, periods=3)
    counter.arm()
    assert [counter.count() for _ in range(7)] == [17, 18, 19, 20, 21, 22, 23]
    assert world.gates == [2e-3] * 7
    assert counter.gate_time == 2e-3
    assert counter.ping()


def test_twin_not_armed_reads_minus_one():
    counter = open_instrument("sr400", "sim://sr400", world=CountingWorld(),
                              count_timeout_s=0.0)
    with pytest.raises(InstrumentTimeout):
        counter.count()


def test_twin_own_poisson_is_seeded():
    def counts(seed):
        counter = open_instrument("sr400", "sim://sr400", world=object(), count_timeout_s=0.0,
                                  twin_options={"seed": seed, "mean_counts": 40.0})
        counter.configure_gated(2e-3)
        counter.arm()
        return [counter.count() for _ in range(400)]

    first = counts(3)
    assert first == counts(3)
    assert first != counts(4)
    assert statistics.mean(first) == pytest.approx(40.0, abs=1.5)


def test_twin_unknown_command_sets_error_bit():
    twin = SimSR400(None)
    twin.write(b"ZZ 3\rSS 7\rSS 7\r")
    assert twin.read_available() == b"1\r0\r"


def test_twin_several_commands_per_line():
    twin = SimSR400(None)
    twin.write(b"NP 5;NP;cm\r")
    assert twin.read_available() == b"5\r0\r"


def test_twin_garble_never_a_silent_non_number():
    counter = open_instrument("sr400", "sim://sr400", world=CountingWorld(),
                              count_timeout_s=0.0)
    counter.configure_gated(2e-3)
    counter.arm()
    counter.twin.faults.garble = True
    for _ in range(60):
        try:
            value = counter.count()
        except IonclockError:
            continue
        # The one corruption no line protocol can see: a reply cut after a digit. It can only
        # shrink the number, never produce one that was not a prefix of the true count.
        assert isinstance(value, int) and value >= 0


@pytest.mark.ostransport
def test_twin_over_pty():
    world = CountingWorld()
    with PtyServer(SimSR400(world)) as server:
        counter = open_instrument("sr400", server.port, count_timeout_s=0.5)
        try:
            counter.configure_gated(1e-3, periods=10)
            counter.arm()
            assert [counter.count() for _ in range(3)] == [17, 18, 19]
            assert counter.ping()
        finally:
            counter.close()


# --- properties ---------------------------------------------------------------------------------
class RecordingAdapter(Adapter):
    def __init__(self):
        super().__init__()
        self.written: list[str] = []

    def _write(self, command, **kwargs):
        self.written.append(command)

    def _read(self, **kwargs):
        return "0"


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_no_out_of_range_gate_time_reaches_the_wire(t):
    adapter = RecordingAdapter()
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
