"""The wavemeter: every laser read continuously; one off its band holds the clock.

The cooling, repump and clear-out lasers, and the clock laser's coarse frequency, are read
continuously; a laser off its band holds the clock until it is back.
The seed clock's cycle needs every laser where it should be (DOMAIN §1): the 397 nm cools,
pumps and detects, the 866 nm repumps D3/2, the 854 nm empties D5/2 after each detection. A
laser that has left its setpoint makes the detection wrong (dark counts where the ion is
bright, an ion still shelved from the last cycle) before the servo can tell a bad laser from
a moved line. So a HighFinesse WS7/WS8 (drivers/wavemeter.py: libwlmData or its TCP server)
reads each laser on its switch channel, and (decision 0308):

- each laser ``[wavemeter.lasers.NAME]`` has its switch ``channel``, ``setpoint_hz``,
  ``band_hz``, ``period_s`` and ``grace_s``; its reading goes to channel ``wm.NAME`` as the
  offset from the setpoint (Hz: the offset is what the band is about, and it keeps the
  reading's resolution in a float beside a 1e14 Hz setpoint; the setpoint is in the
  channel's source text, the band in its band_min/band_max);
- a reading outside the band is an ``laser_out_of_band`` event (laser, offset_hz) and a hold
  of the clock, ``servo.request_hold("laser_off_band", since=..., laser=..., offset_hz=...)``
  with ``since`` the laser's last reading in band (the frames since then are flagged: the
  excursion began at some time after it); the servo holds from its next frame;
- an error code (no signal, under/over-exposed, ...) or a lost link is a missing sample with
  a ``reading_missing`` event naming the reason; a laser with no valid reading for longer
  than its ``grace_s`` is treated as off (the same hold, ``offset_hz`` None and the reason):
  never silently fine; a laser not yet read once counts from the role's start;
- the hold is released (``laser_back_in_band`` event, then ``release_hold``) once every
  laser has read in band ``release_readings`` times in a row.

The stated delay: an excursion is read within one ``period_s`` of the laser and the servo
holds from its next frame boundary (one frame, 12 cycles), so the clock holds within
``period_s + 12 cycle_time_s`` of the excursion's start, and the event comes within
``period_s``.

Optional slow lock: a laser with ``lock_port`` > 0 has its wavemeter PID regulation course
set to its setpoint at the start (``set_frequency_setpoint(port, hz)``: wlmData's
``SetPIDCourseNum``, the TCP server's ``setPidCourseNum``; the driver's docstring cites the
sources), where the driver offers it; otherwise the role stops with a one-line error. The
TCP server's twin passes the course to the world (``world.lock_laser``): the twin's laser
then follows it.
"""

from __future__ import annotations

import math

import simpy

from ionclock.apparatus.roles import Role
from ionclock.config import Field, Table
from ionclock.errors import ConfigError, IonclockError

F = Field

REASON = "laser_off_band"

LASER = {
    "channel": F(int, doc="the wavemeter's switch channel of this laser (1..8)", min=1, max=8),
    "setpoint_hz": F(float, doc="where the laser should be, Hz (optical frequency)",
                     min=1e13, max=2e15),
    "band_hz": F(float, doc="how far off its setpoint it may be, Hz", min=1e3, max=1e12),
    "period_s": F(float, 2.0, min=0.05, max=3600.0, doc="one reading every period_s"),
    "grace_s": F(float, 10.0, min=0.0, max=86400.0,
                 doc="no valid reading for longer than this: the laser counts as off"),
    "lock_port": F(int, 0, min=0, max=8,
                   doc="wavemeter PID port regulating this laser to its setpoint (0: none)"),
}


class _Laser:
    """One laser's watch: its settings and what the role knows of it."""

    def __init__(self, name: str, settings: dict, t0: float):
        self.name = name
        self.channel_name = f"wm.{name}"
        self.s = settings
        self.last_valid = t0          # last valid reading (the start before the first one)
        self.last_in_band = t0        # last reading in band (the fault began after it)
        self.off = False              # counted as off (out of band or unread too long)
        self.in_band_run = 0          # readings in band in a row while off
        self.missing_since: float | None = None
        self.missing_count = 0


