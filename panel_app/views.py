"""What each dashboard component shows, derived from a :class:`RaceSnapshot` (pure, no Panel).

Every number here comes from a topic record: timing and lap features from the feature apps,
model outputs from the prediction topics (read from ``Values`` by name, generically), alerts
from the alerts topic. Nothing is computed that a model or feature app should compute; the
only arithmetic is presentation (sorting, formatting, drawing a model's predicted degradation
rate through a stint's own fuel-corrected laps).
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Any

from stratx.functions.models import registry
from stratx.panel_app.state import RaceSnapshot, Record

DRS_RANGE_S = 1.0
COMPOUND_COLOURS = {
    "SOFT": "#da291c",
    "MEDIUM": "#ffd12e",
    "HARD": "#f0f0ec",
    "INTERMEDIATE": "#43b02a",
    "WET": "#0067ad",
}
UNKNOWN_COMPOUND_COLOUR = "#888888"
SEVERITY_COLOURS = {"info": "#3b82f6", "warning": "#f59e0b", "critical": "#ef4444"}
# the headline output of each model (a fallback takes the first numeric value in Values)
PRIMARY_VALUES = {m.key: m.primary for m in registry.MODELS}
MODEL_LABELS = {m.key: m.label for m in registry.MODELS}


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
    for key, value in values.items():
        if "LapTime" in key and number(value) is not None:
            return float(value)
    found = primary_value("lap_time", values)
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


# ------------------------------------------------------------------ timing tower
@dataclass(frozen=True)
class TowerRow:
    position: int | None
    number: str
    code: str
    colour: str
    gap: str
    interval: str
    interval_s: float | None
    compound: str | None
    tyre_age: int | None
    pit_stops: int
    lap: int | None
    last_lap: float | None
    predicted_next_lap: float | None


def tower_rows(snap: RaceSnapshot) -> list[TowerRow]:
    """One row per driver, in running order: live timing where it exists, else the last lap."""
    labels = driver_labels(snap)
    rows = []
    for drv, label in labels.items():
        lap = last_lap(snap, drv)
        timing = snap.timing.get(drv)
        position = (timing or {}).get("Position") or (lap or {}).get("PositionOnLap")
        if timing is not None and timing.get("Position") is not None:
            gap = fmt_gap(timing.get("GapToLeader"), timing.get("GapToLeaderRaw"))
            interval_s = number(timing.get("IntervalToPositionAhead"))
            interval = fmt_gap(interval_s, timing.get("IntervalRaw"))
        else:
            gap = fmt_gap(number((lap or {}).get("GapToLeader")))
            interval_s = number((lap or {}).get("IntervalAhead"))
            interval = fmt_gap(interval_s)
        if position == 1:
            gap, interval, interval_s = "Leader", "-", None
        stint = (lap or {}).get("Stint")
        tyre_life = number((lap or {}).get("TyreLife"))
        rows.append(
            TowerRow(
                position=int(position) if position is not None else None,
                number=drv,
                code=label.code,
                colour=label.colour,
                gap=gap,
                interval=interval,
                interval_s=interval_s,
                compound=(lap or {}).get("Compound"),
                tyre_age=int(tyre_life) if tyre_life is not None else None,
                pit_stops=max(int(stint) - 1, 0) if stint else 0,
                lap=(lap or {}).get("LapNumber"),
                last_lap=number((lap or {}).get("LapTime")),
                predicted_next_lap=predicted_next_lap(snap, drv),
            )
        )
    rows.sort(key=lambda r: (r.position is None, r.position or 0, r.number))
    return rows


def running_order(snap: RaceSnapshot) -> list[str]:
    return [r.number for r in tower_rows(snap)]


# ------------------------------------------------------------------ gaps and battles
@dataclass(frozen=True)
class Pair:
    ahead: str
    behind: str
    interval: float
    overtake: dict[str, float]  # OvertakeProbability1Lap/2Laps/3Laps of the car behind


def pairs(snap: RaceSnapshot, within_s: float | None = DRS_RANGE_S) -> list[Pair]:
    """Consecutive cars on the tower, closest first; ``within_s`` keeps DRS-range pairs only."""
    rows = [r for r in tower_rows(snap) if r.position is not None]
    out = []
    for ahead, behind in itertools.pairwise(rows):
        if behind.interval_s is None or (within_s is not None and behind.interval_s >= within_s):
            continue
        out.append(Pair(ahead.number, behind.number, behind.interval_s, overtake_values(snap, behind.number)))
    out.sort(key=lambda p: p.interval)
    return out


def overtake_values(snap: RaceSnapshot, drv: str) -> dict[str, float]:
    rec = prediction(snap, "overtake", drv)
    if rec is None:
        return {}
    return {k: float(v) for k, v in (rec.get("Values") or {}).items() if number(v) is not None}


def battle_forecast(snap: RaceSnapshot) -> Pair | None:
    """The closest pair on track, with the overtake model's probabilities for the car behind."""
    found = pairs(snap, within_s=None)
    return found[0] if found else None


