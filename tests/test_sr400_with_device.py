"""Tier 3: a real SR400 (``pytest --device-address GPIB0::23::INSTR`` or a serial port)."""

from __future__ import annotations

import pytest

from ionclock.apparatus.registry import open_instrument

pytestmark = pytest.mark.device


@pytest.fixture
def counter(device_address):
    inst = open_instrument("sr400", device_address)
    yield inst
    inst.close()


def test_ping(counter):
    assert counter.ping()


def test_gate_settings_round_trip(counter):
    counter.gate_time = 1e-3
    assert counter.gate_time == pytest.approx(1e-3, rel=1e-3)
    counter.periods = 10
    assert counter.periods == 10
