"""Shared by the protocol/twin transcript tests: run one driver action, grade its outcome."""

from __future__ import annotations

import pytest
from pymeasure.adapters import Adapter


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


class RecordingAdapter(Adapter):
    """Answers every read with a fixed reply and keeps what was written (validator tests)."""

    def __init__(self, reply: str = "OK"):
        super().__init__()
        self.written: list[str] = []
        self.reply = reply

    def _write(self, command, **kwargs):
        self.written.append(command)

    def _read(self, **kwargs):
        return self.reply


def replay(twin, pairs, terminator: bytes = b"\r\n") -> None:
    """Feed a transcript's commands to a twin; its bytes must equal the replies.

    `pairs` are ``(command, reply)``; a reply line of a multi-line answer follows as
    ``(None, line)``; a command with no reply has ``None``.
    """
    i = 0
    while i < len(pairs):
        cmd, reply = pairs[i]
        assert cmd is not None, pairs
        expected = [] if reply is None else [reply]
        i += 1
        while i < len(pairs) and pairs[i][0] is None:
            expected.append(pairs[i][1])
            i += 1
        twin.write(cmd.encode("ascii") + terminator)
        assert twin.read_available() == b"".join(r.encode() + terminator for r in expected), cmd
