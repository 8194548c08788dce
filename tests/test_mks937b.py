"""MKS 937B: protocol transcripts (@aaa...;FF, ACK/NAK), twin, chamber, pty, properties.

Transcript bytes come from the 937B manual (§9.1 example ``@003PR1?;FF`` ->
``@003ACK7.602E+2;FF``, §6.6.3 ``CPn!ON``), pymeasure's own MKS937B tests (``@253PR1?`` ->
``@253ACK1.10e-9``, ``U?`` -> ``TORR``, ``U!MICRON``, ``CP1?`` -> ``ON``, ``T1?`` -> ``G``),
the MKS NAK codes (902B/901P manuals) and the status words the LNLS Sirius IOC matches on
real units (drivers/vacuum_gauge.py docstring); the others follow that grammar. A pymeasure
transcript pair ``(command, reply)`` excludes ``;FF``; the ``FF`` the driver reads after the
``;`` is the pair ``(None, b"FF")``.
"""

from __future__ import annotations

import math

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.apparatus.transport import LoopbackAdapter
from ionclock.drivers.vacuum_gauge import (
    PA_PER_UNIT,
    VacuumGauge937B,
    parse_pressure,
)
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.physics.rtd import Missing, missing_reason
from ionclock.sim_instruments.mks937b import SimMKS937B, mks_number
from ionclock.sim_instruments.serve import PtyServer
from ionclock.sim_instruments.vacuum import PA_PER_TORR, Vacuum, VacuumParams
from ionclock.sim_instruments.world import ClockWorld, TwinParams
from tests.link_peers import CannedPeer, check_result

TORR = PA_PER_UNIT["TORR"]
FF = (None, b"FF")


def q(cmd: str, data: str, address: int = 253, kind: str = "ACK") -> list:
    """A message and its reply, ``;FF`` excluded as pymeasure's protocol tests write it."""
    return [(f"@{address:03d}{cmd}", f"@{address:03d}{kind}{data}"), FF]


def is_missing(word: str):
    def check(value):
        return isinstance(value, Missing) and word in missing_reason(value)
    return check


def approx(value: float):
    return lambda got: not isinstance(got, Missing) and got == pytest.approx(value, rel=1e-12)


def nak(code: str):
    return ("NAK", code)


