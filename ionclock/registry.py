"""The registry: the one place that turns a config entry into a connected driver.

A resource string chooses the transport, never the driver code (STYLE §4):

- ``sim://<model>``: the twin of that model, in-process, on the caller's simulated world,
  through `LoopbackAdapter` (the driver's bytes reach the twin's parser unchanged);
- a pyserial URL (``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://host:port``,
  ``loop://``): `serial.serial_for_url` with the driver's own line settings;
- anything else: a pyvisa resource string (``TCPIP::host::5025::SOCKET``, ``GPIB0::8::INSTR``,
  ``ASRL/dev/ttyUSB0::INSTR``), opened through pyvisa (pyvisa-py by default).

Only this module imports `ionclock.sim_instruments` (the import-linter contract in
pyproject allows nothing else outside the twin and the tests).

A driver class declares how it is reached with class attributes:
``write_termination``, ``read_termination`` and, for serial units, ``serial_settings``
(pyserial keyword arguments: baudrate, bytesize, parity, stopbits, timeout).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ionclock.errors import ConfigError
from ionclock.transport import LoopbackAdapter


@dataclass(frozen=True)
class ModelEntry:
    """Where a model's driver and twin live ("module:Class" paths)."""

    driver: str
    twin: str | None
    doc: str = ""


MODELS: dict[str, ModelEntry] = {
    "novatech409b": ModelEntry(
        "ionclock.drivers.novatech409b:Novatech409B",
        "ionclock.sim_instruments.novatech409b:SimNovatech409B",
        "Novatech 409B four-channel DDS (clock AOM)"),
    "dg645": ModelEntry(
        "ionclock.drivers.dg645:SRSDG645",
        "ionclock.sim_instruments.dg645:SimDG645",
        "SRS DG645 delay generator: the software start of each cycle's pulse sequence"),
    "keysight_e36312a": ModelEntry(
        "ionclock.drivers.coil_supplies:CoilSupplyE36312A",
        "ionclock.sim_instruments.coil_supplies:SimKeysightE36312A",
        "Keysight E36312A triple supply driving the quantisation-field coils"),
    "sr400": ModelEntry(
        "ionclock.drivers.sr400:SR400",
        "ionclock.sim_instruments.sr400:SimSR400",
        "SRS SR400 gated photon counter (detection counts)"),
    "rigol_dp832": ModelEntry(
        "ionclock.drivers.coil_supplies:CoilSupplyDP832",
        "ionclock.sim_instruments.coil_supplies:SimRigolDP832",
        "Rigol DP832 triple supply driving the quantisation-field coils"),
    "lakeshore218": ModelEntry(
        "ionclock.drivers.lakeshore218:LakeShore218",
        "ionclock.sim_instruments.lakeshore:SimLakeShore218",
        "Lake Shore 218 eight-input temperature monitor (PT100s, RS-232 9600 7O1)"),
    "lakeshore224": ModelEntry(
        "ionclock.drivers.lakeshore224:LakeShore224Clock",
        "ionclock.sim_instruments.lakeshore:SimLakeShore224",
        "Lake Shore 224 twelve-input temperature monitor (PT100s, LAN)"),
    "keithley_daq6510": ModelEntry(
        "ionclock.drivers.keithley_daq6510:KeithleyDAQ6510RTD",
        "ionclock.sim_instruments.keithley_daq6510:SimKeithleyDAQ6510",
        "Keithley DAQ6510 + 7700 card scanning 3-wire PT100s (LAN SCPI)"),
    "sg380": ModelEntry(
        "ionclock.drivers.trap_rf:TrapRFSource",
        "ionclock.sim_instruments.trap_rf:SimSG380",
        "SRS SG38x RF source driving the trap (24.801 MHz, type-N output)"),
    "dmm_34465a": ModelEntry(
        "ionclock.drivers.trap_rf:PickoffDMM",
        "ionclock.sim_instruments.trap_rf:SimPickoffDMM",
        "Keysight 34465A/34410A DMM reading the rectified trap-RF pickoff (V DC)"),
    "sc10": ModelEntry(
        "ionclock.drivers.sc10:SC10",
        "ionclock.sim_instruments.sc10:SimSC10",
        "Thorlabs SC10 shutter controller (RS-232 9600 8N1, CR, echo + prompt)"),
    "wavemeter_tcp": ModelEntry(
        "ionclock.drivers.wavemeter:WavemeterTCP",
        "ionclock.sim_instruments.wavemeter:SimWavemeterServer",
        "HighFinesse WS7/WS8 wavemeter through its TCP text server (port 1234)"),
    "wavemeter_wlmdata": ModelEntry(
        "ionclock.drivers.wavemeter:WavemeterWlmData",
        None,
        "HighFinesse WS7/WS8 wavemeter through libwlmData (ctypes; resource = library path)"),
    "microwave_8257d": ModelEntry(
        "ionclock.drivers.microwave:MicrowaveSynth8257D",
        "ionclock.sim_instruments.microwave:SimAgilent8257D",
        "Agilent/Keysight 8257D microwave synthesiser for the Cd+ ground HFS (14.5/15.2 GHz)"),
}


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def model_names() -> list[str]:
    """All models the registry knows."""
    return sorted(MODELS)


