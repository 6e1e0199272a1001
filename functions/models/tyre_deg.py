"""Model 2, tyre degradation: per driver-lap, the stint's fuel-corrected degradation rate (s/lap)
with an 80% band, a falloff score 0..1 and the probability of a pace 'cliff' in the next laps.

Recipe (shared by training, evaluation and serving):

* **Stint**: one (Year, EventName, DriverNumber, Stint) on a dry compound (:data:`DRY`); wet and
  intermediate stints (drying tracks make their slopes meaningless) get no label.
* **Slope laps** of a stint: its clean laps (``IsClean``) with a FuelCorrectedLapTime and a
  TyreLife whose FuelCorrectedLapTime is at most :data:`OUTLIER_S` (2.0 s) above the stint's
  median clean FuelCorrectedLapTime (drops laps lost to traffic and mistakes).
* **Realised rate** (``RealisedDegRate``, the label, s/lap): the OLS slope of FuelCorrectedLapTime
  vs TyreLife over the stint's slope laps, defined when there are >= :data:`MIN_SLOPE_LAPS` (5)
  of them spanning >= 4 laps of TyreLife. Every lap of the stint carries it: at lap N the model
  predicts the slope the whole stint will show, from what is known at lap N.
* **Rate model**: three quantile LightGBM boosters (alpha 0.1 / 0.5 / 0.9) give ``DegRate`` (the
  median) and ``DegRateP10`` / ``DegRateP90``. The band is widened (or narrowed) by one constant,
  chosen on the validation races so that 80% of their rows fall inside (split-conformal, CQR);
  the three outputs are sorted per row, so P10 <= DegRate <= P90. All three are monotone
  non-decreasing in TyreLife (older tyres never predict a lower rate).
* **FalloffScore** (0..1): the pace a stint has lost since new on the predicted rate,
  ``clip(max(DegRate, 0) * TyreLife / FALLOFF_CAP_S, 0, 1)`` with :data:`FALLOFF_CAP_S` = 2.0 s
  (2 s of fuel-corrected loss = fully worn). Monotone in TyreLife, like DegRate.
* **Cliff** (``CliffNext3``, the classifier's label, lap N): ``Reference`` = the median
  FuelCorrectedLapTime of the driver's last 3 clean laps of this stint up to lap N (needs 3).
  A lap N+k (k = 1..3, same stint, consecutive LapNumbers) *qualifies* when it is clean and in
  free air (IntervalAhead missing or > :data:`FREE_AIR_S` = 1.5 s: not stuck behind a car). The
  label is True when some qualifying lap is >= :data:`CLIFF_S` (1.0 s) slower fuel-corrected
  than Reference, False when at least one lap qualifies and none is, undefined otherwise.
  ``CliffProbability`` comes from a binary LightGBM, monotone non-decreasing in TyreLife.
* **Features**: the ``tyre_deg_v1`` FeatureService (lap_stint + lap_pace); ``Compound`` is
  categorical, absolute lap times are given relative to the anchor (Last3Median, else LapTime).

Baselines: the causal ``StintDegSlope`` so far (the compound median from the training races
while it is undefined) and the compound median alone; for the cliff, the training races' cliff
frequency per (Compound, 5-lap TyreLife bucket).

This module fits, predicts, evaluates and holds ``RECIPE``; the rest is split by concern and
re-exported here: ``tyre_deg_labels`` (settings, labels, features) and ``tyre_deg_metrics`` (baselines, metrics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base, registry
from stratx.functions.models.tyre_deg_labels import (
    BAND_TARGET,
    CLIFF,
    CLIFF_HORIZON,
    CLIFF_S,
    COMPOUNDS,
    DRY,
    FALLOFF_CAP_S,
    FREE_AIR_S,
    LIFE_BUCKET,
    MIN_LIFE_SPAN,
    MIN_SLOPE_LAPS,
    MONOTONE_INCREASING,
    OUTLIER_S,
    QUANTILES,
    RATE,
    REFERENCE,
    RELATIVE_TO_ANCHOR,
    SERVICE_FEATURES,
    STINT_KEYS,
    anchor,
    cliff_labels,
    feature_matrix,
    labelled,
    monotone_constraints,
    realised_rates,
)
from stratx.functions.models.tyre_deg_metrics import (
    cliff_baseline,
    cliff_frequency,
    cliff_metrics,
    compound_medians,
    rate_baselines,
    rate_metrics,
)

MODEL_NAME = registry.spec("tyre_deg").model_name
FEATURE_SERVICE = "tyre_deg_v1"
# ------------------------------------------------------------------ fit, predict, evaluate
# Chosen on the validation races only.
LGB_PARAMS: dict[str, Any] = {
    "learning_rate": 0.2,
    "max_bin": 63,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 0,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
# The cliff classifier learns slower: 0.05 gave the best validation AUC (0.2 stops after 7 trees).
CLIFF_OBJECTIVE: dict[str, Any] = {"objective": "binary", "learning_rate": 0.05}
MAX_ROUNDS = 400
EARLY_STOPPING = 30
SELECTION_METRIC = "val_model_rate_mae"
ENVELOPE_CHUNK = 200_000  # rows per model call of the TyreLife envelope (bounds its memory on whole corpora)


def fit_booster(
    x: pd.DataFrame,
    y: pd.Series,
    split: pd.Series,
    objective: dict[str, Any],
    rounds: int = MAX_ROUNDS,
    params: dict[str, Any] | None = None,
    progress: bool = False,
    name: str = "rate",
) -> Any:
    """One LightGBM booster on the train races' rows, early-stopped on the validation races'."""
    import lightgbm as lgb

    p = {**LGB_PARAMS, **objective, **(params or {})}
    if p["objective"] != "quantile":  # LightGBM refuses it there (see life_envelope)
        p["monotone_constraints"] = monotone_constraints(list(x.columns))
    train, val = (split == "train").to_numpy(), (split == "validation").to_numpy()
    if not train.any():
        raise ValueError("no training rows: every race is a test or validation race")
    data = lgb.Dataset(x[train], y[train], categorical_feature=["Compound"])
    valid_sets, callbacks = [], []
    if val.any():
        valid_sets = [lgb.Dataset(x[val], y[val], reference=data)]
        callbacks.append(lgb.early_stopping(EARLY_STOPPING, verbose=False))
    with base.rounds_progress(rounds, f"tyre-deg {name} trees", progress) as tick:
        return lgb.train(p, data, rounds, valid_sets=valid_sets, callbacks=[*callbacks, tick])


def life_thresholds(booster: Any) -> list[float]:
    """The TyreLife split thresholds of a booster, sorted (its prediction is constant between them)."""
    model = booster.dump_model()
    column = model["feature_names"].index("TyreLife")
    found: set[float] = set()

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            if node["split_feature"] == column:
                found.add(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in model["tree_info"]:
        walk(tree["tree_structure"])
    return sorted(found)


def life_envelope(booster: Any, m: np.ndarray, life: int, thresholds: list[float]) -> np.ndarray:
    """The booster's prediction over model matrix ``m`` (``TyreLife`` in column ``life``) made
    monotone non-decreasing in TyreLife: per row, the maximum of its predictions at every TyreLife
    <= the row's (``thresholds`` + the row's own value stand for every piece of the
    piecewise-constant response). LightGBM refuses monotone constraints with the quantile
    objective; this gives the same guarantee. Rows without a TyreLife keep the raw value."""
    it = booster.best_iteration or None
    cuts = np.asarray(thresholds, dtype=float)
    # every (threshold, older row) pair, threshold by threshold; the first model call also scores m
    at, rows_at = np.nonzero(np.isfinite(m[:, life]) & (m[:, life] > cuts[:, None]))
    out = np.empty(0)
    for start in range(0, max(len(rows_at), 1), ENVELOPE_CHUNK):
        chunk = slice(start, start + ENVELOPE_CHUNK)
        younger = m[rows_at[chunk]]
        younger[:, life] = cuts[at[chunk]]
        if start == 0:
            scored = np.asarray(booster.predict(np.vstack([m, younger]), num_iteration=it), dtype=float)
            out, scored = scored[: len(m)].copy(), scored[len(m) :]
        else:
            scored = booster.predict(younger, num_iteration=it)
        np.maximum.at(out, rows_at[chunk], scored)
    return out


def _raw(bundle: base.ModelBundle, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """:func:`raw_predictions` as arrays (one-row frames: a frame per call costs more than the
    trees). The model matrix is built once per category list the boosters were trained with (one, in
    practice): what ``boosters.matrix(feature_matrix(rows), booster.pandas_categorical)`` gives."""
    if rows.shape[0] == 0:
        raise ValueError("Input data must be 2 dimensional and non empty.")
    base_values = base.anchor_values(rows)
    built: dict[str, np.ndarray] = {}

    def x(booster: Any) -> np.ndarray:
        trained = booster.pandas_categorical
        if repr(trained) not in built:
            built[repr(trained)] = base.lap_array(
                rows, SERVICE_FEATURES, RELATIVE_TO_ANCHOR, base_values, COMPOUNDS, trained
            )
        return built[repr(trained)]

    cuts = bundle.meta.get("life_thresholds", {})
    life = SERVICE_FEATURES.index("TyreLife")
    out = {}
    for name in QUANTILES:
        booster = bundle.boosters[name]
        thresholds = cuts[name] if name in cuts else life_thresholds(booster)
        out[name] = life_envelope(booster, x(booster), life, thresholds)
    cliff = bundle.boosters["cliff"]
    out["cliff"] = np.asarray(
        cliff.predict(x(cliff), num_iteration=cliff.best_iteration or None), dtype=float
    )
    return out


def raw_predictions(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """Uncalibrated quantiles (monotone in TyreLife) and the cliff probability per LapFeatures row."""
    return pd.DataFrame(_raw(bundle, rows), index=rows.index)


def predict(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """``DegRate``, ``DegRateP10``, ``DegRateP90`` (s/lap), ``FalloffScore`` (0..1) and
    ``CliffProbability`` per LapFeatures row."""
    raw = _raw(bundle, rows)
    widen = float(bundle.meta.get("band_widening", 0.0))
    q = np.sort(np.column_stack([raw["p10"] - widen, raw["p50"], raw["p90"] + widen]), axis=1)
    life = base.floats(rows, ["TyreLife"])[:, 0]
    life = np.where(np.isnan(life), 0.0, life)
    falloff = np.clip(np.maximum(q[:, 1], 0.0) * life / FALLOFF_CAP_S, 0.0, 1.0)
    return pd.DataFrame(
        {
            "DegRate": q[:, 1],
            "DegRateP10": q[:, 0],
            "DegRateP90": q[:, 2],
            "FalloffScore": falloff,
            "CliffProbability": raw["cliff"],
        },
        index=rows.index,
    )


def band_widening(realised: np.ndarray, p10: np.ndarray, p90: np.ndarray, coverage: float = 0.8) -> float:
    """Split-conformal (CQR) constant: the ``coverage`` quantile of max(P10 - y, y - P90) on the
    calibration rows; adding it to both band ends makes ``coverage`` of them fall inside."""
    score = np.maximum(p10 - realised, realised - p90)
    return float(np.quantile(score, coverage)) if len(score) else 0.0


def fit(
    corpus: base.Corpus,
    split: base.Splitter = base.race_split,
    progress: bool = False,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
) -> tuple[base.ModelBundle, dict[str, float]]:
    """Fit the three rate quantiles and the cliff classifier on the train races, early-stop them
    and calibrate the band on the validation races; returns the bundle and ``val_`` metrics."""
    frame = labelled(corpus.laps)
    where = split(frame)
    has_rate, has_cliff = frame[RATE].notna(), frame[CLIFF].notna()
    x = feature_matrix(frame)
    boosters: dict[str, Any] = {}
    for name, alpha in QUANTILES.items():
        objective = {"objective": "quantile", "alpha": alpha}
        y = frame.loc[has_rate, RATE]
        boosters[name] = fit_booster(
            x[has_rate], y, where[has_rate], objective, rounds, params, progress, name
        )
    y = frame.loc[has_cliff, CLIFF].astype(float)
    boosters["cliff"] = fit_booster(
        x[has_cliff], y, where[has_cliff], CLIFF_OBJECTIVE, rounds, params, progress, "cliff"
    )
    train = frame[where == "train"]
    medians = compound_medians(train)
    cliff_table, cliff_rate = cliff_frequency(train)
    meta: dict[str, Any] = {
        "target": "stint_fuel_corrected_deg_slope_s_per_lap",
        "features": list(SERVICE_FEATURES),
        "params": {**LGB_PARAMS, **(params or {})},
        "cliff_objective": CLIFF_OBJECTIVE,
        "best_iterations": {n: b.best_iteration or b.current_iteration() for n, b in boosters.items()},
        "life_thresholds": {n: life_thresholds(boosters[n]) for n in QUANTILES},
        "compound_median_rate": medians,
        "cliff_frequency": cliff_table,
        "cliff_base_rate": cliff_rate,
        "band_widening": 0.0,
    }
    bundle = base.ModelBundle("tyre_deg", boosters, meta)
    val = frame[(where == "validation") & (has_rate | has_cliff)]
    if val.empty:
        return bundle, {}
    calib = val[val[RATE].notna()]
    if not calib.empty:
        raw = raw_predictions(bundle, calib)
        p10, p50, p90 = (raw[q].to_numpy(float) for q in QUANTILES)
        lo, hi = np.minimum(p10, p50), np.maximum(p90, p50)
        meta["band_widening"] = band_widening(calib[RATE].to_numpy(float), lo, hi)
    scored = val.join(predict(bundle, val))
    metrics = {**rate_metrics(scored, medians), **cliff_metrics(scored, cliff_table, cliff_rate)}
    metrics["band80_widening"] = meta["band_widening"]
    return bundle, {f"val_{k}": v for k, v in metrics.items()}


def evaluate(bundle: base.ModelBundle, corpus: base.Corpus) -> base.Evaluation:
    frame = labelled(corpus.laps)
    frame = frame[frame[RATE].notna() | frame[CLIFF].notna()]
    if frame.empty:
        raise ValueError("no stint with a realised rate or a cliff label to score")
    scored = frame.join(predict(bundle, frame))
    medians = bundle.meta.get("compound_median_rate", {})
    table, rate = bundle.meta.get("cliff_frequency", {}), float(bundle.meta.get("cliff_base_rate", 0.0))

    def metrics(rows: pd.DataFrame) -> dict[str, float]:
        return {**rate_metrics(rows, medians), **cliff_metrics(rows, table, rate)}

    overall = metrics(scored)
    per_race = base.per_race(scored, metrics)
    return base.Evaluation(
        metrics=overall,
        scored=scored,
        races=base.race_names(scored),
        targets=[base.Target("band80_coverage", overall["band80_coverage"], "in", BAND_TARGET)],
        per_race=per_race,
        notes=[
            "Rate label: OLS slope of FuelCorrectedLapTime vs TyreLife over the stint's clean laps "
            f"(<= {OUTLIER_S} s above the stint median, >= {MIN_SLOPE_LAPS} laps); every lap of the "
            "stint is scored against it. Dry compounds only.",
            f"Cliff label: a clean free-air lap in the next {CLIFF_HORIZON} laps of the stint >= "
            f"{CLIFF_S} s slower (fuel-corrected) than the median of the last 3 clean laps.",
        ],
    )


RECIPE = base.Recipe(
    key="tyre_deg",
    model_name=MODEL_NAME,
    feature_service=FEATURE_SERVICE,
    service_features=SERVICE_FEATURES,
    selection_metric=SELECTION_METRIC,
    fit=fit,
    evaluate=evaluate,
    predict=predict,
    description="stint's fuel-corrected degradation rate (s/lap) with an 80% band, falloff 0..1, "
    "cliff probability in the next 3 laps",
)


__all__ = [
    "BAND_TARGET",
    "CLIFF",
    "CLIFF_HORIZON",
    "CLIFF_OBJECTIVE",
    "CLIFF_S",
    "COMPOUNDS",
    "DRY",
    "EARLY_STOPPING",
    "FALLOFF_CAP_S",
    "FEATURE_SERVICE",
    "FREE_AIR_S",
    "LGB_PARAMS",
    "LIFE_BUCKET",
    "MAX_ROUNDS",
    "MIN_LIFE_SPAN",
    "MIN_SLOPE_LAPS",
    "MODEL_NAME",
    "MONOTONE_INCREASING",
    "OUTLIER_S",
    "QUANTILES",
    "RATE",
    "RECIPE",
    "REFERENCE",
    "RELATIVE_TO_ANCHOR",
    "SELECTION_METRIC",
    "SERVICE_FEATURES",
    "STINT_KEYS",
    "anchor",
    "band_widening",
    "cliff_baseline",
    "cliff_frequency",
    "cliff_labels",
    "cliff_metrics",
    "compound_medians",
    "evaluate",
    "feature_matrix",
    "fit",
    "fit_booster",
    "labelled",
    "life_envelope",
    "life_thresholds",
    "monotone_constraints",
    "predict",
    "rate_baselines",
    "rate_metrics",
    "raw_predictions",
    "realised_rates",
]
