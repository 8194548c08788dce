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

What a model offers is read from its driver class without connecting (`channel_ids`,
`check_read_path`, `channel_ratings`) and from its twin (`check_twin_options`), so that a
config names only channels, inputs and options that exist before anything is opened.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from pymeasure.instruments.common_base import CommonBase

from ionclock.apparatus.transport import LoopbackAdapter, VisaLinkAdapter
from ionclock.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    """Where a model's driver and twin live ("module:Class" paths).

    `ratings`, for supplies: "module:NAME" of the driver's {channel: (V, A)} table of each
    output's rating.
    """

    driver: str
    twin: str | None
    doc: str = ""
    ratings: str | None = None


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
        "Keysight E36312A triple supply driving the quantisation-field coils",
        ratings="ionclock.drivers.coil_supplies:E36312A_RATINGS"),
    "e36312a_compensation": ModelEntry(
        "ionclock.drivers.compensation:CompensationSupplyE36312A",
        "ionclock.sim_instruments.compensation:SimCompensationE36312A",
        "Keysight E36312A driving the three micromotion-compensation electrodes (CV)"),
    "sr400": ModelEntry(
        "ionclock.drivers.sr400:SR400",
        "ionclock.sim_instruments.sr400:SimSR400",
        "SRS SR400 gated photon counter (detection counts)"),
    "rigol_dp832": ModelEntry(
        "ionclock.drivers.coil_supplies:CoilSupplyDP832",
        "ionclock.sim_instruments.coil_supplies:SimRigolDP832",
        "Rigol DP832 triple supply driving the quantisation-field coils",
        ratings="ionclock.drivers.coil_supplies:DP832_RATINGS"),
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
    "prawndo": ModelEntry(
        "ionclock.drivers.prawndo:PrawnDO",
        "ionclock.sim_instruments.prawndo:SimPrawnDO",
        "PrawnDO 16-output TTL pattern generator (Raspberry Pi Pico, USB serial): plays the "
        "cycle's pattern on each trigger (decision 0311)"),
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
    "mks937b": ModelEntry(
        "ionclock.drivers.vacuum_gauge:VacuumGauge937B",
        "ionclock.sim_instruments.mks937b:SimMKS937B",
        "MKS 937B vacuum gauge controller: the chamber pressure in Pa (RS-232/485 8N1, "
        "@aaa...;FF)"),
    "cnt91": ModelEntry(
        "ionclock.drivers.frequency_counter:FrequencyCounterCNT91",
        "ionclock.sim_instruments.cnt91:SimCNT91",
        "Pendulum CNT-91 frequency counter counting the clock laser's comb beat (USB/GPIB SCPI)"),
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


def _channel_creators(cls: type) -> dict[str, type]:
    """{attribute name: channel class} of the pymeasure channels `cls` declares (MRO order).

    pymeasure's ``Instrument.ChannelCreator(ChannelClass, id)`` stays on the class until an
    instance builds its channels, so the channels are known without connecting.
    """
    out: dict[str, type] = {}
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, attr in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)   # a subclass's attribute hides its bases' of the same name
            if isinstance(attr, CommonBase.BaseChannelCreator) and len(attr.pairs) == 1:
                out[name] = attr.pairs[0][0]
    return out


def _channel_id(name: str, prefix: str) -> int | str:
    suffix = name[len(prefix):]
    return int(suffix) if suffix.isdigit() else suffix


def channel_ids(model: str, prefix: str = "ch_", key: str = "model") -> tuple[int | str, ...]:
    """The ids of the channels the driver of `model` declares as ``<prefix><id>``.

    E.g. ``novatech409b`` ch_0..ch_3 -> (0, 1, 2, 3); ``keysight_e36312a`` -> (1, 2, 3);
    ``lakeshore218`` with prefix ``input_`` -> (1, ..., 8). Read from the driver class
    (drivers/), without connecting; numeric ids are ints. For a monitor's sensor inputs see
    `input_ids`.
    """
    names = _channel_creators(driver_class(model, key))
    return tuple(_channel_id(n, prefix) for n in names if n.startswith(prefix))


