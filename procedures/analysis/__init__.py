"""Characterisation analyses, apart from acquisition (issue 15; decision 0800).

Each module holds pure functions (arrays in, an `AnalysisResult` with 95 % intervals out), a
CSV reader whose columns its docstring lists, and a plot of the fit. `ANALYSES` names them
for ``ionclock analyse NAME FILE``:

=============  ===================================================  ==========================
name           what                                                 module
=============  ===================================================  ==========================
zeeman         alpha_z from delta_z = alpha_z (B^2 - B0^2)          zeeman
thermometry    nbar per dark time (sideband flops), heating rate    thermometry
debye-waller   nbar after Doppler cooling from carrier Rabi freqs   debye_waller
ac-field       <B_perp^2> from the g-factor ratio                   ac_field
secular        secular-motion budget row from heating rates         secular
micromotion    EMM shift from sideband/carrier ratios R_i           micromotion
compensation   voltage of least micromotion (parabola of R^2)       micromotion
bbr            BBR temperature from the sensor envelope             bbr
cd-hfs         Cd+ P3/2 HFS from LIF scans (Voigt fits, Eq. 17)     cd_hfs
=============  ===================================================  ==========================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ionclock.procedures.analysis import (
    ac_field,
    bbr,
    cd_hfs,
    debye_waller,
    micromotion,
    secular,
    thermometry,
    zeeman,
)
from ionclock.procedures.analysis.common import AnalysisResult, DataError, Estimate


@dataclass(frozen=True)
class Analysis:
    """One named analysis: what it gives, its CSV columns, and how to run and plot it."""

    name: str
    summary: str
    columns: str
    from_csv: Callable[[str | Path], AnalysisResult]
    plot: Callable[[AnalysisResult, str | Path], Path]


def _columns(required: tuple, optional: tuple = ()) -> str:
    return ", ".join(required) + "".join(f" [{c}]" for c in optional)


ANALYSES: dict[str, Analysis] = {a.name: a for a in (
    Analysis(zeeman.NAME, "quadratic Zeeman coefficient alpha_z (Hz/T^2)",
             _columns(zeeman.COLUMNS, zeeman.OPTIONAL), zeeman.from_csv, zeeman.plot),
    Analysis(thermometry.NAME, "nbar from sideband flops; heating rate (quanta/s) over dark times",
             _columns(thermometry.COLUMNS, thermometry.OPTIONAL),
             thermometry.from_csv, thermometry.plot),
    Analysis(debye_waller.NAME, "nbar per mode after Doppler cooling (Debye–Waller)",
             _columns(debye_waller.COLUMNS), debye_waller.from_csv,
             debye_waller.plot),
    Analysis(ac_field.NAME, "<B_perp^2> of the RF-induced AC field (T^2) from the g-factor ratio",
             _columns(ac_field.COLUMNS, ac_field.OPTIONAL), ac_field.from_csv,
             ac_field.plot),
    Analysis(secular.NAME, "secular-motion (time-dilation) budget row from heating rates",
             _columns(secular.COLUMNS, secular.OPTIONAL), secular.from_csv,
             secular.plot),
    Analysis(micromotion.NAME, "excess-micromotion shift from sideband/carrier ratios",
             _columns(micromotion.COLUMNS, micromotion.OPTIONAL),
             micromotion.from_csv, micromotion.plot),
    Analysis(micromotion.SCAN_NAME, "compensation voltage of least micromotion (V)",
             "voltage_v, ratio or r2 [ratio_unc or r2_unc]", micromotion.scan_from_csv,
             micromotion.plot_scan),
    Analysis(bbr.NAME, "BBR temperature (K) and shift from the sensor envelope",
             _columns(bbr.COLUMNS, bbr.OPTIONAL), bbr.from_csv, bbr.plot),
    Analysis(cd_hfs.NAME, "Cd+ P3/2 hyperfine splitting (Hz) from LIF scans against 114Cd+",
             _columns(cd_hfs.COLUMNS, cd_hfs.OPTIONAL), cd_hfs.from_csv, cd_hfs.plot),
)}

__all__ = ["ANALYSES", "Analysis", "AnalysisResult", "DataError", "Estimate"]
