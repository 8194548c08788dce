"""The physics: constants and formulas, the systematic shifts, the budget, the Cd+ standard.

Pure: functions and classes here take numbers and return numbers. Nothing in this package
reads a store, opens an instrument or parses a command line (import-linter contract in
pyproject.toml); the inputs a budget reads from a store are gathered in
`ionclock.storage.budget_inputs`, and the running clock's budget in
`ionclock.apparatus.live_budget`.

- `constants`: physical constants, the 40Ca+ clock's parameters, the Zeeman lines, QPN.
- `shifts`: one function per systematic shift (DOMAIN §2), with its uncertainty.
- `budget`: the rows, their correlations and the total (Table II).
- `sidebands`: Lamb-Dicke parameters and sideband Rabi frequencies (DOMAIN §3).
- `rtd`: PT100 thermometry (Callendar–Van Dusen, per-sensor calibration).
- `cadmium`: the 111/113Cd+ microwave standard's frequencies and budget (DOMAIN §4).
"""
