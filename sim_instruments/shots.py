"""Projection noise: how many of N shots find the ion in D5/2 (dark), for the twin's measurements.

Each shot of a characterisation sequence ends in a projective measurement: dark with
probability p, bright otherwise, so N shots give a binomial count. A state-detection error
eps (DOMAIN §5: ~1e-3 with ~40 vs ~1 photons in 2 ms) reads a bright ion as dark or a dark
one as bright: p_observed = eps + (1 - 2 eps) p. Every draw comes from the numpy Generator
the caller passes, never from the world's own streams, so a test can run any number of seeds
and a clock run is unchanged by a measurement.
"""

from __future__ import annotations

import numpy as np


def dark_counts(p, shots, rng: np.random.Generator, detection_error: float = 0.0) -> np.ndarray:
    """Binomial numbers of dark shots for dark probabilities `p` (N = `shots` per point)."""
    p = np.asarray(p, dtype=float)
    n = np.broadcast_to(np.asarray(shots), p.shape)
    if np.any(n < 1) or not np.all(np.asarray(n) == np.round(n)):
        raise ValueError("shots: expected a whole number >= 1 per point")
    if not 0.0 <= detection_error < 0.5:
        raise ValueError(f"detection_error {detection_error!r}: expected 0 <= eps < 0.5")
    if np.any((p < -1e-12) | (p > 1 + 1e-12)) or not np.all(np.isfinite(p)):
        raise ValueError("dark probabilities must lie in [0, 1]")
    p_obs = detection_error + (1.0 - 2.0 * detection_error) * np.clip(p, 0.0, 1.0)
    return rng.binomial(n.astype(np.int64), p_obs)
