"""Twins of the Lake Shore 218 (RS-232) and 224 (LAN) temperature monitors.

Each input holds a simulated PT100. Its true temperature comes from ``world.cryostat`` (the
input's cryostat location from the `locations` option) when the world has one, else from the
fixed `values` option. Like a real sensor, each PT100 departs from the IEC curve by its own
calibration error (`sensor_errors`, K; seeded draws by default): its resistance is
``cvd_resistance(T_true + error)``, the unit's kelvin reading applies the standard curve to
that resistance, and so reads ``T_true + error`` — exactly what a per-sensor calibration
(ionclock.physics.rtd.SensorCalibration) must remove.

Inputs that have no valid reading answer as the real units do, not with a convenient marker:

- **open** (an ``open_input(n)`` fault, no sensor attached, or a non-platinum input type):
  with ``open_reading="clamp"`` (default) a clamped *number*: kelvin `clamp_kelvin` (480 K:
  a real 218E answers ``+480.00`` on open inputs, IRTF SpeX LS218 notes,
  irtfweb2.ifa.hawaii.edu/~s2/software/ls218/ls218.html; the 224 is assumed to clamp the same
  way) and sensor units `clamp_units` (the input range's full scale); ``"overload"`` gives the
  overload text `overload_text` (``+OVL``, the form PROTOCOLS.md and older notes describe) and
  ``"zero"`` the all-zero reading. ``RDGST?`` reports 32 | 128 (temperature over range,
  sensor units over range: 218 manual §6.3 RDGST?, python-driver
  ``Model224ReadingStatusRegister``).
- **disabled** (``INPUT n,0`` on the 218, ``INTYPE x,0`` on the 224): with
  ``disabled_reading="stale"`` (default) kelvin/Celsius keep the last value the input read
  before it was disabled and sensor units read 0 — what a Lake Shore Model 240 does
  (simonsobs/socs issue 542); ``"open"`` answers like an open input. ``RDGST?`` reads 000
  (nothing is measured); the manuals do not say, and 000 is the case a driver must survive.
- **no curve** (224, curve 0): kelvin reads 0 (the Model 372 manual's rule, "if no curve is
  present ... the returned reading will be zero"), ``RDGST?`` 1 (invalid reading).
- **wrong curve** (218, a curve other than the PT100 curve on a PT100): answered like an open
  input's kelvin, ``RDGST?`` 32; the sensor-units reading stays valid.

224 ``INCRV`` follows the unit: a standard curve that does not fit the input's sensor type is
refused silently (the input is left on curve 0, no ``*ESR?`` bit) — Lake Shore's own driver
reads ``INCRV?`` back for exactly this (python-driver ``Model224.set_input_curve``); changing
an input's type drops a curve that no longer fits. User curves (21–59) are taken on any type
(the twin keeps no curve headers).

Reading formats: ``reading_format="fixed"`` (default) is the manuals' fixed width (218
``±nn.nnn``, 224 sign + six digits + point); ``"free"`` is the plain float text of Lake Shore's
driver tests (``567.8``, ``77``). Like the real units, a rejected command gets no reply: the
command-error (32) or execution-error (16) bit is set in ``*ESR?`` instead. Faults (timeout,
garble, disconnected, power_cycle) come from `SimInstrument`; `open_input(n)` /
`reconnect_input(n)` inject an open sensor (also the `open_inputs` option and set).
"""

from __future__ import annotations

import random

from ionclock.physics.rtd import T_MAX, T_MIN, cvd_resistance, cvd_temperature
from ionclock.sim_instruments.base import CommandError, SimInstrument

_CMD_ERROR = 32
_EXEC_ERROR = 16
#: RDGST? bits the twins set.
TEMP_OVER = 32
UNITS_OVER = 128
INVALID = 1

OPEN_READINGS = ("clamp", "overload", "zero")
DISABLED_READINGS = ("stale", "open")
READING_FORMATS = ("fixed", "free")


