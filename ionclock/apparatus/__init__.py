"""The apparatus at run time: instruments from a config, their links, the clock run itself.

- `registry`: config entry -> connected driver (twin, serial, VISA); the only place outside
  the twin's tests that imports `ionclock.sim_instruments`.
- `transport`: the adapters between drivers and links (in-process loopback, VISA errors).
- `resilience`: reconnecting wrappers, link watchdogs, record and replay.
- `shutdown`: the safe state on every exit (trap RF kept on, coils ramped).
- `clock_config`: the clock run's configuration, checked at load.
- `clock_run`: `ClockRun`, one clock run: servo, twin or instruments, store, live budget.
- `live_budget`: the running clock's budget, evaluated from what the run records.
"""
