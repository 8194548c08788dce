"""Schema of a clock configuration (configs/sim.toml, configs/lab.example.toml).

Every key is checked before anything starts; an unknown key, a wrong type or a value out of
range is a `ConfigError` naming the dotted key and what is allowed. So are the references
between keys and to the instruments (`check_references`): each role's model, the channels
and inputs the models have (read from their drivers), the shutter roles `[shutdown]` names,
the store's name inside the output folder and the budget config, whose relative path is
taken from the config file's folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from ionclock.apparatus import registry
from ionclock.apparatus.registry import describe_ids
from ionclock.apparatus.roles import role_classes
from ionclock.apparatus.shutdown import SHUTTER_STATES, kind_of
from ionclock.config import (
    DASHBOARD_SCHEMA,
    Field,
    ListOf,
    Table,
    check_kind,
    load_toml,
    merge,
    validate,
)
from ionclock.errors import ConfigError, UserError
from ionclock.physics.constants import B_NOMINAL
from ionclock.units import parse_duration

F = Field

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SEED_BUDGET = CONFIGS / "seed_clock.toml"

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
    "sensors": F(dict, {}, doc="thermometer only: budget channel -> input number"),
    "locations": F(dict, {}, doc="thermometer twin only: input number -> cryostat location"),
    "wiring": F(dict, {}, doc="pattern generator only: TTL line name -> output bit 0-15"),
}

#: The TTL lines a pattern generator's wiring must have: the clock cycle's own (the shutters'
#: gate and the characterisation shots' lines when those roles are configured, decision 0311).
PATTERN_LINES = ("dds_step", "probe_end", "detection", "counter_trig")

EVENT_KINDS = ("b_step", "ion_loss", "refill", "temperature_excursion", "shutter_stuck", "q0",
               "laser_jump", "laser_excursion")

#: The lasers a ``laser_excursion`` may move (sim_instruments/lasers.py; 729: the clock laser's
#: cavity light, which the clock sees).
EVENT_LASERS = ("397", "866", "854", "729")

EVENT = {
    "at": F(str, doc="when, from the start of the run: e.g. '90s', '5h', '3d'"),
    "kind": F(str, choices=EVENT_KINDS),
    "value": F(float, 0.0, doc="b_step: T; refill: depth K; temperature_excursion: K; "
                               "shutter_stuck: fraction let through; q0: Hz; laser_jump: Hz"),
    "duration": F(str, "0s", doc="ion_loss / shutter_stuck / excursion: how long"),
    "laser": F(str, "", doc="laser_excursion only: which laser (397, 866, 854, 729)"),
}

# The physical range of each event kind's value, (min, max, unit, meaning), checked at load
# so a typo (a 1 T field step, Q0 = 1000 Hz) stops the run instead of running nonsense.
EVENT_VALUE_RANGES = {
    "b_step": (-1e-6, 1e-6, "T", "a field step of at most 1 uT"),
    "laser_jump": (-1e6, 1e6, "Hz", "a step of the clock laser of at most 1 MHz"),
    "q0": (-100.0, 100.0, "Hz", "the new quadrupole amplitude Q0"),
    "refill": (0.0, 5.0, "K", "the refill's temperature drop (0: drawn from the seed)"),
    "temperature_excursion": (-20.0, 20.0, "K", "the excursion's size"),
    "shutter_stuck": (0.0, 1.0, "", "the fraction of the beam let through (0: fully open)"),
    "ion_loss": (0.0, 0.0, "", "ion_loss takes no value"),
    "laser_excursion": (-1e12, 1e12, "Hz", "the laser's offset from its setpoint"),
}
# Kinds whose `duration` means something (0: the kind's default); the others take none.
EVENT_DURATION_KINDS = ("ion_loss", "shutter_stuck", "temperature_excursion", "laser_excursion")

SCHEMA = {
    "clock": {
        "name": F(str, "40Ca+ cryogenic clock"),
        "b_nominal_t": F(float, B_NOMINAL, min=1e-7, max=1e-3, doc="operating field, T"),
    },
    "run": {
        "store": F(str, "ionclock.sqlite",
                   doc="store file name inside the output folder (no folder, no '..')"),
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
        "bright_counts": F(float, 40.0, min=1.0, max=1e4,
                           doc="mean counts of a bright ion per detection gate (calibration; "
                               "the ion-presence test, decision 0007)"),
        "dark_counts": F(float, 1.0, min=1e-3, max=100.0,
                         doc="mean background counts per detection gate (calibration), "
                             "below bright_counts"),
        "aom_center_hz": F(float, 80e6, min=1e6, max=170e6),
        "verify_every_frames": F(int, 3, min=0, max=1000000,
                                 doc="locked frames per fringe-verification probe (a fine "
                                     "Rabi probe of the next line in turn, decision 0008); "
                                     "0: none, and locks are declared unverified"),
        "nu_initial_hz": F(float, 0.0, min=-1e3, max=1e3),
        "acquire_frames": F(int, 10, min=1, max=10000),
        "prepare_s": F(float, 0.0125, min=0.0, max=1.0,
                       doc="cycle start to the first clock pulse: cooling, pumping, shutters"),
        "pulse_step_hz": F(float, 0.0, min=-1e4, max=1e4,
                           doc="hyper-Ramsey frequency step of the light during the pulses, Hz"),
    },
    "instruments": Table(INSTRUMENT, required=True),
    "shutdown": {
        "coils": F(str, "hold", choices=("hold", "ramp_down"),
                   doc="on shutdown keep the field (hold) or ramp the coils to 0 A"),
        "shutters": F(dict, {}, doc="shutter role (an [instruments] entry whose model is a "
                                    "shutter, e.g. sc10) -> 'closed', 'open' or 'leave'"),
    },
    "budget": {
        "enabled": F(bool, True, doc="evaluate the live shift budget and correct the output"),
        "config": F(str, str(SEED_BUDGET),
                    doc="budget models and their settings; a relative path is taken from "
                        "the config file's folder (default: the shipped "
                        "configs/seed_clock.toml)"),
        "calibration": F(str, "", doc="measured results the budget uses in place of nominal "
                                      "values (written by `ionclock measure`; JSON); a "
                                      "relative path is taken from the config file's folder; "
                                      "empty: none"),
        "sample_s": F(float, 60.0, min=1.0, max=3600.0, doc="thermometer polling period"),
        "update_s": F(float, 1800.0, min=10.0, max=86400.0, doc="budget re-evaluation period"),
        "window_s": F(float, 3600.0, min=60.0, max=30 * 86400.0,
                      doc="window of readings a budget uses"),
    },
    "dashboard": DASHBOARD_SCHEMA,
    "twin": {
        "seed": F(int, 1, min=0),
        "laser_offset_hz": F(float, 2.0, min=-1000.0, max=1000.0,
                             doc="laser minus line mean at start, Hz (the capture range asked "
                                 "of acquisition: +-1 kHz)"),
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
        "probe_light_shift_hz": F(float, 0.0, min=-1e3, max=1e3,
                                  doc="light shift of the clock line during the pulses, Hz"),
        "deterministic": F(bool, False, doc="expectation values instead of random outcomes"),
        "cryostat": F(bool, True, doc="simulate the LN2 cryostat (temperatures, refills)"),
        "refill_interval_h": F(float, 48.0, min=1.0, max=24 * 30.0),
        "apply_shifts": F(bool, True, doc="the true systematic shifts move the ion"),
        "pressure_pa": F(float, 3e-9, min=0.0, max=1e-5),
        "ion_loss_per_week": F(float, 0.0, min=0.0, max=1000.0),
        "reload_min": F(float, 30.0, min=1.0, max=600.0),
        "b_steps_per_day": F(float, 0.0, min=0.0, max=1000.0),
        "b_step_t": F(float, 0.3e-9, min=0.0, max=1e-6),
        "quench_light_shift_hz": F(float, 2.0, min=-100.0, max=100.0),
        "events": ListOf(EVENT, doc="scheduled twin events"),
    },
}

ROLES = ("aom", "coils", "counter", "pulser")


SCENARIOS = CONFIGS / "scenarios"


def scenario_names() -> list[str]:
    """The scenarios shipped in configs/scenarios/."""
    return sorted(p.stem for p in SCENARIOS.glob("*.toml"))


def scenario_path(name: str) -> Path:
    """A scenario by name (configs/scenarios/NAME.toml) or by path."""
    p = Path(name)
    if p.suffix == ".toml" and p.is_file():
        return p
    candidate = SCENARIOS / f"{name}.toml"
    if not candidate.is_file():
        raise ConfigError("--scenario", f"unknown scenario {name!r} "
                                        f"(known: {', '.join(scenario_names())})")
    return candidate


_NUMBER = re.compile(r"\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*[a-z]*\s*")


def _event_time(key: str, text: str) -> float:
    """Seconds from an event's `at` / `duration` text; bad or negative: `ConfigError`."""
    m = _NUMBER.fullmatch(text)
    if m and float(m.group(1)) < 0:
        raise ConfigError(key, f"{text!r} is negative (times count from the run's start, "
                               "durations are >= 0)")
    if m and float(m.group(1)) == 0:
        return 0.0
    try:
        return parse_duration(text)
    except UserError:
        raise ConfigError(key, f"bad duration {text!r} (e.g. 90s, 5h, 3d)") from None


