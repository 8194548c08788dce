"""Is the ion still there? A sequential test on the counts of ion checks (decision 0007).

An ion check is a cycle with the clock light off: a trapped ion is in S1/2 and scatters, so
its detection counts are Poisson with the bright mean b; without an ion only the background
is counted, Poisson with the dark mean d (both in counts per detection gate, b > d > 0). One
thresholded check is a weak witness at low counts: at b = 12, d = 2 and threshold 8 a bright
ion reads dark 9 % of the time. The test here weighs every check's counts instead and keeps
asking until the evidence decides.

Wald's sequential probability ratio test (A. Wald, "Sequential tests of statistical
hypotheses", Ann. Math. Statist. 16, 117 (1945); "Sequential Analysis", Wiley 1947): after
n checks with counts c_1..c_n the log-likelihood ratio of "lost" (mean d) against "present"
(mean b) is

    S_n = sum_i log[P_d(c_i) / P_b(c_i)] = n (b - d) - log(b / d) sum_i c_i.

The test declares the ion lost when S_n >= log A and present when S_n <= log B, with Wald's
boundaries from the error rates asked for,

    A = (1 - beta) / alpha,    B = beta / (1 - alpha),

alpha = P(declared lost | ion present) (`false_loss`), beta = P(declared present | ion
gone) (`false_presence`). Wald's inequalities bound the rates actually reached: alpha' <=
1/A and beta' <= B (the overshoot of the last step past a boundary only lowers them).
`outcome()` computes the exact rates and the number of checks by recursion over the sum of
the counts, on which S_n depends alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PRESENT = "present"
LOST = "lost"


@dataclass(frozen=True)
class SequentialOutcome:
    """What the test does on counts of one mean: exact probabilities, not a simulation.

    p_lost, p_present: probability that the test ends with that decision.
    mean_checks: expected number of checks to a decision.
    decided_within: decided_within[k] is the probability of a decision after at most k + 1
        checks.
    """

    p_lost: float
    p_present: float
    mean_checks: float
    decided_within: tuple[float, ...]

    def checks_for(self, probability: float) -> int:
        """Fewest checks after which the test has decided with at least `probability`."""
        for k, p in enumerate(self.decided_within):
            if p >= probability:
                return k + 1
        raise ValueError(f"not decided with probability {probability} within "
                         f"{len(self.decided_within)} checks")


class WaldTest:
    """The running part of a Wald SPRT: a log-likelihood sum between log B and log A.

    Subclasses give the boundaries' decisions (`high`: S >= log A, `low`: S <= log B) and
    each observation's log-likelihood ratio; `_add` takes one, and after a decision the next
    observation starts a new test. `n` counts the observations of the test in progress.
    """

    high: str
    low: str

    def __init__(self, alpha: float, beta: float, names: tuple[str, str] = ("alpha", "beta")):
        """Boundaries from `alpha` = P(high | truth low) and `beta` = P(low | truth high).

        Both must lie in (0, 0.5); `names` are the subclass's names for them in the error.
        """
        for name, rate in zip(names, (alpha, beta)):
            if not 0.0 < rate < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {rate}")
        self.upper = math.log((1.0 - beta) / alpha)     # log A
        self.lower = math.log(beta / (1.0 - alpha))     # log B
        self.llr = 0.0
        self.n = 0

    def reset(self) -> None:
        """Forget the evidence: the next observation starts a new test."""
        self.llr = 0.0
        self.n = 0

    def _add(self, llr: float) -> str | None:
        if self.n and (self.llr >= self.upper or self.llr <= self.lower):
            self.reset()   # the previous test had decided: this observation starts a new one
        self.n += 1
        self.llr += llr
        if self.llr >= self.upper:
            return self.high
        if self.llr <= self.lower:
            return self.low
        return None


class IonPresenceTest(WaldTest):
    """Wald's SPRT of "ion lost" (Poisson mean `dark_counts`) against "present" (`bright_counts`).

    bright_counts, dark_counts: mean counts per detection gate of a bright ion and of the
        background alone (the detection's calibration), bright_counts > dark_counts > 0.
    false_loss: alpha, the probability that a test run with the ion present declares it lost.
    false_presence: beta, the probability that a test run without an ion declares one.

    `update(counts)` takes one check's counts and returns `LOST`, `PRESENT` or None (ask
    again); after a decision the test starts over.
    """

    def __init__(self, bright_counts: float, dark_counts: float, false_loss: float = 1e-6,
                 false_presence: float = 1e-9):
        if not bright_counts > dark_counts > 0.0:
            raise ValueError(f"need bright_counts > dark_counts > 0, got {bright_counts} "
                             f"and {dark_counts}")
        # log A: lost, log B: present
        super().__init__(false_loss, false_presence, ("false_loss", "false_presence"))
        self.bright_counts = bright_counts
        self.dark_counts = dark_counts
        self.false_loss = false_loss
        self.false_presence = false_presence
        self._offset = bright_counts - dark_counts
        self._slope = math.log(bright_counts / dark_counts)

    def llr_of(self, counts: int) -> float:
        """One check's evidence for "lost": log P_d(counts) / P_b(counts) (< 0: present)."""
        return self._offset - counts * self._slope

    high = LOST
    low = PRESENT

    @property
    def checks(self) -> int:
        """Checks of the test in progress."""
        return self.n

    def update(self, counts: int) -> str | None:
        """Add one check's counts; `LOST`, `PRESENT`, or None while undecided."""
        return self._add(self.llr_of(counts))

    def outcome(self, mean_counts: float, max_checks: int = 200) -> SequentialOutcome:
        """The test's exact behaviour on checks of Poisson mean `mean_counts`.

        After k checks the test goes on while lower < k (b - d) - log(b/d) N < upper, N the
        sum of the counts: a window of N. The recursion carries the probability of each N
        still in the window, convolves it with one check's Poisson distribution, and takes
        off what crossed either side. Mass still undecided after `max_checks` is reported
        in neither decision.
        """
        lam = float(mean_counts)
        if not lam > 0.0:
            raise ValueError(f"mean_counts must be > 0, got {mean_counts}")
        # one check's Poisson distribution, cut where the tail is far below 1e-20
        n = np.arange(int(math.ceil(lam + 12.0 * math.sqrt(lam) + 30.0)) + 1)
        pmf = np.exp(n * math.log(lam) - lam - np.array([math.lgamma(k + 1.0) for k in n]))
        alive = np.array([1.0])          # P(sum of counts = N0 + i, still undecided)
        base = 0                         # N0
        p_lost = p_present = mean = 0.0
        decided = []
        for k in range(1, max_checks + 1):
            nxt = np.convolve(alive, pmf)
            sums = base + np.arange(nxt.size)
            s = k * self._offset - self._slope * sums
            lost = s >= self.upper
            present = s <= self.lower
            pl, pp = float(nxt[lost].sum()), float(nxt[present].sum())
            p_lost += pl
            p_present += pp
            mean += k * (pl + pp)
            decided.append(p_lost + p_present)
            keep = ~(lost | present)
            if not keep.any():
                break
            idx = np.flatnonzero(keep)
            alive = nxt[idx[0]:idx[-1] + 1] * keep[idx[0]:idx[-1] + 1]
            base = int(sums[idx[0]])
            if alive.sum() < 1e-300:
                break
        return SequentialOutcome(p_lost, p_present, mean, tuple(decided))
