"""Twin of the MKS 937B vacuum gauge controller: the ``@aaa...;FF`` protocol over the chamber.

What the driver (drivers/vacuum_gauge.py) relies on, and where each behaviour comes from:

- Framing (937B Operation Manual §9.1 "Communication protocols", p. 86; the Controller
  Instruction Manual's §9.2, p. 70): a query is ``@<aaa><Command>?;FF``, a setting
  ``@<aaa><Command>!<parameter>;FF``; the reply ``@<aaa>ACK<Response>;FF``. Example from the
  manual: ``@003PR1?;FF`` answered ``@003ACK7.602E+2;FF``; ``@001BR!19200;FF`` answered
  ``@001ACK19200;FF``. 8 data bits, 1 stop bit, no parity, no handshake; 9600 to 115200 baud.
  The ``;FF`` is three characters, not a form feed: pymeasure's ``MKSInstrument`` reads up to
  ``;`` and then the two bytes ``FF`` (pymeasure/instruments/mksinst/mksinst.py).
- Address (same section; the MKS 946 manual §9.14 "System commands", the sister controller's
  command table: ``AD`` 001–253, "254 is reserved for broadcasting", default 253): the unit
  answers messages to its own address and to 254, always with its own address in the reply
  (937B manual §6.6.3: ``@254CPn!ON;FF`` answered ``@002ACKON;FF``). On RS-485 several units
  share the line, so a message to another address gets no reply here; a line that does not
  start with ``@`` and three digits is not addressed to anyone and gets none either (the
  twin's reading: nothing in the sources says what the unit sends).
- Error replies, ``@<aaa>NAK<code>;FF``: the MKS transducer manuals of the same protocol
  (902B manual, "Response Syntax (ACK/NAK)": ``@253NAK160;FF`` "command had an error —
  possible typo") list 160 unrecognized message, 169 invalid argument, 172 value out of
  range, 175 command/query character invalid (a ``!`` on a query-only command: the MKS 901P
  command list's example ``@253FV!;FF``), 180 protected setting; pymeasure's MKS937B maps
  ``NAK152`` to "not an ion gauge" (the ``Tn?`` status of a channel without one) and
  ``NAK160`` to "invalid command". The command set takes upper and lower case (902B manual).
- Pressure replies (``PRn?``, n = 1..6 for channels A1, A2, B1, B2, C1, C2; ``PRZ?`` all six,
  comma-separated; ``PCn?`` channel n's combination, n = 1, 2): a number in the controller's
  unit, written as the manual's example ``7.602E+2`` (four digits, unpadded exponent), or a
  status word instead of a number. The words are the ones the LNLS Sirius EPICS IOC matches on
  real 937Bs (github lnls-sirius/streamdevice-ioc, ``mks937b/server/protocol/
  mks937b_pressure.proto``: ``OVER``, ``ATM``, ``<1.00E-11``, ``RP_OFF``, ``OFF``, ``WAIT``,
  ``CTRL_OFF``, ``PROT_OFF``, ``NOGAUGE``, ``MISCONN``, ...). Below its range a gauge answers
  ``<`` and its lower limit in the present unit (``<1.00E-11`` in Torr for the cold cathode).
- Units (``U?`` / ``U!<unit>``: ``TORR``, ``mBAR``, ``PASCAL``, ``MICRON``; the spelling
  pymeasure's ``Unit`` and the LNLS protocol use; the 946 manual writes MBAR, accepted too).
  Every reading is in the selected unit.
- Ion gauge status ``Tn?`` (n = 1, 3, 5; 937B manual §9.6 "Cold cathode control commands":
  W = WAIT, O = OFF, G = GOOD, P = PROTECT, C = control, R = rear-panel off) and channel power
  ``CPn?`` / ``CPn!ON|OFF`` (same table; the reply repeats the state, §6.6.3).
- Before a reading is ready: a cold cathode switched on (``CPn!ON``, or at power-on) says
  ``WAIT`` for its start delay ``TDCn`` (§9.6: "Time delay for starting CCG, 3 to 300 secs")
  before it shows a pressure; ``T`` answers ``W`` meanwhile.
- Protect setpoint ``PROn`` (§9.6: 1e-5 to 1e-2 Torr, default 5e-3 Torr; §6.x: it turns the
  cold cathode's high voltage off, after which only a manual or serial command turns it back
  on): above it the gauge goes off and answers ``PROT_OFF``, ``T`` answers ``P``. (The twin
  looks at the pressure when the gauge is read, not in between.)

Sensors (option `sensors`, {channel: kind}): ``"cc"`` a cold-cathode (inverted magnetron,
MKS 423 I-MAG class, 1e-11 to 1e-2 Torr) on the chamber, ``"pr"`` a Pirani (5e-4 Torr to
atmosphere) on the same chamber; other channels have no gauge (``NOGAUGE``). Default: a cold
cathode on A1 and a Pirani on A2. The chamber is ``world.vacuum``
(sim_instruments/vacuum.py) where the world has one, else a `Vacuum` of its own at
`pressure_pa`. A gauge reads the chamber with its own seeded noise (`noise_rel`, rms
fraction; stream ``[seed, 22]``).

Faults: the base ones (timeout, garble, disconnected, power_cycle) plus ``unplug(channel)``
(``MISCONN``) and the chamber's own ``world.vacuum.leak(factor)``.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ionclock.sim_instruments.base import CommandError, SimInstrument
from ionclock.sim_instruments.vacuum import PA_PER_MBAR, PA_PER_TORR, Vacuum, VacuumParams

#: Pa per unit of each ``U`` setting (the wire spelling is `UNIT_WIRE`).
PA_PER_UNIT = {"TORR": PA_PER_TORR, "MBAR": PA_PER_MBAR, "PASCAL": 1.0,
               "MICRON": PA_PER_TORR * 1e-3}
UNIT_WIRE = {"TORR": "TORR", "MBAR": "mBAR", "PASCAL": "PASCAL", "MICRON": "MICRON"}

#: Range of each sensor kind, Torr (MKS datasheets: 423 I-MAG 1e-11..1e-2, 317 Pirani
#: 5e-4..atmosphere).
SENSOR_RANGE_TORR = {"cc": (1e-11, 1e-2), "pr": (5e-4, 1000.0)}
ION_GAUGES = frozenset({"cc"})

NAK_UNRECOGNIZED = "160"
NAK_INVALID_ARGUMENT = "169"
NAK_OUT_OF_RANGE = "172"
NAK_QUERY_CHARACTER = "175"
NAK_NOT_ION_GAUGE = "152"

_FRAME = re.compile(r"@(\d{3})(.*)", re.DOTALL)
_BODY = re.compile(r"([A-Za-z]+?)(\d*)([?!])(.*)", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)


def mks_number(value: float) -> str:
    """A value as the 937B writes it: four digits, unpadded exponent (``7.602E+2``)."""
    if value == 0:
        return "0.000E+0"
    e = math.floor(math.log10(abs(value)))
    m = value / 10.0 ** e
    if round(abs(m), 3) >= 10.0:
        m, e = m / 10.0, e + 1
    return f"{m:.3f}E{e:+d}"


class SimMKS937B(SimInstrument):
    """MKS 937B twin (see the module docstring for the sources of every behaviour).

    Options: ``address`` (1–253), ``unit`` (power-on unit), ``sensors`` ({channel: "cc" |
    "pr"}), ``pressure_pa`` (the chamber without a world's), ``noise_rel``, ``start_delay_s``
    (the cold cathodes' TDC), ``protect_torr`` (PRO), ``seed``.
    """

    input_terminator = b";FF"
    output_terminator = b";FF"
    name = "sim-mks937b"
    SERIAL = "1234567890"

    def __init__(self, world=None, address: int = 253, unit: str = "TORR",
                 sensors: dict | None = None, pressure_pa: float = 3e-9,
                 noise_rel: float = 0.02, start_delay_s: float = 10.0,
                 protect_torr: float = 5e-3, seed: int | None = 0):
        if not (isinstance(address, int) and 1 <= address <= 253):
            raise ValueError(f"address must be an integer 1-253 (254 is broadcast), "
                             f"got {address!r}")
        unit_name = str(unit).upper()
        if unit_name not in PA_PER_UNIT:
            raise ValueError(f"unit must be one of {', '.join(UNIT_WIRE.values())}, "
                             f"got {unit!r}")
        kinds = {1: "cc", 2: "pr"} if sensors is None else sensors
        self.sensors: dict[int, str] = {}
        for ch, kind in kinds.items():
            n = int(ch)
            if not 1 <= n <= 6:
                raise ValueError(f"sensors: channel {ch!r} is not 1-6 (A1, A2, B1, B2, C1, C2)")
            if kind not in SENSOR_RANGE_TORR:
                raise ValueError(f"sensors: kind {kind!r} of channel {ch} is not one of "
                                 f"{', '.join(SENSOR_RANGE_TORR)}")
            self.sensors[n] = kind
        if not (math.isfinite(noise_rel) and 0 <= noise_rel < 1):
            raise ValueError(f"noise_rel must be a fraction in [0, 1), got {noise_rel!r}")
        if not 3.0 <= start_delay_s <= 300.0:
            raise ValueError(f"start_delay_s must be 3-300 s (TDC), got {start_delay_s!r}")
        if not 1e-5 <= protect_torr <= 1e-2:
            raise ValueError(f"protect_torr must be 1e-5 to 1e-2 Torr (PRO), "
                             f"got {protect_torr!r}")
        self.address = address
        self.power_on_unit = unit_name
        self.noise_rel = float(noise_rel)
        self.power_on_delay_s = float(start_delay_s)
        self.power_on_protect_torr = float(protect_torr)
        self._noise = np.random.default_rng([seed or 0, 22])
        vacuum = getattr(world, "vacuum", None) if world is not None else None
        if vacuum is None:
            vacuum = Vacuum(getattr(world, "env", None), VacuumParams(pressure_pa=pressure_pa),
                            seed=seed or 0)
        self.vacuum = vacuum
        self.unplugged: set[int] = set()
        super().__init__(world, seed)
        # The controller ran before the twin's start: its gauges are up, not starting.
        self.wait_until = {ch: -math.inf for ch in self.wait_until}

    # --- state ---------------------------------------------------------------------------
    def _now(self) -> float:
        env = getattr(self.vacuum, "env", None)
        return env.now if env is not None else 0.0

    def reset_settings(self) -> None:
        self.unit = self.power_on_unit
        self.power = {ch: True for ch in range(1, 7)}
        self.protected = {ch: False for ch in range(1, 7)}
        self.start_delay = {ch: self.power_on_delay_s for ch in range(1, 7)}
        self.protect_torr = {ch: self.power_on_protect_torr for ch in range(1, 7)}
        now = self._now() if hasattr(self, "vacuum") else 0.0
        self.wait_until = {ch: now + self.start_delay[ch] for ch in range(1, 7)}

    def unplug(self, channel: int, unplugged: bool = True) -> None:
        """Pull (or reconnect) the cable of `channel`'s gauge: it reads ``MISCONN``."""
        (self.unplugged.add if unplugged else self.unplugged.discard)(int(channel))

    # --- readings ------------------------------------------------------------------------
    def _update_protect(self, ch: int, p_torr: float) -> None:
        if (self.sensors.get(ch) in ION_GAUGES and self.power[ch] and not self.protected[ch]
                and p_torr > self.protect_torr[ch]):
            self.protected[ch] = True   # the protect setpoint turns the high voltage off

    def status_letter(self, ch: int) -> str:
        """``Tn?``: W wait, O off, G good, P protect (937B manual §9.6)."""
        if self.protected[ch]:
            return "P"
        if not self.power[ch]:
            return "O"
        if self._now() < self.wait_until[ch]:
            return "W"
        return "G"

    def reading(self, ch: int) -> str:
        """What ``PR<ch>?`` answers: a number in the present unit, or a status word."""
        kind = self.sensors.get(ch)
        if kind is None:
            return "NOGAUGE"
        if ch in self.unplugged:
            return "MISCONN"
        p_pa = self.vacuum.pressure_pa()
        p_torr = p_pa / PA_PER_TORR
        self._update_protect(ch, p_torr)
        if self.protected[ch]:
            return "PROT_OFF"
        if not self.power[ch]:
            return "OFF"
        if kind in ION_GAUGES and self._now() < self.wait_until[ch]:
            return "WAIT"
        lo, hi = SENSOR_RANGE_TORR[kind]
        per_unit = PA_PER_UNIT[self.unit]
        if p_torr < lo:
            return "<" + f"{lo * PA_PER_TORR / per_unit:.2E}"
        if p_torr > hi:
            return "ATM" if kind == "pr" else "OVER"
        noisy = p_pa * (1.0 + self.noise_rel * float(self._noise.standard_normal()))
        return mks_number(noisy / per_unit)

    # --- protocol ------------------------------------------------------------------------
    def error_reply(self, err: CommandError) -> str | None:
        return f"@{self.address:03d}NAK{err.code}"

    def line_too_long(self) -> str | None:
        return None

    def handle(self, line: str) -> str | None:
        frame = _FRAME.search(line)   # "must begin with the attention character @" (902B)
        if frame is None:
            return None
        to = int(frame.group(1))
        if to != self.address and to != 254:
            return None                      # another unit's message on the shared line
        body = _BODY.fullmatch(frame.group(2))
        if body is None:
            raise CommandError(NAK_UNRECOGNIZED, f"unrecognized message {line!r}")
        cmd, n_text, op, arg = body.group(1).upper(), body.group(2), body.group(3), body.group(4)
        data = self._command(cmd, n_text, op, arg.strip())
        return f"@{self.address:03d}ACK{data}"

    def _channel(self, n_text: str, allowed) -> int:
        if not n_text.isdigit() or int(n_text) not in allowed:
            raise CommandError(NAK_UNRECOGNIZED, f"no channel {n_text!r}")
        return int(n_text)

    @staticmethod
    def _query_only(op: str) -> None:
        if op != "?":
            raise CommandError(NAK_QUERY_CHARACTER, "query-only command")

    def _command(self, cmd: str, n_text: str, op: str, arg: str) -> str:
        if op == "?" and arg:
            raise CommandError(NAK_UNRECOGNIZED, "a query takes no parameter")
        if cmd == "PR" and n_text:
            ch = self._channel(n_text, range(1, 7))
            self._query_only(op)
            return self.reading(ch)
        if cmd == "PRZ" and not n_text:
            self._query_only(op)
            return ",".join(self.reading(ch) for ch in range(1, 7))
        if cmd == "PC" and n_text:
            ch = self._channel(n_text, (1, 2))
            self._query_only(op)
            first = self.reading(2 * ch - 1)   # combination: the ion gauge, else its partner
            return first if _NUMBER.fullmatch(first) else self.reading(2 * ch)
        if cmd == "U" and not n_text:
            if op == "?":
                return UNIT_WIRE[self.unit]
            name = arg.upper()
            if name not in PA_PER_UNIT:
                raise CommandError(NAK_INVALID_ARGUMENT, f"unit {arg!r}")
            self.unit = name
            return UNIT_WIRE[name]
        if cmd == "CP" and n_text:
            ch = self._channel(n_text, range(1, 7))
            if op == "?":
                return "ON" if self.power[ch] and not self.protected[ch] else "OFF"
            state = arg.upper()
            if state not in ("ON", "OFF"):
                raise CommandError(NAK_INVALID_ARGUMENT, f"power {arg!r}")
            self._set_power(ch, state == "ON")
            return state
        if cmd == "T" and n_text:
            ch = self._channel(n_text, range(1, 7))
            self._query_only(op)
            if self.sensors.get(ch) not in ION_GAUGES:
                raise CommandError(NAK_NOT_ION_GAUGE, f"channel {ch} has no ion gauge")
            return self.status_letter(ch)
        if cmd == "TDC" and n_text:
            ch = self._channel(n_text, (1, 3, 5))
            if op == "?":
                return f"{self.start_delay[ch]:g}"
            self.start_delay[ch] = self._number(arg, 3.0, 300.0)
            return f"{self.start_delay[ch]:g}"
        if cmd == "PRO" and n_text:
            ch = self._channel(n_text, (1, 3, 5))
            if op == "?":
                return mks_number(self.protect_torr[ch] * PA_PER_TORR / PA_PER_UNIT[self.unit])
            value = self._number(arg, -math.inf, math.inf) * PA_PER_UNIT[self.unit] / PA_PER_TORR
            if not 1e-5 * (1 - 1e-9) <= value <= 1e-2 * (1 + 1e-9):
                raise CommandError(NAK_OUT_OF_RANGE, f"protect setpoint {arg!r}")
            self.protect_torr[ch] = value
            return mks_number(value * PA_PER_TORR / PA_PER_UNIT[self.unit])
        if cmd == "SN" and not n_text:
            self._query_only(op)
            return self.SERIAL
        if cmd == "MD" and not n_text:
            self._query_only(op)
            return "937B"
        if cmd == "AD" and not n_text:
            self._query_only(op)   # the address is set from the front panel here
            return f"{self.address:03d}"
        raise CommandError(NAK_UNRECOGNIZED, f"unrecognized command {cmd}{n_text}{op}")

    @staticmethod
    def _number(arg: str, lo: float, hi: float) -> float:
        if not _NUMBER.fullmatch(arg):
            raise CommandError(NAK_INVALID_ARGUMENT, f"not a number: {arg!r}")
        value = float(arg)
        if not lo <= value <= hi:
            raise CommandError(NAK_OUT_OF_RANGE, f"{arg} outside {lo:g}..{hi:g}")
        return value

    def _set_power(self, ch: int, on: bool) -> None:
        if on:
            if not self.power[ch] or self.protected[ch]:
                self.wait_until[ch] = self._now() + self.start_delay[ch]
            self.power[ch] = True
            self.protected[ch] = False
        else:
            self.power[ch] = False
            self.protected[ch] = False
