"""Tier 3: a real Pendulum CNT-91 (--device-address, e.g. USB0::0x14EB::0x0090::...::INSTR).

Measures its own internal 10 MHz reference, so no signal needs to be cabled.
"""

from __future__ import annotations

import pytest

from ionclock.apparatus.registry import open_instrument
from ionclock.errors import InstrumentError

pytestmark = pytest.mark.device


def test_cnt91_measures_its_internal_reference(device_address):
    counter = open_instrument("cnt91", device_address)
    try:
        assert counter.ping()
        counter.configure_frequency("INTREF", 0.1)
        assert counter.gate_time == pytest.approx(0.1)
        assert counter.frequency == pytest.approx(10e6, rel=1e-6)
        counter.write(":FROB")
        with pytest.raises(InstrumentError) as info:
            counter.check_errors()
        assert info.value.code == "-113"
    finally:
        counter.close()
