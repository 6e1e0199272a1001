"""Dashboard lookups and formatting: number and time formatting, driver labels, a driver's last lap
and the latest prediction of each model, read generically from ``Values`` by name.

The building blocks every other view uses; pure, no Panel. Re-exported by
:mod:`stratx.panel_app.views`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stratx.functions.models import registry
from stratx.panel_app.state import RaceSnapshot, Record

# the headline output of each model (a fallback takes the first numeric value in Values)
PRIMARY_VALUES = {m.key: m.primary for m in registry.MODELS}


# ------------------------------------------------------------------ formatting
def fmt_lap_time(seconds: float | None) -> str:
    """83.456 -> '1:23.456'; None -> '-'."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}:{rest:06.3f}" if minutes else f"{rest:.3f}"


def fmt_gap(seconds: float | None, raw: str | None = None) -> str:
    if raw:
        return raw
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return f"+{seconds:.3f}"


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# ------------------------------------------------------------------ drivers
@dataclass(frozen=True)
class DriverLabel:
    number: str
    code: str
    team: str | None
    colour: str


def driver_labels(snap: RaceSnapshot) -> dict[str, DriverLabel]:
    """Three-letter code, team and team colour per driver (session info, else lap records)."""
    out: dict[str, DriverLabel] = {}
    for d in (snap.info or {}).get("Drivers", []):
        colour = d.get("TeamColor")
        out[str(d["DriverNumber"])] = DriverLabel(
            str(d["DriverNumber"]),
            str(d.get("Abbreviation") or d["DriverNumber"]),
            d.get("TeamName"),
            f"#{colour}" if colour and not str(colour).startswith("#") else (colour or "#888888"),
        )
    for drv, laps in snap.laps.items():
        if drv not in out and laps:
            out[drv] = DriverLabel(drv, str(laps[-1].get("Driver") or drv), laps[-1].get("Team"), "#888888")
    for drv in snap.timing:
        out.setdefault(drv, DriverLabel(drv, drv, None, "#888888"))
    return out


def code_of(snap: RaceSnapshot, drv: str | None) -> str:
    if drv is None:
        return "-"
    label = driver_labels(snap).get(drv)
    return label.code if label is not None else drv


def last_lap(snap: RaceSnapshot, drv: str) -> Record | None:
    laps = snap.laps.get(drv)
    return laps[-1] if laps else None


# ------------------------------------------------------------------ predictions
def prediction(snap: RaceSnapshot, model: str, drv: str) -> Record | None:
    rec = snap.predictions.get(model, {}).get(drv)
    return rec if rec is not None and rec.get("Status") == "ok" else None


def primary_value(model: str, values: dict[str, Any]) -> tuple[str, float] | None:
    """The headline output of a model's Values (its known name, else the first numeric value)."""
    name = PRIMARY_VALUES.get(model)
    if name is not None and number(values.get(name)) is not None:
        return name, float(values[name])
    for key, value in values.items():
        if number(value) is not None:
            return key, float(value)
    return None


def predicted_next_lap(snap: RaceSnapshot, drv: str) -> float | None:
    rec = prediction(snap, "lap_time", drv)
    if rec is None:
        return None
    values = rec.get("Values") or {}
    found = primary_value("lap_time", values)  # the prediction itself, not its band (NextLapTimeP10/P90)
    return found[1] if found else None


@dataclass(frozen=True)
class PredictionRow:
    model: str
    version: str | None
    status: str
    lap: int | None
    values: dict[str, Any]
    other_driver: str | None
    reason: str | None


def prediction_rows(snap: RaceSnapshot, drv: str) -> list[PredictionRow]:
    """Latest prediction of every model for ``drv`` (unavailable ones too, with the reason)."""
    rows = []
    for model in PRIMARY_VALUES:
        rec = snap.predictions.get(model, {}).get(drv)
        if rec is None:
            continue
        rows.append(
            PredictionRow(
                model,
                rec.get("ModelVersion"),
                str(rec.get("Status")),
                rec.get("LapNumber"),
                dict(rec.get("Values") or {}),
                rec.get("OtherDriverNumber"),
                rec.get("Reason"),
            )
        )
    return rows


def field_predictions(snap: RaceSnapshot, order: list[str]) -> list[tuple[str, dict[str, float | None]]]:
    """Per driver (in ``order``), the headline value of each model's latest ok prediction."""
    out = []
    for drv in order:
        per: dict[str, float | None] = {}
        for model in PRIMARY_VALUES:
            rec = prediction(snap, model, drv)
            found = primary_value(model, rec.get("Values") or {}) if rec else None
            per[model] = found[1] if found else None
        out.append((drv, per))
    return out
