"""The lock's evaluation from a run's store: Allan deviation, bias, field, slips, uptime.

`make_report(path, out_dir)` reads one store (``RUN_DIR/ionclock.sqlite`` or the file
itself), writes four PNGs and ``summary.json`` into `out_dir`, and returns the summary.

What is measured (DOMAIN §5):

- The fractional frequency of the six-line mean, one point per frame (12 clock cycles,
  ~1.26 s). A twin run has the truth: ``twin_truth.detuning_hz / nu0`` is the lock error
  against the ion itself. A lab run has only ``lock_frames.nu_hz / nu0``, the laser steering,
  i.e. the ion measured against the cavity (cavity drift and noise included).
- Allan deviation: overlapping ADEV (allantools ``oadev``) of the *uptime-weighted* series:
  only frames that are locked and not in holdover, after the settling time, concatenated
  and taken as uniform at the median frame spacing (docs/decisions/0600). Error bars are
  the chi-squared 68 % interval with Greenhall's equivalent degrees of freedom for white
  frequency noise, the noise type the lock shows on every tau it resolves.
- The QPN limit sigma0(tau) = 1 / (2 pi nu0 T C (1 - 2 eps)) sqrt(Tc / tau) from the run's
  servo parameters (`ionclock.physics.constants.qpn_sigma`); each single line is sqrt(6) worse. Tc
  is the time per clock probe: the cycle time over the clock-probe duty cycle, the fraction of the
  locked cycles that are hyper-Ramsey probes (`servo_cycles.line` 0..5; ion checks and the fringe
  verification's Rabi probes, decision 0008, are not), when the store has them.
- Bias: the mean fractional lock error over the same frames; its standard error by batch
  means (robust to the loop's correlations). Twin runs only.
- Fringe slips (DOMAIN §5): episodes where one line sits a Ramsey fringe (1/T) off. Found
  three ways and merged in time: the servo's own slip events, a cross-check of the three
  splittings in the recorded line offsets (the pairs must give one B: a slipped line moves
  its pair's splitting by 1/T), and, in twin runs, the true per-line detunings.
- Silent wrong-lock frames (twin runs only): frames the servo called clock data (locked,
  not in holdover) while the truth says otherwise: some line more than a quarter fringe,
  1/(4T), from its true centre for SILENT_PERSIST_FRAMES frames in a row or more, or stray
  light on the ion (``twin_truth.stray_hz`` != 0). Counted over the run and after settling:
  `settle_s` after the first ``locked`` event, and EVENT_SETTLE_S after each disturbance the
  twin applies (a laser jump, a Q0 change, a field step: the lock's step response, which no
  servo avoids). After settling it is the number a servo that never runs on a wrong fringe
  without saying so keeps at 0; the frames inside the windows are counted beside it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ionclock.errors import UserError
from ionclock.physics.constants import NU0_CA, PAIR_SPLITTING_HZ_PER_T, ZEEMAN_LINES, qpn_sigma
from ionclock.storage.store import read_store

STORE_NAME = "ionclock.sqlite"
DEFAULT_SETTLE_S = 600.0
DEFAULT_DETECTION_ERROR = 1e-3     # DOMAIN §5: eps ~ 1e-3 (not a servo parameter)
ADEV_CHECK_TAUS = (100.0, 1000.0, 10000.0)
# A tau is "available" when the record holds at least this many of them (fewer gives an
# estimate with < ~3 degrees of freedom, not worth a ratio to the QPN line).
MIN_SPANS_PER_TAU = 4
BIAS_BATCHES = 20
# Slip detection: a line counts as slipped when its pair's splitting (or, in the twin, its
# true detuning) is off by more than half a fringe, 1/(2T), for this many locked frames.
SLIP_PERSIST_FRAMES = 3
SLIP_MERGE_S = 60.0               # findings closer than this are one episode
SLIP_EVENT_KINDS = ("slip", "slip_detected", "fringe_slip", "slip_corrected")
# Silent wrong lock: a line's true detuning beyond a quarter fringe in this many consecutive
# locked frames. One frame is not enough: the lock's own QPN jitter is ~1 Hz per line and
# frame, so 1/(4T) = 3.1 Hz (3.3 sigma) is crossed by ~0.5 % of the frames of a clean lock,
# in runs of 1-2 frames; a line on a wrong fringe stays off for as long as it is not caught.
SILENT_PERSIST_FRAMES = 5
# The step response: after a disturbance the twin applies (TWIN_DISTURBANCES, source "twin")
# the lines are pulled back over a few servo time constants (gain 0.5 per frame: 2 frames;
# near half a fringe the discriminator sin(2 pi d T) vanishes and a line can take ~15 frames,
# decision 0008). Frames this long after such an event are counted apart, not hidden.
EVENT_SETTLE_S = 30.0
TWIN_DISTURBANCES = ("laser_jump", "q0", "b_step")
PLOT_MAX_POINTS = 4000            # time records are bin-averaged down to this for plotting

_Z = np.array([line.zeeman_hz_per_t for line in ZEEMAN_LINES])


@dataclass
class RunData:
    """One run's records as arrays (time t in the store's seconds, frequencies in Hz, B in T).

    Truth arrays (`detuning_hz`, `b_true_t`, `d_hz`) are aligned with the frames and NaN
    where the frame has no truth row; they are None for a lab run.
    """

    store: Path
    meta: dict
    t: np.ndarray
    frame: np.ndarray
    nu_hz: np.ndarray
    drift_hz_s: np.ndarray
    b_t: np.ndarray
    offsets_hz: np.ndarray          # (n, 6)
    locked: np.ndarray              # bool
    holdover: np.ndarray            # bool
    events: list[tuple[float, str, str, dict]]
    detuning_hz: np.ndarray | None = None
    b_true_t: np.ndarray | None = None
    d_hz: np.ndarray | None = None  # (n, 6)
    stray_hz: np.ndarray | None = None  # stray-light shift on the ion per frame (twin), Hz
    t_start: float = 0.0
    nu0_hz: float = NU0_CA
    servo: dict = field(default_factory=dict)
    probe_duty: float | None = None  # hyper-Ramsey probes / all locked cycles (None: unknown)

    @property
    def has_truth(self) -> bool:
        """True for a twin run whose store holds the per-frame truth."""
        return self.detuning_hz is not None and bool(np.isfinite(self.detuning_hz).any())


# --- reading ------------------------------------------------------------------------------
def resolve_store(path: str | Path) -> Path:
    """Return the store file of a run folder (or the file itself); missing: `UserError`."""
    p = Path(path)
    if p.is_dir():
        candidate = p / STORE_NAME
        if candidate.is_file():
            return candidate
        others = sorted(p.glob("*.sqlite"))
        if len(others) == 1:
            return others[0]
        raise UserError(f"report: no store {STORE_NAME!r} in {str(p)!r}")
    if p.is_file():
        return p
    raise UserError(f"report: no such run folder or store {str(p)!r}")


def load_run(path: str | Path) -> RunData:
    """Read a run's store (folder or file) into arrays; bad or empty stores are `UserError`."""
    store = resolve_store(path)
    return read_store(store, lambda db: _load(db, store), what="report")


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _load(db: sqlite3.Connection, store: Path) -> RunData:
    tables = _tables(db)
    if "lock_frames" not in tables:
        raise UserError(f"report: {str(store)!r} has no lock_frames table (not a clock run)")
    rows = db.execute(
        "SELECT t, frame, nu_hz, drift_hz_s, b_t, o0, o1, o2, o3, o4, o5, locked, holdover "
        "FROM lock_frames ORDER BY t, frame").fetchall()
    if not rows:
        raise UserError(f"report: {str(store)!r} has no lock frames")
    a = np.array(rows, dtype=float)   # NULL offsets become NaN
    meta = {}
    if "meta" in tables:
        for k, v in db.execute("SELECT key, value FROM meta"):
            try:
                meta[k] = json.loads(v)
            except (TypeError, ValueError):
                meta[k] = v
    events = []
    if "events" in tables:
        for t, kind, source, detail in db.execute(
                "SELECT t, kind, source, detail FROM events ORDER BY t"):
            try:
                d = json.loads(detail)
            except (TypeError, ValueError):
                d = {"raw": detail}
            events.append((float(t), str(kind), str(source), d if isinstance(d, dict) else {}))
    data = RunData(
        store=store, meta=meta, t=a[:, 0], frame=a[:, 1].astype(np.int64), nu_hz=a[:, 2],
        drift_hz_s=a[:, 3], b_t=a[:, 4], offsets_hz=a[:, 5:11], locked=a[:, 11] > 0,
        holdover=a[:, 12] > 0, events=events)
    if "twin_truth" in tables:
        columns = {r[1] for r in db.execute("PRAGMA table_info(twin_truth)")}
        stray_col = "stray_hz" if "stray_hz" in columns else "0.0"   # older stores: none
        truth = db.execute("SELECT frame, detuning_hz, b_true_t, d0, d1, d2, d3, d4, d5, "
                           f"{stray_col} FROM twin_truth").fetchall()
        if truth:
            tr = np.array(truth, dtype=float)
            idx = {int(f): i for i, f in enumerate(data.frame)}
            det = np.full(len(data.t), np.nan)
            bt = np.full(len(data.t), np.nan)
            d = np.full((len(data.t), 6), np.nan)
            stray = np.full(len(data.t), np.nan)
            for row in tr:
                i = idx.get(int(row[0]))
                if i is not None:
                    det[i], bt[i], d[i], stray[i] = row[1], row[2], row[3:9], row[9]
            data.detuning_hz, data.b_true_t, data.d_hz = det, bt, d
            data.stray_hz = stray
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    nu0 = (cfg.get("twin", {}) or {}).get("nu0_hz") or (cfg.get("clock", {}) or {}).get(
        "nu0_hz")
    data.nu0_hz = float(nu0) if nu0 else NU0_CA
    data.servo = meta.get("servo") if isinstance(meta.get("servo"), dict) else {}
    data.t_start = _run_start(data)
    if "servo_cycles" in tables:
        probes, total = db.execute(
            "SELECT SUM(line BETWEEN 0 AND 5), COUNT(*) FROM servo_cycles "
            "WHERE state = 'locked'").fetchone()
        if total:
            data.probe_duty = float(probes) / float(total)
    return data


