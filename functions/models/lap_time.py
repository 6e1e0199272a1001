"""Model 1, next lap time: from a driver's lap-N features, predict the LapTime of lap N+1.

Recipe (shared by training, evaluation and serving):

* **Rows**: LapFeatures rows (``feature_build.build_lap_table``), one per driver-lap. The target of
  row N is the LapTime of the *same driver's* lap N+1 in the *same race*; the last lap of a driver
  (or a lap whose successor is missing or has no LapTime) has no target.
* **Anchor** (the baseline the model corrects): the driver's clean rolling median ``Last3Median``,
  or this lap's ``LapTime`` while there is no clean lap yet. The model predicts
  ``next LapTime - anchor``; the prediction is ``anchor + model output``.
* **Features**: the ``lap_time_v1`` FeatureService (``feature_repo/lap_features.py``); ``Compound``
  is categorical, booleans are 0/1. Pace columns in absolute seconds are given relative to the
  anchor (a 1:32 lap means nothing across circuits; 0.4 s slower than usual does).
* **Monotone**: the prediction never decreases with ``TyreLife`` (older tyres are not faster).
* **Evaluation**: on all rows with a target, and on green-flag clean rows (the next lap is clean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MODEL_NAME = "stratx-lap-time"
FEATURE_SERVICE = "lap_time_v1"
TARGET = "NextLapTime"
NEXT_CLEAN = "NextIsClean"
ANCHOR = "Anchor"
RACE_KEYS = ("Year", "EventName", "SessionKey")
TARGET_KIND = "delta_to_last3median"

# The lap_time_v1 FeatureService, in its order (a unit test checks it against feature_repo/).
SERVICE_FEATURES: tuple[str, ...] = (
    "LapTime",
    "IsClean",
    "Last3Mean",
    "Last3Median",
    "Last3Std",
    "Last3Min",
    "Last5Mean",
    "Last5Median",
    "Last5Std",
    "Last5Min",
    "PersonalBest",
    "LapsSincePB",
    "DeltaToPB",
    "DeltaToSessionBest",
    "DeltaToTeammate",
    "DeltaToCarAhead",
    "DeltaToCarBehind",
    "DeltaToFieldMedian",
    "Stint",
    "Compound",
    "TyreLife",
    "FreshTyre",
    "LapsInStint",
    "StintCleanLaps",
    "FuelKg",
    "FuelCorrectedLapTime",
    "StintTrendSlope",
    "StintDegSlope",
    "StintDegSlopeStderr",
    "LapNumber",
    "PositionOnLap",
    "GapToLeader",
    "IntervalAhead",
    "InDRSRange",
)
# Absolute lap times (s): fed to the model minus the anchor.
RELATIVE_TO_ANCHOR: tuple[str, ...] = (
    "LapTime",
    "Last3Mean",
    "Last3Median",
    "Last3Min",
    "Last5Mean",
    "Last5Median",
    "Last5Min",
    "PersonalBest",
    "FuelCorrectedLapTime",
)
CATEGORICAL: tuple[str, ...] = ("Compound",)
COMPOUNDS: tuple[str, ...] = (
    "HYPERSOFT",
    "ULTRASOFT",
    "SUPERSOFT",
    "SOFT",
    "MEDIUM",
    "HARD",
    "INTERMEDIATE",
    "WET",
)
MONOTONE_INCREASING: tuple[str, ...] = ("TyreLife",)

# Races held out of training (Year, EventName). Test: the 3 bundled races + 3 more of 2023/24,
# never used for tuning. Validation: 4 late-2023 races, used for early stopping and the champion.
TEST_RACES: tuple[tuple[int, str], ...] = (
    (2023, "Bahrain Grand Prix"),
    (2023, "Las Vegas Grand Prix"),
    (2024, "Bahrain Grand Prix"),
    (2024, "Saudi Arabian Grand Prix"),
    (2023, "Abu Dhabi Grand Prix"),
    (2023, "São Paulo Grand Prix"),
)
VALIDATION_RACES: tuple[tuple[int, str], ...] = (
    (2023, "Qatar Grand Prix"),
    (2023, "Singapore Grand Prix"),
    (2023, "United States Grand Prix"),
    (2023, "Mexico City Grand Prix"),
)


def next_lap_targets(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus ``NextLapTime`` and ``NextIsClean`` (lap N+1 of the same driver and race) and
    ``Anchor``. Rows without a next lap (last lap, a gap in the laps, no LapTime) get NaN / NA."""
    out = table.copy()
    keys = [k for k in RACE_KEYS if k in out.columns] + ["DriverNumber"]
    order = out.sort_values([*keys, "LapNumber"], kind="stable").index
    s = out.loc[order]
    g = s.groupby(keys, sort=False, dropna=False)
    next_n = g["LapNumber"].shift(-1)
    follows = next_n == s["LapNumber"] + 1
    out[TARGET] = g["LapTime"].shift(-1).where(follows).astype(float)
    out[NEXT_CLEAN] = g["IsClean"].shift(-1).where(follows).astype("boolean")
    out[ANCHOR] = anchor(out)
    return out


