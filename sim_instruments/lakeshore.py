"""Twins of the Lake Shore 218 (RS-232) and 224 (LAN) temperature monitors.

Each input holds a simulated PT100. Its true temperature comes from ``world.cryostat`` (the
input's cryostat location from the `locations` option) when the world has one, else from the
fixed `values` option. Like a real sensor, each PT100 departs from the IEC curve by its own
calibration error (`sensor_errors`, K; seeded draws by default): its resistance is
``cvd_resistance(T_true + error)``, the unit's kelvin reading applies the standard curve to
that resistance, and so reads ``T_true + error`` — exactly what a per-sensor calibration
(ionclock.rtd.SensorCalibration) must remove.

A disabled input, an input with no sensor (no location and no value), a non-platinum input type
and an ``open_inputs`` fault all read as overload text (`overload_text`, ``+OVL`` by default;
``"zero"`` gives the all-zero reading instead) with the RDGST? status bits set. Like the real
units, a rejected command gets no reply: the command-error (32) or execution-error (16) bit is
set in ``*ESR?`` instead. Faults (timeout, garble, disconnected, power_cycle) come from
`SimInstrument`.
"""

from __future__ import annotations

import random

from ionclock.rtd import T_MAX, T_MIN, cvd_resistance, cvd_temperature
from ionclock.sim_instruments.base import CommandError, SimInstrument

_CMD_ERROR = 32
_EXEC_ERROR = 16


def fixed_width(value: float, digits: int) -> str:
    """Format `value` as a Lake Shore fixed-width reading: sign + `digits` digits + '.'."""
    lead = max(len(str(int(abs(value)))), 1)
    decimals = max(digits - lead, 0)
    text = f"{value:+.{decimals}f}"
    if decimals == 0:
        text += "."
    return text


class _SimLakeShore(SimInstrument):
    """Shared parser and sensor model of the Lake Shore monitor twins."""

    input_terminator = b"\r\n"
    output_terminator = b"\r\n"
    inputs: tuple[str, ...] = ()
    digits: int = 5
    idn: str = ""
    default_locations: dict[str, str] = {}
    pt100_curve = 6

    def __init__(self, world=None, *, locations: dict | None = None, values: dict | None = None,
                 sensor_errors: dict | None = None, seed: int | None = 0,
                 overload_text: str = "+OVL", open_inputs=()):
        self.locations = {self._input_name(k): v for k, v in
                          (self.default_locations if locations is None else locations).items()}
        self.values = {self._input_name(k): float(v) for k, v in (values or {}).items()}
        rng = random.Random(seed)
        errs = {name: rng.gauss(0.0, 0.03) for name in self.inputs}
        errs.update({self._input_name(k): float(v) for k, v in (sensor_errors or {}).items()})
        self.sensor_errors = errs
        self.overload_text = overload_text
        self.open_inputs = {self._input_name(k) for k in open_inputs}
        super().__init__(world, seed)

    def _input_name(self, key) -> str:
        name = str(key).upper()
        if name not in self.inputs:
            raise ValueError(f"{self.name}: no input {key!r} (inputs: {', '.join(self.inputs)})")
        return name

    # --- state ------------------------------------------------------------------------
    def reset_settings(self) -> None:
        self.esr = 0
        self.enabled = {name: True for name in self.inputs}
        self.curves = {name: self.pt100_curve for name in self.inputs}
        self.filters = {name: (True, 8, 2) for name in self.inputs}

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

    def _valid(self, name: str) -> bool:
        return (self.enabled[name] and name not in self.open_inputs and self._platinum(name)
                and self.true_temperature(name) is not None)

    def resistance(self, name: str) -> float | None:
        """Return the sensor's resistance in Ω, or None when the input has no valid reading."""
        if not self._valid(name):
            return None
        t = self.true_temperature(name) + self.sensor_errors[name]
        return cvd_resistance(min(max(t, T_MIN), T_MAX))

    def kelvin(self, name: str) -> float | None:
        """Return the unit's kelvin reading (standard PT100 curve on the resistance)."""
        r = self.resistance(name)
        if r is None or self.curves[name] != self.pt100_curve:
            return None
        return cvd_temperature(r)

    def _format(self, value: float | None) -> str:
        if value is None:
            return fixed_width(0.0, self.digits) if self.overload_text == "zero" \
                else self.overload_text
        return fixed_width(value, self.digits)

    def status(self, name: str) -> int:
        if not self.enabled[name]:
            return 1
        if self.kelvin(name) is None:
            return 128 | 32
        return 0

    # --- parser -----------------------------------------------------------------------
    def error_reply(self, err: CommandError) -> str | None:
        self.esr |= int(err.code)
        return None

    def _reading_query(self, arg: str, read) -> str:
        if arg == "0":
            return ",".join(self._format(read(name)) for name in self.inputs)
        return self._format(read(self._arg_input(arg)))

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
            read = {"KRDG?": self.kelvin, "SRDG?": self.resistance,
                    "CRDG?": lambda n: None if self.kelvin(n) is None
                    else self.kelvin(n) - 273.15}[head]
            return self._reading_query(args[0], read)
        if head == "RDGST?" and len(args) == 1:
            return f"{self.status(self._arg_input(args[0])):03d}"
        if head == "INCRV?" and len(args) == 1:
            return f"{self.curves[self._arg_input(args[0])]:02d}"
        if head == "INCRV" and len(args) == 2:
            name = self._arg_input(args[0])
            self.curves[name] = self._int(args[1], 0, 59)
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

    def handle_model(self, head: str, args: list[str]):
        """Model-specific commands (override); return `_UNKNOWN` for none."""
        return _UNKNOWN


