"""Tier 3: a real HighFinesse server (--device-address TCPIP::host::1234::SOCKET). Read-only."""

from __future__ import annotations

import pytest

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.wavemeter import WavemeterError

pytestmark = pytest.mark.device


def test_wavemeter_reads(device_address):
    wm = open_instrument("wavemeter_tcp", device_address)
    try:
        assert wm.ping()
        assert 270 < wm.temperature < 320
        try:
            assert 100e12 < wm.frequency(1) < 2000e12
        except WavemeterError as err:  # no light on channel 1 is a typed answer too
            assert err.code is not None
    finally:
        wm.close()
