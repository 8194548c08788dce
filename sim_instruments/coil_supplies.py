r"""Twins of the coil supplies: Keysight E36312A and Rigol DP832, SCPI over LF-terminated lines.

Both keep per-channel setpoints (current, compliance voltage) and output state, drive a coil of
`coil_ohm` ohms (constant current while ``I * R`` is below the compliance, else constant
voltage), answer ``MEAS:CURR?`` with the output current (0 when off) plus small seeded noise,
call ``world.coil_changed(channel, current_a)`` with the effective current whenever it changes
(when the world has that hook), and keep a SCPI error queue (``-113,"Undefined header"``,
``-222,"Data out of range"``, ...), read by ``SYST:ERR?``. A setpoint changes the output at
once: the units have no slew setting the driver uses, so ramping is the driver's job
(docs/decisions/0102-coil-current-safety.md).

`history` keeps every change of an output's current as ``(t, channel, current_a)``, ``t`` the
world's ``env.now`` (None without a world), the newest `HISTORY_DEPTH` of them. Each entry is
a change the coil sees at once, so the difference between two entries of a channel is the
step it took. Why each entry is a step, and why the record outlives a program:

- "This command programs the immediate current level of the power supply. The immediate
  level is the current value of the output terminals" (Keysight E364xA User's and Service
  Guide, Remote Interface Reference, ``CURRent``). The E36300 and DP800 guides were not at
  hand for this point; no source read gives either unit a slew of its own.
- The settings change by command, ``*RST`` ("resets the power supply to its power-on
  state", ``OUTP OFF``: the E3632A User's Guide's *RST table) or a power cycle; a program
  that closes its connection sends none of these, so the next program finds the unit as
  the last one left it, output on and current flowing. The twin's ``*RST`` and
  `power_cycle` switch the outputs off through the same bookkeeping (history entry, world
  hook) as any command.

Headers match SCPI style: long or short form of each node, case-insensitive, optional nodes
in brackets, several commands per line separated by ``;``.

Sources for what the driver relies on (the twin follows the units, not the driver):

Keysight E36312A
- Channel lists on every channel command, ``CURR <A>,(@n)`` / ``CURR? (@n)`` / ``VOLT`` /
  ``MEAS:CURR? (@n)`` / ``MEAS:VOLT? (@n)`` / ``OUTP {0|1|ON|OFF},(@n)``: Keysight E36300
  Series Programming Guide (E36311-90008), OUTPut[:STATe] p. 71, as quoted in the review of
  QCoDeS/Qcodes_contrib_drivers PR 46; the same commands in
  qcodes_contrib_drivers/drivers/Keysight/Keysight_E36313A.py (``CURR {},(@n)``, no space)
  and pymeasure/instruments/keysight/keysightE36312A.py (``CURR %g, (@n)``, with a space):
  the twin takes both spellings.
- ``OUTP? (@n)`` answers ``0`` or ``1``: pymeasure tests/instruments/keysight/
  test_keysightE36312A.py (``OUTPut? (@1)`` -> ``0``) and Keysight_E36313A.py's
  ``val_mapping={'on': 1, 'off': 0}``.
- Numeric replies are SCPI NR3 text (``+2.50000000E-01``); both drivers above parse them with
  ``float`` only, so the digit count is not relied on.
- LF terminator: Keysight_E36313A.py (``terminator='\n'``).
- Ratings 6 V / 5 A (output 1) and 25 V / 1 A (outputs 2, 3): pymeasure keysightE36312A.py
  (``voltage_setpoint_values``/``current_limit_values``). No source read gives the unit's
  programming maximum above the rating; the twin accepts up to 102 % of it and answers
  ``-222`` beyond (the SCPI "Data out of range" error). The driver never sends a value above
  the rating, so it does not rely on where the unit draws that line.
- ``SYST:ERR?`` answers ``+0,"No error"`` when the queue is empty (the SCPI-1999
  SYSTem:ERRor? form as Keysight units give it; the driver parses the code before the comma,
  with or without ``+``).

Rigol DP832
- ``:INSTrument:NSELect n`` selects the channel that ``[:SOURce]:CURRent[:LEVel][:IMMediate]
  [:AMPLitude]`` and ``...:VOLTage...`` (and their queries) act on, and both may share one
  line: QCoDeS src/qcodes/instrument_drivers/rigol/private/DP8xx.py sends
  ``:INSTrument:NSELect n; :SOURce:CURRent:LEVel:IMMediate:AMPLitude <A>`` to real units;
  Rigol DP800 Programming Guide, :INSTrument and :SOURce commands.
- ``:OUTPut[:STATe] CHn,{ON|OFF}`` and ``:OUTPut[:STATe]? CHn`` answering ``ON``/``OFF``:
  DP800 Programming Guide :OUTPut[:STATe]; nominal-io/instro instro/psu/drivers/rigol_dp800.py
  (``:OUTP CH{n},ON``, ``:OUTP? CH{n}``); QCoDeS DP8xx.py parses the state as ON/OFF.
- ``:MEASure:CURRent[:DC]? [CHn]`` and ``:MEASure[:VOLTage][:DC]? [CHn]``: DP800 Programming
  Guide :MEASure; instro rigol_dp800.py (``:MEAS:CURR? CH{n}``).
- Reply formats: voltage with 3 decimals (``5.000``), current with 4 (``1.0000``): DP800
  Programming Guide §2 :APPLy, Return Format (p. 2-6, DP832 edition).
- Programming ranges: CH1/CH2 0-32 V and 0-3.2 A, CH3 0-5.3 V and 0-3.2 A (DP800 Programming
  Guide §2 :APPLy, p. 2-6, the DP832 table); beyond them ``-222``. The ratings (30 V / 3 A,
  5 V / 3 A) are what the driver allows.
- OCP level ``[:SOURce]:CURRent:PROTection[:LEVel]`` 0.001-3.3 A, ``...:PROTection:STATe
  {ON|OFF}``: QCoDeS src/qcodes/instrument_drivers/rigol/Rigol_DP832.py (``ocp_ranges_std``)
  and DP8xx.py (``:CURRent:PROTection:LEVel``/``:STATe`` after ``:INSTrument:NSELect``).
- ``:OUTPut:MODE? [CHn]`` answers ``CV``, ``CC`` or ``UR``: DP800 Programming Guide
  :OUTPut:MODE?; QCoDeS DP8xx.py ``val_mapping``. With the output **off** the sources differ:
  instro rigol_dp800.py ``get_operating_mode`` notes that the unit "still answers CV for a
  disabled channel", while the guide names no reading for it (the twin's old answer was
  ``UR``). Option `off_mode` (``"UR"`` default, or ``"CV"``) gives either; the driver reads the
  output state from ``:OUTP? CHn``, never from the mode.
- ``:SYST:ERR?`` answers ``0,"No error"`` (no ``+``) when empty: DP800 Programming Guide
  :SYSTem:ERRor?; instro rigol_dp800.py strips an optional ``+`` before comparing the code
  with ``0``.
- LF terminator over USB/LAN: DP800 Programming Guide, command notation (RS-232 ends
  ``\r\n``; the twin speaks the LAN form).

The units need no ``*OPC?`` between these commands: none of the drivers above sends one.
"""

