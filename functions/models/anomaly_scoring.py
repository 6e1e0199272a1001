"""The anomaly model's statistic, calibration and alarms, and scoring rows with a fitted bundle
(see ``anomaly``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base
from stratx.functions.models.anomaly_rows import (
    ALARM_BUDGET_PER_HOUR,
    COMPOUNDS,
    KEYS,
    LAP_CONTEXT,
    LAP_SIGNALS,
    MIN_LAP_SIGNALS,
    RUN_CLIP,
    RUN_GAP_S,
    RUN_WINDOWS,
    _level,
    _matrix,
    _target,
    direction,
    signals,
)
from stratx.functions.models.boosters import booster_predict


# ------------------------------------------------------------------ statistic, calibration, alarms
def deficits(boosters: dict[str, Any], meta: dict[str, Any], rows: pd.DataFrame) -> pd.DataFrame:
    """Per signal, the signed standardized residual ``d_s`` (fault direction positive)."""
    level = _level(rows)
    if level == "lap":
        return _lap_deficits(boosters, meta, rows)
    out: dict[str, np.ndarray] = {}
    for s in signals(level):
        booster = boosters[f"{level}_{s}"]
        expected = booster_predict(booster, _matrix(rows, s), num_iteration=booster.best_iteration or None)
        resid = _target(rows, s).to_numpy() - expected
        out[s] = direction(s) * resid / meta["scales"][f"{level}_{s}"]
    return pd.DataFrame(out, index=rows.index, columns=list(signals(level)))


def _lap_deficits(boosters: dict[str, Any], meta: dict[str, Any], rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`deficits` of lap rows from one conversion of the rows: each signal's booster scores
    ``Ref``, ``FieldDelta`` and the signal-independent columns (``boosters.matrix`` of
    :func:`lap_context`, built once per category list), as :func:`lap_array` puts them."""
    if rows.shape[0] == 0:
        raise ValueError("Input data must be 2 dimensional and non empty.")
    names = [c for s in LAP_SIGNALS for c in (s, f"Ref_{s}", f"Field_{s}")]
    values = dict(zip(names, base.floats(rows, names).T, strict=True))
    context: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for s in LAP_SIGNALS:
        booster = boosters[f"lap_{s}"]
        key = repr(booster.pandas_categorical)
        if key not in context:
            context[key] = base.lap_array(
                rows,
                (*LAP_CONTEXT, "Compound"),
                (),
                np.zeros(len(rows)),
                COMPOUNDS,
                booster.pandas_categorical,
            )
        ref = values[f"Ref_{s}"]
        x = np.column_stack([ref, values[f"Field_{s}"] - ref, context[key]])
        expected = booster.predict(x, num_iteration=booster.best_iteration or None)
        out[s] = direction(s) * ((values[s] - ref) - expected) / meta["scales"][f"lap_{s}"]
    return pd.DataFrame(np.column_stack(list(out.values())), index=rows.index, columns=list(LAP_SIGNALS))


