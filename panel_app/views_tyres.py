"""Dashboard tyre views: one bar per stint, and each stint's wear curve (fuel-corrected lap times
with the tyre-degradation model's predicted rate, and its band, drawn through them).

Pure, no Panel. Re-exported by :mod:`stratx.panel_app.views`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from stratx.panel_app.state import RaceSnapshot, Record
from stratx.panel_app.views_lookup import number


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
