"""The pit-window model's settings, stop labels, circuit tables, feature matrix and hazard
baseline (definitions in ``pit_window``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.features import families
from stratx.functions.models import base

RACE = ("Year", "EventName")
DRIVER = (*RACE, "DriverNumber")
HORIZON = 3
LABEL = "Pit3"
IN_LAP = "InLap"
NEUTRALISED_CODES = frozenset("4567")
PRIOR_ROWS = 20.0
WINDOW_LEAD = 5
MAX_LOOKAHEAD = 45
UNDERCUT_GAP = 3.0
UNDERCUT_LAPS = 5
UNDERCUT_ANCHOR = 0.771
PIT_BOOSTER, UNDERCUT_BOOSTER = "pit3", "undercut"
SELECTION_METRIC = "val_model_pit3_brier"

# The pit_window_v1 FeatureService (lap_stint + lap_gaps + lap_pace), in feature-view order.
SERVICE_FEATURES: tuple[str, ...] = (*families.STINT, *families.GAPS, *families.PACE)
DERIVED: tuple[str, ...] = (
    "RaceLaps", "LapsRemaining", "RaceProgress", "PitLossSeconds", "SafetyCarNow", "VSCNow", "RedFlagNow",
)  # fmt: skip
FEATURES: tuple[str, ...] = SERVICE_FEATURES + DERIVED
RELATIVE_TO_ANCHOR: tuple[str, ...] = (
    "LapTime", "FuelCorrectedLapTime", "Last3Mean", "Last3Median", "Last3Min", "Last5Mean",
    "Last5Median", "Last5Min", "PersonalBest",
)  # fmt: skip
COMPOUNDS: tuple[str, ...] = (
    "HYPERSOFT", "ULTRASOFT", "SUPERSOFT", "SOFT", "MEDIUM", "HARD", "INTERMEDIATE", "WET",
)  # fmt: skip
MONOTONE_INCREASING: tuple[str, ...] = ("TyreLife", "LapsInStint", "StintDegSlope")
UNDERCUT_FEATURES: tuple[str, ...] = (
    "Gap", "TyreLife", "TyreLifeAhead", "TyreLifeDiff", "StintDegSlope", "StintDegSlopeAhead",
    "PaceDelta", "PitLossSeconds", "LapsRemaining",
)  # fmt: skip

PIT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 80,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 0,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
# Chosen by leave-one-race-out cross-validation on the ~100 non-test pairs (AUC 0.72; the gap alone
# scored 0.73 there): the sample is small, so the model is tiny. One thread: 100 rows gain nothing.
UNDERCUT_PARAMS: dict[str, Any] = {
    **PIT_PARAMS,
    "num_leaves": 3,
    "min_data_in_leaf": 10,
    "learning_rate": 0.03,
    "feature_fraction": 1.0,
    "num_threads": 1,
}
MAX_ROUNDS, EARLY_STOPPING, UNDERCUT_ROUNDS = 1500, 80, 60
LO_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
HI_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TARGET_SHARE = 0.8  # the window should hold at least 80% of the validation stops


# ------------------------------------------------------------------ labels
def _status_has(status: pd.Series, codes: str) -> pd.Series:
    """1.0 when the TrackStatus string holds any of ``codes``, NaN when TrackStatus is missing."""
    text = status.astype(object)
    return pd.Series(_has(text.tolist(), codes), index=status.index, name=status.name)


def stops(raw_laps: pd.DataFrame) -> pd.DataFrame:
    """One row per stop (``DRIVER`` + ``LapNumber`` = in-lap, ``Neutralised``); see the module doc."""
    r = raw_laps.sort_values([*DRIVER, "LapNumber"], kind="stable")
    next_lap = r.groupby(list(DRIVER), sort=False)["LapNumber"].shift(-1)
    keep = r["PitInTime"].notna() & (next_lap == r["LapNumber"] + 1)
    out = r.loc[keep, [*DRIVER, "LapNumber"]].copy()
    out["LapNumber"] = out["LapNumber"].astype(int)
    out["Neutralised"] = _status_has(r.loc[keep, "TrackStatus"], "".join(sorted(NEUTRALISED_CODES))) == 1
    return out.reset_index(drop=True)


def race_laps(frame: pd.DataFrame) -> pd.Series:
    """RaceLaps per row: the race's highest LapNumber (scheduled distance, known before the race)."""
    return frame.groupby(list(RACE))["LapNumber"].transform("max").astype(float)


