"""Twin of the SRS DG645 delay generator: its command grammar and error queue on the world.

Same bytes as the unit (sources in ``ionclock.drivers.dg645``): a command line ends with LF or
CR; replies end with CR LF; set commands answer nothing, and a rejected command only queues a
code for ``LERR?``. Mnemonics are four letters (or ``*`` and three), case-insensitive, with
``?`` for the query form and comma-separated parameters that may follow without a space
(``DLAY?2``, ``TSRC5``).

The world: before handling any byte the twin calls ``world.settle()`` when the world has it.
A trigger that fires a delay cycle calls ``world.start_cycle(world.env.now)`` when the world
has ``start_cycle`` (a False return, the world's pattern still playing, counts in
`SimDG645.refused_by_world`), and always counts in `SimDG645.triggers`. ``*TRG``

- fires when the trigger source is single shot (``TSRC 5``);
- arms the unit in the single-shot external modes (3, 4): the next matching edge given to
  `SimDG645.external_edge` fires;
- does nothing else in the other modes (internal, external, line): counted in
  `SimDG645.ignored_triggers`, and queues error 11 "illegal mode" (``trg_mode_error``). The
  sources say what ``*TRG`` does in the single-shot modes only; that the unit flags it as
  illegal mode elsewhere is this twin's reading of the code table, not confirmed by a source
  at hand (pass ``trg_mode_error=None`` for a unit that ignores it silently).

Choices of the twin where no source says: the error queue holds 20 codes, the last replaced
by 254 when it overflows; delays round to the nearest 5 ps; ``DLAY?0``/``DLAY?1`` answer
``0,+t`` with T0 = 0 and T1 = the latest channel (the end of the delay cycle), and T0/T1
cannot be set (error 10); ``LAMP?``/``LOFF?`` answer ``+2.50``; a line longer than
`max_line` queues 171 and a non-ASCII byte 126; the internal/line rate generators and a
trigger arriving during a running delay cycle are not simulated (the clock's delays are far
shorter than its cycle).
"""

from __future__ import annotations

import math

from ionclock.sim_instruments.base import CommandError, LinkDown, SimInstrument

IDN = "Stanford Research Systems,DG645,s/n001776,ver1.14.10E"
SINGLE_SHOT = 5
_PS_PER_S = 10**12
_DELAY_MAX_PS = 2000 * _PS_PER_S
_ERROR_QUEUE = 20
_INSR_TRIG = 1 << 0
_INSR_END_OF_DELAY = 1 << 2
_TRG_LINE = b"*TRG\n"

#: *RST delays (channel: (reference, ps)): A=T0, B=A+10 ns, C=T0, D=C+10 ns, ... (srsinst's
#: hardware tests, ``tests/test_dg645.py`` TestReset).
_DEFAULT_DELAYS = {2: (0, 0), 3: (2, 10_000), 4: (0, 0), 5: (4, 10_000), 6: (0, 0),
                   7: (6, 10_000), 8: (0, 0), 9: (8, 10_000)}


def _ps_text(ps: int) -> str:
    sign = "-" if ps < 0 else "+"
    whole, frac = divmod(abs(ps), _PS_PER_S)
    return f"{sign}{whole}.{frac:012d}"


def _int(text: str) -> int:
    t = text.strip()
    if not t:
        raise CommandError("114", "null parameter")
    body = t[1:] if t[0] in "+-" else t
    if not (body.isdigit() and body.isascii()):
        raise CommandError("120", "invalid integer")
    return int(t)


def _float(text: str) -> float:
    t = text.strip()
    if not t:
        raise CommandError("114", "null parameter")
    try:
        value = float(t)
    except ValueError:
        raise CommandError("118", "invalid floating point number") from None
    if not math.isfinite(value) or "_" in t:
        raise CommandError("118", "invalid floating point number")
    return value