def _run_start(data: RunData) -> float:
    """When the servo started: its event, else one frame period before the first frame."""
    for t, kind, _, _ in data.events:
        if kind in ("servo_started", "field_ready"):
            if t <= data.t[0]:
                return t
    dt = np.diff(data.t)
    return float(data.t[0] - (np.median(dt) if len(dt) else 0.0))


# --- estimators ---------------------------------------------------------------------------
def adev(y: np.ndarray, tau0: float, taus: str | np.ndarray = "octave") -> dict:
    """Overlapping Allan deviation of fractional frequencies `y` sampled every `tau0` s.

    Returns arrays ``tau`` (s), ``sigma``, ``lo``, ``hi`` (68 % interval, white-FM edf) and
    ``n`` (number of terms). Only taus with at least MIN_SPANS_PER_TAU spans in the record
    are kept.
    """
    import allantools

    y = np.asarray(y, dtype=float)
    empty = {k: np.array([]) for k in ("tau", "sigma", "lo", "hi", "n")}
    if len(y) < 2 * MIN_SPANS_PER_TAU or tau0 <= 0:
        return empty
    if isinstance(taus, str):
        mmax = len(y) // MIN_SPANS_PER_TAU
        if taus == "octave":
            ms = 2 ** np.arange(0, int(math.log2(mmax)) + 1)
        elif taus == "decade":
            ms = np.unique(np.outer([1, 2, 4], 10 ** np.arange(0, 10)).ravel())
            ms = np.sort(ms[ms <= mmax])
        else:
            raise ValueError(f"taus must be 'octave', 'decade' or an array, not {taus!r}")
        tau_in = ms * tau0
    else:
        tau_in = np.asarray(taus, dtype=float)
        tau_in = tau_in[(tau_in >= tau0) & (tau_in * MIN_SPANS_PER_TAU <= len(y) * tau0)]
    if len(tau_in) == 0:
        return empty
    tau, sigma, _, n = allantools.oadev(y, rate=1.0 / tau0, data_type="freq", taus=tau_in)
    lo = np.empty_like(sigma)
    hi = np.empty_like(sigma)
    for i, (t, s) in enumerate(zip(tau, sigma)):
        m = max(1, int(round(t / tau0)))
        edf = allantools.edf_greenhall(alpha=0, d=2, m=m, N=len(y), overlapping=True,
                                       modified=False)
        lo[i], hi[i] = allantools.confidence_interval(s, edf, ci=0.683)
    return {"tau": np.asarray(tau), "sigma": np.asarray(sigma), "lo": lo, "hi": hi,
            "n": np.asarray(n)}


