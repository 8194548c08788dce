"""What every characterisation analysis shares: the result, the fit, the CSV reader, the figure.

An analysis is a pure function: arrays in, an `AnalysisResult` out (estimates with a 95 %
confidence interval each, the data and the fitted model for the plot). Acquisition lives
elsewhere (the procedures), so old lab data can be re-analysed (issue 15).

Confidence intervals (decision 0800):

- uncertainties of the data given and taken as known (``absolute_sigma``): the parameter
  covariance is (J' W J)^-1 and the interval is +/- z sigma with the normal quantile z;
- weights unknown, or given only up to a common scale: the covariance is scaled by the
  reduced chi^2 and the interval uses Student's t with n - p degrees of freedom (scipy);
- derived quantities (an inversion, a budget row): linear propagation of the inputs'
  standard uncertainties, and the normal quantile.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, stats

from ionclock.errors import UserError

LEVEL = 0.95


class DataError(UserError, ValueError):
    """Data an analysis cannot use (bad arrays, a file without the columns, a failed fit).

    A `ValueError` for code that calls the pure functions, a `UserError` for the CLI (one
    line, exit status 2).
    """


def quantile(level: float = LEVEL, dof: int | None = None) -> float:
    """Two-sided quantile: Student's t with `dof` degrees of freedom, or normal if None."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level {level!r} must lie in (0, 1)")
    p = 0.5 * (1.0 + level)
    if dof is None:
        return float(stats.norm.ppf(p))
    if dof < 1:
        raise DataError("too few points for an interval from the scatter: need more points "
                        "than fitted parameters, or give the points' uncertainties")
    return float(stats.t.ppf(p, dof))


@dataclass(frozen=True)
class Estimate:
    """One estimated quantity (SI `unit`) with its standard uncertainty and interval.

    `display` = (scale, unit) shows the value in a lab unit (e.g. (1e-6, "Hz/mT^2")).
    """

    name: str
    value: float
    sigma: float
    low: float
    high: float
    unit: str = ""
    display: tuple[float, str] | None = None

    @property
    def half_width(self) -> float:
        """Half the interval's width (SI)."""
        return 0.5 * (self.high - self.low)

    def contains(self, x: float) -> bool:
        """True if `x` lies in the interval."""
        return self.low <= x <= self.high

    def text(self, digits: int = 5) -> str:
        """``name = value unit [low, high]`` in the display unit."""
        scale, unit = self.display or (1.0, self.unit)
        v, lo, hi = (self.value / scale, self.low / scale, self.high / scale)
        u = f" {unit}" if unit else ""
        return f"{self.name} = {v:.{digits}g}{u} [{lo:.{digits}g}, {hi:.{digits}g}]"


def estimate(name: str, value: float, sigma: float, q: float, unit: str = "",
             display: tuple[float, str] | None = None) -> Estimate:
    """An estimate with the symmetric interval value +/- q sigma."""
    value, sigma = float(value), float(sigma)
    return Estimate(name, value, sigma, value - q * sigma, value + q * sigma, unit, display)


@dataclass(frozen=True)
class AnalysisResult:
    """The outcome of one analysis: estimates (the first is the headline), data, model.

    `interval` says what the intervals are (``"95 % CI, t(8)"``, ``"envelope bound"``);
    `convention` names the model convention used (decision 0800); `data` holds the arrays
    and `details` everything else the plot or a later budget needs.
    """

    analysis: str
    estimates: tuple[Estimate, ...]
    interval: str
    convention: str = ""
    n_points: int = 0
    data: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float:
        """The headline estimate's value (SI)."""
        return self.estimates[0].value

    @property
    def low(self) -> float:
        """Lower end of the headline estimate's interval (SI)."""
        return self.estimates[0].low

    @property
    def high(self) -> float:
        """Upper end of the headline estimate's interval (SI)."""
        return self.estimates[0].high

    def __getitem__(self, name: str) -> Estimate:
        for e in self.estimates:
            if e.name == name:
                return e
        raise KeyError(name)

    def line(self) -> str:
        """One line: every estimate with its interval, what the interval is, the points."""
        parts = "; ".join(e.text() for e in self.estimates)
        conv = f", {self.convention}" if self.convention else ""
        return f"{self.analysis}: {parts} ({self.interval}{conv}, {self.n_points} points)"