def check_event(i: int, event: dict, run_s: float | None = None) -> None:
    """Check one validated twin event's times and value; add its `at_s` and `duration_s`.

    Raises `ConfigError` naming ``twin.events[i].KEY``: a time that is negative or after the
    run's end (`run_s`, when known), a value outside its kind's physical range
    (`EVENT_VALUE_RANGES`), or a duration on a kind that takes none.
    """
    where = f"twin.events[{i}]"
    kind = event["kind"]
    for key in ("at", "duration"):
        event[key + "_s"] = _event_time(f"{where}.{key}", event[key])
    if run_s is not None and event["at_s"] > run_s:
        raise ConfigError(f"{where}.at", f"{event['at']!r} is after the run's end "
                                         f"({run_s:g} s): it would never happen")
    if event["duration_s"] and kind not in EVENT_DURATION_KINDS:
        raise ConfigError(f"{where}.duration", f"{kind} takes no duration (only "
                                               f"{', '.join(EVENT_DURATION_KINDS)} do)")
    if kind == "laser_excursion" and event["laser"] not in EVENT_LASERS:
        raise ConfigError(f"{where}.laser", f"{event['laser']!r} is not a laser an excursion "
                                            f"may move ({', '.join(EVENT_LASERS)})")
    if kind != "laser_excursion" and event["laser"]:
        raise ConfigError(f"{where}.laser", f"{kind} takes no laser (only laser_excursion)")
    lo, hi, unit, meaning = EVENT_VALUE_RANGES[kind]
    value = event["value"]
    if not lo <= value <= hi:
        allowed = (f"must be 0 ({meaning})" if lo == hi else
                   f"allowed {lo:g} to {hi:g}{' ' + unit if unit else ''} for {kind}: {meaning}")
        raise ConfigError(f"{where}.value", f"{value!r} is out of range ({allowed})")


