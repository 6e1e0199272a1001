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
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.features import families
from stratx.functions.models import base, registry
from stratx.functions.models.boosters import booster_predict

MODEL_NAME = registry.spec("lap_time").model_name
FEATURE_SERVICE = "lap_time_v1"
TARGET = "NextLapTime"
NEXT_CLEAN = "NextIsClean"
ANCHOR = "Anchor"
RACE_KEYS = ("Year", "EventName", "SessionKey")
TARGET_KIND = "delta_to_last3median"

# The lap_time_v1 FeatureService, in its order (a unit test checks it against feature_repo/).
SERVICE_FEATURES: tuple[str, ...] = (*families.PACE, *families.STINT, *families.TRAFFIC)
# Absolute lap times (s): fed to the model minus the anchor.
RELATIVE_TO_ANCHOR: tuple[str, ...] = families.ABSOLUTE_TIMES
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

TEST_RACES = base.TEST_RACES
VALIDATION_RACES = base.VALIDATION_RACES


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
    return base.lap_matrix(table, SERVICE_FEATURES, RELATIVE_TO_ANCHOR, anchor(table), COMPOUNDS)


def monotone_constraints(columns: Sequence[str]) -> list[int]:
    return [1 if c in MONOTONE_INCREASING else 0 for c in columns]


def trainable(frame: pd.DataFrame) -> pd.Series:
    """Rows with a target and an anchor."""
    return frame[TARGET].notna() & frame[ANCHOR].notna()


def residual_target(frame: pd.DataFrame) -> pd.Series:
    return frame[TARGET] - frame[ANCHOR]


def from_residual(frame: pd.DataFrame, residual: np.ndarray) -> np.ndarray:
    return frame[ANCHOR].to_numpy(dtype=float) + np.asarray(residual, dtype=float)


race_split = base.race_split


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


# ------------------------------------------------------------------ fit, predict, evaluate
# LightGBM recipe, chosen on the validation races only: Huber loss (alpha 2 s) on rows whose next
# lap is clean, early stopping on the validation races' clean laps.
LGB_PARAMS: dict[str, Any] = {
    "objective": "huber",
    "alpha": 2.0,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "seed": 0,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
MAX_ROUNDS = 3000
EARLY_STOPPING = 100
BOOSTER = "residual"
SELECTION_METRIC = "val_model_clean_mae"
TARGET_RATIO = 0.9  # the model's clean-lap MAE must be <= 0.9 x persistence's


def fit_booster(
    frame: pd.DataFrame,
    split: pd.Series,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
    progress: bool = False,
) -> Any:
    """LightGBM booster on the train races' clean next laps, early-stopped on the validation
    races'. ``frame`` = :func:`next_lap_targets` rows; without validation rows, trains ``rounds`` trees."""
    import lightgbm as lgb

    params = {**LGB_PARAMS, **(params or {})}
    keep = trainable(frame)
    frame, split = frame[keep], split[keep]
    clean = frame[NEXT_CLEAN].fillna(False).astype(bool)
    x, y = feature_matrix(frame), residual_target(frame)
    params["monotone_constraints"] = monotone_constraints(list(x.columns))
    train, val = (split == "train") & clean, (split == "validation") & clean
    if not train.any():
        raise ValueError("no training rows: every race is a test or validation race")
    data = lgb.Dataset(x[train], y[train], categorical_feature=list(CATEGORICAL))
    valid_sets: list[Any] = []
    callbacks: list[Any] = []
    if val.any():
        valid_sets = [lgb.Dataset(x[val], y[val], reference=data)]
        callbacks.append(lgb.early_stopping(EARLY_STOPPING, verbose=False))
    with base.rounds_progress(rounds, "lap-time trees", progress) as tick:
        return lgb.train(params, data, rounds, valid_sets=valid_sets, callbacks=[*callbacks, tick])


def predict_frame(booster: Any, frame: pd.DataFrame) -> np.ndarray:
    """Next-lap time (s) for LapFeatures rows (the anchor is computed from them)."""
    x = feature_matrix(frame)
    residual = booster_predict(booster, x, num_iteration=booster.best_iteration or None)
    return anchor(frame).to_numpy(dtype=float) + np.asarray(residual, dtype=float)


def fit(
    corpus: base.Corpus,
    split: base.Splitter = base.race_split,
    progress: bool = False,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
) -> tuple[base.ModelBundle, dict[str, float]]:
    frame = next_lap_targets(corpus.laps)
    where = split(frame)
    booster = fit_booster(frame, where, params, rounds, progress)
    bundle = base.ModelBundle(
        "lap_time",
        {BOOSTER: booster},
        {
            "target": TARGET_KIND,
            "features": list(SERVICE_FEATURES),
            "params": {**LGB_PARAMS, **(params or {})},
            "best_iteration": booster.best_iteration or booster.current_iteration(),
        },
    )
    val = frame[(where == "validation") & trainable(frame)]
    metrics = {}
    if not val.empty:
        metrics = {f"val_{k}": v for k, v in metrics_table(val, predict_frame(booster, val)).items()}
    return bundle, metrics


def predict(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """``PredictedNextLapTime`` (s) per LapFeatures row."""
    return pd.DataFrame(
        {"PredictedNextLapTime": predict_frame(bundle.boosters[BOOSTER], rows)}, index=rows.index
    )


def evaluate(bundle: base.ModelBundle, corpus: base.Corpus) -> base.Evaluation:
    frame = next_lap_targets(corpus.laps)
    frame = frame[trainable(frame)].copy()
    if frame.empty:
        raise ValueError("no laps with a next lap to score")
    frame["Predicted"] = predict_frame(bundle.boosters[BOOSTER], frame)
    overall = metrics_table(frame, frame["Predicted"].to_numpy())
    per_race = base.per_race(frame, lambda g: metrics_table(g, g["Predicted"].to_numpy()))
    return base.Evaluation(
        metrics=overall,
        scored=frame,
        races=base.race_names(frame),
        targets=[
            base.Target(
                "model_vs_persistence_clean_mae_ratio",
                overall["model_vs_persistence_clean_mae_ratio"],
                "<=",
                TARGET_RATIO,
            )
        ],
        per_race=per_race,
    )


RECIPE = base.Recipe(
    key="lap_time",
    model_name=MODEL_NAME,
    feature_service=FEATURE_SERVICE,
    service_features=SERVICE_FEATURES,
    selection_metric=SELECTION_METRIC,
    fit=fit,
    evaluate=evaluate,
    predict=predict,
    description="next lap's time per driver (s), a correction to the clean rolling median",
)