# --- fitting ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    """Least-squares parameters, their covariance and the interval's quantile."""

    params: np.ndarray
    cov: np.ndarray
    dof: int
    chi2: float
    q: float
    absolute_sigma: bool

    def sigma(self, i: int) -> float:
        """Standard uncertainty of parameter i."""
        return float(math.sqrt(max(self.cov[i, i], 0.0)))

    @property
    def interval(self) -> str:
        """What the intervals are, for the result line."""
        how = "normal, data uncertainties known" if self.absolute_sigma else f"t({self.dof})"
        return f"95 % CI, {how}"

    @property
    def reduced_chi2(self) -> float:
        """chi^2 per degree of freedom (nan without degrees of freedom)."""
        return self.chi2 / self.dof if self.dof > 0 else math.nan


def finite_array(name: str, values: Any, n: int | None = None) -> np.ndarray:
    """A 1-D float array of finite values (`DataError` naming `name` otherwise)."""
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{name}: expected numbers") from None
    a = np.atleast_1d(a)
    if a.ndim != 1:
        raise DataError(f"{name}: expected a 1-D sequence, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise DataError(f"{name}: expected {n} values, got {len(a)}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name}: values must be finite (drop missing points)")
    return a


def least_squares(model: Callable[..., np.ndarray], x: Any, y: np.ndarray, p0: Sequence[float],
                  sigma: np.ndarray | None = None, *, weights_known: bool = True,
                  bounds: tuple = (-np.inf, np.inf), level: float = LEVEL, **solver: Any) -> Fit:
    """Fit `model(x, *p)` to y by (weighted) least squares with scipy's curve_fit.

    `sigma` given and `weights_known`: covariance unscaled, normal quantile. Otherwise the
    covariance is scaled by the reduced chi^2 and the quantile is Student's t(n - p).
    A fit that fails to converge is a `DataError`. `solver` goes to scipy's least_squares
    (e.g. ``x_scale="jac"``).
    """
    n, p = len(y), len(p0)
    absolute = sigma is not None and weights_known
    if n < p or (not absolute and n <= p):
        raise DataError(f"{n} points are too few to fit {p} parameters"
                        + ("" if absolute else " with an interval from the scatter"))
    if sigma is not None and not np.all(sigma > 0):
        raise DataError("uncertainties must be positive")
    try:
        params, cov = optimize.curve_fit(model, x, y, p0=p0, sigma=sigma, absolute_sigma=absolute,
                                         bounds=bounds, **{"maxfev": 20000, **solver})
    except (RuntimeError, optimize.OptimizeWarning, ValueError) as err:
        raise DataError(f"the fit did not converge: {err}") from None
    if not np.all(np.isfinite(cov)):
        raise DataError("the fit's covariance is undetermined (parameters not constrained by "
                        "the data)")
    resid = (y - model(x, *params)) / (sigma if sigma is not None else 1.0)
    chi2 = float(np.sum(resid ** 2))
    dof = n - p
    q = quantile(level, None if absolute else dof)
    return Fit(np.asarray(params, dtype=float), np.asarray(cov, dtype=float), dof, chi2, q,
               absolute)


def line_model(x: np.ndarray, slope: float, intercept: float = 0.0) -> np.ndarray:
    """Straight line slope * x + intercept."""
    return slope * x + intercept


