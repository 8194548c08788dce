"""Feedback controllers that do no I/O and read no clock (simple-pid style, STYLE §5).

A controller maps an error and the time since its last update to an actuator value:
``output = controller.update(error, dt)``. The caller owns time (SimPy `env.now` in a
process) and the actuator; the controller only keeps its integrator state.

`PIController` is a proportional-integral controller with an optional second (drift)
integrator, the structure DOMAIN §5 asks of the clock laser loop:

    drift    += ki2 * e * dt                      (clamped to `drift_limits`)
    integral += ki * e * dt + drift * dt          (clamped to `integral_limits`)
    output    = kp * e + integral                 (clamped to `output_limits`)

The integrator accumulates ``ki * e * dt`` rather than ``e * dt`` so that changing `ki` on
the fly does not step the output. Anti-windup: the integral is clamped to its own limits
(by default the output limits) and, while the output saturates, is not driven further
into saturation (conditional integration), so the loop recovers as soon as the error
changes sign.
"""

from __future__ import annotations

import math

Limits = tuple[float | None, float | None]


def _clamp(value: float, limits: Limits) -> float:
    lo, hi = limits
    if lo is not None and value < lo:
        return lo
    if hi is not None and value > hi:
        return hi
    return value


def _check_limits(name: str, limits: Limits) -> Limits:
    lo, hi = limits
    for v in (lo, hi):
        if v is not None and not math.isfinite(v):
            raise ValueError(f"{name}: limits must be finite numbers or None, got {limits!r}")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{name}: lower limit {lo!r} is above upper limit {hi!r}")
    return (None if lo is None else float(lo), None if hi is None else float(hi))


def _check_gain(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class PIController:
    """PI(+drift) controller: ``update(error, dt) -> output`` (units of the actuator).

    Parameters
    ----------
    kp:
        Proportional gain (output units per error unit).
    ki:
        Integral gain (output units per error unit per second).
    ki2:
        Drift (second) integrator gain (output units per error unit per s^2); 0 disables it.
    output_limits:
        (low, high) of the returned output; None leaves a side open.
    integral_limits:
        (low, high) of the integrator; defaults to `output_limits`.
    drift_limits:
        (low, high) of the drift term (output units per second); default unbounded.
    """

    def __init__(self, kp: float, ki: float, ki2: float = 0.0, *,
                 output_limits: Limits = (None, None),
                 integral_limits: Limits | None = None,
                 drift_limits: Limits = (None, None),
                 initial_output: float = 0.0):
        self.kp = _check_gain("kp", kp)
        self.ki = _check_gain("ki", ki)
        self.ki2 = _check_gain("ki2", ki2)
        self.output_limits = _check_limits("output_limits", output_limits)
        self.integral_limits = _check_limits(
            "integral_limits", output_limits if integral_limits is None else integral_limits)
        self.drift_limits = _check_limits("drift_limits", drift_limits)
        self.integral = 0.0
        self.drift = 0.0
        self.last_error: float | None = None
        self.last_output = 0.0
        self.engaged = True
        self._rebase = False
        self.reset(initial_output)

    def update(self, error: float, dt: float) -> float:
        """Advance the controller by `dt` seconds with `error`; return the new output.

        While disengaged (`hold()`), the integrators are frozen and the last output is
        returned unchanged.
        """
        if not math.isfinite(error):
            raise ValueError(f"error must be a finite number, got {error!r}")
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive finite number of seconds, got {dt!r}")
        if not self.engaged:
            return self.last_output
        p = self.kp * error
        if self._rebase:
            # Bumpless transfer: the first output after `engage` equals the actuator value
            # plus the integral step, not plus a sudden proportional kick.
            self.integral = _clamp(self.last_output - p, self.integral_limits)
            self._rebase = False
        drift = _clamp(self.drift + self.ki2 * error * dt, self.drift_limits)
        step = self.ki * error * dt + drift * dt
        integral = _clamp(self.integral + step, self.integral_limits)
        raw = p + integral
        out = _clamp(raw, self.output_limits)
        # Conditional integration: while saturated, do not let the integrators run further
        # into the limit (they would have to unwind before the output could move back).
        if out != raw and (raw - out) * step > 0:
            integral = self.integral
            if (raw - out) * (drift - self.drift) > 0:
                drift = self.drift
        self.integral, self.drift = integral, drift
        self.last_error = error
        self.last_output = out
        return out

    def reset(self, output: float = 0.0) -> None:
        """Forget the history; the next output starts from `output` (integral preset)."""
        if not math.isfinite(output):
            raise ValueError(f"output must be a finite number, got {output!r}")
        self.integral = _clamp(float(output), self.integral_limits)
        self.drift = 0.0
        self.last_error = None
        self.last_output = _clamp(float(output), self.output_limits)
        self._rebase = False

    def track(self, actual_output: float) -> None:
        """Back-calculate the integral so the output equals what the actuator really did.

        Call it when something downstream (a slew limit, a safety ceiling) applied less
        than the controller asked for, so the integral does not wind up behind it.
        """
        if not math.isfinite(actual_output):
            raise ValueError(f"actual_output must be a finite number, got {actual_output!r}")
        p = self.kp * (self.last_error or 0.0)
        self.integral = _clamp(float(actual_output) - p, self.integral_limits)
        self.last_output = _clamp(float(actual_output), self.output_limits)

    def hold(self) -> None:
        """Disengage: freeze the integrators; `update` returns the last output."""
        self.engaged = False

    def engage(self, current_output: float | None = None) -> None:
        """Re-engage without a bump: the integral is preset so the output continues.

        `current_output` is the actuator value now (it may have moved while the loop was
        held); None keeps the controller's own last output. The drift estimate is kept,
        since a drift does not stop while the loop is held.
        """
        out = self.last_output if current_output is None else current_output
        if not math.isfinite(out):
            raise ValueError(f"current_output must be a finite number, got {out!r}")
        self.integral = _clamp(float(out), self.integral_limits)
        self.last_output = _clamp(float(out), self.output_limits)
        self.last_error = None
        self.engaged = True
        self._rebase = True
