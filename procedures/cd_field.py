"""Field calibration of the Cd+ standard from the m = +-1 Zeeman lines (DOMAIN §4, seed 004).

The clock's SOZS correction K0 B^2 needs B; the m_F = +-1 lines of the ground HFS move in
first order, nu(+-1) = nu0 + (1/2) K0 B^2 +- (g_J + g_I) muB B / (2h) (exact Breit-Rabi,
`ionclock.physics.cadmium.zeeman_pm1_lines_hz`), so their splitting gives B free of the
reference oscillator's error, which both lines share.

A pymeasure `Procedure`: the Ramsey fringe of each line is scanned over `span_fringes`
fringes (1/T each) around the line predicted from the config's nominal field, in `steps`
steps, the two lines' points interleaved (+1, -1, +1, ...) so that a field drift during the
scan enters both centres alike; each point is one clock cycle of the apparatus (the pulse
generator's pattern with Ramsey time T from the config's ``[servo]``; a calibration uses a
short T, 20 ms by default in `CdFieldCalibration.ramsey_time_s`, so that its fringe, 50 Hz
on each line, holds a nominal field off by up to ~0.9 nT, where the clock's 0.5 s fringe
holds 36 pT). Each row: line (+1 / -1), setpoint_hz, counts, time_s.

`fit_line` fits n = bg + A C P(f - f_c), P the exact square-pulse Ramsey pattern
(`cadmium.ramsey_probability`; `scipy.optimize.curve_fit`, least squares with Poisson weights
sqrt(n)) and returns f_c with its 1-sigma; `field_from_rows`
gives B = (f_c(+1) - f_c(-1)) / (2 z) and its 1-sigma, z = (g_J + g_I) muB / 2h
(`cadmium.zeeman_pm1_hz_per_t`, the seed's or the physical g_I). The fringe nearest the
prediction is taken: a nominal field off by more than a quarter fringe per line would be
taken a fringe off; the procedure says so when the fitted centre sits more than a quarter
fringe from the prediction (`field_off_fringe` in the result).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymeasure.experiment import FloatParameter, IntegerParameter, Parameter, Procedure

from ionclock.apparatus import registry
from ionclock.apparatus.cd_run import isotope_of, load_cd_config, twin_params
from ionclock.errors import UserError
from ionclock.physics import cadmium

COLUMNS = ["line", "setpoint_hz", "counts", "time_s"]


class CdApparatus:
    """The Cd+ standard's synthesiser and counter, on one SimPy environment (twin only).

    The pulse generator runs its cycle free at ``[servo] cycle_time_s`` with the config's
    timing (`ionclock.apparatus.cd_run.twin_params`); `probe` sets the synthesiser before a
    cycle's first pulse and returns that cycle's counts.
    """

    def __init__(self, cfg: dict, seed: int | None = None):
        inst = cfg["instruments"]
        if not all(e["resource"].startswith("sim://") for e in inst.values()):
            raise UserError("the field calibration runs on the twin only for now (sim://)")
        import simpy

        self.cfg = cfg
        self.env = simpy.Environment()
        seed = cfg["twin"]["seed"] if seed is None else int(seed)
        self.world = registry.make_cd_world(self.env, twin_params(cfg), seed)
        self.synth = registry.open_instrument(
            "microwave_8257d", inst["microwave"]["resource"], world=self.world,
            key="instruments.microwave",
            max_frequency_hz=inst["microwave"]["max_frequency_hz"],
            max_power_dbm=inst["microwave"]["max_power_dbm"])
        self.counter = registry.open_instrument("sr400", inst["counter"]["resource"],
                                                world=self.world, key="instruments.counter")
        s = cfg["servo"]
        self.synth.power_dbm = s["power_dbm"]
        self.synth.output_enabled = True
        self.counter.configure_gated(s["detection_s"])
        self.counter.arm()
        self.cycle_s = s["cycle_time_s"]
        self.read_s = (s["prepare_s"] + 2 * s["pi2_time_s"] + s["ramsey_time_s"]
                       + self.counter.trigger_offsets()[-1] + 1e-4)
        self._next = 0

    @property
    def now(self) -> float:
        """The apparatus' clock (s)."""
        return float(self.env.now)

    def probe(self, frequency_hz: float) -> int:
        """One cycle at `frequency_hz`: set it before the cycle starts, return its counts."""
        k = max(self._next, math.ceil(self.env.now / self.cycle_s - 1e-9))
        if k * self.cycle_s > self.env.now:
            self.env.run(until=k * self.cycle_s)
        self.synth.frequency = frequency_hz
        self.env.run(until=k * self.cycle_s + self.read_s)
        self._next = k + 1
        return int(self.counter.count())

    def close(self) -> None:
        """Release the instruments (the synthesiser keeps its setting)."""
        for inst in (self.synth, self.counter):
            inst.close()


