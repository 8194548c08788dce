"""Twin of the Novatech 409B four-channel DDS: the unit's serial grammar on the world.

Same bytes as the real unit (PROTOCOLS.md "Novatech 409B"): CRLF-terminated lines, ``OK`` or
``?N`` per command, echo on at power-on until ``E d``, five lines for ``QUE``, nothing for ``R``.
Like the real unit it does **not** reject amplitude words above 1023 (the 10-bit DAC wraps),
which is why the driver must.

Each applied output change calls ``world.dds_changed(channel, frequency_hz, phase_turns,
amplitude_fraction)`` when the world has that hook. In automatic update mode (``I a``, the
power-on mode) a change applies at once; in manual mode (``I m``) it waits for ``I p``.
"""

from __future__ import annotations

from ionclock.sim_instruments.base import CommandError, SimInstrument

F_MAX_MHZ = 171.1276031
MAX_LINE = 64
_CRLF = b"\r\n"
_FAST_HEADS = {b"F": "F", b"P": "P", b"V": "V"}
_CHANNELS = (b"0", b"1", b"2", b"3")


class SimNovatech409B(SimInstrument):
    """Byte-level Novatech 409B twin (``Twin(world, **options)``)."""

    input_terminator = _CRLF
    output_terminator = _CRLF
    name = "sim Novatech 409B"

    def __init__(self, world=None, seed: int | None = 0, *, echo: bool = True):
        self._power_on_echo = echo
        self._saved = [(0, 0, 1023)] * 4  # EEPROM: (frequency 0.1 Hz, phase, amplitude) words
        self._hook = getattr(world, "dds_changed", None)
        super().__init__(world, seed)

    # --- state ----------------------------------------------------------------------------
    def reset_settings(self) -> None:
        """Power-on state: echo on, automatic update, phase-continuous off, saved outputs."""
        self.echo = self._power_on_echo
        self.manual_update = False
        self.phase_continuous = False
        self.applied: list[list[int]] = [list(s) for s in self._saved]
        self.pending: list[list[int]] = [list(s) for s in self._saved]

    def channel_state(self, ch: int) -> tuple[float, float, float]:
        """Return the applied output of `ch`: (frequency Hz, phase turns, amplitude fraction)."""
        f, p, a = self.applied[ch]
        return f / 10.0, p / 16384.0, a / 1023.0

    # --- the byte stream, specialised for speed ------------------------------------------------
    def write(self, data: bytes) -> None:
        """Receive bytes; one whole F/P/V line with no fault or echo skips the generic path.

        The shortcut parses the same grammar as `handle` (it calls the same `_set_output`
        on the bytes) and exists only because the clock loop sends two lines per cycle.
        """
        if (data[-2:] == _CRLF and not self._rx and not self.echo
                and not self.record_transcript and data.count(b"\n") == 1):
            faults = self.faults
            if not (faults.disconnected or faults.timeout or faults.garble):
                head = data[:1]
                if head in _FAST_HEADS and data[1:2] in _CHANNELS and len(data) <= MAX_LINE + 2:
                    try:
                        self._set_output(_FAST_HEADS[head], data[1] - 48, data[2:-2].strip())
                    except CommandError as err:
                        self._tx += err.code.encode("ascii") + _CRLF
                    else:
                        self._tx += b"OK\r\n"
                    return
        super().write(data)

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
            raise CommandError("?6", "bad mode")
        if head == "I":
            arg = text[1:].strip().lower()
            if arg == "m":
                self.manual_update = True
                return "OK"
            if arg == "a":
                self.manual_update = False
                return "OK"
            if arg == "p":
                self._apply_all()
                return "OK"
            raise CommandError("?6", "bad update mode")
        if word == "S":
            self._saved = [tuple(ch) for ch in self.applied]
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
        self.pending[ch][idx] = value
        if not self.manual_update:
            applied = self.applied[ch]
            if applied[idx] != value:
                applied[idx] = value
                hook = self._hook   # _notify(ch), inlined: twice per clock cycle
                if hook is not None:
                    hook(ch, applied[0] / 10.0, applied[1] / 16384.0, applied[2] / 1023.0)
        return "OK"

    def _apply_all(self) -> None:
        for ch in range(4):
            if self.applied[ch] != self.pending[ch]:
                self.applied[ch] = list(self.pending[ch])
                self._notify(ch)

    def _notify(self, ch: int) -> None:
        if self._hook is not None:
            f, p, a = self.applied[ch]
            self._hook(ch, f / 10.0, p / 16384.0, a / 1023.0)

    def _que(self) -> str:
        lines = [f"{f:08X} {p:04X} {a:04X} 0000 00000000 00000000 000301"
                 for f, p, a in self.applied]
        lines.append("80 BC0000 0000 0102 21")
        return "\r\n".join(lines)
