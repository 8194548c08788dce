"""What several drivers share: the SCPI error queue and the liveness pair `ping()`/`close()`.

`ScpiErrorQueueMixin` reads the SCPI error queue (``SYST:ERR?``; SCPI-99 vol. 2, SYSTem:ERRor)
after every set and raises `InstrumentError` with the device's code; `LinkMixin` gives a driver
the suite's `ping()` (a cheap query; any link or reply failure is "no", anything else is a bug
and propagates) and `close()` (release the connection, the outputs stay as they are). A driver
puts the mixins before its pymeasure base class so that they override pymeasure's own methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pyvisa.errors import VisaIOError

from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError

#: How many error-queue entries `ScpiErrorQueueMixin.check_errors` reads at most by default.
MAX_ERRORS_READ = 20

try:   # a serial port whose far end hung up: pyserial's tcflush/tcsetattr raise termios.error,
    import termios  # which is no OSError (a pty whose server died)

    TERMIOS_ERRORS: tuple[type[BaseException], ...] = (termios.error,)
except ImportError:   # not POSIX
    TERMIOS_ERRORS = ()

#: What a failed liveness query raises: a device error or garbled reply, a timeout, a link
#: that is down (OSError: serial/socket; termios.error: a hung-up serial port), an
#: undecodable reply (UnicodeDecodeError is a ValueError) or a VISA I/O error.
LINK_ERRORS: tuple[type[BaseException], ...] = (
    InstrumentError, InstrumentTimeout, OSError, ValueError, VisaIOError, *TERMIOS_ERRORS)

#: For drivers whose `ping()` must never raise: any failure at all is "no answer".
ANY_FAILURE: tuple[type[BaseException], ...] = (Exception,)


def parse_scpi_error(reply: str, instrument: str,
                     query: str = "SYST:ERR?") -> tuple[int, str]:
    """Parse an error-queue reply (``+0,"No error"``, ``-113,"Undefined header"``).

    Returns (code, message without quotes). An empty reply is `InstrumentTimeout` (nothing
    came before the timeout); anything else without ``<integer>,`` is `ReplyError`.
    """
    code_text, sep, message = reply.partition(",")
    code_text = code_text.strip()
    digits = code_text.lstrip("+-")
    if not sep or not digits.isdigit() or not digits.isascii():
        if not reply:
            raise InstrumentTimeout(instrument, f"no reply to {query}")
        raise ReplyError(instrument, f"bad {query} reply {reply!r}")
    return int(code_text), message.strip().strip('"')


def parse_number(reply: str, instrument: str, what: str) -> float:
    """Parse a numeric SCPI reply; anything else (or NaN/inf) is a `ReplyError`."""
    try:
        value = float(reply)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or "_" in reply:
        if not reply:
            raise InstrumentTimeout(instrument, f"no reply to the {what} query")
        raise ReplyError(instrument, f"bad {what} reply {reply!r}")
    return value


def line_exchange(adapter: Any) -> Callable[[str], str]:
    """``exchange(command) -> reply``: one line out, one line back, for a driver's hot path.

    Made of the adapter's transport methods (``_write``/``_read``), past pymeasure's public
    ``write()``/``read()`` and their two DEBUG log calls per exchange (docs/decisions/
    0100-lean-hot-paths.md). An adapter with its own ``exchange`` (the in-process
    `ionclock.apparatus.transport.LoopbackAdapter`) is used as it is.
    """
    own = getattr(adapter, "exchange", None)
    if own is not None:
        return own
    write, read = adapter._write, adapter._read

    def exchange(command: str) -> str:
        write(command)
        return read()

    return exchange


class ScpiErrorQueueMixin:
    """`check_errors()` / `check_set_errors()` from the SCPI error queue.

    `error_query` is the unit's exact query (``SYST:ERR?`` or ``:SYST:ERR?``);
    `max_errors_read` how many entries one check reads at most: it stops at the first ``0``
    entry and raises `InstrumentError` (code = the SCPI code) for the first error read; with 1
    a check reads exactly one entry (the rest wait for the next check).
    """

    name: str
    error_query: str = "SYST:ERR?"
    max_errors_read: int = MAX_ERRORS_READ

    def check_errors(self) -> list:
        """Read the error queue; raise `InstrumentError` for the first non-zero code."""
        query = self.error_query
        ask = self.ask  # type: ignore[attr-defined]
        errors = []
        for _ in range(self.max_errors_read):
            code, message = parse_scpi_error(ask(query), self.name, query)
            if code == 0:
                break
            errors.append((code, message))
        if errors:
            code, message = errors[0]
            raise InstrumentError(self.name, message or "error", code=str(code))
        return errors

    def check_set_errors(self) -> list:
        return self.check_errors()


class LinkMixin:
    """`ping()` around a driver's own cheap query, and `close()` releasing `self.adapter`.

    A driver overrides `_ping_query()` (True when the unit answers as expected). `link_errors`
    is what counts as "the unit does not answer"; anything else propagates from `ping()`.
    """

    link_errors: tuple[type[BaseException], ...] = LINK_ERRORS
    adapter: Any

    def _ping_query(self) -> bool:
        raise NotImplementedError

    def ping(self) -> bool:
        """Return True if the unit answers its liveness query as expected, else False."""
        try:
            return bool(self._ping_query())
        except self.link_errors:
            return False

    def close(self) -> None:
        """Release the connection (the outputs stay as they are: nothing is switched off)."""
        self.adapter.close()
