"""The LN2-cooled apparatus of the 40Ca+ clock as a thermal model in SimPy time.

What the seed reports (DOMAIN §1; seed Fig. 1, Fig. S2 and the BBR paragraph): a 13 L
liquid-nitrogen container refilled about every 2 days, each refill an abrupt temperature drop
followed by recovery; five PT100s (LN2-container bottom, two endcap electrodes, trap holder,
BBR cavity) plus a replica system's sensor on the trap itself; every sensor in 75–85 K with
an envelope of 79.5 ± 1.4 K; the trap is the warmest part, and switching the trap RF on or off
moves it by about 0.4 K.

The model is closed-form in time, so `temperature(location)` at ``env.now`` costs no
integration and does not depend on how often it is sampled:

    T_loc(t) = base_loc + rise_loc · min(τ_since_refill / interval, 1.5)
               − coupling_loc · Σ_refills depth_i · exp(−(t − t_i) / τ_recover)
               + rf_loc · h_rf(t) + excursions_loc(t) + noise_loc(t)

``h_rf`` relaxes exponentially (time constant `rf_time_constant`) towards 1 (RF on) or 0;
``noise`` is seeded, band-limited (values on a grid of `noise_interval` seconds, linearly
interpolated) and a pure function of (seed, location, t). Refill times follow a seeded
schedule (`refill_interval` ± `refill_jitter`); tests add their own with `inject_refill`.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass

#: Locations the model knows (five operational sensors + the replica system's trap sensor).
LOCATIONS: tuple[str, ...] = ("ln2_bottom", "endcap_1", "endcap_2", "trap_holder",
                              "bbr_cavity", "trap")

# Steady temperatures (K) just after a refill has recovered, RF off. Chosen so that, RF on,
# the sensors outside refill dips span ≈78.3–80.9 K (the seed's 79.5 ± 1.4 K envelope), with
# the trap the warmest part.
_BASE = {"ln2_bottom": 78.35, "endcap_1": 79.0, "endcap_2": 79.1, "trap_holder": 79.35,
         "bbr_cavity": 78.8, "trap": 79.9}
# Slow warming as the LN2 level falls, K over one refill interval (upper parts warm most).
_RISE = {"ln2_bottom": 0.25, "endcap_1": 0.45, "endcap_2": 0.45, "trap_holder": 0.5,
         "bbr_cavity": 0.4, "trap": 0.55}
# Fraction of the refill drop each location sees (the container bottom sees it all).
_COUPLING = {"ln2_bottom": 1.0, "endcap_1": 0.7, "endcap_2": 0.7, "trap_holder": 0.6,
             "bbr_cavity": 0.8, "trap": 0.5}
# Heating by the trap RF at full drive, K (the trap ~0.4 K, seed Fig. S2).
_RF = {"ln2_bottom": 0.0, "endcap_1": 0.03, "endcap_2": 0.03, "trap_holder": 0.08,
       "bbr_cavity": 0.01, "trap": 0.4}


@dataclass(frozen=True)
class Refill:
    """One LN2 refill: when (s, simulation time) and the drop it causes at the bottom (K)."""

    time: float
    depth: float


@dataclass(frozen=True)
class Excursion:
    """An excursion of `delta` K at `location` (None: all) from `start` for `duration` s."""

    start: float
    duration: float
    delta: float
    location: str | None
    time_constant: float

    def value(self, t: float) -> float:
        """Offset in K at time `t` s (first-order edges with `time_constant`)."""
        if t < self.start:
            return 0.0
        tau = self.time_constant
        end = self.start + self.duration
        if t <= end:
            return self.delta * (1.0 - math.exp(-(t - self.start) / tau)) if tau > 0 else self.delta
        at_end = self.delta * (1.0 - math.exp(-self.duration / tau)) if tau > 0 else self.delta
        return at_end * math.exp(-(t - end) / tau) if tau > 0 else 0.0


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _gauss(seed: int, stream: int, k: int) -> float:
    """Return a standard normal deviate, a pure function of its integer arguments."""
    h1 = _splitmix64((seed * 1_000_003 + stream) * 0x100000001B3 + k)
    h2 = _splitmix64(h1)
    u1 = ((h1 >> 11) + 1) / 9007199254740993.0
    u2 = (h2 >> 11) / 9007199254740992.0
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class Cryostat:
    """Thermal twin of the LN2 cryostat: `temperature(location)` in K at ``env.now``.

    Parameters (all optional keyword arguments)
    ----------
    seed:
        Seeds the refill schedule, the drop depths and the noise (same seed, same history).
    refill_interval, refill_jitter:
        Mean spacing of refills and the ± uniform jitter, s (2 days ± 3 h).
    first_refill:
        Time of the first scheduled refill, s (default: one interval after t = 0).
    refill_depth:
        (min, max) drop at the container bottom, K (1–3 K).
    recovery_time:
        e-folding time of the recovery after a refill, s (2 h).
    rf_on, rf_time_constant:
        Initial trap-RF state (at equilibrium) and the thermal time constant of the RF
        heating, s (20 min).
    noise:
        Standard deviation of each sensor's temperature noise, K (3 mK).
    noise_interval:
        Correlation spacing of the noise, s (10 s).
    base, rise, coupling, rf_heating:
        Per-location overrides (dicts) of the tables above.
    schedule_refills:
        False to have no automatic refills (only injected ones).
    """

    locations: tuple[str, ...] = LOCATIONS

    def __init__(self, env, seed: int = 0, *, refill_interval: float = 2 * 86400.0,
                 refill_jitter: float = 3 * 3600.0, first_refill: float | None = None,
                 refill_depth: tuple[float, float] = (1.0, 3.0), recovery_time: float = 7200.0,
                 rf_on: bool = True, rf_time_constant: float = 1200.0, noise: float = 0.003,
                 noise_interval: float = 10.0, base: dict | None = None,
                 rise: dict | None = None, coupling: dict | None = None,
                 rf_heating: dict | None = None, schedule_refills: bool = True):
        for label, value in (("refill_interval", refill_interval),
                             ("recovery_time", recovery_time),
                             ("rf_time_constant", rf_time_constant),
                             ("noise_interval", noise_interval)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"cryostat: {label} must be > 0 s (got {value!r})")
        if not (0 <= refill_jitter < refill_interval / 2):
            raise ValueError("cryostat: refill_jitter must be in [0, refill_interval/2)")
        if not (0 <= refill_depth[0] <= refill_depth[1] <= 5.0):
            raise ValueError("cryostat: refill_depth must be (min, max) K within 0–5 K")
        if not (0 <= noise <= 0.5):
            raise ValueError("cryostat: noise must be 0–0.5 K")
        self.env = env
        self.seed = int(seed)
        self.refill_interval = float(refill_interval)
        self.refill_jitter = float(refill_jitter)
        self.refill_depth = (float(refill_depth[0]), float(refill_depth[1]))
        self.recovery_time = float(recovery_time)
        self.rf_time_constant = float(rf_time_constant)
        self.noise = float(noise)
        self.noise_interval = float(noise_interval)
        self.base = self._table(_BASE, base, "base")
        self.rise = self._table(_RISE, rise, "rise")
        self.coupling = self._table(_COUPLING, coupling, "coupling")
        self.rf_heating = self._table(_RF, rf_heating, "rf_heating")
        self.schedule_refills = schedule_refills
        self._rng = random.Random(self.seed)
        self._inject_rng = random.Random(self.seed ^ 0x5EED)
        start = float(env.now)
        first = start + self.refill_interval if first_refill is None else float(first_refill)
        # A refill "before the start" anchors the slow rise: the run begins just recovered.
        self._refills: list[Refill] = [Refill(start - 6 * self.recovery_time, 0.0)]
        self._next_scheduled = first
        self._excursions: list[Excursion] = []
        self._rf_on = bool(rf_on)
        self._rf_t0 = start
        self._rf_h0 = 1.0 if rf_on else 0.0

    @staticmethod
    def _table(default: dict, override: dict | None, label: str) -> dict:
        table = dict(default)
        for key, value in (override or {}).items():
            if key not in table:
                raise ValueError(f"cryostat: {label}: unknown location {key!r} "
                                 f"(known: {', '.join(LOCATIONS)})")
            table[key] = float(value)
        return table

    # --- refills ----------------------------------------------------------------------
    def _extend_schedule(self, t: float) -> None:
        """Materialise scheduled refills up to time `t` (in order, so the seed fixes them)."""
        if not self.schedule_refills:
            return
        while self._next_scheduled <= t:
            depth = self._rng.uniform(*self.refill_depth)
            self._add_refill(Refill(self._next_scheduled, depth))
            jitter = self._rng.uniform(-self.refill_jitter, self.refill_jitter)
            self._next_scheduled += self.refill_interval + jitter

    def _add_refill(self, refill: Refill) -> None:
        times = [r.time for r in self._refills]
        self._refills.insert(bisect_right(times, refill.time), refill)

    def inject_refill(self, depth: float | None = None) -> Refill:
        """Refill the LN2 now: a drop of `depth` K at the bottom (None: drawn from the seed)."""
        if depth is None:
            depth = self._inject_rng.uniform(*self.refill_depth)
        if not (0.0 <= depth <= 5.0):
            raise ValueError(f"cryostat: refill depth {depth!r} K outside 0–5 K")
        self._extend_schedule(self.env.now)
        refill = Refill(float(self.env.now), float(depth))
        self._add_refill(refill)
        return refill

    def refills(self) -> list[Refill]:
        """Refills that have happened up to ``env.now`` (the pre-start anchor excluded)."""
        self._extend_schedule(self.env.now)
        return [r for r in self._refills[1:] if r.time <= self.env.now]

    @property
    def next_refill(self) -> float | None:
        """Time of the next scheduled refill, s (None when refills are not scheduled)."""
        self._extend_schedule(self.env.now)
        return self._next_scheduled if self.schedule_refills else None

    def _last_refill(self, t: float) -> Refill:
        self._extend_schedule(t)
        times = [r.time for r in self._refills]
        return self._refills[max(bisect_right(times, t) - 1, 0)]

    # --- excursions -------------------------------------------------------------------
    def inject_excursion(self, delta: float, duration: float, location: str | None = None,
                         time_constant: float = 60.0) -> Excursion:
        """Add `delta` K at `location` (None: every location) from now for `duration` s."""
        if location is not None and location not in self.base:
            raise ValueError(f"cryostat: unknown location {location!r} "
                             f"(known: {', '.join(LOCATIONS)})")
        if not (math.isfinite(delta) and abs(delta) <= 20.0):
            raise ValueError(f"cryostat: excursion {delta!r} K outside ±20 K")
        if not (duration > 0 and time_constant >= 0):
            raise ValueError("cryostat: excursion needs duration > 0 s and time_constant >= 0 s")
        exc = Excursion(float(self.env.now), float(duration), float(delta), location,
                        float(time_constant))
        self._excursions.append(exc)
        return exc

    # --- RF ---------------------------------------------------------------------------
    @property
    def rf_on(self) -> bool:
        """Whether the trap RF is on."""
        return self._rf_on

    def _rf_level(self, t: float) -> float:
        target = 1.0 if self._rf_on else 0.0
        return target + (self._rf_h0 - target) * math.exp(-(t - self._rf_t0)
                                                         / self.rf_time_constant)

    def set_rf(self, on: bool) -> None:
        """Switch the trap RF on or off now; the trap follows with `rf_time_constant`."""
        now = float(self.env.now)
        self._rf_h0 = self._rf_level(now)
        self._rf_t0 = now
        self._rf_on = bool(on)

    # --- temperatures -----------------------------------------------------------------
    def _noise(self, location: str, t: float) -> float:
        if self.noise == 0.0:
            return 0.0
        stream = LOCATIONS.index(location)
        x = t / self.noise_interval
        k = math.floor(x)
        f = x - k
        return self.noise * ((1 - f) * _gauss(self.seed, stream, k)
                             + f * _gauss(self.seed, stream, k + 1))

    def temperature(self, location: str) -> float:
        """Return the true temperature in K at `location` at ``env.now``."""
        if location not in self.base:
            raise ValueError(f"cryostat: unknown location {location!r} "
                             f"(known: {', '.join(LOCATIONS)})")
        t = float(self.env.now)
        last = self._last_refill(t)
        since = t - last.time
        temp = self.base[location]
        temp += self.rise[location] * min(since / self.refill_interval, 1.5)
        # Drops of earlier refills still recovering add up (an injected refill soon after).
        drop = 0.0
        for refill in reversed(self._refills):
            age = t - refill.time
            if age < 0:
                continue
            if age > 20 * self.recovery_time:
                break
            drop += refill.depth * math.exp(-age / self.recovery_time)
        temp -= self.coupling[location] * drop
        temp += self.rf_heating[location] * self._rf_level(t)
        for exc in self._excursions:
            if exc.location is None or exc.location == location:
                temp += exc.value(t)
        return temp + self._noise(location, t)

    def temperatures(self) -> dict[str, float]:
        """Every location's true temperature in K at ``env.now``."""
        return {loc: self.temperature(loc) for loc in LOCATIONS}