def mean_and_batch_sigma(values: np.ndarray, batches: int = BIAS_BATCHES) -> tuple[float,
                                                                                    float]:
    """Mean and its standard error by `batches` batch means (NaN if too few points)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2 * batches:
        return mean, math.nan
    size = len(v) // batches
    means = v[: size * batches].reshape(batches, size).mean(axis=1)
    return mean, float(means.std(ddof=1) / math.sqrt(batches))


def analysis_mask(data: RunData, settle_s: float) -> np.ndarray:
    """Frames the lock is judged on: locked, not in holdover, after the settling time."""
    return data.locked & ~data.holdover & (data.t >= data.t_start + settle_s)


def uniform_tau0(t: np.ndarray) -> float:
    """Return the median frame spacing (s): the sample period of the concatenated series."""
    dt = np.diff(t)
    dt = dt[dt > 0]
    return float(np.median(dt)) if len(dt) else math.nan


def uptime(data: RunData) -> float:
    """Locked (not holdover) fraction of the time from the servo's start to the last frame."""
    edges = np.concatenate([[data.t_start], data.t])
    dt = np.diff(edges)
    total = data.t[-1] - data.t_start
    if total <= 0:
        return 1.0 if bool(data.locked[-1] and not data.holdover[-1]) else 0.0
    return float(dt[data.locked & ~data.holdover].sum() / total)


def qpn_params(data: RunData) -> dict:
    """Arguments of `qpn_sigma` from the run's servo parameters (meta `servo`)."""
    s = data.servo
    duty = data.probe_duty if data.probe_duty else 1.0
    # an ion cloud (the Cd+ standard, decision 1300) records its detection SNR per probe,
    # which takes the place of C (1 - 2 eps): sigma0 = sqrt(Tc / tau) / (2 pi nu0 T SNR)
    snr = s.get("snr")
    return {"ramsey_time_s": float(s.get("ramsey_time_s", 0.080)),
            "cycle_time_s": float(s.get("cycle_time_s", 0.105)) / duty,
            "contrast": float(snr) if snr else s.get("contrast"),
            "detection_error": 0.0 if snr else float(s.get("detection_error",
                                                           DEFAULT_DETECTION_ERROR)),
            "nu0_hz": data.nu0_hz}


def _episodes(t: np.ndarray, flag: np.ndarray, persist: int) -> list[tuple[float, float]]:
    """(first, last) times of runs of at least `persist` consecutive True flags."""
    spans = []
    run = 0
    for i, f in enumerate(flag):
        if f:
            run += 1
            if run == persist:
                spans.append([float(t[i - persist + 1]), float(t[i])])
            elif run > persist:
                spans[-1][1] = float(t[i])
        else:
            run = 0
    return [(a, b) for a, b in spans]


def splitting_inconsistency_hz(offsets_hz: np.ndarray) -> np.ndarray:
    """Per-frame, per-pair disagreement of the splittings with a common B (Hz), (n, 3).

    Pair p's splitting s_p = o_{2p+1} - o_{2p} gives B_p = s_p / k_p, quadrupole-free
    (both members of a pair share |m_D|). With B the median of the three B_p, the
    disagreement s_p - k_p B is ~0, and ~±1/T on the pair holding a slipped line.
    """
    k = np.array(PAIR_SPLITTING_HZ_PER_T)
    s = offsets_hz[:, 1::2] - offsets_hz[:, 0::2]
    b = np.median(s / k, axis=1)
    return s - k * b[:, None]