def fixed_width(value: float, digits: int) -> str:
    """Format `value` as a Lake Shore fixed-width reading: sign + `digits` digits + '.'."""
    lead = max(len(str(int(abs(value)))), 1)
    decimals = max(digits - lead, 0)
    text = f"{value:+.{decimals}f}"
    if decimals == 0:
        text += "."
    return text


def free_format(value: float, digits: int) -> str:
    """Format `value` as plain float text (``79.512``, ``567.8``, ``77``): no sign, no padding."""
    return f"{round(value, max(digits - len(str(int(abs(value)))), 0)):.{digits}g}"


class _SimLakeShore(SimInstrument):
    """Shared parser and sensor model of the Lake Shore monitor twins."""

    input_terminator = b"\r\n"
    output_terminator = b"\r\n"
    inputs: tuple[str, ...] = ()
    digits: int = 5
    idn: str = ""
    default_locations: dict[str, str] = {}
    pt100_curve = 6
    default_clamp_units = 250.0

    def __init__(self, world=None, *, locations: dict | None = None, values: dict | None = None,
                 sensor_errors: dict | None = None, seed: int | None = 0,
                 open_reading: str = "clamp", overload_text: str = "+OVL",
                 clamp_kelvin: float = 480.0, clamp_units: float | None = None,
                 disabled_reading: str = "stale", reading_format: str = "fixed",
                 open_inputs=()):
        for option, value, allowed in (("open_reading", open_reading, OPEN_READINGS),
                                       ("disabled_reading", disabled_reading, DISABLED_READINGS),
                                       ("reading_format", reading_format, READING_FORMATS)):
            if value not in allowed:
                raise ValueError(f"{self.name}: {option} must be one of {allowed}, got {value!r}")
        self.locations = {self._input_name(k): v for k, v in
                          (self.default_locations if locations is None else locations).items()}
        self.values = {self._input_name(k): float(v) for k, v in (values or {}).items()}
        rng = random.Random(seed)
        errs = {name: rng.gauss(0.0, 0.03) for name in self.inputs}
        errs.update({self._input_name(k): float(v) for k, v in (sensor_errors or {}).items()})
        self.sensor_errors = errs
        self.open_reading = open_reading
        self.overload_text = overload_text
        self.clamp_kelvin = float(clamp_kelvin)
        self.clamp_units = float(self.default_clamp_units if clamp_units is None
                                 else clamp_units)
        self.disabled_reading = disabled_reading
        self.reading_format = reading_format
        self.open_inputs = {self._input_name(k) for k in open_inputs}
        super().__init__(world, seed)

    def _input_name(self, key) -> str:
        name = str(key).upper()
        if name not in self.inputs:
            raise ValueError(f"{self.name}: no input {key!r} (inputs: {', '.join(self.inputs)})")
        return name

    # --- fault injection ----------------------------------------------------------------
    def open_input(self, key) -> None:
        """Open the sensor at input `key` (a broken lead): it reads as an open input."""
        self.open_inputs.add(self._input_name(key))

    def reconnect_input(self, key) -> None:
        """Undo `open_input`: the sensor at input `key` is connected again."""
        self.open_inputs.discard(self._input_name(key))

    # --- state ------------------------------------------------------------------------
    def reset_settings(self) -> None:
        self.esr = 0
        self.enabled = {name: True for name in self.inputs}
        self.curves = {name: self.pt100_curve for name in self.inputs}
        self.filters = {name: (True, 8, 2) for name in self.inputs}
        self.stale = {name: None for name in self.inputs}

    # --- sensor model -------------------------------------------------------------------
    def true_temperature(self, name: str) -> float | None:
        """Return the true temperature in K at input `name`'s sensor (None: no sensor attached)."""
        cryostat = getattr(self.world, "cryostat", None) if self.world is not None else None
        location = self.locations.get(name)
        if cryostat is not None and location is not None:
            return float(cryostat.temperature(location))
        if name in self.values:
            return self.values[name]
        if location is not None:
            return 79.5  # standalone: a sensor in a cryostat that is not simulated
        return None

    def _platinum(self, name: str) -> bool:
        return True

    def _connected(self, name: str) -> bool:
        """A platinum input with an unbroken sensor attached (whatever its enable state)."""
        return (name not in self.open_inputs and self._platinum(name)
                and self.true_temperature(name) is not None)

    def _measured_resistance(self, name: str) -> float | None:
        if not self._connected(name):
            return None
        t = self.true_temperature(name) + self.sensor_errors[name]
        return cvd_resistance(min(max(t, T_MIN), T_MAX))

    def _measured_kelvin(self, name: str) -> float | None:
        r = self._measured_resistance(name)
        if r is None or self.curves[name] != self.pt100_curve:
            return None
        return cvd_temperature(r)

    def state(self, name: str) -> str:
        """What input `name` measures: "ok", "disabled", "open" or "curve" (no usable curve)."""
        if not self.enabled[name]:
            return "disabled"
        if not self._connected(name):
            return "open"
        if self.curves[name] != self.pt100_curve:
            return "curve"
        return "ok"

    def resistance(self, name: str) -> float | None:
        """Return the sensor's resistance in Ω, or None when the input has no valid reading."""
        return self._measured_resistance(name) if self.state(name) in ("ok", "curve") else None

    def kelvin(self, name: str) -> float | None:
        """Return the unit's valid kelvin reading (standard PT100 curve), or None."""
        return self._measured_kelvin(name) if self.state(name) == "ok" else None

    def status(self, name: str) -> int:
        """RDGST? bits of input `name` (module docstring)."""
        state = self.state(name)
        if state == "open":
            return TEMP_OVER | UNITS_OVER
        if state == "curve":
            return self._curve_status()
        return 0

    def _curve_status(self) -> int:
        return TEMP_OVER

    def _curve_kelvin_answer(self, quantity: str) -> str:
        """What a kelvin/Celsius query answers on an input without a usable curve."""
        return self._invalid_answer(quantity)

    # --- answers ------------------------------------------------------------------------
    def _number(self, value: float) -> str:
        if self.reading_format == "free":
            return free_format(value, self.digits)
        return fixed_width(value, self.digits)

    def _invalid_answer(self, quantity: str) -> str:
        """An open input's answer to a reading query of `quantity` ("K", "S", "C")."""
        if self.open_reading == "overload":
            return self.overload_text
        if self.open_reading == "zero":
            return self._number(0.0)
        return self._number({"K": self.clamp_kelvin, "C": self.clamp_kelvin - 273.15,
                             "S": self.clamp_units}[quantity])

    def reading(self, name: str, quantity: str) -> str:
        """The reply to ``KRDG?`` ("K"), ``SRDG?`` ("S") or ``CRDG?`` ("C") for input `name`."""
        state = self.state(name)
        if state == "disabled":
            if self.disabled_reading == "open":
                return self._invalid_answer(quantity)
            stale = self.stale[name]
            if quantity == "S" or stale is None:
                return self._number(0.0)
            return self._number(stale if quantity == "K" else stale - 273.15)
        if state == "open":
            return self._invalid_answer(quantity)
        if quantity == "S":
            return self._number(self._measured_resistance(name))
        if state == "curve":
            return self._curve_kelvin_answer(quantity)
        kelvin = self._measured_kelvin(name)
        return self._number(kelvin if quantity == "K" else kelvin - 273.15)

    def _set_enabled(self, name: str, enabled: bool) -> None:
        if self.enabled[name] and not enabled:
            # the last reading before the input stops being scanned (a disabled input's stale value)
            self.stale[name] = self._measured_kelvin(name) if self.state(name) == "ok" else None
        self.enabled[name] = enabled

    # --- parser -----------------------------------------------------------------------
    def error_reply(self, err: CommandError) -> str | None:
        self.esr |= int(err.code)
        return None

    def _reading_query(self, arg: str, quantity: str) -> str:
        if arg == "0":
            return ",".join(self.reading(name, quantity) for name in self.inputs)
        return self.reading(self._arg_input(arg), quantity)

    def _arg_input(self, arg: str) -> str:
        name = arg.strip().upper()
        if name not in self.inputs:
            raise CommandError(str(_EXEC_ERROR), f"no input {arg!r}")
        return name

    @staticmethod
    def _int(arg: str, lo: int, hi: int) -> int:
        arg = arg.strip()
        if not (arg.isascii() and arg.isdigit()) or not lo <= int(arg) <= hi:
            raise CommandError(str(_EXEC_ERROR), f"bad parameter {arg!r}")
        return int(arg)

    def handle(self, line: str) -> str | None:
        text = line.strip()
        head, _, rest = text.partition(" ")
        head = head.upper()
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        if head == "*IDN?":
            return self.idn
        if head == "*ESR?":
            value, self.esr = self.esr, 0
            return f"{value:03d}"
        if head == "*CLS":
            self.esr = 0
            return None
        if head == "*RST":
            self.reset_settings()
            return None
        if head in ("KRDG?", "SRDG?", "CRDG?") and len(args) == 1:
            return self._reading_query(args[0], head[0] if head != "SRDG?" else "S")
        if head == "RDGST?" and len(args) == 1:
            return f"{self.status(self._arg_input(args[0])):03d}"
        if head == "INCRV?" and len(args) == 1:
            return f"{self.curves[self._arg_input(args[0])]:02d}"
        if head == "INCRV" and len(args) == 2:
            name = self._arg_input(args[0])
            self.set_curve(name, self._int(args[1], 0, self.max_curve))
            return None
        if head == "FILTER?" and len(args) == 1:
            on, points, window = self.filters[self._arg_input(args[0])]
            return f"{int(on)},{points:02d},{window:02d}"
        if head == "FILTER" and len(args) == 4:
            name = self._arg_input(args[0])
            self.filters[name] = (bool(self._int(args[1], 0, 1)), self._int(args[2], 2, 64),
                                  self._int(args[3], 1, 10))
            return None
        reply = self.handle_model(head, args)
        if reply is _UNKNOWN:
            raise CommandError(str(_CMD_ERROR), f"unknown command {text!r}")
        return reply

    max_curve = 59

    def set_curve(self, name: str, curve: int) -> None:
        """``INCRV`` after its range check (models may refuse a curve here)."""
        self.curves[name] = curve

    def handle_model(self, head: str, args: list[str]):
        """Model-specific commands (override); return `_UNKNOWN` for none."""
        return _UNKNOWN


