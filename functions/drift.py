"""Drift monitoring, the pure parts: what is compared, the live window, reading Evidently's
result, and when to raise a drift alert. No I/O; ``stratx.quix_apps.drift`` runs Evidently,
writes the reports, exports the metrics and produces the alerts.

What is compared (:func:`feature_view`): the lap-model inputs (the union of the ``lap_time``,
``tyre_deg`` and ``pit_window`` FeatureServices) in the form the models see them:

* absolute lap times (``LapTime``, ``Last3Mean`` ... ``PersonalBest``, ``FuelCorrectedLapTime``)
  minus the driver's anchor (``Last3Median``, else ``LapTime``), named ``<column>ToAnchor``; raw
  lap times differ by circuit, the models never see them raw;
* :data:`RACE_PROGRESS` columns are left out (``LapNumber``, ``FuelKg``, ``GapToLeader``,
  ``LapsDown``, ``Stint``): they say where in a race a lap is, so any window that is not a whole
  race differs from the whole-race reference by construction;
* booleans as 0/1, ``Compound`` as text, everything else as float.

Alerts (:func:`alarm_step`): per session and dataset, raised when the share of drifted columns
reaches ``threshold`` while armed; the alarm re-arms only when a later run falls below
``rearm_below``, so a share hovering around the threshold raises one alert, not one per run.
A drift alert is about the whole session, not a car: its ``DriverNumber`` is
:data:`SESSION_WIDE_DRIVER` (``"0"``; no car races with 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import lap_time, pit_window, tyre_deg

SESSION_WIDE_DRIVER = "0"
FEATURES = "features"
PREDICTIONS = "predictions"
ANCHOR_SUFFIX = "ToAnchor"

# the lap models' inputs, in first-seen order
MODEL_FEATURES: tuple[str, ...] = tuple(
    dict.fromkeys((*lap_time.SERVICE_FEATURES, *tyre_deg.SERVICE_FEATURES, *pit_window.SERVICE_FEATURES))
)
RACE_PROGRESS: tuple[str, ...] = ("LapNumber", "FuelKg", "GapToLeader", "LapsDown", "Stint")
# compared minus the anchor; Last3Median is the anchor itself (always 0 relative to it)
ANCHOR_RELATIVE: tuple[str, ...] = tuple(c for c in lap_time.RELATIVE_TO_ANCHOR if c != "Last3Median")
CATEGORICAL: tuple[str, ...] = ("Compound",)
# prediction values that are absolute lap times (compared minus the anchor, like the features)
ABSOLUTE_TIME_PREDICTIONS: tuple[str, ...] = ("lap_time.PredictedNextLapTime",)


def anchor(table: pd.DataFrame) -> pd.Series:
    """The lap models' anchor: the clean rolling median ``Last3Median``, else ``LapTime``."""
    return lap_time.anchor(table)


def feature_view(table: pd.DataFrame) -> pd.DataFrame:
    """LapFeatures rows as compared for drift (module doc); same index as ``table``."""
    base = anchor(table).to_numpy(dtype=float)
    out: dict[str, Any] = {}
    for name in MODEL_FEATURES:
        if name in RACE_PROGRESS or name == "Last3Median" or name not in table.columns:
            continue
        col = table[name]
        if name in CATEGORICAL:
            out[name] = col.astype(object).where(col.notna(), None)
        elif name in ANCHOR_RELATIVE:
            out[f"{name}{ANCHOR_SUFFIX}"] = floats(col) - base
        else:
            out[name] = floats(col)
    return pd.DataFrame(out, index=table.index)


def floats(col: pd.Series) -> np.ndarray:
    """A column as floats (booleans 0/1, anything not numeric NaN)."""
    values = pd.to_numeric(col.astype(object).map(_bool_to_int), errors="coerce")
    return np.asarray(values, dtype=float)


def _bool_to_int(value: Any) -> Any:
    return int(value) if isinstance(value, bool | np.bool_) else value


def select_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The columns both frames have that can be compared: some value in the current window and at
    least two distinct values in the reference (a constant reference has no distribution)."""
    keep = []
    for name in reference.columns:
        if name not in current.columns:
            continue
        if current[name].notna().sum() == 0 or reference[name].nunique(dropna=True) < 2:
            continue
        keep.append(str(name))
    return keep


def session_window(
    table: pd.DataFrame, session_key: int, last_laps: int = 0, last_minutes: float = 0.0
) -> pd.DataFrame:
    """One session's rows, cut to its last ``last_laps`` race laps (0: every lap so far) and/or
    to laps that ended in its last ``last_minutes`` of session time (0: no time cut)."""
    rows = table[table["SessionKey"] == session_key]
    if rows.empty:
        return rows
    if last_laps > 0:
        rows = rows[rows["LapNumber"] > rows["LapNumber"].max() - last_laps]
    if last_minutes > 0:
        rows = rows[rows["SessionTime"] >= rows["SessionTime"].max() - 60.0 * last_minutes]
    return rows


def latest_session(records: Iterable[Mapping[str, Any]]) -> int | None:
    """The SessionKey of the most recent record (by ``Date``, then SessionTime), or None."""
    best: tuple[str, float, int] | None = None
    for rec in records:
        key = (str(rec.get("Date") or ""), float(rec.get("SessionTime") or 0.0), int(rec["SessionKey"]))
        if best is None or key > best:
            best = key
    return None if best is None else best[2]


def prediction_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """``ok`` Prediction records -> one row per (SessionKey, DriverNumber, LapNumber) with one
    column per numeric value, named ``<Model>.<Value>`` (overtake: per car behind)."""
    rows: dict[tuple[int, str, int], dict[str, Any]] = {}
    for rec in records:
        if rec.get("Status") != "ok" or rec.get("LapNumber") is None:
            continue
        key = (int(rec["SessionKey"]), str(rec["DriverNumber"]), int(rec["LapNumber"]))
        row = rows.setdefault(key, {"SessionKey": key[0], "DriverNumber": key[1], "LapNumber": key[2]})
        for name, value in (rec.get("Values") or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            row[f"{rec['Model']}.{name}"] = float(value)
    return pd.DataFrame(list(rows.values()))


def prediction_view(predictions: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Prediction values as compared for drift: absolute lap-time predictions minus the anchor of
    the lap they were made on (joined on SessionKey, DriverNumber, LapNumber); value columns only."""
    keys = ["SessionKey", "DriverNumber", "LapNumber"]
    if predictions.empty:
        return pd.DataFrame()
    values = [c for c in predictions.columns if c not in keys]
    out = predictions[values].astype(float).copy()
    absolute = [c for c in ABSOLUTE_TIME_PREDICTIONS if c in out.columns]
    if absolute:
        lap = features[keys].copy()
        lap["_anchor"] = anchor(features).to_numpy(dtype=float)
        lap = lap.drop_duplicates(keys, keep="last")
        joined = predictions[keys].merge(lap, on=keys, how="left")
        for name in absolute:
            out[f"{name}{ANCHOR_SUFFIX}"] = out.pop(name).to_numpy() - joined["_anchor"].to_numpy()
    return out


