"""`ionclock analyse NAME FILE [--out DIR]`: one characterisation analysis on a CSV of data.

Prints the result on one line (each estimate with its 95 % interval, what the interval is,
the number of points) and writes the fit's plot to DIR/<file stem>.<NAME>.png (DIR: the
CSV's folder unless --out). The analyses and their CSV columns: `ionclock analyse --help`,
and each module of ionclock.procedures.analysis (decision 0800).

Exit status: 0 done; 2 a bad file, missing columns, data the fit cannot use (one line).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ionclock.errors import UserError


def register(sub) -> None:
    from ionclock.procedures.analysis import ANALYSES

    lines = [f"  {a.name:<13} {a.summary}\n  {'':<13} columns: {a.columns}"
             for a in ANALYSES.values()]
    p = sub.add_parser(
        "analyse", help="fit one characterisation measurement from a CSV (value, 95 %% CI, plot)",
        description="Analyse measured data apart from acquisition: print the value with its "
                    "95 % confidence interval and write the fit's plot. The CSV has a header "
                    "row; lines starting with '#' are comments; units are SI.",
        epilog="analyses (NAME) and their CSV columns ([optional]):\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", choices=list(ANALYSES),
                   help="one of: " + ", ".join(ANALYSES))
    p.add_argument("file", metavar="FILE", help="CSV of measured data")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for the plot (default: the CSV's folder)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ionclock.procedures.analysis import ANALYSES, DataError

    analysis = ANALYSES[args.name]
    src = Path(args.file)
    if src.is_dir():
        raise UserError(f"{str(src)!r} is a folder: give the CSV file")
    try:
        result = analysis.from_csv(src)
    except DataError as err:
        text = str(err)   # name the file where the analysis (not the reader) refused the data
        raise UserError(text if repr(str(src)) in text else f"{str(src)!r}: {text}") from None
    out_dir = Path(args.out) if args.out else src.resolve().parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {str(out_dir)!r}: {err.strerror or err}") from None
    png = analysis.plot(result, out_dir / f"{src.stem}.{analysis.name}.png")
    print(result.line())
    print(f"wrote {png}")
    return 0
