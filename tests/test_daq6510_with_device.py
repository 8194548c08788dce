"""Tier 3: a real DAQ6510 + 7700 with a PT100 on channel 101 (``--device-address``)."""

from __future__ import annotations

import math

import pytest

from ionclock.apparatus.registry import open_instrument

pytestmark = pytest.mark.device


def test_three_wire_rtd_scan(device_address):
    inst = open_instrument("keithley_daq6510", device_address)
    try:
        assert inst.ping()
        inst.configure_rtd([101])
        inst.create_scan([101])
        value = inst.scan()[101]
        assert math.isnan(value) or 60.0 < value < 400.0
    finally:
        inst.close()
