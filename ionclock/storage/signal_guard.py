"""Sections that a SIGTERM/SIGINT must not cut in two.

`shutdown_on_signals` turns a signal into an exception raised in the main thread at the next
bytecode. Raised between a store's ``COMMIT`` and the clearing of its committed buffers, it
would leave rows to be written a second time (and a ``ROLLBACK`` with no transaction). Code
that must run to its end wraps itself in ``with atomic:``; a signal arriving inside is held
and raised once the outermost section is left. Only the main thread can receive the
exception, so only its sections count; elsewhere the guard costs one comparison.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class _Atomic:
    """Re-entrant guard: ``with atomic: ...`` holds signals until the block ends."""

    def __init__(self) -> None:
        self._main = threading.main_thread()
        self.depth = 0
        self._held: Callable[[], None] | None = None

    def __enter__(self) -> None:
        if threading.current_thread() is self._main:
            self.depth += 1

    def __exit__(self, *exc) -> None:
        if threading.current_thread() is not self._main:
            return
        self.depth -= 1
        if self.depth == 0 and self._held is not None:
            raise_held, self._held = self._held, None
            if exc[0] is None:
                raise_held()

    def hold_or_run(self, raise_now: Callable[[], None]) -> None:
        """Called by a signal handler: raise now, or when the open section ends."""
        if self.depth:
            if self._held is None:
                self._held = raise_now
        else:
            raise_now()


atomic = _Atomic()