def driver_class(model: str, key: str = "model") -> type:
    """The driver class for `model`; an unknown model is a `ConfigError` at `key`."""
    if model not in MODELS:
        raise ConfigError(key, f"unknown model {model!r} (known: {', '.join(model_names())})")
    return _load(MODELS[model].driver)


def is_serial_url(resource: str) -> bool:
    """True for resources pyserial opens (device paths and pyserial URL handlers)."""
    return resource.startswith(("/dev/", "socket://", "rfc2217://", "loop://", "COM",
                                "spy://", "alt://", "hwgrep://"))


def make_twin(model: str, world: Any, key: str = "resource", **twin_options: Any) -> Any:
    """A fresh twin of `model` bound to `world`."""
    entry = MODELS.get(model)
    if entry is None or entry.twin is None:
        raise ConfigError(key, f"no twin for model {model!r}")
    return _load(entry.twin)(world, **twin_options)


def open_instrument(model: str, resource: str, *, world: Any = None, key: str = "instrument",
                    twin_options: dict | None = None, resilient: bool = False,
                    resilience: dict | None = None, **driver_options: Any) -> Any:
    """Connect the driver of `model` at `resource`; see the module docstring for transports.

    `world` is the simulated world for ``sim://`` resources (required there). Connection
    failures are `ConfigError`s naming `key`, raised before anything is started.

    With `resilient`, the driver comes wrapped in `ionclock.resilience.ResilientInstrument`:
    on a lost link it reconnects here (same twin, or a fresh OS connection) with backoff and
    restores its setpoints. `resilience` holds the wrapper's options (``on_event``,
    ``clock``: default ``world.env.now`` for a twin, else `time.monotonic`, backoff times).
    """
    cls = driver_class(model, key + ".model")
    wterm = getattr(cls, "write_termination", "\n")
    rterm = getattr(cls, "read_termination", "\n")
    if resource.startswith("sim://"):
        twin_model = resource[len("sim://"):] or model
        if twin_model != model:
            raise ConfigError(key + ".resource",
                              f"sim://{twin_model} does not simulate model {model!r}")
        if world is None:
            raise ConfigError(key + ".resource", "sim:// resources need the simulated world")
        twin = make_twin(model, world, key + ".resource", **(twin_options or {}))

        connections = [0]

        def connect() -> Any:
            # A reconnect builds a new adapter and driver on the SAME twin (it keeps its state);
            # a twin that greets each new client (a TCP text server) is told by the optional
            # hook `connection_opened()`.
            connections[0] += 1
            hook = getattr(twin, "connection_opened", None)
            if connections[0] > 1 and hook is not None:
                hook()
            adapter = LoopbackAdapter(twin, write_termination=wterm, read_termination=rterm,
                                      name=f"{model}@{resource}")
            inst = cls(adapter, **driver_options)
            inst.twin = twin  # for tests and the twin's bookkeeping, never read by servo code
            return inst

        inst = connect()
    elif is_serial_url(resource):
        import serial
        from pymeasure.adapters import SerialAdapter

        settings = dict(getattr(cls, "serial_settings", {}))
        settings.setdefault("timeout", 1.0)

        def connect() -> Any:
            port = serial.serial_for_url(resource, **settings)
            adapter = SerialAdapter(port, write_termination=wterm, read_termination=rterm)
            return cls(adapter, **driver_options)

        try:
            port = serial.serial_for_url(resource, **settings)
        except (serial.SerialException, ValueError, OSError) as err:
            raise ConfigError(key + ".resource", f"cannot open {resource!r}: {err}") from None
        adapter = SerialAdapter(port, write_termination=wterm, read_termination=rterm)
        inst = cls(adapter, **driver_options)
    else:
        visa_library = driver_options.pop("visa_library", "@py")

        def connect() -> Any:
            return cls(resource, write_termination=wterm, read_termination=rterm,
                       visa_library=visa_library, **driver_options)

        try:
            inst = connect()
        except Exception as err:  # pyvisa raises many types for an unreachable resource
            raise ConfigError(key + ".resource", f"cannot open {resource!r}: {err}") from None
    if not resilient:
        return inst
    from ionclock.resilience import ResilientInstrument

    options = dict(resilience or {})
    env = getattr(world, "env", None)
    if options.get("clock") is None and env is not None and resource.startswith("sim://"):
        options["clock"] = lambda: env.now
    options.setdefault("source", key if key != "instrument" else model)
    return ResilientInstrument(inst, connect, model=model, **options)