def anchor(table: pd.DataFrame) -> pd.Series:
    """The clean rolling median Last3Median, else this lap's LapTime (no clean lap yet)."""
    return table["Last3Median"].astype(float).fillna(table["LapTime"].astype(float))


def feature_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Model inputs for LapFeatures rows (any extra columns, e.g. Driver, are ignored)."""
    base = anchor(table)
    x = pd.DataFrame(index=table.index)
    for name in SERVICE_FEATURES:
        col = table[name]
        if name in CATEGORICAL:
            x[name] = pd.Categorical(col.astype(object).where(col.isin(COMPOUNDS)), categories=COMPOUNDS)
        elif name in RELATIVE_TO_ANCHOR:
            x[name] = col.astype(float) - base
        else:
            x[name] = pd.to_numeric(col.astype(object), errors="coerce").astype(float)
    return x


def monotone_constraints(columns: Sequence[str]) -> list[int]:
    return [1 if c in MONOTONE_INCREASING else 0 for c in columns]


def trainable(frame: pd.DataFrame) -> pd.Series:
    """Rows with a target and an anchor."""
    return frame[TARGET].notna() & frame[ANCHOR].notna()


def residual_target(frame: pd.DataFrame) -> pd.Series:
    return frame[TARGET] - frame[ANCHOR]


def from_residual(frame: pd.DataFrame, residual: np.ndarray) -> np.ndarray:
    return frame[ANCHOR].to_numpy(dtype=float) + np.asarray(residual, dtype=float)


def race_split(frame: pd.DataFrame) -> pd.Series:
    """'test', 'validation' or 'train' per row, by race (never by lap)."""
    race = list(zip(frame["Year"].astype(int), frame["EventName"].astype(str), strict=True))
    test, val = set(TEST_RACES), set(VALIDATION_RACES)
    return pd.Series(
        ["test" if r in test else "validation" if r in val else "train" for r in race],
        index=frame.index,
    )


def baselines(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Persistence (next = this LapTime) and the clean rolling median (the anchor)."""
    return {
        "persistence": frame["LapTime"].to_numpy(dtype=float),
        "rolling_median": frame[ANCHOR].to_numpy(dtype=float),
    }


@dataclass(frozen=True)
class Scores:
    mae: float
    rmse: float
    n: int


def score(actual: np.ndarray, predicted: np.ndarray) -> Scores:
    """MAE and RMSE (s) over the rows where both are finite."""
    a, p = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    ok = np.isfinite(a) & np.isfinite(p)
    if not ok.any():
        return Scores(math.nan, math.nan, 0)
    err = p[ok] - a[ok]
    return Scores(float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err**2))), int(ok.sum()))


def evaluation_rows(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Row masks: 'clean' (the next lap is a green-flag clean lap) and 'all' (any next lap), both
    only where the target and both baselines exist, so every predictor is scored on the same laps."""
    scorable = trainable(frame) & frame["LapTime"].notna()
    return {"clean": scorable & frame[NEXT_CLEAN].fillna(False).astype(bool), "all": scorable}


def metrics_table(frame: pd.DataFrame, predicted: np.ndarray) -> dict[str, float]:
    """Flat metrics: ``{predictor}_{laps}_{mae|rmse}`` for the model and each baseline, plus
    ``{laps}_laps`` (rows scored) and ``model_vs_persistence_{laps}_mae_ratio``."""
    preds = {"model": np.asarray(predicted, dtype=float), **baselines(frame)}
    actual = frame[TARGET].to_numpy(dtype=float)
    out: dict[str, float] = {}
    for laps, mask in evaluation_rows(frame).items():
        m = mask.to_numpy()
        out[f"{laps}_laps"] = float(m.sum())
        for name, p in preds.items():
            s = score(actual[m], p[m])
            out[f"{name}_{laps}_mae"] = s.mae
            out[f"{name}_{laps}_rmse"] = s.rmse
        out[f"model_vs_persistence_{laps}_mae_ratio"] = (
            out[f"model_{laps}_mae"] / out[f"persistence_{laps}_mae"]
        )
    return out
