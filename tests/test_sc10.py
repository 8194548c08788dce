"""Thorlabs SC10: protocol transcripts (echo/value/prompt framing), twin, pty, properties."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.apparatus.transport import LoopbackAdapter
from ionclock.drivers.sc10 import SC10
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.sim_instruments.sc10 import SimSC10
from ionclock.sim_instruments.serve import PtyServer
from tests.link_peers import CannedPeer


def q(cmd: str, value: str) -> tuple[str, str]:
    """A query and the unit's raw reply: echo CR, value CR, prompt."""
    return (cmd, f"{cmd}\r{value}\r> ")


def s(cmd: str) -> tuple[str, str]:
    """A setting and the unit's raw reply: echo CR, prompt."""
    return (cmd, f"{cmd}\r> ")


# (name, action, expected result, pairs); replayed in this order against a fresh twin too.
TRANSCRIPTS = [
    ("identity", lambda d: d.identity, "THORLABS SC10 VERSION 1.07",
     [q("id?", "THORLABS SC10 VERSION 1.07")]),
    ("mode_set", lambda d: setattr(d, "mode", "manual"), None, [s("mode=1")]),
    ("mode_get", lambda d: d.mode, "manual", [q("mode?", "1")]),
    ("open_time_set", lambda d: setattr(d, "open_time", 0.25), None, [s("open=250")]),
    ("open_time_get", lambda d: d.open_time, 0.25, [q("open?", "250")]),
    ("shut_time_set", lambda d: setattr(d, "shut_time", 0.5), None, [s("shut=500")]),
    ("shut_time_get", lambda d: d.shut_time, 0.5, [q("shut?", "500")]),
    ("repeat_set", lambda d: setattr(d, "repeat_count", 5), None, [s("rep=5")]),
    ("repeat_get", lambda d: d.repeat_count, 5, [q("rep?", "5")]),
    ("trigger_set", lambda d: setattr(d, "trigger", "internal"), None, [s("trig=0")]),
    ("trigger_get", lambda d: d.trigger, "internal", [q("trig?", "0")]),
    ("trigger_out_set", lambda d: setattr(d, "trigger_out", "controller"), None, [s("xto=1")]),
    ("trigger_out_get", lambda d: d.trigger_out, "controller", [q("xto?", "1")]),
    ("open", lambda d: d.open(), None, [q("ens?", "0"), s("ens"), q("ens?", "1")]),
    ("open_again_is_a_no_op", lambda d: d.open(), None, [q("ens?", "1")]),
    ("enabled", lambda d: d.enabled, True, [q("ens?", "1")]),
    ("is_closed_when_open", lambda d: d.is_closed, False, [q("closed?", "0")]),
    ("close", lambda d: d.close(), None, [q("ens?", "1"), s("ens"), q("ens?", "0")]),
    ("close_again_is_a_no_op", lambda d: d.close(), None, [q("ens?", "0")]),
    ("is_closed", lambda d: d.is_closed, True, [q("closed?", "1")]),
    ("interlock", lambda d: d.interlock_tripped, False, [q("interlock?", "0")]),
    ("save", lambda d: d.save(), None, [s("savp")]),
    ("save_mode", lambda d: d.save_mode(), None, [s("save")]),
    ("restore", lambda d: d.restore(), None, [s("resp")]),
    ("ping", lambda d: d.ping(), True, [q("id?", "THORLABS SC10 VERSION 1.07")]),
    ("undefined_command", lambda d: d.write("foo"), InstrumentError,
     [("foo", "foo\rCMD_NOT_DEFINED\r> ")]),
    ("invalid_argument", lambda d: d.write("rep=100"), InstrumentError,
     [("rep=100", "rep=100\rCMD_ARG_INVALID\r> ")]),
]


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_protocol(name, action, expected, pairs):
    with expected_protocol(SC10, pairs) as inst:
        if expected is InstrumentError:
            with pytest.raises(InstrumentError) as info:
                action(inst)
            assert info.value.code in ("CMD_NOT_DEFINED", "CMD_ARG_INVALID")
            return
        result = action(inst)
    if expected is not None:
        assert result == expected


def test_twin_parser_matches_transcripts():
    twin = SimSC10()
    for _, _, _, pairs in TRANSCRIPTS:
        for command, reply in pairs:
            twin.write(command.encode() + b"\r")
            assert twin.read_available() == reply.encode(), command


