"""BBR temperature: every sensor's trace, trap RF on and off, plus calibration (seed Figs. 1, S2).

What the seed did (supplement, "BBR"): the clock's own trap RF stays on (it keeps the ion;
DOMAIN §1), and the RF-off behaviour was measured on a **replica system** with an identical
trap and BBR cavity and a sensor on the trap itself; switching the RF on or off moves that
trap by ~0.4 K. The upper and lower bounds of all sensors, operational and replica, RF on and
off, give 79.5 +/- 1.4 K, and the 0.1 K calibration is added linearly (79.5 +/- 1.5 K).

So this procedure reads every sensor of the config's thermometer (``[instruments.thermometer]
sensors``, the replica's trap sensor among them) every `sample_s`, in three periods: the
replica's RF on (`on_s`), off (`off_s`), on again (`recover_s`). The only RF it ever switches
is the role ``replica_rf`` (an SG380 on the replica system's trap); it refuses a replica
whose resource is any other role's, and it switches the replica back on before it lets go of
it, whatever ended the run (an error, a stop). The clock's trap RF is no role it opens.

Rows: ``channel, temperature_k, rf_on, t_s`` (the bbr analysis' columns; ``rf_on`` is the
replica's RF state). The bbr analysis gives T +/- dT (envelope + calibration: a bound, not a
statistical interval, decision 0800) and the shift; `rf_step` gives the replica trap's
RF-on minus RF-off temperature (the RF-off level: the last quarter of that period; the RF-on
level: a line through the second half of the RF-on period carried on to then, so the slow
LN2 warming does not shrink it), which the budget's ``[bbr] rf_step_k`` takes
(the live budget widens the replica channel by it when its window saw no RF off).

On the twin the replica's RF acts on the one thermal model of the cryostat
(`ionclock.apparatus.registry.replica_rf_world`, decision 0802).
"""

from __future__ import annotations

import math

import numpy as np
from pymeasure.experiment import FloatParameter

from ionclock.apparatus import registry
from ionclock.errors import IonclockError, UserError
from ionclock.procedures.analysis import bbr as analysis
from ionclock.procedures.base import IonclockProcedure, analysis_columns, register

REPLICA_ROLE = "replica_rf"


