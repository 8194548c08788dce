"""A stand-in for the clock world as the SR400 twin sees it: TRIG edges per cycle, photons.

`CycleWorld` has what `ionclock.sim_instruments.sr400.SimSR400` uses of a world: ``env.now``,
``wire_ttl("counter_trig", callback)``, ``settle()`` (delivers the edges due by ``env.now``,
in time order) and ``photon_counts(t_open, width)``. `cycle()` plays one clock cycle: the
pulse program puts the counter's TRIG edges at ``detection start + offsets`` and time runs to
the cycle's end. Photons are known:

- ``photons="by_cycle"``: the gate that is exactly cycle k's detection window counts
  ``base + k`` (so a count names the cycle it came from); any other window counts
  `STRAY` (a gate that is not a detection window).
- ``photons="sequence"``: the n-th window asked for counts ``first + n`` (17, 18, ...).
"""

from __future__ import annotations

from types import SimpleNamespace

STRAY = 99_999


class CycleWorld:
    """Clock cycles of `cycle_s`, detection at `detection_at_s` into each, `detection_s` long."""

    def __init__(self, offsets: tuple[float, ...] = (0.0,), *, cycle_s: float = 0.1,
                 detection_at_s: float = 0.09, detection_s: float = 2e-3,
                 photons: str = "by_cycle", base: int = 100, first: int = 17):
        self.env = SimpleNamespace(now=0.0)
        self.offsets = tuple(offsets)
        self.cycle_s = cycle_s
        self.detection_at_s = detection_at_s
        self.detection_s = detection_s
        self.photons = photons
        self.base = base
        self.first = first
        self.callbacks: list = []
        self.lines: list[str] = []
        self.cycles = 0
        self.edges: list[float] = []      # scheduled, not yet delivered
        self.delivered: list[float] = []
        self.windows: list[tuple[float, float]] = []  # photon_counts calls
        self.settles = 0

    # --- what the twin uses ---------------------------------------------------------------
    def wire_ttl(self, line: str, callback) -> None:
        self.lines.append(line)
        self.callbacks.append(callback)

    def settle(self) -> None:
        self.settles += 1
        edges = self.edges
        now = self.env.now
        while edges and edges[0] <= now:
            t = edges.pop(0)
            self.delivered.append(t)
            for callback in self.callbacks:
                callback(t)

    def photon_counts(self, t_open: float, width_s: float) -> int:
        self.windows.append((t_open, width_s))
        if self.photons == "sequence":
            return self.first + len(self.windows) - 1
        k = round((t_open - self.detection_at_s) / self.cycle_s)
        if k >= 0 and t_open == self.detection_start(k) and width_s == self.detection_s:
            return self.base + k
        return STRAY

    # --- the test's side ----------------------------------------------------------------------
    def detection_start(self, k: int) -> float:
        """Start of cycle k's detection window (s)."""
        return k * self.cycle_s + self.detection_at_s

    def cycle(self, n: int = 1) -> None:
        """Play `n` clock cycles: schedule their TRIG edges and run time to their end."""
        for _ in range(n):
            d0 = self.detection_start(self.cycles)
            self.edges.extend(d0 + offset for offset in self.offsets)
            self.cycles += 1
            self.env.now = self.cycles * self.cycle_s
