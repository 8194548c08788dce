"""Is a line locked on its central fringe? A sequential test on Rabi probes (issue 10).

Hyper-Ramsey with T = 80 ms repeats every 1/T = 12.5 Hz: a line locked a whole fringe off
gives the same error signal as one locked right. A Rabi pi pulse spread over all the light
of the cycle (88 ms, `TableSequencer.prepare_rabi(..., "fine")`) has one maximum only: at
the line's centre it shelves the ion (dark with probability ~ the contrast, 0.98 on the
twin), one fringe off it leaves it bright (dark 0.08), and no sidelobe reaches 0.12.

Each verification probe is a Bernoulli trial (dark or bright). Wald's SPRT (as for the ion
presence, decision 0007) of "off" (dark probability `p_off`) against "centred"
(`p_centred`): per probe the log-likelihood ratio adds log(p_off / p_centred) for a dark
outcome and log((1 - p_off) / (1 - p_centred)) for a bright one; the test declares the line
off at S >= log A and centred at S <= log B, A = (1 - beta) / alpha, B = beta / (1 - alpha),
with alpha = P(off | centred) (`false_alarm`), beta = P(centred | off) (`miss`).
`outcome()` gives the exact rates and lengths by recursion over the number of darks.
"""

from __future__ import annotations

import math

from ionclock.servo.ion_presence import SequentialOutcome, WaldTest

CENTRED = "centred"
OFF = "off"


class FringeTest(WaldTest):
    """Wald's SPRT of "off the central fringe" against "centred" on dark/bright outcomes.

    p_centred, p_off: dark probability of a fine Rabi probe on a centred line and on one a
        fringe or more off (design values, 1 > p_centred > p_off > 0).
    false_alarm: alpha, P(declared off | centred) per test.
    miss: beta, P(declared centred | off) per test.
    """

    def __init__(self, p_centred: float = 0.8, p_off: float = 0.15, false_alarm: float = 1e-6,
                 miss: float = 1e-6):
        if not 1.0 > p_centred > p_off > 0.0:
            raise ValueError(f"need 1 > p_centred > p_off > 0, got {p_centred} and {p_off}")
        for name, rate in (("false_alarm", false_alarm), ("miss", miss)):
            if not 0.0 < rate < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {rate}")
        super().__init__(false_alarm, miss)     # log A: off, log B: centred
        self.p_centred = p_centred
        self.p_off = p_off
        self.llr_dark = math.log(p_off / p_centred)
        self.llr_bright = math.log((1.0 - p_off) / (1.0 - p_centred))

    high = OFF
    low = CENTRED

    @property
    def probes(self) -> int:
        """Probes of the test in progress."""
        return self.n

    def update(self, dark: bool) -> str | None:
        """Add one probe's outcome; `OFF`, `CENTRED`, or None while undecided."""
        return self._add(self.llr_dark if dark else self.llr_bright)

    def outcome(self, p_dark: float, max_probes: int = 200) -> SequentialOutcome:
        """The test's exact behaviour on probes of dark probability `p_dark`.

        After n probes with k darks S = k llr_dark + (n - k) llr_bright; the recursion
        carries P(k, still undecided). Returned as the presence test's `SequentialOutcome`
        with p_lost = P(declared off), p_present = P(declared centred).
        """
        alive = {0: 1.0}
        p_off = p_cen = mean = 0.0
        decided = []
        for n in range(1, max_probes + 1):
            nxt: dict[int, float] = {}
            for k, w in alive.items():
                nxt[k + 1] = nxt.get(k + 1, 0.0) + w * p_dark
                nxt[k] = nxt.get(k, 0.0) + w * (1.0 - p_dark)
            alive = {}
            for k, w in nxt.items():
                s = k * self.llr_dark + (n - k) * self.llr_bright
                if s >= self.upper:
                    p_off += w
                    mean += n * w
                elif s <= self.lower:
                    p_cen += w
                    mean += n * w
                else:
                    alive[k] = w
            decided.append(p_off + p_cen)
            if not alive or sum(alive.values()) < 1e-300:
                break
        return SequentialOutcome(p_off, p_cen, mean, tuple(decided))
