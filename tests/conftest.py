"""Shared test options: tier-3 hardware tests run only with --device-address."""

from __future__ import annotations

import os

# BLAS on one thread, before anything imports numpy (as `ionclock` and `make bench` do):
# OpenBLAS's idle worker spins on the second core and slowed each twin run 1.5-2x
# (decision 0100). `make test` sets the same in the environment, for pytest's plugins too.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--device-address", action="store", default=None,
                     help="resource of a real instrument for test_*_with_device.py")


@pytest.fixture
def device_address(request):
    address = request.config.getoption("--device-address")
    if not address:
        pytest.skip("hardware test: needs --device-address")
    return address