def input_ids(model: str, key: str = "model") -> tuple[int | str, ...]:
    """The sensor inputs of a monitor `model`, each read as its driver's ``input_<id>``.

    From the driver's `inputs` (the Lake Shore drivers: the inputs in ``KRDG? 0`` order):
    ``lakeshore218`` -> (1, ..., 8), ``lakeshore224`` -> ("A", "B", "C1", ..., "D5"); a model
    without them (a DAQ6510 scans card channels) has none. pymeasure's ``input_0`` of the 224
    (every input at once) is not a sensor input.
    """
    cls = driver_class(model, key)
    creators = _channel_creators(cls)
    return tuple(_channel_id(f"input_{n}", "input_") for n in getattr(cls, "inputs", ())
                 if f"input_{n}" in creators)


def describe_ids(ids) -> str:
    """Channel ids for a message: '1-8' for a run of integers, else 'A, B, C1'."""
    ids = tuple(ids)
    if len(ids) > 2 and all(isinstance(i, int) for i in ids) and list(ids) == list(
            range(ids[0], ids[0] + len(ids))):
        return f"{ids[0]}-{ids[-1]}"
    return ", ".join(str(i) for i in ids) or "none"


_CHANNEL_NAME = re.compile(r"([A-Za-z][A-Za-z0-9]*_)(\w+)")


def readable_properties(cls: type) -> tuple[str, ...]:
    """The public properties of a driver (or channel) class that can be read.

    Python properties with a getter, pymeasure's ``measurement`` and ``control`` included;
    a pymeasure ``setting`` (write-only: its getter raises) is not readable. Methods,
    channels and anything private or dunder are not properties.
    """
    out = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name, None)
        if not isinstance(attr, property) or attr.fget is None:
            continue
        try:   # pymeasure's getter of a setting: get_command=None, "can not be read"
            get_command = inspect.signature(attr.fget).parameters.get("get_command")
        except (TypeError, ValueError):
            get_command = None
        if get_command is not None and get_command.default is None:
            continue
        out.append(name)
    return tuple(out)


def _listed(names, limit: int = 12) -> str:
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "none"


def check_read_path(model: str, path: str, key: str) -> None:
    """Check a logger read path against what the driver of `model` declares.

    The path is zero or more channels (``input_3``, ``ch_1``: the pymeasure channels the
    driver declares) and then one readable property of the last (`readable_properties`):
    ``input_3.temperature``, ``ch_1.current``, ``voltage_dc``. Anything else, a private or
    dunder name, a method, a channel read as a number, is a `ConfigError` at `key` that says
    what there is. Nothing is connected.
    """
    module = MODELS[model].driver.partition(":")[0] if model in MODELS else ""
    cls = driver_class(model)
    parts = path.split(".")
    where = model
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part.startswith("_"):
            raise ConfigError(key, f"{path!r}: {part!r} is private; a read path names "
                                   "channels and readable properties only")
        creators = _channel_creators(cls)
        if part in creators:
            if not last:
                cls, where = creators[part], f"{where} {part}"
                continue
            props = readable_properties(creators[part])
            raise ConfigError(key, f"{part} is a channel of {model}, not a value: read one of "
                                   f"its properties ({', '.join(f'{part}.{p}' for p in props[:6])}"
                                   f"{', ...' if len(props) > 6 else ''})")
        if part in readable_properties(cls):
            if last:
                return
            raise ConfigError(key, f"{path!r}: {part!r} is a property of {where}; a read path "
                                   "ends at it")
        m = _CHANNEL_NAME.fullmatch(part)
        if m is not None and not last:
            prefix = m.group(1)
            ids = (input_ids(model) if prefix == "input_" and where == model else ()) or tuple(
                _channel_id(n, prefix) for n in creators if n.startswith(prefix))
            if ids:
                names = [f"{prefix}{i}" for i in ids]
                is_run = "-" in describe_ids(ids)   # a run of numbers: name its ends
                listed = f"{names[0]} to {names[-1]}" if is_run else ", ".join(names)
                raise ConfigError(key, f"{where} has no {part} (it has {listed}, as its driver "
                                       f"{module} declares)")
        if last:
            raise ConfigError(key, f"{where} has no readable property {part!r} (it has: "
                                   f"{_listed(readable_properties(cls))})")
        raise ConfigError(key, f"{where} has no channel {part!r} (its channels: "
                               f"{_listed(creators)})")


def channel_ratings(model: str) -> dict[int, tuple[float, float]] | None:
    """{channel: (V, A)} rating of each output of a supply `model` (its driver's table)."""
    entry = MODELS.get(model)
    if entry is None or entry.ratings is None:
        return None
    return dict(_load(entry.ratings))


