"""The suite's own exceptions.

User errors (bad config, bad command-line input) are `UserError`: the CLI prints their
one-line message and exits with status 2. Instrument errors carry the instrument's name and,
where the device gave one, its error code.
"""

from __future__ import annotations


class IonclockError(Exception):
    """Base class of every error the suite raises on purpose."""


class UserError(IonclockError):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""


class ConfigError(UserError):
    """An invalid configuration entry; the message names the key and what is allowed."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config: {key}: {message}")


class InstrumentError(IonclockError):
    """A device answered with an error, or with a reply that cannot be parsed.

    `code` is the device's own error code where it sent one (e.g. Novatech ``?1``), else None.
    """

    def __init__(self, instrument: str, message: str, code: str | None = None):
        self.instrument = instrument
        self.code = code
        detail = f" (code {code})" if code is not None else ""
        super().__init__(f"{instrument}: {message}{detail}")


class ReplyError(InstrumentError):
    """A reply that is garbled, truncated or out of the protocol's grammar."""


class InstrumentTimeout(IonclockError, TimeoutError):
    """A device did not answer in time (propagated, never swallowed)."""

    def __init__(self, instrument: str, message: str = "no reply before the timeout"):
        self.instrument = instrument
        super().__init__(f"{instrument}: {message}")
