"""Model 3, pit window: P(the driver pits within the next 3 laps), a recommended window of in-laps,
the circuit's pit-lane loss and an undercut score.

Definitions (every number the recipe reports rests on these):

* **Stop**: a lap whose raw Lap event has a ``PitInTime`` (the *in-lap*) and whose driver completes
  the next lap (a retirement into the pits is not a stop). Drive-through/stop-go penalties count
  (a handful); stops under a safety car are kept (they are real stops). A stop is *neutralised*
  when its in-lap's ``TrackStatus`` holds 4 (SC), 5 (red flag), 6 or 7 (VSC).
* **Label** ``Pit3`` of driver-lap N: a stop of the same driver has its in-lap in N+1..N+3. It is
  undefined (row dropped) when no stop is in the horizon and the driver's last lap is before N+3,
  unless the driver reached the race's final lap (no stop can follow the flag: label 0).
* **RaceLaps**: the race's highest LapNumber (the winner's laps), i.e. the scheduled distance,
  which is known before the start (differs only for shortened races); ``LapsRemaining`` =
  RaceLaps - LapNumber, ``RaceProgress`` = LapNumber / RaceLaps.
* **Pit-lane loss** (``PitLossSeconds``) of a circuit (EventName): the median, over the green stops
  of the fitted races, of in-lap LapTime + out-lap LapTime - 2 x the driver's clean rolling median
  ``Last5Median`` on the lap before the in-lap. Unknown circuits get the median over circuits.
* **Track status now**: ``SafetyCarNow`` (code 4 on lap N), ``VSCNow`` (6 or 7), ``RedFlagNow``
  (5), from the raw lap's ``TrackStatus`` (NaN when a serving row has no TrackStatus).
* **Features**: the ``pit_window_v1`` FeatureService (lap_stint + lap_gaps + lap_pace) with
  absolute pace columns relative to ``Last3Median`` (else LapTime), plus the derived columns above.
  Monotone: P never decreases with ``TyreLife``, ``LapsInStint`` or ``StintDegSlope``.
* **Baseline**: a per-compound tyre-age hazard table (the train races' Pit3 rate per Compound and
  TyreLife, shrunk towards the compound's rate with weight :data:`PRIOR_ROWS`).
* **Window** at lap N: the model is rolled forward k = 0, 1, ... laps (tyre and lap counters aged,
  fuel burnt, track status green, pace relative to the anchor unchanged); the 3-lap probability
  p_k becomes a per-lap hazard h_k = 1 - (1 - p_k)^(1/3) for in-lap N+1+k, and the cumulative stop
  probability F gives ``WindowOpenLap`` = first in-lap with F >= lo and ``WindowCloseLap`` = first
  with F >= hi (last possible in-lap if never reached); no window (NaN) when F never reaches lo.
  (lo, hi) are chosen on the validation races (:func:`choose_quantiles`).
* **Stops in window**: for each stop with in-lap L, the window recommended at the end of lap
  max(L - :data:`WINDOW_LEAD`, the stint's first lap); the share of stops with L inside it.
* **Undercut pair**: car B, within :data:`UNDERCUT_GAP` s behind car A at the line on lap L-1
  (``IntervalAhead``, same lap), makes a green stop on lap L while A pits 1..:data:`UNDERCUT_LAPS`
  laps later (green). Success: B crosses the line before A at the end of A's out-lap. The undercut
  model scores it from lap L-1 information only (gap, both tyre ages and deg slopes, pace, pit loss).

This module fits, predicts, evaluates and holds ``RECIPE``; the rest is split by concern and
re-exported here: ``pit_window_labels`` (settings, labels, circuit tables, features, baseline),
``pit_window_windows`` (the recommended window) and ``pit_window_undercut``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base, registry
from stratx.functions.models.boosters import booster_predict
from stratx.functions.models.pit_window_labels import (
    COMPOUNDS,
    DERIVED,
    DRIVER,
    EARLY_STOPPING,
    FEATURES,
    HI_GRID,
    HORIZON,
    IN_LAP,
    LABEL,
    LO_GRID,
    MAX_LOOKAHEAD,
    MAX_ROUNDS,
    MONOTONE_INCREASING,
    NEUTRALISED_CODES,
    PIT_BOOSTER,
    PIT_PARAMS,
    PRIOR_ROWS,
    RACE,
    RELATIVE_TO_ANCHOR,
    SELECTION_METRIC,
    SERVICE_FEATURES,
    TARGET_SHARE,
    UNDERCUT_ANCHOR,
    UNDERCUT_BOOSTER,
    UNDERCUT_FEATURES,
    UNDERCUT_GAP,
    UNDERCUT_LAPS,
    UNDERCUT_PARAMS,
    UNDERCUT_ROUNDS,
    WINDOW_LEAD,
    derived_columns,
    feature_matrix,
    hazard_predict,
    hazard_table,
    lookup,
    monotone_constraints,
    pit_labels,
    pit_loss_table,
    race_laps,
    stops,
    with_derived,
)
from stratx.functions.models.pit_window_undercut import (
    car_ahead,
    undercut_features,
    undercut_metrics,
    undercut_pairs,
    undercut_scores,
)
from stratx.functions.models.pit_window_windows import (
    AGED,
    GREEN_NOW,
    aged,
    aged_matrix,
    cdf_of,
    choose_quantiles,
    lead_rows,
    pit_metrics,
    rolled_matrix,
    stop_cdf,
    window_laps,
    window_metrics,
    windows,
)

MODEL_NAME = registry.spec("pit_window").model_name
FEATURE_SERVICE = "pit_window_v1"


# ------------------------------------------------------------------ fit, predict, evaluate
def circuit_meta(frame: pd.DataFrame, raw_laps: pd.DataFrame) -> dict[str, Any]:
    """Per-circuit RaceLaps and pit-lane loss from the given (non-test) races."""
    laps_by_event = frame.groupby("EventName")["RaceLaps"].median()
    return {
        "race_laps": {str(k): float(v) for k, v in laps_by_event.items()},
        "pit_loss": pit_loss_table(frame, raw_laps),
    }


def fit_pit_booster(
    frame: pd.DataFrame, where: pd.Series, params: dict[str, Any], rounds: int, progress: bool
) -> Any:
    """Binary LightGBM on the train races' labelled rows, early-stopped on the validation races'."""
    import lightgbm as lgb

    x, y = feature_matrix(frame), frame[LABEL].astype(float)
    train, val = (where == "train").to_numpy(), (where == "validation").to_numpy()
    if not train.any():
        raise ValueError("no training rows: every race is a test or validation race")
    params = {**params, "monotone_constraints": monotone_constraints(list(x.columns))}
    data = lgb.Dataset(x[train], y[train], categorical_feature=["Compound"])
    valid, callbacks = [], []
    if val.any():
        valid = [lgb.Dataset(x[val], y[val], reference=data)]
        callbacks.append(lgb.early_stopping(EARLY_STOPPING, verbose=False))
    with base.rounds_progress(rounds, "pit-window trees", progress) as tick:
        return lgb.train(params, data, rounds, valid_sets=valid, callbacks=[*callbacks, tick])


def fit_undercut_booster(pairs: pd.DataFrame, rounds: int = UNDERCUT_ROUNDS) -> Any:
    """Small LightGBM on the train races' undercut pairs (fixed rounds; the sample is small)."""
    import lightgbm as lgb

    if pairs.empty:
        raise ValueError("no undercut pairs in the training races")
    x = pairs[list(UNDERCUT_FEATURES)].astype(float)
    mono = [-1 if c == "Gap" else 0 for c in UNDERCUT_FEATURES]
    data = lgb.Dataset(x, pairs["Success"].astype(float))
    return lgb.train({**UNDERCUT_PARAMS, "monotone_constraints": mono}, data, rounds)


