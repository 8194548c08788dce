"""Twin of the PrawnDO pattern generator: its serial commands, instruction memory and PIO program.

The PrawnDO (labscript suite) is a Raspberry Pi Pico running open firmware: 16 digital
outputs (GPIO 0-15), a hardware trigger on GPIO 16, one instruction = a 16-bit output word
held for `reps` clock cycles (10 ns at the default 100 MHz; at least 5), 30,000 instructions.
The firmware is the manual; this twin follows it line by line:

- labscript-suite/prawn_digital_output ``prawn_do/prawn_do.c`` (version 1.3.0, the one
  whose ``adm <start> <count>`` answers ``ready``, as the host driver expects) and
  ``prawn_do/prawn_do.pio`` (the state machine that plays the memory);
- ``fast_serial.c`` of the same repository: a command line is read up to and including its
  LF (at most 255 bytes), so the error replies that quote the command (``Invalid command:
  %s``) quote it with its CR LF, and the reply then ends with a second CR LF;
- labscript-suite/labscript-devices ``labscript_devices/PrawnDO/blacs_workers.py`` (the host
  side: ``ver``, ``sts``, ``gto``, ``man``, ``cls``, ``adm 0 <n>`` then the binary block,
  ``run``, ``abt``) and ``docs/source/devices/prawndo.rst`` (specifications; "all waits
  are indefinite waits"; a wait holds the word of its own instruction).

What the firmware does, as the twin does it:

- Replies end with CR LF. ``ver`` -> ``Version: 1.3.0``; ``sts`` -> ``run-status:%d
  clock-status:%d``; run status 0 stopped, 1 transition to running, 2 running, 3 abort
  requested, 4 aborting, 5 aborted, 6 transition to stop (the twin shows 0, 2 and 5: core 1
  passes the others in microseconds). ``abt`` only while running (else ``Can only abort when
  status is 1 or 2``); every command but ``ver``, ``brd``, ``sts``, ``deb``, ``ndb``, ``abt``
  only when stopped or aborted (else ``Cannot execute command %s during buffered
  execution.``).
- Memory: two 32-bit words per instruction, the output and ``reps - 4`` (0 stays 0: a
  wait); ``set``/``get``/``adm`` add and subtract the 4 as the firmware does. ``adm <start>
  <count>`` (hex) answers ``ready``, takes 6 bytes per instruction (``<u2`` output, ``<u4``
  reps), sets reps 1-4 to 0 and reports them (``Invalid number of reps in %d instructions,
  most recent error at instruction %d. ...``), else ``ok``; the program length becomes
  start + count. ``cls`` empties it.
- Playing (the PIO program): ``run`` waits for a trigger, ``swr`` starts at once. An
  instruction with reps r > 0 puts its word out for r cycles. One with reps 0 puts its word
  out and looks at the next: reps 0 there too is the stop (the outputs keep the first word,
  run status 0); else the word is held until the next trigger, and from it the next
  instruction's word is out for its reps (the trigger input is level sensitive; the twin
  takes each trigger as one edge). A program that ends without a stop leaves the state
  machine waiting for data: running, outputs held, every later trigger unanswered.
- ``man <hex>``: the outputs at once (bits above 15 masked); ``gto``: the outputs now (hex).
  ``clk <src> <Hz>``: src 0 internal (the twin accepts whole MHz from 10 to 133 MHz, its
  choice: the Pico's PLL reaches some others, no source lists them), anything else up to 2
  external (the twin trusts the given frequency).

The trigger: the DG645 twin calls ``world.start_cycle(t)``; with a PrawnDO the world asks
`SimPrawnDO.trigger` (``world.attach_pattern_source``) for the block it plays from `t`: the
instructions from the armed one up to the next wait or the stop, as TTL edges through the
`wiring` (line -> output bit; every wired line is an edge at its bit's rising edge, the
``detection`` line a level whose high time is the detection window, a beam line's fall the
``beam_off`` edge: its RF switch closes). Blocks are decoded once
per program and interned by content, so K identical copies of the clock cycle are one object
and the world reloads nothing. A trigger with nothing armed (stopped, aborted, ended, the
previous block still playing) plays nothing: `dark_triggers` counts it, and the world's cycle
is dark. Not modelled: the trigger-to-output latency (labscript's ``input_response_time``
50 ns; the twin plays from the trigger's instant), the debug prints (``deb``), ``frq`` and
``prg`` (no reply), the text-mode ``add``/``edt``/``cur``/``dmp`` beyond what is below.
"""

