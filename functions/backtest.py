"""Score what the stream emitted (prediction records) against the offline evaluation, pure.

The stream backtest (``stratx backtest``, ``quix_apps/backtest.py``) replays races through the
real pipeline and reads back every record. This module turns those records into tables and
scores them:

* :func:`predictions_frame`: Prediction records (dicts) -> one row per record, ``Values`` flat,
  keyed by ``Year``/``EventName`` (from the session key), ``DriverNumber``, ``LapNumber``.
* :func:`model_scores`: per model, the recipe's own metrics (the ones ``stratx evaluate``
  reports) computed twice on the *same driver-laps*: with the offline predictions of
  ``Evaluation.scored`` and with the streamed values put in their place; plus parity (how many
  streamed values equal the offline ones within 1e-6, the largest difference).
* :func:`coverage`: driver-laps with every model's prediction, records for retired cars.

Alert scoring (hindsight events: stops, passes, cliffs, retirements) is in
``functions/backtest_alerts.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import (
    anomaly_scoring,
    lap_time,
    lap_time_interval,
    overtake_pairs,
    pit_window_windows,
)
from stratx.functions.models import tyre_deg_metrics as tdm

KEYS = ["Year", "EventName", "DriverNumber", "LapNumber"]
PARITY_TOL = 1e-6
PER_LAP_MODELS = ("lap_time", "tyre_deg", "pit_window", "anomaly")  # one record per driver-lap
PAIR_MODEL = "overtake"  # one record per car with a car ahead
Sessions = dict[int, tuple[int, str]]  # SessionKey -> (Year, EventName)


def predictions_frame(records: Iterable[dict[str, Any]], sessions: Sessions) -> pd.DataFrame:
    """One row per Prediction record of ``sessions`` (others dropped); ``Values`` flattened. A
    record delivered twice (at-least-once) is kept once (the last)."""
    rows = []
    for r in records:
        race = sessions.get(int(r.get("SessionKey", -1)))
        if race is None:
            continue
        rows.append(
            {
                "Year": race[0],
                "EventName": race[1],
                "SessionKey": int(r["SessionKey"]),
                "Model": r.get("Model"),
                "Status": r.get("Status"),
                "DriverNumber": str(r.get("DriverNumber")),
                "LapNumber": r.get("LapNumber"),
                "OtherDriverNumber": r.get("OtherDriverNumber"),
                "EventSessionTime": r.get("EventSessionTime"),
                **(r.get("Values") or {}),
            }
        )
    columns = [*KEYS, "SessionKey", "Model", "Status", "OtherDriverNumber", "EventSessionTime"]
    frame = pd.DataFrame(rows, columns=None if rows else columns)
    if frame.empty:
        return frame
    frame["LapNumber"] = pd.to_numeric(frame["LapNumber"], errors="coerce").astype("Int64")
    return frame.drop_duplicates(["Model", *KEYS, "OtherDriverNumber"], keep="last").reset_index(drop=True)


def alerts_frame(records: Iterable[dict[str, Any]], sessions: Sessions) -> pd.DataFrame:
    """One row per Alert record of ``sessions``: keys, Type, Severity, Value, Message."""
    rows = []
    for r in records:
        race = sessions.get(int(r.get("SessionKey", -1)))
        if race is None:
            continue
        rows.append(
            {
                "Year": race[0],
                "EventName": race[1],
                "DriverNumber": str(r.get("DriverNumber")),
                "LapNumber": r.get("LapNumber"),
                "Type": r.get("Type"),
                "Severity": r.get("Severity"),
                "Value": r.get("Value"),
                "Message": r.get("Message"),
                "EventSessionTime": r.get("EventSessionTime"),
            }
        )
    columns = [*KEYS, "Type", "Severity", "Value", "Message", "EventSessionTime"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["LapNumber"] = pd.to_numeric(frame["LapNumber"], errors="coerce").astype("Int64")
    return frame


# ------------------------------------------------------------------ per-model substitution
Metrics = Callable[[pd.DataFrame, dict[str, Any]], dict[str, float]]


def _lap_time_metrics(rows: pd.DataFrame, meta: dict[str, Any]) -> dict[str, float]:
    return lap_time.scored_metrics(rows)  # the band's columns as offline or as streamed


def _tyre_deg_metrics(rows: pd.DataFrame, meta: dict[str, Any]) -> dict[str, float]:
    medians = meta.get("compound_median_rate", {})
    table, rate = meta.get("cliff_frequency", {}), float(meta.get("cliff_base_rate", 0.0))
    return {**tdm.rate_metrics(rows, medians), **tdm.cliff_metrics(rows, table, rate)}


def _pit_metrics(rows: pd.DataFrame, meta: dict[str, Any]) -> dict[str, float]:
    rows = rows.copy()  # Evaluation.scored mixes row kinds: its flag columns come back as objects
    rows["NeutralisedHorizon"] = rows["NeutralisedHorizon"].astype("boolean").fillna(False).astype(bool)
    p = rows["PitProbability3Laps"].to_numpy(dtype=float)
    return pit_window_windows.pit_metrics(rows, p, rows["BaselinePit3"].to_numpy(dtype=float))


def _overtake_metrics(rows: pd.DataFrame, meta: dict[str, Any]) -> dict[str, float]:
    from stratx.functions.models import overtake_metrics

    return overtake_metrics.metrics_table(rows)


def _anomaly_metrics(rows: pd.DataFrame, meta: dict[str, Any]) -> dict[str, float]:
    flag = rows["AnomalyFlag"].astype(float).fillna(0.0).to_numpy() > 0.5
    hours = anomaly_scoring.race_hours(rows)
    runs = anomaly_scoring.alarm_runs(rows, flag)
    return {
        "lap_alarms": float(runs),
        "lap_false_alarms_per_race_hour": runs / hours if hours > 0 else math.nan,
        "flagged_laps": float(flag.sum()),
        "race_hours": hours,
    }


@dataclass(frozen=True)
class Streamed:
    """How a model's streamed ``Values`` replace its offline predictions in ``Evaluation.scored``:
    ``columns`` maps a Values field to the scored column; ``rows`` picks the scored rows the
    metrics run on; ``other``: the scored column holding the pair's other car (overtake)."""

    columns: dict[str, str]
    metrics: Metrics
    rows: Callable[[pd.DataFrame], pd.DataFrame] = lambda s: s
    other: str | None = None


