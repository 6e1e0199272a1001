"""What each dashboard component shows, derived from a :class:`RaceSnapshot` (pure, no Panel).

Every number here comes from a topic record: timing and lap features from the feature apps,
model outputs from the prediction topics (read from ``Values`` by name, generically), alerts
from the alerts topic. Nothing is computed that a model or feature app should compute; the
only arithmetic is presentation (sorting, formatting, drawing a model's predicted degradation
rate through a stint's own fuel-corrected laps).

The views live in sibling modules by component family, all re-exported here (the public import
path): :mod:`~stratx.panel_app.views_lookup` (formatting, drivers, predictions),
:mod:`~stratx.panel_app.views_timing` (tower, battles, race trace) and
:mod:`~stratx.panel_app.views_tyres` (stints, wear curves), :mod:`~stratx.panel_app.views_inputs`
(what a session lacks, unavailable models); telemetry, alerts and the overlay's
facts stay here with the presentation colours.
"""

from __future__ import annotations

from dataclasses import dataclass

from stratx.functions.models import registry
from stratx.panel_app.state import RaceSnapshot, Record
from stratx.panel_app.views_inputs import Lack, Unavailable, session_lacks, unavailable_models
from stratx.panel_app.views_lookup import (
    PRIMARY_VALUES,
    DriverLabel,
    PredictionRow,
    code_of,
    driver_labels,
    field_predictions,
    fmt_gap,
    fmt_lap_time,
    fmt_value,
    last_lap,
    number,
    predicted_next_lap,
    prediction,
    prediction_rows,
    primary_value,
)
from stratx.panel_app.views_timing import (
    DRS_RANGE_S,
    Pair,
    TowerRow,
    battle_forecast,
    overtake_values,
    pairs,
    race_trace,
    running_order,
    tower_rows,
)
from stratx.panel_app.views_tyres import StintBar, StintCurve, stints, wear_curves

__all__ = [
    "COMPOUND_COLOURS",
    "DRS_OPEN_CODES",
    "DRS_RANGE_S",
    "MODEL_LABELS",
    "PRIMARY_VALUES",
    "SEVERITY_COLOURS",
    "UNKNOWN_COMPOUND_COLOUR",
    "DriverLabel",
    "Lack",
    "Pair",
    "PitWindow",
    "PredictionRow",
    "StintBar",
    "StintCurve",
    "TowerRow",
    "Unavailable",
    "alerts_newest_first",
    "battle_forecast",
    "code_of",
    "driver_labels",
    "drs_state",
    "field_predictions",
    "fmt_gap",
    "fmt_lap_time",
    "fmt_value",
    "has_positions",
    "has_telemetry",
    "last_lap",
    "latest_alert",
    "number",
    "overtake_values",
    "pairs",
    "pit_window",
    "predicted_next_lap",
    "prediction",
    "prediction_rows",
    "primary_value",
    "race_trace",
    "running_order",
    "session_lacks",
    "stints",
    "tower_rows",
    "unavailable_models",
    "wear_curves",
]

COMPOUND_COLOURS = {
    "SOFT": "#da291c",
    "MEDIUM": "#ffd12e",
    "HARD": "#f0f0ec",
    "INTERMEDIATE": "#43b02a",
    "WET": "#0067ad",
}
UNKNOWN_COMPOUND_COLOUR = "#888888"
SEVERITY_COLOURS = {"info": "#3b82f6", "warning": "#f59e0b", "critical": "#ef4444"}
MODEL_LABELS = {m.key: m.label for m in registry.MODELS}


# ------------------------------------------------------------------ telemetry and positions
def has_telemetry(snap: RaceSnapshot) -> bool | None:
    """Whether the session carries car telemetry (None: not known yet, no session info)."""
    if snap.telemetry:
        return True
    if snap.info is None:
        return None
    sources = snap.info.get("Sources") or {}
    return "car_data" not in (snap.info.get("Missing") or []) and int(sources.get("car_data", 0)) > 0


def has_positions(snap: RaceSnapshot) -> bool | None:
    if snap.positions:
        return True
    if snap.info is None:
        return None
    sources = snap.info.get("Sources") or {}
    return "pos_data" not in (snap.info.get("Missing") or []) and int(sources.get("pos_data", 0)) > 0


DRS_OPEN_CODES = frozenset({10, 12, 14})


def drs_state(code: int | None) -> str:
    if code is None:
        return "-"
    if code in DRS_OPEN_CODES:
        return "open"
    return "eligible" if code == 8 else "closed"


# ------------------------------------------------------------------ alerts and overlay facts
def alerts_newest_first(snap: RaceSnapshot, limit: int = 30) -> list[Record]:
    return list(reversed(snap.alerts[-limit:]))


def latest_alert(snap: RaceSnapshot, types: tuple[str, ...], drv: str | None = None) -> Record | None:
    """The newest alert of ``types`` (about ``drv``), never one about a retired car."""
    for rec in reversed(snap.alerts):
        if str(rec.get("DriverNumber")) in snap.retired:
            continue
        if rec.get("Type") in types and (drv is None or rec.get("DriverNumber") == drv):
            return rec
    return None


@dataclass(frozen=True)
class PitWindow:
    driver: str
    probability: float | None
    open_lap: int | None
    close_lap: int | None
    lap: int | None


def pit_window(snap: RaceSnapshot, drv: str | None) -> PitWindow | None:
    """The pit-window model's latest ok prediction for ``drv`` (None: the most likely driver); none
    for a retired car."""
    per = {
        d: r
        for d, r in snap.predictions.get("pit_window", {}).items()
        if r.get("Status") == "ok" and d not in snap.retired
    }
    if not per:
        return None
    if drv is None:
        drv = max(per, key=lambda d: number((per[d].get("Values") or {}).get("PitProbability3Laps")) or 0.0)
    rec = per.get(drv)
    if rec is None:
        return None
    values = rec.get("Values") or {}
    found = primary_value("pit_window", values)
    open_lap, close_lap = number(values.get("WindowOpenLap")), number(values.get("WindowCloseLap"))
    return PitWindow(
        drv,
        found[1] if found else None,
        int(open_lap) if open_lap is not None else None,
        int(close_lap) if close_lap is not None else None,
        rec.get("LapNumber"),
    )