# (name, driver kwargs, action, expected, pairs, replayable on the standard twin)
TRANSCRIPTS = [
    ("unit_get", {}, lambda d: d.unit, "TORR", q("U?", "TORR"), True),
    ("unit_get_mbar_pymeasure", {}, lambda d: d.unit, "MBAR", q("U?", "mBAR"), False),
    ("unit_get_mbar_946", {}, lambda d: d.unit, "MBAR", q("U?", "MBAR"), False),
    ("pressure_manual_example", {"address": 3}, lambda d: d.ch_1.pressure,
     approx(760.2 * TORR), q("U?", "TORR", 3) + q("PR1?", "7.602E+2", 3), False),
    ("pressure_pymeasure", {}, lambda d: d.ch_1.pressure, approx(1.10e-9 * TORR),
     q("U?", "TORR") + q("PR1?", "1.10e-9"), False),
    ("pressure_cc", {}, lambda d: d.ch_1.pressure, approx(2.250e-11 * TORR),
     q("U?", "TORR") + q("PR1?", "2.250E-11"), True),
    ("pressure_mbar", {}, lambda d: d.ch_1.pressure, approx(3.0e-9),
     q("U?", "mBAR") + q("PR1?", "3.000E-11"), False),
    ("pressure_pascal", {}, lambda d: d.ch_1.pressure, approx(3.0e-9),
     q("U?", "PASCAL") + q("PR1?", "3.000E-9"), False),
    ("pressure_micron", {}, lambda d: d.ch_1.pressure, approx(2.25e-8 * TORR * 1e-3),
     q("U?", "MICRON") + q("PR1?", "2.250E-8"), False),
    ("pirani_below_range", {}, lambda d: d.ch_2.pressure, is_missing("below the gauge's range"),
     q("U?", "TORR") + q("PR2?", "<5.00E-04"), True),
    ("cc_below_range_lnls", {}, lambda d: d.ch_1.pressure, is_missing("<1.00E-11"),
     q("U?", "TORR") + q("PR1?", "<1.00E-11"), False),
    ("no_gauge", {}, lambda d: d.ch_3.pressure, is_missing("no gauge"),
     q("U?", "TORR") + q("PR3?", "NOGAUGE"), True),
    ("gauge_wait", {}, lambda d: d.ch_1.pressure, is_missing("WAIT"),
     q("U?", "TORR") + q("PR1?", "WAIT"), False),
    ("gauge_protect_off", {}, lambda d: d.ch_1.pressure, is_missing("protect setpoint"),
     q("U?", "TORR") + q("PR1?", "PROT_OFF"), False),
    ("gauge_rear_panel_off", {}, lambda d: d.ch_5.pressure, is_missing("rear panel"),
     q("U?", "TORR") + q("PR5?", "RP_OFF"), False),
    ("gauge_misconnected", {}, lambda d: d.ch_1.pressure, is_missing("misconnected"),
     q("U?", "TORR") + q("PR1?", "MISCONN"), False),
    ("pirani_atm", {}, lambda d: d.ch_2.pressure, is_missing("atmosphere"),
     q("U?", "TORR") + q("PR2?", "ATM"), False),
    ("pressures_all", {}, lambda d: d.pressures,
     lambda v: (v[0] == pytest.approx(2.25e-11 * TORR)
                and all(isinstance(x, Missing) for x in v[1:])),
     q("U?", "TORR") + q("PRZ?", "2.250E-11,<5.00E-04,NOGAUGE,NOGAUGE,NOGAUGE,NOGAUGE"), True),
    ("ion_gauge_status", {}, lambda d: d.ch_1.ion_gauge_status, "Good", q("T1?", "G"), True),
    ("power_get", {}, lambda d: d.ch_1.power_enabled, True, q("CP1?", "ON"), True),
    ("power_set_off", {}, lambda d: setattr(d.ch_1, "power_enabled", False), None,
     q("CP1!OFF", "OFF"), True),
    ("serial_number", {}, lambda d: d.serial_number, "1234567890", q("SN?", "1234567890"), True),
    ("ping", {}, lambda d: d.ping(), True, q("SN?", "1234567890"), True),
    ("unit_set_micron", {}, lambda d: setattr(d, "unit", "MICRON"), None,
     q("U!MICRON", "MICRON"), True),
    ("unit_set_mbar", {}, lambda d: setattr(d, "unit", "mbar"), None, q("U!mBAR", "mBAR"), True),
    # --- error replies: @aaaNAKnnn;FF (MKS NAK codes) -----------------------------------------
    ("nak_unrecognized", {}, lambda d: d.ask("XYZ?"), nak("NAK160"), q("XYZ?", "160", kind="NAK"),
     True),
    ("nak_query_character", {}, lambda d: d.ask("PR1!5"), nak("NAK175"),
     q("PR1!5", "175", kind="NAK"), True),
    ("nak_invalid_argument", {}, lambda d: d.ask("U!FOO"), nak("NAK169"),
     q("U!FOO", "169", kind="NAK"), True),
    ("nak_out_of_range", {}, lambda d: d.ask("TDC1!500"), nak("NAK172"),
     q("TDC1!500", "172", kind="NAK"), True),
    ("nak_not_ion_gauge", {}, lambda d: d.ask("T2?"), nak("NAK152"),
     q("T2?", "152", kind="NAK"), True),
    ("nak_on_a_setting", {}, lambda d: setattr(d.ch_1, "power_enabled", True), nak("NAK180"),
     q("CP1!ON", "180", kind="NAK"), False),
    ("nak_on_a_reading", {}, lambda d: d.ch_1.pressure, nak("NAK160"),
     q("U?", "TORR") + q("PR1?", "160", kind="NAK"), False),
    # --- addressing --------------------------------------------------------------------------
    ("broadcast_answered_by_own_address", {"address": 254}, lambda d: d.serial_number,
     "1234567890", [("@254SN?", "@002ACK1234567890"), FF], False),
    ("old_firmware_without_at", {}, lambda d: d.unit, "TORR", [("@253U?", "253ACKTORR"), FF],
     False),
    ("ping_fails_on_nak", {}, lambda d: d.ping(), False, q("SN?", "160", kind="NAK"), False),
]