# ------------------------------------------------------------------ Evidently's result
@dataclass(frozen=True)
class ColumnDrift:
    column: str
    score: float
    method: str
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """One dataset's comparison: Evidently's share of drifted columns and each column's test."""

    share: float
    columns: tuple[ColumnDrift, ...] = field(default_factory=tuple)

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]


def read_snapshot(snapshot: Mapping[str, Any]) -> DriftResult:
    """Share of drifted columns and per-column score/method/verdict from an Evidently 0.7
    ``Snapshot.dict()`` of a ``DataDriftPreset`` report run with ``include_tests=True`` (a column
    drifted when its ValueDrift test failed: p-value below, or distance at/above, the threshold)."""
    share: float | None = None
    scores: dict[str, tuple[float, str, float]] = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith("ValueDrift"):
            value = metric["value"]
            score = float(value["value"] if isinstance(value, Mapping) else value)
            scores[str(config["column"])] = (score, str(config.get("method")), float(config.get("threshold")))
    if share is None:
        raise ValueError("no DriftedColumnsCount metric in the snapshot (not a DataDriftPreset report?)")
    failed = {
        str(t["metric_config"]["params"]["column"])
        for t in snapshot.get("tests", [])
        if t.get("id") == "drift" and t.get("status") == "FAIL"
    }
    columns = tuple(ColumnDrift(c, s, m, th, c in failed) for c, (s, m, th) in scores.items())
    return DriftResult(share, columns)


# ------------------------------------------------------------------ alerts
def alert_datasets(text: str) -> set[str]:
    """The datasets named in a comma-separated setting (``features``, ``predictions``)."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = names - {FEATURES, PREDICTIONS}
    if unknown:
        raise ValueError(f"unknown drift datasets {sorted(unknown)}; known: {FEATURES}, {PREDICTIONS}")
    return names


def alarm_step(armed: bool, share: float, threshold: float, rearm_below: float) -> tuple[bool, bool]:
    """(armed after this run, raise an alert now). Raise once when ``share`` reaches
    ``threshold`` while armed; re-arm only when ``share`` falls below ``rearm_below``."""
    if rearm_below > threshold:
        raise ValueError(f"rearm_below {rearm_below} must not exceed the threshold {threshold}")
    if armed and share >= threshold:
        return False, True
    if not armed and share < rearm_below:
        return True, False
    return armed, False


def drift_alert(
    session_key: int,
    dataset: str,
    result: DriftResult,
    threshold: float,
    window: pd.DataFrame,
    now: datetime,
    top: int = 5,
) -> dict[str, Any]:
    """The Alert record (JSON mode) of a threshold crossing; about the whole session
    (``DriverNumber`` :data:`SESSION_WIDE_DRIVER`), at the window's last lap."""
    worst = sorted((c for c in result.columns if c.drifted), key=lambda c: -c.score)[:top]
    names = ", ".join(c.column for c in worst)
    message = (
        f"data drift: {result.share:.0%} of {len(result.columns)} {dataset} columns drifted from the "
        f"training reference (threshold {threshold:.0%}); most: {names or 'none'}"
    )
    last_lap = int(window["LapNumber"].max()) if "LapNumber" in window and len(window) else None
    return {
        "v": 1,
        "SessionKey": int(session_key),
        "DriverNumber": SESSION_WIDE_DRIVER,
        "LapNumber": last_lap,
        "Type": "drift",
        "Severity": "warning",
        "Message": message,
        "Model": dataset,
        "ModelVersion": None,
        "Value": float(result.share),
        "EventSessionTime": float(window["SessionTime"].max()) if len(window) else 0.0,
        "Date": now.isoformat(),
    }


def column_summary(result: DriftResult) -> list[dict[str, Any]]:
    """Per-column rows for the JSON summary, most drifted first."""
    ordered: Sequence[ColumnDrift] = sorted(result.columns, key=lambda c: (not c.drifted, -c.score))
    return [
        {
            "column": c.column,
            "score": c.score,
            "method": c.method,
            "threshold": c.threshold,
            "drifted": c.drifted,
        }
        for c in ordered
    ]
