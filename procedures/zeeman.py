"""alpha_z from interleaved clock locks at several fields (DOMAIN §3, seed Eq. 2; decision 0802).

The clock is locked (`ionclock.apparatus.clock_run.ClockRun`, the clock's own servo through
the drivers) in blocks B0 | B | B0: half a block at the operating field B0, a block at a
field B, half a block at B0 again, the coil current set for each (B0's current times
B / B0: the config's ``[clock] b_nominal_t`` and ``[instruments.coils] current_a`` fix the
coil calibration). Each lock's frequency is the mean, over its locked frames after
`settle_s`, of the laser's frequency on the absolute scale (``lock_frames.nu_abs_hz``: the
frequency reference, a comb on a maser in the lab, the twin's perfect comb) and its field the
mean B from the Zeeman splittings. The seed compared two clocks (one held at B0); one clock
alternating between B and B0 is the same comparison with the reference's drift (the maser,
the slow shifts: BBR, the clock's other rows) removed by the symmetric B0 halves:

    delta_z = nu(B) - (nu(B0, before) + nu(B0, after)) / 2 = alpha_z (B^2 - B0^2)   (Eq. 2)

linear drift cancelling exactly. Each block is independent of the others (its own B0
halves), so the rows are independent points. The uncertainty of a lock's mean is from batch
means of its frames (the servo correlates neighbouring frames). One row per field B:
``b_t, b0_t, delta_hz, delta_unc_hz``, the zeeman analysis' columns, fitted with
`ionclock.procedures.analysis.zeeman.fit_alpha_z` (offset convention by default).

Field range: the coil supply's current limit bounds B (sim.toml: 0.9 A, 45 uT), so the
spread of B^2 - B0^2 on this apparatus is ~2e-9 T^2 and delta_z spans only ~0.03 Hz against
each lock's ~0.01 Hz/sqrt(h) (the single ion's QPN): alpha_z comes out to tens of per cent
in a day of locks, not the seed's 0.3 % (which used a second clock and larger fields). The
procedure states its interval; it does not pretend otherwise.
"""

from __future__ import annotations

import copy
import math
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter, Parameter

from ionclock.apparatus.clock_run import ClockRun
from ionclock.errors import UserError
from ionclock.procedures.analysis import zeeman as analysis
from ionclock.procedures.base import IonclockProcedure, analysis_columns, register


