"""Lap aggression from the OpenF1 gold per-lap aggregates: the fallback for races without car samples.

:func:`aggression_from_aggregates` maps the bundled aggregate rows
(``data/corpus/openf1_lap_aggregates.parquet``) onto LapAggression records, taking each lap's
identity and interval from the race's LapFeatures records exactly as :func:`aggression_step` sets
them (:func:`lap_intervals`); rows without telemetry, without a lap or breaking the schema come back
as rejected items. Pure; re-exported by :mod:`stratx.functions.features.aggression`, whose
docstring gives the field-by-field mapping.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from pydantic import ValidationError

from stratx.functions.features.aggression_state import (
    FIELDS,
    REJECTED,
    _add_lap,
    _records,
    _reject,
    _value,
    aggression_frame,
    is_rejected,
    new_state,
)
from stratx.functions.schemas import LapAggression

# OpenF1 gold per-lap aggregate column -> LapAggression field (fractions are 0-1 in the source)
AGGREGATE_FIELDS: dict[str, str] = {
    "telemetry_points": "Samples",
    "avg_throttle": "ThrottleMean",
    "full_throttle_pct": "FullThrottleShare",
    "brake_pct": "BrakeShare",
    "brake_events": "BrakeEvents",
    "gear_changes": "GearChanges",
    "max_speed": "SpeedMax",
}
INTS: frozenset[str] = frozenset({"Samples", "BrakeEvents", "GearChanges", "SpeedMax"})


def lap_intervals(lap_features: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(DriverNumber, LapNumber) -> lap identity and interval, as :func:`aggression_step` sets it:
    LapStartTime = the driver's previous lap end, else SessionTime - LapTime; a lap without either
    (standing-start lap 1 without LapTime) is left out, and so is a lap not after the previous one."""
    per_driver: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for lap in lap_features:
        per_driver[str(lap["DriverNumber"])].append(lap)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for driver, laps in per_driver.items():
        state: dict[str, Any] = new_state()
        for lap in sorted(laps, key=lambda x: (float(x["SessionTime"]), int(x["LapNumber"]))):
            state, rejected = _add_lap(state, lap)
            if rejected:
                continue
            if state["pending"]:
                item = state["pending"].pop()
                out[(driver, item["LapNumber"])] = item
    return out


def aggression_from_aggregates(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]], lap_features: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """LapAggression records (dicts) of one race from the OpenF1 gold per-lap aggregates.

    ``rows``: aggregate rows of one race (columns of :data:`AGGREGATE_FIELDS`, ``driver_number``,
    ``lap_number``, ``has_telemetry``); ``lap_features``: the race's LapFeatures records (JSON mode,
    ``feature_build.lap_feature_rows``). Returns records in (DriverNumber, LapNumber) order, then the
    skipped rows as rejected items ``{"Rejected": reason, "Item": row}`` (:func:`is_rejected`); the
    mapping is in the module docstring.
    """
    intervals = lap_intervals(lap_features)
    records: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for row in _records(rows):
        if not _value(row.get("has_telemetry")):
            rejected.append(_reject("no telemetry: has_telemetry is false", row))
            continue
        driver, n = str(int(row["driver_number"])), int(row["lap_number"])
        lap = intervals.get((driver, n))
        if lap is None:
            rejected.append(
                _reject(f"no lap: driver {driver} lap {n} has no LapFeatures record with a start", row)
            )
            continue
        record: dict[str, Any] = {
            "v": 1,
            **lap,
            "Windows": 0,
            "ThrottleBrakeOverlapShare": None,
            "DRSOpenShare": None,  # drs_pct counts every code > 0, not an open flap
            "DecelMean": None,
            "UpshiftRPMMean": None,
        }
        for column, name in AGGREGATE_FIELDS.items():
            value = _value(row.get(column))
            record[name] = round(float(value)) if value is not None and name in INTS else value
        record = {name: record[name] for name in FIELDS}
        try:
            LapAggression.model_validate(record)
        except ValidationError as exc:
            rejected.append(_reject(f"invalid: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}", row))
            continue
        records.append(record)
    records.sort(key=lambda r: (int(r["DriverNumber"]), r["LapNumber"]))
    return records + rejected


def offline_aggregates_aggression(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]], lap_features: Iterable[Mapping[str, Any]]
) -> pd.DataFrame:
    """:func:`aggression_from_aggregates` as a typed DataFrame; ``df.attrs["rejected"]`` counts the
    skipped rows and ``df.attrs["skipped"]`` counts them by reason (no telemetry / no lap / invalid)."""
    out = aggression_from_aggregates(rows, lap_features)
    good = [x for x in out if not is_rejected(x)]
    reasons: dict[str, int] = defaultdict(int)
    for x in out:
        if is_rejected(x):
            reasons[str(x[REJECTED]).split(":")[0]] += 1
    frame = aggression_frame(good, rejected=len(out) - len(good))
    frame.attrs["skipped"] = dict(reasons)
    return frame
