"""The store: one SQLite file per run or logger, what is kept in it and how it is read.

- `store`: the writer (one per store), its buffered tables, and read-only opening.
- `rollups`: the 1-min and 1-h min/mean/max/count tables, kept up to date as samples arrive.
- `views`: reading a logger store: series for a span, the plot, exports, the status summary.
- `signal_guard`: sections a SIGTERM/SIGINT must not cut in two (nothing half-written).
- `budget_inputs`: a budget's inputs gathered from a store window.

Imports the physics and the base modules only: never the apparatus, the logger or the
command line (import-linter contract in pyproject.toml).
"""
