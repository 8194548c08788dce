"""The photon-counting role: what the clock servo needs from whatever counts detection photons.

An SRS SR400 gated photon counter (`ionclock.drivers.sr400.SR400`) implements it, and so can
a pulse sequencer (FPGA) that returns the counts of its own detection window. The servo only
ever sees this interface.
"""

from __future__ import annotations

from typing import Protocol


class PhotonCounter(Protocol):
    """Counts photons in one detection gate per clock cycle.

    Deliberately not ``runtime_checkable``: on Python 3.11 an ``isinstance`` check reads
    every member, and reading `gate_time` may be a device query.
    """

    @property
    def gate_time(self) -> float:
        """Length of one detection gate in s."""
        ...

    def count(self) -> int:
        """Return the photon counts of the next detection gate (one gate per call)."""
        ...

    def ping(self) -> bool:
        """Cheap liveness check: True when the counter answers."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