def pit_labels(laps: pd.DataFrame, raw_laps: pd.DataFrame) -> pd.DataFrame:
    """``laps`` plus ``InLap`` (this lap is a stop), ``NextStopLap``, ``Pit3`` (nullable boolean, NA
    when undefined), ``NeutralisedHorizon`` (lap N..N+3 of the race had SC/VSC/red at any car),
    ``TrackStatus`` (raw) and ``RaceLaps``."""
    out = laps.copy()
    out["LapNumber"] = out["LapNumber"].astype(int)
    status = raw_laps[[*DRIVER, "LapNumber", "TrackStatus"]].copy()
    status["LapNumber"] = status["LapNumber"].astype(int)
    out = out.drop(columns=["TrackStatus"], errors="ignore").merge(
        status, on=[*DRIVER, "LapNumber"], how="left"
    )
    stop = stops(raw_laps)
    key = pd.MultiIndex.from_frame(stop[[*DRIVER, "LapNumber"]])
    out[IN_LAP] = pd.MultiIndex.from_frame(out[[*DRIVER, "LapNumber"]]).isin(key)
    out["RaceLaps"] = race_laps(out)
    out = out.sort_values([*DRIVER, "LapNumber"], kind="stable").reset_index(drop=True)
    g = out.groupby(list(DRIVER), sort=False)
    stop_lap = out["LapNumber"].where(out[IN_LAP]).astype(float)
    # the first stop strictly after lap N: backward fill of the next rows' stop laps
    out["NextStopLap"] = stop_lap.groupby([out[k] for k in DRIVER], sort=False).transform(
        lambda s: s.shift(-1).bfill()
    )
    last = g["LapNumber"].transform("max")
    hit = out["NextStopLap"] <= out["LapNumber"] + HORIZON
    known = hit | (last >= out["LapNumber"] + HORIZON) | (last >= out["RaceLaps"])
    out[LABEL] = hit.astype("boolean").mask(~known)
    neutral = _status_has(out["TrackStatus"], "4567").fillna(0.0)
    lap_neutral = neutral.groupby([out[k] for k in RACE] + [out["LapNumber"]]).transform("max")
    by_lap = pd.Series(lap_neutral.to_numpy(), index=pd.MultiIndex.from_frame(out[[*RACE, "LapNumber"]]))
    by_lap = by_lap[~by_lap.index.duplicated()]
    ahead = np.zeros(len(out))
    for k in range(HORIZON + 1):
        idx = pd.MultiIndex.from_arrays([out["Year"], out["EventName"], out["LapNumber"] + k])
        ahead = np.maximum(ahead, by_lap.reindex(idx).fillna(0.0).to_numpy())
    out["NeutralisedHorizon"] = ahead > 0
    return out


# ------------------------------------------------------------------ circuit tables
def pit_loss_table(laps: pd.DataFrame, raw_laps: pd.DataFrame) -> dict[str, float]:
    """Pit-lane loss (s) per EventName from the green stops (module doc); needs the out-lap too."""
    stop = stops(raw_laps)
    keys = [*DRIVER, "LapNumber"]
    times = laps[[*keys, "LapTime"]].assign(LapNumber=laps["LapNumber"].astype(int))
    ref = laps[[*keys, "Last5Median"]].assign(LapNumber=laps["LapNumber"].astype(int) + 1)
    out_lap = times.assign(LapNumber=times["LapNumber"] - 1).rename(columns={"LapTime": "OutLapTime"})
    s = stop[~stop["Neutralised"]].merge(times, on=keys).merge(out_lap, on=keys).merge(ref, on=keys)
    loss = s["LapTime"] + s["OutLapTime"] - 2 * s["Last5Median"]
    frame = s.assign(Loss=loss)[loss.between(5.0, 60.0)]
    return {str(k): float(v) for k, v in frame.groupby("EventName")["Loss"].median().items()}


def lookup(table: dict[str, float], keys: pd.Series) -> pd.Series:
    """``table[key]`` per row, else the median of the table (a circuit not seen)."""
    return pd.Series(_lookup(table, keys.tolist()), index=keys.index, name=keys.name)