def load_clock_config(path: str | Path, scenario: str | None = None,
                      overrides: dict | None = None, run_s: float | None = None) -> dict:
    """Load and validate a clock configuration; raises `ConfigError` on any bad entry.

    A scenario (configs/scenarios/NAME.toml) and `overrides` are merged over the file
    before validation, so they are checked like the file itself. With `run_s` (the run's
    length, s) a twin event scheduled after the end is refused too. The references between
    keys are checked as well (`check_references`); ``budget.config`` comes back as an
    absolute path, a relative one taken from the folder of the file at `path`.
    """
    data = load_toml(path)
    check_kind(data, "clock", path)
    if scenario:
        data = merge(data, load_toml(scenario_path(scenario)))
    if overrides:
        data = merge(data, overrides)
    cfg = validate(data, SCHEMA)
    for i, event in enumerate(cfg["twin"]["events"]):
        check_event(i, event, run_s)
    for role in ROLES:
        if role not in cfg["instruments"]:
            raise ConfigError(f"instruments.{role}",
                              f"is required (roles: {', '.join(ROLES)})")
    servo = cfg["servo"]
    if servo["dark_counts"] >= servo["bright_counts"]:
        raise ConfigError("servo.dark_counts",
                          f"{servo['dark_counts']} is not below servo.bright_counts "
                          f"{servo['bright_counts']}: the ion-presence test needs a bright ion "
                          "to give more counts than the background")
    coils = cfg["instruments"]["coils"]
    if coils["current_a"] > coils["current_limit_a"]:
        raise ConfigError("instruments.coils.current_a",
                          f"{coils['current_a']} A exceeds current_limit_a "
                          f"{coils['current_limit_a']} A")
    check_references(cfg, Path(path).resolve().parent)
    return cfg


