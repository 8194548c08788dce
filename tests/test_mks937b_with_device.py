"""Tier 3: a real MKS 937B (--device-address, e.g. /dev/ttyUSB2). Reads only; changes nothing."""

from __future__ import annotations

import math

import pytest

from ionclock.apparatus.registry import open_instrument
from ionclock.errors import InstrumentError
from ionclock.physics.rtd import Missing

pytestmark = pytest.mark.device


def test_mks937b_reads_pressures_in_pa(device_address):
    gauge = open_instrument("mks937b", device_address)
    try:
        assert gauge.ping()
        assert gauge.unit in ("TORR", "MBAR", "PASCAL", "MICRON")
        readings = gauge.pressures
        assert len(readings) == 6
        for value in readings:
            assert isinstance(value, Missing) or (math.isfinite(value) and value >= 0)
        with pytest.raises(InstrumentError) as info:   # an unknown command: a NAK, no shift
            gauge.ask("XYZ?")
        assert info.value.code.startswith("NAK")
        assert gauge.ping()
    finally:
        gauge.close()
