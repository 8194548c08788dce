"""Tier 3: a real Thorlabs SC10 (--device-address, e.g. /dev/ttyUSB0). Leaves it closed."""

from __future__ import annotations

import pytest

from ionclock.apparatus.registry import open_instrument

pytestmark = pytest.mark.device


def test_sc10_open_close_idempotent(device_address):
    sc = open_instrument("sc10", device_address)
    try:
        assert sc.ping()
        sc.mode = "manual"
        sc.close()
        sc.close()
        assert sc.enabled is False
        if not sc.interlock_tripped:
            sc.open()
            sc.open()
            assert sc.enabled is True
    finally:
        sc.shutdown()