def labelled(corpus: base.Corpus, meta: dict[str, Any] | None = None) -> pd.DataFrame:
    """:func:`pit_labels` rows with derived columns (``meta`` None: only labels and RaceLaps)."""
    frame = pit_labels(corpus.laps, corpus.raw_laps)
    return frame if meta is None else with_derived(frame, meta)


def fit(
    corpus: base.Corpus,
    split: base.Splitter = base.race_split,
    progress: bool = False,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
) -> tuple[base.ModelBundle, dict[str, float]]:
    frame = labelled(corpus)
    fitted = (split(frame) != "test").to_numpy()
    raw_fitted = corpus.raw_laps[(split(corpus.raw_laps) != "test").to_numpy()]
    meta: dict[str, Any] = circuit_meta(frame[fitted], raw_fitted)
    frame = with_derived(frame, meta)
    where = split(frame)
    rows = frame[LABEL].notna().to_numpy()
    booster = fit_pit_booster(frame[rows], where[rows], {**PIT_PARAMS, **(params or {})}, rounds, progress)
    train_rows = rows & (where == "train").to_numpy()
    meta["hazard"] = hazard_table(frame[train_rows])
    val = where == "validation"
    leads = lead_rows(frame[val.to_numpy()])
    cdf = stop_cdf(booster, leads)
    meta["window_quantiles"] = list(choose_quantiles(leads, cdf)) if len(leads) else [0.1, 0.9]
    pairs = undercut_pairs(frame)
    pair_split = split(pairs) if len(pairs) else pd.Series(dtype=object)
    undercut = fit_undercut_booster(pairs[(pair_split == "train").to_numpy()])
    meta.update(
        features=list(FEATURES),
        undercut_features=list(UNDERCUT_FEATURES),
        params={**PIT_PARAMS, **(params or {})},
        best_iteration=booster.best_iteration or booster.current_iteration(),
    )
    bundle = base.ModelBundle("pit_window", {PIT_BOOSTER: booster, UNDERCUT_BOOSTER: undercut}, meta)
    metrics: dict[str, float] = {}
    vrows = frame[rows & val.to_numpy()]
    if len(vrows):
        p = booster_predict(booster, feature_matrix(vrows), num_iteration=booster.best_iteration or None)
        metrics.update(pit_metrics(vrows, p, hazard_predict(meta["hazard"], vrows)))
        lo, hi = meta["window_quantiles"]
        metrics.update(window_metrics(leads, windows(leads, cdf, lo, hi)))
        vpairs = pairs[(pair_split == "validation").to_numpy()]
        if len(vpairs):
            score = booster_predict(undercut, vpairs[list(UNDERCUT_FEATURES)].astype(float))
            metrics.update(undercut_metrics(vpairs, score))
    return bundle, {f"val_{k}": v for k, v in metrics.items()}


