"""The systematic-shift budget: rows, correlated total, corrected frequency, renderings.

`Budget` combines `ShiftResult` rows: shifts add; the uncertainty of the total is
sqrt(1' C 1) with C the rows' covariance: the diagonal is each row's uncertainty squared, an
off-diagonal term is the sum over the input keys two rows share of the product of their
signed components (e.g. the DC and AC quadratic Zeeman rows share ``alpha_z``; BBR and
micromotion share ``delta_alpha0``), clipped to |rho| <= 1.

Inputs come from a clock configuration (`load_config`, schema `SCHEMA`; example
configs/seed_clock.toml) either at their nominal values (`nominal_inputs`) or live from a
store window (`ionclock.storage.budget_inputs.budget_from_store`: the store is read there, this
module takes numbers), whose channel names the configuration lists:

- ``[bbr] channels``: temperature channels in ``samples`` (default names ``temp.ln2_bottom``,
  ``temp.endcap``, ``temp.trap_holder``, ``temp.bbr_cavity``, ``temp.replica_trap``), in K;
  ``rf_state_channel`` (``rf.enabled``, 1/0) tells whether the window saw RF off.
- the DC field: ``lock_frames.b_t`` (T) of the window's frames (locked, not in holdover).
- ``[micromotion] channels``: ``mm.r1``, ``mm.r2``, ``mm.r3``: sideband/carrier ratios.
- ``[background_gas] channel``: ``pressure.outside`` in Pa.
- ``[zeeman] b2_ac_channel``: optional ``field.b2_ac`` (T^2).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ionclock.config import Field, Table, check_kind, load_toml, validate
from ionclock.errors import ConfigError, UserError
from ionclock.physics import shifts
from ionclock.physics.constants import (
    ALPHA_Z_HZ_PER_T2,
    ALPHA_Z_UNC_HZ_PER_T2,
    NU0_CA,
    RF_MAGIC_HZ,
    RF_MAGIC_UNC_HZ,
)
from ionclock.physics.shifts import SensorTrace, ShiftResult


class BudgetInvalidError(UserError):
    """The budget has invalid rows; a corrected frequency from it would be wrong."""


#: What each name in a provenance's ``nominal_inputs`` stands for.
NOMINAL_INPUT_NAMES = {"field": "DC field B (no lock frames in the store)",
                       "micromotion": "micromotion ratios R_i",
                       "background_gas": "background-gas pressure",
                       "qz_ac": "AC field <B^2>"}

DEFAULT_TEMPERATURE_CHANNELS = ("temp.ln2_bottom", "temp.endcap", "temp.trap_holder",
                                "temp.bbr_cavity", "temp.replica_trap")

# --- configuration schema ---------------------------------------------------------------------
SCHEMA: dict = {
    "clock": {
        "species": Field(str, "40Ca+", doc="ion species label"),
        "nu0_hz": Field(float, NU0_CA, min=1e6, doc="clock transition frequency, Hz"),
        "rf_hz": Field(float, RF_MAGIC_HZ, min=1e5, max=1e9, doc="trap drive frequency, Hz"),
        "unit": Field(float, 1e-19, min=1e-25, max=1e-6, doc="display unit of fractions"),
    },
    "bbr": {
        "coefficient_300k_hz": Field(float, shifts.BBR_COEFF_300K_SEED_HZ, min=0.0, max=10.0),
        "coefficient_rel_unc": Field(float, 0.0, min=0.0, max=1.0),
        "calibration_k": Field(float, 0.1, min=0.0, max=10.0),
        "convention": Field(str, "seed_step", choices=tuple(shifts.BBR_CONVENTIONS)),
        "valid_min_k": Field(float, 70.0, min=0.0),
        "valid_max_k": Field(float, 90.0, min=0.0),
        "channels": Field(list, DEFAULT_TEMPERATURE_CHANNELS),
        "replica_channel": Field(str, "temp.replica_trap"),
        "rf_step_k": Field(float, 0.4, min=0.0, max=10.0),
        "rf_state_channel": Field(str, "rf.enabled"),
        "rf_off_min_s": Field(float, 1800.0, min=0.0, max=86400.0,
                              doc="RF off this long without a break, s, before the sensors "
                                  "count as having seen the trap cold (a trip of seconds "
                                  "does not cool it: the RF-off step is still added)"),
        "nominal": Table({"low_k": Field(float, min=0.0), "high_k": Field(float, min=0.0)},
                         doc="nominal sensor ranges, K"),
    },
    "secular": {
        "frequencies_hz": Field(list, shifts.SECULAR_FREQS_HZ),
        "n0_low": Field(list, tuple(r[0] for r in shifts.N0_RANGES)),
        "n0_high": Field(list, tuple(r[1] for r in shifts.N0_RANGES)),
        "heating_rate": Field(list, tuple(r[0] for r in shifts.HEATING_RATES)),
        "heating_rate_unc": Field(list, tuple(r[1] for r in shifts.HEATING_RATES)),
        "mean_delay_s": Field(float, shifts.MEAN_PROBE_DELAY_S, min=0.0, max=1.0),
        "convention": Field(str, "seed_linear", choices=tuple(shifts.SECULAR_CONVENTIONS)),
        "max_nbar": Field(float, 5.0, min=0.0),
    },
    "zeeman": {
        "alpha_z_hz_per_mt2": Field(float, ALPHA_Z_HZ_PER_T2 * 1e-6, min=0.0),
        "alpha_z_unc_hz_per_mt2": Field(float, ALPHA_Z_UNC_HZ_PER_T2 * 1e-6, min=0.0),
        "convention": Field(str, "seed_linear", choices=tuple(shifts.QZ_CONVENTIONS)),
        "b_nominal_t": Field(float, 37.197e-6, min=0.0, max=1.0),
        "b_unc_t": Field(float, 1e-9, min=0.0, max=1.0),
        "valid_min_t": Field(float, 1e-6, min=0.0),
        "valid_max_t": Field(float, 200e-6, min=0.0),
        "b2_ac_t2": Field(float, 1e-13, min=0.0),
        "b2_ac_unc_t2": Field(float, 1e-13, min=0.0),
        "ac_convention": Field(str, "seed_bound", choices=tuple(shifts.BOUND_CONVENTIONS)),
        "b2_ac_channel": Field(str, ""),
    },
    "micromotion": {
        "nominal_ratios": Field(list, (0.0, 0.0, 0.0)),
        "ratio_unc": Field(list, (0.0, 0.0, 0.0)),
        "rf_magic_hz": Field(float, RF_MAGIC_HZ, min=1e5),
        "rf_magic_unc_hz": Field(float, RF_MAGIC_UNC_HZ, min=0.0),
        "delta_alpha0_rel_unc": Field(float, shifts.DELTA_ALPHA0_REL_UNC, min=0.0, max=1.0),
        "max_ratio": Field(float, 0.3, min=0.0),
        "channels": Field(list, ("mm.r1", "mm.r2", "mm.r3")),
    },
    "background_gas": {
        "pressure_pa": Field(float, shifts.BG_REF_PRESSURE_PA, min=0.0),
        "he_shift_hz": Field(float, shifts.BG_HE_SHIFT_HZ, min=0.0),
        "reference_pressure_pa": Field(float, shifts.BG_REF_PRESSURE_PA, min=1e-15),
        "gas_temperature_k": Field(float, shifts.BG_REF_TEMPERATURE_K, min=0.0),
        "max_pressure_pa": Field(float, 1e-6, min=0.0),
        "channel": Field(str, "pressure.outside"),
    },
    "residuals": Table({"label": Field(str), "bound_fractional": Field(float, min=0.0, max=1e-6),
                        "source": Field(str, "")}, doc="rows known only as bounds"),
    "store": {
        "max_age_s": Field(float, 3 * 86400.0, min=0.0,
                           doc="oldest sporadic measurement (R_i, pressure) still used, s"),
    },
}


def _float_list(cfg: dict, section: str, key: str, n: int | None = None) -> list[float]:
    values = cfg[section][key]
    name = f"{section}.{key}"
    if n is not None and len(values) != n:
        raise ConfigError(name, f"expected {n} numbers, got {len(values)}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(name, f"expected finite numbers, got {v!r}")
        out.append(float(v))
    return out


def _str_list(cfg: dict, section: str, key: str) -> list[str]:
    values = cfg[section][key]
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{section}.{key}", "expected a list of channel names")
    return list(values)


def load_config(path_or_data: str | Path | dict) -> dict:
    """Read and validate a clock configuration (TOML path or dict); errors are `ConfigError`."""
    if isinstance(path_or_data, dict):
        data = path_or_data
    else:
        data = load_toml(path_or_data)
        check_kind(data, "budget", path_or_data)
    cfg = validate(data, SCHEMA)
    for key in ("frequencies_hz", "n0_low", "n0_high", "heating_rate", "heating_rate_unc"):
        _float_list(cfg, "secular", key, 3)
    for key in ("nominal_ratios", "ratio_unc"):
        _float_list(cfg, "micromotion", key, 3)
    _str_list(cfg, "bbr", "channels")
    if len(_str_list(cfg, "micromotion", "channels")) != 3:
        raise ConfigError("micromotion.channels", "expected 3 channel names (one per beam)")
    for name, s in cfg["bbr"]["nominal"].items():
        if s["high_k"] < s["low_k"]:
            raise ConfigError(f"bbr.nominal.{name}", "high_k is below low_k")
    return cfg


# --- inputs -----------------------------------------------------------------------------------
#: A channel's measurement uncertainty, where the instrument or procedure gives one, is the
#: channel of the same name with this suffix (e.g. ``mm.r1.sigma``; decision 0502).
SIGMA_SUFFIX = ".sigma"


def ratio_estimate(readings: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """One beam's sideband/carrier ratio R and u(R) from its readings (value, sigma).

    R is the rms of the readings (the EMM shift is quadratic in R, seed Eq. 5); u(R) is
    their spread and their own sigma (rms, over sqrt n) in quadrature, so one reading keeps
    its measurement's sigma rather than none.
    """
    n = len(readings)
    r2 = sum(v * v for v, _ in readings) / n
    mean = sum(v for v, _ in readings) / n
    sigma2 = sum(s * s for _, s in readings) / n
    return math.sqrt(r2), math.sqrt(max(0.0, r2 - mean * mean) + sigma2 / n)


def longest_rf_off_s(states: Sequence[tuple[float, float]]) -> float:
    """The longest stretch (s) of RF-off readings without an RF-on reading between them.

    `states` are (t, value) samples of the RF state channel in time order (0 = off). A
    stretch runs from its first off reading to its last; a single reading counts 0 s.
    """
    longest, start, last = 0.0, None, None
    for t, value in states:
        if value == 0:
            if start is None:
                start = t
            last = t
            longest = max(longest, last - start)
        else:
            start = None
    return longest


# --- inputs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClockInputs:
    """Everything the 40Ca+ shift models need, nominal or live (SI), plus provenance."""

    cfg: dict
    traces: tuple[SensorTrace, ...]
    rf_off_seen: bool
    b_rms_t: float
    b_unc_t: float
    n_frames: int | None
    b2_ac_t2: float
    ratios: tuple[float, ...]
    ratio_uncs: tuple[float, ...]
    pressure_pa: float
    provenance: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)   # per-row reasons an input is missing


def nominal_inputs(cfg: dict, source: str = "") -> ClockInputs:
    """Build the inputs at a configuration's nominal values (e.g. seed Table II conditions)."""
    traces = tuple(SensorTrace(name, s["low_k"], s["high_k"], 1)
                   for name, s in cfg["bbr"]["nominal"].items())
    z = cfg["zeeman"]
    return ClockInputs(
        cfg=cfg, traces=traces, rf_off_seen=True, b_rms_t=z["b_nominal_t"],
        b_unc_t=z["b_unc_t"], n_frames=None, b2_ac_t2=z["b2_ac_t2"],
        ratios=tuple(_float_list(cfg, "micromotion", "nominal_ratios")),
        ratio_uncs=tuple(_float_list(cfg, "micromotion", "ratio_unc")),
        pressure_pa=cfg["background_gas"]["pressure_pa"],
        provenance={"source": "nominal", "config": source})


