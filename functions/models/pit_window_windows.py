"""The pit-window model's recommended window: the model rolled forward lap by lap, the window's
quantiles and its metrics (definitions in ``pit_window``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base
from stratx.functions.models.boosters import matrix
from stratx.functions.models.pit_window_labels import (
    DRIVER,
    FEATURES,
    HI_GRID,
    HORIZON,
    IN_LAP,
    LABEL,
    LO_GRID,
    MAX_LOOKAHEAD,
    TARGET_SHARE,
    WINDOW_LEAD,
    _status_has,
    feature_matrix,
)

# ------------------------------------------------------------------ window
AGED: tuple[str, ...] = ("TyreLife", "LapsInStint", "StintCleanLaps", "LapNumber", "LapsSincePB")
GREEN_NOW: tuple[str, ...] = ("SafetyCarNow", "VSCNow", "RedFlagNow")


def aged(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """``frame`` (derived columns included) rolled forward ``k`` laps without a stop (module doc)."""
    out = frame.copy()
    if k == 0:
        return out
    for name in AGED:
        out[name] = out[name].astype(float) + k
    out["FuelKg"] = (out["FuelKg"].astype(float) - 1.7 * k).clip(lower=0.0)
    out["LapsRemaining"] = out["RaceLaps"] - out["LapNumber"]
    out["RaceProgress"] = out["LapNumber"] / out["RaceLaps"]
    for name in GREEN_NOW:
        out[name] = 0.0
    return out


def aged_matrix(
    frame: pd.DataFrame,
    lookahead: int,
    categories: list[list[Any]] | None = None,
    x: pd.DataFrame | None = None,
) -> np.ndarray:
    """The float64 matrix (``boosters.matrix`` over ``categories``) of ``feature_matrix`` of ``frame``
    rolled forward 0..lookahead-1 laps (``aged`` k = 0, 1, ..., stacked), in one vectorised pass
    from the rows' own matrix (``x``: ``feature_matrix(frame)`` when the caller has it)."""
    x = feature_matrix(frame) if x is None else x
    return roll(matrix(x, categories), lookahead)


def roll(m: np.ndarray, lookahead: int) -> np.ndarray:
    """Model matrix ``m`` (:data:`FEATURES` columns) rolled forward 0..lookahead-1 laps, stacked:
    the aged columns are plain (not anchored) features, rolled forward with :func:`aged`'s
    arithmetic, so the ~100-column frame is never copied (serving scores one row at a time: 45
    frame copies cost ~50x the model call)."""
    n = len(m)
    out = np.tile(m, (lookahead, 1))
    column = {name: j for j, name in enumerate(FEATURES)}
    k = np.repeat(np.arange(lookahead, dtype=float), n)
    lap = np.tile(m[:, column["LapNumber"]], lookahead) + k
    race_laps = np.tile(m[:, column["RaceLaps"]], lookahead)
    for name in AGED:
        out[:, column[name]] += k
    aged_values = {
        "FuelKg": np.clip(np.tile(m[:, column["FuelKg"]], lookahead) - 1.7 * k, 0.0, None),
        "LapsRemaining": race_laps - lap,
        "RaceProgress": lap / race_laps,
        **{name: np.where(k == 0, out[:, column[name]], 0.0) for name in GREEN_NOW},
    }
    for name, values in aged_values.items():
        out[:, column[name]] = values
    return out


def stop_cdf(
    booster: Any, frame: pd.DataFrame, lookahead: int = MAX_LOOKAHEAD, x: pd.DataFrame | None = None
) -> np.ndarray:
    """(rows, lookahead) cumulative stop probability: column j = P(in-lap <= LapNumber + 1 + j).
    ``x``: ``feature_matrix(frame)``, when the caller has built it already."""
    if frame.empty:
        return np.zeros((0, lookahead))
    return cdf_from(frame, rolled_predictions(booster, frame, lookahead, x))


def rolled_predictions(
    booster: Any, frame: pd.DataFrame, lookahead: int = MAX_LOOKAHEAD, x: pd.DataFrame | None = None
) -> np.ndarray:
    """(rows, lookahead) P(in-lap within 3 laps) of each row rolled forward k = 0..lookahead-1 laps
    (:func:`aged_matrix`); column 0 is the row as it is, the model's ``PitProbability3Laps``."""
    x = feature_matrix(frame) if x is None else x
    return rolled_matrix(booster, matrix(x, booster.pandas_categorical), lookahead)


def rolled_matrix(booster: Any, m: np.ndarray, lookahead: int = MAX_LOOKAHEAD) -> np.ndarray:
    """:func:`rolled_predictions` from the rows' model matrix ``m`` (:data:`FEATURES` columns)."""
    p = booster.predict(roll(m, lookahead), num_iteration=booster.best_iteration or None)
    return np.asarray(p, dtype=float).reshape(lookahead, len(m)).T


def cdf_from(frame: pd.DataFrame, p: np.ndarray) -> np.ndarray:
    """:func:`stop_cdf` from the :func:`rolled_predictions` of ``frame``."""
    return cdf_of(frame["LapNumber"].to_numpy(dtype=float), frame["RaceLaps"].to_numpy(dtype=float), p)