def twin_locations() -> tuple[str, ...]:
    """The cryostat locations a thermometer twin's sensor can sit at."""
    from ionclock.sim_instruments.cryostat import LOCATIONS

    return tuple(LOCATIONS)


def check_twin_options(model: str, options: dict, key: str) -> None:
    """Check a twin's options before anything is built; a bad one is a `ConfigError` at `key`.

    The twin of `model` is built once, on no world, from `options` (a twin checks its own
    options where it is built: unknown names, inputs it does not have, values out of range),
    and every ``locations`` value must be a location of the cryostat twin; a DAQ6510's
    location keys must be channels of its cards (the twin takes any number).
    """
    entry = MODELS.get(model)
    if entry is None or entry.twin is None:
        raise ConfigError(key, f"model {model!r} has no twin to take options")
    try:
        _load(entry.twin)(None, **options)
    except (TypeError, ValueError) as err:
        raise ConfigError(key, f"{model} twin: {err}") from None
    locations = options.get("locations")
    if isinstance(locations, dict):
        known = twin_locations()
        for where, location in locations.items():
            if model == "keithley_daq6510":
                _check_daq_channel(where, options.get("cards", "7700"),
                                   f"{key}.locations.{where}")
            if location not in known:
                raise ConfigError(f"{key}.locations.{where}",
                                  f"unknown cryostat location {location!r} "
                                  f"(known: {', '.join(known)})")


def _check_daq_channel(channel: Any, cards: Any, key: str) -> None:
    """A DAQ6510 channel (slot * 100 + n) that the fitted cards have.

    The DAQ6510 twin takes any number as a sensor's channel; the driver's own check
    (drivers/keithley_daq6510.py `channel_list`, its CARDS: the 7700 instructions 077182400,
    channels 1-20 of each slot, 21-22 current only) says which exist.
    """
    from ionclock.drivers.keithley_daq6510 import channel_list

    text = str(channel)
    if not text.isdigit():
        raise ConfigError(key, f"{channel!r} is not a DAQ6510 channel number (e.g. 101)")
    try:
        channel_list([int(text)], wires=2, card=cards)
    except ValueError as err:
        raise ConfigError(key, str(err)) from None


def is_serial_url(resource: str) -> bool:
    """True for resources pyserial opens (device paths and pyserial URL handlers).

    Device paths: anything under ``/dev/``, and any other absolute path that is a character
    device (through its symlinks: a udev link, or the pty link of `ionclock twin-serve`).
    Other absolute paths are files (the wavemeter's ``libwlmData.so``).
    """
    if resource.startswith("/") and not resource.startswith("/dev/"):
        try:
            return stat.S_ISCHR(os.stat(resource).st_mode)
        except OSError:
            return False
    return resource.startswith(("/dev/", "socket://", "rfc2217://", "loop://", "COM",
                                "spy://", "alt://", "hwgrep://"))


def twin_options(role: str, entry: dict) -> dict | None:
    """The twin options of an ``[instruments.<role>]`` entry (None: the twin's defaults).

    A thermometer's ``locations`` (input -> cryostat location); an SC10 shutter's blade is
    named after its role (``shutter_854``), so the world knows which laser it blocks; a
    PrawnDO's ``wiring`` (line -> output bit), so the twin plays its outputs on those lines.
    """
    if entry.get("locations"):
        return {"locations": {int(k): v for k, v in entry["locations"].items()}}
    if entry.get("model") == "sc10":
        return {"shutter": role}
    if entry.get("model") == "prawndo":
        return {"wiring": dict(entry.get("wiring") or {})}
    return None


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

    With `resilient`, the driver comes wrapped in
    `ionclock.apparatus.resilience.ResilientInstrument`: on a lost link it reconnects here (same
    twin, or a fresh OS connection) with backoff and restores its setpoints. `resilience` holds the
    wrapper's options (``on_event``, ``clock``: default ``world.env.now`` for a twin, else
    `time.monotonic`, backoff times).
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

        def connect() -> Any:
            # A reconnect builds a new adapter and driver on the SAME twin (it keeps its state);
            # a twin that greets each new client (a TCP text server) is told by the optional
            # hook `connection_opened()`. Counted on the twin itself: a program started again
            # on the same apparatus (a twin kept across runs) is a new client too.
            n = getattr(twin, "clients_connected", 0) + 1
            twin.clients_connected = n
            hook = getattr(twin, "connection_opened", None)
            if n > 1 and hook is not None:
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
            if not issubclass(cls, CommonBase):
                # not a message-based instrument (the wavemeter's libwlmData: the resource
                # is a library path): the driver opens its resource itself
                return cls(resource, write_termination=wterm, read_termination=rterm,
                           visa_library=visa_library, **driver_options)
            # pyvisa's errors as the suite's (ionclock.apparatus.transport.VisaLinkAdapter): a lost
            # link must reach the servo as an error it holds over on
            adapter = VisaLinkAdapter(resource, visa_library=visa_library, name=resource,
                                      write_termination=wterm, read_termination=rterm)
            return cls(adapter, **driver_options)

        try:
            inst = connect()
        except Exception as err:  # pyvisa raises many types for an unreachable resource
            raise ConfigError(key + ".resource", f"cannot open {resource!r}: {err}") from None
    if not resilient:
        return inst
    from ionclock.apparatus.resilience import ResilientInstrument

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


