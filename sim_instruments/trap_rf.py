"""Twin of the trap RF chain: the RF physics, an SRS SG380 and the pickoff DMM.

`TrapRF` is the physics on SimPy time (DOMAIN §1): the RF amplitude at the trap is the
source amplitude times a slowly drifting coupling (helical-resonator Q and tuning follow
the temperature), the rectified pickoff reads that amplitude through a divider whose gain
drifts far less, and the radial secular frequencies scale with the trap amplitude:

    V_trap(t)   = V_src · c(t),     c(t) = 1 + w(t) + k_T · T(t)
    f_x,y(t)    = f_x,y,nom · (V_trap / V_trap,nom) · (Ω_nom / Ω)     (ω_r ≈ qΩ/2√2, q ∝ V/Ω²)
    f_z         = 2.580 MHz       (set by the endcap DC, not the RF)
    V_pickoff   = V_pick,nom · (V_trap / V_trap,nom) · (1 + w_p(t)) + noise

w and w_p are random walks, T a temperature-like wander (a daily sinusoid plus an
Ornstein-Uhlenbeck term). The drifts are generated on a fixed time grid from their own
seeded stream and interpolated, so the drift a run sees does not depend on when or how
often it is queried: a run with and without the stabiliser sees the same drift.

A world couples source and pickoff by offering ``world.trap_rf`` (a `TrapRF`); the SG380
twin also calls ``world.rf_output_changed(on, amplitude_dbm)`` where the world has it (the
trap warms by ~0.4 K with the RF on). `RFWorld` is a minimal such world for tests and the
benchmark.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import simpy

from ionclock.sim_instruments.base import CommandError, SimInstrument

DAY_S = 86400.0


@dataclass
class TrapRFParams:
    """Parameters of the trap RF physics (SI; amplitudes in dBm where named)."""

    rf_frequency_hz: float = 24.801e6       # DOMAIN §1, the magic drive frequency
    nominal_source_dbm: float = 0.0         # source amplitude giving the nominal trap at c = 1
    f_x_hz: float = 3.531e6                 # nominal radial secular frequencies (DOMAIN §1)
    f_y_hz: float = 3.166e6
    f_z_hz: float = 2.580e6                 # axial: DC-defined
    pickoff_nominal_v: float = 1.0          # rectified pickoff at the nominal trap amplitude
    walk_per_sqrt_day: float = 3e-3         # coupling random walk (fraction per sqrt(day))
    temp_daily_k: float = 0.3               # amplitude of the daily temperature swing
    temp_ou_k: float = 0.2                  # rms of the slow temperature wander
    temp_ou_tau_s: float = 6 * 3600.0       # correlation time of that wander
    coupling_per_k: float = 2e-3            # fractional coupling change per kelvin
    pickoff_walk_per_sqrt_day: float = 2e-5  # pickoff divider/rectifier gain drift
    pickoff_noise_rel: float = 2e-5         # pickoff electronics noise (fraction rms)
    dmm_noise_v: float = 3e-6               # DMM reading noise (V rms, 10 NPLC on 10 V)
    grid_s: float = 60.0                    # drift grid step


class TrapRF:
    """The trap RF physics on a SimPy clock (see the module docstring for the model)."""

    def __init__(self, env: simpy.Environment, params: TrapRFParams | None = None,
                 seed: int | tuple[int, ...] = 0):
        self.env = env
        self.p = params or TrapRFParams()
        # `seed` an int or a tuple of them (a world's own stream: (world seed, 33))
        base = list(seed) if isinstance(seed, tuple) else [seed]
        self._drift_rng = np.random.default_rng([*base, 1])
        self._noise_rng = np.random.default_rng([*base, 2])
        self.source_dbm = self.p.nominal_source_dbm
        self.output_on = True
        self.rf_frequency_hz = self.p.rf_frequency_hz
        self._phase = float(self._drift_rng.uniform(0, 2 * math.pi))
        # grid state: random walks, OU temperature; index i is time i * grid_s
        self._walk = [0.0]
        self._pwalk = [0.0]
        self._ou = [float(self._drift_rng.normal(0.0, self.p.temp_ou_k))]

    # --- controls (called by the SG380 twin) ---------------------------------------------
    def set_source(self, amplitude_dbm: float | None = None, on: bool | None = None,
                   frequency_hz: float | None = None) -> None:
        """Apply new source settings at env.now."""
        if amplitude_dbm is not None:
            self.source_dbm = float(amplitude_dbm)
        if on is not None:
            self.output_on = bool(on)
        if frequency_hz is not None:
            self.rf_frequency_hz = float(frequency_hz)

    # --- drifts ----------------------------------------------------------------------------
    def _extend(self, n: int) -> None:
        while len(self._walk) <= n:
            self._extend_block()

    def _extend_block(self, k: int = 1024) -> None:
        # Fixed-size blocks: the stream is consumed the same way whatever the query times.
        p = self.p
        dt_day = p.grid_s / DAY_S
        steps = self._drift_rng.standard_normal((3, k))
        walk = self._walk[-1] + np.cumsum(steps[0] * p.walk_per_sqrt_day * math.sqrt(dt_day))
        pwalk = self._pwalk[-1] + np.cumsum(
            steps[1] * p.pickoff_walk_per_sqrt_day * math.sqrt(dt_day))
        a = math.exp(-p.grid_s / p.temp_ou_tau_s)
        s = p.temp_ou_k * math.sqrt(1 - a * a)
        ou = np.empty(k)
        x = self._ou[-1]
        for i in range(k):
            x = a * x + s * steps[2, i]
            ou[i] = x
        self._walk.extend(walk.tolist())
        self._pwalk.extend(pwalk.tolist())
        self._ou.extend(ou.tolist())

    def _interp(self, series: list[float], t: float) -> float:
        x = max(t, 0.0) / self.p.grid_s
        i = int(x)
        self._extend(i + 1)
        f = x - i
        return series[i] * (1 - f) + series[i + 1] * f

    def temperature_offset_k(self, t: float | None = None) -> float:
        """Return the temperature-like wander driving the coupling (K, zero mean)."""
        t = self.env.now if t is None else t
        daily = self.p.temp_daily_k * math.sin(2 * math.pi * t / DAY_S + self._phase)
        return daily + self._interp(self._ou, t)

    def coupling(self, t: float | None = None) -> float:
        """Source-to-trap amplitude coupling relative to nominal (dimensionless, ~1)."""
        t = self.env.now if t is None else t
        return (1.0 + self._interp(self._walk, t)
                + self.p.coupling_per_k * self.temperature_offset_k(t))

    def pickoff_gain(self, t: float | None = None) -> float:
        """Pickoff divider/rectifier gain relative to nominal (dimensionless, ~1)."""
        t = self.env.now if t is None else t
        return 1.0 + self._interp(self._pwalk, t)

    # --- observables -----------------------------------------------------------------------
    def trap_amplitude_fraction(self, t: float | None = None) -> float:
        """RF amplitude at the trap relative to nominal (0 with the output off)."""
        if not self.output_on:
            return 0.0
        src = 10.0 ** ((self.source_dbm - self.p.nominal_source_dbm) / 20.0)
        return src * self.coupling(t)

    def secular_frequencies(self, t: float | None = None) -> tuple[float, float, float]:
        """Return the true secular frequencies (f_x, f_y, f_z) in Hz at t (default now)."""
        r = self.trap_amplitude_fraction(t) * (self.p.rf_frequency_hz / self.rf_frequency_hz)
        return (self.p.f_x_hz * r, self.p.f_y_hz * r, self.p.f_z_hz)

    def pickoff_voltage(self, t: float | None = None, noisy: bool = True) -> float:
        """Rectified pickoff voltage (V DC) as the DMM sees it."""
        v = self.p.pickoff_nominal_v * self.trap_amplitude_fraction(t) * self.pickoff_gain(t)
        if noisy:
            n = self._noise_rng.standard_normal(2)
            v += v * self.p.pickoff_noise_rel * n[0] + self.p.dmm_noise_v * n[1]
        return v


class RFWorld:
    """A minimal world for the RF chain alone: env, `trap_rf` and the RF hook's history."""

    def __init__(self, env: simpy.Environment | None = None,
                 params: TrapRFParams | None = None, seed: int = 0):
        self.env = env if env is not None else simpy.Environment()
        self.trap_rf = TrapRF(self.env, params, seed)
        self.rf_events: list[tuple[float, bool, float]] = []

    def rf_output_changed(self, on: bool, amplitude_dbm: float) -> None:
        """Record an RF output change (t, on, dBm)."""
        self.rf_events.append((self.env.now, on, amplitude_dbm))


