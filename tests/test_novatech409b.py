"""Novatech 409B DDS: protocol (tier 1), twin (tier 2, in-process and over a pty), properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.novatech409b import (
    ERROR_CODES,
    Novatech409B,
    amplitude_word,
    parse_que,
    phase_word,
)
from ionclock.errors import InstrumentError, InstrumentTimeout, IonclockError, ReplyError
from ionclock.sim_instruments.novatech409b import SimNovatech409B
from ionclock.sim_instruments.serve import PtyServer
from tests.transcripts import RecordingAdapter, replay

CONNECT = [("E d", "E d"), (None, "OK")]  # the unit powers up echoing: the echo, then OK
IDLE = "00000000 0000 03FF 0000 00000000 00000000 000301"
STATUS = "80 BC0000 0000 0102 21"
QUE_REPLY = [("QUE", "00989680 2000 01F5 0000 00000000 00000000 000301"),
             (None, IDLE), (None, IDLE), (None, IDLE), (None, STATUS)]


def _set(attr, value, ch=0):
    return lambda d: setattr(getattr(d, f"ch_{ch}"), attr, value)


# (name, action, expected result, pairs): every pair list starts at the twin's power-on
# state, so the same list checks the driver (expected_protocol) and the twin's parser.
TRANSCRIPTS = [
    ("connect", lambda d: None, None, CONNECT),
    ("frequency_set", _set("frequency", 80e6), None, CONNECT + [("F0 80.0000000", "OK")]),
    ("frequency_set_resolution", _set("frequency", 80_000_000.1, 3), None,
     CONNECT + [("F3 80.0000001", "OK")]),
    ("frequency_set_max", _set("frequency", 171e6, 1), None,
     CONNECT + [("F1 171.0000000", "OK")]),
    ("phase_set", _set("phase", 0.25, 1), None, CONNECT + [("P1 4096", "OK")]),
    ("phase_set_wraps", _set("phase", 1.0), None, CONNECT + [("P0 0", "OK")]),
    ("phase_rad_set", _set("phase_rad", math.pi, 2), None, CONNECT + [("P2 8192", "OK")]),
    ("amplitude_set", _set("amplitude", 0.5, 2), None, CONNECT + [("V2 512", "OK")]),
    ("amplitude_full", _set("amplitude", 1.0), None, CONNECT + [("V0 1023", "OK")]),
    ("phase_continuous", lambda d: setattr(d, "phase_continuous", True), None,
     CONNECT + [("M n", "OK")]),
    ("auto_clear_phase", lambda d: setattr(d, "phase_continuous", False), None,
     CONNECT + [("M a", "OK")]),
    ("simultaneous_on", lambda d: setattr(d, "simultaneous_update", True), None,
     CONNECT + [("I m", "OK")]),
    ("simultaneous_off", lambda d: setattr(d, "simultaneous_update", False), None,
     CONNECT + [("I a", "OK")]),
    ("apply", lambda d: d.apply(), None, CONNECT + [("I p", "OK")]),
    ("save", lambda d: d.save(), None, CONNECT + [("S", "OK")]),
    ("reset", lambda d: d.reset(sleep=lambda s: None), None,
     CONNECT + [("R", None)] + CONNECT),
    ("ping", lambda d: d.ping(), True, CONNECT + [("", "OK")]),
    ("status", lambda d: (setattr(d.ch_0, "frequency", 1e6), setattr(d.ch_0, "phase", 0.5),
                          setattr(d.ch_0, "amplitude", 501 / 1023), d.status().firmware)[-1],
     "21", CONNECT + [("F0 1.0000000", "OK"), ("P0 8192", "OK"), ("V0 501", "OK")]
     + QUE_REPLY),
    ("frequency_get", lambda d: (setattr(d.ch_0, "frequency", 1e6), d.ch_0.frequency)[-1],
     1e6, CONNECT + [("F0 1.0000000", "OK"),
                     ("QUE", "00989680 0000 03FF 0000 00000000 00000000 000301")]
     + [(None, IDLE)] * 3 + [(None, STATUS)]),
]


# --- tier 1: protocol -----------------------------------------------------------------------
@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_protocol(name, action, expected, pairs):
    with expected_protocol(Novatech409B, pairs) as dds:
        result = action(dds)
    if isinstance(expected, str):
        assert result == expected
    elif expected is not None:
        assert result == pytest.approx(expected)


def test_protocol_echo_already_off():
    with expected_protocol(Novatech409B, [("E d", "OK"), ("F0 10.0000000", "OK")]) as dds:
        dds.ch_0.frequency = 10e6


def test_protocol_modes_on_connect():
    pairs = [("E d", "OK"), ("M n", "OK"), ("I m", "OK")]
    with expected_protocol(Novatech409B, pairs, phase_continuous=True,
                           simultaneous_update=True) as dds:
        assert dds.simultaneous_update is True


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_protocol_error_codes(code):
    with expected_protocol(Novatech409B, [("E d", "OK"), ("F0 80.0000000", code)]) as dds:
        with pytest.raises(InstrumentError) as info:
            dds.ch_0.frequency = 80e6
    assert info.value.code == code
    assert "Novatech 409B" in str(info.value)


@pytest.mark.parametrize("reply", ["OK!", "ok", "?9", "\x7fOK", "O"])
def test_protocol_garbled_reply(reply):
    with expected_protocol(Novatech409B, [("E d", "OK"), ("P0 0", reply)]) as dds:
        with pytest.raises(ReplyError):
            dds.ch_0.phase = 0.0


def test_protocol_empty_reply_is_timeout():
    with expected_protocol(Novatech409B, [("E d", "OK"), ("P0 0", "")]) as dds:
        with pytest.raises(InstrumentTimeout):
            dds.ch_0.phase = 0.0


def test_protocol_que_error():
    with expected_protocol(Novatech409B, [("E d", "OK"), ("QUE", "?0")]) as dds:
        with pytest.raises(InstrumentError) as info:
            dds.status()
    assert info.value.code == "?0"


def test_protocol_ping_false_on_error():
    with expected_protocol(Novatech409B, [("E d", "OK"), ("", "?0")]) as dds:
        assert dds.ping() is False


@pytest.mark.parametrize("attr, value", [
    ("frequency", -1.0), ("frequency", 171e6 + 1), ("frequency", math.nan),
    ("phase", math.inf), ("phase", math.nan),
    ("amplitude", 1.0001), ("amplitude", -0.1), ("amplitude", math.nan)])
def test_bad_input_writes_nothing(attr, value):
    with expected_protocol(Novatech409B, [("E d", "OK")]) as dds:
        with pytest.raises(ValueError):
            setattr(dds.ch_0, attr, value)


# --- tier 2: twin -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_twin_parser_matches_transcript(name, action, expected, pairs):
    replay(SimNovatech409B(None), pairs)


class DdsWorld:
    def __init__(self):
        self.changes = []

    def dds_changed(self, channel, frequency_hz, phase_turns, amplitude_fraction):
        self.changes.append((channel, frequency_hz, phase_turns, amplitude_fraction))


def test_twin_driver_round_trip_and_world_hook():
    world = DdsWorld()
    dds = open_instrument("novatech409b", "sim://novatech409b", world=world)
    dds.ch_0.frequency = 80_000_000.1
    dds.ch_0.phase = 0.75
    dds.ch_1.amplitude = 0.25
    assert world.changes == [(0, 80_000_000.1, 0.0, 1.0), (0, 80_000_000.1, 0.75, 1.0),
                             (1, 0.0, 0.0, round(0.25 * 1023) / 1023)]
    status = dds.status()
    assert status.firmware == "21"
    assert status.channels[0].frequency_hz == pytest.approx(80_000_000.1, abs=1e-6)
    assert status.channels[0].phase_turns == 0.75
    assert dds.ch_1.amplitude_fraction == pytest.approx(256 / 1023)
    assert dds.ping()


def test_twin_manual_update_applies_on_apply():
    world = DdsWorld()
    dds = open_instrument("novatech409b", "sim://novatech409b", world=world)
    dds.simultaneous_update = True
    dds.ch_0.frequency = 1e6
    dds.ch_2.frequency = 2e6
    assert world.changes == []
    assert dds.status().channels[0].frequency_hz == 0.0
    dds.apply()
    assert [c[:2] for c in world.changes] == [(0, 1e6), (2, 2e6)]
    dds.simultaneous_update = False
    dds.ch_0.frequency = 3e6
    assert world.changes[-1][:2] == (0, 3e6)


def test_twin_save_and_reset():
    dds = open_instrument("novatech409b", "sim://novatech409b", world=DdsWorld())
    dds.ch_3.frequency = 5e6
    dds.save()
    dds.ch_3.frequency = 6e6
    dds.reset(sleep=lambda s: None)  # echo is back on after R: the driver copes
    assert dds.ch_3.frequency == 5e6


@pytest.mark.parametrize("line, reply", [
    (b"F0 171.2", b"?1"), (b"F0 abc", b"?1"), (b"F4 1.0", b"?0"), (b"P0 16384", b"?4"),
    (b"P0 -1", b"?4"), (b"V0 x", b"?7"), (b"M x", b"?6"), (b"I q", b"?6"), (b"XYZ", b"?0"),
    (b"F0 " + b"1" * 80, b"?3"), (b"\xff", b"?f"), (b"", b"OK"), (b"que", None)])
def test_twin_error_codes(line, reply):
    twin = SimNovatech409B(None, echo=False)
    twin.write(line + b"\r\n")
    out = twin.read_available()
    if reply is None:
        assert len(out.split(b"\r\n")) == 6
    else:
        assert out == reply + b"\r\n"


def test_twin_accepts_amplitude_above_1023_like_the_unit():
    twin = SimNovatech409B(None, echo=False)
    twin.write(b"V0 1024\r\n")
    assert twin.read_available() == b"OK\r\n"
    assert twin.channel_state(0)[2] == 0.0  # the 10-bit DAC wrapped: why the driver guards


def test_twin_garble_raises_typed_errors():
    dds = open_instrument("novatech409b", "sim://novatech409b", world=DdsWorld())
    dds.twin.faults.garble = True
    for k in range(60):
        with pytest.raises(IonclockError):
            dds.ch_0.frequency = 1e6 + k
        dds.adapter.flush_read_buffer()


def test_twin_timeout_and_disconnect():
    dds = open_instrument("novatech409b", "sim://novatech409b", world=DdsWorld())
    dds.twin.faults.timeout = True
    with pytest.raises(InstrumentTimeout):
        dds.ch_0.frequency = 1e6
    assert dds.ping() is False
    dds.twin.faults.timeout = False
    dds.twin.faults.disconnected = True
    assert dds.ping() is False


@pytest.mark.ostransport
def test_twin_over_pty():
    world = DdsWorld()
    with PtyServer(SimNovatech409B(world)) as server:
        dds = open_instrument("novatech409b", server.port)
        try:
            dds.ch_2.frequency = 12.5e6
            dds.ch_2.phase = 0.5
            assert dds.status().channels[2].frequency_hz == pytest.approx(12.5e6)
            assert dds.ping()
        finally:
            dds.close()
    assert world.changes[-1][:3] == (2, 12.5e6, 0.5)


# --- properties ---------------------------------------------------------------------------------


def _dds(reply="OK"):
    adapter = RecordingAdapter()
    dds = Novatech409B(adapter)
    adapter.written.clear()
    adapter.reply = reply
    return dds, adapter


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_no_out_of_range_frequency_reaches_the_wire(hz):
    dds, adapter = _dds()
    try:
        dds.ch_1.frequency = hz
    except ValueError:
        assert adapter.written == []
        return
    (cmd,) = adapter.written
    assert cmd.startswith("F1 ")
    mhz = cmd[3:]
    assert len(mhz.split(".")[1]) == 7
    assert 0.0 <= float(mhz) <= 171.0
    assert abs(float(mhz) * 1e6 - hz) <= 0.05 + 1e-9 * hz


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_no_out_of_range_amplitude_or_phase_reaches_the_wire(x):
    dds, adapter = _dds()
    for attr in ("amplitude", "phase"):
        adapter.written.clear()
        try:
            setattr(dds.ch_0, attr, x)
        except ValueError:
            assert adapter.written == []
            continue
        (cmd,) = adapter.written
        word = int(cmd.split()[1])
        assert 0 <= word <= (1023 if attr == "amplitude" else 16383)
        if attr == "amplitude":
            assert word == amplitude_word(x)
        else:
            assert word == phase_word(x)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_any_reply_but_ok_raises_a_typed_error(reply):
    dds, _ = _dds(reply)
    if reply == "OK":
        dds.ch_0.frequency = 1e6
        return
    with pytest.raises((InstrumentError, InstrumentTimeout)):
        dds.ch_0.frequency = 1e6


_LINE = st.text(alphabet="0123456789ABCDEFabcdef #@!~% \x7f", max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, min_size=0, max_size=6))
def test_que_parser_raises_reply_error_or_returns_in_range(lines):
    try:
        status = parse_que(lines)
    except ReplyError:
        return
    for ch in status.channels:
        assert 0 <= ch.phase_word < 16384 and 0 <= ch.amplitude_word <= 1023
        assert 0.0 <= ch.frequency_hz <= 0xFFFFFFFF / 10


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 4), st.integers(0, 55), st.sampled_from("#@!~%"))
def test_corrupted_que_never_gives_wrong_numbers(line_no, pos, char):
    lines = [QUE_REPLY[0][1], IDLE, IDLE, IDLE, STATUS]
    good = parse_que(lines)
    text = lines[line_no]
    pos = min(pos, len(text) - 1)
    lines[line_no] = text[:pos] + char + text[pos + 1:]
    try:
        status = parse_que(lines)
    except ReplyError:
        return
    assert status.channels == good.channels  # only unparsed trailing fields were hit
