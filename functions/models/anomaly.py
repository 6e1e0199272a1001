"""Model 5, anomaly: a calibrated score for mechanical or driver irregularities, per lap and per
telemetry window, from how far the measured signals fall from what LightGBM expects.

* **Lap level** (every race): for each signal ``s`` of :data:`LAP_SIGNALS` (the speed traps
  SpeedI1, SpeedI2, SpeedFL, SpeedST in km/h and LapTime in s) a booster predicts
  ``s - Ref_s`` from context: ``Ref_s`` is the median of the driver's own in-scope values of ``s``
  over his previous 5 laps (LapTime: the feature ``Last3Median``), ``Field_s - Ref_s`` where
  ``Field_s`` is the median over the in-scope laps of the drivers who completed the same LapNumber
  earlier (causal: what the stream knows when the car crosses the line), plus Compound,
  TyreLife, FuelKg, LapNumber, PositionOnLap, IntervalAhead, InDRSRange, LapsInStint.
* **Window level** (5 s TelemetryWindow rows, races with car data): for each signal of
  :data:`WINDOW_SIGNALS` a booster predicts it from the *other* sensors' window metrics (its own
  sensor group is left out, so a broken sensor cannot explain itself; SpeedMax also leaves out
  RPM, which falls with it in a power loss), the previous window's SpeedMean and ``Ref_s``, the
  median of the driver's previous 36 in-scope windows (3 min).
* **Deficit** ``d_s``: the residual ``(actual - expected) / scale_s`` signed so that the fault
  direction is positive (slower speed, lower RPM, lower gear, less throttle, slower lap: ``-z``;
  more brake: ``+z``); ``scale_s`` = 1.4826 x MAD of the calibration residuals (floored).
  Lap statistic ``S`` = the median of the 5 lap deficits (>= 3 present), so at least 3 signals
  must agree (a power loss slows every trap; one glitchy trap or a driver's slow lap alone does
  not). Window statistic: real faults persist, feed oddities (BrakeShare 1.0 at 310 km/h) mostly
  do not, so per signal the *run deficit* = mean of the last :data:`RUN_WINDOWS` contiguous
  windows' deficits clipped to +-:data:`RUN_CLIP`, divided by its :data:`RUN_QUANTILE`
  calibration quantile (per-signal calibration), ``S = max_s``. ``AnomalySignal`` names the
  signal that drives ``S``. Window rows must come in driver / WindowStart order with the
  driver's previous windows (as :func:`window_rows` builds them and a stream delivers them).
* **Score**: ``AnomalyScore = 1 - exceed(S)``, ``exceed`` = share of calibration rows with a
  larger statistic (interpolated; above the largest, an exponential tail), so 0..1.
  ``AnomalyFlag = AnomalyScore >= threshold``, the lowest threshold giving at most
  :data:`ALARM_BUDGET_PER_HOUR` (0.4) alarms per race-hour per level on the calibration races,
  so a race with both levels expects <= 0.8 (issue: <= 1). The reported combined rate is the
  lap rate plus the window rate per hour of the races that have car telemetry.
* **Alarm**: a run of flagged in-scope rows of one driver (consecutive laps; windows <= 30 s
  apart). **In scope**: green-flag laps that the lap features call clean (or only deleted), and
  the windows inside them; other rows are scored but never counted as false alarms.
* **Split** (narrowed for the windows, as base.py allows): lap boosters train on the train races
  and calibrate on base.VALIDATION_RACES. Car telemetry exists in the repo only for the test races,
  so window boosters train on the bundled windows of :data:`WINDOW_FIT_RACES` (training races)
  and calibrate on :data:`WINDOW_CALIBRATION_RACES` (two other training races, never fitted on).
* **SYNTHETIC faults** (:func:`inject_faults`): evaluation only, always marked ``Synthetic=True``;
  episodes that persist 2-4 laps / 30-90 s, references recomputed from the faulty rows.
  ``synthetic_recall_<kind>`` = share of episodes with a flagged in-scope row,
  ``synthetic_delay_<kind>`` = median laps / seconds from onset to the first flag.

This module fits the boosters and holds ``RECIPE``; the rest is split by concern and re-exported
here: ``anomaly_rows`` (signals, settings, rows and matrices), ``anomaly_faults`` (SYNTHETIC
faults), ``anomaly_scoring`` (statistic, calibration, alarms, ``predict``) and
``anomaly_evaluation``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base, registry
from stratx.functions.models.anomaly_evaluation import (
    evaluate,
    level_metrics,
    retirements,
    slow_laps,
)
from stratx.functions.models.anomaly_faults import (
    inject_faults,
)
from stratx.functions.models.anomaly_rows import (
    ALARM_BUDGET_PER_HOUR,
    COMPOUNDS,
    EARLY_STOPPING,
    FAULT_KINDS,
    FAULT_LAPS,
    FAULT_WINDOWS,
    KEYS,
    LAP_CONTEXT,
    LAP_REF_LAPS,
    LAP_SIGNALS,
    LGB_PARAMS,
    MECHANICAL,
    ROUNDS,
    ROW_FIELDS,
    RUN_CLIP,
    RUN_GAP_S,
    RUN_QUANTILE,
    RUN_WINDOWS,
    SCALE_FLOOR,
    SENSOR_GROUPS,
    SERVICE_FEATURES,
    SLOW_LAP_S,
    SPEED_TRAPS,
    WINDOW_CALIBRATION_RACES,
    WINDOW_FIT_RACES,
    WINDOW_RACE_FOLDERS,
    WINDOW_REF_WINDOWS,
    WINDOW_SIGNALS,
    WINDOWS_FILE,
    _level,
    _matrix,
    _races,
    _target,
    direction,
    lap_matrix,
    lap_rows,
    rolling_median,
    signals,
    window_context,
    window_inputs,
    window_matrix,
    window_rows,
)
from stratx.functions.models.anomaly_scoring import (
    alarm_runs,
    calibrated,
    calibration_table,
    choose_threshold,
    deficits,
    predict,
    race_hours,
    run_deficits,
    score_rows,
    statistic,
)
from stratx.functions.models.boosters import booster_predict

MODEL_NAME = registry.spec("anomaly").model_name
FEATURE_SERVICE = "anomaly_v1"
SELECTION_METRIC = "val_synthetic_miss_rate"


# ------------------------------------------------------------------ fit, predict
def _fit_booster(x: pd.DataFrame, y: pd.Series, fit_rows: np.ndarray, stop_rows: np.ndarray) -> Any:
    import lightgbm as lgb

    ok = np.isfinite(y.to_numpy())
    train = lgb.Dataset(x[fit_rows & ok], y[fit_rows & ok])
    valid = (
        [lgb.Dataset(x[stop_rows & ok], y[stop_rows & ok], reference=train)] if (stop_rows & ok).any() else []
    )
    callbacks: list[Any] = [lgb.early_stopping(EARLY_STOPPING, verbose=False)] if valid else []
    return lgb.train(LGB_PARAMS, train, ROUNDS, valid_sets=valid, callbacks=callbacks)


def _fit_level(
    rows: pd.DataFrame, fit_rows: np.ndarray, cal_rows: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Boosters of one level, their residual scales, calibration table and threshold."""
    level = _level(rows)
    boosters: dict[str, Any] = {}
    scales: dict[str, float] = {}
    scope = rows["InScope"].to_numpy(dtype=bool)
    for s in signals(level):
        name = f"{level}_{s}"
        boosters[name] = _fit_booster(_matrix(rows, s), _target(rows, s), fit_rows & scope, cal_rows & scope)
        pred = booster_predict(boosters[name], _matrix(rows[cal_rows & scope], s))
        resid = _target(rows[cal_rows & scope], s).to_numpy() - pred
        mad = float(np.nanmedian(np.abs(resid - np.nanmedian(resid)))) * 1.4826
        scales[name] = max(mad, SCALE_FLOOR.get(s, 1.0))
    meta: dict[str, Any] = {"scales": scales}
    cal = rows[cal_rows]
    d = deficits(boosters, meta, cal)
    if level == "window":
        run = run_deficits(d, cal)[cal["InScope"].to_numpy(dtype=bool)]
        meta["run_scales"] = {s: max(float(run[s].quantile(RUN_QUANTILE)), 0.5) for s in run.columns}
    stat, _ = statistic(d, cal, meta)
    meta["calibration"] = calibration_table(stat[cal["InScope"].to_numpy(dtype=bool)])
    return boosters, meta


