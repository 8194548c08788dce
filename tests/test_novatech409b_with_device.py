"""Tier 3: a real Novatech 409B (``pytest --device-address /dev/ttyUSB0``)."""

from __future__ import annotations

import pytest

from ionclock.apparatus.registry import open_instrument

pytestmark = pytest.mark.device


@pytest.fixture
def dds(device_address):
    inst = open_instrument("novatech409b", device_address)
    yield inst
    inst.close()


def test_ping_and_status(dds):
    assert dds.ping()
    assert dds.status().firmware   # the last field of QUE: the firmware version


def test_frequency_phase_amplitude_round_trip(dds):
    ch = dds.ch_3  # the spare channel: leave the clock AOM alone
    ch.frequency = 10e6
    ch.phase = 0.25
    ch.amplitude = 0.5
    state = dds.status().channels[3]
    assert state.frequency_hz == pytest.approx(10e6, abs=0.1)
    assert state.phase_word == 4096
    assert state.amplitude_word == 512