def find_slips(data: RunData, frame_mask: np.ndarray) -> dict:
    """Slip episodes: servo events, splitting cross-check, and (twin) truth, merged in time."""
    half_fringe = 0.5 / float(data.servo.get("ramsey_time_s", 0.080))
    found: dict[str, list[tuple[float, float]]] = {"events": [], "splittings": [],
                                                    "truth": []}
    found["events"] = [(t, t) for t, kind, _, _ in data.events if kind in SLIP_EVENT_KINDS]
    t = data.t[frame_mask]
    off = data.offsets_hz[frame_mask]
    good = np.isfinite(off).all(axis=1)
    if good.sum() > 0:
        e = splitting_inconsistency_hz(off[good])
        # A static within-pair asymmetry is no slip: judge against the record's median.
        e = e - np.median(e, axis=0)
        found["splittings"] = _episodes(t[good], (np.abs(e) > half_fringe).any(axis=1),
                                        SLIP_PERSIST_FRAMES)
    if data.d_hz is not None:
        d = data.d_hz[frame_mask]
        # A locked line's true detuning is ~mHz; a slipped one sits ~1/T away.
        flag = (np.abs(np.nan_to_num(d, nan=0.0)) > half_fringe).any(axis=1)
        found["truth"] = _episodes(t, flag, SLIP_PERSIST_FRAMES)
    # One slip seen several ways (the servo's detection and correction events, the
    # splittings, the truth) is one episode: merge spans that overlap within SLIP_MERGE_S.
    merged: list[list[float]] = []
    for a, b in sorted(x for v in found.values() for x in v):
        if merged and a - merged[-1][1] <= SLIP_MERGE_S:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    merged_starts = [a for a, _ in merged]
    return {"times": merged_starts, "by_source": {k: len(v) for k, v in found.items()}}


def first_locked_t(data: RunData) -> float | None:
    """Time of the run's first ``locked`` event (the clock's own, not the twin's), or None."""
    times = [t for t, kind, source, _ in data.events if kind == "locked" and source != "twin"]
    return min(times) if times else None


def silent_wrong_lock(data: RunData, settling_s: float = DEFAULT_SETTLE_S,
                      persist_frames: int = SILENT_PERSIST_FRAMES,
                      event_settling_s: float = EVENT_SETTLE_S) -> dict:
    """Frames called clock data while the twin's truth says the lock is wrong (twin runs).

    A frame is a silent wrong-lock frame when it is locked and not in holdover while some
    line's true detuning exceeds a quarter fringe, |d_k| > 1/(4T) (T: the servo's Ramsey
    time from meta, 80 ms -> 3.125 Hz), in a run of at least `persist_frames` such frames
    in a row (the lock's own noise crosses the threshold in single frames), or while stray
    light shifted the ion (stray_hz != 0, every such frame).
    Returns ``frames`` (the whole run), ``frames_after_settling`` (frames more than
    `settling_s` after the first ``locked`` event and outside the `event_settling_s` after
    each twin disturbance; 0 if the servo never locked), ``frames_in_event_settling`` (the
    frames after the first settling that those windows leave out), ``disturbances`` (how
    many), ``settling_s``, ``event_settling_s``, ``quarter_fringe_hz``, ``persist_frames``,
    ``first_locked_s``, the split
    ``by_cause`` (``detuning``, ``stray``; a frame with both counts in both) and
    ``single_frame_excursions`` (locked frames with a line a quarter fringe off, however
    briefly: the lock's noise). Counts are None for a lab run (no truth).
    """
    ramsey = float(data.servo.get("ramsey_time_s", 0.080))
    quarter = 0.25 / ramsey
    t_locked = first_locked_t(data)
    disturbances = [t for t, kind, source, _ in data.events
                    if source == "twin" and kind in TWIN_DISTURBANCES]
    out = {"frames": None, "frames_after_settling": None, "frames_in_event_settling": None,
           "settling_s": float(settling_s), "event_settling_s": float(event_settling_s),
           "disturbances": len(disturbances),
           "quarter_fringe_hz": quarter, "persist_frames": int(persist_frames),
           "first_locked_s": None if t_locked is None else float(t_locked - data.t_start),
           "by_cause": None, "single_frame_excursions": None}
    if data.d_hz is None or not data.has_truth:
        return out
    clock_data = data.locked & ~data.holdover & np.isfinite(data.d_hz).any(axis=1)
    off_now = clock_data & (np.abs(np.nan_to_num(data.d_hz, nan=0.0)) > quarter).any(axis=1)
    off = _in_runs(off_now, persist_frames)
    stray = clock_data & (np.nan_to_num(data.stray_hz, nan=0.0) != 0.0
                          if data.stray_hz is not None else np.zeros(len(data.t), dtype=bool))
    wrong = off | stray
    settled = (data.t > t_locked + settling_s if t_locked is not None
               else np.zeros(len(data.t), dtype=bool))
    responding = np.zeros(len(data.t), dtype=bool)
    for t_event in disturbances:
        responding |= (data.t >= t_event) & (data.t <= t_event + event_settling_s)
    out.update(frames=int(wrong.sum()),
               frames_after_settling=int((wrong & settled & ~responding).sum()),
               frames_in_event_settling=int((wrong & settled & responding).sum()),
               by_cause={"detuning": int(off.sum()), "stray": int(stray.sum())},
               single_frame_excursions=int(off_now.sum()))
    return out


def _in_runs(flag: np.ndarray, n: int) -> np.ndarray:
    """True where `flag` is part of a run of at least `n` consecutive True values."""
    out = np.zeros(len(flag), dtype=bool)
    start = None
    for i, f in enumerate(np.append(flag, False)):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if i - start >= n:
                out[start:i] = True
            start = None
    return out


def holdover_spans(data: RunData) -> list[tuple[float, float]]:
    """(start, end) times of contiguous holdover frames, start at the preceding frame."""
    spans = []
    h = data.holdover
    i = 0
    while i < len(h):
        if h[i]:
            j = i
            while j + 1 < len(h) and h[j + 1]:
                j += 1
            start = data.t[i - 1] if i > 0 else data.t_start
            spans.append((float(start), float(data.t[j])))
            i = j + 1
        else:
            i += 1
    return spans