@pytest.mark.parametrize("reply", [
    "ens?\r> ",                 # value missing
    "enz?\r0\r> ",              # wrong echo
    "ens?\r0\r1\r> ",           # a stray line
    "ens?\r2\r> ",              # not a flag
    "ens?\r0> ",                # prompt glued to the value
    "ens?\r\xff\r> ",           # line noise
])
def test_garbled_replies_raise_reply_error(reply):
    with expected_protocol(SC10, [("ens?", reply.encode("latin-1"))]) as inst:
        with pytest.raises(ReplyError):
            inst.enabled  # noqa: B018


def test_truncated_reply_times_out():
    twin = SimSC10()
    inst = SC10(LoopbackAdapter(twin, "\r", "\r"))
    twin.faults.timeout = True
    with pytest.raises(InstrumentTimeout):
        inst.enabled  # noqa: B018
    assert inst.ping() is False


def test_open_refuses_when_interlock_tripped():
    twin = SimSC10()
    inst = SC10(LoopbackAdapter(twin, "\r", "\r"))
    twin.faults.interlock = True
    with pytest.raises(InstrumentError, match="interlock"):
        inst.open()
    assert inst.enabled is False


def test_bad_values_rejected_before_the_wire():
    with expected_protocol(SC10, []) as inst:
        for attr, value in [("open_time", -0.001), ("open_time", 1000.0), ("shut_time", 1e9),
                            ("repeat_count", 0), ("repeat_count", 100), ("mode", "fast"),
                            ("trigger", 2)]:
            with pytest.raises(ValueError):
                setattr(inst, attr, value)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_no_out_of_range_time_reaches_the_wire(value):
    twin = SimSC10()
    twin.record_transcript = True
    inst = SC10(LoopbackAdapter(twin, "\r", "\r"))
    try:
        inst.shut_time = value
    except ValueError:
        assert twin.transcript == []
        return
    (command, _), = twin.transcript
    assert command.startswith("shut=") and 0 <= int(command[5:]) <= 999999


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=20))
@example(b"6\r")   # a number outside the mode map: ReplyError, not pymeasure's KeyError
@example(b"0\r")
def test_random_replies_raise_typed_errors(noise):
    inst = SC10(LoopbackAdapter(CannedPeer(b"mode?\r" + noise + b"> "), "\r", "\r"))
    try:
        value = inst.mode
    except (ReplyError, InstrumentError):
        return
    assert noise in [b"%d\r" % v for v in range(1, 6)]
    assert value == ["manual", "auto", "single", "repeat", "external"][int(noise[:1]) - 1]


class World:
    def __init__(self):
        self.env = simpy.Environment()
        self.changes = []

    def shutter_changed(self, name, is_open):
        self.changes.append((self.env.now, name, is_open))


def test_twin_latency_hook_and_stuck_open():
    world = World()
    inst = open_instrument("sc10", "sim://sc10", world=world,
                           twin_options={"shutter": "397", "latency_s": 0.01})
    inst.open()
    assert world.changes == []  # the blade takes its time
    world.env.run(until=0.02)
    assert world.changes == [(0.01, "397", True)]
    inst.twin.faults.stuck_open = True
    inst.close()
    world.env.run(until=0.1)
    assert inst.is_closed is True            # the controller believes it closed...
    assert inst.twin.is_physically_open      # ...but the light still passes
    assert world.changes == [(0.01, "397", True)]


def test_twin_single_and_repeat_modes():
    world = World()
    inst = open_instrument("sc10", "sim://sc10", world=world,
                           twin_options={"latency_s": 0.0})
    inst.mode = "single"
    inst.open_time = 0.2
    inst.shut_time = 0.1
    inst.write("ens")  # toggle: starts the sequence
    world.env.run(until=1.0)
    assert [c[2] for c in world.changes] == [True, False]
    assert world.changes[1][0] == pytest.approx(0.2)
    assert inst.enabled is False
    inst.mode = "repeat"
    inst.repeat_count = 3
    inst.write("ens")  # toggle: starts the sequence
    world.env.run(until=3.0)
    assert [c[2] for c in world.changes[2:]] == [True, False] * 3


def test_power_cycle_restores_saved_parameters():
    twin = SimSC10()
    inst = SC10(LoopbackAdapter(twin, "\r", "\r"))
    inst.open_time = 1.5
    inst.save()
    inst.open_time = 2.0
    inst.open()
    twin.power_cycle()
    assert inst.open_time == 1.5 and inst.enabled is False