def race_trace(snap: RaceSnapshot) -> dict[str, tuple[list[int], list[float]]]:
    """Gap to the leader (s) at the end of each lap, per driver (from lap features)."""
    out = {}
    for drv, laps in snap.laps.items():
        xs = [int(r["LapNumber"]) for r in laps if number(r.get("GapToLeader")) is not None]
        ys = [float(r["GapToLeader"]) for r in laps if number(r.get("GapToLeader")) is not None]
        out[drv] = (xs, ys)
    return out


# ------------------------------------------------------------------ tyres
@dataclass(frozen=True)
class StintBar:
    driver: str
    stint: int
    compound: str | None
    start_lap: int
    end_lap: int


def stints(snap: RaceSnapshot) -> list[StintBar]:
    """Stints per driver from the lap features' Stint/Compound (one bar per stint)."""
    out = []
    for drv, laps in snap.laps.items():
        current: StintBar | None = None
        for r in laps:
            stint, lap = r.get("Stint"), int(r["LapNumber"])
            if stint is None:
                continue
            if current is not None and current.stint == stint:
                current = StintBar(
                    drv, current.stint, current.compound or r.get("Compound"), current.start_lap, lap
                )
                continue
            if current is not None:
                out.append(current)
            current = StintBar(drv, int(stint), r.get("Compound"), lap, lap)
        if current is not None:
            out.append(current)
    return out


@dataclass(frozen=True)
class StintCurve:
    stint: int
    compound: str | None
    tyre_life: list[float]
    fuel_corrected: list[float]
    model_life: list[float]  # empty when the tyre model has no prediction for this stint
    model_mid: list[float]
    model_low: list[float]
    model_high: list[float]
    model_version: str | None


def wear_curves(snap: RaceSnapshot, drv: str, ahead_laps: int = 5) -> list[StintCurve]:
    """Per stint: clean fuel-corrected lap times by tyre life, and the tyre model's falloff.

    The model's predicted degradation rate (DegRate, s/lap of tyre life) and its 80 % band
    (DegRateP10..P90) are drawn as lines through the stint's own clean laps (their mean), from
    the stint's first lap to ``ahead_laps`` beyond the latest one: a picture of the prediction,
    not a new prediction.
    """
    history = snap.prediction_history.get("tyre_deg", {}).get(drv, [])
    out = []
    by_stint: dict[int, list[Record]] = {}
    for r in snap.laps.get(drv, []):
        if r.get("Stint") is not None:
            by_stint.setdefault(int(r["Stint"]), []).append(r)
    for stint, laps in sorted(by_stint.items()):
        clean = [r for r in laps if r.get("IsClean") and number(r.get("FuelCorrectedLapTime")) is not None]
        life = [float(r["TyreLife"]) for r in clean if number(r.get("TyreLife")) is not None]
        times = [float(r["FuelCorrectedLapTime"]) for r in clean if number(r.get("TyreLife")) is not None]
        lap_numbers = {int(r["LapNumber"]) for r in laps}
        pred = next(
            (p for p in reversed(history) if p.get("Status") == "ok" and p.get("LapNumber") in lap_numbers),
            None,
        )
        curve = StintCurve(stint, laps[-1].get("Compound"), life, times, [], [], [], [], None)
        if pred is not None and life:
            curve = _with_model(curve, laps, pred, ahead_laps)
        out.append(curve)
    return out


def _with_model(curve: StintCurve, laps: list[Record], pred: Record, ahead_laps: int) -> StintCurve:
    values = pred.get("Values") or {}
    rate = number(values.get("DegRate"))
    if rate is None:
        return curve
    low = number(values.get("DegRateP10"))
    high = number(values.get("DegRateP90"))
    ages = [float(r["TyreLife"]) for r in laps if number(r.get("TyreLife")) is not None]
    start, end = min(ages), max(ages) + ahead_laps
    xs = [start + i for i in range(int(end - start) + 1)]
    x0, y0 = statistics.fmean(curve.tyre_life), statistics.fmean(curve.fuel_corrected)

    def line(slope: float | None) -> list[float]:
        return [y0 + (slope if slope is not None else rate) * (x - x0) for x in xs]

    a, b = line(low), line(high)  # the band fans out from the stint's centre both ways
    return StintCurve(
        curve.stint,
        curve.compound,
        curve.tyre_life,
        curve.fuel_corrected,
        xs,
        line(rate),
        [min(p, q) for p, q in zip(a, b, strict=True)],
        [max(p, q) for p, q in zip(a, b, strict=True)],
        pred.get("ModelVersion"),
    )


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
    for rec in reversed(snap.alerts):
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
    """The pit-window model's latest ok prediction for ``drv`` (None: the most likely driver)."""
    per = {d: r for d, r in snap.predictions.get("pit_window", {}).items() if r.get("Status") == "ok"}
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