from __future__ import annotations

import math
import struct

from ionclock.sim_instruments.base import SimInstrument

VERSION = "1.3.0"
MAX_INSTR = 30000
OUTPUT_MASK = 0xFFFF
SERIAL_BUFFER_SIZE = 256
STOPPED, TRANSITION_TO_RUNNING, RUNNING, ABORT_REQUESTED, ABORTING, ABORTED = 0, 1, 2, 3, 4, 5
INTERNAL, EXTERNAL = 0, 1
#: Commands the firmware takes while a program runs.
_ANYTIME = ("ver", "brd", "sts", "deb", "ndb", "abt")
#: The line whose high time is the detection window (a level, not an edge).
DETECTION_LINE = "detection"
#: The probe beams' RF switch lines (levels): each one's fall reaches the world as
#: ``beam_off``, the end of a characterisation shot's pulse (drivers/sequencer.py BEAM_OFF).
BEAM_SWITCH_LINES = ("beam_1", "beam_2", "beam_3")
BEAM_OFF_LINE = "beam_off"
#: Simultaneous edges (one output word) reach the world in the order the pulse programs list
#: them (drivers/sequencer.py `PulseProgram.edges`, `ProbeProgram.edges`).
_LINE_ORDER = {name: i for i, name in enumerate((
    "sideband_cooling", "cooling_end", "dds_step", "beam_1", "beam_2", "beam_3", "beam_off",
    "probe_end", "detection", "counter_trig", "shutter_gate_fall", "shutter_gate_rise"))}


def _scan_hex(tokens: list[str], n: int, base: int = 16) -> list[int]:
    """``sscanf("%*s %x %x ...")``: up to `n` numbers after the first token, as C reads them.

    Each is an optional sign, an optional ``0x`` (base 16), digits; reading stops at the first
    token that does not start with a digit. Values wrap to 32 bits (unsigned int).
    """
    out = []
    for tok in tokens[1:1 + n]:
        t = tok
        sign = 1
        if t[:1] in "+-":
            sign, t = (-1 if t[0] == "-" else 1), t[1:]
        if base == 16 and t[:2].lower() == "0x" and len(t) > 2:
            t = t[2:]
        digits = "0123456789abcdef"[:base]
        k = 0
        while k < len(t) and t[k].lower() in digits:
            k += 1
        if k == 0:
            break
        out.append((sign * int(t[:k], base)) & 0xFFFFFFFF)
        if k < len(t):   # "12x": the number ends there and so does the scan
            break
    return out


class _Block:
    """One decoded block: the outputs from a trigger to the next wait or the stop."""

    __slots__ = ("pattern", "length_s", "size", "end", "steps")

    def __init__(self, pattern, length_s, size, end, steps):
        self.pattern = pattern     # (edges, detection_s), interned
        self.length_s = length_s   # until the wait or the stop (s)
        self.size = size           # instructions from its first to the next block's first
        self.end = end             # "wait", "stop" or "starved" (the memory ran out)
        self.steps = steps         # ((t from the trigger, word), ...) for `gto`