# The models each role of the clock run is built on (ionclock/apparatus/clock_run.py,
# drivers/sequencer.py): the cycle table of the 409B, a coil supply's safe ramps, the SR400's
# gated counts, the DG645's start trigger.
ROLE_MODELS = {
    "aom": ("novatech409b",),
    "coils": ("keysight_e36312a", "rigol_dp832"),
    "counter": ("sr400",),
    "pulser": ("dg645",),
    "pattern": ("prawndo",),
    "pressure": ("mks937b",),
}

# The apparatus's other roles (ionclock/apparatus/roles): each one's settings section and the
# models its instruments may be.
for _role in role_classes():
    if _role.section:
        SCHEMA[_role.section] = _role.SETTINGS
    ROLE_MODELS.update(_role.ROLE_MODELS)


def check_references(cfg: dict, base: Path) -> None:
    """Check what a validated clock config refers to; a bad reference is a `ConfigError`.

    Each instrument's model (known, right for its role, simulated by its ``sim://``
    resource), the AOM and coil channels and the thermometer's inputs against the models'
    drivers, the `[shutdown]` shutter roles, the store's name and the budget config
    (resolved against `base`, the config file's folder, and loaded).
    """
    instruments = cfg["instruments"]
    for role, entry in instruments.items():
        _check_model(role, entry)
    _check_aom(instruments["aom"])
    _check_coils(instruments["coils"])
    for role, entry in instruments.items():
        if role == "thermometer":
            _check_thermometer(entry)
        else:
            if role == "pressure":   # the gauge channel read (MKS 937B: ch_1..ch_6)
                _check_channel_exists("pressure", entry["model"], entry["channel"],
                                      "gauge channel")
            for key in ("sensors", "locations"):
                if entry[key]:
                    raise ConfigError(f"instruments.{role}.{key}",
                                      "only the thermometer's are used "
                                      "([instruments.thermometer])")
    for role, entry in instruments.items():
        if entry["wiring"]:
            _check_wiring(role, entry, cfg)
        elif role == "pattern":
            raise ConfigError("instruments.pattern.wiring",
                              f"the pattern generator needs its wiring (line -> output bit) "
                              f"of at least {', '.join(PATTERN_LINES)}")
    _check_shutters(cfg["shutdown"]["shutters"], instruments)
    _check_store_name(cfg["run"]["store"])
    _check_budget(cfg["budget"], base)


def _check_model(role: str, entry: dict) -> None:
    key = f"instruments.{role}"
    model = entry["model"]
    registry.driver_class(model, key + ".model")   # an unknown model names the known ones
    allowed = ROLE_MODELS.get(role)
    if allowed is not None and model not in allowed:
        raise ConfigError(key + ".model", f"{model!r} cannot be the {role} "
                                          f"(allowed: {', '.join(allowed)})")
    resource = entry["resource"]
    if resource.startswith("sim://"):
        twin_model = resource[len("sim://"):] or model
        if twin_model != model:
            raise ConfigError(key + ".resource",
                              f"sim://{twin_model} does not simulate model {model!r}")
        if registry.MODELS[model].twin is None:
            raise ConfigError(key + ".resource", f"model {model!r} has no twin (sim://)")