def rows_from_inputs(inp: ClockInputs) -> list[ShiftResult]:
    """Evaluate every shift model of the 40Ca+ budget, in the seed's Table II order."""
    cfg = inp.cfg
    nu0 = cfg["clock"]["nu0_hz"]
    b, sec, z, mm, bg = (cfg["bbr"], cfg["secular"], cfg["zeeman"], cfg["micromotion"],
                         cfg["background_gas"])
    required = [] if inp.provenance.get("source") == "nominal" else list(b["channels"])
    rows = [
        shifts.bbr(inp.traces, calibration_k=b["calibration_k"],
                   coefficient_300k_hz=b["coefficient_300k_hz"],
                   coefficient_rel_unc=b["coefficient_rel_unc"], required_channels=required,
                   replica_channel=b["replica_channel"] or None, rf_step_k=b["rf_step_k"],
                   rf_off_seen=inp.rf_off_seen,
                   valid_range_k=(b["valid_min_k"], b["valid_max_k"]),
                   convention=b["convention"], nu0_hz=nu0),
        shifts.micromotion(inp.ratios, inp.ratio_uncs, rf_hz=cfg["clock"]["rf_hz"],
                           rf_magic_hz=mm["rf_magic_hz"], rf_magic_unc_hz=mm["rf_magic_unc_hz"],
                           delta_alpha0_rel_unc=mm["delta_alpha0_rel_unc"],
                           max_ratio=mm["max_ratio"], nu0_hz=nu0),
        shifts.secular_motion(
            sec["frequencies_hz"], list(zip(sec["n0_low"], sec["n0_high"])),
            list(zip(sec["heating_rate"], sec["heating_rate_unc"])), sec["mean_delay_s"],
            convention=sec["convention"], max_nbar=sec["max_nbar"], nu0_hz=nu0),
        shifts.quadratic_zeeman_dc(
            inp.b_rms_t, inp.b_unc_t, alpha_z=z["alpha_z_hz_per_mt2"] * 1e6,
            alpha_z_unc=z["alpha_z_unc_hz_per_mt2"] * 1e6, convention=z["convention"],
            valid_range_t=(z["valid_min_t"], z["valid_max_t"]), n_frames=inp.n_frames,
            nu0_hz=nu0),
        shifts.quadratic_zeeman_ac(
            inp.b2_ac_t2, z["b2_ac_unc_t2"], alpha_z=z["alpha_z_hz_per_mt2"] * 1e6,
            alpha_z_unc=z["alpha_z_unc_hz_per_mt2"] * 1e6, convention=z["ac_convention"],
            nu0_hz=nu0),
        shifts.background_gas(inp.pressure_pa, gas_temperature_k=bg["gas_temperature_k"],
                              he_shift_hz=bg["he_shift_hz"],
                              ref_pressure_pa=bg["reference_pressure_pa"],
                              max_pressure_pa=bg["max_pressure_pa"], nu0_hz=nu0),
    ]
    rows += [shifts.bound_row(key, r["label"], r["bound_fractional"], r["source"], nu0)
             for key, r in cfg["residuals"].items()]
    # A live input that could not be gathered overrides the model's verdict with its reason.
    return [shifts.invalid(r.key, r.label, inp.notes[r.key], nu0, r.inputs, r.convention)
            if r.key in inp.notes else r for r in rows]


