"""Tier 3: a real SG38x or pickoff DMM (--device-address). Read-only: nothing is changed."""

from __future__ import annotations

import pytest

from ionclock.apparatus.registry import open_instrument

pytestmark = pytest.mark.device


def test_sg380_reads(device_address):
    sg = open_instrument("sg380", device_address)
    try:
        assert sg.ping()
        assert 0 < sg.frequency <= 6.1e9
        assert -110 <= sg.amplitude_dbm <= 16.5
        assert sg.output_enabled in (True, False)
    finally:
        sg.close()
