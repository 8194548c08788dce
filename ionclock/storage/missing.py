"""Episodes of missing readings: one event when a channel starts to miss, one when it is back.

A reading the instrument answered without a number (a status word, an open sensor, a
garbled reply) or did not answer at all is a missing sample, stored as NULL (decision 0503).
So that the store says why, a channel that starts to miss records one ``reading_missing``
event (source: the channel) with the reason, and one ``reading_restored`` (how long, how
many samples) when it reads again; the samples in between are not each an event. The
logger and the clock run's environment and roles share this bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable


class MissingReadings:
    """Tracks which channels are missing; `event(t, kind, source, **detail)` records events."""

    def __init__(self, event: Callable[..., None]):
        self._event = event
        self._missing: dict[str, list] = {}   # channel -> [since, missing samples]

    def update(self, t: float, channel: str, value: float | None, reason: str | None = None,
               **detail) -> bool:
        """Note one sample of `channel` (None: missing); returns True if it started to miss."""
        missing = self._missing.get(channel)
        if value is None:
            if missing is None:   # the channel starts to miss: once, with the reason
                self._missing[channel] = [t, 1]
                self._event(t, "reading_missing", channel, **detail,
                            reason=reason or "no reading")
                return True
            missing[1] += 1
            return False
        if missing is not None:
            del self._missing[channel]
            self._event(t, "reading_restored", channel, missing_s=t - missing[0],
                        missing_samples=missing[1])
        return False

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels missing now."""
        return tuple(self._missing)