def bundled_windows(data_dir: Path) -> pd.DataFrame:
    """The bundled TelemetryWindow rows of training races (``data/corpus/telemetry_windows.parquet``)."""
    path = data_dir / "corpus" / WINDOWS_FILE
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def training_windows(corpus: base.Corpus, data_dir: Path | None = None) -> pd.DataFrame:
    """corpus.windows plus the bundled windows (of ``data_dir``, default ``corpus.data_dir``; none
    when both are None) of the races it lacks."""
    data_dir = data_dir if data_dir is not None else corpus.data_dir
    have = corpus.windows if corpus.windows is not None else pd.DataFrame()
    extra = bundled_windows(data_dir) if data_dir is not None else pd.DataFrame()
    if not have.empty and not extra.empty:
        known = set(zip(have.Year, have.EventName, strict=True))
        extra = extra[[(y, e) not in known for y, e in zip(extra.Year, extra.EventName, strict=True)]]
    frames = [f for f in (have, extra) if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def fit(
    corpus: base.Corpus, split: base.Splitter = base.race_split, progress: bool = False
) -> tuple[base.ModelBundle, dict[str, float]]:
    laps = lap_rows(corpus.laps, corpus.raw_laps)
    where = split(laps).to_numpy()
    boosters, lap_meta = _fit_level(laps, where == "train", where == "validation")
    val_laps = laps[where == "validation"]
    lap_meta["threshold"] = choose_threshold(
        val_laps, score_rows(boosters, lap_meta, val_laps)[0], race_hours(val_laps)
    )
    meta: dict[str, Any] = {"target": "anomaly_score", "lap": lap_meta, "params": LGB_PARAMS}
    metrics = {
        f"val_lap_{k}": v
        for k, v in level_metrics(boosters, lap_meta, val_laps, race_hours(val_laps)).items()
    }
    windows = training_windows(corpus)
    if not windows.empty:
        wrows = window_rows(windows, laps)
        wsplit = split(wrows).to_numpy()
        fit_rows = (wsplit == "train") & ~_races(wrows, WINDOW_CALIBRATION_RACES)
        cal_rows = (wsplit == "train") & _races(wrows, WINDOW_CALIBRATION_RACES)
        scope = wrows["InScope"].to_numpy(dtype=bool)
        if (fit_rows & scope).any() and (cal_rows & scope).any():  # the windows' laps are in the corpus
            wb, wmeta = _fit_level(wrows, fit_rows, cal_rows)
            cal_laps = laps[_races(laps, WINDOW_CALIBRATION_RACES)]
            cal = wrows[cal_rows]
            wmeta["threshold"] = choose_threshold(cal, score_rows(wb, wmeta, cal)[0], race_hours(cal_laps))
            boosters.update(wb)
            meta["window"] = wmeta
            metrics.update(
                {f"val_window_{k}": v for k, v in level_metrics(wb, wmeta, cal, race_hours(cal_laps)).items()}
            )
    recalls = [v for k, v in metrics.items() if "synthetic_recall" in k]
    metrics[SELECTION_METRIC] = 1 - float(np.mean(recalls)) if recalls else math.nan
    return base.ModelBundle("anomaly", boosters, meta), metrics


RECIPE = base.Recipe(
    key="anomaly",
    model_name=MODEL_NAME,
    feature_service=FEATURE_SERVICE,
    service_features=SERVICE_FEATURES,
    selection_metric=SELECTION_METRIC,
    fit=fit,
    evaluate=evaluate,
    predict=predict,
    needs_windows=True,
    description="calibrated 0..1 anomaly score per lap and per 5 s telemetry window (residuals of LightGBM expectations)",
)


__all__ = [
    "ALARM_BUDGET_PER_HOUR",
    "COMPOUNDS",
    "EARLY_STOPPING",
    "FAULT_KINDS",
    "FAULT_LAPS",
    "FAULT_WINDOWS",
    "FEATURE_SERVICE",
    "KEYS",
    "LAP_CONTEXT",
    "LAP_REF_LAPS",
    "LAP_SIGNALS",
    "LGB_PARAMS",
    "MECHANICAL",
    "MODEL_NAME",
    "RECIPE",
    "ROUNDS",
    "ROW_FIELDS",
    "RUN_CLIP",
    "RUN_GAP_S",
    "RUN_QUANTILE",
    "RUN_WINDOWS",
    "SCALE_FLOOR",
    "SELECTION_METRIC",
    "SENSOR_GROUPS",
    "SERVICE_FEATURES",
    "SLOW_LAP_S",
    "SPEED_TRAPS",
    "WINDOWS_FILE",
    "WINDOW_CALIBRATION_RACES",
    "WINDOW_FIT_RACES",
    "WINDOW_RACE_FOLDERS",
    "WINDOW_REF_WINDOWS",
    "WINDOW_SIGNALS",
    "alarm_runs",
    "bundled_windows",
    "calibrated",
    "calibration_table",
    "choose_threshold",
    "deficits",
    "direction",
    "evaluate",
    "fit",
    "inject_faults",
    "lap_matrix",
    "lap_rows",
    "level_metrics",
    "predict",
    "race_hours",
    "retirements",
    "rolling_median",
    "run_deficits",
    "score_rows",
    "signals",
    "slow_laps",
    "statistic",
    "training_windows",
    "window_context",
    "window_inputs",
    "window_matrix",
    "window_rows",
]