def parse_fields(text: str) -> list[float]:
    """Fields in uT from "10, 25, 44" -> T; a bad list is a `UserError` (one line)."""
    try:
        values = [float(x) * 1e-6 for x in str(text).replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise UserError(f"fields_ut {text!r}: expected numbers in uT separated by commas") \
            from None
    if not values or not all(math.isfinite(b) and b > 0 for b in values):
        raise UserError(f"fields_ut {text!r}: expected one or more fields > 0 uT")
    return values


def batch_mean(values: np.ndarray, batches: int = 10, what: str = "a lock"
               ) -> tuple[float, float]:
    """Mean and its standard error by batch means (the lock correlates neighbouring frames)."""
    n = len(values)
    if n < 2 * batches:
        raise UserError(f"{what} kept only {n} locked frames after settling: lock longer "
                        "(lock_s) or settle less (settle_s)")
    size = n // batches
    means = values[: size * batches].reshape(batches, size).mean(axis=1)
    return float(values.mean()), float(means.std(ddof=1) / math.sqrt(batches))


@register
class AlphaZProcedure(IonclockProcedure):
    """Interleaved locks at fields B and B0 -> delta_z rows (module docstring)."""

    NAME = analysis.NAME
    ANALYSIS = analysis
    ROLES = ()   # the lock opens its own instruments (ClockRun), block by block
    VERSION = "1"
    DATA_COLUMNS = analysis_columns(analysis)

    fields_ut = Parameter("Fields B (uT, comma separated)", default="10, 25, 44")
    lock_s = FloatParameter("Lock at each B", units="s", default=3600.0, minimum=60.0)
    settle_s = FloatParameter("Settling after the field is up", units="s", default=90.0,
                              minimum=0.0)
    repeats = IntegerParameter("Blocks per field", default=1, minimum=1)

    def measure(self):
        cfg0 = self.cfg
        b0 = cfg0["clock"]["b_nominal_t"]
        coils = cfg0["instruments"]["coils"]
        t_per_a = b0 / coils["current_a"]
        fields = parse_fields(self.fields_ut)
        too_high = [b for b in fields if b / t_per_a > coils["current_limit_a"]]
        if too_high:
            limit = coils["current_limit_a"]
            raise UserError(f"fields_ut: {too_high[0] * 1e6:g} uT needs "
                            f"{too_high[0] / t_per_a:.3f} A, above the coils' current limit "
                            f"{limit} A ({limit * t_per_a * 1e6:.1f} uT)")
        blocks = [b for b in fields for _ in range(self.repeats)]
        self._steering: tuple[float, float, float] | None = None
        total = 2 * self.lock_s * len(blocks)
        done = 0.0
        with tempfile.TemporaryDirectory(prefix="ionclock-alpha-z-") as work:
            for k, b in enumerate(blocks):
                locks = []
                for j, (field, dur) in enumerate(((b0, self.lock_s / 2), (b, self.lock_s),
                                                  (b0, self.lock_s / 2))):
                    locks.append(self._lock(cfg0, field, field / t_per_a, dur,
                                            Path(work) / f"block{k}-{j}"))
                    done += dur
                    self.progress(done / total)
                (nu_a, s_a, b_a), (nu_b, s_b, b_b), (nu_c, s_c, b_c) = locks
                yield {"b_t": b_b, "b0_t": 0.5 * (b_a + b_c),
                       "delta_hz": nu_b - 0.5 * (nu_a + nu_c),
                       "delta_unc_hz": math.sqrt(s_b ** 2 + 0.25 * (s_a ** 2 + s_c ** 2))}
                if self.should_stop():
                    return

    def _lock(self, cfg0: dict, b_t: float, current_a: float, duration_s: float,
              out: Path) -> tuple[float, float, float]:
        """One lock at `b_t`: (mean nu_abs, its standard error, mean B) over its settled frames."""
        cfg = copy.deepcopy(cfg0)
        cfg["clock"]["b_nominal_t"] = b_t
        cfg["instruments"]["coils"]["current_a"] = current_a
        cfg["budget"]["enabled"] = False   # the lock's frequency, not the corrected output
        if self._steering is not None:
            # the laser's steering where the last lock left it, carried on at its drift: a
            # lock started from 0 Hz hours later would search far beyond its fringe range
            t, nu, drift = self._steering
            cfg["servo"]["nu_initial_hz"] = nu + drift * (self.apparatus.now - t)
        world = self.apparatus.world
        run = (ClockRun(cfg, out, world=world) if world is not None
               else ClockRun(cfg, out, realtime=True))
        run.run(duration_s, progress=False)
        db = sqlite3.connect(f"file:{out / cfg['run']['store']}?mode=ro", uri=True)
        try:
            ready = db.execute("SELECT t FROM events WHERE kind = 'field_ready' "
                               "ORDER BY t LIMIT 1").fetchone()
            if ready is None:
                raise UserError(f"the field never came up to {b_t * 1e6:g} uT")
            last = db.execute("SELECT t, nu_hz, drift_hz_s FROM lock_frames WHERE locked = 1 "
                              "ORDER BY t DESC LIMIT 1").fetchone()
            if last is not None:
                self._steering = tuple(float(x) for x in last)
            rows = db.execute("SELECT nu_abs_hz, b_t FROM lock_frames WHERE locked = 1 AND "
                              "holdover = 0 AND t >= ? ORDER BY t",
                              (ready[0] + self.settle_s,)).fetchall()
        finally:
            db.close()
        if not rows:   # the servo did not lock (still acquiring, held) within the lock's time
            raise UserError(f"the lock at {b_t * 1e6:g} uT had no locked frame in its "
                            f"{duration_s - self.settle_s:g} s after settling: lengthen "
                            "lock_s, or see the run's events")
        # frames without a reading of the reference (a counter gate that missed them) are
        # left out; none at all is an apparatus without a reference
        rows = [r for r in rows if r[0] is not None]
        if not rows:
            raise UserError("the lock's frames carry no absolute frequency: alpha_z needs a "
                            "frequency reference (comb) read during the lock")
        nu = np.array([r[0] for r in rows], dtype=float)
        mean, sem = batch_mean(
            nu, what=f"the lock at {b_t * 1e6:g} uT (t = {run.t_start:g} s)")
        self.apparatus.event("lock", self.NAME, b_t=b_t, frames=len(rows), nu_abs_hz=mean,
                             sem_hz=sem)
        return mean, sem, float(np.mean([r[1] for r in rows]))

    BUDGET_ROWS = ("qz_dc", "qz_ac")

    def budget_values(self, result) -> dict:
        """alpha_z and, as the seed states it, the 95 % interval's half-width (Hz/mT^2)."""
        e = result["alpha_z"]
        return {"zeeman": {"alpha_z_hz_per_mt2": e.value * 1e-6,
                           "alpha_z_unc_hz_per_mt2": e.half_width * 1e-6}}

    def summary(self, result) -> str:
        e = result["alpha_z"]
        return f"alpha_z = {e.value * 1e-6:.4g} +/- {e.half_width * 1e-6:.2g} Hz/mT^2 (95 %)"

    def truth(self) -> dict | None:
        """The twin's alpha_z (Hz/T^2), the value the world applies at every field."""
        if self.apparatus.world is None:
            return None
        return {"alpha_z": self.apparatus.characterisation().comparison.truth()["alpha_z"]}