from __future__ import annotations

import functools
import random
from collections import deque

from ionclock.sim_instruments.base import CommandError, SimInstrument

SCPI_ERRORS = {
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -221: "Settings conflict",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -350: "Queue overflow",
}
QUEUE_DEPTH = 20
HISTORY_DEPTH = 65536
"""Changes of output current the twin keeps (`_ScpiSupply.history`), newest last."""


def _compile(pattern: str) -> list[tuple[str, str, bool]]:
    """``[SOURce:]CURRent[:LEVel]`` -> [(long, short, optional), ...]."""
    nodes = []
    optional = False
    token = ""
    for char in pattern + ":":
        if char == "[":
            optional = True
        elif char in ":]":
            if token:
                short = "".join(c for c in token if c.isupper() or c.isdigit() or c == "*")
                nodes.append((token.upper(), short or token.upper(), optional))
                token = ""
            if char == "]":
                optional = False
        else:
            token += char
    return nodes


def _match(nodes, tokens) -> bool:
    if not nodes:
        return not tokens
    long, short, optional = nodes[0]
    if tokens and tokens[0] in (long, short) and _match(nodes[1:], tokens[1:]):
        return True
    return optional and _match(nodes[1:], tokens)


_UNSEEN = object()


class _ScpiSupply(SimInstrument):
    """Shared SCPI machinery and coil physics; subclasses list their commands."""

    input_terminator = b"\n"
    output_terminator = b"\n"
    ratings: dict[int, tuple[float, float]] = {}
    program_max: dict[int, tuple[float, float]] = {}   # (V, A) the unit accepts; -222 beyond
    idn = ""
    COMMANDS: list[tuple[str, str]] = []

    def __init__(self, world=None, seed: int | None = 0, *, coil_ohm: float = 2.0,
                 noise_a: float = 2e-5):
        self._hook = getattr(world, "coil_changed", None)
        self._env = getattr(world, "env", None)
        self.history: deque[tuple[float | None, int, float]] = deque(maxlen=HISTORY_DEPTH)
        self._effective: dict[int, float] = {}
        self._noise_rng = random.Random(seed)
        self._normals: list[float] = []
        self.coil_ohm = coil_ohm
        self.noise_a = noise_a
        self._table = [(_compile(pattern), name) for pattern, name in self.COMMANDS]
        self._headers: dict[str, str | None] = {}
        self._splits: dict[tuple[str, bool], tuple[str, tuple[int, ...]]] = {}
        self._fast: dict[bytes, functools.partial] = {}   # line -> handler, queries only
        super().__init__(world, seed)

    def reset_settings(self) -> None:
        """Power-on state: outputs off, 0 A, compliance 0 V, empty error queue.

        On a running twin (``*RST``, `power_cycle`) an output that was on drops to 0 A: the
        drop is recorded and reported like any other change.
        """
        self.current_set = {ch: 0.0 for ch in self.ratings}
        self.voltage_set = {ch: 0.0 for ch in self.ratings}
        self.output = {ch: False for ch in self.ratings}
        self.errors: list[int] = []
        self.selected = 1
        self._changed()

    # --- physics ---------------------------------------------------------------------------
    def effective_current(self, ch: int) -> float:
        """Output current of `ch` in A: CC setpoint, limited by compliance; 0 when off."""
        if not self.output[ch]:
            return 0.0
        return min(self.current_set[ch], self.voltage_set[ch] / self.coil_ohm)

    def mode(self, ch: int) -> str:
        """Return the regulation mode of `ch`: 'CC', 'CV' (compliance reached) or 'UR' (off)."""
        if not self.output[ch]:
            return "UR"
        return "CC" if self.current_set[ch] * self.coil_ohm <= self.voltage_set[ch] else "CV"

    def _changed(self) -> None:
        effective = self._effective
        for ch in self.ratings:
            value = self.effective_current(ch)
            if value != effective.get(ch, 0.0):
                effective[ch] = value
                self.history.append((self._env.now if self._env is not None else None, ch,
                                     value))
                if self._hook is not None:
                    self._hook(ch, value)

    def measured_current(self, ch: int) -> float:
        """Return what MEAS:CURR? reads: output current plus seeded noise (exactly 0 when off)."""
        value = self.effective_current(ch)
        if self.output[ch] and self.noise_a:
            pool = self._normals
            if not pool:   # seeded normals drawn in blocks: a readback costs a pop
                gauss = self._noise_rng.gauss
                pool.extend(gauss(0.0, 1.0) for _ in range(1024))
            value += self.noise_a * pool.pop()
        return value

    # --- the byte stream: a repeated single query skips the generic path ---------------------
    def write(self, data: bytes) -> None:
        """Receive bytes; a whole line already parsed once as one query is answered directly.

        The shortcut calls the handler that the generic grammar chose for the very same line
        the first time (so the twin cannot answer differently), for monitoring loops that
        repeat the same query (``MEAS:CURR? (@2)``) at a high rate.
        """
        if (data[-1:] == b"\n" and not self._rx and not self.record_transcript
                and data.count(b"\n") == 1):
            handler = self._fast.get(data)
            faults = self.faults
            if handler is not None and not (faults.disconnected or faults.timeout
                                            or faults.garble):
                self._tx += handler().encode("ascii") + b"\n"
                return
        super().write(data)

    # --- grammar ------------------------------------------------------------------------------
    def handle(self, line: str) -> str | None:
        """Run each ``;``-separated command; return the query replies joined by ``;``."""
        replies = []
        changed = False
        for part in line.split(";"):
            part = part.strip()
            if not part:
                continue
            header, _, args = part.partition(" ")
            query = header.endswith("?")
            name = self._headers.get(header, _UNSEEN)
            if name is _UNSEEN:   # match the grammar once per distinct header spelling
                tokens = header.rstrip("?").strip(":").upper().split(":")
                name = next((n for nodes, n in self._table if _match(nodes, tokens)), None)
                if len(self._headers) < 1024:
                    self._headers[header] = name
            try:
                if name is None:
                    raise CommandError("-113")
                method = getattr(self, "_cmd_" + name)
                reply = method(query, args.strip())
                if query and ";" not in line and len(self._fast) < 256 and reply is not None:
                    self._fast[(line + "\n").encode("ascii")] = functools.partial(
                        method, True, args.strip())
            except CommandError as err:
                self._push_error(int(err.code))
                continue
            if reply is not None:
                replies.append(reply)
            else:
                changed = True
        if changed:   # only a setting can change the output
            self._changed()
        return ";".join(replies) if replies else None

    def _push_error(self, code: int) -> None:
        if len(self.errors) >= QUEUE_DEPTH:
            self.errors[-1] = -350
        else:
            self.errors.append(code)

    def _cmd_err(self, query: bool, args: str) -> str:
        if not query:
            raise CommandError("-113")
        code = self.errors.pop(0) if self.errors else 0
        return self.format_error(code)

    def format_error(self, code: int) -> str:
        """Render one error-queue entry as the unit does."""
        raise NotImplementedError

    def _cmd_idn(self, query: bool, args: str) -> str:
        if not query:
            raise CommandError("-113")
        return self.idn

    def _cmd_cls(self, query: bool, args: str) -> None:
        self.errors.clear()

    def _cmd_rst(self, query: bool, args: str) -> None:
        errors = self.errors
        self.reset_settings()
        self.errors = errors

    # --- argument helpers ------------------------------------------------------------------------
    def _number(self, text: str) -> float:
        if not text:
            raise CommandError("-109")
        if text.upper() in ("MIN", "MINIMUM"):
            return 0.0
        try:
            return float(text)
        except ValueError:
            raise CommandError("-104") from None

    def _channel(self, text: str) -> int:
        if not text.isdigit() or int(text) not in self.ratings:
            raise CommandError("-222")
        return int(text)

    def _state(self, text: str) -> bool:
        word = text.strip().upper()
        if word in ("1", "ON"):
            return True
        if word in ("0", "OFF"):
            return False
        raise CommandError("-224" if word else "-109")

    def _set_level(self, table: dict, ch: int, value: float, index: int) -> None:
        if not 0.0 <= value <= self.program_max[ch][index]:
            raise CommandError("-222")
        table[ch] = value