def linear_fit(x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None = None, *,
               intercept: bool = True, weights_known: bool = True,
               level: float = LEVEL) -> Fit:
    """Weighted straight-line fit (slope[, intercept]); see `least_squares` for the interval."""
    if intercept:
        w = None if sigma is None else 1.0 / sigma
        slope0, icpt0 = np.polyfit(x, y, 1, w=w) if len(x) > 1 else (0.0, float(y[0]))
        return least_squares(line_model, x, y, (slope0, icpt0), sigma,
                             weights_known=weights_known, level=level)
    denom = float(np.dot(x, x)) or 1.0
    return least_squares(lambda xx, s: s * xx, x, y, (float(np.dot(x, y)) / denom,), sigma,
                         weights_known=weights_known, level=level)


def mean_band(x: np.ndarray, fit: Fit, intercept: bool = True) -> np.ndarray:
    """Half-width of the interval of a fitted straight line's value at x (for the plot)."""
    if intercept:
        jac = np.column_stack([x, np.ones_like(x)])
    else:
        jac = x[:, None]
    var = np.einsum("ij,jk,ik->i", jac, fit.cov, jac)
    return fit.q * np.sqrt(np.maximum(var, 0.0))


# --- CSV --------------------------------------------------------------------------------------
def read_csv(path: str | Path, required: Sequence[str], optional: Sequence[str] = (),
             text: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Columns of a CSV file with a header row: floats, or strings for those named in `text`.

    Lines starting with '#' are comments. A missing file, a missing required column, a
    number that does not parse or an empty table is a `DataError` with one line that names
    the file (and the line and column where it applies). Optional columns that are absent
    are left out; an optional column with an empty cell in every row counts as absent.
    """
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(line for line in fh if not line.lstrip().startswith("#"))
                    if any(c.strip() for c in r)]
    except OSError as err:
        raise DataError(f"cannot read {str(p)!r}: {err.strerror or err}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{str(p)!r} is not a CSV text file: {err}") from None
    if not rows:
        raise DataError(f"{str(p)!r} is empty: expected a header row with "
                        f"{', '.join(required)}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        wanted = ", ".join(required) + "".join(f"[, {c}]" for c in optional)
        raise DataError(f"{str(p)!r}: missing column(s) {', '.join(missing)} (this analysis "
                        f"reads {wanted}; found {', '.join(header) or 'none'})")
    body = rows[1:]
    if not body:
        raise DataError(f"{str(p)!r} has a header but no data rows")
    out: dict[str, np.ndarray] = {}
    for name in [*required, *optional]:
        if name not in header:
            continue
        j = header.index(name)
        cells = [(r[j].strip() if j < len(r) else "") for r in body]
        if name in optional and not any(cells):
            continue
        if name in text:
            out[name] = np.array(cells, dtype=object)
            continue
        values = []
        for i, c in enumerate(cells):
            try:
                values.append(float(c))
            except ValueError:
                raise DataError(f"{str(p)!r}, data row {i + 1}: column {name}: {c!r} is not "
                                "a number") from None
            if not math.isfinite(values[-1]):
                raise DataError(f"{str(p)!r}, data row {i + 1}: column {name}: {c!r} is not "
                                "a finite number")
        out[name] = np.array(values, dtype=float)
    return out


def constant(name: str, values: np.ndarray) -> float:
    """The one value a per-file column holds on every row (`DataError` if it varies)."""
    if not np.all(values == values[0]):
        raise DataError(f"column {name} must hold the same value on every row")
    return float(values[0])


# --- figures ----------------------------------------------------------------------------------
def new_figure(rows: int = 1, cols: int = 1, height_ratios: Sequence[float] | None = None,
               size: tuple[float, float] = (6.4, 4.8)):
    """A matplotlib Figure on the Agg canvas (no pyplot state) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    kw = {"height_ratios": height_ratios} if height_ratios else {}
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=kw or None)
    return fig, axes


def save_figure(fig, path: str | Path) -> Path:
    """Write the figure (format from the suffix) and return its path."""
    out = Path(path)
    try:
        fig.savefig(out, dpi=110)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot write the plot {str(out)!r}: {err}") from None
    return out
