"""Twin of the SRS SR400 gated photon counter: its two-letter grammar on the world.

Commands end with CR (or LF); several may share a line separated by ``;``; set commands
answer nothing; queries answer one CR-terminated line. A command the unit does not know, or
a bad parameter, sets status bit 7 (command error) and answers nothing, as the real unit does.

Counting: `CS` starts, `CH` pauses, `CR` resets (and clears the scan buffer). A scan point
completes when the driver asks for it (``QA m`` with m = points done + 1): the twin takes
that as the detection gate just ended, and the counts come from ``world.detect(gate_s)``
when the world has `detect`, else from the twin's own seeded Poisson source with mean
`mean_counts`. Points already done read back unchanged; later points read ``-1``.
"""

from __future__ import annotations

import numpy as np

from ionclock.sim_instruments.base import CommandError, SimInstrument

_CR = b"\r"
_QA = (b"QA ", b"qa ")


class SimSR400(SimInstrument):
    """Byte-level SR400 twin (``Twin(world, **options)``)."""

    input_terminator = _CR
    output_terminator = _CR
    name = "sim SR400"

    def __init__(self, world=None, seed: int | None = 0, *, mean_counts: float = 20.0):
        self._detect = getattr(world, "detect", None)
        self._np_rng = np.random.default_rng(seed)
        self._pool: list[int] = []
        self._mean = float(mean_counts)
        super().__init__(world, seed)

    # --- state ----------------------------------------------------------------------------
    def reset_settings(self) -> None:
        """Power-on (default) settings, counters in reset."""
        self.cm = 0
        self.ci = [1, 2, 0]           # A <- INPUT 1, B <- INPUT 2, T <- 10 MHz
        self.cp = [0.0, 1e3, 1e7]     # B and T presets (T: 1 s of 10 MHz)
        self.gm = [0, 0]              # gates CW
        self.gw = [5e-6, 5e-6]
        self.gd = [0.0, 0.0]
        self.dl = [-0.01, -0.01, -0.01]
        self.np_ = 1
        self.ne = 0
        self.dt = 2e-3
        self.status = 0
        self.state = "reset"
        self.buffer: list[int] = []

    @property
    def mean_counts(self) -> float:
        """Mean of the twin's own Poisson counts (used when the world has no `detect`)."""
        return self._mean

    @mean_counts.setter
    def mean_counts(self, value: float) -> None:
        self._mean = float(value)
        self._pool.clear()

    def gate_s(self) -> float:
        """Return the counting window of one point in s (gate A width, or T's 10 MHz period)."""
        if self.gm[0] == 0 and self.ci[2] == 0:
            return self.cp[2] * 1e-7
        return self.gw[0]

    def _counts(self) -> int:
        if self._detect is not None:
            return int(self._detect(self.gate_s()))
        if not self._pool:
            self._pool = self._np_rng.poisson(self._mean, 4096).tolist()
        return self._pool.pop()

    # --- the byte stream, specialised for the per-cycle query ---------------------------------
    def write(self, data: bytes) -> None:
        """Receive bytes; a lone ``QA m`` line with no fault skips the generic path."""
        if (data[:3] in _QA and data[-1:] == _CR and not self._rx
                and not self.record_transcript and data.count(_CR) == 1):
            faults = self.faults
            if not (faults.disconnected or faults.timeout or faults.garble):
                arg = data[3:-1]
                if arg.isdigit():
                    reply = self._qa_point(int(arg))
                    if reply is not None:
                        self._tx += reply.encode("ascii") + _CR
                    return
        super().write(data)

    # --- grammar ------------------------------------------------------------------------------
    def handle(self, line: str) -> str | None:
        """Parse one line (commands separated by ``;``) and return the replies."""
        replies = []
        for part in line.split(";"):
            text = "".join(part.split())  # the unit ignores spaces
            if not text:
                continue
            try:
                reply = self._command(text[:2].upper(), text[2:])
            except CommandError:
                self.status |= 0x80
                continue
            if reply is not None:
                replies.append(reply)
        return "\r".join(replies) if replies else None

    def _command(self, cmd: str, arg: str) -> str | None:
        args = arg.split(",") if arg else []
        if cmd == "QA":
            if not args:
                return str(self.buffer[-1]) if self.buffer else "-1"
            return self._qa_point(_int(args[0], 1, 2000))
        if cmd == "XA":
            return "0"
        if cmd == "CS":
            if self.state == "reset":
                self.buffer.clear()
            self.state = "counting"
            return None
        if cmd == "CH":
            if self.state == "counting":
                self.state = "paused"
            return None
        if cmd == "CR":
            self.state = "reset"
            self.buffer.clear()
            return None
        if cmd == "CL":
            self.state = "reset"
            self.buffer.clear()
            self.status = 0
            return None
        if cmd == "SS":
            if args:
                bit = _int(args[0], 0, 7)
                value = (self.status >> bit) & 1
                self.status &= ~(1 << bit)
                return str(value)
            value, self.status = self.status, 0
            return str(value)
        if cmd == "NN":
            return str(len(self.buffer))
        if cmd == "CM":
            if not args:
                return str(self.cm)
            self.cm = _int(args[0], 0, 3)
            self.state = "reset"  # setting the mode also resets the counters
            self.buffer.clear()
            return None
        if cmd == "CI":
            i = _int(args[0], 0, 2) if args else _fail()
            if len(args) == 1:
                return str(self.ci[i])
            j = _int(args[1], 0, 3)
            if j not in ((0, 1), (1, 2), (0, 2, 3))[i]:
                _fail()
            self.ci[i] = j
            return None
        if cmd == "CP":
            i = _int(args[0], 1, 2) if args else _fail()
            if len(args) == 1:
                return _preset_out(self.cp[i])
            n = _float(args[1], 1.0, 9e11)
            self.cp[i] = float(f"{n:.0e}")  # only the most significant digit is used
            return None
        if cmd in ("NP", "NE", "DT"):
            if not args:
                return {"NP": str(self.np_), "NE": str(self.ne), "DT": f"{self.dt:.4E}"}[cmd]
            if cmd == "NP":
                self.np_ = _int(args[0], 1, 2000)
            elif cmd == "NE":
                self.ne = _int(args[0], 0, 1)
            else:
                self.dt = _float(args[0], 2e-3, 60.0)
            return None
        if cmd in ("GM", "GW", "GD", "DL"):
            i = _int(args[0], 0, 2 if cmd == "DL" else 1) if args else _fail()
            table = {"GM": self.gm, "GW": self.gw, "GD": self.gd, "DL": self.dl}[cmd]
            if len(args) == 1:
                value = table[i]
                return str(value) if cmd == "GM" else (
                    f"{value:.4f}" if cmd == "DL" else f"{value:.4E}")
            if cmd == "GM":
                table[i] = _int(args[1], 0, 2)
            elif cmd == "GW":
                table[i] = _round4(_float(args[1], 5e-9, 999.2e-3))
            elif cmd == "GD":
                table[i] = _round4(_float(args[1], 0.0, 999.2e-3))
            else:
                table[i] = _float(args[1], -0.3, 0.3)
            return None
        _fail()
        return None  # unreachable

    def _qa_point(self, m: int) -> str | None:
        if not 1 <= m <= 2000:
            self.status |= 0x80
            return None
        buf = self.buffer
        if (m == 1 and self.ne == 1 and self.state == "counting" and len(buf) >= self.np_):
            buf.clear()  # scan end mode START: a new scan began after the last point
        if m <= len(buf):
            return str(buf[m - 1])
        if self.state != "counting" or m > self.np_ or m != len(buf) + 1:
            return "-1"
        value = self._counts()
        buf.append(value)
        self.status |= 0x06 if len(buf) == self.np_ else 0x02  # data ready (+ scan finished)
        return str(value)


def _fail():
    raise CommandError("cmd", "command error")


def _int(text: str, lo: int, hi: int) -> int:
    if not text.isdigit() or not lo <= int(text) <= hi:
        _fail()
    return int(text)


def _float(text: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        _fail()
    if not lo <= value <= hi:
        _fail()
    return value


def _round4(t: float) -> float:
    return float(f"{t:.3e}") if t else 0.0


def _preset_out(n: float) -> str:
    return f"{n:.0E}".replace("E+", "E").replace("E0", "E") if n else "0"