class SimKeysightE36312A(_ScpiSupply):
    """Keysight E36312A twin: channel lists ``(@n)`` on every channel command."""

    name = "sim Keysight E36312A"
    ratings = {1: (6.0, 5.0), 2: (25.0, 1.0), 3: (25.0, 1.0)}
    # No source read gives the programming maximum: 102 % of the rating (module docstring).
    program_max = {ch: (v * 1.02, a * 1.02) for ch, (v, a) in ratings.items()}
    idn = "Keysight Technologies,E36312A,MY00000000,2.1.0-1.0.4-1.12"
    COMMANDS = [
        ("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]", "curr"),
        ("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]", "volt"),
        ("MEASure[:SCALar]:CURRent[:DC]", "meas_curr"),
        ("MEASure[:SCALar]:VOLTage[:DC]", "meas_volt"),
        ("OUTPut[:STATe]", "outp"),
        ("SYSTem:ERRor[:NEXT]", "err"),
        ("*IDN", "idn"),
        ("*CLS", "cls"),
        ("*RST", "rst"),
    ]

    def format_error(self, code: int) -> str:
        if code == 0:
            return '+0,"No error"'
        return f'{code:+d},"{SCPI_ERRORS[code]}"'

    def _split(self, args: str, query: bool) -> tuple[str, tuple[int, ...]]:
        """``0.5, (@1,2)`` -> ('0.5', [1, 2]); ``(@2)`` -> ('', [2])."""
        key = (args, query)
        hit = self._splits.get(key)
        if hit is None:       # parse each distinct argument text once (errors never cached)
            hit = self._parse_split(args, query)
            if len(self._splits) < 4096:
                self._splits[key] = hit
        return hit

    def _parse_split(self, args: str, query: bool) -> tuple[str, tuple[int, ...]]:
        start = args.find("(@")
        if start < 0 or not args.endswith(")"):
            raise CommandError("-109")
        value, chans = args[:start].strip(), args[start:]
        if value:
            if not value.endswith(","):
                raise CommandError("-102")
            value = value[:-1]
        out = []
        for item in chans[2:-1].split(","):
            lo, _, hi = item.strip().partition(":")
            first = self._channel(lo)
            last = self._channel(hi) if hi else first
            out.extend(range(first, last + 1))
        if not out or (query and value.strip()) or (not query and not value.strip()):
            raise CommandError("-108" if query else "-109")
        return value.strip(), tuple(out)

    def _cmd_curr(self, query: bool, args: str) -> str | None:
        value, chans = self._split(args, query)
        if query:
            return ",".join(f"{self.current_set[ch]:+.8E}" for ch in chans)
        number = self._number(value)
        for ch in chans:
            self._set_level(self.current_set, ch, number, 1)
        return None

    def _cmd_volt(self, query: bool, args: str) -> str | None:
        value, chans = self._split(args, query)
        if query:
            return ",".join(f"{self.voltage_set[ch]:+.8E}" for ch in chans)
        number = self._number(value)
        for ch in chans:
            self._set_level(self.voltage_set, ch, number, 0)
        return None

    def _cmd_meas_curr(self, query: bool, args: str) -> str:
        if not query:
            raise CommandError("-113")
        _, chans = self._split(args, True)
        if len(chans) == 1:
            return f"{self.measured_current(chans[0]):+.8E}"
        return ",".join(f"{self.measured_current(ch):+.8E}" for ch in chans)

    def _cmd_meas_volt(self, query: bool, args: str) -> str:
        if not query:
            raise CommandError("-113")
        _, chans = self._split(args, True)
        return ",".join(f"{self.effective_current(ch) * self.coil_ohm:+.8E}" for ch in chans)

    def _cmd_outp(self, query: bool, args: str) -> str | None:
        value, chans = self._split(args, query)
        if query:
            return ",".join("1" if self.output[ch] else "0" for ch in chans)
        state = self._state(value)
        for ch in chans:
            self.output[ch] = state
        return None


