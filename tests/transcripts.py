"""Shared by the protocol/twin transcript tests: run one driver action, grade its outcome."""

from __future__ import annotations

import pytest


def run_action(driver, action):
    """The action's result, or the exception it raised (graded by `check_result`)."""
    try:
        return action(driver)
    except Exception as err:  # compared against the expected exception type
        return err


def check_result(result_or_exc, expected) -> None:
    """An exception type, a predicate, a list (approximately) or a value to equal."""
    if isinstance(expected, type) and issubclass(expected, Exception):
        assert isinstance(result_or_exc, expected), result_or_exc
    elif callable(expected):
        assert expected(result_or_exc), result_or_exc
    elif isinstance(expected, list):
        assert result_or_exc == pytest.approx(expected)
    else:
        assert result_or_exc == expected