def predict(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """Per LapFeatures row: ``PitProbability3Laps``, ``WindowOpenLap``/``WindowCloseLap`` (in-laps),
    ``PitLossSeconds`` and ``UndercutScore``. Optional row columns that sharpen it: ``EventName``
    (circuit tables), ``RaceLaps`` (scheduled laps), ``TrackStatus`` (raw lap status string)."""
    frame = rows if "EventName" in rows.columns else rows.assign(EventName="")
    if frame.shape[0] == 0:
        raise ValueError("Input data must be 2 dimensional and non empty.")
    derived = derived_columns(frame, bundle.meta)
    booster = bundle.boosters[PIT_BOOSTER]
    x = base.lap_array(
        frame, FEATURES, RELATIVE_TO_ANCHOR, base.anchor_values(frame), COMPOUNDS,
        booster.pandas_categorical, given=derived,
    )  # fmt: skip
    rolled = rolled_matrix(booster, x)  # column 0: the row as it is (one booster call)
    lo, hi = bundle.meta["window_quantiles"]
    lap = x[:, FEATURES.index("LapNumber")]
    open_lap, close_lap = window_laps(
        lap, derived["RaceLaps"], cdf_of(lap, derived["RaceLaps"], rolled), lo, hi
    )
    undercut = np.full(len(frame), np.nan)
    gap = x[:, FEATURES.index("IntervalAhead")]
    if len(frame) > 1 and ((gap > 0) & (gap <= UNDERCUT_GAP)).any():  # else no pair to score
        keys = ("SessionKey",) if "SessionKey" in frame.columns else RACE
        full = with_derived(frame, bundle.meta, derived)
        undercut = undercut_scores(bundle.boosters[UNDERCUT_BOOSTER], full, keys)
    return pd.DataFrame(
        {
            "PitProbability3Laps": rolled[:, 0],
            "WindowOpenLap": open_lap,
            "WindowCloseLap": close_lap,
            "PitLossSeconds": derived["PitLossSeconds"],
            "UndercutScore": undercut,
        },
        index=rows.index,
    )


def evaluate(bundle: base.ModelBundle, corpus: base.Corpus) -> base.Evaluation:
    frame = labelled(corpus, bundle.meta)
    rows = frame[frame[LABEL].notna().to_numpy()].copy()
    if rows.empty:
        raise ValueError("no driver-laps with a Pit3 label to score")
    booster = bundle.boosters[PIT_BOOSTER]
    rows["PitProbability3Laps"] = booster_predict(
        booster, feature_matrix(rows), num_iteration=booster.best_iteration or None
    )
    rows["BaselinePit3"] = hazard_predict(bundle.meta["hazard"], rows)
    metrics = pit_metrics(rows, rows["PitProbability3Laps"].to_numpy(), rows["BaselinePit3"].to_numpy())
    leads = lead_rows(frame)
    win = windows(leads, stop_cdf(booster, leads), *bundle.meta["window_quantiles"])
    metrics.update(window_metrics(leads, win))
    pairs = undercut_pairs(frame)
    score = (
        booster_predict(bundle.boosters[UNDERCUT_BOOSTER], pairs[list(UNDERCUT_FEATURES)].astype(float))
        if len(pairs)
        else np.array([])
    )
    metrics.update(undercut_metrics(pairs, score))
    per_race = {}
    for (year, event), g in rows.groupby(list(RACE), sort=True):
        per_race[f"{year} {event}"] = {
            "model_pit3_auc_roc": base.auc_roc(
                g[LABEL].astype(bool).to_numpy(), g["PitProbability3Laps"].to_numpy()
            ),
            "model_pit3_brier": base.brier(
                g[LABEL].astype(float).to_numpy(), g["PitProbability3Laps"].to_numpy()
            ),
        }
    leads = pd.concat([leads, win], axis=1).assign(Kind="window")
    pairs = pairs.assign(UndercutScore=score, Kind="undercut")
    return base.Evaluation(
        metrics=metrics,
        scored=pd.concat([rows.assign(Kind="lap"), leads, pairs], ignore_index=True),
        races=base.race_names(rows),
        targets=[
            base.Target("undercut_model_auc_roc", metrics["undercut_model_auc_roc"], ">=", UNDERCUT_ANCHOR),
            base.Target(
                "model_minus_baseline_pit3_auc_roc",
                metrics["model_pit3_auc_roc"] - metrics["baseline_pit3_auc_roc"],
                ">=",
                0.0,
            ),
        ],
        per_race=per_race,
        notes=[
            f"window quantiles (lo, hi) = {tuple(bundle.meta['window_quantiles'])}, chosen on validation races",
            f"undercut AUC rests on {len(pairs)} pairs only: a small sample, read it with its n",
        ],
    )


RECIPE = base.Recipe(
    key="pit_window",
    model_name=MODEL_NAME,
    feature_service=FEATURE_SERVICE,
    service_features=SERVICE_FEATURES,
    selection_metric=SELECTION_METRIC,
    fit=fit,
    evaluate=evaluate,
    predict=predict,
    description="P(pit within 3 laps), recommended in-lap window, pit-lane loss and undercut score",
)


__all__ = [
    "AGED",
    "COMPOUNDS",
    "DERIVED",
    "DRIVER",
    "EARLY_STOPPING",
    "FEATURES",
    "FEATURE_SERVICE",
    "GREEN_NOW",
    "HI_GRID",
    "HORIZON",
    "IN_LAP",
    "LABEL",
    "LO_GRID",
    "MAX_LOOKAHEAD",
    "MAX_ROUNDS",
    "MODEL_NAME",
    "MONOTONE_INCREASING",
    "NEUTRALISED_CODES",
    "PIT_BOOSTER",
    "PIT_PARAMS",
    "PRIOR_ROWS",
    "RACE",
    "RECIPE",
    "RELATIVE_TO_ANCHOR",
    "SELECTION_METRIC",
    "SERVICE_FEATURES",
    "TARGET_SHARE",
    "UNDERCUT_ANCHOR",
    "UNDERCUT_BOOSTER",
    "UNDERCUT_FEATURES",
    "UNDERCUT_GAP",
    "UNDERCUT_LAPS",
    "UNDERCUT_PARAMS",
    "UNDERCUT_ROUNDS",
    "WINDOW_LEAD",
    "aged",
    "aged_matrix",
    "car_ahead",
    "choose_quantiles",
    "circuit_meta",
    "evaluate",
    "feature_matrix",
    "fit",
    "fit_pit_booster",
    "fit_undercut_booster",
    "hazard_predict",
    "hazard_table",
    "labelled",
    "lead_rows",
    "lookup",
    "monotone_constraints",
    "pit_labels",
    "pit_loss_table",
    "pit_metrics",
    "predict",
    "race_laps",
    "stop_cdf",
    "stops",
    "undercut_features",
    "undercut_metrics",
    "undercut_pairs",
    "undercut_scores",
    "window_metrics",
    "windows",
    "with_derived",
]