_UNKNOWN = object()


class SimLakeShore218(_SimLakeShore):
    """Twin of the Lake Shore 218 (inputs 1–8, groups A = 1–4 and B = 5–8; 9600 7O1 CR LF).

    Options: `locations` ({input: cryostat location}, default inputs 1–6 on the five
    operational sensors and the replica trap sensor, 7–8 empty), `values` (fixed K for
    standalone use), `sensor_errors` (K), `seed`, `open_reading` ("clamp", "overload",
    "zero"), `overload_text`, `clamp_kelvin` (K), `clamp_units` (Ω, default 250: the
    platinum-250 range's full scale), `disabled_reading` ("stale", "open"), `reading_format`
    ("fixed", "free"), `open_inputs`.
    """

    name = "sim-lakeshore218"
    inputs = tuple(str(n) for n in range(1, 9))
    digits = 5
    idn = "LSCI,MODEL218S,SIM0218,061407"
    default_locations = {"1": "ln2_bottom", "2": "endcap_1", "3": "endcap_2",
                         "4": "trap_holder", "5": "bbr_cavity", "6": "trap"}
    max_curve = 28

    def reset_settings(self) -> None:
        super().reset_settings()
        self.group_types = {"A": 2, "B": 2}

    def _platinum(self, name: str) -> bool:
        return self.group_types["A" if int(name) <= 4 else "B"] in (2, 3, 4)

    def handle_model(self, head: str, args: list[str]):
        if head == "INTYPE?" and len(args) == 1:
            return str(self.group_types[self._group(args[0])])
        if head == "INTYPE" and len(args) == 2:
            self.group_types[self._group(args[0])] = self._int(args[1], 0, 5)
            return None
        if head == "INPUT?" and len(args) == 1:
            return str(int(self.enabled[self._arg_input(args[0])]))
        if head == "INPUT" and len(args) == 2:
            self._set_enabled(self._arg_input(args[0]), bool(self._int(args[1], 0, 1)))
            return None
        return _UNKNOWN

    @staticmethod
    def _group(arg: str) -> str:
        g = arg.strip().upper()
        if g not in ("A", "B"):
            raise CommandError(str(_EXEC_ERROR), f"no group {arg!r}")
        return g


