"""`ProbeRig` (procedures/_probe.py) without a world: the lab's path (decisions 0804, 0311).

In the lab the probe's TTL pattern is played by the pattern generator, loaded through
`PatternLoader` with the config's wiring; without one the rig refuses in one line. The lab
is stood in for by the twin's apparatus seen without its world: the instruments are the
twins (the PrawnDO's plays each start on the world it is attached to), but the rig is given
no world to load a pattern into by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.drivers.pattern import PatternLoader
from ionclock.errors import UserError
from ionclock.procedures._probe import PROBE_OPTIONAL_ROLES, PROBE_ROLES, ProbeRig
from ionclock.procedures.base import Apparatus

ROOT = Path(__file__).resolve().parents[1]
WIRING = {"dds_step": 0, "counter_trig": 1, "probe_end": 2, "detection": 3,
          "shutter_gate_fall": 4, "shutter_gate_rise": 5, "sideband_cooling": 6,
          "cooling_end": 7, "beam_1": 8, "beam_2": 9, "beam_3": 10, "beam_off": 11}


def sim_cfg(pattern: bool) -> dict:
    """configs/sim.toml with (its own, else `WIRING`) or without ``[instruments.pattern]``."""
    text = (ROOT / "configs/sim.toml").read_text()
    has = re.search(r"(?m)^\[instruments\.pattern\]", text) is not None
    cfg = load_clock_config(ROOT / "configs/sim.toml", overrides=None if has or not pattern
                            else {"instruments": {"pattern": {
                                "model": "prawndo", "resource": "sim://prawndo",
                                "wiring": WIRING}}})
    if not pattern:
        cfg["instruments"].pop("pattern", None)
    return cfg


class LabView:
    """An `Apparatus` as the lab sees it: the same instruments and clock, no world."""

    def __init__(self, apparatus: Apparatus):
        self._a = apparatus
        self.world = None
        self.cfg = apparatus.cfg
        self.instruments = apparatus.instruments

    def wait(self, seconds: float) -> None:
        self._a.wait(seconds)

    def event(self, kind: str, source: str, **detail) -> None:
        self._a.event(kind, source, **detail)


def test_without_a_pattern_generator_the_lab_rig_refuses_in_one_line():
    lab = SimpleNamespace(world=None, cfg=sim_cfg(pattern=False), instruments={})
    with pytest.raises(UserError) as err:
        ProbeRig(lab)
    text = str(err.value)
    assert "\n" not in text and "[instruments.pattern]" in text


def test_with_a_pattern_generator_the_lab_rig_shoots_through_its_loader():
    apparatus = Apparatus(sim_cfg(pattern=True), PROBE_ROLES, optional=PROBE_OPTIONAL_ROLES)
    try:
        generator = apparatus.instruments["pattern"]
        assert generator.twin.wiring == dict(apparatus.cfg["instruments"]["pattern"]["wiring"])
        rig = ProbeRig(LabView(apparatus))
        loader = rig.seq.pattern_loader
        assert isinstance(loader, PatternLoader) and loader.loads == 1   # the clock's pattern
        assert rig.probe.load_pattern is loader
        # carrier pulses of area pi/2 and pi on beam 1 (its Rabi frequency: the monitor's
        # setting): ~114 ns and ~227 ns, the beam's RF-switch level on the 10 ns grid
        om = apparatus.cfg["micromotion"]["carrier_rabi_hz"][0]
        half = rig.shots(60, beam=1, pulse_s=0.25 / om)
        full = rig.shots(60, beam=1, pulse_s=0.5 / om)
        print(f"dark of 60: {half} after a pi/2 carrier pulse, {full} after a pi pulse")
        assert loader.loads >= 3 and apparatus.world.dark_cycles == 0
        assert generator.twin.triggers >= 120   # every shot played by the PrawnDO twin
        assert rig.shots_run == 120
        assert 15 <= half <= 45 and full >= 45
        rig.close()
        assert loader._loaded[0] == rig.seq.program.edges()   # the clock's pattern again
    finally:
        apparatus.close()
