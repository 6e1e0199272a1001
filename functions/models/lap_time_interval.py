"""The lap-time model's 80 % interval on the next lap: normalised split-conformal bands.

The point prediction says where the next lap should fall; a strategist also needs how sure that
is: a driver on a steady stint is predictable to a few tenths, one whose last laps were scattered
(traffic, a mistake, a tyre going off) is not. The band is causal, read from lap N only:

* **Scale** of a row: the spread of the driver's last three clean laps (``Last3Std``), clipped to
  :data:`SCALE_CLIP` s (no clean laps yet: 1 s).
* **Groups** (Mondrian): this lap clean or not (an out-lap, lap 1 or a neutralised lap predicts
  the next lap worse than a clean one does).
* **Calibration**, on the validation races only (never the test races): per group, the 10th and
  90th percentiles of ``(next lap - prediction) / scale`` over the rows whose next lap is a green
  clean lap. The band is ``prediction + q10 * scale .. prediction + q90 * scale``: an 80 % band
  for the next lap *if it is raced* (no stop, no safety car: those laps are not predictable from
  lap N, and a band wide enough for them would say nothing about the others). A group with fewer
  than :data:`MIN_ROWS` calibration rows takes the pooled quantiles.

Scored by :func:`interval_metrics` on every row set of the evaluation (coverage, median width):
target coverage :data:`BAND_TARGET` on the both-clean rows of races the model never saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SCALE = "Last3Std"
SCALE_CLIP = (0.2, 3.0)  # s
NO_SCALE = 1.0  # s, when the driver has no clean laps yet
COVERAGE = 0.8
BAND_TARGET = (0.75, 0.85)
MIN_ROWS = 50
GROUPS = ("clean", "other")
LOWER, UPPER = "NextLapTimeP10", "NextLapTimeP90"


def scale(frame: pd.DataFrame) -> np.ndarray:
    s = (
        frame[SCALE].to_numpy(dtype=float, na_value=np.nan)
        if SCALE in frame.columns
        else np.full(len(frame), np.nan)
    )
    return np.clip(np.where(np.isfinite(s), s, NO_SCALE), *SCALE_CLIP)


def group(frame: pd.DataFrame) -> np.ndarray:
    """Per row, the index in :data:`GROUPS` (0: this lap is clean; unknown counts as not clean)."""
    clean = frame["IsClean"].eq(True).to_numpy() if "IsClean" in frame.columns else np.zeros(len(frame), bool)
    return np.where(clean, 0, 1)


def calibrate(
    frame: pd.DataFrame, predicted: np.ndarray, actual: np.ndarray, rows: np.ndarray
) -> dict[str, Any]:
    """The band table (kept in the bundle's meta) from the calibration ``rows`` of ``frame``."""
    z = (np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)) / scale(frame)
    ok = np.asarray(rows, dtype=bool) & np.isfinite(z)
    tail = (1 - COVERAGE) / 2
    if not ok.any():
        raise ValueError("no calibration rows for the lap-time interval")
    pooled = [float(q) for q in np.quantile(z[ok], [tail, 1 - tail])]
    g = group(frame)
    quantiles, counts = {}, {}
    for i, name in enumerate(GROUPS):
        m = ok & (g == i)
        counts[name] = int(m.sum())
        quantiles[name] = (
            [float(q) for q in np.quantile(z[m], [tail, 1 - tail])] if m.sum() >= MIN_ROWS else pooled
        )
    return {
        "scale": SCALE,
        "clip": list(SCALE_CLIP),
        "coverage": COVERAGE,
        "quantiles": quantiles,
        "rows": counts,
    }


def bands(
    frame: pd.DataFrame, predicted: np.ndarray, table: dict[str, Any] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) next-lap times per row; NaN without a table (a bundle trained before it)."""
    p = np.asarray(predicted, dtype=float)
    if not table:
        return np.full(len(p), np.nan), np.full(len(p), np.nan)
    q = np.array([table["quantiles"][name] for name in GROUPS])[group(frame)]
    s = scale(frame)
    return p + q[:, 0] * s, p + q[:, 1] * s


def interval_metrics(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, row_sets: dict[str, pd.Series]
) -> dict[str, float]:
    """``interval80_{laps}_coverage`` (share of the next laps inside the band) and
    ``interval80_{laps}_width`` (median width, s) per row set."""
    y = np.asarray(actual, dtype=float)
    inside = (y >= lower) & (y <= upper)
    out: dict[str, float] = {}
    for laps, mask in row_sets.items():
        m = mask.to_numpy() & np.isfinite(lower) & np.isfinite(y)
        out[f"interval80_{laps}_coverage"] = float(inside[m].mean()) if m.any() else float("nan")
        out[f"interval80_{laps}_width"] = float(np.median((upper - lower)[m])) if m.any() else float("nan")
    return out