@pytest.mark.parametrize("name, kwargs, action, expected, pairs, replay", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_protocol(name, kwargs, action, expected, pairs, replay):
    with expected_protocol(VacuumGauge937B, pairs, **kwargs) as inst:
        check_result(inst, action, expected, 'NAK')


class FixedChamber:
    """A world whose chamber holds 3 nPa exactly (no wander)."""

    def __init__(self, pressure_pa: float = 3e-9):
        self.env = simpy.Environment()
        self.vacuum = Vacuum(self.env, VacuumParams(pressure_pa=pressure_pa, wander=0.0))


def standard_twin(**options) -> SimMKS937B:
    options.setdefault("noise_rel", 0.0)
    return SimMKS937B(FixedChamber(), **options)


def replay(twin: SimMKS937B, pairs) -> None:
    """Feed a transcript to the twin: its bytes must be the reply, ``;FF`` and all."""
    i = 0
    while i < len(pairs):
        cmd, reply = pairs[i]
        i += 1
        expected = b""
        if reply is not None:
            expected = reply.encode()
            if i < len(pairs) and pairs[i][0] is None:
                expected += b";" + pairs[i][1]
                i += 1
        twin.write(cmd.encode() + b";FF")
        assert twin.read_available() == expected, cmd


@pytest.mark.parametrize("name, pairs", [(t[0], t[4]) for t in TRANSCRIPTS if t[5]],
                         ids=[t[0] for t in TRANSCRIPTS if t[5]])
def test_twin_parser_matches_transcripts(name, pairs):
    replay(standard_twin(), pairs)


def test_twin_answers_the_manual_example_at_its_address():
    twin = SimMKS937B(FixedChamber(760.2 * TORR), address=3, noise_rel=0.0,
                      sensors={1: "pr"})
    replay(twin, q("PR1?", "7.602E+2", 3))


# --- the twin's answers to malformed and misaddressed messages -------------------------------
@pytest.mark.parametrize("message, reply", [
    (b"@253XYZ?;FF", b"@253NAK160;FF"),        # unrecognized message (902B: possible typo)
    (b"@253PR9?;FF", b"@253NAK160;FF"),        # no such channel: not a command it knows
    (b"@253PR1!3;FF", b"@253NAK175;FF"),       # '!' on a query-only command (901P: FV!)
    (b"@253U!FURLONG;FF", b"@253NAK169;FF"),   # invalid argument
    (b"@253CP1!MAYBE;FF", b"@253NAK169;FF"),
    (b"@253TDC1!2;FF", b"@253NAK172;FF"),      # start delay 3-300 s: value out of range
    (b"@253PRO1!1E-1;FF", b"@253NAK172;FF"),   # protect setpoint 1e-5..1e-2 Torr
    (b"@253PR1?junk;FF", b"@253NAK160;FF"),    # a query takes no parameter
    (b"@253;FF", b"@253NAK160;FF"),            # no command at all
    (b"@254SN?;FF", b"@253ACK1234567890;FF"),  # broadcast: answered with its own address
    (b"@252SN?;FF", b""),                      # another unit's message: silence (RS-485)
    (b"PR1?;FF", b""),                         # no attention character: not addressed
    (b"@253pr1?;FF", b"@253ACK2.250E-11;FF"),  # the command set takes lower case
])
def test_twin_answers_malformed_messages_as_the_manuals_say(message, reply):
    twin = standard_twin()
    twin.write(message)
    assert twin.read_available() == reply


def test_driver_raises_the_nak_the_twin_sends():
    twin = standard_twin()
    inst = VacuumGauge937B(LoopbackAdapter(twin, ";FF", ";"))
    with pytest.raises(InstrumentError) as info:
        inst.ask("TDC1!500")
    assert info.value.code == "NAK172" and "out of range" in str(info.value)
    assert inst.serial_number == "1234567890"   # the next reply is not shifted


@pytest.mark.parametrize("pairs", [
    [("@253U?", "@253ACKTORR"), (None, b"GG")],             # not closed by ;FF
    [("@253U?", "@252ACKTORR"), FF],                        # another unit's reply
    [("@253U?", "@253OKTORR"), FF],                         # neither ACK nor NAK
    [("@253U?", "@253ACKFURLONG"), FF],                     # no such unit
])
def test_garbled_frames_raise_reply_error(pairs):
    with expected_protocol(VacuumGauge937B, pairs) as inst:
        with pytest.raises(ReplyError):
            inst.unit  # noqa: B018


@pytest.mark.parametrize("token", ["2.2#0E-11", "", "1.0E-11x", "nan", "inf", "OVERLOAD?",
                                   "\x7f2.250E-11"])
def test_malformed_pressures_raise_reply_error(token):
    with pytest.raises(ReplyError):
        parse_pressure(token, "TORR")


def test_bad_values_rejected_before_the_wire():
    with expected_protocol(VacuumGauge937B, []) as inst:
        with pytest.raises(ValueError):
            inst.unit = "furlong"
        with pytest.raises(ValueError):
            inst.read_pressure(7)
        with pytest.raises(ValueError):
            inst.ch_1.power_enabled = "sometimes"
    for address in (0, 255, 2.5, True):
        with pytest.raises(ValueError):
            VacuumGauge937B(LoopbackAdapter(standard_twin(), ";FF", ";"), address=address)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=16))