STREAMED: dict[str, Streamed] = {
    "lap_time": Streamed(
        {
            "PredictedNextLapTime": "Predicted",
            **{c: c for c in (lap_time_interval.LOWER, lap_time_interval.UPPER)},
        },
        _lap_time_metrics,
    ),
    "tyre_deg": Streamed(
        {c: c for c in ("DegRate", "DegRateP10", "DegRateP90", "FalloffScore", "CliffProbability")},
        _tyre_deg_metrics,
    ),
    "pit_window": Streamed(
        {"PitProbability3Laps": "PitProbability3Laps"},
        _pit_metrics,
        rows=lambda s: s[s["Kind"] == "lap"] if "Kind" in s.columns else s,
    ),
    "overtake": Streamed(
        {overtake_pairs.prediction(h): f"model_p{h}" for h in (1, 2, 3)},
        _overtake_metrics,
        other=f"{overtake_pairs.AHEAD}DriverNumber",
    ),
    "anomaly": Streamed(
        {"AnomalyScore": "AnomalyScore", "AnomalyFlag": "AnomalyFlag"},
        _anomaly_metrics,
        rows=lambda s: s[s["Level"] == "lap"] if "Level" in s.columns else s,
    ),
}


@dataclass
class ModelScore:
    key: str
    scored_rows: int  # offline rows of the evaluation
    matched_rows: int  # of those, with a streamed ok record
    offline: dict[str, float] = field(default_factory=dict)  # on the matched rows
    streamed: dict[str, float] = field(default_factory=dict)  # on the matched rows
    parity: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str = ""
    pairs: pd.DataFrame | None = None  # matched rows: offline and streamed value of the main column

    def as_dict(self) -> dict[str, Any]:
        return {
            "scored_rows": self.scored_rows,
            "matched_rows": self.matched_rows,
            "offline": self.offline,
            "streamed": self.streamed,
            "parity": self.parity,
            "note": self.note,
        }


