"""The frequency reference: a counter on the comb beat puts the clock laser on the absolute scale.

The lab's reference is a frequency comb referenced to a maser; the cavity-stabilised clock
laser's pick-off (before its double-pass AOM) beats with the nearest comb line, and a counter
(Pendulum CNT-91, drivers/frequency_counter.py, decision 0304) counts that beat. From it

    cavity offset = n f_rep + f_ceo + sign * beat - light_offset - nu0       (Hz)

with ``n`` the comb line, ``sign`` which side of it the light is, and ``light_offset`` the
light at the comb minus the laser with its AOM at centre (minus the AOM's passes times its
centre frequency: the pick-off is taken before the AOM). That is what
`ionclock.servo.clock_output.FrequencyReference.laser_offset_hz` answers, so each frame's
``nu_abs_hz`` and ``corrected_hz`` come from the counted beat (servo/clock_output.py; DOMAIN
§2: the output is the servo frequency on the absolute scale, corrected by the shifts).

The role (decision 0307): every ``period_s`` it starts one measurement (``:INIT``), waits the
gate, and fetches its result (``:FETC?``): the beat's mean over the gate, stored as channel
``beat.comb`` (Hz; a lost beat, the counter's invalid-result marker, is a missing sample with
a ``reading_missing`` event, decision 0503). The laser at a probe's instant is the last gate's
mean carried along the laser's drift, which is the slope between that gate and one
``slope_gates`` gates earlier (the cavity drift is linear to first order; a slope from
consecutive gates would carry the flicker's gate-to-gate difference into every extrapolated
second). Without a valid gate for ``stale_s`` the reference says NaN: the frames then carry
no ``nu_abs_hz``/``corrected_hz`` (NULL), with a ``reference_lost`` event, and
``reference_restored`` once the beat is counted again. The clock itself is not held: the lock
to the ion does not depend on the comb.

In a twin run (``sim://cnt91``) the counter's twin counts the world's laser through its bytes
like the lab's (sim_instruments/cnt91.py), and this reference replaces the twin's perfect
comb; the twin's comb has the role's default f_rep and f_ceo.
"""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction

import simpy

from ionclock.apparatus.roles import Role
from ionclock.config import Field
from ionclock.errors import ConfigError, IonclockError
from ionclock.physics.constants import NU0_CA

F = Field

INPUTS = ("A", "B")


class CountedReference:
    """`FrequencyReference` from counted comb beats (see the module docstring).

    `add(t0, t1, beat_hz)` takes one gate's result; `laser_offset_hz(t)` is the cavity
    offset from nu0 at `t` (Hz), NaN while no gate is valid (`invalidate`).
    """

    def __init__(self, f_rep_hz: float, f_ceo_hz: float, light_offset_hz: float,
                 nu0_hz: float = NU0_CA, mode_number: int = 0, beat_sign: int = 0,
                 slope_gates: int = 10):
        light = Fraction(nu0_hz) + Fraction(light_offset_hz)
        n = mode_number or round((light - Fraction(f_ceo_hz)) / Fraction(f_rep_hz))
        line = n * Fraction(f_rep_hz) + Fraction(f_ceo_hz)
        self.mode_number = int(n)
        self.beat_sign = beat_sign or (1 if light >= line else -1)
        # cavity offset = base + sign * beat, base exact from integers then one float
        self.base_hz = float(line - Fraction(light_offset_hz) - Fraction(nu0_hz))
        self._gates: deque = deque(maxlen=max(2, int(slope_gates) + 1))  # (mid, offset)
        self._m = 0.0
        self._v = math.nan
        self._slope = 0.0

    def offset_from_beat(self, beat_hz: float) -> float:
        """The cavity offset from nu0 (Hz) that a counted beat means."""
        return self.base_hz + self.beat_sign * beat_hz

    def add(self, t0: float, t1: float, beat_hz: float) -> float:
        """One gate [t0, t1] counted `beat_hz`; returns the cavity offset it means (Hz)."""
        mid, offset = 0.5 * (t0 + t1), self.offset_from_beat(beat_hz)
        gates = self._gates
        gates.append((mid, offset))
        m_first, v_first = gates[0]
        self._slope = (offset - v_first) / (mid - m_first) if mid > m_first else 0.0
        self._m, self._v = mid, offset
        return offset

    def invalidate(self) -> None:
        """No valid gate for too long: say NaN until the next one (and start the slope anew)."""
        self._v = math.nan
        self._gates.clear()

    @property
    def valid(self) -> bool:
        """Whether the reference has a valid gate to go by."""
        return not math.isnan(self._v)

    def laser_offset_hz(self, t: float) -> float:
        """Laser with the AOM at its centre minus nu0 (Hz) at `t`: NaN when not known."""
        return self._v + self._slope * (t - self._m)


