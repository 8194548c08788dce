"""HighFinesse wavemeter: libwlmData via a fake library compiled here, TCP server, twin."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.wavemeter import (
    ERRORS,
    NoSignalError,
    OverexposedError,
    WavemeterError,
    WavemeterMissingError,
    WavemeterTCP,
    WavemeterWlmData,
    check_result,
)
from ionclock.errors import ReplyError
from ionclock.sim_instruments.serve import TcpServer
from ionclock.sim_instruments.wavemeter import NOMINAL_HZ, SimWavemeterServer

FAKE_LIB = r"""
#include <stdint.h>
static double freq[9] = {0, 755.222766, 346.000235, 350.862882, 411.042129776, 0, 0, 0, 0};
static double temperature = 24.5, pressure = 1004.0;
static int32_t exposure[3] = {0, 12, 40};
static int32_t wlm_count = 1;
double GetFrequencyNum(int32_t ch, double f) {
    if (ch < 1 || ch > 8) return -14; return freq[ch]; }
double GetWavelengthNum(int32_t ch, double w) {
    if (ch < 1 || ch > 8) return -14; if (freq[ch] <= 0) return freq[ch];
    return 299792.458 / freq[ch]; }
double GetTemperature(double t) { return temperature; }
double GetPressure(double p) { return pressure; }
int32_t GetExposureNum(int32_t ch, int32_t arr, int32_t e) {
    if (arr < 1 || arr > 2) return -6; return exposure[arr]; }