def run_deficits(d: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per signal, the mean deficit over the last :data:`RUN_WINDOWS` contiguous windows of the
    driver, each clipped to +-:data:`RUN_CLIP` (NaN until that many): one odd window adds at most
    RUN_CLIP / RUN_WINDOWS, a fault that persists keeps the mean high. ``rows`` in
    :func:`window_rows` order (driver, WindowStart), as a stream delivers them."""
    driver = rows.groupby(KEYS, sort=False).ngroup().to_numpy()
    start, end = rows["WindowStart"].to_numpy(dtype=float), rows["WindowEnd"].to_numpy(dtype=float)
    follows = np.r_[False, (driver[1:] == driver[:-1]) & (start[1:] == end[:-1])]
    segment = np.cumsum(~follows)
    values = np.clip(d.to_numpy(dtype=float), -RUN_CLIP, RUN_CLIP)
    run = values.copy()
    for k in range(1, RUN_WINDOWS):
        run[k:] += values[:-k]
    back = RUN_WINDOWS - 1
    whole = np.r_[np.zeros(back, dtype=bool), segment[back:] == segment[:-back]]
    run[~whole] = np.nan
    return pd.DataFrame(run / RUN_WINDOWS, index=d.index, columns=d.columns)


def statistic(
    d: pd.DataFrame, rows: pd.DataFrame | None = None, meta: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The anomaly statistic ``S`` per row and the name of the signal that drives it. Laps: the
    median deficit (>= :data:`MIN_LAP_SIGNALS` present). Windows (``rows`` and ``meta`` given): the largest run deficit
    (:func:`run_deficits`) over its calibration quantile ``meta["run_scales"][s]``."""
    if "LapTime" in d.columns:
        values = d.to_numpy(dtype=float)
        present = np.count_nonzero(~np.isnan(values), axis=1)
        stat = np.where(present >= MIN_LAP_SIGNALS, row_medians(values, present), np.nan)
    else:
        if rows is None:
            raise ValueError("window statistics need the window rows (runs of contiguous windows)")
        d = run_deficits(d, rows)
        if meta is not None and "run_scales" in meta:
            d = d / pd.Series(meta["run_scales"])[d.columns]
        stat = d.max(axis=1).to_numpy()
    values = d.to_numpy(dtype=float)
    filled = np.where(np.isnan(values), -np.inf, values)
    names = np.asarray(d.columns, dtype=object)
    if filled.shape[1] == 0:
        return stat, np.full(len(d), "", dtype=object)
    top = np.where(filled.max(axis=1) > -np.inf, names[filled.argmax(axis=1)], "")
    return stat, top


def row_medians(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``np.nanmedian(values, axis=1)`` where a row has ``present`` >= 1 values (garbage elsewhere),
    the way NumPy takes it, (low + high) / 2 of the sorted values (x + x halves back to x), without
    its masked-array path (~0.2 ms on a one-row request)."""
    ordered = np.sort(values, axis=1)  # NaN last
    high = present // 2
    low = np.where(present % 2 == 1, high, high - 1)
    rows = np.arange(len(values))
    return (ordered[rows, low] + ordered[rows, high]) / 2.0


def calibration_table(stat: np.ndarray, points: int = 2000, tail: int = 200) -> dict[str, Any]:
    """Sorted calibration statistics, thinned to ``points`` quantiles plus the ``tail`` largest."""
    s = np.sort(stat[np.isfinite(stat)])
    grid = np.quantile(s, np.linspace(0, 1, points))
    values = np.unique(np.concatenate([grid, s[-tail:]]))
    exceed = 1 - np.searchsorted(s, values, side="left") / len(s)
    top = s[-max(2, len(s) // 100) :]
    return {
        "values": values.tolist(),
        "exceed": exceed.tolist(),
        "n": len(s),
        "tau": float(np.std(top) or 1.0),
    }


def calibrated(stat: np.ndarray, table: dict[str, Any]) -> np.ndarray:
    """``1 - exceed(S)``: interpolated inside the calibration range, exponential tail above it."""
    values, exceed = np.asarray(table["values"]), np.asarray(table["exceed"])
    e = np.interp(stat, values, exceed)
    above = stat > values[-1]
    e = np.where(above, 0.5 / table["n"] * np.exp(-(stat - values[-1]) / table["tau"]), e)
    return np.where(np.isfinite(stat), 1 - e, np.nan)


def alarm_runs(rows: pd.DataFrame, flag: np.ndarray) -> int:
    """Alarms: runs of flagged in-scope rows per driver (consecutive laps / windows <= 30 s apart)."""
    hit = rows.loc[np.asarray(flag, dtype=bool) & rows["InScope"].to_numpy(dtype=bool)]
    if hit.empty:
        return 0
    t, gap = ("WindowStart", RUN_GAP_S) if _level(rows) == "window" else ("LapNumber", 1)
    hit = hit.sort_values([*KEYS, t])
    new = (hit[t].diff() > gap) | (hit[KEYS].shift() != hit[KEYS]).any(axis=1)
    return int(new.sum())


def race_hours(laps: pd.DataFrame) -> float:
    """Race-hours: per race, the first lap's start to the last lap's end, summed."""
    spans = laps.groupby(["Year", "EventName"]).agg(a=("LapStartTime", "min"), b=("Time", "max"))
    return float(((spans.b - spans.a) / 3600.0).clip(lower=0).sum())


def choose_threshold(rows: pd.DataFrame, score: np.ndarray, hours: float) -> float:
    """The lowest score threshold whose in-scope alarms stay <= the level's per-hour budget."""
    scope = rows["InScope"].to_numpy(dtype=bool) & np.isfinite(score)
    candidates = np.unique(score[scope])[::-1][:400]
    best = 1.0
    for t in candidates:
        if alarm_runs(rows, score >= t) > ALARM_BUDGET_PER_HOUR[_level(rows)] * hours:
            break
        best = float(t)
    return best


def score_rows(
    boosters: dict[str, Any], meta: dict[str, Any], rows: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """AnomalyScore and AnomalySignal of lap or window rows (one level's meta)."""
    stat, top = statistic(deficits(boosters, meta, rows), rows, meta)
    return calibrated(stat, meta["calibration"]), top


def predict(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """``AnomalyScore`` (0..1), ``AnomalyFlag`` and ``AnomalySignal`` for rows built by
    :func:`lap_rows` or :func:`window_rows` (the context needs the driver's previous laps/windows).
    ``AnomalyFlag`` is never set on a row out of scope (lap 1, in/out lap, SC/VSC/red flag, not a
    clean green lap): the threshold is calibrated on in-scope rows only."""
    meta = bundle.meta[_level(rows)]
    score, top = score_rows(bundle.boosters, meta, rows)
    scope = rows["InScope"].to_numpy(dtype=bool) if "InScope" in rows.columns else True
    return pd.DataFrame(
        {"AnomalyScore": score, "AnomalyFlag": (score >= meta["threshold"]) & scope, "AnomalySignal": top},
        index=rows.index,
    )
