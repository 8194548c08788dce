"""Tier 3: a real Lake Shore 224 (``--device-address TCPIP::host::7777::SOCKET``)."""

from __future__ import annotations

import math

import pytest

from ionclock.apparatus.registry import open_instrument

pytestmark = pytest.mark.device


def test_reads_all_inputs_without_zeros(device_address):
    inst = open_instrument("lakeshore224", device_address)
    try:
        assert inst.ping()
        for value in inst.temperatures.values():
            assert math.isnan(value) or 1.0 < value < 1000.0
    finally:
        inst.close()