# --- the summary ----------------------------------------------------------------------------
def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _pairs(a: dict) -> list[list[float]]:
    return [[float(t), float(s)] for t, s in zip(a["tau"], a["sigma"])]


def summarise(data: RunData, settle_s: float = DEFAULT_SETTLE_S,
              taus: str = "octave",
              event_settle_s: float = EVENT_SETTLE_S) -> tuple[dict, dict]:
    """Return the run's summary (JSON-ready) and the arrays the figures need.

    `event_settle_s`: the window after each twin disturbance whose silent wrong-lock frames
    are counted apart (`silent_wrong_lock`'s `event_settling_s`).
    """
    mask = analysis_mask(data, settle_s)
    notes = []
    truth = data.has_truth
    if truth:
        y_all = data.detuning_hz / data.nu0_hz
        mask_y = mask & np.isfinite(y_all)
        reference = "ion (twin truth: lock error)"
    else:
        y_all = data.nu_hz / data.nu0_hz
        mask_y = mask & np.isfinite(y_all)
        reference = "cavity (laser steering)"
    tau0 = uniform_tau0(data.t[mask_y])
    if not np.isfinite(tau0):
        tau0 = uniform_tau0(data.t)
    qp = qpn_params(data)
    sigma0_1s = qpn_sigma(1.0, **qp)
    if mask_y.sum() < 2 * MIN_SPANS_PER_TAU:
        notes.append(f"only {int(mask_y.sum())} locked frames after the settling time "
                     f"({settle_s:g} s): no Allan deviation")
    main = adev(y_all[mask_y], tau0, taus)
    lines = []
    if truth and data.d_hz is not None:
        for k in range(6):
            yk = data.d_hz[:, k] / data.nu0_hz
            mk = mask & np.isfinite(yk)
            lines.append(adev(yk[mk], uniform_tau0(data.t[mk]) if mk.sum() > 1 else tau0,
                              taus))
    detrended = None
    if not truth and mask_y.sum() > 2:
        # The steering holds the cavity's drift; a lab user also wants the ADEV without
        # it (a linear fit over the evaluated frames, in time, removed).
        tt = data.t[mask_y]
        fit = np.polyfit(tt - tt[0], y_all[mask_y], 1)
        detrended = adev(y_all[mask_y] - np.polyval(fit, tt - tt[0]), tau0, taus)
    check = adev(y_all[mask_y], tau0, np.array(ADEV_CHECK_TAUS))
    over_qpn = {}
    for want in ADEV_CHECK_TAUS:
        hit = [i for i, t in enumerate(check["tau"]) if abs(t - want) <= 0.5 * tau0 + 1e-9]
        if hit:
            i = hit[0]
            over_qpn[f"{want:g}"] = float(check["sigma"][i] / qpn_sigma(check["tau"][i], **qp))
    if truth:
        bias, bias_sigma = mean_and_batch_sigma(y_all[mask_y])
    else:
        bias = bias_sigma = math.nan
        notes.append("lab run: no truth, so no bias; ADEV is the ion against the cavity")
    unverified = sum(1 for _, kind, source, d in data.events
                     if kind == "locked" and source == "servo" and d.get("verified") is False)
    if unverified:
        # decision 0008: with verify_every_frames = 0 no lock was checked for its fringe
        notes.append(f"{unverified} lock(s) not verified on the central fringe (fringe "
                     "verification off): the frames may sit whole fringes off")
    b_err = b_err_sigma = math.nan
    if data.b_true_t is not None:
        diff = (data.b_t - data.b_true_t)[mask]
        b_err, b_err_sigma = mean_and_batch_sigma(diff)
    slips = find_slips(data, mask if mask.any() else data.locked & ~data.holdover)
    silent = silent_wrong_lock(data, settle_s, event_settling_s=event_settle_s)
    kinds: dict[str, int] = {}
    for _, kind, _, _ in data.events:
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = {
        "store": str(data.store),
        "simulated": bool(data.meta.get("simulated", truth)),
        "reference": reference,
        "frames": int(len(data.t)),
        "frames_used": int(mask_y.sum()),
        "span_s": float(data.t[-1] - data.t_start),
        "settle_s": float(settle_s),
        "tau0_s": _finite(tau0),
        "nu0_hz": data.nu0_hz,
        "adev": _pairs(main),
        "adev_err": [[float(lo), float(hi)] for lo, hi in zip(main["lo"], main["hi"])],
        "adev_lines": [_pairs(a) for a in lines],
        "adev_detrended": _pairs(detrended) if detrended is not None else None,
        "qpn_sigma_1s": sigma0_1s,
        "qpn_params": qp,
        "probe_duty_cycle": data.probe_duty,
        "adev_over_qpn": over_qpn,
        "bias": _finite(bias),
        "bias_sigma": _finite(bias_sigma),
        "b_error_t": _finite(b_err),
        "b_error_sigma_t": _finite(b_err_sigma),
        "b_mean_t": _finite(np.nanmean(data.b_t[mask])) if mask.any() else None,
        "slips": len(slips["times"]),
        "slips_by_source": slips["by_source"],
        "slip_times_s": [float(t - data.t_start) for t in slips["times"]],
        "slips_corrected": kinds.get("slip_corrected", 0),
        "silent_wrong_lock_frames": silent["frames"],
        "silent_wrong_lock_frames_after_settling": silent["frames_after_settling"],
        "settling_s": silent["settling_s"],
        "silent_wrong_lock": silent,
        "uptime": uptime(data),
        "events": dict(sorted(kinds.items())),
        "notes": notes,
    }
    arrays = {"mask": mask, "y": y_all, "mask_y": mask_y, "main": main, "lines": lines,
              "detrended": detrended,
              "qp": qp, "slips": slips["times"], "tau0": tau0}
    return summary, arrays


