"""Keithley DAQ6510 RTD scans: protocol, twin (in-process and loopback TCP), properties."""

from __future__ import annotations

import types

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.keithley_daq6510 import KeithleyDAQ6510RTD, channel_list, parse_scan
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.physics.rtd import Missing, SensorCalibration, cvd_resistance, cvd_temperature
from ionclock.sim_instruments.cryostat import Cryostat
from ionclock.sim_instruments.keithley_daq6510 import SimKeithleyDAQ6510
from ionclock.sim_instruments.serve import TcpServer
from tests.transcripts import check_result, run_action

NO_ERROR = (":SYST:ERR?", '0,"No error"')
IDN = "KEITHLEY INSTRUMENTS,MODEL DAQ6510,04999999,1.7.12b"
TWIN_OPTIONS = dict(locations={}, values={101: 79.512, 102: 80.004},
                    sensor_errors={101: 0.0, 102: 0.0, 103: 0.0})
RTD_3W = [(":SENS:FUNC 'TEMP',(@101,102,103)", None),
          (":SENS:TEMP:TRAN TRTD,(@101,102,103)", None),
          (":SENS:TEMP:RTD:THR PT100,(@101,102,103)", None),
          (":SENS:TEMP:UNIT KELV,(@101,102,103)", None), NO_ERROR]
SCAN_CREATE = [(":ROUT:SCAN:CRE (@101,102,103)", None), (":ROUT:SCAN:COUN:SCAN 1", None),
               NO_ERROR]
SCAN_RUN = [(":TRAC:CLE 'defbuffer1'", None), (":INIT:IMM", None), ("*OPC?", "1")]
ACT = ":TRAC:ACT? 'defbuffer1'"
R101, R102 = cvd_resistance(79.512), cvd_resistance(80.004)


def _missing(v):
    return isinstance(v, Missing)


def _rtd_scan(d):
    d.configure_rtd([101, 102, 103])
    d.create_scan([101, 102, 103])
    return d.scan()


def _res_scan(d):
    d.configure_resistance([101, 102])
    d.create_scan([101, 102])
    return d.scan_temperatures()


TRANSCRIPTS = [
    ("configure_rtd_3wire", lambda d: d.configure_rtd([101, 102, 103]), None, RTD_3W),
    ("configure_rtd_4wire", lambda d: d.configure_rtd([101], wires=4), None,
     [(":SENS:FUNC 'TEMP',(@101)", None), (":SENS:TEMP:TRAN FRTD,(@101)", None),
      (":SENS:TEMP:RTD:FOUR PT100,(@101)", None), (":SENS:TEMP:UNIT KELV,(@101)", None),
      NO_ERROR]),
    ("configure_resistance", lambda d: d.configure_resistance([101, 102]), None,
     [(":SENS:FUNC 'FRES',(@101,102)", None), NO_ERROR]),
    ("rtd_scan", _rtd_scan,
     lambda r: r[101] == 79.512 and r[102] == 80.004 and _missing(r[103]),
     RTD_3W + SCAN_CREATE + SCAN_RUN
     + [(ACT, "3"), (":TRAC:DATA? 1,3,'defbuffer1',CHAN,READ",
         "101,+7.951200E+01,102,+8.000400E+01,103,+9.900000E+37")]),
    ("resistance_scan", _res_scan,
     lambda r: abs(r[101].value - 79.512) < 1e-4 and abs(r[102].value - 80.004) < 1e-4,
     [(":SENS:FUNC 'FRES',(@101,102)", None), NO_ERROR,
      (":ROUT:SCAN:CRE (@101,102)", None), (":ROUT:SCAN:COUN:SCAN 1", None), NO_ERROR]
     + SCAN_RUN + [(ACT, "2"), (":TRAC:DATA? 1,2,'defbuffer1',CHAN,READ",
                    f"101,{R101:+.6E},102,{R102:+.6E}")]),
    ("device_error", lambda d: (d.write(":BOGUS"), d.check_errors()), InstrumentError,
     [(":BOGUS", None), (":SYST:ERR?", '-113,"Undefined header"'), NO_ERROR]),
    # 3-wire RTD senses through the paired channel n+10: the driver refuses a sense channel
    # before any byte, and the unit refuses it too (the twin's pair_conflict_code, -221)
    ("configure_rtd_3wire_sense_channel", lambda d: d.configure_rtd([111]), ValueError, []),
    ("unit_refuses_3wire_on_sense_channel",
     lambda d: (d.write(":SENS:TEMP:TRAN TRTD,(@111)"), d.check_errors()), InstrumentError,
     [(":SENS:TEMP:TRAN TRTD,(@111)", None), (":SYST:ERR?", '-221,"Settings conflict"'),
      NO_ERROR]),
    ("unit_takes_2wire_on_sense_channel", lambda d: d.configure_resistance(
        [111, 120], four_wire=False, lead_resistance=0.6), None,
     [(":SENS:FUNC 'RES',(@111,120)", None), NO_ERROR]),
    ("ping", lambda d: d.ping(), True, [("*IDN?", IDN)]),
]

