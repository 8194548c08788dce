"""Twin of the Novatech 409B four-channel DDS: the unit's serial grammar on the world.

Same bytes as the real unit (PROTOCOLS.md "Novatech 409B"): CRLF-terminated lines, ``OK`` or
``?N`` per command, echo on at power-on until ``E d``, five lines for ``QUE``, nothing for ``R``.
Like the real unit it does **not** reject amplitude words above 1023 (the 10-bit DAC wraps),
which is why the driver must.

Each applied output change calls ``world.dds_changed(channel, frequency_hz, phase_turns,
amplitude_fraction)`` when the world has that hook. In automatic update mode (``I a``, the
power-on mode) a change applies at once; in manual mode (``I m``) it waits for ``I p``.

Table mode (sources: see ``ionclock.drivers.novatech409b``; labscript-devices' NovaTechDDS9M
worker and docs, naqslab's NovaTech409B_AC, labscript's 2011 ``novatech.py``):

- ``t<ch> <aaaa> <ffffffff>,<pppp>,<vvvv>,<dd>`` (hex) writes entry ``aaaa`` of channel 0
  or 1 and answers ``OK``; the table holds `table_size` entries per channel. Unwritten
  entries (and every entry after ``R`` or a power cycle: static RAM) are all-zero words with
  dwell ``00``. As with ``V``, an amplitude word above 1023 is not rejected (it wraps).
  Error replies are this twin's choice (no source lists them): a malformed line, channel
  2 or 3, or an address out of range ``?0``; frequency above 171.1276031 MHz ``?1``; phase
  above 3fff ``?4``; a dwell field that is not 1-2 hex digits ``?5``.
- ``m t`` enters table mode with the pointer on entry 0 of each table channel; in automatic
  or manual update entry 0 is output at once (labscript: "the first entry of the table is
  not only loaded into the buffer, but output too"); with ``I e`` it waits for an edge.
  ``m 0`` leaves table mode; the outputs keep their values.
- `trigger` is one edge on the external trigger input (the world wires it with
  ``world.wire_ttl("dds_step", twin.trigger)``). Outside table mode it does nothing. In
  table mode, without ``I e``, an edge steps each channel's pointer, then outputs that entry
  (edge k outputs entry k: labscript's asynchronous mode); with ``I e`` an edge outputs the
  entry at the pointer, then steps (edge k outputs entry k - 1: labscript's synchronous
  mode, a rising edge outputs and the falling edge loads). Stepping off an entry with dwell
  ``00`` (end of table) depends on `table_end`: ``"hold"`` stays on it (the table has
  ended; ``m 0``/``m t`` re-arms), ``"wrap"`` goes back to entry 0. No source says which the
  unit does: the option keeps both testable. Other dwell codes step like ``ff`` (timed
  dwells are not run by the twin); each channel steps by its own entries' dwell codes
  (labscript writes the same address and dwell to both).
- ``I e`` selects external update; outside table mode the twin still applies ``F``/``P``/
  ``V`` at once in ``I e`` (it does not model externally timed single-tone updates).

The ``QUE`` status line ends with the firmware version (`firmware`, ``21`` by default as in
ARTIQ's capture ``80 BC0000 0000 0102 21``); the fields before it are copied from that
capture (no source documents them).
"""

from __future__ import annotations

import struct
from binascii import unhexlify as _unhexlify

from ionclock.sim_instruments.base import CommandError, ShortcutLines, SimInstrument

F_MAX_MHZ = 171.1276031
F_MAX_WORD = 1711276031
"""171.1276031 MHz in 0.1 Hz units: the highest frequency word the twin accepts."""
MAX_LINE = 64
TABLE_SIZE = 16384
TABLE_CHANNELS = (0, 1)
_CRLF = b"\r\n"
_FAST_HEADS = {b"F": "F", b"P": "P", b"V": "V"}
_TABLE_HEADS = (b"t", b"T")
_CHANNELS = (b"0", b"1", b"2", b"3")
_MODE_LINES = {b"m t\r\n": True, b"m 0\r\n": False}
_OK = b"OK\r\n"
_HEX = "0123456789abcdefABCDEF"
_ENTRY_WORDS = struct.Struct(">HIHHB").unpack
_ZERO_ENTRY = ((0, 0, 0), 0)  # ((frequency 0.1 Hz, phase, amplitude), dwell): unwritten