def to_json(summary: dict) -> str:
    """One JSON object; non-finite floats become null."""
    def clean(v):
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(summary))


# --- figures ---------------------------------------------------------------------------------
def _hours(data: RunData, t: np.ndarray) -> np.ndarray:
    return (np.asarray(t) - data.t_start) / 3600.0


def _thin(x: np.ndarray, y: np.ndarray, n: int = PLOT_MAX_POINTS) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """Bin-average (x, y) down to at most n points (NaNs ignored) for a readable record."""
    if len(x) <= n:
        return x, y
    edges = np.linspace(0, len(x), n + 1).astype(int)
    xs = np.add.reduceat(x, edges[:-1]) / np.diff(edges)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(y)
        ys = (np.add.reduceat(np.where(ok, y, 0.0), edges[:-1])
              / np.add.reduceat(ok.astype(float), edges[:-1]))
    return xs, ys


_EVENT_STYLE = {"locked": "tab:green", "holdover": "tab:orange", "ion_lost": "tab:red",
                "ion_reloaded": "tab:purple", "slip_corrected": "tab:brown",
                "instrument_offline": "black"}
_QUIET_EVENTS = {"servo_started", "run_stopped", "field_ready"}


def _mark_events(ax, data: RunData, with_labels: bool) -> None:
    """Vertical lines at state changes (one legend entry per kind), holdover spans shaded."""
    seen = set()
    for t, kind, _, _ in data.events:
        if kind in _QUIET_EVENTS or kind == "holdover":   # holdover: the shaded span
            continue
        color = _EVENT_STYLE.get(kind, "tab:gray" if not kind.startswith("b_step") else
                                 "tab:cyan")
        label = kind if (with_labels and kind not in seen) else None
        seen.add(kind)
        ax.axvline(_hours(data, t), color=color, lw=0.8, ls="--", alpha=0.8, label=label)
    for i, (a, b) in enumerate(holdover_spans(data)):
        ax.axvspan(_hours(data, a), _hours(data, b), color="tab:orange", alpha=0.2, lw=0,
                   label="holdover" if (with_labels and i == 0) else None)


def _mark_settling(ax, data: RunData, settle_s: float, with_label: bool) -> None:
    """Shade the settling time left out of the evaluation."""
    if settle_s > 0:
        ax.axvspan(0.0, settle_s / 3600.0, color="0.6", alpha=0.25, lw=0,
                   label=f"settling ({settle_s / 60:g} min, not evaluated)" if with_label
                   else None)


def _title_suffix(data: RunData) -> str:
    where = Path(data.store)
    return f"{'twin' if data.has_truth else 'lab'} run {where.parent.name}/{where.name}"


def _latex_sci(x: float) -> str:
    """Format x in mathtext scientific notation, 2 significant digits."""
    mant, _, exp = f"{x:.1e}".partition("e")
    return f"{mant}\\times10^{{{int(exp)}}}"