_UNKNOWN = object()


class SimLakeShore218(_SimLakeShore):
    """Twin of the Lake Shore 218 (inputs 1–8, groups A = 1–4 and B = 5–8; 9600 7O1 CR LF).

    Options: `locations` ({input: cryostat location}, default inputs 1–6 on the five
    operational sensors and the replica trap sensor, 7–8 empty), `values` (fixed K for
    standalone use), `sensor_errors` (K), `seed`, `overload_text`, `open_inputs`.
    """

    name = "sim-lakeshore218"
    inputs = tuple(str(n) for n in range(1, 9))
    digits = 5
    idn = "LSCI,MODEL218S,SIM0218,061407"
    default_locations = {"1": "ln2_bottom", "2": "endcap_1", "3": "endcap_2",
                         "4": "trap_holder", "5": "bbr_cavity", "6": "trap"}

    def reset_settings(self) -> None:
        super().reset_settings()
        self.group_types = {"A": 2, "B": 2}

    def _platinum(self, name: str) -> bool:
        return self.group_types["A" if int(name) <= 4 else "B"] in (2, 3, 4)

    def status(self, name: str) -> int:
        if not self.enabled[name]:
            return 0  # a disabled input has no status to report; its reading is overload text
        return super().status(name)

    def handle_model(self, head: str, args: list[str]):
        if head == "INTYPE?" and len(args) == 1:
            return str(self.group_types[self._group(args[0])])
        if head == "INTYPE" and len(args) == 2:
            self.group_types[self._group(args[0])] = self._int(args[1], 0, 5)
            return None
        if head == "INPUT?" and len(args) == 1:
            return str(int(self.enabled[self._arg_input(args[0])]))
        if head == "INPUT" and len(args) == 2:
            self.enabled[self._arg_input(args[0])] = bool(self._int(args[1], 0, 1))
            return None
        return _UNKNOWN

    @staticmethod
    def _group(arg: str) -> str:
        g = arg.strip().upper()
        if g not in ("A", "B"):
            raise CommandError(str(_EXEC_ERROR), f"no group {arg!r}")
        return g


class SimLakeShore224(_SimLakeShore):
    """Twin of the Lake Shore 224 (inputs A, B, C1–C5, D1–D5; LAN, CR LF).

    Same options as `SimLakeShore218`; default locations put the six sensors on A, B, C1–C4.
    ``INTYPE`` takes the 224's <type>,<autorange>,<range>,<compensation>,<units> (type 0
    disables the input, 2 is platinum RTD).
    """

    name = "sim-lakeshore224"
    inputs = ("A", "B", "C1", "C2", "C3", "C4", "C5", "D1", "D2", "D3", "D4", "D5")
    digits = 6
    idn = "LSCI,MODEL224,SIM0224,1.0"
    default_locations = {"A": "ln2_bottom", "B": "endcap_1", "C1": "endcap_2",
                         "C2": "trap_holder", "C3": "bbr_cavity", "C4": "trap"}

    def reset_settings(self) -> None:
        super().reset_settings()
        self.intype = {name: (2, 1, 0, 1, 1) for name in self.inputs}

    def _platinum(self, name: str) -> bool:
        return self.intype[name][0] == 2

    def handle_model(self, head: str, args: list[str]):
        if head == "INTYPE?" and len(args) == 1:
            return ",".join(str(v) for v in self.intype[self._arg_input(args[0])])
        if head == "INTYPE" and 2 <= len(args) <= 6:
            name = self._arg_input(args[0])
            limits = ((0, 3), (0, 1), (0, 8), (0, 1), (1, 3))
            new = list(self.intype[name])
            for i, arg in enumerate(args[1:]):
                new[i] = self._int(arg, *limits[i])
            self.intype[name] = tuple(new)
            self.enabled[name] = new[0] != 0
            return None
        return _UNKNOWN