def _check_wiring(role: str, entry: dict, cfg: dict) -> None:
    """A pattern generator's wiring: lines the pattern has, each on its own output 0-15."""
    key = f"instruments.{role}.wiring"
    if entry["model"] != "prawndo":
        raise ConfigError(key, "only a pattern generator (model prawndo) has a wiring")
    from ionclock.drivers.sequencer import (
        BEAM_LINES,
        COOLING_END,
        SHUTTER_GATE_FALL,
        SHUTTER_GATE_RISE,
        SIDEBAND_COOLING,
    )

    wiring = entry["wiring"]
    need = list(PATTERN_LINES)
    roles = {c.section: c for c in role_classes() if c.section}
    if "shutters" in roles and roles["shutters"].configured(cfg):
        need += [SHUTTER_GATE_FALL, SHUTTER_GATE_RISE]
    if "micromotion" in roles and roles["micromotion"].configured(cfg):
        need += [SIDEBAND_COOLING, COOLING_END, *BEAM_LINES]
    known = set(PATTERN_LINES) | {SHUTTER_GATE_FALL, SHUTTER_GATE_RISE, SIDEBAND_COOLING,
                                  COOLING_END, *BEAM_LINES}
    for line in wiring:
        if line not in known:
            raise ConfigError(f"{key}.{line}", f"unknown TTL line (known: "
                                               f"{', '.join(sorted(known))})")
    missing = [line for line in need if line not in wiring]
    if missing:
        raise ConfigError(key, f"no output for {', '.join(missing)}")
    registry.check_twin_options("prawndo", {"wiring": wiring}, key)


def _check_aom(entry: dict) -> None:
    """The clock AOM's channel: one the 409B has, and one with table mode.

    Novatech 409B: four outputs, ch_0..ch_3 (drivers/novatech409b.py); table mode on 0 and 1
    only (its TABLE_CHANNELS: labscript's NovaTechDDS9M docs, naqslab's 409B-AC driver, the
    409B manual section 1.3), and the clock runs each cycle from the table (decision 0006).
    """
    from ionclock.drivers.novatech409b import TABLE_CHANNELS

    model, channel = entry["model"], entry["channel"]
    _check_channel_exists("aom", model, channel, "channel")
    if channel not in TABLE_CHANNELS:
        raise ConfigError("instruments.aom.channel",
                          f"channel {channel} of the {model} has no table mode (only "
                          f"{describe_ids(TABLE_CHANNELS)}); the clock runs each cycle from "
                          "the table")


def _check_channel_exists(role: str, model: str, channel, noun: str) -> None:
    """The role's channel is one its model's driver declares (else a one-line ConfigError)."""
    ids = registry.channel_ids(model)
    if channel not in ids:
        raise ConfigError(f"instruments.{role}.channel",
                          f"{channel} is not a{'n' if noun[0] in 'aeiou' else ''} {noun} of "
                          f"the {model} ({noun}s {describe_ids(ids)}, as its driver declares)")


def _check_coils(entry: dict) -> None:
    """The coil channel and its limits against the supply's outputs and their ratings.

    Outputs and ratings from the supply drivers (drivers/coil_supplies.py): E36312A_RATINGS
    (Keysight E36312A: 6 V / 5 A, 25 V / 1 A, 25 V / 1 A; E36300 series guide) and
    DP832_RATINGS (Rigol DP832: 30 V / 3 A, 30 V / 3 A, 5 V / 3 A; DP800 guide).
    """
    model, channel = entry["model"], entry["channel"]
    _check_channel_exists("coils", model, channel, "output")
    ratings = registry.channel_ratings(model)
    if not ratings:
        return
    volts = ratings[channel][0]
    if entry["compliance_v"] > volts:
        raise ConfigError("instruments.coils.compliance_v",
                          f"{entry['compliance_v']} V is above output {channel}'s rating of "
                          f"{volts} V ({model})")
    # The clock run gives the driver one limit for every output
    # (ionclock/apparatus/clock_run.py), and the driver refuses a limit above any output's rating.
    lowest = min(amps for _, amps in ratings.values())
    if entry["current_limit_a"] > lowest:
        each = ", ".join(f"{ch}: {a} A" for ch, (_, a) in sorted(ratings.items()))
        raise ConfigError("instruments.coils.current_limit_a",
                          f"{entry['current_limit_a']} A is above {lowest} A, the lowest "
                          f"output rating of the {model} (the limit is set on every output; "
                          f"ratings {each})")