def parity(offline: pd.Series, streamed: pd.Series, tol: float = PARITY_TOL) -> dict[str, float]:
    """Count of rows with both values, share equal within ``tol``, largest absolute difference."""
    a = pd.to_numeric(offline.astype(object), errors="coerce").to_numpy(dtype=float)
    b = pd.to_numeric(streamed.astype(object), errors="coerce").to_numpy(dtype=float)
    both = np.isfinite(a) & np.isfinite(b)
    one_missing = np.isfinite(a) != np.isfinite(b)
    diff = np.abs(a[both] - b[both])
    n = int(both.sum())
    return {
        "count": float(n),
        "equal_share": float((diff <= tol).sum() / n) if n else math.nan,
        "max_abs_diff": float(diff.max()) if n else math.nan,
        "missing_on_one_side": float(one_missing.sum()),
    }


def _safe(metrics: Metrics, rows: pd.DataFrame, meta: dict[str, Any]) -> tuple[dict[str, float], str]:
    if rows.empty:
        return {}, "no matched rows"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: float(v) for k, v in metrics(rows, meta).items()}, ""
    except (ValueError, KeyError, ZeroDivisionError, IndexError) as exc:
        return {}, f"metrics not computable on these rows: {exc}"


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["DriverNumber"] = out["DriverNumber"].astype(str)
    out["LapNumber"] = pd.to_numeric(out["LapNumber"], errors="coerce").astype("Int64")
    out["Year"] = out["Year"].astype(int)
    out["EventName"] = out["EventName"].astype(str)
    return out


def model_scores(key: str, scored: pd.DataFrame, meta: dict[str, Any], stream: pd.DataFrame) -> ModelScore:
    """The recipe's metrics on the driver-laps both sides have, offline vs streamed, and parity.

    ``scored``: ``Evaluation.scored`` of the offline evaluation; ``meta``: the champion bundle's
    meta (tables some metrics need); ``stream``: :func:`predictions_frame` rows."""
    spec = STREAMED[key]
    rows = spec.rows(scored)
    score = ModelScore(key, len(rows), 0)
    mine = stream[(stream["Model"] == key) & (stream["Status"] == "ok")] if len(stream) else stream
    if rows.empty or mine.empty:
        score.note = "no offline rows" if rows.empty else "no streamed ok records"
        return score
    cols = [c for c in spec.columns if c in mine.columns]
    on = list(KEYS)
    right = _keyed(mine)[[*KEYS, "OtherDriverNumber", *cols]].rename(
        columns={c: f"{c}__stream" for c in cols}
    )
    left = _keyed(rows).reset_index(drop=True)
    if spec.other is not None:
        left["OtherDriverNumber"] = left[spec.other].astype(str)
        on.append("OtherDriverNumber")
    else:
        right = right.drop(columns="OtherDriverNumber")
    joined = left.merge(right, on=on, how="inner")
    score.matched_rows = len(joined)
    offline_rows = joined.copy()
    streamed_rows = joined.copy()
    for value, column in spec.columns.items():
        if value not in cols:
            continue
        streamed_rows[column] = joined[f"{value}__stream"].astype(offline_rows[column].dtype, errors="ignore")
        score.parity[value] = parity(joined[column], joined[f"{value}__stream"])
    score.offline, note_a = _safe(spec.metrics, offline_rows, meta)
    score.streamed, note_b = _safe(spec.metrics, streamed_rows, meta)
    score.note = note_a or note_b
    main_value, main_col = next(iter(spec.columns.items()))
    if main_value in cols:
        score.pairs = pd.DataFrame(
            {
                "offline": joined[main_col].astype(float),
                "streamed": joined[f"{main_value}__stream"].astype(float),
            }
        )
    return score