def cdf_of(lap: np.ndarray, race_laps: np.ndarray, p: np.ndarray) -> np.ndarray:
    """:func:`cdf_from` over the rows' LapNumber and RaceLaps."""
    lookahead = p.shape[1]
    in_lap = lap[:, None] + 1 + np.arange(lookahead)[None, :]
    possible = in_lap <= race_laps[:, None] - 1
    hazard = np.where(possible, 1.0 - (1.0 - np.clip(p, 0.0, 1.0)) ** (1.0 / HORIZON), 0.0)
    return 1.0 - np.cumprod(1.0 - hazard, axis=1)


def windows(frame: pd.DataFrame, cdf: np.ndarray, lo: float, hi: float) -> pd.DataFrame:
    """``WindowOpenLap`` / ``WindowCloseLap`` (in-laps) from :func:`stop_cdf` (module doc)."""
    lap, race_laps = (frame[c].to_numpy(dtype=float) for c in ("LapNumber", "RaceLaps"))
    open_lap, close_lap = window_laps(lap, race_laps, cdf, lo, hi)
    return pd.DataFrame({"WindowOpenLap": open_lap, "WindowCloseLap": close_lap}, index=frame.index)


def window_laps(
    lap: np.ndarray, race_laps: np.ndarray, cdf: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`windows` over the rows' LapNumber and RaceLaps: (open, close) in-laps."""
    last = np.maximum(race_laps - 1, lap + 1)
    opened, closed = cdf >= lo, cdf >= hi
    open_lap = np.where(opened.any(axis=1), lap + 1 + opened.argmax(axis=1), np.nan)
    close_lap = np.where(
        closed.any(axis=1), lap + 1 + closed.argmax(axis=1), np.minimum(last, lap + cdf.shape[1])
    )
    return open_lap, np.where(np.isnan(open_lap), np.nan, close_lap)


def lead_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Per stop (in-lap L), the driver's row at max(L - WINDOW_LEAD, stint's first lap), capped at
    L - 1, with ``StopLap`` = L and ``StopNeutralised``. ``frame``: :func:`pit_labels` rows."""
    f = frame.reset_index(drop=True)
    first = f.groupby([*(f[k] for k in DRIVER), f["Stint"].fillna(-1)])["LapNumber"].transform("min")
    stop = f[f[IN_LAP]]
    lead = np.minimum(np.maximum(stop["LapNumber"] - WINDOW_LEAD, first[stop.index]), stop["LapNumber"] - 1)
    want = stop[list(DRIVER)].assign(
        LapNumber=np.asarray(lead, dtype=int), StopLap=stop["LapNumber"].to_numpy()
    )
    want["StopNeutralised"] = (_status_has(stop["TrackStatus"], "4567") == 1).to_numpy()
    return f.drop(columns=["StopLap", "StopNeutralised"], errors="ignore").merge(
        want, on=[*DRIVER, "LapNumber"], how="inner"
    )


def window_metrics(leads: pd.DataFrame, win: pd.DataFrame) -> dict[str, float]:
    """Share of stops inside their window (all and green stops), mean width, n."""
    inside = (leads["StopLap"] >= win["WindowOpenLap"]) & (leads["StopLap"] <= win["WindowCloseLap"])
    green = ~leads["StopNeutralised"].astype(bool)
    width = win["WindowCloseLap"] - win["WindowOpenLap"] + 1
    return {
        "stops_in_window_share": float(inside.mean()) if len(leads) else math.nan,
        "green_stops_in_window_share": float(inside[green].mean()) if green.any() else math.nan,
        "window_width_mean_laps": float(width.mean()),
        "stops_without_window_share": float(win["WindowOpenLap"].isna().mean()) if len(leads) else math.nan,
        "window_stops": float(len(leads)),
    }


def choose_quantiles(leads: pd.DataFrame, cdf: np.ndarray) -> tuple[float, float]:
    """(lo, hi) with the narrowest mean window holding >= TARGET_SHARE of the stops (else the
    highest share), on the validation races' stops."""
    scored = []
    for lo in LO_GRID:
        for hi in HI_GRID:
            m = window_metrics(leads, windows(leads, cdf, lo, hi))
            scored.append(
                (
                    m["stops_in_window_share"] >= TARGET_SHARE,
                    -m["window_width_mean_laps"],
                    m["stops_in_window_share"],
                    lo,
                    hi,
                )
            )
    ok = [s for s in scored if s[0]]
    best = max(ok, key=lambda s: s[1]) if ok else max(scored, key=lambda s: s[2])
    return float(best[3]), float(best[4])


# ------------------------------------------------------------------ metrics
def pit_metrics(frame: pd.DataFrame, p: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """AUC-ROC, AUC-PR and Brier of Pit3 for the model and the hazard baseline, on all labelled rows
    and on ``green`` rows (no SC/VSC/red anywhere on laps N..N+3), plus row counts."""
    y = frame[LABEL].astype(bool).to_numpy()
    out: dict[str, float] = {}
    for subset, mask in {
        "": np.ones(len(frame), bool),
        "green_": ~frame["NeutralisedHorizon"].to_numpy(),
    }.items():
        for name, q in {"model": p, "baseline": baseline}.items():
            out[f"{name}_{subset}pit3_auc_roc"] = base.auc_roc(y[mask], q[mask])
            out[f"{name}_{subset}pit3_auc_pr"] = base.auc_pr(y[mask], q[mask])
            out[f"{name}_{subset}pit3_brier"] = base.brier(y[mask], q[mask])
        out[f"{subset}pit3_rows"] = float(mask.sum())
        out[f"{subset}pit3_positive_rate"] = float(y[mask].mean()) if mask.any() else math.nan
    return out