def expectation_readout(world: Any) -> Any:
    """The deterministic twin's readout: expectation values from `world` (sim only)."""
    from ionclock.sim_instruments.readout import ExpectationReadout

    return ExpectationReadout(world)


def twin_reference(world: Any) -> Any:
    """The twin's frequency reference (a perfect comb on `world`)."""
    from ionclock.sim_instruments.comb import SimComb

    return SimComb(world)


def make_world(env: Any, twin: dict, servo: dict, instruments: dict) -> Any:
    """The simulated clock world for a config's ``[twin]`` section, on `env`.

    The twin's AOM and coil channels follow the config's instrument entries, so the world
    listens to the same channels the servo drives.
    """
    from ionclock.sim_instruments.world import ClockWorld, TwinParams

    params = TwinParams(
        aom_center_hz=servo["aom_center_hz"],
        aom_channel=instruments["aom"]["channel"],
        coil_channel=instruments["coils"]["channel"],
        laser_offset_hz=twin["laser_offset_hz"],
        cavity_drift_hz_s=twin["cavity_drift_hz_s"],
        flicker_floor=twin["flicker_floor"],
        coil_t_per_a=twin["coil_t_per_a"],
        b_residual_t=twin["b_residual_t"],
        b_drift_t_s=twin["b_drift_t_per_h"] / 3600.0,
        b_noise_t=twin["b_noise_t"],
        q0_hz=twin["q0_hz"],
        pi_time_s=servo["pi_time_s"],
        ramsey_time_s=servo["ramsey_time_s"],
        bright_counts=twin["bright_counts"],
        dark_counts=twin["dark_counts"],
        exact=twin["exact_propagator"],
        light_shift_hz=twin["probe_light_shift_hz"],
        cryostat=twin["cryostat"],
        refill_interval_s=twin["refill_interval_h"] * 3600.0,
        apply_shifts=twin["apply_shifts"],
        pressure_pa=twin["pressure_pa"],
        ion_loss_per_s=twin["ion_loss_per_week"] / (7 * 86400.0),
        reload_s=twin["reload_min"] * 60.0,
        b_steps_per_s=twin["b_steps_per_day"] / 86400.0,
        b_step_t=twin["b_step_t"],
        quench_light_shift_hz=twin["quench_light_shift_hz"],
        events=tuple((e["at_s"], e["kind"], e["value"], e["duration_s"])
                     for e in twin["events"]),
    )
    return ClockWorld(env, params, seed=twin["seed"])


def make_env_world(env: Any, seed: int = 0, cryostat: dict | None = None) -> Any:
    """A twin world for the environment logger (`ionclock log --simulate`), on `env`.

    The clock apparatus with default parameters plus its LN2 cryostat (``world.cryostat``,
    options from the logger config's ``[simulate.cryostat]``), so the temperature, supply
    and RF twins all have the physics they read.
    """
    from ionclock.sim_instruments.cryostat import Cryostat
    from ionclock.sim_instruments.world import ClockWorld

    world = ClockWorld(env, seed=seed)
    if getattr(world, "cryostat", None) is None or cryostat:
        try:
            world.cryostat = Cryostat(env, seed, **(cryostat or {}))
        except (TypeError, ValueError) as err:
            raise ConfigError("simulate.cryostat", str(err)) from None
    return world