def rf_step(rows: list[dict], channel: str) -> tuple[float, float]:
    """(step K, its standard error): the replica trap's RF-on level minus its RF-off level.

    RF off: the mean of the last quarter of the RF-off readings (the trap settled). RF on: a
    straight line through the second half of the readings before the RF went off (the trap
    at equilibrium, warming slowly as the LN2 level falls), carried on to the mean time of
    those RF-off readings, so the slow warming (~0.02 K over two hours) does not shrink the
    step.
    """
    trace = [(r["t_s"], r["temperature_k"], r["rf_on"]) for r in rows if r["channel"] == channel]
    off = [i for i, (_, _, on) in enumerate(trace) if on == 0]
    if not off or off[0] < 8 or len(off) < 4:
        raise UserError(f"rf_step: {channel} has too few readings with the RF on and off")
    on = np.array([(t, v) for t, v, _ in trace[off[0] // 2:off[0]]])
    late = np.array([trace[i][:2] for i in off[-max(len(off) // 4, 2):]])
    t_off = float(late[:, 0].mean())
    (slope, level), cov = np.polyfit(on[:, 0] - t_off, on[:, 1], 1, cov=True)
    step = float(level - late[:, 1].mean())
    sem = math.sqrt(float(cov[1, 1]) + late[:, 1].var(ddof=1) / len(late))
    return step, sem


@register
class BbrProcedure(IonclockProcedure):
    """Sensor traces, replica RF on / off / on -> bbr rows (module docstring)."""

    NAME = analysis.NAME
    ANALYSIS = analysis
    ROLES = ("thermometer",)   # the replica's RF is opened apart (`startup`)
    VERSION = "1"
    DATA_COLUMNS = analysis_columns(analysis)

    sample_s = FloatParameter("Reading period", units="s", default=60.0, minimum=1.0)
    on_s = FloatParameter("Replica RF on", units="s", default=7200.0, minimum=60.0)
    off_s = FloatParameter("Replica RF off", units="s", default=7200.0, minimum=60.0)
    recover_s = FloatParameter("Replica RF on again", units="s", default=3600.0, minimum=0.0)

    def startup(self) -> None:
        super().startup()
        self._switched_off = False
        inst = self.cfg["instruments"]
        if REPLICA_ROLE not in inst:
            raise UserError(f"config: the BBR measurement needs [instruments.{REPLICA_ROLE}], "
                            "the replica system's trap RF (the clock's own trap RF is never "
                            "switched off)")
        entry = inst[REPLICA_ROLE]
        others = [r for r, e in inst.items() if r != REPLICA_ROLE
                  and e["resource"] == entry["resource"] and not e["resource"].startswith("sim://")]
        if others:
            raise UserError(f"config: [instruments.{REPLICA_ROLE}] resource "
                            f"{entry['resource']!r} is also the {others[0]}'s: the replica's RF "
                            "must be its own source")
        app = self.apparatus
        world = (registry.replica_rf_world(app.world, app.seed) if app.world is not None
                 else None)
        app.instruments[REPLICA_ROLE] = registry.open_instrument(
            entry["model"], entry["resource"], world=world, key=f"instruments.{REPLICA_ROLE}")
        self.replica = app.instruments[REPLICA_ROLE]
        if not self.replica.output_enabled:
            raise UserError("the replica's trap RF was found off: switch it on and let the "
                            "replica settle before measuring")
        self.sensors = dict(inst["thermometer"]["sensors"])
        if not self.sensors:
            raise UserError("config: [instruments.thermometer] sensors is empty")

    def measure(self):
        app = self.apparatus
        thermo = app.instruments["thermometer"]
        total = self.on_s + self.off_s + self.recover_s
        t0 = app.now
        for rf_on, duration in ((1, self.on_s), (0, self.off_s), (1, self.recover_s)):
            self._set_replica(bool(rf_on))
            end = app.now + duration
            while app.now + self.sample_s <= end + 1e-9:
                app.wait(self.sample_s)
                every = thermo.temperatures   # one query for every input (KRDG? 0)
                for channel, number in self.sensors.items():
                    kelvin = float(every[int(number) - 1])
                    if math.isfinite(kelvin):
                        yield {"channel": channel, "temperature_k": kelvin, "rf_on": rf_on,
                               "t_s": app.now}
                self.progress((app.now - t0) / total)
                if self.should_stop():
                    return

    def _set_replica(self, on: bool) -> None:
        if self.replica.output_enabled == on:
            return
        self.replica.output_enabled = on
        self._switched_off = not on
        self.apparatus.event("replica_rf_on" if on else "replica_rf_off", REPLICA_ROLE)

    def shutdown(self) -> None:
        """The replica's RF back on if this procedure switched it off, then the base's."""
        if getattr(self, "_switched_off", False):
            try:
                self._set_replica(True)
            except (IonclockError, OSError) as err:
                self.apparatus.event("replica_rf_not_restored", REPLICA_ROLE, error=str(err))
        super().shutdown()

    BUDGET_ROWS = ("bbr",)

    def budget_values(self, result) -> dict:
        """The replica's measured RF step (K) and the envelope as the nominal sensor range."""
        env = result.details["envelope"]
        step, _ = rf_step(self.rows, self.cfg_replica_channel())
        return {"bbr": {"rf_step_k": max(step, 0.0),
                        "nominal": {"measured_envelope": {"low_k": env.low_k,
                                                          "high_k": env.high_k}}}}

    def cfg_replica_channel(self) -> str:
        """The replica trap's channel (the analysis' default, as configs/seed_clock.toml)."""
        return analysis.REPLICA_CHANNEL

    def summary(self, result) -> str:
        e = result["temperature"]
        step, sem = rf_step(self.rows, self.cfg_replica_channel())
        return (f"T = {e.value:.2f} +/- {e.sigma:.2f} K (envelope + calibration), replica RF "
                f"step {step:.3f} +/- {sem:.3f} K")

    def truth(self) -> dict | None:
        """The twin's BBR temperature at the ion now (K) and the replica's equilibrium RF step (K).

        `rf_step` estimates the equilibrium step once the RF-off period is several of the
        trap's thermal time constants (the default 2 h: 6; seed Fig. S2).
        """
        world = self.apparatus.world
        if world is None or world.cryostat is None:
            return None
        cryo = world.cryostat
        return {"temperature": float(world.temperature_k()),
                "rf_step_k": cryo.rf_heating["trap"]}
