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
* **Evaluation**, three row sets, every predictor on the same rows: ``both_clean`` (this lap and
  the next are green-flag clean laps: the headline), ``clean`` (the next lap is clean) and ``all``
  (any next lap). Baselines (:func:`baselines`, each causal: lap N and before only):
  ``persistence`` (next = this LapTime), ``last_clean`` (the driver's latest clean LapTime, this
  lap included), ``rolling_median`` (the anchor) and ``stint_trend`` (the least-squares line
  through the stint's clean laps so far, read at lap N+1; with fewer than 3, the last clean lap).
  The model is judged against the **strongest** baseline of each row set (the lowest MAE on those
  rows, chosen in hindsight, which can only make the baseline stronger): target
  ``model_vs_strongest_both_clean_mae_ratio`` <= :data:`TARGET_RATIO`.
* **80 % interval** (``NextLapTimeP10``/``P90``): normalised split-conformal bands calibrated on
  the validation races (:mod:`~stratx.functions.models.lap_time_interval`); target coverage
  0.75-0.85 on the both-clean rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from stratx.functions.features import families
from stratx.functions.models import base, registry
from stratx.functions.models import lap_time_interval as interval

MODEL_NAME = registry.spec("lap_time").model_name
FEATURE_SERVICE = "lap_time_v1"
TARGET = "NextLapTime"
NEXT_CLEAN = "NextIsClean"
ANCHOR = "Anchor"
LAST_CLEAN = "LastCleanLapTime"
STINT_TREND = "StintTrendNext"
TREND_MIN_LAPS = 3  # clean laps in the stint before the stint trend is drawn
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
# The anchor's inputs, in preference order (:func:`anchor`): without either there is nothing to correct.
ANCHOR_INPUTS: tuple[str, str] = ("Last3Median", "LapTime")

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
    clean = s["IsClean"].fillna(False).astype(bool)
    clean_time = s["LapTime"].astype(float).where(clean)
    out[LAST_CLEAN] = clean_time.groupby([s[k] for k in keys], sort=False, dropna=False).ffill()
    out[STINT_TREND] = _stint_trend(s, clean, keys).fillna(out[LAST_CLEAN])
    return out


def _stint_trend(s: pd.DataFrame, clean: pd.Series, keys: list[str]) -> pd.Series:
    """Least-squares line of LapTime on LapNumber over the stint's clean laps up to each lap
    (``s`` sorted by driver and lap), evaluated at the next lap; NaN before TREND_MIN_LAPS."""
    x = s["LapNumber"].astype(float).where(clean, 0.0)
    y = s["LapTime"].astype(float).where(clean, 0.0)
    w = clean.astype(float)
    stint = s["Stint"] if "Stint" in s.columns else pd.Series(0, index=s.index)
    groups = [s[k] for k in keys] + [stint]
    sums = pd.DataFrame({"n": w, "x": x, "y": y, "xy": x * y, "xx": x * x})
    c = sums.groupby(groups, sort=False, dropna=False).cumsum()
    denom = c["n"] * c["xx"] - c["x"] ** 2
    slope = (c["n"] * c["xy"] - c["x"] * c["y"]) / denom.where(denom > 0)
    intercept = (c["y"] - slope * c["x"]) / c["n"]
    trend = intercept + slope * (s["LapNumber"].astype(float) + 1)
    return trend.where(c["n"] >= TREND_MIN_LAPS)


def anchor(table: pd.DataFrame) -> pd.Series:
    """The clean rolling median Last3Median, else this lap's LapTime (no clean lap yet)."""
    median, lap = ANCHOR_INPUTS
    return table[median].astype(float).fillna(table[lap].astype(float))


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
    """The simple predictors of the next LapTime (module doc), from :func:`next_lap_targets` rows."""
    return {
        "persistence": frame["LapTime"].to_numpy(dtype=float),
        "last_clean": frame[LAST_CLEAN].to_numpy(dtype=float),
        "rolling_median": frame[ANCHOR].to_numpy(dtype=float),
        "stint_trend": frame[STINT_TREND].to_numpy(dtype=float),
    }


BASELINES: tuple[str, ...] = ("persistence", "last_clean", "rolling_median", "stint_trend")
ROW_SETS: tuple[str, ...] = ("both_clean", "clean", "all")


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
    """Row masks (:data:`ROW_SETS`): 'both_clean' (this lap and the next are green-flag clean
    laps), 'clean' (the next lap is) and 'all' (any next lap), each only where the target and
    every baseline exist, so every predictor is scored on the same laps."""
    scorable = trainable(frame) & frame["LapTime"].notna() & frame[LAST_CLEAN].notna()
    next_clean = scorable & frame[NEXT_CLEAN].fillna(False).astype(bool)
    both = next_clean & frame["IsClean"].fillna(False).astype(bool)
    return {"both_clean": both, "clean": next_clean, "all": scorable}


def metrics_table(frame: pd.DataFrame, predicted: np.ndarray) -> dict[str, float]:
    """Flat metrics per row set: ``{predictor}_{laps}_{mae|rmse}`` for the model and each
    baseline, ``{laps}_laps`` (rows scored), ``model_vs_{baseline}_{laps}_mae_ratio``, and the
    strongest baseline on those rows: ``strongest_{laps}`` (its index in :data:`BASELINES`),
    ``strongest_{laps}_mae`` and ``model_vs_strongest_{laps}_mae_ratio``."""
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
        maes = [out[f"{b}_{laps}_mae"] for b in BASELINES]
        best = int(np.nanargmin(maes)) if np.isfinite(maes).any() else 0
        out[f"strongest_{laps}"] = float(best)
        out[f"strongest_{laps}_mae"] = maes[best]
        for name in ("persistence", "strongest"):
            out[f"model_vs_{name}_{laps}_mae_ratio"] = out[f"model_{laps}_mae"] / out[f"{name}_{laps}_mae"]
    return out


def strongest(metrics: dict[str, float], laps: str = "both_clean") -> str:
    """The name of the strongest baseline of a :func:`metrics_table` row set."""
    return BASELINES[int(metrics[f"strongest_{laps}"])]


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
HEADLINE_RATIO = "model_vs_strongest_both_clean_mae_ratio"
TARGET_RATIO = 0.85  # model MAE <= 0.85 x the strongest baseline's, on both-clean rows
BAND_COVERAGE = "interval80_both_clean_coverage"  # target: interval.BAND_TARGET


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
    if frame.shape[0] == 0:
        raise ValueError("Input data must be 2 dimensional and non empty.")
    base_values = base.anchor_values(frame, ANCHOR_INPUTS)
    x = base.lap_array(
        frame, SERVICE_FEATURES, RELATIVE_TO_ANCHOR, base_values, COMPOUNDS, booster.pandas_categorical
    )
    residual = booster.predict(x, num_iteration=booster.best_iteration or None)
    return base_values + np.asarray(residual, dtype=float)


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
        predicted = predict_frame(booster, val)
        calibration = evaluation_rows(val)["clean"].to_numpy()
        if calibration.any():
            bundle.meta["interval"] = interval.calibrate(
                val, predicted, val[TARGET].to_numpy(dtype=float), calibration
            )
        lower, upper = interval.bands(val, predicted, bundle.meta.get("interval"))
        metrics = {f"val_{k}": v for k, v in scores(val, predicted, lower, upper).items()}
    return bundle, metrics


def scores(frame: pd.DataFrame, predicted: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> dict[str, float]:
    """:func:`metrics_table` plus the 80 % interval's coverage and width per row set: the one
    scoring of a lap-time prediction, offline (training, ``stratx evaluate``) and streamed
    (``functions/backtest.py``). ``lower``/``upper``: the band per row (NaN: none)."""
    predicted, lower, upper = (np.asarray(a, dtype=float) for a in (predicted, lower, upper))
    actual = frame[TARGET].to_numpy(dtype=float)
    return metrics_table(frame, predicted) | interval.interval_metrics(
        actual, lower, upper, evaluation_rows(frame)
    )


def scored_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """:func:`scores` of a frame carrying ``Predicted`` and the band columns (absent: no band)."""
    nan = np.full(len(frame), np.nan)
    band = [frame[c].to_numpy(dtype=float, na_value=np.nan) if c in frame.columns else nan
            for c in (interval.LOWER, interval.UPPER)]  # fmt: skip
    return scores(frame, frame["Predicted"].to_numpy(dtype=float), *band)


def predict(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """``PredictedNextLapTime`` (s) per LapFeatures row and its 80 % band (``NextLapTimeP10``,
    ``NextLapTimeP90``; NaN from a bundle calibrated before the band existed)."""
    predicted = predict_frame(bundle.boosters[BOOSTER], rows)
    lower, upper = interval.bands(rows, predicted, bundle.meta.get("interval"))
    return pd.DataFrame(
        {"PredictedNextLapTime": predicted, interval.LOWER: lower, interval.UPPER: upper}, index=rows.index
    )


def evaluate(bundle: base.ModelBundle, corpus: base.Corpus) -> base.Evaluation:
    frame = next_lap_targets(corpus.laps)
    frame = frame[trainable(frame)].copy()
    if frame.empty:
        raise ValueError("no laps with a next lap to score")
    frame["Predicted"] = predict_frame(bundle.boosters[BOOSTER], frame)
    band = bundle.meta.get("interval")
    frame[interval.LOWER], frame[interval.UPPER] = interval.bands(frame, frame["Predicted"].to_numpy(), band)
    overall = scored_metrics(frame)
    per_race = base.per_race(frame, scored_metrics)
    return base.Evaluation(
        metrics=overall,
        scored=frame,
        races=base.race_names(frame),
        targets=[
            base.Target(
                HEADLINE_RATIO,
                overall[HEADLINE_RATIO],
                "<=",
                TARGET_RATIO,
            ),
            base.Target(BAND_COVERAGE, overall[BAND_COVERAGE], "in", interval.BAND_TARGET),
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
