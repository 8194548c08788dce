"""Tier 3: a real coil supply (``--device-address TCPIP::host::5025::SOCKET``).

The model is taken from ``*IDN?``; only channel 3 is touched, at most 10 mA, output left off.
"""

from __future__ import annotations

import pytest
import pyvisa

from ionclock.apparatus.registry import open_instrument

pytestmark = pytest.mark.device


@pytest.fixture
def supply(device_address):
    rm = pyvisa.ResourceManager("@py")
    res = rm.open_resource(device_address, read_termination="\n", write_termination="\n")
    idn = res.query("*IDN?")
    res.close()
    model = "rigol_dp832" if "DP832" in idn else "keysight_e36312a"
    inst = open_instrument(model, device_address, current_limit_a=0.01, slew_a_per_s=0.05)
    yield inst
    inst.close()


def test_ping(supply):
    assert supply.ping()


def test_small_ramp_with_output_off(supply):
    ch = supply.ch_3
    ch.output_enabled = False
    ch.ramp_to(0.0, sleep=lambda s: None)
    ch.ramp_to(0.01, sleep=lambda s: None)
    assert ch.current_setpoint == pytest.approx(0.01, abs=1e-3)
    ch.ramp_to(0.0, sleep=lambda s: None)