_DATA = ":TRAC:DATA? 1,3,'defbuffer1',CHAN,READ"
DEVICE_ONLY = [
    ("truncated", _rtd_scan, ReplyError,
     RTD_3W + SCAN_CREATE + SCAN_RUN
     + [(ACT, "3"), (_DATA, "101,+7.951200E+01,102,+8.000400E+01,103,+9.9")]),
    ("missing_pair", _rtd_scan, ReplyError,
     RTD_3W + SCAN_CREATE + SCAN_RUN
     + [(ACT, "3"), (_DATA, "101,+7.951200E+01,102,+8.000400E+01")]),
    ("wrong_channel", _rtd_scan, ReplyError,
     RTD_3W + SCAN_CREATE + SCAN_RUN
     + [(ACT, "3"), (_DATA, "101,+7.951200E+01,104,+8.000400E+01,103,+7.9E+01")]),
    ("bad_opc", _rtd_scan, ReplyError,
     RTD_3W + SCAN_CREATE + SCAN_RUN[:2] + [("*OPC?", "#")]),
    ("short_buffer", _rtd_scan, InstrumentError,
     RTD_3W + SCAN_CREATE + SCAN_RUN + [(ACT, "0"), (":SYST:ERR?", '-221,"Settings conflict"'),
                                        NO_ERROR]),
    ("bad_err_reply", lambda d: d.check_errors(), ReplyError, [(":SYST:ERR?", "0,No error")]),
]





@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS + DEVICE_ONLY,
                         ids=[t[0] for t in TRANSCRIPTS + DEVICE_ONLY])
def test_protocol(name, action, expected, pairs):
    with expected_protocol(KeithleyDAQ6510RTD, pairs) as inst:
        check_result(run_action(inst, action), expected)


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_twin_parser_answers_the_transcripts(name, action, expected, pairs):
    twin = SimKeithleyDAQ6510(None, **TWIN_OPTIONS)
    for command, reply in pairs:
        twin.write(command.encode() + b"\n")
        assert twin.read_available() == (b"" if reply is None else reply.encode() + b"\n"), \
            command


@pytest.mark.parametrize("call", [
    lambda d: d.configure_rtd([]), lambda d: d.configure_rtd([100]),
    lambda d: d.configure_rtd([121]), lambda d: d.configure_rtd([301]),
    lambda d: d.configure_rtd([101, 101]), lambda d: d.configure_rtd([111], wires=4),
    lambda d: d.configure_rtd([101], wires=2), lambda d: d.configure_rtd([101], rtd_type="PT1000"),
    lambda d: d.configure_rtd([True]), lambda d: d.configure_resistance([115]),
    lambda d: d.configure_resistance([101], lead_resistance=0.5),
    lambda d: d.configure_resistance([101], four_wire=False, lead_resistance=-1.0),
    lambda d: d.create_scan([101]), lambda d: d.scan(),
])
def test_bad_input_raises_before_any_byte(call):
    with expected_protocol(KeithleyDAQ6510RTD, []) as inst:
        with pytest.raises(ValueError):
            call(inst)