class CdFieldCalibration(Procedure):
    """Scan the m = +-1 Ramsey fringes; rows for `field_from_rows` (module docstring)."""

    NAME = "cd-field"
    DATA_COLUMNS = COLUMNS

    config = Parameter("Cd+ clock config", default="configs/cd113.toml")
    seed = IntegerParameter("Twin seed (-1 for the config's)", default=-1, minimum=-1)
    ramsey_time_s = FloatParameter("Ramsey time of the calibration", units="s",
                                   default=0.020, minimum=1e-3, maximum=1.0)
    steps = IntegerParameter("Points per line", default=21, minimum=5, maximum=1001)
    span_fringes = FloatParameter("Scan span per line (fringes)", default=1.5, minimum=0.5,
                                  maximum=10.0)

    def startup(self) -> None:
        """Load the config with the calibration's Ramsey time and open the apparatus."""
        self.cfg = load_cd_config(self.config, overrides={
            "servo": {"ramsey_time_s": float(self.ramsey_time_s)}})
        self.isotope = isotope_of(self.cfg)
        self.apparatus = CdApparatus(self.cfg, None if self.seed < 0 else self.seed)
        self.rows: list[dict] = []

    def plan(self) -> list[tuple[int, float]]:
        """(line, setpoint Hz) in the order probed: the two lines interleaved."""
        b0 = self.cfg["clock"]["b_nominal_t"]
        conv = self.cfg["servo"]["g_i_convention"]
        lines = cadmium.zeeman_pm1_lines_hz(self.isotope, b0, convention=conv)
        half = 0.5 * self.span_fringes / self.ramsey_time_s
        offsets = np.linspace(-half, half, int(self.steps))
        return [(m, lines[m + 1] + d) for d in offsets for m in (1, -1)]

    def execute(self) -> None:
        """Probe each point of the plan, emitting its row."""
        plan = self.plan()
        for i, (line, f) in enumerate(plan):
            counts = self.apparatus.probe(f)
            row = {"line": line, "setpoint_hz": f, "counts": counts,
                   "time_s": self.apparatus.now}
            self.rows.append(row)
            self.emit("results", row)
            self.emit("progress", 100.0 * (i + 1) / len(plan))
            if self.should_stop():
                break

    def shutdown(self) -> None:
        """Release the instruments."""
        apparatus = getattr(self, "apparatus", None)
        if apparatus is not None:
            apparatus.close()

    def result(self) -> FieldResult:
        """B from the rows taken (`field_from_rows`)."""
        return field_from_rows(self.rows, self.ramsey_time_s, self.isotope,
                               self.cfg["clock"]["b_nominal_t"],
                               self.cfg["servo"]["g_i_convention"],
                               self.cfg["servo"]["pi2_time_s"])

    def truth(self) -> float:
        """The twin's true field (T) at the scan's mean time (its drift is linear)."""
        t = [r["time_s"] for r in self.rows]
        return self.apparatus.world.b_true(0.5 * (min(t) + max(t)))


@dataclass(frozen=True)
class FieldResult:
    """The calibration: B (T), its 1-sigma, the two line centres (Hz) and their 1-sigma."""

    b_t: float
    b_unc_t: float
    centre_plus_hz: float
    centre_minus_hz: float
    unc_plus_hz: float
    unc_minus_hz: float
    field_off_fringe: bool     # a centre sits more than a quarter fringe from its prediction

    def text(self) -> str:
        """B in a few words."""
        return (f"B = {self.b_t * 1e6:.6f} uT +/- {self.b_unc_t * 1e12:.2f} pT"
                + ("  (WARNING: a line sits > 1/4 fringe from its prediction: the nominal "
                   "field may be a fringe off)" if self.field_off_fringe else ""))


def fit_line(setpoint_hz: Any, counts: Any, ramsey_time_s: float, guess_hz: float,
             pi2_time_s: float) -> tuple[float, float]:
    """Centre (Hz) and its 1-sigma of one Ramsey fringe scan (module docstring).

    The model is the exact square-pulse Ramsey pattern (`cadmium.ramsey_probability`): with
    pi/2 pulses of `pi2_time_s` the fringes repeat every 1/(T + 4 tau/pi), and the pulses'
    envelope is not flat over a scan; a bare cos(2 pi x T) would pull the centre towards
    the middle of the scan.
    """
    from scipy.optimize import curve_fit

    f = np.asarray(setpoint_hz, dtype=float)
    n = np.asarray(counts, dtype=float)
    if f.shape != n.shape or f.size < 5:
        raise UserError("a line needs at least 5 points (setpoint, counts)")
    x = f - guess_hz

    rabi = math.pi / (2.0 * pi2_time_s)

    def model(x, centre, bg, amp):
        return bg + amp * cadmium.ramsey_probability(x - centre, ramsey_time_s, rabi,
                                                     pi2_time_s)

    # start at the brightest point: the fringe nearest it, then the fit settles the centre
    p0 = [x[np.argmax(n)], max(n.min(), 0.0), max(n.max() - n.min(), 1.0)]
    sigma = np.sqrt(np.maximum(n, 1.0))
    try:
        popt, pcov = curve_fit(model, x, n, p0=p0, sigma=sigma, absolute_sigma=True,
                               maxfev=10000)
    except RuntimeError as err:
        raise UserError(f"the fringe fit did not converge: {err}") from None
    return guess_hz + float(popt[0]), float(math.sqrt(pcov[0, 0]))


def field_from_rows(rows: list[dict], ramsey_time_s: float, isotope: int, b_nominal_t: float,
                    convention: str = "seed", pi2_time_s: float = 0.010) -> FieldResult:
    """B and its 1-sigma from the rows of both lines (module docstring)."""
    lines = cadmium.zeeman_pm1_lines_hz(isotope, b_nominal_t, convention=convention)
    out = {}
    for m in (1, -1):
        sel = [r for r in rows if int(r["line"]) == m]
        out[m] = fit_line([r["setpoint_hz"] for r in sel], [r["counts"] for r in sel],
                          ramsey_time_s, lines[m + 1], pi2_time_s)
    split = out[1][0] - out[-1][0]
    b, b_unc = cadmium.field_from_splitting(isotope, split, math.hypot(out[1][1], out[-1][1]),
                                            convention)
    quarter = 0.25 / ramsey_time_s
    off = any(abs(out[m][0] - lines[m + 1]) > quarter for m in (1, -1))
    return FieldResult(b, b_unc, out[1][0], out[-1][0], out[1][1], out[-1][1], off)
