"""Twin of a Pendulum CNT-91 counting the clock laser's beat with a frequency comb.

The physics: the comb's lines sit at ``n·f_rep + f_ceo``; the light sent to it is the
cavity-stabilised clock laser before its double-pass AOM (the pick-off a lab sends over a
noise-cancelled fibre), i.e. ``nu0 + world.cavity_offset_hz(t) + light_offset_hz`` with
``light_offset_hz = -aom_passes · aom_center_hz`` by default (sim_instruments/world.py: the
cavity light is ``nu0 - 2 f_AOM,centre`` plus the laser's offset, drift, flicker and
jumps). The beat counted on input A is ``|light - (n·f_rep + f_ceo)|`` with ``n`` the comb
line nearest the laser's nominal frequency (`mode_number`, sign `beat_sign`); it is computed
from exact integers so that no digit of the 4e14 Hz optical frequency is lost. So a lab's
reference recovers ``cavity_offset_hz = n·f_rep + f_ceo + beat_sign·beat - light_offset_hz
- nu0`` (what servo/clock_output.py's `FrequencyReference` gives). The counter adds its own
resolution noise (`resolution_rel` × beat / gate, about the 12 digits per second the CNT-91
is specified for) from its own stream ``[seed, 31]``. Inputs B, C and E see no signal; the
internal reference (@6) reads 10 MHz.

A counter counts cycles over its gate, so a measurement started by ``:INIT`` and fetched by
``:FETC?`` is the beat's mean over the gate that began at the ``:INIT`` (handbook p. 8-44:
INITiate starts the measurement; the result is the frequency over the measuring time), from
the world's `cavity_mean_hz` where it has one (exact for the drift and the flicker grid); the
one-query forms ``:READ?`` and ``:MEAS:FREQ?`` answer the laser at the query's instant (an
in-process twin answers at once; over a 1 s gate the cavity drifts by 0.05 Hz). The world's
laser is a function of its seed and the time alone (decision 0307: the flicker has its own
streams), so asking it, at any time and as often as the counter likes, changes none of the
ion's draws: a run with the counter is draw-for-draw the run without it.

The protocol, from the CNT-90/91 Programmer's Handbook (4031 600 90201; pages are its own):
LF-terminated SCPI, short and long forms, any case, optional leading colon, several units
per line separated by ``;`` (p. 3-7ff). Implemented: ``*IDN?`` (p. 8-133: ``<manufacturer>,
<model>, <serial>, <firmware>``), ``*RST``, ``*CLS``, ``*OPC?``, ``:SYST:ERR?`` (p. 3-17:
``<code>,"<text>"``, ``0,"No error"``), ``:CONF:FREQ [(@n)]`` (p. 8-28; resets the other
settings to ``*RST``, p. 8-56), ``:MEAS:FREQ? [<exp>[,<res>]][,(@n)]`` (p. 8-60: ABORt;
CONFigure; READ?), ``:READ?`` (p. 8-88), ``:INIT`` and ``:INIT:CONT`` (p. 8-44), ``:FETC?``
(p. 8-34), ``:ABOR``, ``:ACQ:APER`` (p. 8-92: 20 ns to 1000 s, ``*RST`` 10 ms),
``:SYST:TOUT`` (p. 8-118: ``*RST`` 0; a query returns 1 or 0, p. 3-9) and ``:SYST:TOUT:TIME``
(p. 8-119: 0.01 to 1000 s, ``*RST`` 0.1 s), ``:FORM ASC`` (binary formats are not modelled:
-221). Results go out as ``+9.999992027E+06`` (pymeasure's CNT91 tests, from a real unit)
with 12 significant digits per second of gate (the handbook's ``1.78112526833E+009``).

Errors go to the queue (read by ``:SYST:ERR?``) and a query that failed sends nothing
(IEEE 488.2): -113 "Undefined header", -104 "Data type error", -222 "Data out of range",
-221 "Settings conflict" (ch. 7, "Error Messages").

Before a result is ready (pp. 8-34, 8-36): ``:FETC?`` with no measurement started queues -230
"Data corrupt or stale" and answers the invalid-result marker; after ``:INIT`` the unit holds
the reply until the gate has ended, which an in-process twin cannot do: it answers at once
with the result that measurement gives. The same result can be fetched again until a new
measurement starts. With no signal (``faults.no_signal``: the comb unlocked, the fibre
unplugged, or an input with nothing connected), a measurement with ``:SYST:TOUT`` on gives up
and answers the invalid-result marker, an empty line in native GPIB mode or ``9.91E37`` in
compatible mode (option `gpib_mode`); with the timeout off it waits for ever (no reply).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ionclock.physics.constants import NU0_CA
from ionclock.sim_instruments.base import CommandError, Faults, SimInstrument

ERROR_TEXT = {-104: "Data type error", -113: "Undefined header", -221: "Settings conflict",
              -222: "Data out of range", -230: "Data corrupt or stale"}

#: Input numbers of ``(@n)``: A, B, C, E, the internal 10 MHz reference.
INPUTS = (1, 2, 3, 4, 6)
INTREF_HZ = 10e6


@dataclass
class CNT91Faults(Faults):
    """Base faults plus a lost beat (comb unlocked, fibre unplugged)."""

    no_signal: bool = False


def _kw(long: str) -> str:
    """A regex for one SCPI keyword: its short form (the capitals) and anything up to long."""
    short = "".join(c for c in long if c.isupper() or c.isdigit())
    rest = long[len(short):].upper()
    opt = "".join(f"(?:{c}" for c in rest) + ")?" * len(rest)
    return short + opt


def _hdr(*parts: str, query: bool = False) -> re.Pattern:
    """A header of keywords (``[X]`` optional), e.g. ``_hdr("SYSTem", "ERRor", "[NEXT]")``."""
    pattern, need_sep = "", False
    for part in parts:
        if part.startswith("["):
            kw = _kw(part[1:-1])
            pattern += f"(?::{kw})?" if need_sep else f"(?:{kw}:)?"
        else:
            pattern += (":" if need_sep else "") + _kw(part)
            need_sep = True
    return re.compile(pattern + (r"\?" if query else ""))


_H = {
    "idn": re.compile(r"\*IDN\?"), "rst": re.compile(r"\*RST"), "cls": re.compile(r"\*CLS"),
    "opc?": re.compile(r"\*OPC\?"),
    "err?": _hdr("SYSTem", "ERRor", "[NEXT]", query=True),
    "conf": _hdr("CONFigure", "[SCALar]", "[VOLTage]", "FREQuency"),
    "meas?": _hdr("MEASure", "[SCALar]", "[VOLTage]", "FREQuency", query=True),
    "read?": _hdr("READ", "[SCALar]", query=True),
    "fetc?": _hdr("FETCh", "[SCALar]", query=True),
    "init": _hdr("INITiate", "[IMMediate]"),
    "cont": _hdr("INITiate", "CONTinuous"), "cont?": _hdr("INITiate", "CONTinuous", query=True),
    "abor": _hdr("ABORt"),
    "aper": _hdr("[SENSe]", "ACQuisition", "APERture"),
    "aper?": _hdr("[SENSe]", "ACQuisition", "APERture", query=True),
    "tout": _hdr("SYSTem", "TOUT"), "tout?": _hdr("SYSTem", "TOUT", query=True),
    "time": _hdr("SYSTem", "TOUT", "TIME"), "time?": _hdr("SYSTem", "TOUT", "TIME", query=True),
    "form": _hdr("FORMat", "[DATA]"), "form?": _hdr("FORMat", "[DATA]", query=True),
}
_CHANNEL = re.compile(r"\(@(\d)\)")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d{1,3})?")


def _format(value: float, gate_s: float = 1.0) -> str:
    """A result with the digits its gate resolves, as pymeasure's capture ``+9.999992027E+06``.

    12 significant digits per second of gate (p. 8-60's example ``1.78112526833E+009`` has 12).
    """
    digits = min(15, max(7, round(12 + math.log10(gate_s))))
    return f"{value:+.{digits - 1}E}"


class SimCNT91(SimInstrument):
    """CNT-91 twin counting the comb beat (see the module docstring for every behaviour).

    Options: ``f_rep_hz``, ``f_ceo_hz`` (the comb), ``light_offset_hz`` (light sent to the
    comb minus the laser's ``nu0 + cavity offset``; default minus the AOM passes times its
    centre frequency), ``beat_input`` (the input the beat is cabled to, "A"), ``beat_hz``
    (without a world: the beat as a constant), ``resolution_rel``, ``gpib_mode``
    ("native" or "compatible"), ``seed`` (default: the world's, so that each seed of a run
    has its own resolution noise; 0 without a world).
    """

    input_terminator = b"\n"
    output_terminator = b"\n"
    name = "sim-cnt91"
    IDN = "PENDULUM, CNT-91, 960213, V1.32 14 Mar 2011"
    GPIB_MODES = ("native", "compatible")

    def __init__(self, world=None, f_rep_hz: float = 250e6, f_ceo_hz: float = 20e6,
                 light_offset_hz: float | None = None, beat_input: str = "A",
                 beat_hz: float | None = None, resolution_rel: float = 1e-12,
                 gpib_mode: str = "native", seed: int | None = None):
        if not (math.isfinite(f_rep_hz) and 1e6 <= f_rep_hz <= 10e9):
            raise ValueError(f"f_rep_hz must be a repetition rate 1 MHz to 10 GHz, "
                             f"got {f_rep_hz!r}")
        if not (math.isfinite(f_ceo_hz) and abs(f_ceo_hz) < f_rep_hz):
            raise ValueError(f"f_ceo_hz must be finite and below f_rep_hz, got {f_ceo_hz!r}")
        if beat_input not in ("A", "B"):
            raise ValueError(f"beat_input must be 'A' or 'B', got {beat_input!r}")
        if gpib_mode not in self.GPIB_MODES:
            raise ValueError(f"gpib_mode must be one of {self.GPIB_MODES}, got {gpib_mode!r}")
        if not (math.isfinite(resolution_rel) and 0 <= resolution_rel < 1e-6):
            raise ValueError(f"resolution_rel must be in [0, 1e-6), got {resolution_rel!r}")
        params = getattr(world, "p", None)
        if light_offset_hz is None:
            light_offset_hz = (-getattr(params, "aom_passes", 2)
                               * getattr(params, "aom_center_hz", 80e6))
        self.f_rep_hz = float(f_rep_hz)
        self.f_ceo_hz = float(f_ceo_hz)
        self.light_offset_hz = float(light_offset_hz)
        self.nu0_hz = float(getattr(params, "nu0_hz", NU0_CA))
        # exact arithmetic for the line: base = nominal light - line (Hz, small)
        light = Fraction(self.nu0_hz) + Fraction(self.light_offset_hz)
        n = round((light - Fraction(self.f_ceo_hz)) / Fraction(self.f_rep_hz))
        self.mode_number = int(n)
        self._base_hz = float(light - (n * Fraction(self.f_rep_hz) + Fraction(self.f_ceo_hz)))
        self.beat_sign = 1 if self._base_hz >= 0 else -1
        self.beat_input = 1 if beat_input == "A" else 2
        self.standalone_beat_hz = (abs(self._base_hz) if beat_hz is None else float(beat_hz))
        self.resolution_rel = float(resolution_rel)
        self.gpib_mode = gpib_mode
        if seed is None:   # the world's seed: each run's counter noise its own
            seed = int(getattr(world, "seed", 0) or 0)
        self._noise = np.random.default_rng([seed, 31])
        self._laser = getattr(world, "cavity_offset_hz", None)
        self._laser_mean = getattr(world, "cavity_mean_hz", None)
        self._env = getattr(world, "env", None)
        super().__init__(world, seed)
        self.faults = CNT91Faults()

    # --- state ---------------------------------------------------------------------------
    def reset_settings(self) -> None:
        self.channel = 1
        self.gate_s = 0.01
        self.timeout_on = False
        self.timeout_s = 0.1
        self.continuous = False
        self.errors: list[int] = []
        self.result: float | None = None     # the last valid result (Hz)
        self.started = False                 # a measurement started and not yet fetched
        self.t_started = 0.0                 # when (the twin's time) it was started by :INIT
        self.questionable = 0                # STATus:QUEStionable event bits (1024: timeout)

    def _configure(self) -> None:
        """CONFigure / MEASure?: all settings but the function and channel to ``*RST``."""
        self.reset_settings_keep_errors()

    def reset_settings_keep_errors(self) -> None:
        errors = self.errors
        self.reset_settings()
        self.errors = errors

    # --- the physics -----------------------------------------------------------------------
    def now(self) -> float:
        """The twin's time (s): the world's SimPy clock, 0 without one."""
        return self._env.now if self._env is not None else 0.0

    def beat_hz(self, t: float | None = None) -> float:
        """Return the true beat of the laser light with its comb line (Hz) at `t`."""
        if self._laser is None:
            return self.standalone_beat_hz
        t = self.now() if t is None else t
        return abs(self._base_hz + self._laser(t))

    def beat_mean_hz(self, t0: float, t1: float) -> float:
        """The true beat's mean over the gate [t0, t1] (Hz); the instant's without a world mean."""
        if self._laser is None:
            return self.standalone_beat_hz
        if self._laser_mean is None:
            return self.beat_hz(t0)
        return abs(self._base_hz + self._laser_mean(t0, t1))

    def _measure(self, gate_from: float | None = None) -> float | None:
        """One measurement on the configured input: Hz, or None for no signal.

        `gate_from`: the gate began then (``:INIT``) and the result is the mean over it;
        None: the instant now.
        """
        if self.channel == 6:
            return INTREF_HZ
        if self.channel != self.beat_input or self.faults.no_signal:
            return None
        f = (self.beat_hz() if gate_from is None
             else self.beat_mean_hz(gate_from, gate_from + self.gate_s))
        sigma = self.resolution_rel * f / self.gate_s
        return f + sigma * float(self._noise.standard_normal())

    # --- protocol ------------------------------------------------------------------------
    def error_reply(self, err: CommandError) -> str | None:
        self.errors.append(int(err.code))
        return None

    def handle(self, line: str) -> str | None:
        replies = []
        for unit in line.split(";"):
            unit = unit.strip()
            if not unit:
                continue
            try:
                reply = self._unit(unit)
            except CommandError as err:
                self.errors.append(int(err.code))
                continue
            if reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def _invalid(self) -> str:
        """The invalid-result reply of the present GPIB mode (p. 8-36)."""
        return "" if self.gpib_mode == "native" else "9.91E37"

    def _result_reply(self, gate_from: float | None = None) -> str | None:
        value = self._measure(gate_from)
        self.started = False
        if value is None:
            if not self.timeout_on:
                return None                  # waits for a signal that never comes
            self.questionable |= 1024
            self.result = None
            return self._invalid()
        self.result = value
        return _format(value, self.gate_s)

    def _channel_arg(self, args: str) -> None:
        m = _CHANNEL.search(args)
        if m is not None:
            n = int(m.group(1))
            if n not in INPUTS:
                raise CommandError("-222", "no such input")
            self.channel = n

    def _numeric(self, args: str, lo: float, hi: float) -> float:
        text = args.strip().upper()
        if text in ("MIN", "MINIMUM"):
            return lo
        if text in ("MAX", "MAXIMUM"):
            return hi
        if not _NUMBER.fullmatch(text):
            raise CommandError("-104", "Data type error")
        value = float(text)
        if not lo <= value <= hi:
            raise CommandError("-222", "Data out of range")
        return value

    @staticmethod
    def _boolean(args: str) -> bool:
        text = args.strip().upper()
        if text in ("1", "ON"):
            return True
        if text in ("0", "OFF"):
            return False
        if _NUMBER.fullmatch(text):
            return round(float(text)) != 0
        raise CommandError("-104", "Data type error")

    def _unit(self, unit: str) -> str | None:
        head, _, args = unit.partition(" ")
        head = head.upper().lstrip(":")
        args = args.strip()
        h = _H

        def match(key: str) -> bool:
            return h[key].fullmatch(head) is not None

        if match("idn"):
            return self.IDN
        if match("rst"):
            self.reset_settings_keep_errors()
            return None
        if match("cls"):
            self.errors.clear()
            self.questionable = 0
            return None
        if match("opc?"):
            return "1"
        if match("err?"):
            if not self.errors:
                return '0,"No error"'
            code = self.errors.pop(0)
            return f'{code},"{ERROR_TEXT.get(code, "Error")}"'
        if match("conf"):
            channel = self.channel
            self._configure()
            self.channel = channel
            self._channel_arg(args)
            self.result = None
            return None
        if match("meas?"):
            self._configure()
            self.channel = 1
            self._channel_arg(args)
            return self._result_reply()
        if match("read?"):
            return self._result_reply()
        if match("init"):
            self.started = True
            self.t_started = self.now()
            self.result = None
            return None
        if match("abor"):
            self.started = False
            return None
        if match("fetc?"):
            if self.started:
                return self._result_reply(self.t_started)
            if self.result is not None:
                return _format(self.result, self.gate_s)   # fetched again: the same result
            self.errors.append(-230)
            return self._invalid()
        if match("cont"):
            self.continuous = self._boolean(args)
            return None
        if match("cont?"):
            return "1" if self.continuous else "0"
        if match("aper"):
            self.gate_s = self._numeric(args, 2e-8, 1000.0)
            return None
        if match("aper?"):
            return f"{self.gate_s:+.13E}"
        if match("tout"):
            self.timeout_on = self._boolean(args)
            return None
        if match("tout?"):
            return "1" if self.timeout_on else "0"
        if match("time"):
            self.timeout_s = round(self._numeric(args, 0.01, 1000.0), 2)
            return None
        if match("time?"):
            return f"{self.timeout_s:+.13E}"
        if match("form"):
            fmt = args.strip().upper()
            if fmt in ("ASC", "ASCII"):
                return None
            if fmt in ("REAL", "PACK", "PACKED"):
                raise CommandError("-221", "Settings conflict")
            raise CommandError("-104", "Data type error")
        if match("form?"):
            return "ASC"
        raise CommandError("-113", "Undefined header")
