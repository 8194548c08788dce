"""Shared pieces of the driver tests: a canned byte-stream peer and the transcript check."""

from __future__ import annotations

import pytest

from ionclock.errors import InstrumentError


class CannedPeer:
    """A byte-stream peer that answers every write with the same raw bytes."""

    def __init__(self, reply: bytes):
        self.reply, self.out = reply, b""

    def write(self, data: bytes) -> None:
        self.out += self.reply

    def read_available(self) -> bytes:
        out, self.out = self.out, b""
        return out


def check_result(inst, action, expected, error_tag: str) -> None:
    """Run `action(inst)`; `expected` is the value, a predicate, or (error_tag, code)."""
    if isinstance(expected, tuple) and expected[0] == error_tag:
        with pytest.raises(InstrumentError) as info:
            action(inst)
        assert info.value.code == expected[1]
        return
    result = action(inst)
    if callable(expected):
        assert expected(result), result
    else:
        assert result == expected
