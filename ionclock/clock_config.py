"""Schema of a clock configuration (configs/sim.toml, configs/lab.example.toml).

Every key is checked before anything starts; an unknown key, a wrong type or a value out of
range is a `ConfigError` naming the dotted key and what is allowed.
"""

from __future__ import annotations

from pathlib import Path

from ionclock.config import Field, Table, load_toml, validate
from ionclock.errors import ConfigError
from ionclock.physics import B_NOMINAL

F = Field

INSTRUMENT = {
    "model": F(str, doc="a model known to the registry"),
    "resource": F(str, doc="sim://MODEL, a pyvisa resource string or a pyserial URL"),
    "channel": F(int, 0, min=0, max=16),
    "current_a": F(float, 0.0, min=0.0, max=10.0, doc="coil current setpoint, A"),
    "current_limit_a": F(float, 1.0, min=0.0, max=10.0, doc="hard coil current limit, A"),
    "slew_a_per_s": F(float, 0.01, min=1e-6, max=1.0, doc="coil ramp rate, A/s"),
    "compliance_v": F(float, 10.0, min=0.0, max=60.0,
                      doc="coil supply voltage compliance (constant-current mode), V"),
    "gate_time_s": F(float, 0.002, min=1e-6, max=1.0, doc="detection gate, s"),
}

SCHEMA = {
    "clock": {
        "name": F(str, "40Ca+ cryogenic clock"),
        "b_nominal_t": F(float, B_NOMINAL, min=1e-7, max=1e-3, doc="operating field, T"),
    },
    "run": {
        "store": F(str, "ionclock.sqlite", doc="store file name inside the output folder"),
        "commit_interval_s": F(float, 1.0, min=0.01, max=60.0),
        "record_cycles": F(bool, True, doc="store every clock cycle, not only frames"),
    },
    "servo": {
        "ramsey_time_s": F(float, 0.080, min=1e-4, max=2.0),
        "pi_time_s": F(float, 0.004, min=1e-6, max=0.1),
        "cycle_time_s": F(float, 0.105, min=1e-3, max=5.0),
        "gain": F(float, 0.5, min=0.01, max=1.5),
        "drift_gain": F(float, 0.05, min=0.0, max=0.5),
        "b_gain": F(float, 0.5, min=0.01, max=1.5),
        "b_drift_gain": F(float, 0.05, min=0.0, max=0.5),
        "residual_gain": F(float, 0.2, min=0.0, max=1.0),
        "threshold_counts": F(int, 8, min=1, max=1000),
        "aom_center_hz": F(float, 80e6, min=1e6, max=170e6),
        "nu_initial_hz": F(float, 0.0, min=-1e3, max=1e3),
        "acquire_frames": F(int, 10, min=1, max=10000),
    },
    "instruments": Table(INSTRUMENT, required=True),
    "twin": {
        "seed": F(int, 1, min=0),
        "laser_offset_hz": F(float, 2.0, min=-6.0, max=6.0,
                             doc="laser minus line mean at start, Hz (within the capture range)"),
        "cavity_drift_hz_s": F(float, 0.05, min=-1.0, max=1.0),
        "flicker_floor": F(float, 1e-15, min=0.0, max=1e-13),
        "coil_t_per_a": F(float, 50e-6, min=1e-7, max=1e-2),
        "b_residual_t": F(float, 0.0, min=-1e-6, max=1e-6),
        "b_drift_t_per_h": F(float, 0.5e-9, min=-1e-7, max=1e-7),
        "b_noise_t": F(float, 1e-12, min=0.0, max=1e-9),
        "q0_hz": F(float, 0.0, min=-100.0, max=100.0),
        "bright_counts": F(float, 40.0, min=1.0, max=1e4),
        "dark_counts": F(float, 1.0, min=0.0, max=100.0),
        "exact_propagator": F(bool, False),
        "deterministic": F(bool, False, doc="expectation values instead of random outcomes"),
    },
}

ROLES = ("aom", "coils", "counter")


def load_clock_config(path: str | Path) -> dict:
    """Load and validate a clock configuration; raises `ConfigError` on any bad entry."""
    cfg = validate(load_toml(path), SCHEMA)
    for role in ROLES:
        if role not in cfg["instruments"]:
            raise ConfigError(f"instruments.{role}",
                              f"is required (roles: {', '.join(ROLES)})")
    coils = cfg["instruments"]["coils"]
    if coils["current_a"] > coils["current_limit_a"]:
        raise ConfigError("instruments.coils.current_a",
                          f"{coils['current_a']} A exceeds current_limit_a "
                          f"{coils['current_limit_a']} A")
    return cfg