class SimRigolDP832(_ScpiSupply):
    """Rigol DP832 twin: ``:INST:NSEL n`` selects the channel for SOUR/level commands.

    Option `off_mode`: what ``:OUTP:MODE?`` answers for a channel whose output is off, ``"UR"``
    (default) or ``"CV"`` (what instro reports of real units; module docstring).
    """

    name = "sim Rigol DP832"
    ratings = {1: (30.0, 3.0), 2: (30.0, 3.0), 3: (5.0, 3.0)}
    # DP800 Programming Guide §2 :APPLy (p. 2-6), the DP832 table.
    program_max = {1: (32.0, 3.2), 2: (32.0, 3.2), 3: (5.3, 3.2)}
    ocp_range = (0.001, 3.3)   # QCoDeS Rigol_DP832.py ocp_ranges_std
    idn = "RIGOL TECHNOLOGIES,DP832,DP8C000000000,00.01.16"
    COMMANDS = [
        (":INSTrument:NSELect", "nsel"),
        (":INSTrument[:SELect]", "inst"),
        ("[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]", "curr"),
        ("[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", "volt"),
        ("[:SOURce]:CURRent:PROTection[:LEVel]", "ocp_level"),
        ("[:SOURce]:CURRent:PROTection:STATe", "ocp_state"),
        (":MEASure:CURRent[:DC]", "meas_curr"),
        (":MEASure[:VOLTage][:DC]", "meas_volt"),
        (":OUTPut[:STATe]", "outp"),
        (":OUTPut:MODE", "mode"),
        (":SYSTem:ERRor[:NEXT]", "err"),
        ("*IDN", "idn"),
        ("*CLS", "cls"),
        ("*RST", "rst"),
    ]

    def __init__(self, world=None, seed: int | None = 0, *, off_mode: str = "UR", **options):
        if off_mode not in ("UR", "CV"):
            raise ValueError(f"off_mode must be 'UR' or 'CV', got {off_mode!r}")
        self.off_mode = off_mode
        super().__init__(world, seed, **options)

    def reset_settings(self) -> None:
        super().reset_settings()
        self.ocp_level = {ch: self.ocp_range[1] for ch in self.ratings}
        self.ocp_on = {ch: False for ch in self.ratings}

    def format_error(self, code: int) -> str:
        if code == 0:
            return '0,"No error"'
        return f'{code},"{SCPI_ERRORS[code]}"'

    def _source(self, text: str) -> int:
        word = text.strip().upper()
        if word.startswith("CH"):
            return self._channel(word[2:])
        raise CommandError("-224")

    def _cmd_nsel(self, query: bool, args: str) -> str | None:
        if query:
            return str(self.selected)
        self.selected = self._channel(args)
        return None

    def _cmd_inst(self, query: bool, args: str) -> str | None:
        if query:
            return f"CH{self.selected}"
        self.selected = self._source(args)
        return None

    def _level(self, table: dict, index: int, query: bool, args: str, digits: int):
        ch = self.selected
        if query:
            return f"{table[ch]:.{digits}f}"
        # The DP832 programs in 1 mA / 1 mV steps.
        self._set_level(table, ch, round(self._number(args), 3), index)
        return None

    def _cmd_curr(self, query: bool, args: str) -> str | None:
        return self._level(self.current_set, 1, query, args, 4)

    def _cmd_volt(self, query: bool, args: str) -> str | None:
        return self._level(self.voltage_set, 0, query, args, 3)

    def _cmd_ocp_level(self, query: bool, args: str) -> str | None:
        ch = self.selected
        if query:
            return f"{self.ocp_level[ch]:.3f}"
        value = self._number(args)
        if not self.ocp_range[0] <= value <= self.ocp_range[1]:
            raise CommandError("-222")
        self.ocp_level[ch] = value
        return None

    def _cmd_ocp_state(self, query: bool, args: str) -> str | None:
        ch = self.selected
        if query:
            return "ON" if self.ocp_on[ch] else "OFF"
        self.ocp_on[ch] = self._state(args)
        return None

    def _query_channel(self, query: bool, args: str) -> int:
        if not query:
            raise CommandError("-113")
        return self._source(args) if args else self.selected

    def _cmd_meas_curr(self, query: bool, args: str) -> str:
        return f"{self.measured_current(self._query_channel(query, args)):.4f}"

    def _cmd_meas_volt(self, query: bool, args: str) -> str:
        ch = self._query_channel(query, args)
        return f"{self.effective_current(ch) * self.coil_ohm:.3f}"

    def _cmd_mode(self, query: bool, args: str) -> str:
        ch = self._query_channel(query, args)
        return self.mode(ch) if self.output[ch] else self.off_mode

    def _cmd_outp(self, query: bool, args: str) -> str | None:
        if query:
            return "ON" if self.output[self._source(args) if args else self.selected] else "OFF"
        source, _, state = args.rpartition(",")
        ch = self._source(source) if source else self.selected
        on = self._state(state)
        if on and self.ocp_on[ch] and self.current_set[ch] > self.ocp_level[ch]:
            on = False  # the OCP trips at once
        self.output[ch] = on
        return None