# ------------------------------------------------------------------ coverage
def coverage(stream: pd.DataFrame, laps: pd.DataFrame) -> dict[str, float]:
    """Driver-laps with a record of every per-lap model, and with all five where a car was ahead
    (``laps``: offline lap features with ``PositionOnLap``; the leader has no overtake record);
    and the completed laps (a LapTime) with no record at all, ok or unavailable: must be 0."""
    ok = stream[stream["Status"] == "ok"] if len(stream) else stream
    if ok.empty:
        return {"driver_laps": 0.0, "all_per_lap_models_share": math.nan, "all_five_share": math.nan}
    ok = _keyed(ok)
    models: dict[tuple[Any, ...], set[str]] = {}
    for key, model in zip(ok[KEYS].itertuples(index=False, name=None), ok["Model"], strict=True):
        models.setdefault(tuple(key), set()).add(str(model))
    have = pd.DataFrame([(*k, m) for k, m in models.items()], columns=[*KEYS, "Models"])
    per_lap = have["Models"].map(lambda m: set(PER_LAP_MODELS) <= m)
    five = have["Models"].map(lambda m: set(PER_LAP_MODELS) <= m and PAIR_MODEL in m)
    out = {
        "driver_laps": float(len(have)),
        "all_per_lap_models": float(per_lap.sum()),
        "all_per_lap_models_share": float(per_lap.mean()),
        "all_five": float(five.sum()),
        "all_five_share": float(five.mean()),
    }
    if not laps.empty and "PositionOnLap" in laps.columns:
        pos = _keyed(laps)[[*KEYS, "PositionOnLap"]].drop_duplicates(KEYS)
        chase = have.merge(pos, on=KEYS, how="left")
        behind = chase["PositionOnLap"].fillna(0).astype(float) > 1
        if behind.any():
            out["all_five_share_with_car_ahead"] = float(
                chase.loc[behind, "Models"].map(lambda m: set(PER_LAP_MODELS) <= m and PAIR_MODEL in m).mean()
            )
    unavailable = stream[stream["Status"] != "ok"] if len(stream) else stream
    out["unavailable_records"] = float(len(unavailable))
    if not laps.empty and {"LapTime", "SessionTime"} <= set(laps.columns):
        # nothing valid is lost: every completed lap the replay reached (a slice stops early) gets a record
        done = _keyed(laps[laps["LapTime"].notna()])
        reached = _keyed(stream).groupby(["Year", "EventName"])["EventSessionTime"].max().rename("Reached")
        done = done.merge(reached.reset_index(), on=["Year", "EventName"], how="inner")
        within = done["SessionTime"].astype(float) <= done["Reached"].astype(float)
        done = done.loc[within, KEYS].drop_duplicates()
        seen = _keyed(stream)[KEYS].drop_duplicates()
        lost = done.merge(seen, on=KEYS, how="left", indicator=True)["_merge"] == "left_only"
        out["completed_laps"] = float(len(done))
        out["completed_laps_without_record"] = float(lost.sum())
    return out


def after_retirement(records: pd.DataFrame, retired: pd.DataFrame) -> dict[str, float]:
    """Records (predictions or alerts) about a car after it retired: ``LapNumber`` beyond the lap
    it stopped on (``RetiredLap``), or event time after the end of its last lap (``RetiredAt``).
    ``retired``: Year, EventName, DriverNumber, RetiredLap, RetiredAt (backtest_alerts.retirements)."""
    if records.empty or retired.empty:
        return {"after_retired_lap": 0.0, "after_retired_time": 0.0}
    joined = _keyed(records).merge(
        retired[["Year", "EventName", "DriverNumber", "RetiredLap", "RetiredAt"]],
        on=["Year", "EventName", "DriverNumber"],
    )
    lap = pd.to_numeric(joined["LapNumber"], errors="coerce").astype(float)
    when = pd.to_numeric(joined["EventSessionTime"], errors="coerce").astype(float)
    return {
        "after_retired_lap": float((lap > joined["RetiredLap"].astype(float)).sum()),
        "after_retired_time": float((when > joined["RetiredAt"].astype(float) + 1.0).sum()),
    }