int32_t GetWLMCount(int32_t v) { return wlm_count; }
int32_t GetChannelsCount(int32_t c) { return 8; }
void fake_set_frequency(int32_t ch, double v) { freq[ch] = v; }
void fake_set_temperature(double v) { temperature = v; }
void fake_set_wlm_count(int32_t n) { wlm_count = n; }
"""


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        subprocess.run(["apt-get", "install", "-y", "gcc"], capture_output=True, check=False)
        gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no C compiler (gcc) and apt-get could not install one")
    d = tmp_path_factory.mktemp("wlm")
    src = d / "fake_wlmData.c"
    src.write_text(FAKE_LIB)
    lib = d / "libwlmData.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], check=True)
    return str(lib)


@pytest.fixture
def wlm(fake_lib):
    meter = WavemeterWlmData(fake_lib)
    yield meter
    lib = meter.lib
    import ctypes
    lib.fake_set_frequency.argtypes = [ctypes.c_int32, ctypes.c_double]
    lib.fake_set_temperature.argtypes = [ctypes.c_double]
    for ch, f in enumerate([0, 755.222766, 346.000235, 350.862882, 411.042129776]):
        lib.fake_set_frequency(ch, f)
    lib.fake_set_temperature(24.5)
    lib.fake_set_wlm_count(1)


def _set(meter, fn, *args):
    import ctypes
    f = getattr(meter.lib, fn)
    f.argtypes = [ctypes.c_int32, ctypes.c_double] if len(args) == 2 else (
        [ctypes.c_double] if isinstance(args[0], float) else [ctypes.c_int32])
    f(*args)


# --- libwlmData through ctypes --------------------------------------------------------------
def test_wlmdata_values_in_si(wlm):
    assert wlm.frequency(1) == pytest.approx(755.222766e12)
    assert wlm.wavelength(4) == pytest.approx(299792458.0 / 411.042129776e12)
    assert wlm.temperature == pytest.approx(24.5 + 273.15)
    assert wlm.pressure == pytest.approx(100400.0)
    assert wlm.exposure(1, 2) == pytest.approx(0.040)
    assert wlm.channel_count == 8 and wlm.wlm_count == 1 and wlm.ping()


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_wlmdata_error_codes_are_typed(wlm, code):
    _set(wlm, "fake_set_frequency", 2, float(code))
    cls = ERRORS[code][0]
    with pytest.raises(cls) as info:
        wlm.frequency(2)
    assert info.value.code == str(code) and "wavemeter" in str(info.value)
    with pytest.raises(cls):
        wlm.wavelength(2)


def test_wlmdata_temperature_error_offset(wlm):
    _set(wlm, "fake_set_temperature", -1005.0)
    with pytest.raises(WavemeterMissingError):
        wlm.temperature  # noqa: B018


def test_wlmdata_no_server(wlm):
    _set(wlm, "fake_set_wlm_count", 0)
    assert wlm.ping() is False


def test_wlmdata_bad_input_and_missing_library(wlm, tmp_path):
    for bad in (0, 9, 1.5, True):
        with pytest.raises(ValueError):
            wlm.frequency(bad)
    with pytest.raises(ValueError):
        wlm.exposure(1, 3)
    with pytest.raises(WavemeterMissingError):
        WavemeterWlmData(str(tmp_path / "nope.so"))


def test_wlmdata_through_the_registry(fake_lib):
    meter = open_instrument("wavemeter_wlmdata", fake_lib)
    assert meter.frequency(3) == pytest.approx(350.862882e12)


# --- TCP text server: protocol ------------------------------------------------------------
TRANSCRIPTS = [
    ("frequency", lambda w: w.frequency(1), 755.222766e12,
     [("getFrequencyNum 1", "755.2227660")]),
    ("wavelength", lambda w: w.wavelength(1), 396.9589789e-9,
     [("getWavelengthNum 1", "396.9589789")]),
    ("temperature", lambda w: w.temperature, 24.62 + 273.15, [("getTemperature", "24.62")]),
    ("pressure", lambda w: w.pressure, 100430.0, [("getPressure", "1004.3")]),
    ("exposure", lambda w: w.exposure(1, 2), 0.040, [("getExposureNum 1,2", "40")]),
    ("channel_count", lambda w: w.channel_count, 8, [("getChannelCount", "8")]),
    ("ping", lambda w: w.ping(), True, [("getVersion", "8,1234,567,8901")]),
    ("no_signal", lambda w: w.frequency(7), NoSignalError, [("getFrequencyNum 7", "-1")]),
    ("overexposed", lambda w: w.frequency(2), OverexposedError,
     [("getFrequencyNum 2", "-4")]),
]


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_tcp_protocol(name, action, expected, pairs):
    with expected_protocol(WavemeterTCP, [(None, "200")] + pairs) as inst:
        if isinstance(expected, type):
            with pytest.raises(expected):
                action(inst)
            return
        result = action(inst)
    assert result == pytest.approx(expected, rel=1e-9)


#: getVersion in each server reading (quartiq/highfinesse-net commits 8238cc1 and 9476e49).
VERSION_TRANSCRIPTS = {
    "line": [("getVersion", "8,1234,567,8901")],
    "lines": [("getVersion", "8"), (None, "1234"), (None, "567"), (None, "8901")],
}


@pytest.mark.parametrize("reading", sorted(VERSION_TRANSCRIPTS))
def test_tcp_version_in_each_server_reading(reading):
    with expected_protocol(WavemeterTCP, VERSION_TRANSCRIPTS[reading],
                           expect_greeting=False) as inst:
        assert inst.version == (8, 1234, 567, 8901)
    with expected_protocol(WavemeterTCP, VERSION_TRANSCRIPTS[reading],
                           expect_greeting=False) as inst:
        assert inst.ping() is True


def test_tcp_bad_greeting():
    with pytest.raises(ReplyError):
        with expected_protocol(WavemeterTCP, [(None, "500 busy")]):
            pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789-.eE,x#", max_size=10))
def test_tcp_garbled_replies_raise_typed_errors(reply):
    with expected_protocol(WavemeterTCP, [("getFrequencyNum 1", reply)],
                           expect_greeting=False) as inst:
        try:
            value = inst.frequency(1)
        except (ReplyError, WavemeterError):
            return
    assert value == float(reply) * 1e12 and value > 0


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_result_never_returns_an_error_code(value):
    try:
        out = check_result("wm", value)
    except (WavemeterError, ReplyError):
        assert not (math.isfinite(value) and value > 0)
        return
    assert out == value and value > 0


# --- twin ---------------------------------------------------------------------------------
@pytest.mark.parametrize("reading", sorted(VERSION_TRANSCRIPTS))
def test_twin_version_matches_transcripts(reading):
    twin = SimWavemeterServer(None, greet=False, version_reply=reading)
    twin.write(b"getVersion\r\n")
    expected = "".join(reply + "\r\n" for _, reply in VERSION_TRANSCRIPTS[reading])
    assert twin.read_available() == expected.encode()
    with pytest.raises(ValueError):
        SimWavemeterServer(None, version_reply="csv")


@pytest.mark.parametrize("reading", sorted(VERSION_TRANSCRIPTS))
def test_driver_against_twin_in_each_server_reading(reading):
    """The server's spelling getChannelCount, and getVersion on one line or four."""
    w = open_instrument("wavemeter_tcp", "sim://wavemeter_tcp", world=SimpleNamespace(),
                        twin_options={"version_reply": reading, "noise_hz": 0.0})
    assert w.ping() is True
    assert w.version == (8, 1234, 567, 8901)
    assert w.channel_count == 8
    assert w.frequency(1) == pytest.approx(NOMINAL_HZ["397"])  # nothing left unread
    twin = SimWavemeterServer(None, greet=False)
    twin.write(b"getChannelsCount\r\n")  # the library's spelling is not a server command
    assert twin.read_available() == b"-6\r\n"


