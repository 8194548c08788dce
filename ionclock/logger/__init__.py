"""The headless long-term logger: polling, alarms and the sinks beside the store.

- `poller`: the logger's SimPy process (simulated or real time): polls each instrument's
  channels, records samples, instrument outages and missing readings.
- `alarms`: events worth waking someone for, and the hooks that tell them.
- `sinks`: InfluxDB (line protocol over HTTP) and a Prometheus /metrics endpoint.
"""