class SimPrawnDO(SimInstrument):
    """Byte-level PrawnDO twin (``SimPrawnDO(world, wiring={...})``).

    Parameters
    ----------
    world:
        None, or the world whose starts it plays (``attach_pattern_source``, ``env``).
    wiring:
        {TTL line name: output bit 0-15}: which output drives which of the world's lines.
    """

    input_terminator = b"\n"
    output_terminator = b"\r\n"
    max_line = SERIAL_BUFFER_SIZE - 1
    name = "sim PrawnDO"

    def __init__(self, world=None, seed: int | None = 0, *, wiring: dict | None = None):
        wiring = dict(wiring or {})
        bits = {}
        for line, bit in wiring.items():
            if not isinstance(line, str) or not line:
                raise ValueError(f"wiring: a line name must be a non-empty string, got {line!r}")
            if isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit <= 15:
                raise ValueError(f"wiring.{line}: output bit must be 0..15, got {bit!r}")
            if bit in bits:
                raise ValueError(f"wiring.{line}: output {bit} already drives {bits[bit]!r}")
            bits[bit] = line
        self.wiring = wiring
        self._env = getattr(world, "env", None)
        self.dark_triggers = 0
        self.triggers = 0
        super().__init__(world, seed)
        attach = getattr(world, "attach_pattern_source", None)
        if attach is not None:
            attach(self)

    # --- state ------------------------------------------------------------------------------
    def reset_settings(self) -> None:
        """Power-on: stopped, internal 100 MHz clock, empty memory, outputs low."""
        self.status = STOPPED
        self.clk_status = INTERNAL
        self.clock_hz = 100e6
        self.debug = False
        self.do_cmds: list[int] = []   # the firmware's do_cmds[0:do_cmd_count]
        self.outputs = 0                # the pins when nothing plays
        self._binary_left = 0           # bytes of an adm block still to come
        self._binary = bytearray()
        self._adm_start = 0
        self._mode = None               # "add" / "edt": text lines that are instructions
        self._disarm()
        self._changed()

    def _disarm(self) -> None:
        self._armed: int | None = None   # the instruction the next trigger starts
        self._busy_until = -math.inf
        self._playing: tuple[float, _Block] | None = None
        self._stop_at: float | None = None

    def _changed(self) -> None:
        """The memory or the clock changed: decoded blocks are stale."""
        self._blocks: dict[int, _Block] = {}
        self._interned: dict[tuple, tuple] = {}

    def _now(self) -> float:
        return self._env.now if self._env is not None else 0.0

    def _sync(self) -> None:
        """Bring the run status and the pins up to now (the program may have ended)."""
        if self._playing is None:
            return
        t0, block = self._playing
        if self._now() < t0 + block.length_s:
            return
        if block.steps:
            self.outputs = block.steps[-1][1]
        self._playing = None
        if block.end == "stop":
            self.status = STOPPED
            self._armed = None

    def pins(self) -> int:
        """The output word now."""
        self._sync()
        if self._playing is None:
            return self.outputs
        t0, block = self._playing
        dt = self._now() - t0
        word = self.outputs
        for t, w in block.steps:
            if t > dt:
                break
            word = w
        return word

    # --- the trigger input (GPIO 16): the world's starts --------------------------------------
    def trigger(self, t: float):
        """A trigger edge at `t`: the (edges, detection_s) of the block it starts, or None."""
        self.triggers += 1
        pc = self._armed
        if pc is None or t < self._busy_until:
            self.dark_triggers += 1
            return None
        playing = self._playing
        if playing is not None and playing[1].steps:
            self.outputs = playing[1].steps[-1][1]   # the word the last block's wait held
        block = self._blocks.get(pc)
        if block is None:
            block = self._decode(pc)
        self._playing = (t, block)
        self._busy_until = t + block.length_s
        self._armed = pc + block.size if block.end == "wait" else None
        return block.pattern

    def _decode(self, pc: int) -> _Block:
        """The block from instruction `pc`, as the PIO program plays it; cached with its copies.

        The outputs before it are the word its wait held (instruction pc - 1), or the pins at
        the start. Identical blocks further on (the same instructions, the same kind of end)
        get the same `_Block`: a program of K copies of a cycle is decoded once.
        """
        cmds = self.do_cmds
        n = len(cmds) // 2
        tick = 1.0 / self.clock_hz
        steps = []
        cycles = 0
        end = "starved"
        i = pc
        while i < n:
            word, stored = cmds[2 * i] & OUTPUT_MASK, cmds[2 * i + 1]
            steps.append((cycles * tick, word))
            if stored:
                cycles += stored + 4
                i += 1
                continue
            # reps 0: the word is out; the next instruction says wait or stop
            if i + 1 < n:
                end = "stop" if cmds[2 * i + 3] == 0 else "wait"
            break
        size = i + 1 - pc
        length_s = cycles * tick
        prev = self.outputs if pc == 0 else cmds[2 * (pc - 1)] & OUTPUT_MASK
        block = _Block(self._pattern(tuple(steps), prev, length_s), length_s, size, end,
                       tuple(steps))
        self._blocks[pc] = block
        if end == "wait" and pc > 0:
            body = cmds[2 * pc:2 * (pc + size)]
            q = pc + size
            while (q + size < n and cmds[2 * q:2 * (q + size)] == body
                   and cmds[2 * (q + size) + 1] != 0):
                self._blocks[q] = block
                q += size
        return block

    def _pattern(self, steps: tuple, prev: int, length_s: float):
        key = (steps, prev, length_s)
        hit = self._interned.get(key)
        if hit is not None:
            return hit
        edges = []
        detection_s = 0.0
        for line, bit in self.wiring.items():
            mask = 1 << bit
            level = prev & mask
            rise = None
            for t, word in steps:
                now = word & mask
                if now and not level:
                    rise = t
                    edges.append((t, line))
                elif level and not now:
                    if line == DETECTION_LINE and rise is not None:
                        detection_s = t - rise
                    elif line in BEAM_SWITCH_LINES:   # the beam's RF switch closes
                        edges.append((t, BEAM_OFF_LINE))
                level = now
            if level and line == DETECTION_LINE and rise is not None and not detection_s:
                detection_s = length_s - rise   # still high at the wait: up to the block's end
        # edges at the same 10 ns tick reach the world's handlers in the sequencer's order
        edges.sort(key=lambda e: (e[0], _LINE_ORDER.get(e[1], len(_LINE_ORDER))))
        pattern = (tuple(edges), detection_s)
        self._interned[key] = pattern
        return pattern

    # --- bytes: the adm block is binary --------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Receive bytes; those of an ``adm`` block go to the memory, not the line parser."""
        if self._binary_left:
            if self.faults.disconnected:
                super().write(b"")   # raises LinkDown
            take = data[:self._binary_left]
            self._binary += take
            self._binary_left -= len(take)
            data = data[len(take):]
            if not self._binary_left:
                self._finish_adm()
            if not data:
                return
        super().write(data)

    def _dispatch(self, raw: bytes) -> None:
        super()._dispatch(raw)
        # an adm line asks for the bytes after it, which may have come in the same write
        if self._binary_left and self._rx:
            rest, self._rx = self._rx, b""
            self.write(rest)

    def _finish_adm(self) -> None:
        block, self._binary = bytes(self._binary), bytearray()
        cmds = self.do_cmds
        del cmds[2 * self._adm_start:]
        cmds.extend([0] * (2 * self._adm_start - len(cmds)))
        errors = 0
        last = 0
        for word, reps in struct.iter_unpack("<HI", block):
            cmds.append(word)
            if 0 < reps < 5:
                errors += 1
                last = (len(cmds) + 1) // 2
                reps = 0
            cmds.append(reps - 4 if reps else 0)
        self._changed()
        if self.faults.timeout:
            return
        if errors:
            self._send(f"Invalid number of reps in {errors} instructions, most recent error at "
                       f"instruction {last}. Setting reps to zero for these instructions.")
        else:
            self._send("ok")

    # --- commands ---------------------------------------------------------------------------
    def handle(self, line: str) -> str | None:
        """One command line (without its LF) -> the firmware's reply (without the last CR LF)."""
        buf = line + "\n"            # serial_buf keeps the terminator (fast_serial_read_until)
        if self._mode is not None:
            return self._text_instruction(line)
        self._sync()
        if len(buf) < 3:
            return f"Invalid command: {buf}"
        cmd = buf[:3]
        status = self.status
        if cmd == "ver":
            return f"Version: {VERSION}"
        if cmd == "brd":
            return "board: pico1"
        if cmd == "sts":
            return f"run-status:{status} clock-status:{self.clk_status}"
        if cmd in ("deb", "ndb"):
            self.debug = cmd == "deb"
            return "ok"
        if cmd == "abt":
            if status in (RUNNING, TRANSITION_TO_RUNNING):
                self._abort()
                return "ok"
            return "Can only abort when status is 1 or 2"
        if status not in (ABORTED, STOPPED):
            return f"Cannot execute command {buf} during buffered execution."
        method = getattr(self, f"_cmd_{cmd}", None)
        if method is None:
            return f"Invalid command: {buf}"
        return method(buf.split())

    def _abort(self) -> None:
        # core 1 sees the request in its tight loop and stops the state machine: the pins
        # keep what they had
        self.outputs = self.pins()
        self._disarm()
        self.status = ABORTED

    def _start(self, hardware: bool) -> None:
        self.status = RUNNING
        self._disarm()
        self._armed = 0
        self._blocks.pop(0, None)   # block 0 starts from the pins as they are now
        if not hardware:
            start = getattr(self.world, "start_cycle", None)
            if start is not None:
                start(self._now())
            else:
                self.trigger(self._now())

    def _cmd_cls(self, tokens):
        self.do_cmds = []
        self._changed()
        return "ok"

    def _cmd_run(self, tokens):
        self._start(hardware=True)
        return "ok"

    def _cmd_swr(self, tokens):
        self._start(hardware=False)
        return "ok"

    def _cmd_man(self, tokens):
        v = _scan_hex(tokens, 1)
        if len(v) != 1:
            return "invalid request"
        self.outputs = v[0] & OUTPUT_MASK
        return "ok"

    def _cmd_gto(self, tokens):
        return f"{self.pins():x}"

    def _cmd_set(self, tokens):
        v = _scan_hex(tokens, 3)
        if len(v) < 3:
            return "Invalid instruction"
        addr, output, reps = v
        if addr >= MAX_INSTR:
            return f"Invalid instruction address {addr:x}"
        if output & ~OUTPUT_MASK:
            return f"Invalid output specification {output:x}"
        if 0 < reps < 5:
            return f"Reps must be 0 or greater than 4, got {reps:x}"
        cmds = self.do_cmds
        if len(cmds) < 2 * addr + 2:
            cmds.extend([0] * (2 * addr + 2 - len(cmds)))
        stored = reps - 4 if reps else 0
        cmds[2 * addr], cmds[2 * addr + 1] = output, stored
        if stored == 0 and addr != 0 and cmds[2 * addr - 1] == 0:
            del cmds[2 * addr + 2:]   # a stop just set: the program ends here
        self._changed()
        return "ok"

    def _cmd_get(self, tokens):
        v = _scan_hex(tokens, 1)
        if not v:
            return "Invalid request"
        addr = v[0]
        if addr * 2 + 1 > len(self.do_cmds):
            return "Invalid address"
        output, reps = self.do_cmds[2 * addr], self.do_cmds[2 * addr + 1]
        return f"{output:x} {reps + 4 if reps else 0:x}"

    def _cmd_adm(self, tokens):
        v = _scan_hex(tokens, 2)
        if len(v) < 2:
            return "Invalid request"
        start, count = v
        if start + count > MAX_INSTR:
            return f"Invalid address and/or too many instructions ({start} + {count})."
        self._adm_start = start
        self._binary_left = 6 * count
        if not count:
            self._send("ready")
            self._finish_adm()
            return None
        return "ready"

    def _cmd_len(self, tokens):
        n = len(self.do_cmds)
        return f"Number of command lines: {n}\r\nNumber of instructions: {n // 2}"

    def _cmd_dmp(self, tokens):
        cmds = self.do_cmds
        lines = []
        for i in range(0, len(cmds) - 1, 2):
            lines.append(f"do_cmd: {cmds[i]:04x}")
            lines.append("\tWait" if cmds[i + 1] == 0 else f"\treps: {cmds[i + 1] + 4:x}")
        return "\r\n".join(lines) if lines else None

    def _cmd_clk(self, tokens):
        v = _scan_hex(tokens, 2, base=10)
        if len(v) < 2:
            return "invalid clock request"
        src, freq = v
        if src > 2:
            return "invalid clock source request"
        if freq > 133_000_000:
            return "invalid clock frequency request"
        if src == 0:
            if freq % 1_000_000 or freq < 10_000_000:
                return "Failure. Cannot exactly achieve that clock frequency"
            self.clk_status = INTERNAL
        else:
            if freq <= 0:
                return "invalid clock frequency request"
            self.clk_status = EXTERNAL
        self.clock_hz = float(freq)
        self._changed()
        return "ok"

    def _cmd_add(self, tokens):
        self._mode = "add"
        return None

    def _text_instruction(self, line: str) -> str | None:
        """A line of ``add`` mode: ``<output> <reps>`` (hex), or ``end``."""
        if line.startswith("end"):
            self._mode = None
            return "ok"
        v = _scan_hex(["add"] + line.split(), 2)
        if len(v) < 2:
            return None   # the firmware reads the next line
        output, reps = v
        if output & ~OUTPUT_MASK:
            self._mode = None
            return f"Invalid output specification {output:x}"
        if 0 < reps < 5:
            self._mode = None
            return f"Reps must be 0 or greater than 4, got {reps:x}"
        self.do_cmds += [output, reps - 4 if reps else 0]
        self._changed()
        return None

    # the firmware's replies to a line it cannot read: the line is quoted (see the docstring)
    def line_too_long(self) -> str | None:
        return None

    def bad_byte(self) -> str | None:
        return None