@pytest.mark.ostransport
def test_over_a_pty_with_pyserial():
    world = World()
    with PtyServer(SimSC10(world, latency_s=0.0)) as srv:
        inst = open_instrument("sc10", srv.port)
        try:
            assert inst.ping()
            inst.mode = "manual"
            inst.open()
            inst.open()
            assert inst.enabled and not inst.is_closed
            inst.close()
            assert inst.is_closed
            inst.open_time = 0.123
            assert inst.open_time == 0.123
        finally:
            inst.disconnect()
    assert [c[2] for c in world.changes] == [True, False]


# --- store commands: echo, maybe a value line, prompt (drivers/sc10.py docstring) -------------
def v(cmd: str, value: str = "1") -> tuple[str, str]:
    """A store command answered with a value line (InstrumentKit's reading): echo, value, prompt."""
    return (cmd, f"{cmd}\r{value}\r> ")


STORE_ACTIONS = [("save", lambda d: d.save(), "savp"),
                 ("save_mode", lambda d: d.save_mode(), "save"),
                 ("restore", lambda d: d.restore(), "resp"),
                 ("factory_default", lambda d: d.factory_default(), "default")]


@pytest.mark.parametrize("name, action, cmd", STORE_ACTIONS, ids=[a[0] for a in STORE_ACTIONS])
@pytest.mark.parametrize("reply", ["bare", "value_line"])
def test_store_commands_take_both_readings(name, action, cmd, reply):
    pair = s(cmd) if reply == "bare" else v(cmd)
    with expected_protocol(SC10, [pair]) as inst:
        assert action(inst) is None


@pytest.mark.parametrize("name, action, cmd", STORE_ACTIONS, ids=[a[0] for a in STORE_ACTIONS])
@pytest.mark.parametrize("error", ["CMD_NOT_DEFINED", "CMD_ARG_INVALID",
                                   "Command error CMD_NOT_DEFINED"])
def test_store_commands_still_raise_on_an_error_word(name, action, cmd, error):
    with expected_protocol(SC10, [v(cmd, error)]) as inst:
        with pytest.raises(InstrumentError) as info:
            action(inst)
    assert info.value.code == error.split()[-1]


@pytest.mark.parametrize("pair", [v("savp", "1\r1"),          # two lines
                                  v("savp", ""),              # an empty line
                                  v("mode=1"),                # a value line after a setting
                                  v("ens")])
def test_stray_lines_are_still_reply_errors(pair):
    with expected_protocol(SC10, [pair]) as inst:
        with pytest.raises(ReplyError):
            inst.write(pair[0])


def test_twin_store_reply_matches_the_value_line_transcripts():
    twin = SimSC10(store_reply="1")
    for cmd in ("savp", "save", "resp", "default"):
        twin.write(cmd.encode() + b"\r")
        assert twin.read_available() == v(cmd)[1].encode(), cmd
    twin.write(b"mode=2\r")  # other settings keep echo + prompt only
    assert twin.read_available() == b"mode=2\r> "


def test_twin_error_prefix():
    twin = SimSC10(error_prefix="Command error ")
    twin.write(b"foo\r")
    assert twin.read_available() == b"foo\rCommand error CMD_NOT_DEFINED\r> "
    inst = SC10(LoopbackAdapter(twin, "\r", "\r"))
    with pytest.raises(InstrumentError) as info:
        inst.write("rep=100")
    assert info.value.code == "CMD_ARG_INVALID"


@pytest.mark.parametrize("store_reply", [None, "1"])
def test_store_and_restore_against_the_twin_in_both_readings(store_reply):
    # The driver before this change raised ReplyError at save() when the twin sends "1".
    twin = SimSC10(store_reply=store_reply)
    inst = SC10(LoopbackAdapter(twin, "\r", "\r"))
    inst.open_time = 1.5
    inst.trigger_out = "controller"
    inst.save()
    inst.save_mode()
    inst.open_time = 2.0
    inst.restore()
    assert inst.open_time == 1.5
    inst.factory_default()
    assert inst.open_time == 0.01 and inst.trigger_out == "shutter"
    twin.power_cycle()
    assert inst.open_time == 0.01
    assert inst.ping()


@pytest.mark.parametrize("store_reply", [None, "1"])
def test_store_errors_reach_the_caller_in_both_readings(store_reply):
    twin = SimSC10(store_reply=store_reply, error_prefix="Command error ")
    inst = SC10(LoopbackAdapter(twin, "\r", "\r"))
    with pytest.raises(InstrumentError) as info:
        inst.write("savp=1")  # not a command: the unit's error, not the store value line
    assert info.value.code == "CMD_NOT_DEFINED"
    inst.save()  # the link is still in step
