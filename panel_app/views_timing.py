"""Dashboard timing views: the timing tower (live timing where it exists, else the last lap), the
running order, close pairs and the battle forecast, and the race trace (gap to the leader per lap).

Pure, no Panel. Re-exported by :mod:`stratx.panel_app.views`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from stratx.panel_app.state import RaceSnapshot
from stratx.panel_app.views_lookup import (
    driver_labels,
    fmt_gap,
    last_lap,
    number,
    predicted_next_lap,
    prediction,
)

DRS_RANGE_S = 1.0


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
    retired_lap: int | None = None  # the car's last lap when it is out of the race


def tower_rows(snap: RaceSnapshot) -> list[TowerRow]:
    """One row per driver, in running order: live timing where it exists, else the last lap; a
    retired car goes to the bottom with "OUT L<lap>" for its gap and no position or forecast."""
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
        out = snap.retired.get(drv)
        retired_lap = int(out.get("LapNumber") or 0) if out is not None else None
        if retired_lap is not None:
            position, gap, interval, interval_s = None, f"OUT L{retired_lap}", "-", None
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
                predicted_next_lap=None if retired_lap is not None else predicted_next_lap(snap, drv),
                retired_lap=retired_lap,
            )
        )
    # running cars by position; the retired ones below, the latest out first
    rows.sort(
        key=lambda r: (
            r.retired_lap is not None,
            r.position is None,
            r.position or -(r.retired_lap or 0),
            r.number,
        )
    )
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