#: Per card: (2-wire measurement channels, highest primary for 3-/4-wire); see CARDS' sources.
LAYOUTS = {"7700": (20, 10), "7706": (20, 10), "7702": (40, 20), "7708": (40, 20)}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-50, max_value=400), min_size=0, max_size=5),
       st.sampled_from([2, 3, 4]), st.sampled_from(sorted(LAYOUTS)))
def test_no_out_of_range_channel_reaches_the_wire(chans, wires, card):
    top = LAYOUTS[card][0] if wires == 2 else LAYOUTS[card][1]
    valid = bool(chans) and len(set(chans)) == len(chans) and all(
        c // 100 in (1, 2) and 1 <= c % 100 <= top for c in chans)
    if wires == 2:
        def call(d):
            d.configure_resistance(chans, four_wire=False)
    else:
        def call(d):
            d.configure_rtd(chans, wires=wires)
    if not valid:
        with expected_protocol(KeithleyDAQ6510RTD, [], card=card) as inst:
            with pytest.raises(ValueError):
                call(inst)
    else:
        text = channel_list(chans, wires=wires, card=card)
        assert text == "(@" + ",".join(map(str, chans)) + ")"


@pytest.mark.parametrize("card, chans, wires, ok", [
    ("7700", [110, 210], 3, True), ("7700", [111], 3, False), ("7700", [120], 3, False),
    ("7700", [111], 4, False), ("7700", [121], 3, False),
    ("7706", [110], 3, True), ("7706", [115], 3, False),
    ("7702", [120, 220], 3, True), ("7702", [121], 3, False), ("7702", [140], 4, False),
    ("7708", [120], 4, True), ("7708", [121], 3, False),
    ({1: "7700", 2: None}, [201], 3, False), ({1: "7700", 2: "7708"}, [110, 220], 3, True),
    ({"1": "7702"}, [120], 3, True), ({"1": "7702"}, [201], 3, False),  # TOML: string slots
])
def test_rtd_channels_per_card_and_wiring(card, chans, wires, ok):
    if ok:
        clist = "(@" + ",".join(map(str, chans)) + ")"
        transducer, setting = ("TRTD", "THR") if wires == 3 else ("FRTD", "FOUR")
        pairs = [(f":SENS:FUNC 'TEMP',{clist}", None),
                 (f":SENS:TEMP:TRAN {transducer},{clist}", None),
                 (f":SENS:TEMP:RTD:{setting} PT100,{clist}", None),
                 (f":SENS:TEMP:UNIT KELV,{clist}", None), NO_ERROR]
        with expected_protocol(KeithleyDAQ6510RTD, pairs, card=card) as inst:
            inst.configure_rtd(chans, wires=wires)
    else:
        with expected_protocol(KeithleyDAQ6510RTD, [], card=card) as inst:
            with pytest.raises(ValueError):
                inst.configure_rtd(chans, wires=wires)


@pytest.mark.parametrize("card", ["7701", 7799, {3: "7700"}, "", None])
def test_unknown_card_is_a_value_error(card):
    with pytest.raises(ValueError):
        with expected_protocol(KeithleyDAQ6510RTD, [], card=card):
            pass


def test_three_wire_rtd_on_a_sense_channel_against_the_twin():
    # The driver before this change sent the four RTD commands for 111 and then raised the
    # twin's -221 from :SYST:ERR?; now nothing reaches the twin.
    inst = open_instrument("keithley_daq6510", "sim://keithley_daq6510", world=object(),
                           twin_options=TWIN_OPTIONS)
    inst.twin.record_transcript = True
    with pytest.raises(ValueError, match="111"):
        inst.configure_rtd([101, 111])
    assert inst.twin.transcript == [] and inst.twin.errors == []
    inst.configure_rtd([101])
    inst.create_scan([101])
    assert inst.scan()[101] == pytest.approx(79.512, abs=1e-4)


@pytest.mark.parametrize("command", [":SENS:TEMP:TRAN TRTD,(@111)", ":SENS:TEMP:TRAN FRTD,(@120)",
                                     ":SENS:FUNC 'FRES',(@115)",
                                     ":SENS:TEMP:TRAN TRTD,(@105,111)"])
def test_twin_refuses_paired_functions_on_sense_channels(command):
    twin = SimKeithleyDAQ6510(None, **TWIN_OPTIONS)
    twin.write(command.encode() + b"\n")
    assert twin.transducer == {} and twin.function == {}  # the command changed nothing
    twin.write(b":SYST:ERR?\n")
    assert twin.read_available() == b'-221,"Settings conflict"\n'


def test_twin_cards_and_conflict_code_options():
    twin = SimKeithleyDAQ6510(None, cards={1: "7708", 2: None}, pair_conflict_code=-222,
                              locations={}, values={121: 80.0, 140: 81.0},
                              sensor_errors={121: 0.0, 140: 0.0})
    twin.write(b":SENS:TEMP:TRAN TRTD,(@121)\n:SYST:ERR?\n")
    assert twin.read_available() == b'-222,"Data out of range"\n'
    twin.write(b":SENS:FUNC 'RES',(@201)\n:SYST:ERR?\n")  # no card in slot 2
    assert twin.read_available() == b'-222,"Data out of range"\n'
    with pytest.raises(ValueError):
        SimKeithleyDAQ6510(None, cards="7701")
    assert SimKeithleyDAQ6510(None, cards={"2": 7702}).all_channels() == list(range(201, 241))


def test_7708_scan_of_primaries_and_two_wire_sense_channels():
    inst = open_instrument("keithley_daq6510", "sim://keithley_daq6510", world=object(),
                           card={1: "7708", 2: None},
                           twin_options={"cards": {1: "7708", 2: None}, "locations": {},
                                         "values": {120: 80.0, 140: 81.0},
                                         "sensor_errors": {120: 0.0, 140: 0.0},
                                         "lead_resistance": 0.6})
    inst.configure_rtd([120])
    inst.configure_resistance([140], four_wire=False, lead_resistance=0.6)
    inst.create_scan([120, 140])
    out = inst.scan_temperatures()
    assert out[120].value == pytest.approx(80.0, abs=1e-4)
    assert out[140].value == pytest.approx(81.0, abs=1e-4)
    with pytest.raises(ValueError):
        inst.configure_rtd([121])
    with pytest.raises(ValueError):
        inst.create_scan([201])


def test_twin_two_wire_rtd_reads_its_leads():
    twin = SimKeithleyDAQ6510(None, locations={}, values={111: 80.0}, sensor_errors={111: 0.0},
                              lead_resistance=0.6)
    twin.write(b":SENS:FUNC 'TEMP',(@111);:SENS:TEMP:TRAN RTD,(@111);"
               b":SENS:TEMP:UNIT KELV,(@111)\n:SYST:ERR?\n")
    assert twin.read_available() == b'0,"No error"\n'
    assert twin.reading(111) == pytest.approx(cvd_temperature(cvd_resistance(80.0) + 0.6))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789,+-.E#@!~% ", max_size=60))
def test_any_scan_reply_parses_or_raises_reply_error(reply):
    try:
        out = parse_scan(reply, [101, 102])
    except ReplyError:
        return
    assert set(out) == {101, 102}


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.floats(min_value=75, max_value=85))
def test_garbled_replies_never_give_a_wrong_number(seed, kelvin):
    inst = open_instrument("keithley_daq6510", "sim://keithley_daq6510", world=object(),
                           twin_options={"values": {101: kelvin, 102: kelvin},
                                         "locations": {}, "seed": seed,
                                         "sensor_errors": {101: 0.0, 102: 0.0}})
    inst.configure_rtd([101, 102])
    inst.create_scan([101, 102])
    inst.twin.faults.garble = True
    try:
        out = inst.scan()
    except (ReplyError, InstrumentTimeout):
        return
    assert out[101] == pytest.approx(kelvin, abs=1e-4) and out[102] == pytest.approx(kelvin,
                                                                                   abs=1e-4)


