"""The pit-window model's undercut pairs, features, scores and metrics (definitions in
``pit_window``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base
from stratx.functions.models.boosters import booster_predict
from stratx.functions.models.pit_window_labels import (
    DRIVER,
    IN_LAP,
    RACE,
    UNDERCUT_FEATURES,
    UNDERCUT_GAP,
    UNDERCUT_LAPS,
    _status_has,
)


# ------------------------------------------------------------------ undercut
def undercut_features(attacker: pd.DataFrame, ahead: pd.DataFrame) -> pd.DataFrame:
    """:data:`UNDERCUT_FEATURES` from the attacker's rows and the car-ahead's rows of the same lap
    (aligned by position; both with derived columns)."""
    a, b = ahead.reset_index(drop=True), attacker.reset_index(drop=True)
    return pd.DataFrame(
        {
            "Gap": b["IntervalAhead"].astype(float),
            "TyreLife": b["TyreLife"].astype(float),
            "TyreLifeAhead": a["TyreLife"].astype(float),
            "TyreLifeDiff": a["TyreLife"].astype(float) - b["TyreLife"].astype(float),
            "StintDegSlope": b["StintDegSlope"].astype(float),
            "StintDegSlopeAhead": a["StintDegSlope"].astype(float),
            "PaceDelta": b["Last3Median"].astype(float) - a["Last3Median"].astype(float),
            "PitLossSeconds": b["PitLossSeconds"].astype(float),
            "LapsRemaining": b["LapsRemaining"].astype(float),
        }
    ).set_axis(attacker.index)


def car_ahead(frame: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """Per row, the row of the car that crossed the line just before it on the same lap (NaN rows
    when none); ``keys`` identify the race (e.g. Year+EventName or SessionKey)."""
    cols = [*keys, "LapNumber", "PositionOnLap"]
    target = frame[cols].assign(PositionOnLap=frame["PositionOnLap"] - 1)
    indexed = frame.drop_duplicates(cols).set_index(cols)
    return indexed.reindex(pd.MultiIndex.from_frame(target)).reset_index().set_axis(frame.index)


def undercut_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Undercut attempts (module doc) with :data:`UNDERCUT_FEATURES`, ``Success`` and race keys.
    ``frame``: :func:`pit_labels` rows with derived columns."""
    f = frame.reset_index(drop=True)
    green = _status_has(f["TrackStatus"], "4567").fillna(0.0) == 0
    stop_set = set(map(tuple, f.loc[f[IN_LAP], [*DRIVER, "LapNumber"]].itertuples(index=False)))
    green_stop = set(map(tuple, f.loc[f[IN_LAP] & green, [*DRIVER, "LapNumber"]].itertuples(index=False)))
    row_of = {k: i for i, k in enumerate(f[[*DRIVER, "LapNumber"]].itertuples(index=False, name=None))}
    time = f["SessionTime"].to_numpy(dtype=float)
    interval = f["IntervalAhead"].to_numpy(dtype=float)
    ahead = car_ahead(f, RACE)
    rows: list[dict[str, Any]] = []
    keep: list[int] = []
    for year, event, drv, lap in f.loc[f[IN_LAP] & green, [*DRIVER, "LapNumber"]].itertuples(
        index=False, name=None
    ):
        j = row_of.get((year, event, drv, lap - 1))
        if j is None:
            continue
        gap = interval[j]
        if not 0.0 < gap <= UNDERCUT_GAP:  # NaN fails too
            continue
        a = ahead.loc[j]
        if pd.isna(a["DriverNumber"]):
            continue
        a_drv = a["DriverNumber"]
        later = [n for n in range(lap, lap + UNDERCUT_LAPS + 1) if (year, event, a_drv, n) in stop_set]
        if not later or later[0] == lap or (year, event, a_drv, later[0]) not in green_stop:
            continue
        a_in = later[0]
        if any((year, event, drv, n) in stop_set for n in range(lap + 1, a_in + 2)):
            continue
        b_out, a_out = row_of.get((year, event, drv, a_in + 1)), row_of.get((year, event, a_drv, a_in + 1))
        if b_out is None or a_out is None:
            continue
        success = bool(time[b_out] < time[a_out])
        rows.append({"Year": year, "EventName": event, "DriverNumber": drv, "AheadNumber": a_drv,
                     "StopLap": lap, "AheadStopLap": a_in, "Success": success})  # fmt: skip
        keep.append(j)
    if not rows:
        return pd.DataFrame(columns=[*RACE, "DriverNumber", "Success", *UNDERCUT_FEATURES])
    feats = undercut_features(f.loc[keep], ahead.loc[keep]).reset_index(drop=True)
    return pd.DataFrame(rows).join(feats)


def ahead_positions(frame: pd.DataFrame, keys: tuple[str, ...]) -> np.ndarray:
    """Per row, the position (``iloc``) of the car that crossed the line just before it on the same
    lap (:func:`car_ahead`'s row: the first with that race, lap and PositionOnLap - 1), -1 when
    there is none or the row's position is unknown. Plain Python over the rows: the service's
    requests carry two, where the MultiIndex reindex of :func:`car_ahead` cost milliseconds."""
    cols = [*keys, "LapNumber", "PositionOnLap"]
    ident = list(zip(*(frame[c].tolist() for c in cols), strict=True))
    first: dict[tuple[Any, ...], int] = {}
    for i, key in enumerate(ident):
        first.setdefault(key, i)
    out = np.full(len(ident), -1)
    for i, key in enumerate(ident):
        position = key[-1]
        if position is not None and not (isinstance(position, float) and math.isnan(position)):
            out[i] = first.get((*key[:-1], position - 1), -1)
    return out


def undercut_scores(booster: Any, rows: pd.DataFrame, keys: tuple[str, ...]) -> np.ndarray:
    """P(undercut success) if the driver stopped now, for rows within UNDERCUT_GAP of the car ahead
    on the same lap (NaN otherwise or when the car ahead is not among ``rows``)."""
    gap = base.as_float(rows["IntervalAhead"])
    out = np.full(len(rows), np.nan)
    if len(rows) < 2 or not ((gap > 0) & (gap <= UNDERCUT_GAP)).any():
        return out  # no candidate, or no other car (one-row service calls)
    ahead = ahead_positions(rows, keys)
    known = rows["DriverNumber"].notna().to_numpy()
    ok = (gap > 0) & (gap <= UNDERCUT_GAP) & (ahead >= 0)
    ok[ok] = known[ahead[ok]]
    if ok.any():
        x = undercut_features(rows.iloc[np.flatnonzero(ok)], rows.iloc[ahead[ok]])
        out[ok] = booster_predict(booster, x, num_iteration=booster.best_iteration or None)
    return out


def undercut_metrics(pairs: pd.DataFrame, score: np.ndarray) -> dict[str, float]:
    """Undercut-success AUC of the model and two one-feature baselines (smaller gap; older tyres on
    the car ahead), the pair count and the success rate."""
    y = pairs["Success"].astype(bool).to_numpy()
    return {
        "undercut_model_auc_roc": base.auc_roc(y, score),
        "undercut_gap_baseline_auc_roc": base.auc_roc(y, -pairs["Gap"].to_numpy(dtype=float)),
        "undercut_tyre_age_baseline_auc_roc": base.auc_roc(y, pairs["TyreLifeDiff"].to_numpy(dtype=float)),
        "undercut_pairs": float(len(pairs)),
        "undercut_success_rate": float(y.mean()) if len(y) else math.nan,
    }
