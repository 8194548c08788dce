"""The TTL pattern on a programmable pattern generator (PrawnDO): compile, load, re-arm.

`PatternLoader` is the sequencer's ``pattern_loader`` (``load_pattern(edges, detection_s)``,
`TableSequencer`, `ProbeSequencer`) when the config has a pattern generator (decision 0311).
It compiles one cycle's pattern (`PulseProgram.edges`, `ProbeProgram.edges`) into PrawnDO
instructions through a wiring {line name: output bit}:

- every line but ``detection`` is a pulse of `pulse_s` (200 ns; shortened to end 5 ticks
  before the same line's next edge when that comes sooner, as around a ~100 ns Rabi pulse)
  whose rising edge is the edge's time: the inputs it drives (the DDS's table trigger,
  the counter's TRIG, the RF
  switches, the shutters' gate) act on an edge. 200 ns is well below the 1 us between the
  probe's ``dds_step`` edges (`ProbeProgram`: four edges 1 us apart, so 800 ns low between
  two pulses, more than the unit's 50 ns minimum instruction) and above the 160 ns that
  labscript takes as the least trigger width (``trigger_minimum_duration``);
- ``detection`` is a level, high for `detection_s` from its edge (the detection light);
- a probe beam's line (``beam_1``..``beam_3``) is a level from its edge to the next
  ``beam_off`` edge (the beam's RF switch: it times a shot's pulse, as short as 5 ticks, on
  the 10 ns grid; ``beam_off`` is that line going low, no output of its own);
- times go to the 10 ns grid by rounding to the nearest tick (``round``: a half tick to the
  even tick), the pulse program's float times being exact to far better than 5 ns;
- a block is the cycle's instructions (the outputs between changes, each >= 5 ticks) and
  an indefinite wait holding all outputs low; K copies of the block (K = `MAX_COPIES`, 256,
  or fewer where 30,000 instructions hold fewer), the last wait followed by the stop. More
  copies only spare ``run`` exchanges (one per K cycles), and each load writes them all: a
  micromotion measurement loads 16 patterns, and 256 copies cost 2 ms a load on the twin
  where a full memory cost 14 ms (a month of measurements: 80 s). One ``run`` arms the
  first copy on the next trigger; each copy's wait takes the next trigger. So one program
  serves K cycles of the DG645's triggers; `before_trigger` (called by `TableSequencer.start`
  each cycle, one integer decrement) sends ``run`` again once the K copies are used.

An unwired line, two pulses of one line closer than `pulse_s` + 5 ticks, or changes closer
than 5 ticks are `ValueError`s before anything is written.
"""

from __future__ import annotations

import math

from ionclock.drivers.prawndo import MAX_INSTRUCTIONS, MIN_REPS
from ionclock.drivers.sequencer import BEAM_LINES, BEAM_OFF

TICK_S = 10e-9
#: Copies of a cycle per program (one ``run`` per this many triggers).
MAX_COPIES = 256
PULSE_S = 200e-9
DETECTION = "detection"


def compile_block(edges, detection_s: float, wiring: dict, pulse_s: float = PULSE_S,
                  tick_s: float = TICK_S) -> list[tuple[int, int]]:
    """One cycle as (output word, reps in ticks) instructions, ending with its wait (word 0, 0).

    `edges`: (offset s from the trigger, line) pairs; `wiring`: {line: bit}.
    """
    width = round(pulse_s / tick_s)
    if width < MIN_REPS:
        raise ValueError(f"pulse_s {pulse_s!r} is below {MIN_REPS} ticks of {tick_s} s")
    det = round(detection_s / tick_s)
    highs: dict[int, list[tuple[int, int]]] = {}
    pulses: set[tuple[int, int]] = set()
    offs = sorted(round(t / tick_s) for t, line in edges if line == BEAM_OFF)
    for t, line in edges:
        if line == BEAM_OFF:
            continue   # the end of a beam line's level (below)
        bit = wiring.get(line)
        if bit is None:
            raise ValueError(f"pattern line {line!r} has no output in the wiring "
                             f"({', '.join(sorted(wiring))})")
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"edge time of {line!r} must be >= 0 s, got {t!r}")
        n = round(t / tick_s)
        length = det if line == DETECTION else width
        if line in BEAM_LINES:   # high until the next beam_off (none: a pulse like the rest)
            end = next((m for m in offs if m > n), None)
            if end is not None:
                length = end - n
        if length < MIN_REPS:
            raise ValueError(f"{line}: high for {length} ticks, fewer than {MIN_REPS}")
        highs.setdefault(bit, []).append((n, n + length))
        if length == width and line != DETECTION:
            pulses.add((bit, n))   # its fall may move (only its rising edge acts)
    # the changes that stay where they are: every rise, and the fall of every level
    fixed = sorted({n for bit, spans in highs.items() for a, b in spans
                    for n in ((a,) if (bit, a) in pulses else (a, b))} | {0})
    for bit, spans in highs.items():
        for j, (a, b) in enumerate(spans):
            if (bit, a) in pulses:
                spans[j] = (a, _fall(a, b, fixed))
    changes: set[int] = set()
    for bit, spans in highs.items():
        spans.sort()
        # a pulse followed by the same line's next edge sooner than its width + 5 ticks (a
        # shot's Rabi pulse of ~100 ns between two dds_step edges) is shortened to fit
        for j in range(len(spans) - 1):
            (a0, a1), (b0, _) = spans[j], spans[j + 1]
            if b0 < a1 + MIN_REPS and b0 - a0 >= 2 * MIN_REPS:
                spans[j] = (a0, b0 - MIN_REPS)
        for (a0, a1), (b0, _) in zip(spans, spans[1:]):
            if b0 < a1 + MIN_REPS:
                raise ValueError(f"output {bit}: pulses at {a0} and {b0} ticks overlap or "
                                 f"touch (each {a1 - a0} ticks)")
        for a, b in spans:
            changes.update((a, b))
    points = sorted(changes | {0})
    out = []
    for start, stop in zip(points, points[1:]):
        if stop - start < MIN_REPS:
            raise ValueError(f"outputs change {stop - start} ticks apart at tick {start}: "
                             f"the unit needs {MIN_REPS}")
        word = 0
        for bit, spans in highs.items():
            if any(a <= start < b for a, b in spans):
                word |= 1 << bit
        out.append((word, stop - start))
    out.append((0, 0))   # the wait: all outputs low until the next trigger
    return out