def _world(seed=9):
    env = simpy.Environment()
    return types.SimpleNamespace(env=env, cryostat=Cryostat(env, seed=seed))


def test_twin_rtd_and_resistance_chains_agree_with_the_cryostat():
    world = _world()
    errors = {101: 0.06, 102: -0.04, 103: 0.0, 104: 0.01, 105: 0.05, 106: -0.02}
    cals = {ch: SensorCalibration(str(ch), (-e,)) for ch, e in errors.items()}
    inst = open_instrument("keithley_daq6510", "sim://keithley_daq6510", world=world,
                           twin_options={"sensor_errors": errors}, calibrations=cals)
    chans = [101, 102, 103, 104, 105, 106, 107]
    world.env.run(until=5 * 3600)
    truth = world.cryostat.temperatures()
    locs = ["ln2_bottom", "endcap_1", "endcap_2", "trap_holder", "bbr_cavity", "trap"]
    inst.configure_rtd(chans)
    inst.create_scan(chans)
    rtd = inst.scan_temperatures()
    inst.configure_resistance(chans[:6] + [107])
    res = inst.scan_temperatures()
    for ch, loc in zip(chans, locs):
        assert rtd[ch].value == pytest.approx(truth[loc], abs=1e-4)
        assert res[ch].value == pytest.approx(truth[loc], abs=1e-4)
        assert rtd[ch].uncertainty == pytest.approx(0.1)
    assert rtd[107].missing and "overflow" in rtd[107].reason and res[107].missing