def test_pressure_parser_gives_a_value_a_missing_or_a_reply_error(token):
    try:
        value = parse_pressure(token, "TORR")
    except ReplyError:
        return
    assert isinstance(value, Missing) or (math.isfinite(value) and value >= 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24))
def test_random_replies_raise_typed_errors(noise):
    inst = VacuumGauge937B(LoopbackAdapter(CannedPeer(noise + b";FF"), ";FF", ";"))
    try:
        inst.serial_number  # noqa: B018
    except (ReplyError, InstrumentError, InstrumentTimeout):
        return


# --- the twin against the driver, through the registry --------------------------------------
def clock_world(seed: int = 3, **params) -> ClockWorld:
    return ClockWorld(simpy.Environment(), TwinParams(**params), seed=seed)


def test_driver_against_the_twin_reads_the_worlds_chamber():
    world = clock_world()
    gauge = open_instrument("mks937b", "sim://mks937b", world=world)
    assert gauge.ping()
    readings = []
    for _ in range(48):
        world.env.run(until=world.env.now + 1800.0)
        p = gauge.ch_1.pressure
        truth = world.vacuum.pressure_pa()
        assert p == pytest.approx(truth, rel=0.1)   # 2 % gauge noise, 4 digits
        readings.append(p)
    assert 1e-9 < min(readings) < max(readings) < 1e-8     # wanders around 3 nPa
    assert max(readings) / min(readings) > 1.05
    assert isinstance(gauge.ch_2.pressure, Missing)         # the Pirani is below its range
    gauge.unit = "PASCAL"
    assert gauge.unit == "PASCAL"
    assert gauge.ch_1.pressure == pytest.approx(world.vacuum.pressure_pa(), rel=0.1)


def test_a_leak_trips_the_protect_setpoint_and_a_restart_waits():
    world = clock_world()
    gauge = open_instrument("mks937b", "sim://mks937b", world=world)
    world.vacuum.leak(1e9)          # ~3 Pa (2e-2 Torr): above the 5e-3 Torr protect
    assert is_missing("protect setpoint")(gauge.ch_1.pressure)
    assert gauge.ch_1.ion_gauge_status == "Protect"
    assert gauge.ch_1.power_enabled is False
    world.vacuum.leak(1.0)          # fixed
    assert is_missing("protect setpoint")(gauge.ch_1.pressure)   # stays off until told
    gauge.ch_1.power_enabled = True
    t_on = world.env.now
    assert is_missing("WAIT")(gauge.ch_1.pressure)          # before the start delay is over
    assert gauge.ch_1.ion_gauge_status == "Wait"
    world.env.run(until=t_on + 9.9)
    assert is_missing("WAIT")(gauge.ch_1.pressure)
    world.env.run(until=t_on + 10.1)
    assert gauge.ch_1.pressure == pytest.approx(world.vacuum.pressure_pa(), rel=0.1)


def test_power_cycle_starts_the_cold_cathode_again():
    world = clock_world()
    gauge = open_instrument("mks937b", "sim://mks937b", world=world,
                            twin_options={"start_delay_s": 30.0})
    gauge.unit = "PASCAL"
    assert not isinstance(gauge.ch_1.pressure, Missing)
    gauge.twin.power_cycle()
    assert gauge.unit == "TORR"                              # the power-on unit again
    assert is_missing("WAIT")(gauge.ch_1.pressure)
    world.env.run(until=world.env.now + 31.0)
    assert not isinstance(gauge.ch_1.pressure, Missing)