class SimNovatech409B(ShortcutLines, SimInstrument):
    """Byte-level Novatech 409B twin (``Twin(world, **options)``).

    Options: `echo` (power-on echo, on like the unit), `firmware` (the last field of the
    ``QUE`` status line, ``"21"``), `table_end` (``"hold"`` or ``"wrap"``: what an edge does
    on a table entry with dwell ``00``), `table_size` (entries per table channel, 16384).
    """

    input_terminator = _CRLF
    output_terminator = _CRLF
    name = "sim Novatech 409B"

    def __init__(self, world=None, seed: int | None = 0, *, echo: bool = True,
                 firmware: str = "21", table_end: str = "hold", table_size: int = TABLE_SIZE):
        if table_end not in ("hold", "wrap"):
            raise ValueError(f"table_end must be 'hold' or 'wrap', got {table_end!r}")
        if not (firmware.isascii() and firmware.isalnum()):
            raise ValueError(f"firmware must be one alphanumeric field, got {firmware!r}")
        self._power_on_echo = echo
        self._firmware = firmware
        self._wrap = table_end == "wrap"
        self.table_size = int(table_size)
        self._saved = [(0, 0, 1023)] * 4  # EEPROM: (frequency 0.1 Hz, phase, amplitude) words
        self._hook = getattr(world, "dds_changed", None)
        super().__init__(world, seed)
        wire = getattr(world, "wire_ttl", None)
        if wire is not None:
            wire("dds_step", self.trigger)

    # --- state ----------------------------------------------------------------------------
    def reset_settings(self) -> None:
        """Power-on state: echo on, automatic update, phase-continuous off, saved outputs."""
        self.echo = self._power_on_echo
        self.manual_update = False
        self.phase_continuous = False
        # Per channel (frequency 0.1 Hz, phase, amplitude) words: output, and waiting for
        # ``I p`` in manual update (tuples: an output change is one compare and one store)
        self.applied: list[tuple[int, int, int]] = list(self._saved)
        self.pending: list[tuple[int, int, int]] = list(self._saved)
        self.external_update = False
        self.table_mode = False
        # Per table channel: entries ((frequency 0.1 Hz, phase, amplitude), dwell) words, and
        # the pointer. Static RAM: gone at power-on and after R.
        self.tables: dict[int, list[tuple[tuple[int, int, int], int]]] = {
            ch: [_ZERO_ENTRY] * self.table_size for ch in TABLE_CHANNELS}
        self._pointer = {ch: 0 for ch in TABLE_CHANNELS}
        # Channels with at least one entry written: an edge steps only these (an unwritten
        # table is all dwell-00 zero entries, which neither hold nor wrap can leave).
        self._stepping: tuple[int, ...] = ()

    def channel_state(self, ch: int) -> tuple[float, float, float]:
        """Return the applied output of `ch`: (frequency Hz, phase turns, amplitude fraction)."""
        f, p, a = self.applied[ch]
        return f / 10.0, p / 16384.0, a / 1023.0

    def table_entry(self, ch: int, address: int) -> tuple[float, float, float, int]:
        """Entry `address` of channel `ch`'s table: (Hz, turns, fraction, dwell code 0..255)."""
        (f, p, a), d = self.tables[ch][address]
        return f / 10.0, p / 16384.0, a / 1023.0, d

    def table_pointer(self, ch: int) -> int:
        """The table address channel `ch` is on (output, or buffered with ``I e``)."""
        return self._pointer[ch]

    # --- the external trigger input (wired by the world) -----------------------------------
    def trigger(self, t: float | None = None) -> None:
        """One edge on the external trigger input at time `t` (s); only table mode uses it."""
        if not self.table_mode:
            return
        if self.external_update:
            self._trigger_external()
            return
        pointer = self._pointer
        for ch in self._stepping:
            table = self.tables[ch]
            at = pointer[ch]
            if table[at][1]:
                at += 1
                if at == self.table_size:
                    at = 0 if self._wrap else at - 1
            elif self._wrap:  # dwell 00: the end of the table
                at = 0
            pointer[ch] = at
            # _output_entry(ch, table[at]), inlined: five edges per clock cycle
            words = table[at][0]
            if self.applied[ch] != words:
                self.applied[ch] = self.pending[ch] = words
                hook = self._hook
                if hook is not None:
                    f, p, a = words
                    hook(ch, f / 10.0, p / 16384.0, a / 1023.0)

    def _trigger_external(self) -> None:
        """`trigger` with ``I e``: output the entry at the pointer, then step."""
        pointer = self._pointer
        for ch in self._stepping:
            table = self.tables[ch]
            at = pointer[ch]
            entry = table[at]
            self._output_entry(ch, entry)
            if entry[1] == 0:  # dwell 00: the end of the table
                nxt = 0 if self._wrap else at
            else:
                nxt = at + 1
                if nxt == self.table_size:
                    nxt = 0 if self._wrap else at
            pointer[ch] = nxt

    def _output_entry(self, ch: int, entry: tuple[tuple[int, int, int], int]) -> None:
        words = entry[0]
        if self.applied[ch] != words:
            self.applied[ch] = self.pending[ch] = words
            hook = self._hook
            if hook is not None:
                f, p, a = words
                hook(ch, f / 10.0, p / 16384.0, a / 1023.0)

    # --- the byte stream, specialised for speed ------------------------------------------------
    def _fast(self, data: bytes) -> bytes | None:
        """The reply to one whole F/P/V/t/m line with no fault or echo, or None (generic path).

        It parses the same grammar as `handle` (it calls the same `_set_output` / `_set_table`
        / `_start_table`) and exists only because the clock loop sends these lines every cycle
        (`ShortcutLines`).
        """
        if self._tx or self._rx or self.echo or self.record_transcript:
            return None
        faults = self.faults
        if faults.disconnected or faults.timeout or faults.garble:
            return None
        mode = _MODE_LINES.get(data)   # m t / m 0 (table mode on, off): one whole line
        if mode is not None:
            if self._settle is not None:   # what the TTLs did before this line
                self._settle()
            if mode:
                self._start_table()
            else:
                self.table_mode = False
            return _OK
        if data[-2:] != _CRLF:
            return None
        head = data[:1]
        # A table entry in the fixed-width layout every driver sends ("t0 aaaa ffffffff,pppp,
        # vvvv,dd", the clock loop's up to four lines per cycle): the separators in place and
        # 22 hex digits between them (one C-level parse: 11 bytes) make it one whole ASCII
        # line. Anything else, and every error, takes the checks below and `_set_table`'s
        # field-by-field parse, which gives the same words.
        if (head in _TABLE_HEADS and len(data) == 31 and data[2] == data[7] == 32   # b" "
                and data[16] == data[21] == data[26] == 44):   # b","
            ch = data[1] - 48
            try:
                b = _unhexlify(data[3:29].translate(None, b" ,"))
            except ValueError:
                b = b""
            if len(b) == 11 and ch in TABLE_CHANNELS:
                address, f, p, a, d = _ENTRY_WORDS(b)   # big-endian aaaa ffffffff pppp vvvv dd
                if address < self.table_size and f <= F_MAX_WORD and p <= 16383:
                    if self._settle is not None:   # what the TTLs did before this line
                        self._settle()
                    self.tables[ch][address] = ((f, p, a & 1023), d)
                    if ch not in self._stepping:
                        self._stepping = tuple(sorted(self._stepping + (ch,)))
                    return _OK
        if data.count(b"\n") != 1 or len(data) > MAX_LINE + 2:
            return None
        if head in _TABLE_HEADS:
            if not data.isascii():
                return None
            if self._settle is not None:
                self._settle()
            try:
                self._set_table(data[1] - 48, data[2:-2].decode("ascii"))
            except CommandError as err:
                return err.code.encode("ascii") + _CRLF
            return _OK
        if head in _FAST_HEADS and data[1:2] in _CHANNELS:
            if self._settle is not None:
                self._settle()
            try:
                self._set_output(_FAST_HEADS[head], data[1] - 48, data[2:-2].strip())
            except CommandError as err:
                return err.code.encode("ascii") + _CRLF
            return _OK
        return None

    # --- grammar --------------------------------------------------------------------------------
    def before_reply(self, line: str) -> None:
        if self.echo:  # the unit echoes what it receives, before it acts on it
            self._tx += line.encode("ascii") + _CRLF

    def error_reply(self, err: CommandError) -> str | None:
        return err.code

    def line_too_long(self) -> str | None:
        return "?3"

    def bad_byte(self) -> str | None:
        return "?f"

    def handle(self, line: str) -> str | None:
        """Parse one command line (without CRLF) and return the reply text."""
        if len(line) > MAX_LINE:
            raise CommandError("?3", "line too long")
        text = line.strip()
        if not text:
            return "OK"
        head = text[0].upper()
        if head in "FPV" and len(text) > 1 and text[1] in "0123":
            return self._set_output(head, int(text[1]), text[2:].strip())
        if head == "T" and len(text) > 1:
            return self._set_table(ord(text[1]) - 48, text[2:])
        word = text.upper()
        if word == "QUE":
            return self._que()
        if head == "E" and len(text) >= 2:
            arg = text[1:].strip().lower()
            if arg in ("d", "e"):
                self.echo = arg == "e"
                return "OK"
            raise CommandError("?0", "bad echo command")
        if head == "M":
            arg = text[1:].strip().lower()
            if arg in ("n", "a"):
                self.phase_continuous = arg == "n"
                return "OK"
            if arg == "t":
                self._start_table()
                return "OK"
            if arg == "0":
                self.table_mode = False  # single-tone mode; the outputs keep their values
                return "OK"
            raise CommandError("?6", "bad mode")
        if head == "I":
            arg = text[1:].strip().lower()
            if arg == "m":
                self.manual_update = True
                self.external_update = False
                return "OK"
            if arg == "a":
                self.manual_update = False
                self.external_update = False
                return "OK"
            if arg == "e":
                self.manual_update = False
                self.external_update = True
                return "OK"
            if arg == "p":
                self._apply_all()
                return "OK"
            raise CommandError("?6", "bad update mode")
        if word == "S":
            self._saved = list(self.applied)
            return "OK"
        if word == "R":
            self.power_cycle()
            return None
        raise CommandError("?0", "unrecognised command")

    def _set_output(self, head: str, ch: int, arg: str | bytes) -> str:
        if head == "F":
            try:
                mhz = float(arg)
            except ValueError:
                raise CommandError("?1", "bad frequency") from None
            if not 0.0 <= mhz <= F_MAX_MHZ:
                raise CommandError("?1", "bad frequency")
            idx, value = 0, round(mhz * 1e7)
        elif head == "P":
            if not arg.isdigit():
                raise CommandError("?4", "bad phase")
            value = int(arg)
            if value > 16383:
                raise CommandError("?4", "bad phase")
            idx = 1
        else:
            if not arg.isdigit():
                raise CommandError("?7", "bad amplitude")
            # The real unit does not reject words above 1023: its 10-bit DAC wraps.
            idx, value = 2, int(arg) & 1023
        words = list(self.pending[ch])
        words[idx] = value
        self.pending[ch] = tuple(words)
        if not self.manual_update:
            words = list(self.applied[ch])
            if words[idx] != value:
                words[idx] = value
                self.applied[ch] = f, p, a = tuple(words)
                hook = self._hook   # _notify(ch), inlined
                if hook is not None:
                    hook(ch, f / 10.0, p / 16384.0, a / 1023.0)
        return "OK"

    def _set_table(self, ch: int, arg: str) -> str:
        """``t<ch> <aaaa> <ffffffff>,<pppp>,<vvvv>,<dd>``: store one entry (hex fields)."""
        if ch not in TABLE_CHANNELS:
            raise CommandError("?0", "no table on this channel")
        parts = arg.split()
        if len(parts) != 2:
            raise CommandError("?0", "bad table line")
        address_text, rest = parts
        fields = rest.split(",")
        if len(fields) != 4:
            raise CommandError("?0", "bad table line")
        f_text, p_text, a_text, d_text = fields
        if not 0 < len(address_text) <= 4 or address_text.strip(_HEX):
            raise CommandError("?0", "bad table address")
        address = int(address_text, 16)
        if address >= self.table_size:
            raise CommandError("?0", "table address out of range")
        if not 0 < len(f_text) <= 8 or f_text.strip(_HEX):
            raise CommandError("?1", "bad frequency")
        f = int(f_text, 16)
        if f > F_MAX_WORD:
            raise CommandError("?1", "bad frequency")
        if not 0 < len(p_text) <= 4 or p_text.strip(_HEX):
            raise CommandError("?4", "bad phase")
        p = int(p_text, 16)
        if p > 16383:
            raise CommandError("?4", "bad phase")
        if not 0 < len(a_text) <= 4 or a_text.strip(_HEX):
            raise CommandError("?7", "bad amplitude")
        a = int(a_text, 16) & 1023  # not rejected, as with V: the 10-bit DAC wraps
        if not 0 < len(d_text) <= 2 or d_text.strip(_HEX):
            raise CommandError("?5", "bad dwell")
        self.tables[ch][address] = ((f, p, a), int(d_text, 16))
        if ch not in self._stepping:
            self._stepping = tuple(sorted(self._stepping + (ch,)))
        return "OK"

    def _start_table(self) -> None:
        """``m t``: table mode, pointers on entry 0; entry 0 out unless ``I e``."""
        self.table_mode = True
        pointer = self._pointer
        output = not self.external_update
        for ch in TABLE_CHANNELS:
            pointer[ch] = 0
            if output:
                entry = self.tables[ch][0]
                if self.applied[ch] != entry[0]:   # as _output_entry would find
                    self._output_entry(ch, entry)

    def _apply_all(self) -> None:
        for ch in range(4):
            if self.applied[ch] != self.pending[ch]:
                self.applied[ch] = self.pending[ch]
                self._notify(ch)

    def _notify(self, ch: int) -> None:
        if self._hook is not None:
            f, p, a = self.applied[ch]
            self._hook(ch, f / 10.0, p / 16384.0, a / 1023.0)

    def _que(self) -> str:
        lines = [f"{f:08X} {p:04X} {a:04X} 0000 00000000 00000000 000301"
                 for f, p, a in self.applied]
        lines.append("80 BC0000 0000 0102 " + self._firmware)
        return "\r\n".join(lines)