_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_FREQ_UNITS = {"": 1.0, "HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9}


#: Highest FREQ each SG38x model accepts (Hz): the model's type-N frequency range.
SG38X_MAX_FREQUENCY_HZ = {"SG382": 2.025e9, "SG384": 4.05e9, "SG386": 6.075e9}

#: LERR? codes the twin raises (SG380 manual, "Error Codes", as transcribed in
#: lupien/pyHegel pyHegel/instruments/srs.py, class sr384_rf, get_error()).
SG_ILLEGAL_VALUE = "10"
SG_UNDEFINED_COMMAND = "111"
SG_ILLEGAL_UNITS = "127"


class SimSG380(SimInstrument):
    """SRS SG382/384/386 twin: the commands `TrapRFSource` uses (FREQ, AMPR, ENBR, LERR?, *IDN?).

    What the driver relies on, and where it comes from:

    - Commands ``FREQ``, ``AMPR`` (type-N amplitude, dBm), ``ENBR`` (type-N enable, 0/1),
      their ``?`` forms, ``LERR?``, ``*IDN?``: SG380 manual, "Remote Programming"; the same
      commands and formats in pymeasure ``pymeasure/instruments/srs/sg380.py`` (``FREQ?``,
      ``FREQ%.6f``), QCoDeS ``qcodes/instrument_drivers/stanford_research/SG384.py``
      (``AMPR {:.2f}`` in dBm, ``ENBR {}`` with 0/1) and pyHegel
      ``pyHegel/instruments/srs.py`` (class ``sr384_rf``).
    - Replies end CR LF; commands may end LF (the driver sends LF). A real SG384 over GPIB
      answered with CR LF (qudi SG384 hardware module notes, "Command terminator confirmed via
      raw read()"; *IDN? ``Stanford Research Systems,SG384,s/n…,ver1.21.26``). ``FREQ?``
      answers Hz as a plain decimal, ``AMPR?`` dBm, ``ENBR?`` 0 or 1 (same notes).
    - ``LERR?`` pops the oldest error, 0 when none. Codes (manual "Error Codes", transcribed
      in pyHegel ``srs.py`` ``sr384_rf.get_error``): 10 Illegal Value (a parameter out of
      range: the setting is not applied), 111 Undefined Command, 127 Illegal Units.
    - Frequency range by model (type-N output): SG382 2.025 GHz, SG384 4.05 GHz, SG386
      6.075 GHz (model table in the qudi SG380-series hardware module, taken from the manual's
      frequency-range table; QCoDeS SG384 validates 0.95 MHz to 4.05 GHz). A FREQ beyond the
      model's range is Illegal Value. Option ``sg_model`` picks the unit ("SG384" default).
    - Type-N amplitude -110 to +16.5 dBm (QCoDeS SG384 ``amplitude_RF`` validator; pyHegel
      notes the unit takes up to +16.53); beyond it, Illegal Value.

    Not from a source: after `power_cycle()` the twin keeps frequency and amplitude and
    comes up with the output off (the pessimistic case for the ion; the manual's power-on
    behaviour was not checked). Options: ``trap_rf`` (else ``world.trap_rf``), ``seed``,
    ``sg_model``.
    """

    input_terminator = b"\n"
    output_terminator = b"\r\n"
    name = "sim-sg380"
    IDN_TEMPLATE = "Stanford Research Systems,{model},s/n004025,ver1.036"

    def __init__(self, world=None, trap_rf: TrapRF | None = None, seed: int | None = 0,
                 sg_model: str = "SG384"):
        if sg_model not in SG38X_MAX_FREQUENCY_HZ:
            raise ValueError(f"sg_model must be one of {sorted(SG38X_MAX_FREQUENCY_HZ)}, "
                             f"got {sg_model!r}")
        self.sg_model = sg_model
        self.max_frequency_hz = SG38X_MAX_FREQUENCY_HZ[sg_model]
        self.IDN = self.IDN_TEMPLATE.format(model=sg_model)
        self.trap_rf = trap_rf if trap_rf is not None else getattr(world, "trap_rf", None)
        super().__init__(world, seed)

    def reset_settings(self) -> None:
        tr = getattr(self, "trap_rf", None)
        if tr is not None:
            self.frequency_hz = tr.rf_frequency_hz
            self.amplitude_dbm = tr.source_dbm
            self.output_on = tr.output_on
        else:
            self.frequency_hz, self.amplitude_dbm, self.output_on = 1e9, -10.0, False
        self.errors: list[int] = []

    def power_cycle(self) -> None:
        super().power_cycle()
        # the SG384 powers up with its output as last saved; the twin powers up "off"
        self._apply(on=False)

    def _apply(self, **changes) -> None:
        for key, value in changes.items():
            setattr(self, {"on": "output_on"}.get(key, key), value)
        if self.trap_rf is not None:
            self.trap_rf.set_source(self.amplitude_dbm, self.output_on, self.frequency_hz)
        hook = getattr(self.world, "rf_output_changed", None)
        if hook is not None and ("on" in changes or "amplitude_dbm" in changes):
            hook(self.output_on, self.amplitude_dbm)

    def error_reply(self, err: CommandError) -> str | None:
        self.errors.append(int(err.code))
        return None

    def handle(self, line: str) -> str | None:
        cmd = line.strip().upper()
        if cmd == "*IDN?":
            return self.IDN
        if cmd == "LERR?":
            return str(self.errors.pop(0)) if self.errors else "0"
        if cmd == "*CLS":
            self.errors.clear()
            return None
        if cmd.startswith("OPTN?"):
            return "0"
        m = re.fullmatch(r"(FREQ|AMPR|ENBR)\s*(\?|" + _NUM + r"\s*([A-Z]*))", cmd)
        if not m:
            raise CommandError(SG_UNDEFINED_COMMAND, f"undefined command {line!r}")
        key, arg = m.group(1), m.group(2)
        if key == "FREQ":
            if arg == "?":
                return f"{self.frequency_hz:.6f}"
            unit = m.group(4)
            if unit not in _FREQ_UNITS:
                raise CommandError(SG_ILLEGAL_UNITS)
            hz = float(m.group(3)) * _FREQ_UNITS[unit]
            if not 0.0 <= hz <= self.max_frequency_hz:
                raise CommandError(SG_ILLEGAL_VALUE)
            self._apply(frequency_hz=hz)
            return None
        if key == "AMPR":
            if arg == "?":
                return f"{self.amplitude_dbm:.2f}"
            if m.group(4) not in ("", "DBM"):
                raise CommandError(SG_ILLEGAL_UNITS)
            dbm = float(m.group(3))
            if not -110.0 <= dbm <= 16.5:
                raise CommandError(SG_ILLEGAL_VALUE)
            self._apply(amplitude_dbm=round(dbm, 2))
            return None
        if arg == "?":
            return "1" if self.output_on else "0"
        if m.group(3) not in ("0", "1") or m.group(4):
            raise CommandError(SG_ILLEGAL_VALUE)
        self._apply(on=m.group(3) == "1")
        return None


#: NPLC settings of a 34465A without the DIG option (Truevolt guide, ``[SENSe:]...:NPLC``).
DMM_NPLCS = (0.02, 0.06, 0.2, 1.0, 10.0, 100.0)


class SimPickoffDMM(SimInstrument):
    """Keysight 34465A twin reading `TrapRF.pickoff_voltage` (READ?, MEAS:VOLT:DC?, CONF).

    Without a `trap_rf` (option, else ``world.trap_rf``) it reads ``standalone_v``.
    What the driver relies on, and where it comes from (Keysight Truevolt Series Operating
    and Service Guide, "SCPI Programming Reference"; Agilent 34410A User's Guide):

    - Readings in the form ``+6.27530000E-01`` (Truevolt guide, ``CURRent[:DC]:NPLC``
      example "Typical Response", p. 329), one per ``READ?``, LF-terminated.
    - A reading beyond the fixed range (more than 120 % of it: the autorange up-range
      threshold) is the overload marker ``±9.9E+37`` with the sign of the input
      (34410A/11A User's Guide: "±OVLD" on the panel, "±9.9E+37 from the remote
      interface", remarks on the range parameter; Truevolt guide ``VOLTage:RANGe:AUTO``:
      up-range above 120 %).
    - NPLC 0.02, 0.06, 0.2, 1, 10, 100 on a 34465A without the DIG option (Truevolt
      guide p. 329; the 34460A/61A lack 0.06); others are "Data out of range" here.
    - ``SYST:ERR?`` answers ``+0,"No error"`` or ``<code>,"<text>"`` (SCPI-99, and the
      Truevolt guide's error list: -113 Undefined header, -222 Data out of range).
    """

    input_terminator = b"\n"
    output_terminator = b"\n"
    name = "sim-34465a"
    IDN = "Keysight Technologies,34465A,MY00000000,A.03.01-03.15-03.01-00.52-03-02"

    def __init__(self, world=None, trap_rf: TrapRF | None = None, standalone_v: float = 1.0,
                 seed: int | None = 0):
        self.trap_rf = trap_rf if trap_rf is not None else getattr(world, "trap_rf", None)
        self.standalone_v = standalone_v
        super().__init__(world, seed)

    def reset_settings(self) -> None:
        self.range_v = 10.0
        self.nplc = 10.0
        self.errors: list[tuple[int, str]] = []

    def error_reply(self, err: CommandError) -> str | None:
        self.errors.append((int(err.code), str(err)))
        return None

    def _reading(self, range_v: float) -> str:
        v = self.trap_rf.pickoff_voltage() if self.trap_rf is not None else self.standalone_v
        if abs(v) > 1.2 * range_v:
            return "+9.90000000E+37" if v > 0 else "-9.90000000E+37"
        return f"{v:+.8E}"

    def handle(self, line: str) -> str | None:
        cmd = " ".join(line.strip().upper().split())
        if cmd == "*IDN?":
            return self.IDN
        if cmd in ("*RST", "*CLS"):
            if cmd == "*RST":
                self.reset_settings()
            self.errors.clear()
            return None
        if cmd in ("SYST:ERR?", "SYSTEM:ERROR?"):
            if not self.errors:
                return '+0,"No error"'
            code, text = self.errors.pop(0)
            return f'{code:+d},"{text}"'
        if cmd == "READ?":
            return self._reading(self.range_v)
        if cmd in ("MEAS:VOLT:DC? DEF,DEF", "MEAS:VOLT:DC?"):
            return self._reading(1000.0)  # autorange
        m = re.fullmatch(r"CONF:VOLT:DC " + _NUM, cmd)
        if m:
            r = float(m.group(1))
            if r not in (0.1, 1.0, 10.0, 100.0, 1000.0):
                raise CommandError("-222", "Data out of range")
            self.range_v = r
            return None
        m = re.fullmatch(r"VOLT:DC:NPLC " + _NUM, cmd)
        if m:
            n = float(m.group(1))
            if n not in DMM_NPLCS:
                raise CommandError("-222", "Data out of range")
            self.nplc = n
            return None
        raise CommandError("-113", "Undefined header")