class ReferenceRole(Role):
    """The comb-beat counter beside the clock servo (see the module docstring)."""

    section = "reference"
    ROLE_MODELS = {"reference": ("cnt91",)}
    SETTINGS = {
        "enabled": F(bool, True, doc="count the comb beat when [instruments.reference] is set"),
        "input": F(str, "A", choices=INPUTS, doc="the counter input the beat is cabled to"),
        "gate_s": F(float, 1.0, min=1e-3, max=100.0, doc="the counter's gate, s"),
        "period_s": F(float, 10.0, min=1e-3, max=3600.0,
                      doc="one gate every period_s (>= gate_s), s"),
        "slope_gates": F(int, 10, min=1, max=1000,
                         doc="the laser's drift is taken over this many gates"),
        "stale_s": F(float, 60.0, min=1e-3, max=86400.0,
                     doc="no valid gate for this long: the output is NULL"),
        "f_rep_hz": F(float, 250e6, min=1e6, max=10e9, doc="the comb's repetition rate, Hz"),
        "f_ceo_hz": F(float, 20e6, min=-10e9, max=10e9, doc="the comb's offset frequency, Hz"),
        "mode_number": F(int, 0, min=0, doc="the comb line n (0: the one nearest the light)"),
        "beat_sign": F(int, 0, min=-1, max=1,
                       doc="+1: light above its line, -1: below (0: from the nominal light)"),
        "light_offset_hz": F(float, -160e6, min=-10e9, max=10e9,
                             doc="light at the comb minus the laser with its AOM at centre, "
                                 "Hz (default: -2 x 80 MHz, the pick-off taken before the "
                                 "double-pass clock AOM at its 80 MHz centre)"),
    }

    @classmethod
    def configured(cls, cfg: dict) -> bool:
        """Run when ``[instruments.reference]`` is there and ``[reference] enabled``."""
        return "reference" in cfg["instruments"] and cfg.get("reference", {}).get(
            "enabled", True)

    def __init__(self, ctx):
        super().__init__(ctx)
        s = self.settings
        if s["period_s"] < s["gate_s"]:
            raise ConfigError("reference.period_s",
                              f"{s['period_s']} s is shorter than reference.gate_s "
                              f"{s['gate_s']} s (one gate per period)")
        self.reference = CountedReference(s["f_rep_hz"], s["f_ceo_hz"], s["light_offset_hz"],
                                          mode_number=s["mode_number"],
                                          beat_sign=s["beat_sign"],
                                          slope_gates=s["slope_gates"])
        self.counter = ctx.instruments["reference"]
        self.entry = ctx.cfg["instruments"]["reference"]
        # the clock's output from now on takes the laser from the counted beat
        ctx.servo.output.set_reference(self.reference)

    def channels(self) -> list[tuple]:
        """``beat.comb``: the counted beat (Hz)."""
        return [("beat.comb", "Hz", None, None,
                 f"{self.entry['model']} {self.entry['resource']} input "
                 f"{self.settings['input']} (comb beat, gate {self.settings['gate_s']:g} s)",
                 self.settings["period_s"])]

    def _configure(self) -> bool:
        try:
            self.counter.configure_frequency(self.settings["input"], self.settings["gate_s"])
            return True
        except (IonclockError, OSError):
            return False

    def process(self):
        """Count one gate every period; feed the reference; events for a lost beat."""
        env, ctx, s = self.ctx.env, self.ctx, self.settings
        gate, period = s["gate_s"], s["period_s"]
        configured = False
        last_valid = env.now
        missing_since = None
        lost = False
        try:
            while True:
                t0 = env.now
                beat = reason = None
                if not configured:
                    configured = self._configure()
                if configured:
                    try:
                        self.counter.initiate()
                        yield env.timeout(gate)
                        value = self.counter.fetch()
                        if math.isnan(value):   # the counter's invalid-result marker
                            reason = getattr(value, "reason", "no valid result")
                        else:
                            beat = float(value)
                    except (IonclockError, OSError) as err:
                        reason, beat, configured = str(err), None, False
                else:
                    reason = "the counter could not be configured (offline?)"
                    yield env.timeout(gate)
                t1 = env.now
                ctx.store.add("samples", (t1, "beat.comb", beat))
                if beat is not None:
                    self.reference.add(t0, t1, beat)
                    last_valid = t1
                    if missing_since is not None:
                        ctx.event(t1, "reading_restored", "reference", channel="beat.comb",
                                  missing_s=t1 - missing_since)
                        missing_since = None
                    if lost:
                        lost = False
                        ctx.event(t1, "reference_restored", "reference")
                else:
                    if missing_since is None:
                        missing_since = t1
                        ctx.event(t1, "reading_missing", "reference", channel="beat.comb",
                                  reason=reason)
                    if not lost and t1 - last_valid >= s["stale_s"]:
                        lost = True
                        self.reference.invalidate()
                        ctx.event(t1, "reference_lost", "reference", since=last_valid,
                                  reason=reason)
                yield env.timeout(max(0.0, period - (env.now - t0)))
        except simpy.Interrupt:   # the run is over
            return


ROLE = ReferenceRole