def test_twin_faults_reach_the_driver_as_typed_errors():
    world = clock_world()
    gauge = open_instrument("mks937b", "sim://mks937b", world=world)
    gauge.twin.unplug(1)
    assert is_missing("misconnected")(gauge.ch_1.pressure)
    gauge.twin.unplug(1, False)
    gauge.twin.faults.timeout = True
    with pytest.raises(InstrumentTimeout):
        gauge.ch_1.pressure  # noqa: B018
    assert gauge.ping() is False
    gauge.twin.faults.timeout = False
    gauge.twin.faults.garble = True
    errors = 0
    for _ in range(20):
        try:
            gauge.ch_1.pressure  # noqa: B018
        except ReplyError:
            errors += 1
    assert errors >= 10
    gauge.twin.faults.garble = False
    assert gauge.ping()


def test_two_units_share_a_line_by_address():
    chamber = FixedChamber()
    twin = SimMKS937B(chamber, address=5, noise_rel=0.0)
    inst = VacuumGauge937B(LoopbackAdapter(twin, ";FF", ";"), address=5)
    assert inst.ch_1.pressure == pytest.approx(2.250e-11 * TORR, rel=1e-12)
    other = VacuumGauge937B(LoopbackAdapter(twin, ";FF", ";"), address=6)
    with pytest.raises(InstrumentTimeout):       # unit 6 is not on this line: silence
        other.serial_number  # noqa: B018


# --- the chamber ---------------------------------------------------------------------------
def test_chamber_pressure_does_not_depend_on_how_often_it_is_read():
    a = Vacuum(params=VacuumParams(), seed=7)
    b = Vacuum(params=VacuumParams(), seed=7)
    fine = [a.pressure_pa(t) for t in range(0, 86400 * 3, 7)]
    coarse = {t: b.pressure_pa(t) for t in range(0, 86400 * 3, 7 * 1000)}
    for t, p in coarse.items():
        assert fine[t // 7] == p
    mean = sum(fine) / len(fine)
    assert mean == pytest.approx(3e-9, rel=0.15)


def test_chamber_draws_from_no_stream_of_the_world():
    quiet, polled = clock_world(seed=11), clock_world(seed=11)
    for t in range(0, 86400, 600):
        polled.vacuum.pressure_pa(float(t))
    assert quiet.rng.random() == polled.rng.random()
    assert quiet.nprng.standard_normal() == polled.nprng.standard_normal()
    assert quiet.cavity_offset_hz(1000.0) == polled.cavity_offset_hz(1000.0)


def test_chamber_options_are_checked():
    for bad in ({"pressure_pa": -1.0}, {"pressure_pa": math.nan}, {"wander": 3.0},
                {"tau_s": 0.0}, {"grid_s": -1.0}):
        with pytest.raises(ValueError):
            VacuumParams(**bad)
    with pytest.raises(ValueError):
        Vacuum().leak(0.0)


@pytest.mark.parametrize("value, text", [(760.2, "7.602E+2"), (2.2502e-11, "2.250E-11"),
                                         (9.9996e-3, "1.000E-2"), (1.0, "1.000E+0"),
                                         (0.0, "0.000E+0")])
def test_twin_writes_numbers_as_the_manual(value, text):
    assert mks_number(value) == text


def test_twin_options_are_checked():
    for bad in ({"address": 254}, {"unit": "furlong"}, {"sensors": {7: "cc"}},
                {"sensors": {1: "hot"}}, {"noise_rel": -0.1}, {"start_delay_s": 1.0},
                {"protect_torr": 1.0}):
        with pytest.raises(ValueError):
            SimMKS937B(None, **bad)


def test_standalone_twin_reads_its_own_chamber():
    twin = SimMKS937B(None, pressure_pa=3e-9, noise_rel=0.0)
    inst = VacuumGauge937B(LoopbackAdapter(twin, ";FF", ";"))
    p = inst.ch_1.pressure
    assert p == pytest.approx(twin.vacuum.pressure_pa(), rel=1e-3)
    assert twin.vacuum.pressure_pa() / PA_PER_TORR > 1e-11


@pytest.mark.ostransport
def test_over_a_pty_with_pyserial():
    world = FixedChamber()
    with PtyServer(SimMKS937B(world, noise_rel=0.0)) as srv:
        inst = open_instrument("mks937b", srv.port)
        try:
            assert inst.ping()
            assert inst.ch_1.pressure == pytest.approx(2.250e-11 * TORR, rel=1e-12)
            inst.unit = "PASCAL"
            assert inst.ch_1.pressure == pytest.approx(3.0e-9, rel=1e-12)
            with pytest.raises(InstrumentError) as info:
                inst.ask("XYZ?")
            assert info.value.code == "NAK160"
            assert inst.serial_number == "1234567890"
        finally:
            inst.close()
