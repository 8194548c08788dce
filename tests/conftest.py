"""Shared test options: tier-3 hardware tests run only with --device-address."""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--device-address", action="store", default=None,
                     help="resource of a real instrument for test_*_with_device.py")


@pytest.fixture
def device_address(request):
    address = request.config.getoption("--device-address")
    if not address:
        pytest.skip("hardware test: needs --device-address")
    return address