def test_twin_parser_matches_transcripts():
    twin = SimWavemeterServer(None, noise_hz=0.0, greet=False)
    twin.channel_errors = {2: -4}
    twin.lasers.nominal["397"] = 755.222766e12
    for name, _, _, pairs in TRANSCRIPTS:
        for command, reply in pairs:
            twin.write(command.encode() + b"\r\n")
            out = twin.read_available()
            if name == "wavelength":  # same laser, 7-decimal nm rendering
                assert float(out) == pytest.approx(float(reply), abs=2e-7)
            else:
                assert out == reply.encode() + b"\r\n", command


def test_twin_channels_from_the_world_with_noise():
    class World:
        def laser_frequency(self, name):
            return {"397": 755.2e12, "729": 411.0e12}[name]

    w = open_instrument("wavemeter_tcp", "sim://wavemeter_tcp", world=World(),
                        twin_options={"channels": {1: "397", 4: "729"}, "noise_hz": 1e5})
    readings = [w.frequency(4) for _ in range(50)]
    assert abs(sum(readings) / 50 - 411.0e12) < 1e5
    assert 2e4 < max(readings) - min(readings) < 1e6
    with pytest.raises(NoSignalError):
        w.frequency(2)


def test_twin_lasers_drift_on_simpy_time():
    import simpy

    class World:
        env = simpy.Environment()

    w = open_instrument("wavemeter_tcp", "sim://wavemeter_tcp", world=World(),
                        twin_options={"noise_hz": 0.0, "seed": 3})
    f0 = w.frequency(1)
    assert f0 == pytest.approx(NOMINAL_HZ["397"])
    World.env.run(until=36000)
    assert 1e5 < abs(w.frequency(1) - f0) < 5e7  # a few MHz in 10 h


@pytest.mark.ostransport
def test_raw_tcp_session_and_pyvisa():
    twin = SimWavemeterServer(None, greet=False, noise_hz=0.0)
    with TcpServer(twin, greeting=b"200\r\n") as srv:
        with socket.create_connection((srv.host, srv.port), timeout=2) as sock:
            f = sock.makefile("rwb")
            assert f.readline() == b"200\r\n"
            f.write(b"getFrequencyNum 4\r\n")
            f.flush()
            assert float(f.readline()) == pytest.approx(411.042129776, abs=1e-7)
            f.write(b"getTemperature\r\n")
            f.flush()
            assert f.readline() == b"24.62\r\n"
            f.close()  # the file object holds the socket open otherwise
        w = open_instrument("wavemeter_tcp", srv.resource)
        try:
            assert w.ping()
            assert w.frequency(3) == pytest.approx(NOMINAL_HZ["854"], abs=1e5)
            with pytest.raises(NoSignalError):
                w.frequency(8)
        finally:
            w.close()