def _check_thermometer(entry: dict) -> None:
    """The thermometer's inputs: numbers the model has (its driver's input_N channels).

    The clock run reads a budget channel's sensor as ``input_N`` (or entry N - 1 of
    ``temperatures``): Lake Shore 218, inputs 1-8 (drivers/lakeshore218.py, after the Model
    218 manual). A Lake Shore 224 names its inputs (A, B, C1-C5, D1-D5,
    drivers/lakeshore224.py) and a DAQ6510 scans card channels (101-110, ...,
    drivers/keithley_daq6510.py CARDS): the clock run reads neither.
    """
    key = "instruments.thermometer"
    model = entry["model"]
    ids = registry.input_ids(model)
    numbers = tuple(i for i in ids if isinstance(i, int))
    used = [k for k in ("sensors", "locations") if entry[k]]
    if used and not numbers:
        having = f"inputs named {describe_ids(ids)}" if ids else "no inputs read as input_N"
        raise ConfigError(f"{key}.{used[0]}",
                          f"the clock run reads a thermometer's numbered inputs (input_N, "
                          f"e.g. lakeshore218's 1-8); {model} has {having}")
    for channel, number in entry["sensors"].items():
        where = f'{key}.sensors."{channel}"' if "." in channel else f"{key}.sensors.{channel}"
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(where, f"{number!r} is not an input number (an integer; "
                                     f"{model} inputs {describe_ids(numbers)})")
        if number not in numbers:
            raise ConfigError(where, f"{number} is not an input of the {model} (inputs "
                                     f"{describe_ids(numbers)}, as its driver declares)")
    locations = {}
    for number, location in entry["locations"].items():
        where = f"{key}.locations.{number}"
        if not (number.isdigit() and int(number) in numbers):
            raise ConfigError(where, f"{number!r} is not an input of the {model} (inputs "
                                     f"{describe_ids(numbers)})")
        if not isinstance(location, str):
            raise ConfigError(where, f"expected a cryostat location name, got {location!r}")
        locations[int(number)] = location
    if locations:
        registry.check_twin_options(model, {"locations": locations}, key)


def _check_shutters(shutters: dict, instruments: dict) -> None:
    """`[shutdown] shutters`: each role an instrument whose model is a shutter, each state known.

    A bad state found only at shutdown would stop the safe shutdown itself.
    """
    for role, state in shutters.items():
        key = f"shutdown.shutters.{role}"
        if state not in SHUTTER_STATES:
            raise ConfigError(key, f"{state!r} is not one of "
                                   f"{', '.join(repr(s) for s in SHUTTER_STATES)}")
        if role not in instruments:
            raise ConfigError(key, f"no instrument {role!r} (configured: "
                                   f"{', '.join(sorted(instruments))})")
        model = instruments[role]["model"]
        # kind_of reads the driver's shape (open/close/disconnect), here on its class
        if kind_of(registry.driver_class(model)) != "shutter":
            shutter_models = [m for m in registry.model_names()
                              if kind_of(registry.driver_class(m)) == "shutter"]
            raise ConfigError(key, f"{role!r} is a {model}, not a shutter (shutter models: "
                                   f"{', '.join(shutter_models)})")


def _check_store_name(name: str) -> None:
    """`run.store`: a file name inside the output folder, never a path out of it."""
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise ConfigError("run.store", f"{name!r} is not a file name inside the output "
                                       "folder (--out): no folder, no '..', not absolute; "
                                       "e.g. 'ionclock.sqlite'")


def _check_budget(budget: dict, base: Path) -> None:
    """`budget.config`: resolved against `base`; when enabled, a budget config that loads."""
    path = Path(budget["config"])
    if not path.is_absolute():
        path = base / path
    budget["config"] = str(path)
    if budget["calibration"] and not Path(budget["calibration"]).is_absolute():
        budget["calibration"] = str(base / budget["calibration"])
    if not budget["enabled"]:
        return
    if not path.is_file():
        raise ConfigError("budget.config", f"no such file {str(path)!r} (a relative path is "
                                           "taken from the config file's folder)")
    from ionclock.physics.budget import load_config as load_budget_config

    try:
        load_budget_config(path)
    except ConfigError as err:
        raise ConfigError("budget.config",
                          f"{str(path)!r}: "
                          f"{str(err).removeprefix('config: ').removeprefix(f'{path}: ')}"
                          ) from None