def _lookup(table: dict[str, float], keys: list[Any]) -> np.ndarray:
    """:func:`lookup` over plain values (``str`` of each, as ``astype(str)`` gives)."""
    fallback = float(np.median(list(table.values()))) if table else math.nan
    found = np.array([table.get(str(k), math.nan) for k in keys], dtype=float)
    return np.where(np.isnan(found), fallback, found)


def _has(status: list[Any], codes: str) -> np.ndarray:
    """:func:`_status_has` over plain values."""
    return np.array(
        [float(any(c in s for c in codes)) if isinstance(s, str) else math.nan for s in status], dtype=float
    )


def derived_columns(rows: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The derived feature columns of ``rows`` (:data:`DERIVED`, module doc of ``pit_window``):
    RaceLaps from the row, else the circuit table. Plain arrays: pandas operations on a service's
    one- or two-row request cost more than the model."""
    lap, *given = base.floats(rows, ["LapNumber", *(["RaceLaps"] if "RaceLaps" in rows.columns else [])]).T
    events = rows["EventName"].tolist()
    race_laps = given[0] if given else _lookup(meta["race_laps"], events)
    status = rows["TrackStatus"].tolist() if "TrackStatus" in rows.columns else [None] * len(rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        progress = lap / race_laps
    return {
        "RaceLaps": race_laps,
        "LapsRemaining": race_laps - lap,
        "RaceProgress": progress,
        "PitLossSeconds": _lookup(meta["pit_loss"], events),
        "SafetyCarNow": _has(status, "4"),
        "VSCNow": _has(status, "67"),
        "RedFlagNow": _has(status, "5"),
    }


# ------------------------------------------------------------------ features
def with_derived(
    rows: pd.DataFrame, meta: dict[str, Any], derived: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """``rows`` plus the derived columns (:func:`derived_columns`, or ``derived`` when the caller
    has them). Built in one concatenation: nine column inserts into a hundred-column frame cost
    more than the model on a service's two-row request."""
    derived = derived_columns(rows, meta) if derived is None else derived
    kept = rows.drop(columns=[c for c in derived if c in rows.columns])
    return pd.concat([kept, pd.DataFrame(derived, index=rows.index)], axis=1)


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Model inputs (:data:`FEATURES`) of rows that already carry the derived columns."""
    anchor = frame["Last3Median"].astype(float).fillna(frame["LapTime"].astype(float))
    return base.lap_matrix(frame, FEATURES, RELATIVE_TO_ANCHOR, anchor, COMPOUNDS)


def monotone_constraints(columns: list[str]) -> list[int]:
    return [1 if c in MONOTONE_INCREASING else 0 for c in columns]


# ------------------------------------------------------------------ baseline
def hazard_table(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Baseline: Pit3 rate per Compound and TyreLife (clipped to 1..60), shrunk to the compound's rate."""
    f = frame.assign(Age=frame["TyreLife"].clip(1, 60).fillna(1).round().astype(int))
    f = f.assign(Compound=f["Compound"].fillna("UNKNOWN").astype(str), y=f[LABEL].astype(float))
    overall = float(f["y"].mean())
    table: dict[str, dict[str, float]] = {"_overall": {"_": overall}}
    for compound, g in f.groupby("Compound"):
        rate = (g["y"].sum() + PRIOR_ROWS * overall) / (len(g) + PRIOR_ROWS)
        cells = g.groupby("Age")["y"].agg(["sum", "count"])
        shrunk = (cells["sum"] + PRIOR_ROWS * rate) / (cells["count"] + PRIOR_ROWS)
        table[str(compound)] = {"_": float(rate), **{str(a): float(v) for a, v in shrunk.items()}}
    return table


def hazard_predict(table: dict[str, dict[str, float]], frame: pd.DataFrame) -> np.ndarray:
    ages = frame["TyreLife"].clip(1, 60).fillna(1).round().astype(int).astype(str)
    out = []
    for compound, age in zip(frame["Compound"].fillna("UNKNOWN").astype(str), ages, strict=True):
        cells = table.get(compound, table["_overall"])
        out.append(cells.get(age, cells["_"]))
    return np.asarray(out, dtype=float)
