"""Tier 3: a real E8257D (--device-address). Read-only: the output is not touched."""

from __future__ import annotations

import pytest

from ionclock.apparatus.registry import open_instrument

pytestmark = pytest.mark.device


def test_e8257d_reads(device_address):
    mw = open_instrument("microwave_8257d", device_address)
    try:
        assert mw.ping()
        assert 250e3 <= mw.frequency <= 67e9
        assert -135 <= mw.power_dbm <= 25
    finally:
        mw.close()
