"""SYNTHETIC faults for the anomaly model's evaluation: episodes injected into real rows, always
marked ``Synthetic=True`` (see ``anomaly``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stratx.functions.models.anomaly_rows import (
    FAULT_KINDS,
    FAULT_LAPS,
    FAULT_WINDOWS,
    KEYS,
    LAP_REF_LAPS,
    LAP_SIGNALS,
    SPEED_TRAPS,
    WINDOW_REF_WINDOWS,
    _level,
    rolling_median,
    window_context,
)


# ------------------------------------------------------------------ SYNTHETIC faults
def inject_faults(
    frame: pd.DataFrame, kind: str, rng: np.random.Generator, share: float | None = None
) -> pd.DataFrame:
    """SYNTHETIC: a copy of lap or window rows (one driver's rows in order, as :func:`lap_rows` /
    :func:`window_rows` sort them) with fault *episodes* of ``kind``. Onsets: a random ``share``
    (laps 5 %, windows 1 %) of the eligible in-scope rows, at most one episode per driver within
    twice the reference span; each fault then persists over the driver's next rows
    (:data:`FAULT_LAPS` laps / :data:`FAULT_WINDOWS` contiguous windows) with one magnitude:

    * power_loss: laps: speed traps x (1 - f), LapTime x (1 + 0.15 f); windows: speeds and RPM
      x (1 - f) (same gear, so consistent), f ~ U(3 %, 8 %).
    * rpm_drop (windows): RPMMean, RPMMax, UpshiftRPMMean x (1 - f), f ~ U(8 %, 15 %).
    * gear_stuck (onset window MaxGear >= 7): MaxGear capped at g ~ {4, 5, 6}; the capped
      windows get GearChanges 0, UpshiftRPMMean NaN; speeds and RPM left as measured.
    * throttle_glitch (onset ThrottleMean > 50): ThrottleMean and FullThrottleShare x U(0.3, 0.6).
    * brake_glitch (onset BrakeShare < 0.2): BrakeShare + U(0.3, 0.6) (<= 1), BrakeEvents + 1 at onset.

    The references are then recomputed from the faulty values (windows: :func:`window_context`;
    laps: the driver's trap references and Last3Median move by what the faulty laps change), so
    every row sees what a stream would: the healthy past at the onset, the fault afterwards.
    Adds ``Synthetic`` (True on every row of an episode), ``FaultKind`` and ``FaultEpisode``
    (onset row position, -1 elsewhere). Kinds that do not apply to the level change nothing.
    """
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
    window = _level(frame) == "window"
    out = frame.copy()
    out["Synthetic"], out["FaultKind"], out["FaultEpisode"] = False, None, -1
    touched = ("SpeedMean", "SpeedMin", "SpeedMax", "SpeedStd", "RPMMean", "RPMMax", "UpshiftRPMMean",
               "ThrottleMean", "FullThrottleShare", "BrakeShare", *LAP_SIGNALS)  # fmt: skip
    for c in [c for c in touched if c in out.columns]:
        out[c] = out[c].astype(float)
    if not window and kind != "power_loss":
        return out
    ok = frame["InScope"].to_numpy(dtype=bool, copy=True)
    if window and kind == "gear_stuck":
        ok &= frame["MaxGear"].to_numpy() >= 7
    elif window and kind == "throttle_glitch":
        ok &= frame["ThrottleMean"].to_numpy() > 50
    elif window and kind == "brake_glitch":
        ok &= frame["BrakeShare"].to_numpy() < 0.2
    for onset, rows in _episodes(frame, ok, rng, share if share is not None else (0.01 if window else 0.05)):
        idx = out.index[rows]
        _apply_fault(out, idx, kind, window, rng)
        out.loc[idx, "Synthetic"], out.loc[idx, "FaultKind"], out.loc[idx, "FaultEpisode"] = True, kind, onset
    return window_context(out) if window else _moved_lap_refs(frame, out)


def _episodes(
    frame: pd.DataFrame, ok: np.ndarray, rng: np.random.Generator, share: float
) -> list[tuple[int, np.ndarray]]:
    """(onset position, row positions) of non-overlapping SYNTHETIC fault episodes."""
    window = _level(frame) == "window"
    eligible = np.flatnonzero(ok)
    if not len(eligible):
        return []
    onsets = np.sort(rng.choice(eligible, size=max(1, round(share * len(eligible))), replace=False))
    low, high = FAULT_WINDOWS if window else FAULT_LAPS
    spacing = 2 * (WINDOW_REF_WINDOWS if window else LAP_REF_LAPS)
    driver = frame.groupby(KEYS, sort=False).ngroup().to_numpy()
    if window:  # a window continues its predecessor: same driver, no gap
        start, end = frame["WindowStart"].to_numpy(), frame["WindowEnd"].to_numpy()
        follows = np.r_[False, (driver[1:] == driver[:-1]) & (start[1:] == end[:-1])]
    else:
        lap = frame["LapNumber"].to_numpy()
        follows = np.r_[False, (driver[1:] == driver[:-1]) & (lap[1:] == lap[:-1] + 1)]
    out: list[tuple[int, np.ndarray]] = []
    last_end = -(10**9)
    for onset in onsets:
        if onset - last_end < spacing and driver[onset] == driver[max(last_end, 0)]:
            continue
        length, stop = int(rng.integers(low, high + 1)), onset + 1
        while stop < len(frame) and stop - onset < length and follows[stop]:
            stop += 1
        out.append((int(onset), np.arange(onset, stop)))
        last_end = stop - 1
    return out


def _apply_fault(out: pd.DataFrame, idx: pd.Index, kind: str, window: bool, rng: np.random.Generator) -> None:
    """One SYNTHETIC episode of ``kind`` on the rows ``idx`` of ``out`` (in place, one magnitude)."""

    def scale(cols: tuple[str, ...], factor: float) -> None:
        for c in cols:
            out.loc[idx, c] = out.loc[idx, c] * factor

    if kind == "power_loss":
        f = float(rng.uniform(0.03, 0.08))
        if window:
            scale(("SpeedMean", "SpeedMin", "SpeedMax", "SpeedStd", "RPMMean", "RPMMax"), 1 - f)
        else:
            scale(SPEED_TRAPS, 1 - f)
            scale(("LapTime",), 1 + 0.15 * f)
    elif kind == "rpm_drop":
        scale(("RPMMean", "RPMMax", "UpshiftRPMMean"), 1 - float(rng.uniform(0.08, 0.15)))
    elif kind == "gear_stuck":
        cap = int(rng.integers(4, 7))
        capped = idx[out.loc[idx, "MaxGear"].to_numpy() > cap]
        out.loc[capped, "MaxGear"], out.loc[capped, "GearChanges"] = cap, 0
        out.loc[capped, "UpshiftRPMMean"] = np.nan
    elif kind == "throttle_glitch":
        scale(("ThrottleMean", "FullThrottleShare"), float(rng.uniform(0.3, 0.6)))
    else:
        out.loc[idx, "BrakeShare"] = np.minimum(
            1.0, out.loc[idx, "BrakeShare"] + float(rng.uniform(0.3, 0.6))
        )
        out.loc[idx[:1], "BrakeEvents"] = out.loc[idx[:1], "BrakeEvents"] + 1


def _moved_lap_refs(clean: pd.DataFrame, faulty: pd.DataFrame) -> pd.DataFrame:
    """Lap references of ``faulty`` moved by what its SYNTHETIC laps change: the trap ``Ref_s``
    (median of the previous 5 in-scope laps) and Last3Median (last 3 clean laps, this one
    included, as LapFeatures define it). Field_s is left as built (one car barely moves it)."""
    keys = [clean[k] for k in KEYS]

    def rolled(values: pd.Series, n: int, shift: int) -> pd.Series:
        kept = values.astype(float).where(clean["InScope"])
        return rolling_median(kept, keys, n, 1, shift)

    for s in SPEED_TRAPS:
        faulty[f"Ref_{s}"] = (
            clean[f"Ref_{s}"] + rolled(faulty[s], LAP_REF_LAPS, 1) - rolled(clean[s], LAP_REF_LAPS, 1)
        )
    moved = rolled(faulty["LapTime"], 3, 0) - rolled(clean["LapTime"], 3, 0)
    faulty["Ref_LapTime"] = clean["Ref_LapTime"] + moved.fillna(0.0)
    return faulty