def make_cd_lif_world(env: Any, twin: dict, seed: int = 0) -> Any:
    """The Cd+ LIF twin (`CdLifWorld`, decision 1200) on `env` from a LIF config's ``[twin]``.

    `twin` holds ``constants`` ("seed" or "drawn") and `LifParams` fields; a bad value is a
    `ConfigError` at ``twin``.
    """
    from ionclock.sim_instruments.cd_lif import CdLifWorld, LifParams

    params = {k: v for k, v in twin.items() if k not in ("seed", "constants")}
    try:
        return CdLifWorld(env, seed, LifParams(**params), twin.get("constants", "seed"))
    except (TypeError, ValueError) as err:
        raise ConfigError("twin", f"Cd+ LIF twin: {err}") from None


def characterisation_twin(world: Any, seed: int = 0) -> Any:
    """The characterisation physics on `world` (motion, micromotion, Zeeman; with the truth).

    The world's own (`ClockWorld.characterisation`, made once, on the world's seed), so the
    probe shots the world evaluates, the compensation supply's twin and a procedure's truth
    are one physics; `seed` is checked against the world's.
    """
    if int(seed) != int(world.seed):
        raise ValueError(f"seed {seed} is not the world's ({world.seed})")
    return world.characterisation


class _ReplicaRF:
    """What an SG380 twin driving the replica system's trap sees of the world (decision 0802).

    Its own RF physics (`TrapRF` on the stream ``(seed, 15, 7)``, output on, as the replica
    runs) and the RF hook switching the cryostat's RF heating. The twin has one thermal model
    for the operational and the replica system: the replica's RF moves every sensor by its RF
    share (the replica trap sensor by ~0.4 K), and the clock world's BBR truth with it.
    """

    def __init__(self, world: Any, seed: int):
        from ionclock.sim_instruments.trap_rf import TrapRF

        self.env = world.env
        self.world = world
        self.trap_rf = TrapRF(world.env, seed=(int(seed), 15, 7))
        self.rf_events: list[tuple[float, bool, float]] = []

    def rf_output_changed(self, on: bool, amplitude_dbm: float) -> None:
        self.rf_events.append((self.env.now, on, amplitude_dbm))
        cryostat = getattr(self.world, "cryostat", None)
        if cryostat is not None and cryostat.rf_on != bool(on):
            cryostat.set_rf(bool(on))


def replica_rf_world(world: Any, seed: int = 0) -> Any:
    """The world an ``sg380`` twin of the replica system's trap RF is bound to (`_ReplicaRF`)."""
    return _ReplicaRF(world, seed)


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
                     + ((e["laser"],) if e["laser"] else ())
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


def make_cd_world(env: Any, params: dict, seed: int = 0) -> Any:
    """The simulated 111/113Cd+ microwave clock (`CdClockWorld`) on `env`, from `params`.

    `params` are `CdTwinParams` fields (the Cd run builds them from its config); a bad value
    is a `ConfigError` at ``twin``.
    """
    from ionclock.sim_instruments.cd_clock import CdClockWorld, CdTwinParams

    try:
        p = CdTwinParams(**params)
    except (TypeError, ValueError) as err:
        raise ConfigError("twin", f"Cd+ twin: {err}") from None
    return CdClockWorld(env, p, seed=seed)