#: INTYPE sensor type each standard curve is for. 2 (DT-670 diode), 6 (PT-100) and 8–10 (RX
#: NTC) are the Model 346 manual's standard curve list (manuals.lakeshore.com, Curve Related
#: Commands); 1, 3, 4 (diodes) and 7 (PT-1000) follow Lake Shore's usual numbering, assumed.
CURVE_KINDS_224: dict[int, int] = {1: 1, 2: 1, 3: 1, 4: 1, 6: 2, 7: 2, 8: 3, 9: 3, 10: 3}


class SimLakeShore224(_SimLakeShore):
    """Twin of the Lake Shore 224 (inputs A, B, C1–C5, D1–D5; LAN, CR LF).

    Same options as `SimLakeShore218` (`clamp_units` default 10 kΩ, the top platinum range);
    default locations put the six sensors on A, B, C1–C4. ``INTYPE`` takes the 224's
    <type>,<autorange>,<range>,<compensation>,<units> (type 0 disables the input, 1 diode,
    2 platinum RTD, 3 NTC RTD). ``INCRV`` refuses (curve 0, silently) a standard curve made
    for another sensor type (`CURVE_KINDS_224`).
    """

    name = "sim-lakeshore224"
    inputs = ("A", "B", "C1", "C2", "C3", "C4", "C5", "D1", "D2", "D3", "D4", "D5")
    digits = 6
    idn = "LSCI,MODEL224,SIM0224,1.0"
    default_locations = {"A": "ln2_bottom", "B": "endcap_1", "C1": "endcap_2",
                         "C2": "trap_holder", "C3": "bbr_cavity", "C4": "trap"}
    default_clamp_units = 10000.0

    def reset_settings(self) -> None:
        super().reset_settings()
        self.intype = {name: (2, 1, 0, 1, 1) for name in self.inputs}

    def _platinum(self, name: str) -> bool:
        return self.intype[name][0] == 2

    def _curve_status(self) -> int:
        return INVALID

    def _curve_kelvin_answer(self, quantity: str) -> str:
        # No curve: the reading is zero (Model 372 manual, RDGK?: "If no curve is present
        # for the channel, the returned reading will be zero"); in °C that is -273.15.
        return self._number(0.0 if quantity == "K" else -273.15)

    def fits(self, name: str, curve: int) -> bool:
        """Whether `curve` fits input `name`'s sensor type (user curves 21–59 fit any type)."""
        if curve == 0 or curve >= 21:
            return True
        return CURVE_KINDS_224.get(curve) == self.intype[name][0]

    def set_curve(self, name: str, curve: int) -> None:
        # A curve for another sensor type is refused without an error: curve 0 (none).
        self.curves[name] = curve if self.fits(name, curve) else 0

    def handle_model(self, head: str, args: list[str]):
        if head == "INTYPE?" and len(args) == 1:
            return ",".join(str(v) for v in self.intype[self._arg_input(args[0])])
        if head == "INTYPE" and 2 <= len(args) <= 6:
            name = self._arg_input(args[0])
            limits = ((0, 3), (0, 1), (0, 8), (0, 1), (1, 3))
            new = list(self.intype[name])
            for i, arg in enumerate(args[1:]):
                new[i] = self._int(arg, *limits[i])
            self._set_enabled(name, new[0] != 0)
            self.intype[name] = tuple(new)
            if not self.fits(name, self.curves[name]):
                self.curves[name] = 0
            return None
        return _UNKNOWN
