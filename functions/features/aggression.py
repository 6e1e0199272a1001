"""Lap aggression: per-lap driver-aggression features from the 5 s telemetry windows.

One pure state machine, :func:`aggression_step`, runs per ``<SessionKey>:<DriverNumber>`` key on
the stream (Quix state, both input topics concatenated) and offline
(:func:`offline_lap_aggression`). Its items are :class:`schemas.TelemetryWindow` records (they
have ``WindowStart``) and :class:`schemas.LapFeatures` records (they have ``LapNumber``) of one
driver, each stream in its own order; how the two streams interleave does not change the output.

Lap interval: ``[LapStartTime, SessionTime)`` where SessionTime is the lap end of the LapFeatures
record and LapStartTime is the end of the driver's previous lap; for the driver's first lap it is
``SessionTime - LapTime``, and a first lap without LapTime (the standing-start lap 1) gives no
record, its end only starts the next lap.

A lap is finalized (emitted) only once the telemetry has passed its end: a window with
``WindowStart >= SessionTime`` has arrived, whichever of lap and window came first. Windows
arrive in WindowStart order, so every window whose midpoint ``(WindowStart + WindowEnd) / 2``
lies in the lap interval has arrived by then; those windows are the lap's windows. Windows are
buffered until no pending or future lap can use them: about one lap of windows when the two
streams are roughly aligned in time (Quix aligns concatenated topics by message timestamp), at
most a race's windows (~1,300) if the laps lag far behind. The driver's last lap stays pending
until a later window arrives (the telemetry app keeps each driver's final window open).

Metrics of a lap record (over the lap's windows, in WindowStart order):

=========================  ======  ==============================================================
field                      unit    definition
=========================  ======  ==============================================================
LapStartTime, SessionTime  s       lap interval (see above)
Date                       UTC     lap end, from the LapFeatures record
Windows                    1       number of the lap's windows (0 when telemetry has a gap)
Samples                    1       sum of the windows' Samples
ThrottleMean               %       Samples-weighted mean of the windows' ThrottleMean
FullThrottleShare          0-1     Samples-weighted mean of the windows' FullThrottleShare
BrakeShare                 0-1     Samples-weighted mean of the windows' BrakeShare
ThrottleBrakeOverlapShare  0-1     Samples-weighted mean of the windows' ThrottleBrakeOverlapShare
DRSOpenShare               0-1     Samples-weighted mean of the windows' DRSOpenShare
BrakeEvents                1       sum of the windows' BrakeEvents (brake applications)
GearChanges                1       sum of the windows' GearChanges
DecelMean                  km/h/s  Samples-weighted mean of the windows' DecelMean
UpshiftRPMMean             1/min   Samples-weighted mean of the windows' UpshiftRPMMean
SpeedMax                   km/h    highest SpeedMax of the windows
=========================  ======  ==============================================================

Weighting: a Samples-weighted mean is ``sum(value_w * Samples_w) / sum(Samples_w)`` over the
lap's windows whose value is not None; None when there is no such window. The windows do not carry
per-metric valid-sample counts (valid Throttle / Brake samples, braking pairs, upshifts), so every
metric is weighted by the window's total Samples: exact for the shares and ThrottleMean when every
sample of the window has a valid Throttle and Brake (the usual case), an approximation otherwise;
DecelMean and UpshiftRPMMean are weighted by time spent (samples), not by event count. Windows are
assigned whole to the lap holding their midpoint, so a lap's edges are accurate to 2.5 s.

Per-lap aggregates (fallback, :func:`aggression_from_aggregates`): races without car samples (the
training corpus) get LapAggression records from the OpenF1 gold per-lap aggregates bundled in
``data/corpus/openf1_lap_aggregates.parquet`` (``cwgbittencourt/F1.OpenF1.DatasetBuilder``, computed
by that source from OpenF1 car_data over each OpenF1 lap; see ``data/README.md``). The offline table
marks every row with ``AggressionSource`` = ``"samples"`` or ``"openf1-aggregates"`` (a parquet column
only, not a LapAggression field). Field by field, for those rows:

=========================  ==================================================================
field                      from the aggregates row
=========================  ==================================================================
SessionKey .. Date         the matching LapFeatures record (same race, DriverNumber, LapNumber);
                           LapStartTime as above (previous lap end, else SessionTime - LapTime)
Windows                    0 (no telemetry windows)
Samples                    telemetry_points (car-data samples in the source's lap)
ThrottleMean               avg_throttle (%, 0-100 on the source's rows)
FullThrottleShare          full_throttle_pct (already a 0-1 fraction in the source, not %)
BrakeShare                 brake_pct (already 0-1)
DRSOpenShare               None: the source's drs_pct is the share of samples with DRS code > 0
                           (it counts the closed codes 1-3 and 8 too; on 2023 Bahrain it matches
                           ``DRS > 0`` of the bundled samples to 1e-4), not codes 10/12/14
BrakeEvents                brake_events
GearChanges                gear_changes
SpeedMax                   max_speed (km/h)
ThrottleBrakeOverlapShare  None: not in the aggregates
DecelMean, UpshiftRPMMean  None: not in the aggregates
=========================  ==================================================================

The source's lap is OpenF1's (``date_start`` + ``lap_duration``), not the FastF1 interval above, so
edges differ by up to a sample or two. Skipped (returned as rejected items): rows with
``has_telemetry`` false, rows without a LapFeatures record with a lap start, and rows whose values
break the schema (e.g. ``avg_throttle`` 104, the feed's invalid-value code).

Rejected items (``{"Rejected": reason, "Item": item}``, see :func:`is_rejected`) leave the state
unchanged: a window whose WindowStart is not after the last accepted one (duplicate or out of
order), a lap whose LapNumber is not above the last accepted one or that does not end after it,
and an item that is neither kind.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import ValidationError

from stratx.functions.features.frames import typed_frame
from stratx.functions.schemas import LapAggression

STATE_VERSION = 1
REJECTED = "Rejected"  # key that marks a rejected item in aggression_step's output

# window fields kept in the buffer; the lap metrics need nothing else
BUFFERED: tuple[str, ...] = (
    "WindowStart",
    "WindowEnd",
    "Samples",
    "ThrottleMean",
    "FullThrottleShare",
    "BrakeShare",
    "ThrottleBrakeOverlapShare",
    "DRSOpenShare",
    "DecelMean",
    "UpshiftRPMMean",
    "BrakeEvents",
    "GearChanges",
    "SpeedMax",
)
WEIGHTED: tuple[str, ...] = (
    "ThrottleMean",
    "FullThrottleShare",
    "BrakeShare",
    "ThrottleBrakeOverlapShare",
    "DRSOpenShare",
    "DecelMean",
    "UpshiftRPMMean",
)
SUMMED: tuple[str, ...] = ("BrakeEvents", "GearChanges")

FIELDS: tuple[str, ...] = tuple(LapAggression.model_fields)


def is_rejected(item: Mapping[str, Any]) -> bool:
    """True for a rejected item of :func:`aggression_step` (``{"Rejected": reason, "Item": ...}``)."""
    return REJECTED in item


def is_window(item: Mapping[str, Any]) -> bool:
    """A TelemetryWindow record (has WindowStart, no LapNumber)."""
    return "WindowStart" in item and "LapNumber" not in item


def is_lap(item: Mapping[str, Any]) -> bool:
    """A LapFeatures record (has LapNumber, no WindowStart)."""
    return "LapNumber" in item and "WindowStart" not in item


def new_state() -> dict[str, Any]:
    return {
        "v": STATE_VERSION,
        "last_window": None,  # WindowStart of the last accepted window, s
        "last_lap": None,  # LapNumber of the last accepted lap
        "last_end": None,  # SessionTime (end) of the last accepted lap, s
        "pending": [],  # laps with a start, not finalized yet, in LapNumber order
        "windows": [],  # buffered windows (BUFFERED fields), in WindowStart order
    }


def _value(x: Any) -> Any:
    """None for a missing value (None or NaN, as DataFrame rows carry it); else the value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return x