def test_two_wire_lead_correction():
    inst = open_instrument("keithley_daq6510", "sim://keithley_daq6510", world=object(),
                           twin_options={"values": {101: 80.0}, "locations": {},
                                         "sensor_errors": {101: 0.0}, "lead_resistance": 0.6})
    inst.configure_resistance([101], four_wire=False, lead_resistance=0.6)
    inst.create_scan([101])
    assert inst.scan()[101] == pytest.approx(cvd_resistance(80.0) + 0.6, abs=1e-5)
    assert inst.scan_temperatures()[101].value == pytest.approx(80.0, abs=1e-4)


def test_twin_faults():
    inst = open_instrument("keithley_daq6510", "sim://keithley_daq6510", world=_world())
    inst.configure_rtd([101])
    inst.create_scan([101])
    inst.twin.faults.timeout = True
    with pytest.raises(InstrumentTimeout):
        inst.scan()
    assert not inst.ping()
    inst.twin.faults.timeout = False
    inst.twin.power_cycle()
    inst.twin.open_channels.add(101)
    with pytest.raises(InstrumentError, match="Settings conflict"):  # the scan list was lost
        inst.scan()
    inst.configure_rtd([101])
    inst.create_scan([101])
    assert _missing(inst.scan()[101])


@pytest.mark.ostransport
def test_over_loopback_tcp_with_pyvisa():
    world = _world()
    with TcpServer(SimKeithleyDAQ6510(world)) as server:
        inst = open_instrument("keithley_daq6510", server.resource)
        try:
            assert inst.ping()
            inst.configure_rtd([101, 106])
            inst.create_scan([101, 106])
            out = inst.scan()
            assert 75 < out[101] < out[106] < 85
        finally:
            inst.close()