class SimDG645(SimInstrument):
    """Byte-level DG645 twin (``Twin(world, **options)``).

    Parameters
    ----------
    world:
        None, or a world offering any of ``settle()``, ``start_cycle(t)`` (with ``env``).
    trg_mode_error:
        The code queued by ``*TRG`` when the source is neither single shot nor single-shot
        external (default 11, illegal mode); None queues nothing.
    """

    input_terminator = b"\n"
    output_terminator = b"\r\n"
    max_line = 256
    name = "sim DG645"

    def __init__(self, world=None, seed: int | None = 0, *, trg_mode_error: int | None = 11):
        self._settle = getattr(world, "settle", None)
        self._start_cycle = getattr(world, "start_cycle", None)
        self._env = getattr(world, "env", None)
        if self._start_cycle is not None and self._env is None:
            raise ValueError("a world with start_cycle() needs env (the cycle's time)")
        self.trg_mode_error = trg_mode_error
        self.triggers = 0
        self.ignored_triggers = 0
        self.refused_by_world = 0
        self.last_trigger_time: float | None = None
        self.errors: list[int] = []
        super().__init__(world, seed)

    # --- state ----------------------------------------------------------------------------
    def reset_settings(self) -> None:
        """Power-on state: factory settings, empty error queue and status register."""
        self.errors = []
        self.insr = 0
        self._factory_settings()

    def _factory_settings(self) -> None:
        self.source = SINGLE_SHOT
        self.armed = False
        self.delays: dict[int, tuple[int, int]] = dict(_DEFAULT_DELAYS)
        self.amplitude = [2.5] * 5
        self.offset = [0.0] * 5

    def absolute_delay(self, channel: int) -> float:
        """The delay of `channel` (0..9) after T0 in seconds, links followed."""
        return self._absolute(self.delays)[channel] / _PS_PER_S

    def _push_error(self, code: int) -> None:
        if len(self.errors) < _ERROR_QUEUE:
            self.errors.append(code)
        else:
            self.errors[-1] = 254

    # --- triggering -------------------------------------------------------------------------
    def _fire(self) -> None:
        self.triggers += 1
        self.insr |= _INSR_TRIG | _INSR_END_OF_DELAY
        hook = self._start_cycle
        if hook is not None:
            t = self._env.now
            self.last_trigger_time = t
            if hook(t) is False:  # the world's pattern was still playing
                self.refused_by_world += 1

    def _trg(self) -> None:
        source = self.source
        if source == SINGLE_SHOT:
            self._fire()
        elif source == 3 or source == 4:
            self.armed = True
        else:
            self.ignored_triggers += 1
            if self.trg_mode_error is not None:
                self._push_error(self.trg_mode_error)

    def external_edge(self, rising: bool = True) -> bool:
        """An edge on the rear-panel trigger input; returns True when it fired a cycle.

        Fires in external mode of the same edge (1 rising, 2 falling), or once after ``*TRG``
        armed a single-shot external mode (3 rising, 4 falling).
        """
        source = self.source
        if source == (1 if rising else 2):
            self._fire()
            return True
        if self.armed and source == (3 if rising else 4):
            self.armed = False
            self._fire()
            return True
        return False

    # --- the byte stream, specialised for speed ----------------------------------------------
    def write(self, data: bytes) -> None:
        """Receive bytes; CR counts as a line end like LF.

        ``world.settle()`` runs once per write, before any byte is handled, on every path (the
        line framing is this class's own so that no version of the base settles twice). A
        whole ``*TRG`` line with no fault or transcript active skips the parser; it runs the
        same `_trg` (the clock loop sends one per cycle).
        """
        faults = self.faults
        if faults.disconnected:
            raise LinkDown(f"{self.name}: link down")
        settle = self._settle
        if settle is not None:
            settle()
        if (data == _TRG_LINE and not self._rx and not self.record_transcript
                and not (faults.timeout or faults.garble)):
            if self.source == SINGLE_SHOT:   # _trg(), its usual case inlined
                self._fire()
            else:
                self._trg()
            return
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        rx = self._rx + data
        while True:
            idx = rx.find(b"\n")
            if idx < 0:
                if len(rx) > self.max_line:
                    rx = b""
                    self._send(self.line_too_long())
                self._rx = rx
                return
            raw, rx = rx[:idx], rx[idx + 1:]
            self._rx = rx
            self._dispatch(raw)
            rx = self._rx  # a handler may have power-cycled the unit

    # --- grammar ----------------------------------------------------------------------------
    def error_reply(self, err: CommandError) -> str | None:
        self._push_error(int(err.code))
        return None

    def line_too_long(self) -> str | None:
        self._push_error(171)
        return None

    def bad_byte(self) -> str | None:
        self._push_error(126)
        return None

    def handle(self, line: str) -> str | None:
        """Parse one command line (terminator removed); return the reply text or None."""
        text = line.strip()
        if not text:
            return None  # the LF of a CR LF pair, or a blank line
        if len(text) > self.max_line:
            raise CommandError("171", "over run")
        mnemonic = text[:4].upper()
        if not ((mnemonic[0] == "*" and mnemonic[1:].isalpha() and mnemonic[1:].isascii())
                or (mnemonic.isalpha() and mnemonic.isascii())) or len(mnemonic) < 4:
            raise CommandError("110", "illegal command")
        rest = text[4:]
        query = rest.startswith("?")
        if query:
            rest = rest[1:]
        rest = rest.strip()
        params = rest.split(",") if rest else []
        command = self._COMMANDS.get(mnemonic)
        if command is None:
            raise CommandError("111", "undefined command")
        get_arity, set_arity, method = command
        arity = get_arity if query else set_arity
        if arity is None:
            raise CommandError("112" if query else "113",
                               "illegal query" if query else "illegal set")
        if len(params) > arity:
            raise CommandError("115", "extra parameters")
        if len(params) < arity:
            raise CommandError("116", "missing parameters")
        return method(self, query, params)

    # --- commands: (query arity, set arity, handler); None = form not allowed --------------
    def _idn(self, query: bool, params: list[str]) -> str:
        return IDN

    def _opc(self, query: bool, params: list[str]) -> str | None:
        return "1" if query else None

    def _nothing(self, query: bool, params: list[str]) -> None:
        return None

    def _cls(self, query: bool, params: list[str]) -> None:
        self.errors.clear()
        self.insr = 0

    def _rst(self, query: bool, params: list[str]) -> None:
        self._factory_settings()

    def _trg_command(self, query: bool, params: list[str]) -> None:
        self._trg()

    def _lerr(self, query: bool, params: list[str]) -> str:
        return str(self.errors.pop(0)) if self.errors else "0"

    def _insr(self, query: bool, params: list[str]) -> str:
        value, self.insr = self.insr, 0
        return str(value)

    def _tsrc(self, query: bool, params: list[str]) -> str | None:
        if query:
            return str(self.source)
        code = _int(params[0])
        if not 0 <= code <= 6:
            raise CommandError("10", "illegal value")
        if code != self.source:
            self.armed = False
        self.source = code
        return None

    @staticmethod
    def _absolute(delays: dict[int, tuple[int, int]]) -> dict[int, int]:
        """Absolute delays (ps) of every channel; a reference loop is `CommandError` 13."""
        out = {0: 0, 1: 0}
        for start in delays:
            chain = []
            ch = start
            while ch not in out:
                if ch in chain:
                    raise CommandError("13", "illegal link")
                chain.append(ch)
                ch = delays[ch][0]
            for c in reversed(chain):
                ref, ps = delays[c]
                out[c] = out[ref] + ps
        out[1] = max(out[c] for c in delays)  # T1: the end of the delay cycle
        return out

    def _dlay(self, query: bool, params: list[str]) -> str | None:
        channel = _int(params[0])
        if query:
            if channel in (0, 1):
                return "0," + _ps_text(self._absolute(self.delays)[channel])
            if channel not in self.delays:
                raise CommandError("10", "illegal value")
            ref, ps = self.delays[channel]
            return f"{ref}," + _ps_text(ps)
        ref = _int(params[1])
        seconds = _float(params[2])
        if channel not in self.delays or not (ref == 0 or ref in self.delays):
            raise CommandError("10", "illegal value")
        if ref == channel:
            raise CommandError("13", "illegal link")
        if not -_DELAY_MAX_PS < seconds * _PS_PER_S < _DELAY_MAX_PS:
            raise CommandError("12", "illegal delay")
        ps = round(seconds * _PS_PER_S / 5) * 5  # 5 ps resolution
        trial = dict(self.delays)
        trial[channel] = (ref, ps)
        absolute = self._absolute(trial)
        if any(not 0 <= absolute[c] < _DELAY_MAX_PS for c in trial):
            raise CommandError("12", "illegal delay")
        self.delays = trial
        return None

    def _level(self, values: list[float], lo: float, hi: float, query: bool,
               params: list[str]) -> str | None:
        output = _int(params[0])
        if not 0 <= output <= 4:
            raise CommandError("10", "illegal value")
        if query:
            return f"{values[output]:+.2f}"
        volts = _float(params[1])
        if not lo <= volts <= hi:
            raise CommandError("10", "illegal value")
        values[output] = round(volts, 2)
        return None

    def _lamp(self, query: bool, params: list[str]) -> str | None:
        return self._level(self.amplitude, 0.5, 5.0, query, params)

    def _loff(self, query: bool, params: list[str]) -> str | None:
        return self._level(self.offset, -3.0, 3.0, query, params)

    _COMMANDS = {
        "*IDN": (0, None, _idn),
        "*OPC": (0, 0, _opc),
        "*WAI": (None, 0, _nothing),
        "*CLS": (None, 0, _cls),
        "*RST": (None, 0, _rst),
        "*TRG": (None, 0, _trg_command),
        "LERR": (0, None, _lerr),
        "INSR": (0, None, _insr),
        "TSRC": (0, 1, _tsrc),
        "DLAY": (1, 3, _dlay),
        "LAMP": (1, 2, _lamp),
        "LOFF": (1, 2, _loff),
    }
