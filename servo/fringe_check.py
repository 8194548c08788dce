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

import numpy as np

from ionclock.servo.ion_presence import SequentialOutcome, WaldTest

CENTRED = "centred"
OFF = "off"


def outcome_llrs(p_centred: float, p_off: float) -> tuple[float, float]:
    """Evidence for "off" of a dark and of a bright probe (log-likelihood ratios).

    log(p_off / p_centred) and log((1 - p_off) / (1 - p_centred)), for design dark rates
    1 > p_centred > p_off > 0.
    """
    if not 1.0 > p_centred > p_off > 0.0:
        raise ValueError(f"need 1 > p_centred > p_off > 0, got {p_centred} and {p_off}")
    return math.log(p_off / p_centred), math.log((1.0 - p_off) / (1.0 - p_centred))


class FringeTest(WaldTest):
    """Wald's SPRT of "off the central fringe" against "centred" on dark/bright outcomes.

    p_centred, p_off: dark probability of a fine Rabi probe on a centred line and on one a
        fringe or more off (design values, 1 > p_centred > p_off > 0).
    false_alarm: alpha, P(declared off | centred) per test.
    miss: beta, P(declared centred | off) per test.
    """

    def __init__(self, p_centred: float = 0.8, p_off: float = 0.15, false_alarm: float = 1e-6,
                 miss: float = 1e-6):
        self.llr_dark, self.llr_bright = outcome_llrs(p_centred, p_off)
        super().__init__(false_alarm, miss, ("false_alarm", "miss"))  # log A: off, B: centred
        self.p_centred = p_centred
        self.p_off = p_off

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


class FringeMonitor:
    """Page's CUSUM per line (and pooled) on the Rabi probes interleaved in a running lock.

    A lock that was verified can leave its fringe at any moment (a laser jump, a field or
    quadrupole step): a change-point problem, for which Page's CUSUM is the optimal
    sequential test (E. S. Page, "Continuous inspection schemes", Biometrika 41, 100
    (1954)). Per probe S <- max(0, S + l), l the log-likelihood ratio of "off" against
    "centred" (as in `FringeTest`); an alarm at S >= h. With the ion centred the mean run
    to a false alarm is at least e^h probes; once off, the delay is ~ h / E[l | off] probes
    (13 at h = 16 with the twin's 0.08 dark one fringe off).

    There is a statistic per line (a slip of one line) and one pooled over all probes (a
    slip common to all lines, e.g. a laser jump: found ~6x sooner). `since(slot)` is the
    last probe time at which that statistic was 0: the fault began after it.
    """

    def __init__(self, p_centred: float = 0.8, p_off: float = 0.15, h: float = 16.0,
                 lines: int = 6):
        if not h > 0.0:
            raise ValueError(f"h must be > 0, got {h}")
        self.llr_dark, self.llr_bright = outcome_llrs(p_centred, p_off)
        self.h = h
        self.lines = lines
        self.pooled = lines                      # the pooled statistic's slot
        self.s = [0.0] * (lines + 1)
        self._since = [0.0] * (lines + 1)

    def reset(self, t: float) -> None:
        """Start over at time t (a freshly verified lock)."""
        self.s = [0.0] * (self.lines + 1)
        self._since = [t] * (self.lines + 1)

    def since(self, slot: int) -> float:
        return self._since[slot]

    def update(self, k: int, dark: bool, t: float) -> int | None:
        """Add a probe of line k at time t: the alarmed slot (k or `pooled`), or None."""
        step = self.llr_dark if dark else self.llr_bright
        alarm = None
        for slot in (k, self.pooled):
            s = self.s[slot] + step
            if s <= 0.0:
                s = 0.0
                self._since[slot] = t
            self.s[slot] = s
            if s >= self.h and alarm is None:
                alarm = slot
        return alarm


def search_order(predicted, width: int) -> list[int]:
    """Fringe numbers to try for one line: where it sits (0), the predictions, then outward.

    `predicted`: fringe numbers predicted by the lines found before (none, or one per
    hypothesis; one beyond the range counts as its edge). All of -width..width once, nearest
    to 0 or to a prediction first (+ before -, 0 before the predictions).
    """
    centres = [0] + [max(-width, min(width, int(n))) for n in predicted]
    order: list[int] = []
    seen = set()
    for d in range(max(abs(c) for c in centres) + width + 1):
        for c in centres:
            for n in ((c + d, c - d) if d else (c,)):
                if abs(n) <= width and n not in seen:
                    seen.add(n)
                    order.append(n)
    return order


def predict_fringes(found: dict[int, float], fringe_hz: float,
                    zeeman: tuple, quadrupole: tuple) -> list[list[int]]:
    """Fringes to move each line by, from the moves found so far (Hz by line): hypotheses.

    The six lines move together only as common + Zeeman (B) + quadrupole (Q0) patterns
    (DOMAIN §5). One line's move is any one of them (a laser jump, a field step, a Q0
    change): three hypotheses, one prediction each. More lines are fitted by as many
    patterns as they determine well (2 or 3: common + B; 4 or more: + Q0; each move is the
    true move rounded to the search's grid, and three lines would fit Q0 to that rounding):
    one prediction. Each prediction is rounded to whole fringes, the found lines' own
    entries being their moves.
    """
    lines = sorted(found)
    n_lines = len(zeeman)
    if not lines:
        return []
    basis = np.array([[1.0] * n_lines, list(zeeman), list(quadrupole)]).T
    if len(lines) == 1:
        (k,) = lines
        models = [basis[:, j] * (found[k] / basis[k, j]) for j in range(3) if basis[k, j]]
    else:
        a = basis[lines][:, :2 if len(lines) < 4 else 3]
        coef, *_ = np.linalg.lstsq(a, np.array([found[k] for k in lines]), rcond=None)
        models = [basis[:, :a.shape[1]] @ coef]
    return [[int(round((found[k] if k in found else model[k]) / fringe_hz))
             for k in range(n_lines)] for model in models]