class WavemeterRole(Role):
    """The wavemeter beside the clock servo (see the module docstring)."""

    section = "wavemeter"
    ROLE_MODELS = {"wavemeter": ("wavemeter_tcp", "wavemeter_wlmdata")}
    SETTINGS = {
        "enabled": F(bool, True, doc="watch the lasers when [instruments.wavemeter] is set"),
        "release_readings": F(int, 3, min=1, max=1000,
                              doc="readings in band in a row that end a laser's excursion"),
        "lasers": Table(LASER, doc="the lasers read, by name (397, 866, 854, 729, ...)"),
    }

    @classmethod
    def configured(cls, cfg: dict) -> bool:
        """Run when ``[instruments.wavemeter]`` is there and ``[wavemeter] enabled``."""
        return "wavemeter" in cfg["instruments"] and cfg.get("wavemeter", {}).get(
            "enabled", True)

    def __init__(self, ctx):
        super().__init__(ctx)
        self._locks_pending: list = []   # slow locks whose setpoint the meter refused
        if not self.settings["lasers"]:
            raise ConfigError("wavemeter.lasers", "names no laser to read (e.g. "
                                                  "[wavemeter.lasers.397] channel, setpoint_hz, "
                                                  "band_hz)")
        channels: dict[int, str] = {}
        for name, laser in self.settings["lasers"].items():
            other = channels.setdefault(laser["channel"], name)
            if other != name:
                raise ConfigError(f"wavemeter.lasers.{name}.channel",
                                  f"channel {laser['channel']} is laser {other}'s already")
        self.meter = ctx.instruments["wavemeter"]
        self.entry = ctx.cfg["instruments"]["wavemeter"]
        self.lasers = [_Laser(name, laser, ctx.env.now)
                       for name, laser in self.settings["lasers"].items()]
        self.holding = False

    def channels(self) -> list[tuple]:
        """``wm.NAME`` per laser: Hz off its setpoint, the band as band_min/band_max."""
        return [(laser.channel_name, "Hz", -laser.s["band_hz"], laser.s["band_hz"],
                 f"{self.entry['model']} {self.entry['resource']} channel "
                 f"{laser.s['channel']}.frequency - {laser.s['setpoint_hz']:.9e} Hz",
                 laser.s["period_s"])
                for laser in self.lasers]

    # --- the slow lock -----------------------------------------------------------------------
    def _set_locks(self, lasers=None) -> None:
        """Write each slow lock's setpoint; one the meter refuses now is tried again.

        A refused or unanswered write (the meter busy, its link down) is an event and the
        laser's lock stays pending: it is written again at the laser's next reading, and
        meanwhile the band check watches the laser as it is (the clock holds if it leaves).
        """
        for laser in self.lasers if lasers is None else lasers:
            port = laser.s["lock_port"]
            if not port:
                continue
            if not hasattr(self.meter, "set_frequency_setpoint"):
                raise ConfigError(f"wavemeter.lasers.{laser.name}.lock_port",
                                  f"the {self.entry['model']} driver has no PID setpoint "
                                  "(set_frequency_setpoint)")
            try:
                self.meter.set_frequency_setpoint(port, laser.s["setpoint_hz"])
            except (IonclockError, OSError) as err:
                if laser not in self._locks_pending:
                    self._locks_pending.append(laser)
                    self.ctx.event(self.ctx.env.now, "wavemeter_lock_failed", "wavemeter",
                                   laser=laser.name, port=port,
                                   error=f"{type(err).__name__}: {err}")
                continue
            if laser in self._locks_pending:
                self._locks_pending.remove(laser)
            self.ctx.event(self.ctx.env.now, "wavemeter_lock_set", "wavemeter",
                           laser=laser.name, port=port, setpoint_hz=laser.s["setpoint_hz"])

    # --- one reading ---------------------------------------------------------------------
    def _read(self, laser: _Laser, t: float) -> None:
        ctx, s = self.ctx, laser.s
        try:
            hz = float(self.meter.frequency(s["channel"]))
            reason = None
        except (IonclockError, OSError) as err:   # an error code, or the link
            hz, reason = math.nan, str(err) or type(err).__name__
        if not math.isfinite(hz):
            ctx.store.add("samples", (t, laser.channel_name, None))
            if laser.missing_since is None:
                laser.missing_since, laser.missing_count = t, 0
                ctx.event(t, "reading_missing", "wavemeter", channel=laser.channel_name,
                          reason=reason)
            laser.missing_count += 1
            if not laser.off and t - laser.last_valid > s["grace_s"]:
                self._off(laser, t, None, f"no valid reading for {t - laser.last_valid:g} s "
                                          f"({reason})")
            laser.in_band_run = 0
            return
        offset = hz - s["setpoint_hz"]
        ctx.store.add("samples", (t, laser.channel_name, offset))
        if laser.missing_since is not None:
            ctx.event(t, "reading_restored", "wavemeter", channel=laser.channel_name,
                      missing_s=t - laser.missing_since, samples=laser.missing_count)
            laser.missing_since = None
        laser.last_valid = t
        if abs(offset) > s["band_hz"]:
            laser.in_band_run = 0
            if not laser.off:
                self._off(laser, t, offset, "out of band")
            return
        if laser.off:
            laser.in_band_run += 1
            if laser.in_band_run >= self.settings["release_readings"]:
                laser.off = False
                ctx.event(t, "laser_back_in_band", "wavemeter", laser=laser.name,
                          offset_hz=offset, readings=laser.in_band_run)
                self._release_if_all_back()
        laser.last_in_band = t

    def _off(self, laser: _Laser, t: float, offset: float | None, why: str) -> None:
        """Laser found off: an event and the clock held, flagged back to its last good read."""
        laser.off, laser.in_band_run = True, 0
        self.ctx.event(t, "laser_out_of_band", "wavemeter", laser=laser.name,
                       offset_hz=offset, band_hz=laser.s["band_hz"], reason=why,
                       since=laser.last_in_band)
        self.ctx.servo.request_hold(REASON, since=laser.last_in_band, laser=laser.name,
                                    offset_hz=offset)
        self.holding = True

    def _release_if_all_back(self) -> None:
        if self.holding and not any(laser.off for laser in self.lasers):
            self.holding = False
            self.ctx.servo.release_hold(REASON)

    # --- the process ---------------------------------------------------------------------
    def process(self):
        """Read each laser every its period (the soonest due first); hold while one is off."""
        env = self.ctx.env
        try:
            for laser in self.lasers:   # the grace of a laser not read yet counts from now
                laser.last_valid = laser.last_in_band = env.now
            self._set_locks()
            due = {id(laser): env.now for laser in self.lasers}
            while True:
                t = env.now
                for laser in self.lasers:
                    if due[id(laser)] <= t + 1e-9:
                        if laser in self._locks_pending:
                            self._set_locks([laser])
                        self._read(laser, t)
                        due[id(laser)] = t + laser.s["period_s"]
                yield env.timeout(max(0.0, min(due.values()) - env.now))
        except simpy.Interrupt:   # the run is over
            return


ROLE = WavemeterRole