def plot_adev(data: RunData, summary: dict, arrays: dict, path: Path) -> None:
    """Log-log ADEV of the six-line mean and the single lines, with the QPN lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6), layout="constrained")
    main = arrays["main"]
    qp = arrays["qp"]
    tau_all = [main["tau"]] + [a["tau"] for a in arrays["lines"]]
    taus = np.concatenate(tau_all) if any(len(t) for t in tau_all) else np.array([1.0])
    grid = np.geomspace(max(min(taus.min(), 1.0), 1e-3), max(taus.max(), 10.0), 50)
    q = np.array([qpn_sigma(t, **qp) for t in grid])
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, 6))
    for k, a in enumerate(arrays["lines"]):
        if len(a["tau"]):
            ax.loglog(a["tau"], a["sigma"], "-", marker=".", ms=3, lw=0.8, alpha=0.8,
                      color=colors[k], label=f"line {k} (pair {ZEEMAN_LINES[k].pair})")
    if len(main["tau"]):
        ax.errorbar(main["tau"], main["sigma"],
                    yerr=[main["sigma"] - main["lo"], main["hi"] - main["sigma"]],
                    fmt="o-", color="black", ms=4, lw=1.5, capsize=2,
                    label="six-line mean" if data.has_truth
                    else "laser steering (ion vs cavity)")
    det = arrays.get("detrended")
    if det is not None and len(det["tau"]):
        ax.loglog(det["tau"], det["sigma"], "s--", color="tab:blue", ms=3, lw=1.0,
                  label="same, linear drift removed")
    ax.loglog(grid, q, "-", color="tab:red", lw=1.5,
              label=f"QPN limit $\\sigma_0(\\tau) = {_latex_sci(summary['qpn_sigma_1s'])}"
                    f"/\\sqrt{{\\tau/\\mathrm{{s}}}}$")
    if arrays["lines"]:
        ax.loglog(grid, q * math.sqrt(6), "--", color="tab:red", lw=1.0,
                  label="single-line QPN $\\sqrt{6}\\,\\sigma_0$")
    ax.set_xlabel("averaging time $\\tau$ (s)")
    ax.set_ylabel("Allan deviation $\\sigma_y(\\tau)$ (fractional)")
    against = ("lock error against the ion (twin truth)" if data.has_truth
               else "laser steering: the ion against the cavity")
    ax.set_title(f"Overlapping Allan deviation, {against}\n"
                 f"{_title_suffix(data)}: {summary['frames_used']:,} locked frames, "
                 f"tau0 = {summary['tau0_s'] or float('nan'):.3f} s, "
                 f"settle {summary['settle_s'] / 60:g} min, uptime {summary['uptime']:.1%}",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_frequency(data: RunData, summary: dict, arrays: dict, path: Path) -> None:
    """Plot the frequency record (laser steering and, for the twin, the true lock error)."""
    import matplotlib.pyplot as plt

    truth = data.has_truth
    fig, axes = plt.subplots(2 if truth else 1, 1, figsize=(10, 7 if truth else 4.5),
                             sharex=True, layout="constrained", squeeze=False)
    ax = axes[0, 0]
    x, y = _thin(_hours(data, data.t), data.nu_hz)
    ax.plot(x, y, lw=0.8, color="tab:blue", label="laser steering nu_hz")
    ax.set_ylabel("laser offset from $\\nu_0$ (Hz)")
    ax.set_title(f"Frequency record, {_title_suffix(data)}", fontsize=10)
    _mark_events(ax, data, with_labels=True)
    _mark_settling(ax, data, summary["settle_s"], with_label=True)
    for i, ts in enumerate(arrays["slips"]):
        ax.axvline(_hours(data, ts), color="tab:red", lw=1.2, ls=":",
                   label="fringe slip (found)" if i == 0 else None)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    if truth:
        ax2 = axes[1, 0]
        x, y = _thin(_hours(data, data.t), data.detuning_hz * 1e3)
        ax2.plot(x, y, lw=0.6, color="tab:green", label="true lock error (frame mean)")
        if summary["bias"] is not None:
            ax2.axhline(summary["bias"] * data.nu0_hz * 1e3, color="black", lw=1,
                        label=f"bias {summary['bias']:+.2e} "
                              f"+- {summary['bias_sigma'] or float('nan'):.1e} (fractional)")
        ax2.set_ylabel("laser - true line mean (mHz)")
        _mark_events(ax2, data, with_labels=False)
        _mark_settling(ax2, data, summary["settle_s"], with_label=False)
        ax2.legend(fontsize=8, loc="best")
        ax2.grid(alpha=0.3)
        lim = np.nanpercentile(np.abs(data.detuning_hz[analysis_mask(data, summary[
            "settle_s"])] * 1e3), 99.9) if analysis_mask(data, summary["settle_s"]).any() \
            else None
        if lim and np.isfinite(lim):
            ax2.set_ylim(-1.5 * lim, 1.5 * lim)
    axes[-1, 0].set_xlabel("time since servo start (h)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_offsets(data: RunData, summary: dict, arrays: dict, path: Path) -> None:
    """Per-line offsets o0..o5 (each about its mean), and their quadrupole/tensor residual."""
    import matplotlib.pyplot as plt

    truth = data.d_hz is not None and data.has_truth
    n = 3 if truth else 2
    fig, axes = plt.subplots(n, 1, figsize=(10, 3.0 * n + 1), sharex=True,
                             layout="constrained")
    colors = plt.get_cmap("tab10").colors
    h = _hours(data, data.t)
    good = arrays["mask"] if arrays["mask"].any() else np.ones(len(h), bool)
    resid = data.offsets_hz - _Z[None, :] * data.b_t[:, None]
    for k in range(6):
        o = data.offsets_hz[:, k]
        if not np.isfinite(o[good]).any():   # a run without per-line offsets (Cd+, 1300)
            continue
        mean = np.nanmean(o[good])
        x, y = _thin(h, o - mean)
        axes[0].plot(x, y, lw=0.7, color=colors[k % 10],
                     label=f"o{k} (mean {mean / 1e3:+.3f} kHz)")
        x, y = _thin(h, resid[:, k])
        axes[1].plot(x, y, lw=0.7, color=colors[k % 10], label=f"line {k}")
        if truth:
            x, y = _thin(h, data.d_hz[:, k] * 1e3)
            axes[2].plot(x, y, lw=0.5, color=colors[k % 10], alpha=0.8, label=f"d{k}")
    axes[0].set_ylabel("offset - mean (Hz)")
    axes[0].set_title(f"Per-line offsets from the common frequency, {_title_suffix(data)}",
                      fontsize=10)
    axes[1].set_ylabel("o$_k$ - z$_k$ B (Hz)")
    axes[1].set_title("Residual after the first-order Zeeman pattern "
                      "(quadrupole / tensor structure)", fontsize=9)
    if truth:
        axes[2].set_ylabel("true line detuning (mHz)")
        axes[2].set_title("Per-line lock error against the true line centres (twin)",
                          fontsize=9)
    for t in arrays["slips"]:
        for ax in axes:
            ax.axvline(_hours(data, t), color="tab:red", lw=1, ls=":")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:   # none in a run without per-line offsets
            ax.legend(fontsize=7, ncol=3, loc="best")
        else:
            ax.text(0.5, 0.5, "no per-line offsets in this run", transform=ax.transAxes,
                    ha="center", va="center")
    axes[-1].set_xlabel("time since servo start (h)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bfield(data: RunData, summary: dict, path: Path) -> None:
    """B from the splittings (and the truth), and their difference in pT."""
    import matplotlib.pyplot as plt

    truth = data.b_true_t is not None and np.isfinite(data.b_true_t).any()
    fig, axes = plt.subplots(2 if truth else 1, 1, figsize=(10, 7 if truth else 4.5),
                             sharex=True, layout="constrained", squeeze=False)
    h = _hours(data, data.t)
    ax = axes[0, 0]
    x, y = _thin(h, data.b_t * 1e6)
    ax.plot(x, y, lw=1.0, color="tab:blue", label="B from the splittings")
    if truth:
        x, y = _thin(h, data.b_true_t * 1e6)
        ax.plot(x, y, lw=1.0, ls="--", color="tab:orange", label="true B (twin)")
    ax.set_ylabel("B ($\\mu$T)")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title(f"Quantisation field, {_title_suffix(data)}", fontsize=10)
    _mark_events(ax, data, with_labels=False)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if truth:
        ax2 = axes[1, 0]
        x, y = _thin(h, (data.b_t - data.b_true_t) * 1e12)
        ax2.plot(x, y, lw=0.6, color="tab:purple", label="B - B$_{true}$")
        if summary["b_error_t"] is not None:
            ax2.axhline(summary["b_error_t"] * 1e12, color="black", lw=1,
                        label=f"mean {summary['b_error_t'] * 1e12:+.2f} pT (locked, "
                              f"after settling)")
        mask = analysis_mask(data, summary["settle_s"])
        if mask.any():
            lim = np.nanpercentile(np.abs(data.b_t - data.b_true_t)[mask] * 1e12, 99.9)
            if np.isfinite(lim) and lim > 0:
                ax2.set_ylim(-1.5 * lim, 1.5 * lim)
        ax2.set_ylabel("difference (pT)")
        _mark_events(ax2, data, with_labels=False)
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time since servo start (h)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


FIGURES = ("adev.png", "frequency.png", "offsets.png", "bfield.png")


def output_folder(store: Path, out: str | Path | None) -> Path:
    """The report's folder (default ``<run folder>/report``), made here.

    One line (`UserError`) when it cannot be. Its parent must exist (a typo is not silently
    turned into a tree of folders).
    """
    folder = Path(out) if out is not None else store.parent / "report"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"report: --out: {str(folder)!r} exists and is not a folder")
    if not folder.parent.is_dir():
        raise UserError(f"report: --out: parent folder {str(folder.parent)!r} does not exist")
    try:
        folder.mkdir(exist_ok=True)
    except OSError as err:
        raise UserError(f"report: --out: cannot create {str(folder)!r}: "
                        f"{err.strerror or err}") from None
    return folder


def make_report(path: str | Path, out_dir: str | Path | None = None,
                settle_s: float = DEFAULT_SETTLE_S, taus: str = "octave",
                stage: Callable[[str], None] | None = None) -> dict:
    """Evaluate one run: write the PNGs and summary.json into `out_dir`; return the summary.

    `out_dir` defaults to ``<run folder>/report``. `stage`, if given, is told each step as it
    starts (the command line's stage lines: a 10-day run takes minutes).
    """
    import matplotlib

    matplotlib.use("Agg")
    stage = stage or (lambda text: None)
    if settle_s < 0:
        raise UserError("report: --settle must not be negative")
    store = resolve_store(path)
    out = output_folder(store, out_dir)
    stage(f"reading {store} ({store.stat().st_size / 1e6:.0f} MB)")
    data = load_run(store)
    stage(f"ADEV, bias, slips and wrong-lock frames of {len(data.t):,} frames")
    summary, arrays = summarise(data, settle_s, taus)
    for name, draw in zip(FIGURES, (plot_adev, plot_frequency, plot_offsets)):
        stage(f"figure {out / name}")
        draw(data, summary, arrays, out / name)
    stage(f"figure {out / FIGURES[3]}")
    plot_bfield(data, summary, out / FIGURES[3])
    summary["files"] = [str(out / f) for f in (*FIGURES, "summary.json")]
    (out / "summary.json").write_text(to_json(summary) + "\n")
    return summary


def _format_silent(s: dict) -> str:
    """The silent wrong-lock line of the printed report."""
    w = s.get("silent_wrong_lock") or {}
    if s.get("silent_wrong_lock_frames") is None:
        return "  silent wrong    n/a (lab run: no truth)"
    text = (f"  silent wrong    {s['silent_wrong_lock_frames']} locked frames "
            f"({s['silent_wrong_lock_frames_after_settling']} after settling {s['settling_s']:g} "
            f"s from the first lock")
    if w.get("disturbances"):
        text += (f" and {w['event_settling_s']:g} s from each of {w['disturbances']} twin "
                 f"disturbance(s), {w['frames_in_event_settling']} within those")
    return text + (f") with a line > {w.get('quarter_fringe_hz', math.nan):.3f} "
                   f"Hz off ({w.get('persist_frames')}+ frames in a row) or stray light")


def format_summary(s: dict) -> str:
    """Human-readable evaluation."""
    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)
    lines = [
        f"lock report, reference: {s['reference']}",
        f"  frames          {s['frames']:,} ({s['frames_used']:,} used; settle "
        f"{s['settle_s']:g} s), span {s['span_s'] / 3600:.2f} h, uptime {s['uptime']:.4f}",
        f"  QPN sigma0(1s)  {s['qpn_sigma_1s']:.3e}" + (
            "" if s.get("probe_duty_cycle") is None else
            f" (clock-probe duty cycle {s['probe_duty_cycle']:.4f}: ion checks and fringe "
            "verification excluded)"),
    ]
    for tau, r in s["adev_over_qpn"].items():
        lines.append(f"  ADEV/QPN @{tau:>5} s {r:.2f}")
    lines += [
        f"  bias            {fmt(s['bias'], '+.2e')} +- {fmt(s['bias_sigma'], '.1e')}",
        f"  B error         {fmt(s['b_error_t'] and s['b_error_t'] * 1e12, '+.2f')} pT",
        f"  slips           {s['slips']} ({s['slips_corrected']} corrected by the servo)",
        _format_silent(s),
        "  events          " + (", ".join(f"{k} {v}" for k, v in s["events"].items()) or "-"),
    ]
    lines += [f"  note            {n}" for n in s["notes"]]
    lines += [f"  wrote           {f}" for f in s.get("files", [])]
    return "\n".join(lines)
