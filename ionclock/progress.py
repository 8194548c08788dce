"""Progress on long work, on the terminal: simulated time as h:mm:ss, stages as lines.

Shown when stderr is a terminal (a pipe or a log file gets none), like every progress bar
the suite uses; ``--no-progress`` hides it. Nothing here reads the clock for the work
itself: the bars are told how far the simulated clock has got.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from ionclock.units import hms


def on_terminal(stream: TextIO | None = None) -> bool:
    """True when `stream` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class SimTimeBar(tqdm):
    """A tqdm bar over simulated seconds that reads ``0:12:00/6:00:00 simulated``."""

    def __init__(self, total_s: float, desc: str, enabled: bool | None = None, **kwargs):
        show = on_terminal() if enabled is None else enabled
        super().__init__(total=float(total_s), desc=desc, disable=not show, leave=False,
                         file=sys.stderr, dynamic_ncols=True,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {simulated} simulated "
                                    "[{elapsed} wall, {remaining} left]", **kwargs)

    @property
    def format_dict(self) -> dict:
        d = super().format_dict
        d["simulated"] = f"{hms(d['n'])}/{hms(d['total'] or 0)}"
        return d

    def advance_to(self, t_s: float) -> None:
        """Move the bar to `t_s` simulated seconds since the start."""
        self.update(max(0.0, min(float(t_s), self.total) - self.n))


class Stages:
    """Stage lines for work that has steps, not a rate: ``report: reading ... 1.2 s``."""

    def __init__(self, prefix: str, enabled: bool | None = None, stream: TextIO | None = None):
        self.prefix = prefix
        self.stream = sys.stderr if stream is None else stream
        self.enabled = on_terminal(self.stream) if enabled is None else enabled
        self._t = None

    def __call__(self, what: str) -> None:
        """Start the stage `what` (the previous one's time is printed when it ends)."""
        self._end()
        if self.enabled:
            print(f"{self.prefix}: {what} ...", end="", file=self.stream, flush=True)
            self._t = time.perf_counter()

    def _end(self) -> None:
        if self._t is not None:
            print(f" {time.perf_counter() - self._t:.1f} s", file=self.stream, flush=True)
            self._t = None

    def done(self) -> None:
        """End the last stage."""
        self._end()


class CountBar(tqdm):
    """A tqdm bar over whole pieces of work (a campaign's runs): ``campaign: 3/8 runs``."""

    def __init__(self, total: int, desc: str, unit: str = "runs", initial: int = 0,
                 enabled: bool | None = None, **kwargs):
        show = on_terminal() if enabled is None else enabled
        super().__init__(total=int(total), initial=int(initial), desc=desc, disable=not show,
                         leave=False, file=sys.stderr, dynamic_ncols=True,
                         bar_format="{desc}: {n_fmt}/{total_fmt} " + unit
                                    + " |{bar}| [{elapsed} wall, {remaining} left]", **kwargs)
