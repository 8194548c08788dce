"""Events worth waking someone for, and the hooks that tell them.

Detectors (pure, no I/O, fed one sample at a time by the logger) turn a channel's trace into
state changes:

- `RefillDetector`: an LN2 refill is an abrupt temperature drop (DOMAIN §1: 1–3 K within
  minutes, every ~2 days): the value falls by at least `drop` below the maximum of the last
  `window_s` seconds. One event per refill (`holdoff_s` of silence after each).
- `BandDetector`: a sensor leaves (`out_of_band`) or re-enters (`in_band`) its calibrated
  band (PT100s are calibrated over 75–85 K; outside it a reading is not trusted).
- `IonLostDetector`: a counts channel stays below `threshold` for `count` reads in a row.

Every event goes to the store's ``events`` table. The `AlarmDispatcher` is a cursor pump
over that table (the same durable-cursor design as the sinks): any event of a configured
kind, written by the logger or by anything else sharing the store (the servo's
``ion_lost``), runs the alarm command (event JSON on stdin) and/or POSTs it to the webhook.
A failed hook is retried with backoff; the cursor advances only once every hook succeeded.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.request
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from ionclock.logger.sinks import CursorPump

log = logging.getLogger("ionclock.logger.alarms")

#: Event kinds that raise an alarm unless the config lists others.
DEFAULT_ALARM_KINDS = ("ln2_refill", "out_of_band", "instrument_offline", "ion_lost",
                       "sink_gap", "sink_rejected")


class RefillDetector:
    """Find abrupt drops (an LN2 refill) in a temperature trace (K, s)."""

    def __init__(self, drop: float, window_s: float = 900.0, holdoff_s: float = 6 * 3600.0):
        self.drop = drop
        self.window_s = window_s
        self.holdoff_s = holdoff_s
        self._win: deque[tuple[float, float]] = deque()  # (t, value), values decreasing
        self._last_event = -float("inf")

    def update(self, t: float, value: float) -> dict | None:
        """Feed one reading; return event detail when a refill is detected, else None."""
        win = self._win
        while win and win[0][0] < t - self.window_s:
            win.popleft()
        # Monotone deque: the window maximum sits at the left end.
        while win and win[-1][1] <= value:
            win.pop()
        win.append((t, value))
        t_max, v_max = win[0]
        if v_max - value >= self.drop and t - self._last_event >= self.holdoff_s:
            self._last_event = t
            # The refill time: the first reading already half-way down (the deque holds the
            # decreasing run after the maximum); for an abrupt drop, this very reading.
            t_drop = next(tt for tt, vv in win if v_max - vv >= self.drop / 2)
            return {"t_refill": t_drop, "t_max": t_max, "from": v_max, "to": value,
                    "drop": v_max - value}
        return None


class BandDetector:
    """Track whether a channel is inside its calibrated band [lo, hi]."""

    def __init__(self, lo: float | None, hi: float | None):
        self.lo = -float("inf") if lo is None else lo
        self.hi = float("inf") if hi is None else hi
        self.inside: bool | None = None

    def update(self, value: float) -> str | None:
        """Return ``out_of_band`` / ``in_band`` on a change of state, else None."""
        inside = self.lo <= value <= self.hi
        changed = self.inside is not None and inside != self.inside or (
            self.inside is None and not inside)
        self.inside = inside
        if not changed:
            return None
        return "in_band" if inside else "out_of_band"


class IonLostDetector:
    """Ion lost when `count` consecutive count readings are below `threshold`."""

    def __init__(self, threshold: float, count: int = 3):
        self.threshold = threshold
        self.count = count
        self._low = 0
        self.lost = False

    def update(self, value: float) -> str | None:
        """Return ``ion_lost`` / ``ion_recovered`` on a change of state, else None."""
        self._low = self._low + 1 if value < self.threshold else 0
        if not self.lost and self._low >= self.count:
            self.lost = True
            return "ion_lost"
        if self.lost and self._low == 0:
            self.lost = False
            return "ion_recovered"
        return None


class AlarmDispatcher(CursorPump):
    """Run the alarm hooks for every new event of the configured kinds."""

    table = "events"
    columns = "t, kind, source, detail"
    kind = "alarm"

    def __init__(self, name: str, store_path: str | Path, *, kinds: Sequence[str],
                 command: Sequence[str] = (), webhook: str = "", timeout_s: float = 10.0,
                 t0_unix: float = 0.0, **kw):
        super().__init__(name, store_path, **kw)
        self.kinds = frozenset(kinds)
        self.command = list(command)
        self.webhook = webhook
        self.timeout_s = timeout_s
        self.t0_unix = t0_unix
        self.fired: list[dict] = []

    def deliver(self, rows: list[tuple]) -> None:
        for t, kind, source, detail in rows:
            if kind not in self.kinds:
                continue
            event = {"t": t, "t_unix": self.t0_unix + t, "kind": kind, "source": source,
                     "detail": json.loads(detail)}
            payload = json.dumps(event).encode()
            if self.command:
                env = dict(os.environ, IONCLOCK_EVENT_KIND=kind, IONCLOCK_EVENT_SOURCE=source)
                done = subprocess.run(self.command, input=payload, env=env,
                                      capture_output=True, timeout=self.timeout_s, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"alarm command exited {done.returncode}: "
                                       f"{done.stderr[:200].decode(errors='replace')}")
            if self.webhook:
                req = urllib.request.Request(self.webhook, data=payload, method="POST",
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=self.timeout_s) as reply:
                    reply.read()
            log.info("alarm: %s from %s at t=%.1f", kind, source, t)
            self.fired.append(event)