def _reject(reason: str, item: Mapping[str, Any]) -> dict[str, Any]:
    return {REJECTED: reason, "Item": dict(item)}


def _mid(window: Mapping[str, Any]) -> float:
    return (window["WindowStart"] + window["WindowEnd"]) / 2


def _check_window(state: Mapping[str, Any], start: float) -> str | None:
    last = state["last_window"]
    if last is None or start > last:
        return None
    if start == last:
        return f"duplicate: window at {start:g} s was already processed"
    return f"out of order: window at {start:g} s after the window at {last:g} s"


def _check_lap(state: Mapping[str, Any], n: int, end: float) -> str | None:
    last, last_end = state["last_lap"], state["last_end"]
    if last is not None and n == last:
        return f"duplicate: lap {n} was already processed"
    if last is not None and n < last:
        return f"out of order: lap {n} after lap {last}"
    if last_end is not None and end <= last_end:
        return f"out of order: lap {n} ends at {end:.3f} s, not after the previous lap end {last_end:.3f} s"
    return None


def _date_text(date: Any) -> str | None:
    date = _value(date)
    if date is None:
        return None
    return date.isoformat() if isinstance(date, datetime) else str(date)


def aggression_step(
    state: dict[str, Any] | None, item: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Add one window or lap record of one driver; returns the new state and the items produced.

    Items are the laps this record finalized (:class:`LapAggression` records as dicts, Date as
    given by the lap record, in LapNumber order) or one rejected item ``{"Rejected": reason,
    "Item": item}`` (see :func:`is_rejected`), which leaves the state unchanged. ``state`` is a
    plain JSON-serializable dict (None to start); the input state is not mutated.
    """
    st = state if state is not None else new_state()
    if st["v"] != STATE_VERSION:
        raise ValueError(f"state version {st['v']} is not {STATE_VERSION}")
    if is_window(item):
        return _add_window(st, item)
    if is_lap(item):
        return _add_lap(st, item)
    return st, [_reject("neither a TelemetryWindow nor a LapFeatures record", item)]


def _add_window(st: dict[str, Any], item: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    start = float(item["WindowStart"])
    reason = _check_window(st, start)
    if reason is not None:
        return st, [_reject(reason, item)]
    window = {name: _value(item.get(name)) for name in BUFFERED}
    new = {**st, "last_window": start, "windows": [*st["windows"], window]}
    return _finalize(new)


def _add_lap(st: dict[str, Any], item: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    n, end = int(item["LapNumber"]), float(item["SessionTime"])
    reason = _check_lap(st, n, end)
    if reason is not None:
        return st, [_reject(reason, item)]
    lap_time = _value(item.get("LapTime"))
    start = st["last_end"]
    if start is None and lap_time is not None:
        start = end - float(lap_time)
    pending = list(st["pending"])
    if start is not None:
        pending.append(
            {
                "SessionKey": int(item["SessionKey"]),
                "DriverNumber": str(item["DriverNumber"]),
                "LapNumber": n,
                "LapStartTime": start,
                "SessionTime": end,
                "Date": _date_text(item.get("Date")),
            }
        )
    new = {**st, "last_lap": n, "last_end": end, "pending": pending}
    return _finalize(new)


def _finalize(st: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Emit the pending laps the telemetry has passed; drop windows no lap can use any more."""
    passed = st["last_window"]
    done = [lap for lap in st["pending"] if passed is not None and passed >= lap["SessionTime"]]
    records = [_aggregate(lap, st["windows"]) for lap in done]
    pending = st["pending"][len(done) :] if done else st["pending"]
    windows = st["windows"]
    if st["last_end"] is not None:
        # future laps start at the last lap end; pending laps at their own start
        bound = min([lap["LapStartTime"] for lap in pending] + [st["last_end"]])
        windows = [w for w in windows if _mid(w) >= bound]
    return {**st, "pending": pending, "windows": windows}, records


def _weighted(windows: list[dict[str, Any]], name: str) -> float | None:
    num, den = 0.0, 0
    for w in windows:
        if w[name] is not None:
            num += w[name] * w["Samples"]
            den += w["Samples"]
    return num / den if den else None


def _aggregate(lap: Mapping[str, Any], windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The LapAggression record of a lap over the buffered windows."""
    start, end = lap["LapStartTime"], lap["SessionTime"]
    inside = [w for w in windows if start <= _mid(w) < end]
    speeds = [w["SpeedMax"] for w in inside if w["SpeedMax"] is not None]
    record: dict[str, Any] = {
        "v": 1,
        **lap,
        "Windows": len(inside),
        "Samples": sum(int(w["Samples"]) for w in inside),
    }
    record.update({name: _weighted(inside, name) for name in WEIGHTED})
    record.update({name: sum(int(w[name] or 0) for w in inside) for name in SUMMED})
    record["SpeedMax"] = int(max(speeds)) if speeds else None
    return {name: record[name] for name in FIELDS}


def pending_laps(state: Mapping[str, Any] | None) -> list[int]:
    """LapNumbers waiting for the telemetry to pass their end."""
    return [] if state is None else [lap["LapNumber"] for lap in state["pending"]]


def _records(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        frame = rows.astype(object).where(rows.notna(), None)
        for row in frame.to_dict("records"):
            yield {str(k): v for k, v in row.items()}
    else:
        yield from rows


def offline_lap_aggression(
    windows: pd.DataFrame | Iterable[Mapping[str, Any]], laps: pd.DataFrame | Iterable[Mapping[str, Any]]
) -> pd.DataFrame:
    """Every lap the telemetry has passed, per driver, as a DataFrame (:func:`aggression_frame`).

    ``windows``: TelemetryWindow records (dicts, or the DataFrame of ``telemetry.offline_windows``);
    ``laps``: LapFeatures records (dicts, e.g. ``feature_build.lap_feature_rows``). Per driver, the
    records are fed to :func:`aggression_step` merged by time (a lap at its SessionTime, a window at
    its WindowStart; the output does not depend on that order, only on each stream's own order).
    ``df.attrs``: ``rejected`` (items rejected as duplicate / out of order), ``pending`` (laps
    still waiting for telemetry past their end).
    """
    per_driver: dict[tuple[int, str], list[tuple[float, int, int, Mapping[str, Any]]]] = defaultdict(list)
    for i, w in enumerate(_records(windows)):
        per_driver[(int(w["SessionKey"]), str(w["DriverNumber"]))].append((float(w["WindowStart"]), 1, i, w))
    for i, lap in enumerate(_records(laps)):
        per_driver[(int(lap["SessionKey"]), str(lap["DriverNumber"]))].append(
            (float(lap["SessionTime"]), 0, i, lap)
        )
    rows: list[dict[str, Any]] = []
    rejected = pending = 0
    for key in sorted(per_driver):
        state: dict[str, Any] | None = None
        for *_, item in sorted(per_driver[key], key=lambda x: x[:3]):
            state, out = aggression_step(state, item)
            rejected += sum(1 for x in out if is_rejected(x))
            rows.extend(x for x in out if not is_rejected(x))
        pending += len(pending_laps(state))
    return aggression_frame(rows, rejected, pending)


def aggression_frame(rows: Iterable[Mapping[str, Any]], rejected: int = 0, pending: int = 0) -> pd.DataFrame:
    """LapAggression records as a typed DataFrame (None -> NaN, Date -> datetime64 UTC)."""
    return typed_frame(rows, LapAggression, rejected=rejected, pending=pending)


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