def _fall(rise: int, fall: int, fixed: list[int]) -> int:
    """A pulse's fall moved off the other changes it would crowd (closer than 5 ticks).

    Only a pulse's rising edge acts; its fall may be anywhere from 5 ticks after the rise to
    a little past its nominal width: it moves onto the crowding change (the two changes
    become one). (A cooling_end edge at a shot's pulse start, with no dark time, would end
    its pulse 4 ticks before the beam's switch closes on a 240 ns Rabi pulse.)
    """
    for c in fixed:
        if rise < c and abs(c - fall) < MIN_REPS:
            if c - rise >= MIN_REPS:
                return c
            break   # a change within 5 ticks of the rise: no fall helps (refused later)
    return fall


def program_of(block: list[tuple[int, int]], max_instructions: int = MAX_INSTRUCTIONS,
               max_copies: int = MAX_COPIES):
    """(K copies of `block` then the stop, K): up to `max_copies` as fit, at least one."""
    k = min(max_copies, (max_instructions - 1) // len(block))
    if k < 1:
        raise ValueError(f"a cycle of {len(block)} instructions does not fit in "
                         f"{max_instructions}")
    return block * k + [(0, 0)], k


class PatternLoader:
    """``load_pattern(edges, detection_s)`` on a PrawnDO, and the re-arm every K triggers.

    Parameters
    ----------
    generator: the `ionclock.drivers.prawndo.PrawnDO` (possibly wrapped for resilience).
    wiring: {TTL line name: output bit}.
    pulse_s, tick_s, max_instructions: as in `compile_block` and `program_of`.
    """

    def __init__(self, generator, wiring: dict, pulse_s: float = PULSE_S,
                 tick_s: float = TICK_S, max_instructions: int = MAX_INSTRUCTIONS):
        self.generator = generator
        self.wiring = dict(wiring)
        self.pulse_s = pulse_s
        self.tick_s = tick_s
        self.max_instructions = max_instructions
        self.copies = 0        # K of the loaded program
        self._left = 0         # triggers the armed program still takes
        self.loads = 0
        self.rearms = 0
        self._loaded = None    # (edges, detection_s) of the program in the unit

    def __call__(self, edges, detection_s: float) -> None:
        """Compile and load the pattern (K copies), and arm it for the next trigger."""
        edges = tuple(edges)
        block = compile_block(edges, detection_s, self.wiring, self.pulse_s, self.tick_s)
        program, k = program_of(block, self.max_instructions)
        self._stop_if_running()
        self.generator.load(program)
        self.generator.run()
        self.copies = self._left = k
        self.loads += 1
        self._loaded = (edges, detection_s)

    load_pattern = __call__

    def _stop_if_running(self) -> None:
        # a program waiting for its next trigger is running: the unit refuses cls/adm/run
        if self.generator.status().run in (1, 2):
            self.generator.abort()

    def before_trigger(self) -> None:
        """One cycle's trigger is about to fire: ``run`` again once the K copies are used."""
        left = self._left
        if left <= 0:
            # the K-th copy ended on the stop (run status 0): one `run` arms the first again
            self.generator.run()
            self.rearms += 1
            left = self.copies
        self._left = left - 1

    def rearm(self) -> None:
        """After a failure: load the last pattern again and arm it (aborted, or power cycled)."""
        if self._loaded is not None:
            self(*self._loaded)
