"""Model 4, overtake: P(the car behind passes the car ahead on track within 1, 2, 3 laps).

Recipe (shared by training, evaluation and serving):

* **Pair row** (:func:`pair_rows`): on lap N, the car behind **B** and the car ahead **A** are
  adjacent in the order of crossing the timing line at the end of lap N (``PositionOnLap`` of B =
  A's + 1). Both have completed the same lap N, so a lapped car is never half of a pair (it
  crosses the line of an earlier lap). The row carries B's LapFeatures columns unprefixed and A's
  with the prefix ``Ahead`` (``AheadTyreLife``, ``AheadCompound``, ``AheadDriverNumber`` ...).
* **Rows kept for training and scoring** (:func:`labelled_pairs`): neither car enters the pit lane
  on lap N (``PitInTime`` set: its line crossing is in the pit lane, not a track position), and
  lap N is not neutralised (B's ``TrackStatus`` on lap N has no '4' safety car, '5' red flag, '6'/'7'
  virtual safety car: the cars are not racing, so their gaps say nothing). Laps N+1..N+3 may be
  neutralised: no pass under a safety car is the real outcome and stays a negative.
* **Label** ``Overtake{h}`` for horizon h in 1, 2, 3: lap N+k is *comparable* when both cars
  complete it and neither has ``PitInTime`` or ``PitOutTime`` on it. B *passes* A on lap N+k when
  B's lap N+k ends (``SessionTime``) before A's. ``Overtake{h}`` = 1 when B passes A on some lap
  N+k, k <= h, with laps N+1..N+k all comparable; = 0 when laps N+1..N+h are all comparable and B
  never passes; otherwise NA (censored: a stop, a retirement or the chequered flag came first, so
  a position change there would be caused by a pit stop or a retirement, not an overtake). The
  model therefore estimates P(pass within h laps | both cars stay out and keep running).
* **Features** (:func:`feature_matrix`): the gap ``IntervalAhead`` (monotone: the probability never
  rises with the gap) and ``InDRSRange`` (never lowers it), pace deltas B minus A
  (``DeltaToCarAhead``, Last3/Last5 medians, ``StintDegSlope``), tyre deltas (``TyreLife``,
  compound softness step), ``LapsInStint`` of both (an out-lap car is on cold tyres), the car
  ahead's own ``IntervalAhead`` (it may have DRS on the car in front of it, a DRS train),
  ``LapNumber`` and ``PositionOnLap``, and ``CircuitPassRate``: the circuit's (``EventName``)
  share of 1-lap passes among training-race pairs (leave-one-race-out on the training races,
  shrunk to the overall rate; the overall rate for circuits without training races). No driver or
  team identity.
* **Models**: one LightGBM binary classifier per horizon, early-stopped on the validation races.
  **Baseline**: logistic regression of the label on the gap only (Newton/IRLS on the training
  races).
* **Metrics** per horizon h: ``base_rate_h{h}``, ``rows_h{h}``, and for ``model`` and
  ``gap_logistic``: ``{name}_h{h}_auc_roc``, ``_auc_pr`` (average precision), ``_brier``.

This module fits, predicts, evaluates and holds ``RECIPE``; the rest is split by concern and
re-exported here: ``overtake_pairs`` (settings, pair rows, labels, features) and ``overtake_metrics``
(gap-only logistic baseline, metrics).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from stratx.functions.models import base, registry
from stratx.functions.models.boosters import booster_predict
from stratx.functions.models.overtake_metrics import (
    GAP_CLIP_S,
    fit_logistic,
    gap_input,
    horizon_metrics,
    logistic,
    metrics_table,
)
from stratx.functions.models.overtake_pairs import (
    AHEAD,
    CIRCUIT_RATE_PRIOR_ROWS,
    COMPOUND_ORDER,
    FEATURES,
    HORIZONS,
    MONOTONE,
    NEUTRALISED,
    PAIR_COLUMNS,
    SERVICE_FEATURES,
    SESSION_KEYS,
    TEST_RACES,
    VALIDATION_RACES,
    circuit_rate,
    circuit_rates,
    compound_code,
    feature_array,
    feature_matrix,
    label,
    labelled_pairs,
    lap_flags,
    overtake_labels,
    pair_rows,
    prediction,
)

MODEL_NAME = registry.spec("overtake").model_name
FEATURE_SERVICE = "overtake_v3"
# ------------------------------------------------------------------ fit, predict, evaluate
# Chosen on the validation races only: num_leaves 7/15/31 and min_data_in_leaf 50-200 were within
# 0.005 AUC-PR of each other at every horizon; learning rate 0.06 with 63 bins matched 0.03 with 255
# bins (mean AUC-PR 0.700 vs 0.697) with half the trees.
LGB_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.06,
    "max_bin": 63,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "seed": 0,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
MAX_ROUNDS = 1500
EARLY_STOPPING = 100
SELECTION_METRIC = "val_model_h1_brier"
TARGET_AUC_PR_H1 = 0.55


def booster_name(h: int) -> str:
    return f"h{h}"


def fit_booster(
    x: pd.DataFrame,
    y: pd.Series,
    split: pd.Series,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
    progress: bool = False,
    desc: str = "overtake trees",
) -> Any:
    """A binary LightGBM booster on the train rows with a label, early-stopped (log loss) on the
    validation rows; without validation rows it trains ``rounds`` trees."""
    import lightgbm as lgb

    params = {**LGB_PARAMS, **(params or {})}
    params["monotone_constraints"] = [MONOTONE.get(c, 0) for c in x.columns]
    labelled = y.notna()
    train, val = ((split == s) & labelled for s in ("train", "validation"))
    if not train.any():
        raise ValueError("no training rows: every race is a test or validation race")
    data = lgb.Dataset(x[train], y[train].astype(float))
    valid_sets: list[Any] = []
    callbacks: list[Any] = []
    if val.any():
        valid_sets = [lgb.Dataset(x[val], y[val].astype(float), reference=data)]
        callbacks.append(lgb.early_stopping(EARLY_STOPPING, verbose=False))
    with base.rounds_progress(rounds, desc, progress) as tick:
        return lgb.train(params, data, rounds, valid_sets=valid_sets, callbacks=[*callbacks, tick])


def training_rates(pairs: pd.DataFrame, split: pd.Series) -> tuple[dict[str, Any], pd.Series]:
    """Circuit pass rates from the training races, and ``CircuitPassRate`` per row (leave-one-race-
    out on training rows, the training races' rate elsewhere)."""
    train = (split == "train").to_numpy()
    rates = circuit_rates(pairs[train])
    rate = circuit_rate(pairs, rates)
    rate[train] = circuit_rate(pairs[train], rates, leave_race_out=True).to_numpy()
    return rates, rate


def score_pairs(bundle: base.ModelBundle, pairs: pd.DataFrame, rate: pd.Series | None = None) -> pd.DataFrame:
    """``pairs`` plus ``model_p{h}`` and ``gap_logistic_p{h}`` per horizon."""
    if rate is None:
        rate = circuit_rate(pairs, bundle.meta["circuit_rates"])
    x = feature_matrix(pairs, rate)
    out = pairs.copy()
    gap = gap_input(pairs)
    for h in HORIZONS:
        booster = bundle.boosters[booster_name(h)]
        out[f"model_p{h}"] = booster_predict(booster, x, num_iteration=booster.best_iteration or None)
        out[f"gap_logistic_p{h}"] = logistic(bundle.meta["gap_logistic"][str(h)], gap)
    return out


def fit(
    corpus: base.Corpus,
    split: base.Splitter = base.race_split,
    progress: bool = False,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
) -> tuple[base.ModelBundle, dict[str, float]]:
    pairs = labelled_pairs(corpus)
    where = split(pairs)
    rates, rate = training_rates(pairs, where)
    x = feature_matrix(pairs, rate)
    boosters: dict[str, Any] = {}
    coefs: dict[str, list[float]] = {}
    train = where == "train"
    for h in HORIZONS:
        y = pairs[label(h)]
        boosters[booster_name(h)] = fit_booster(x, y, where, params, rounds, progress, f"overtake h{h} trees")
        ok = train & y.notna()
        coefs[str(h)] = list(fit_logistic(gap_input(pairs[ok]), y[ok].to_numpy(dtype=float)))
    bundle = base.ModelBundle(
        "overtake",
        boosters,
        {
            "target": "P(car behind passes the car ahead on track within h laps), h = 1, 2, 3",
            "features": list(FEATURES),
            "service_features": list(SERVICE_FEATURES),
            "params": {**LGB_PARAMS, **(params or {})},
            "best_iteration": {k: b.best_iteration or b.current_iteration() for k, b in boosters.items()},
            "circuit_rates": rates,
            "gap_logistic": coefs,
        },
    )
    val = (where == "validation").to_numpy()
    metrics: dict[str, float] = {}
    if val.any():
        scored = score_pairs(bundle, pairs[val], rate[val])
        metrics = {f"val_{k}": v for k, v in metrics_table(scored).items()}
    return bundle, metrics


def predict(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """``OvertakeProbability1Lap``, ``...2Laps``, ``...3Laps`` per pair row (:func:`pair_rows` of
    LapFeatures rows; ``EventName`` selects the circuit pass rate, else the overall rate)."""
    if rows.shape[0] == 0:
        raise ValueError("Input data must be 2 dimensional and non empty.")
    rate = circuit_rate(rows, bundle.meta["circuit_rates"]).to_numpy(dtype=float)
    x = feature_array(rows, rate)  # :func:`score_pairs`' matrix, without copying the rows
    out = {}
    for h in HORIZONS:
        booster = bundle.boosters[booster_name(h)]
        out[prediction(h)] = booster.predict(x, num_iteration=booster.best_iteration or None)
    return pd.DataFrame(out, index=rows.index)


def evaluate(bundle: base.ModelBundle, corpus: base.Corpus) -> base.Evaluation:
    pairs = labelled_pairs(corpus)
    pairs = pairs[pairs[[label(h) for h in HORIZONS]].notna().any(axis=1)]
    if pairs.empty:
        raise ValueError("no labelled pairs to score")
    scored = score_pairs(bundle, pairs)
    overall = metrics_table(scored)
    per_race = base.per_race(scored, metrics_table)
    return base.Evaluation(
        metrics=overall,
        scored=scored,
        races=base.race_names(scored),
        targets=[base.Target("model_h1_auc_pr", overall["model_h1_auc_pr"], ">=", TARGET_AUC_PR_H1)],
        per_race=per_race,
        notes=[
            "Rows: adjacent pairs in line-crossing order on lap N; pit-entry laps and neutralised "
            "(SC/VSC/red) laps N dropped; censored horizons (a stop, retirement or the finish first) "
            "are not scored.",
        ],
    )


RECIPE = base.Recipe(
    key="overtake",
    model_name=MODEL_NAME,
    feature_service=FEATURE_SERVICE,
    service_features=SERVICE_FEATURES,
    selection_metric=SELECTION_METRIC,
    fit=fit,
    evaluate=evaluate,
    predict=predict,
    description="P(the car behind passes the car ahead on track within 1, 2, 3 laps)",
)


__all__ = [
    "AHEAD",
    "CIRCUIT_RATE_PRIOR_ROWS",
    "COMPOUND_ORDER",
    "EARLY_STOPPING",
    "FEATURES",
    "FEATURE_SERVICE",
    "GAP_CLIP_S",
    "HORIZONS",
    "LGB_PARAMS",
    "MAX_ROUNDS",
    "MODEL_NAME",
    "MONOTONE",
    "NEUTRALISED",
    "PAIR_COLUMNS",
    "RECIPE",
    "SELECTION_METRIC",
    "SERVICE_FEATURES",
    "SESSION_KEYS",
    "TARGET_AUC_PR_H1",
    "TEST_RACES",
    "VALIDATION_RACES",
    "booster_name",
    "circuit_rate",
    "circuit_rates",
    "compound_code",
    "evaluate",
    "feature_matrix",
    "fit",
    "fit_booster",
    "fit_logistic",
    "gap_input",
    "horizon_metrics",
    "label",
    "labelled_pairs",
    "lap_flags",
    "logistic",
    "metrics_table",
    "overtake_labels",
    "pair_rows",
    "predict",
    "prediction",
    "score_pairs",
    "training_rates",
]
