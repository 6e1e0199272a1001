"""Lap aggression from telemetry windows: the per-driver state machine and its offline run.

:func:`aggression_step` folds one driver's TelemetryWindow and LapFeatures records (each stream in
its own order) into LapAggression records, finalizing a lap once the telemetry has passed its end;
:func:`offline_lap_aggression` folds it over a race and :func:`aggression_frame` types the result.
Pure; re-exported by :mod:`stratx.functions.features.aggression`, whose docstring defines the lap
interval, the metrics and their weighting.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

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