# --- the budget -------------------------------------------------------------------------------
class Budget:
    """A systematic-shift budget: rows, correlated total and corrected clock frequency."""

    def __init__(self, rows: Sequence[ShiftResult], nu0_hz: float = NU0_CA,
                 species: str = "40Ca+", unit: float = 1e-19,
                 provenance: dict | None = None):
        keys = [r.key for r in rows]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate budget rows: {keys}")
        self.rows = list(rows)
        self.nu0_hz = nu0_hz
        self.species = species
        self.unit = unit
        self.provenance = dict(provenance or {})

    @classmethod
    def from_inputs(cls, inputs: ClockInputs) -> Budget:
        """Evaluate every model for `inputs` (nominal or live) and build the budget."""
        c = inputs.cfg["clock"]
        return cls(rows_from_inputs(inputs), c["nu0_hz"], c["species"], c["unit"],
                   inputs.provenance)

    @classmethod
    def nominal(cls, config: str | Path | dict) -> Budget:
        """Build the budget at a configuration's nominal inputs."""
        cfg = load_config(config)
        return cls.from_inputs(nominal_inputs(cfg, "" if isinstance(config, dict) else
                                              str(config)))

    # --- totals --------------------------------------------------------------------------
    def row(self, key: str) -> ShiftResult:
        """Return the row with this key (KeyError if absent)."""
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(key)

    @property
    def valid(self) -> bool:
        """True when every row is valid."""
        return all(r.valid for r in self.rows)

    @property
    def invalid_rows(self) -> list[ShiftResult]:
        """Rows that could not be evaluated, with their reasons."""
        return [r for r in self.rows if not r.valid]

    def _valid_rows(self) -> list[ShiftResult]:
        return [r for r in self.rows if r.valid]

    def covariance(self) -> list[list[float]]:
        """Covariance matrix (fractional^2) of the valid rows, in their order."""
        rows = self._valid_rows()
        n = len(rows)
        cov = [[0.0] * n for _ in range(n)]
        for i, a in enumerate(rows):
            cov[i][i] = a.uncertainty**2
            for j in range(i):
                b = rows[j]
                c = sum(a.components[k] * b.components[k]
                        for k in a.components.keys() & b.components.keys())
                limit = a.uncertainty * b.uncertainty
                c = max(-limit, min(limit, c))
                cov[i][j] = cov[j][i] = c
        return cov

    def correlations(self) -> list[dict]:
        """Non-zero correlations between rows: [{rows: [a, b], rho, via: [keys]}]."""
        rows = self._valid_rows()
        cov = self.covariance()
        out = []
        for i, a in enumerate(rows):
            for j in range(i):
                b = rows[j]
                if cov[i][j] and a.uncertainty and b.uncertainty:
                    out.append({"rows": [b.key, a.key],
                                "rho": cov[i][j] / (a.uncertainty * b.uncertainty),
                                "via": sorted(a.components.keys() & b.components.keys())})
        return out

    @property
    def total_fractional(self) -> float:
        """Sum of the valid rows' fractional shifts."""
        return math.fsum(r.value for r in self._valid_rows())

    @property
    def total_uncertainty(self) -> float:
        """Fractional 1-sigma uncertainty of the total, sqrt(1' C 1)."""
        return math.sqrt(max(0.0, math.fsum(x for row in self.covariance() for x in row)))

    @property
    def total_hz(self) -> float:
        """Total shift in Hz."""
        return self.total_fractional * self.nu0_hz

    def corrected_frequency(self, nu_servo_hz: float,
                            allow_invalid: bool = False) -> tuple[float, float]:
        """Clock output (Hz) and its systematic 1-sigma (Hz): nu_servo - sum(shifts) nu0.

        Raises `BudgetInvalidError` if a row is invalid, unless `allow_invalid`, in which case
        the invalid rows are left out (the caller has been told which by `invalid_rows`).
        """
        if not math.isfinite(nu_servo_hz):
            raise ValueError(f"servo frequency must be finite, got {nu_servo_hz!r}")
        if not allow_invalid and not self.valid:
            bad = "; ".join(f"{r.label}: {r.reason}" for r in self.invalid_rows)
            raise BudgetInvalidError(f"budget has invalid rows ({bad})")
        return (nu_servo_hz - self.total_fractional * self.nu0_hz,
                self.total_uncertainty * self.nu0_hz)

    # --- renderings ------------------------------------------------------------------------
    def unit_label(self) -> str:
        """'1e-19' style label of the display unit."""
        return f"1e{round(math.log10(self.unit))}" if self.unit > 0 else str(self.unit)

    def to_dict(self) -> dict:
        """JSON-ready dict: rows, total, correlations, provenance (shift/unc in `unit`)."""
        return {
            "species": self.species, "nu0_hz": self.nu0_hz, "unit": self.unit,
            "rows": [r.to_dict(self.unit) for r in self.rows],
            "total": {
                "shift": self.total_fractional / self.unit,
                "uncertainty": self.total_uncertainty / self.unit,
                "shift_fractional": self.total_fractional,
                "uncertainty_fractional": self.total_uncertainty,
                "shift_hz": self.total_hz, "uncertainty_hz": self.total_uncertainty * self.nu0_hz,
                "valid": self.valid,
                "invalid_rows": [r.key for r in self.invalid_rows],
            },
            "correlations": self.correlations(),
            "provenance": self.provenance,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of `to_dict`."""
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def _cells(self, r: ShiftResult) -> tuple[str, str, str]:
        if not math.isfinite(r.value):
            return "n/a", "n/a", f"INVALID: {r.reason}"
        # a live budget names where each row's input came from (measured, bound, nominal)
        source = (self.provenance.get("row_sources") or {}).get(r.key, "")
        return (_fmt(r.value / self.unit), _fmt(r.uncertainty / self.unit),
                source if r.valid else f"INVALID: {r.reason}")

    def _total_cells(self) -> tuple[str, str, str]:
        note = "" if self.valid else "excludes invalid rows: " + ", ".join(
            r.key for r in self.invalid_rows)
        return (_fmt(self.total_fractional / self.unit), _fmt(self.total_uncertainty / self.unit),
                note)

    def to_table(self) -> str:
        """Plain-text table for a terminal."""
        head = ("Effect", f"Shift ({self.unit_label()})", f"Unc. ({self.unit_label()})", "Note")
        body = [(r.label, *self._cells(r)) for r in self.rows]
        total = ("Total", *self._total_cells())
        widths = [max(len(x[i]) for x in [head, *body, total]) for i in range(4)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join([cells[0].ljust(widths[0]), cells[1].rjust(widths[1]),
                              cells[2].rjust(widths[2]), cells[3]]).rstrip()

        rule = "-" * (sum(widths[:3]) + 4)
        out = [f"{self.species} systematic shifts (nu0 = {self.nu0_hz:.1f} Hz)", line(head),
               rule, *(line(b) for b in body), rule, line(total)]
        out.append(f"Total: {self.total_hz:+.6g} Hz +/- "
                   f"{self.total_uncertainty * self.nu0_hz:.3g} Hz")
        if self.provenance:
            out.append("Inputs: " + _provenance_line(self.provenance))
            if (nominal := _nominal_line(self.provenance)) is not None:
                out.append(nominal)
        return "\n".join(out)

    def to_markdown(self) -> str:
        """Markdown table."""
        u = self.unit_label()
        out = [f"| Effect | Shift ({u}) | Uncertainty ({u}) | Note |", "|---|---:|---:|---|"]
        out += [f"| {r.label} | " + " | ".join(self._cells(r)) + " |" for r in self.rows]
        s, e, note = self._total_cells()
        out.append(f"| **Total** | **{s}** | **{e}** | {note} |")
        if self.provenance:
            out += ["", "Inputs: " + _provenance_line(self.provenance)]
            if (nominal := _nominal_line(self.provenance)) is not None:
                out += ["", nominal]
        return "\n".join(out)

    def to_csv(self) -> str:
        """CSV: one line per row plus the total; fractional values at full precision."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["key", "effect", "shift_fractional", "uncertainty_fractional", "shift_hz",
                    "uncertainty_hz", "valid", "reason", "convention"])
        for r in self.rows:
            w.writerow([r.key, r.label, repr(r.value), repr(r.uncertainty), repr(r.value_hz),
                        repr(r.uncertainty_hz), int(r.valid), r.reason, r.convention])
        w.writerow(["total", "Total", repr(self.total_fractional), repr(self.total_uncertainty),
                    repr(self.total_hz), repr(self.total_uncertainty * self.nu0_hz),
                    int(self.valid), "", "correlated quadrature"])
        return buf.getvalue()

    def render(self, fmt: str) -> str:
        """Render as 'table', 'markdown', 'csv' or 'json'."""
        renderers = {"table": self.to_table, "markdown": self.to_markdown, "csv": self.to_csv,
                     "json": self.to_json}
        if fmt not in renderers:
            raise UserError(f"unknown format {fmt!r} (use table, markdown, csv or json)")
        return renderers[fmt]()


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and abs(round(x, 2)) < 0.1:
        return f"{x:.2f}"
    return f"{x:.1f}"


def _number(v: Any) -> str:
    """A float as a person reads it (14.799999999999963 -> 14.8); anything else as is."""
    return f"{v:.10g}" if isinstance(v, float) else str(v)


def _provenance_line(p: dict) -> str:
    parts = [f"{k}={_number(v)}" for k, v in p.items()
             if not isinstance(v, (dict, list)) and k not in ("since", "until", "window")]
    if "since" in p and "until" in p:
        how = p.get("window")
        parts.append(f"window {_number(p['since'])} s to {_number(p['until'])} s"
                     + (f" ({how})" if isinstance(how, str) else ""))
    return ", ".join(parts)


def _nominal_line(p: dict) -> str | None:
    """Which inputs are the config's nominal values, not measurements (live budgets)."""
    names = p.get("nominal_inputs")
    if not names:
        return None
    return ("Nominal inputs (the budget config's values, not measured in this window): "
            + ", ".join(NOMINAL_INPUT_NAMES.get(n, n) for n in names))
