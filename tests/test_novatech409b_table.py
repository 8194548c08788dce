"""Novatech 409B table mode (stepped by the external trigger) and the ``QUE`` firmware field.

Tier 1: every new command and its error replies pinned with `expected_protocol`; the same
transcripts replayed into the twin. Tier 2: the driver's `CycleTable` against the twin on a
fake world that wires the trigger input, edge by edge, cycle after cycle, with both
end-of-table behaviours of the twin; one run over a pty. Properties: the entry encoder.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.novatech409b import (
    ERROR_CODES,
    F_MAX_HZ,
    TABLE_SIZE,
    CycleTable,
    Novatech409B,
    Novatech409BStatus,
    parse_que,
    parse_table_line,
    table_entry_words,
    table_line,
)
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.sim_instruments.novatech409b import SimNovatech409B
from ionclock.sim_instruments.serve import PtyServer
from tests.transcripts import RecordingAdapter, replay

CONNECT = [("E d", "E d"), (None, "OK")]
IDLE = "00000000 0000 03FF 0000 00000000 00000000 000301"
#: The status line of the only capture in the sources (ARTIQ's novatech409b driver): firmware 21.
ARTIQ_STATUS = "80 BC0000 0000 0102 21"


# --- tier 1: protocol -------------------------------------------------------------------------
def _entry(ch=0, *args, **kwargs):
    return lambda d: getattr(d, f"ch_{ch}").set_table_entry(*args, **kwargs)


# (name, action, expected result, pairs) -- each list starts at the twin's power-on state.
TRANSCRIPTS = [
    ("table_entry", _entry(0, 1, 80e6, 0.25, 0.5), 80e6,
     CONNECT + [("t0 0001 2faf0800,1000,0200,ff", "OK")]),
    ("table_entry_ch1_end", _entry(1, 0x3FFF, 1e6, 0.0, 0.0, "end"), 1e6,
     CONNECT + [("t1 3fff 00989680,0000,0000,00", "OK")]),
    ("table_entry_resolution", _entry(0, 0, 80_000_000.14, 0.0, 1.0), 80_000_000.1,
     CONNECT + [("t0 0000 2faf0801,0000,03ff,ff", "OK")]),
    ("table_entry_phase_wraps", _entry(0, 2, 0.0, -0.25, 0.0), 0.0,
     CONNECT + [("t0 0002 00000000,3000,0000,ff", "OK")]),
    ("table_entry_max", _entry(0, 3, F_MAX_HZ, 1.0, 1.0), F_MAX_HZ,
     CONNECT + [("t0 0003 65ec8780,0000,03ff,ff", "OK")]),
    ("start_table", lambda d: (d.start_table(), d.table_mode)[-1], True,
     CONNECT + [("m t", "OK")]),
    ("stop_table", lambda d: (d.start_table(), d.stop_table(), d.table_mode)[-1], False,
     CONNECT + [("m t", "OK"), ("m 0", "OK")]),
    ("external_update_on", lambda d: (setattr(d, "external_update", True),
                                      d.external_update)[-1], True,
     CONNECT + [("I e", "OK")]),
    ("external_update_off", lambda d: (setattr(d, "external_update", False),
                                       d.external_update)[-1], False,
     CONNECT + [("I a", "OK")]),
    ("status_firmware", lambda d: d.status().firmware, "21",
     CONNECT + [("QUE", IDLE)] + [(None, IDLE)] * 3 + [(None, ARTIQ_STATUS)]),
    ("reset_leaves_table_mode", lambda d: (d.start_table(), d.reset(sleep=lambda s: None),
                                           d.table_mode)[-1], False,
     CONNECT + [("m t", "OK"), ("R", None)] + CONNECT),
]


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_protocol(name, action, expected, pairs):
    with expected_protocol(Novatech409B, pairs) as dds:
        result = action(dds)
    if isinstance(expected, float):
        assert result == pytest.approx(expected, abs=1e-6)
    else:
        assert result == expected


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_twin_parser_matches_transcript(name, action, expected, pairs):
    replay(SimNovatech409B(None), pairs)


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_protocol_table_entry_error_codes(code):
    pairs = [("E d", "OK"), ("t1 0000 00989680,0000,03ff,ff", code)]
    with expected_protocol(Novatech409B, pairs) as dds:
        with pytest.raises(InstrumentError) as info:
            dds.ch_1.set_table_entry(0, 1e6, 0.0, 1.0)
    assert info.value.code == code
    assert "Novatech 409B" in str(info.value)


@pytest.mark.parametrize("method, line", [("start_table", "m t"), ("stop_table", "m 0")])
@pytest.mark.parametrize("code", ["?0", "?6"])
def test_protocol_table_mode_error_codes(method, line, code):
    with expected_protocol(Novatech409B, [("E d", "OK"), (line, code)]) as dds:
        with pytest.raises(InstrumentError) as info:
            getattr(dds, method)()
        assert dds.table_mode is False  # not in table mode unless the unit said OK
    assert info.value.code == code


def test_protocol_external_update_error():
    with expected_protocol(Novatech409B, [("E d", "OK"), ("I e", "?6")]) as dds:
        with pytest.raises(InstrumentError):
            dds.external_update = True
        assert dds.external_update is False


@pytest.mark.parametrize("reply", ["OK!", "ok", "?9", "\x7fOK", "O"])
def test_protocol_table_entry_garbled_reply(reply):
    with expected_protocol(Novatech409B, [("E d", "OK"),
                                          ("t0 0000 00000000,0000,0000,ff", reply)]) as dds:
        with pytest.raises(ReplyError):
            dds.ch_0.set_table_entry(0, 0.0, 0.0, 0.0)


def test_protocol_table_entry_empty_reply_is_timeout():
    with expected_protocol(Novatech409B, [("E d", "OK"),
                                          ("t0 0000 00000000,0000,0000,ff", "")]) as dds:
        with pytest.raises(InstrumentTimeout):
            dds.ch_0.set_table_entry(0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("ch, kwargs", [
    (2, {}), (3, {}),                                    # no table on channels 2 and 3
    (0, {"address": -1}), (0, {"address": TABLE_SIZE}), (0, {"address": 1.5}),
    (0, {"address": "1"}), (0, {"address": None}),
    (0, {"frequency_hz": -0.1}), (0, {"frequency_hz": F_MAX_HZ + 1}),
    (0, {"frequency_hz": math.nan}), (0, {"frequency_hz": math.inf}),
    (0, {"phase_turns": math.inf}), (0, {"phase_turns": math.nan}),
    (0, {"amplitude_fraction": 1.0001}), (0, {"amplitude_fraction": -0.01}),
    (0, {"amplitude_fraction": math.nan}),
    (0, {"dwell": "ff"}), (0, {"dwell": 0}), (0, {"dwell": "wait"})])
def test_bad_table_entry_writes_nothing(ch, kwargs):
    args = {"address": 0, "frequency_hz": 1e6, "phase_turns": 0.0,
            "amplitude_fraction": 1.0} | kwargs
    with expected_protocol(Novatech409B, [("E d", "OK")]) as dds:
        with pytest.raises(ValueError):
            getattr(dds, f"ch_{ch}").set_table_entry(**args)


def test_numpy_like_integer_address_is_accepted():
    class Index:
        def __index__(self):
            return 5

    with expected_protocol(Novatech409B, [("E d", "OK"),
                                          ("t0 0005 00000000,0000,0000,ff", "OK")]) as dds:
        dds.ch_0.set_table_entry(Index(), 0.0, 0.0, 0.0)


def test_skip_unchanged_writes_only_changed_entries():
    pairs = [("E d", "OK"), ("t0 0001 00989680,0000,03ff,ff", "OK"),
             ("t0 0001 00989680,2000,03ff,ff", "OK"),   # the phase changed: rewritten
             ("t0 0001 00989680,2000,03ff,ff", "OK")]   # without skip_unchanged: always
    with expected_protocol(Novatech409B, pairs) as dds:
        ch = dds.ch_0
        assert ch.set_table_entry(1, 1e6, 0.0, 1.0, skip_unchanged=True) == 1e6
        assert ch.set_table_entry(1, 1e6, 0.0, 1.0, skip_unchanged=True) == 1e6   # no I/O
        ch.set_table_entry(1, 1e6, 0.5, 1.0, skip_unchanged=True)
        ch.set_table_entry(1, 1e6, 0.5, 1.0, skip_unchanged=True)                  # no I/O
        ch.set_table_entry(1, 1e6, 0.5, 1.0)


def test_a_rejected_entry_is_rewritten_next_time():
    pairs = [("E d", "OK"), ("t0 0001 00989680,0000,03ff,ff", "OK"),
             ("t0 0001 00989680,2000,03ff,ff", "?1"),
             ("t0 0001 00989680,0000,03ff,ff", "OK")]
    with expected_protocol(Novatech409B, pairs) as dds:
        ch = dds.ch_0
        ch.set_table_entry(1, 1e6, 0.0, 1.0)
        with pytest.raises(InstrumentError):
            ch.set_table_entry(1, 1e6, 0.5, 1.0)
        # what the unit holds is unknown now: the skip must not trust the old line
        ch.set_table_entry(1, 1e6, 0.0, 1.0, skip_unchanged=True)


# --- the QUE status line: the last field is the firmware version ---------------------------
def _old_healthy(status: Novatech409BStatus) -> bool:
    """The removed rule: "the status line's last field is 21 on a healthy unit"."""
    return status.status_line.split()[-1] == "21"


def test_status_exposes_firmware_and_fields():
    status = parse_que([IDLE] * 4 + [ARTIQ_STATUS])
    assert status.firmware == "21"
    assert status.status_fields == ("80", "BC0000", "0000", "0102", "21")
    assert not hasattr(status, "healthy")


def test_old_healthy_rule_misjudges_another_firmware():
    # No source shows a status line of another firmware; the ARTIQ capture with the version
    # field changed to a later one (the manual covers "Firmware version 2.1 or later") is a
    # line such a unit sends. The old rule called that unit unhealthy although it answers.
    line = ARTIQ_STATUS[:-2] + "22"
    status = parse_que([IDLE] * 4 + [line])
    assert status.firmware == "22"
    assert _old_healthy(status) is False
    dds = open_instrument("novatech409b", "sim://novatech409b", world=TtlWorld(),
                          twin_options={"firmware": "22"})
    assert dds.ping()
    assert dds.status().firmware == "22"


@pytest.mark.parametrize("firmware", ["2", "1A"])
def test_twin_firmware_option(firmware):
    twin = SimNovatech409B(None, echo=False, firmware=firmware)
    twin.write(b"QUE\r\n")
    assert twin.read_available().split(b"\r\n")[4] == f"80 BC0000 0000 0102 {firmware}".encode()


# --- tier 2: the twin's table grammar --------------------------------------------------------
@pytest.mark.parametrize("line, reply", [
    (b"t0 0001 00989680,0000,03ff,ff", b"OK"), (b"T1 1 989680,0,3FF,FF", b"OK"),
    (b"t2 0001 00989680,0000,03ff,ff", b"?0"), (b"t3 0001 00989680,0000,03ff,ff", b"?0"),
    (b"t4 0001 00989680,0000,03ff,ff", b"?0"), (b"t0", b"?0"), (b"t0 0001", b"?0"),
    (b"t0 0001 00989680,0000,03ff", b"?0"), (b"t0 4000 00989680,0000,03ff,ff", b"?0"),
    (b"t0 000g 00989680,0000,03ff,ff", b"?0"), (b"t0 00001 00989680,0000,03ff,ff", b"?0"),
    (b"t0 0001 66000000,0000,03ff,ff", b"?1"), (b"t0 0001 0098968x,0000,03ff,ff", b"?1"),
    (b"t0 0001 00989680,4000,03ff,ff", b"?4"), (b"t0 0001 00989680,+100,03ff,ff", b"?4"),
    (b"t0 0001 00989680,0000,0x3f,ff", b"?7"), (b"t0 0001 00989680,0000,03ff,fff", b"?5"),
    (b"t0 0001 00989680,0000,03ff,", b"?5"), (b"t0 0001 00989680,0000,03ff,f\xff", b"?f")])
@pytest.mark.parametrize("fast", [True, False])
def test_twin_table_line_replies(line, reply, fast):
    twin = SimNovatech409B(None, echo=False)
    twin.record_transcript = not fast  # a transcript turns the fast path off
    twin.write(line + b"\r\n")
    assert twin.read_available() == reply + b"\r\n"


def test_twin_table_amplitude_above_1023_wraps_like_v():
    twin = SimNovatech409B(None, echo=False)
    twin.write(b"t0 0000 00989680,0000,0400,ff\r\n")
    assert twin.read_available() == b"OK\r\n"
    assert twin.table_entry(0, 0) == (1e6, 0.0, 0.0, 0xFF)


_HEXISH = st.text(alphabet="0123456789abcdefABCDEF g+", max_size=9)


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF ,xg+\t", max_size=40),
    st.builds(lambda a, f, p, v, d, sep: f"{sep}{a} {f},{p},{v},{d}",
              _HEXISH, _HEXISH, _HEXISH, _HEXISH, _HEXISH, st.sampled_from([" ", "  ", ""]))))
def test_twin_fast_and_generic_table_parsers_agree(body):
    line = ("t1" + body).encode() + b"\r\n"
    fast, slow = SimNovatech409B(None, echo=False), SimNovatech409B(None, echo=False)
    slow.record_transcript = True  # the generic path: decode, handle(), field by field
    fast.write(line)
    slow.write(line)
    assert fast.read_available() == slow.read_available()
    assert fast.tables == slow.tables


def test_twin_fast_and_generic_paths_store_the_same_entry():
    line = b"t1 00a0 2faf0801,1000,0200,00\r\n"
    fast, slow = SimNovatech409B(None, echo=False), SimNovatech409B(None, echo=False)
    slow.record_transcript = True
    fast.write(line)
    slow.write(line)
    assert fast.read_available() == slow.read_available() == b"OK\r\n"
    assert fast.table_entry(1, 0xA0) == slow.table_entry(1, 0xA0) == (
        80_000_000.1, 0.25, 512 / 1023, 0)


# --- tier 2: stepping by the trigger input ---------------------------------------------------
class TtlWorld:
    """Records `dds_changed` and wires TTL lines like the `ClockWorld` will."""

    def __init__(self):
        self.changes: list[tuple[int, float, float, float]] = []
        self.ttl: dict[str, list] = {}

    def dds_changed(self, channel, frequency_hz, phase_turns, amplitude_fraction):
        self.changes.append((channel, frequency_hz, phase_turns, amplitude_fraction))

    def wire_ttl(self, line, callback):
        self.ttl.setdefault(line, []).append(callback)

    def edge(self, t: float, line: str = "dds_step") -> None:
        for callback in self.ttl.get(line, []):
            callback(t)

    def ch0(self, since: int = 0) -> list[tuple[float, float, float]]:
        return [c[1:] for c in self.changes[since:] if c[0] == 0]


def test_twin_wires_its_trigger_input():
    world = TtlWorld()
    twin = SimNovatech409B(world)
    assert world.ttl == {"dds_step": [twin.trigger]}
    SimNovatech409B(None)          # no world: nothing to wire
    SimNovatech409B(object())      # a world without wire_ttl: nothing to wire


def _twin_lines(twin, *lines):
    for line in lines:
        twin.write(line.encode() + b"\r\n")
    return twin.read_available()


SEG = ["t0 0000 2faf0800,0000,0000,ff",   # 0: idle, 80 MHz, dark
       "t0 0001 2faf0832,0000,03ff,ff",   # 1..4: the segments
       "t0 0002 2faf0800,0000,0000,ff",
       "t0 0003 2faf0832,2000,03ff,ff",
       "t0 0004 2faf0832,1000,03ff,ff"]


def test_twin_trigger_outside_table_mode_does_nothing():
    world = TtlWorld()
    twin = SimNovatech409B(world, echo=False)
    _twin_lines(twin, *SEG)
    before = list(world.changes)
    for k in range(3):
        world.edge(k * 1e-3)
    assert world.changes == before
    assert twin.table_pointer(0) == 0
    _twin_lines(twin, "m t", "m 0")
    n = len(world.changes)
    world.edge(1.0)
    assert world.changes[n:] == []


def test_twin_automatic_update_edge_k_outputs_entry_k():
    world = TtlWorld()
    twin = SimNovatech409B(world, echo=False)
    assert _twin_lines(twin, *SEG, "m t") == b"OK\r\n" * 6
    assert world.ch0()[-1] == (80e6, 0.0, 0.0)          # m t: entry 0 out at once
    n = len(world.changes)
    for k in range(1, 5):
        world.edge(k * 1e-3)
        assert twin.channel_state(0) == twin.table_entry(0, k)[:3]
        assert twin.table_pointer(0) == k
    assert world.ch0(n) == [(80_000_005.0, 0.0, 1.0), (80e6, 0.0, 0.0),
                            (80_000_005.0, 0.5, 1.0), (80_000_005.0, 0.25, 1.0)]


def test_twin_external_update_edge_k_outputs_entry_k_minus_1():
    # labscript's synchronous mode: m t (in I a: entry 0 out), then I e; the first edge
    # re-outputs entry 0, edge k outputs entry k - 1.
    world = TtlWorld()
    twin = SimNovatech409B(world, echo=False)
    _twin_lines(twin, *SEG, "m t", "I e")
    outputs = []
    for k in range(1, 6):
        world.edge(k * 1e-3)
        outputs.append(twin.channel_state(0))
    assert outputs == [twin.table_entry(0, k)[:3] for k in range(5)]


def test_twin_m_t_in_external_update_waits_for_the_first_edge():
    world = TtlWorld()
    twin = SimNovatech409B(world, echo=False)
    _twin_lines(twin, *SEG, "I e", "m t")
    assert world.changes == []
    world.edge(0.0)
    assert world.ch0() == [(80e6, 0.0, 0.0)]


@pytest.mark.parametrize("table_end, after", [("hold", 3), ("wrap", 0)])
def test_twin_end_of_table_marker(table_end, after):
    world = TtlWorld()
    twin = SimNovatech409B(world, echo=False, table_end=table_end)
    _twin_lines(twin, *SEG[:3], SEG[3][:-2] + "00", "m t")
    for k in range(1, 4):
        world.edge(k * 1e-3)
    assert twin.table_pointer(0) == 3
    world.edge(1.0)                                   # an edge on the end marker
    assert twin.table_pointer(0) == after
    assert twin.channel_state(0) == twin.table_entry(0, after)[:3]


def test_twin_unwritten_channel_is_not_stepped_and_m_t_outputs_its_entry_0():
    world = TtlWorld()
    twin = SimNovatech409B(world, echo=False)
    _twin_lines(twin, *SEG, "m t")
    assert (1, 0.0, 0.0, 0.0) in world.changes        # channel 1 runs its (zero) table
    n = len(world.changes)
    for k in range(4):
        world.edge(k)
    assert all(c[0] == 0 for c in world.changes[n:])


def test_twin_table_is_lost_on_reset():
    twin = SimNovatech409B(None, echo=False)
    _twin_lines(twin, *SEG, "m t")
    twin.write(b"R\r\n")
    assert twin.table_mode is False
    assert twin.table_entry(0, 1) == (0.0, 0.0, 0.0, 0)


# --- tier 2: a clock cycle's table, run every cycle --------------------------------------------
CENTER = 80e6


def _segments(k: int) -> list[tuple[float, float, float]]:
    """Hyper-Ramsey segments of cycle k: pi/2, dark evolution, pi, pi/2 at +-1/4 turn."""
    step = 5.0 if k % 4 < 2 else -5.0          # the pulse frequency alternates every 2 cycles
    return [(CENTER + step, 0.0, 1.0), (CENTER, 0.0, 0.0), (CENTER + step, 0.5, 1.0),
            (CENTER + step, 0.25 if k % 2 == 0 else 0.75, 1.0)]


def _run_cycles(restart: str, table_end: str, cycles: int = 6):
    world = TtlWorld()
    dds = open_instrument("novatech409b", "sim://novatech409b", world=world,
                          twin_options={"table_end": table_end})
    twin = dds.twin
    table = CycleTable(dds.ch_0, 4, idle_frequency_hz=CENTER, restart=restart)
    assert table.edges_per_cycle == 5
    t = 0.0
    per_cycle = []
    for k in range(cycles):
        twin.record_transcript = True
        twin.transcript.clear()
        applied = table.prepare(_segments(k))
        lines = [line for line, _ in twin.transcript]
        twin.record_transcript = False
        n = len(world.changes)
        armed_output = twin.channel_state(0)
        outputs = []
        for dt in (2e-3, 80e-3, 4e-3, 2e-3, 0.0):     # an edge at each segment start + end
            world.edge(t)
            outputs.append(twin.channel_state(0))
            t += dt
        t += 10e-3
        per_cycle.append((applied, lines, armed_output, outputs, world.changes[n:]))
    return per_cycle


@pytest.mark.parametrize("table_end", ["hold", "wrap"])
def test_cycle_table_rearm_runs_every_cycle_from_entry_0(table_end):
    idle = (CENTER, 0.0, 0.0)
    for k, (applied, lines, armed, outputs, changes) in enumerate(
            _run_cycles("rearm", table_end)):
        segs = _segments(k)
        assert applied == [f for f, _, _ in segs]
        assert armed == idle                          # m t: entry 0 (dark), never a flash
        expected = [(f, p % 1.0, a) for f, p, a in segs] + [idle]
        assert outputs == expected                   # exact: every value is on the grid
        assert [c[1:] for c in changes] == expected
        # the pointer went back to entry 0 by the re-arm: m 0, the changed entries, m t
        assert lines[0] == "m 0" if k else lines[0].startswith("t0 0000")
        assert lines[-1] == "m t"
        if k == 0:
            assert len(lines) == 7                     # 6 entries + m t (no m 0: not armed)
        else:
            changed = [i for i in range(4) if segs[i] != _segments(k - 1)[i]]
            assert [int(line.split()[1], 16) - 1 for line in lines[1:-1]] == changed


def test_cycle_table_rewrites_only_the_changed_entries():
    per_cycle = _run_cycles("rearm", "hold", cycles=3)
    # cycle 1 vs 0: only the last pi/2 pulse's phase changed (1/4 -> 3/4 turn)
    assert per_cycle[1][1] == ["m 0", "t0 0004 2faf0832,3000,03ff,ff", "m t"]
    # cycle 2 vs 1: the pulse frequency steps (entries 1, 3, 4) and the phase flips back
    assert [line[:7] for line in per_cycle[2][1][1:-1]] == ["t0 0001", "t0 0003", "t0 0004"]


def test_cycle_table_wrap_needs_no_rearm_on_a_wrapping_unit():
    idle = (CENTER, 0.0, 0.0)
    for k, (_, lines, _, outputs, _) in enumerate(_run_cycles("wrap", "wrap")):
        segs = _segments(k)
        assert outputs == [(f, p % 1.0, a) for f, p, a in segs] + [idle]
        if k:
            assert "m 0" not in lines and "m t" not in lines
            assert all(line.startswith("t0 000") for line in lines)
        else:
            assert lines[-2] == "t0 0004 2faf0832,1000,03ff,00"   # the end marker


def test_cycle_table_wrap_on_a_holding_unit_stays_lit():
    # Why "rearm" is the default: if the unit holds at the end marker, the 5th edge does not
    # darken the light and the next cycle never starts at entry 0.
    per_cycle = _run_cycles("wrap", "hold", cycles=2)
    assert per_cycle[0][3][-1] == (CENTER + 5.0, 0.25, 1.0)    # lit after the last edge
    assert per_cycle[1][3][0] == (CENTER + 5.0, 0.75, 1.0)     # still on the last entry


def test_cycle_table_checks_everything_before_writing():
    dds, adapter = _recording_dds()
    table = CycleTable(dds.ch_0, 4, idle_frequency_hz=CENTER)
    bad = _segments(0)
    bad[3] = (CENTER, 0.0, 1.5)
    with pytest.raises(ValueError):
        table.prepare(bad)
    with pytest.raises(ValueError):
        table.prepare(_segments(0)[:3])
    assert adapter.written == []


@pytest.mark.parametrize("kwargs", [{"restart": "loop"}, {"n_segments": 0},
                                    {"idle_frequency_hz": -1.0}, {"channel": 2}])
def test_cycle_table_bad_options(kwargs):
    dds, _ = _recording_dds()
    args = {"channel": 0, "n_segments": 4, "idle_frequency_hz": CENTER} | kwargs
    channel = getattr(dds, f"ch_{args.pop('channel')}")
    with pytest.raises(ValueError):
        CycleTable(channel, args.pop("n_segments"), **args)


def test_reset_forgets_the_table():
    world = TtlWorld()
    dds = open_instrument("novatech409b", "sim://novatech409b", world=world)
    table = CycleTable(dds.ch_0, 4, idle_frequency_hz=CENTER)
    table.prepare(_segments(0))
    dds.reset(sleep=lambda s: None)
    assert dds.twin.table_entry(0, 1)[2] == 0.0           # the unit lost it...
    dds.twin.record_transcript = True
    table.prepare(_segments(0))
    written = [line for line, _ in dds.twin.transcript if line.startswith("t0")]
    assert len(written) == 6                               # ...and the driver rewrites all
    assert dds.twin.table_entry(0, 1)[:3] == (CENTER + 5.0, 0.0, 1.0)


@pytest.mark.ostransport
def test_cycle_table_over_pty():
    world = TtlWorld()
    with PtyServer(SimNovatech409B(world)) as server:
        dds = open_instrument("novatech409b", server.port)
        try:
            table = CycleTable(dds.ch_0, 4, idle_frequency_hz=CENTER)
            table.prepare(_segments(0))
            for k in range(5):
                world.edge(k * 1e-3)
            table.prepare(_segments(1))
            world.edge(1.0)
            assert dds.status().channels[0].frequency_hz == pytest.approx(CENTER + 5.0)
        finally:
            dds.close()
    assert world.ch0()[-6:] == [(CENTER + 5.0, 0.0, 1.0), (CENTER, 0.0, 0.0),
                                (CENTER + 5.0, 0.5, 1.0), (CENTER + 5.0, 0.25, 1.0),
                                (CENTER, 0.0, 0.0), (CENTER + 5.0, 0.0, 1.0)]


# --- properties: the entry encoder ---------------------------------------------------------------


def _recording_dds():
    adapter = RecordingAdapter()
    dds = Novatech409B(adapter)
    adapter.written.clear()
    return dds, adapter


_FREQ = st.floats(0.0, F_MAX_HZ)
_PHASE = st.floats(-1e6, 1e6)
_AMP = st.floats(0.0, 1.0)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([0, 1]), st.integers(0, TABLE_SIZE - 1), _FREQ, _PHASE, _AMP,
       st.sampled_from(["trigger", "end"]))
def test_entry_round_trips_within_resolution(ch, address, hz, turns, fraction, dwell):
    line = table_line(ch, address, hz, turns, fraction, dwell)
    ch_back, address_back, hz_back, turns_back, fraction_back, dwell_back = (
        parse_table_line(line))
    assert (ch_back, address_back, dwell_back) == (ch, address, dwell)
    assert abs(hz_back - hz) <= 0.05 + 1e-9 * hz
    assert 0.0 <= turns_back < 1.0
    d = (turns_back - turns) % 1.0
    assert min(d, 1.0 - d) <= 0.5 / 16384 + 1e-9
    assert abs(fraction_back - fraction) <= 0.5 / 1023 + 1e-12
    # the hot path writes the same line and returns the frequency the line holds
    dds, adapter = _recording_dds()
    applied = getattr(dds, f"ch_{ch}").set_table_entry(address, hz, turns, fraction, dwell)
    assert adapter.written == [line]
    assert applied == hz_back
    # and the twin stores exactly those words
    twin = SimNovatech409B(None, echo=False)
    twin.write(line.encode() + b"\r\n")
    assert twin.read_available() == b"OK\r\n"
    assert twin.table_entry(ch, address) == (hz_back, turns_back, fraction_back,
                                             0xFF if dwell == "trigger" else 0)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True),
       st.floats(allow_nan=True, allow_infinity=True),
       st.floats(allow_nan=True, allow_infinity=True))
def test_no_out_of_range_entry_reaches_the_wire(hz, turns, fraction):
    dds, adapter = _recording_dds()
    try:
        words = table_entry_words(hz, turns, fraction)
    except ValueError:
        with pytest.raises(ValueError):
            dds.ch_0.set_table_entry(7, hz, turns, fraction)
        assert adapter.written == []
        return
    dds.ch_0.set_table_entry(7, hz, turns, fraction)
    fw, pw, aw, code = words
    assert adapter.written == [f"t0 0007 {fw:08x},{pw:04x},{aw:04x},{code}"]
    assert fw <= 1_710_000_000 and pw < 16384 and aw <= 1023
