"""Tier 3: a real Lake Shore 218 (``--device-address /dev/ttyUSB0`` or an ASRL resource)."""

from __future__ import annotations

import math

import pytest

from ionclock.apparatus.registry import open_instrument

pytestmark = pytest.mark.device


def test_reads_all_inputs_without_zeros(device_address):
    inst = open_instrument("lakeshore218", device_address)
    try:
        assert inst.ping()
        for value in inst.temperatures:
            assert math.isnan(value) or 1.0 < value < 1000.0  # never a zero
    finally:
        inst.close()
