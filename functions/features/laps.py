"""Lap features: clean-lap flags, rolling pace, stint metrics, pace deltas and gaps.

One pure step function, :func:`lap_step`, turns a completed-lap event into one feature record,
given the session's state (a JSON-serializable dict) and returns the new state. The streaming app
keeps that state per session in Quix Streams; the offline builder folds the same function over a
race's laps in event-time order. Every feature is *causal*: it uses only laps completed up to this
lap's end, so online and offline give the same numbers.

Units: times in seconds, fuel in kg, slopes in seconds per lap.

Definitions
-----------
Clean lap (``IsClean``): has a LapTime, LapNumber > 1, no pit entry or exit on the lap, not
deleted, and every track status on the lap is green ('1'). ``CleanReason`` names the first
failing rule. Rolling features, slopes, personal/session bests and field medians use clean laps
only.

Fuel model: a car starts with ``FUEL_START_KG`` = 105 kg and burns ``FUEL_BURN_KG_PER_LAP`` =
1.7 kg/lap (floored at 0); each kg costs ``FUEL_EFFECT_S_PER_KG`` = 0.03 s. Fuel-corrected lap
time = LapTime - 0.03 * fuel on board at the lap's start (the time the lap would take empty).

| feature | definition |
| --- | --- |
| Last3Mean/Median/Std/Min, Last5... | over the driver's last 3 / 5 clean laps (std: ddof 1) |
| StintTrendSlope | OLS slope of LapTime vs LapNumber over the stint's clean laps (>= 3) |
| StintDegSlope, StintDegSlopeStderr | OLS slope of fuel-corrected LapTime vs TyreLife over the stint's clean laps (>= 3), and its standard error |
| LapsSincePB | LapNumber minus the lap of the driver's best clean lap so far (this lap included) |
| DeltaToPB | LapTime minus the driver's best clean lap *before* this lap (negative: a new best) |
| DeltaToSessionBest | LapTime minus the best clean lap by anyone before this lap |
| DeltaToTeammate | LapTime minus the teammate's latest clean lap |
| DeltaToCarAhead | LapTime minus the LapTime of the car that crossed the line just before, on the same lap |
| DeltaToCarBehind | LapTime minus the latest LapTime of the car that was behind at the previous line |
| DeltaToFieldMedian | LapTime minus the median of the field's clean laps on laps N-2..N completed so far |
| PositionOnLap | order of crossing the line on this lap (1 = first car to complete it) |
| PositionChange | PositionOnLap on the previous lap minus this one (positive = places gained) |
| GapToLeader | lap end minus the first crossing of this lap by anyone (lapped cars: time since the leader completed the same lap) |
| IntervalAhead | lap end minus the previous crossing of this lap (None for the first car) |
| IntervalBehind | at the previous line: the next car's crossing minus this car's (the last known gap behind) |
| InDRSRange | IntervalAhead < 1.0 s (timing-line proxy for DRS detection) |
| LapsDown | highest lap completed by anyone at this lap's end minus LapNumber |
| Neutralised | SC, VSC or red flag on the lap, causal (``functions/scope.py``: the lap's own track status codes, else the track-status / race-control messages received before the line crossing) |
| GreenClean | the lap is none of lap 1, in-lap, out-lap, neutralised (``functions/scope.py``): the laps strategy alerts and anomaly checks look at |
| TrackStatus, SpeedI1, SpeedI2, SpeedFL, SpeedST | the lap's own timing values, passed through (track status codes seen on the lap; speed traps, km/h) so a feature record is self-contained for the models |
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from stratx.functions import scope

FUEL_START_KG = 105.0
FUEL_BURN_KG_PER_LAP = 1.7
FUEL_EFFECT_S_PER_KG = 0.03
DRS_RANGE_S = 1.0
FIELD_WINDOW_LAPS = 3
GREEN = "1"
SPEED_TRAPS = ("SpeedI1", "SpeedI2", "SpeedFL", "SpeedST")


def clean_reason(lap: dict[str, Any]) -> str | None:
    """Why a lap is not clean (None when it is)."""
    if lap.get("LapTime") is None:
        return "no_lap_time"
    if lap["LapNumber"] <= 1:
        return "lap_1"
    if lap.get("PitInTime") is not None:
        return "pit_in"
    if lap.get("PitOutTime") is not None:
        return "pit_out"
    if lap.get("Deleted"):
        return "deleted"
    status = lap.get("TrackStatus") or GREEN
    if any(code != GREEN for code in str(status)):
        return "track_status"
    return None


def fuel_kg(lap_number: int) -> float:
    """Fuel on board at the start of ``lap_number`` under the documented model."""
    return max(0.0, FUEL_START_KG - FUEL_BURN_KG_PER_LAP * (lap_number - 1))


def fuel_corrected(lap_time: float | None, lap_number: int) -> float | None:
    return None if lap_time is None else lap_time - FUEL_EFFECT_S_PER_KG * fuel_kg(lap_number)


def ols(xs: list[float], ys: list[float]) -> tuple[float | None, float | None]:
    """Slope and its standard error by ordinary least squares (None if n < 3 or x constant)."""
    n = len(xs)
    if n < 3:
        return None, None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None, None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    sse = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, math.sqrt(sse / (n - 2) / sxx)


def _window(values: list[float], k: int, prefix: str) -> dict[str, float | None]:
    last = values[-k:]
    return {
        f"{prefix}Mean": sum(last) / len(last) if last else None,
        f"{prefix}Median": statistics.median(last) if last else None,
        f"{prefix}Std": statistics.stdev(last) if len(last) >= 2 else None,
        f"{prefix}Min": min(last) if last else None,
    }


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def new_state() -> dict[str, Any]:
    return {
        "drivers": {},
        "crossings": {},
        "clean_by_lap": {},
        "session_best": None,
        "scope": scope.new_state(),
    }


def track_step(state: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any]:
    """Fold a TrackStatus or RaceControl event, as it arrives, into the session state's
    neutralisation periods (:func:`stratx.functions.scope.status_step`)."""
    st = state if state is not None else new_state()
    st["scope"] = scope.status_step(st.get("scope"), event)
    return st


def lap_step(
    state: dict[str, Any] | None, lap: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | str]:
    """Fold one completed lap into the session state; returns (state, features) or (state, reason).

    A lap whose LapNumber is not above the driver's last processed lap (a duplicate or a late
    replay) leaves the state unchanged and returns the reason as a string, for the dead letters.
    """
    st = state if state is not None else new_state()
    drv = str(lap["DriverNumber"])
    n = int(lap["LapNumber"])
    end = float(lap["SessionTime"])
    d = st["drivers"].setdefault(drv, {"laps": [], "pb": None, "pb_lap": None, "team": None, "pos": {}})
    if d["laps"] and n <= d["laps"][-1]["n"]:
        return (
            st,
            f"duplicate or out-of-order lap {n} of driver {drv} (last processed lap {d['laps'][-1]['n']})",
        )
    d["team"] = lap.get("Team") or d["team"]
    lap_time = lap.get("LapTime")
    reason = clean_reason(lap)
    clean = reason is None
    at_line = {**lap, "SessionTime": end}
    out_of_scope = scope.scope_reason(at_line, st.get("scope"))
    fc = fuel_corrected(lap_time, n)

    # --- crossings and gaps (before this car is added to the lap's crossings)
    cross = st["crossings"].setdefault(str(n), {})
    earlier = sorted((t, other) for other, t in cross.items() if t <= end)
    gap_leader = end - earlier[0][0] if earlier else 0.0
    ahead = earlier[-1] if earlier else None
    interval_ahead = end - ahead[0] if ahead else None
    position = len(earlier) + 1
    cross[drv] = end
    prev = st["crossings"].get(str(n - 1), {})
    behind_prev = None
    if drv in prev:
        later = sorted((t, other) for other, t in prev.items() if t > prev[drv])
        behind_prev = later[0] if later else None
    interval_behind = behind_prev[0] - prev[drv] if behind_prev else None
    leader_laps = max(
        (int(k) for k, v in st["crossings"].items() if any(t <= end for t in v.values())), default=n
    )
    prev_pos = d["pos"].get(str(n - 1))
    d["pos"][str(n)] = position

    # --- pace deltas against what was known before this lap
    pb_before = d["pb"]
    session_best_before = st["session_best"]
    ahead_time = _lap_time_of(st, ahead[1], n) if ahead else None
    behind_time = _latest_time(st, behind_prev[1]) if behind_prev else None
    mate = next(
        (o for o, od in st["drivers"].items() if o != drv and od["team"] and od["team"] == d["team"]), None
    )
    mate_time = _latest_clean(st, mate) if mate else None
    field = [t for k in range(n - FIELD_WINDOW_LAPS + 1, n + 1) for t in st["clean_by_lap"].get(str(k), [])]
    field_median = statistics.median(field) if field else None

    # --- update this driver's history
    d["laps"].append(
        {
            "n": n,
            "t": lap_time,
            "fc": fc,
            "clean": clean,
            "stint": lap.get("Stint"),
            "life": lap.get("TyreLife"),
        }
    )
    if clean:
        st["clean_by_lap"].setdefault(str(n), []).append(lap_time)
        if d["pb"] is None or lap_time < d["pb"]:
            d["pb"], d["pb_lap"] = lap_time, n
        if st["session_best"] is None or lap_time < st["session_best"]:
            st["session_best"] = lap_time

    clean_times = [x["t"] for x in d["laps"] if x["clean"]]
    stint = lap.get("Stint")
    in_stint = [x for x in d["laps"] if x["stint"] == stint]
    stint_clean = [x for x in in_stint if x["clean"]]
    trend, _ = ols([float(x["n"]) for x in stint_clean], [x["t"] for x in stint_clean])
    deg_pts = [x for x in stint_clean if x["life"] is not None]
    deg, deg_err = ols([float(x["life"]) for x in deg_pts], [x["fc"] for x in deg_pts])

    features: dict[str, Any] = {
        "SessionKey": lap["SessionKey"],
        "DriverNumber": drv,
        "Driver": lap.get("Driver"),
        "Team": d["team"],
        "LapNumber": n,
        "SessionTime": end,
        "Date": lap.get("Date"),
        "LapTime": lap_time,
        "IsClean": clean,
        "CleanReason": reason,
        "Stint": stint,
        "Compound": lap.get("Compound"),
        "TyreLife": lap.get("TyreLife"),
        "FreshTyre": lap.get("FreshTyre"),
        "LapsInStint": len(in_stint),
        "StintCleanLaps": len(stint_clean),
        "FuelKg": fuel_kg(n),
        "FuelCorrectedLapTime": fc,
        **_window(clean_times, 3, "Last3"),
        **_window(clean_times, 5, "Last5"),
        "StintTrendSlope": trend,
        "StintDegSlope": deg,
        "StintDegSlopeStderr": deg_err,
        "PersonalBest": d["pb"],
        "LapsSincePB": n - d["pb_lap"] if d["pb_lap"] is not None else None,
        "DeltaToPB": _minus(lap_time, pb_before),
        "DeltaToSessionBest": _minus(lap_time, session_best_before),
        "DeltaToTeammate": _minus(lap_time, mate_time),
        "DeltaToCarAhead": _minus(lap_time, ahead_time),
        "DeltaToCarBehind": _minus(lap_time, behind_time),
        "DeltaToFieldMedian": _minus(lap_time, field_median),
        "PositionOnLap": position,
        "PositionChange": prev_pos - position if prev_pos is not None else None,
        "GapToLeader": gap_leader,
        "IntervalAhead": interval_ahead,
        "IntervalBehind": interval_behind,
        "InDRSRange": interval_ahead is not None and interval_ahead < DRS_RANGE_S,
        "LapsDown": leader_laps - n,
        "Neutralised": scope.neutralised(at_line, st.get("scope")),
        "GreenClean": out_of_scope is None,
        "TrackStatus": lap.get("TrackStatus"),
        **{trap: lap.get(trap) for trap in SPEED_TRAPS},
    }
    return st, features


def _lap_time_of(st: dict[str, Any], drv: str, n: int) -> float | None:
    for x in reversed(st["drivers"].get(drv, {}).get("laps", [])):
        if x["n"] == n:
            return x["t"]
    return None


def _latest_time(st: dict[str, Any], drv: str) -> float | None:
    laps = st["drivers"].get(drv, {}).get("laps", [])
    return laps[-1]["t"] if laps else None


def _latest_clean(st: dict[str, Any], drv: str) -> float | None:
    for x in reversed(st["drivers"].get(drv, {}).get("laps", [])):
        if x["clean"]:
            return x["t"]
    return None


def build_lap_features(
    laps: list[dict[str, Any]], track: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Offline: fold :func:`lap_step` over one session's lap events in event-time order, with the
    session's TrackStatus / RaceControl events (``track``) folded by :func:`track_step` before
    every lap that ends after them (as the stream receives them)."""
    state: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    rejected: list[str] = []
    events = sorted(
        [(float(e["SessionTime"]), 0, e) for e in track or []]
        + [(float(x["SessionTime"]), 1, x) for x in laps],
        key=lambda x: (x[0], x[1]),
    )
    for _, kind, lap in events:
        if kind == 0:
            state = track_step(state, lap)
            continue
        state, out = lap_step(state, lap)
        if isinstance(out, str):
            rejected.append(out)
        else:
            rows.append(out)
    return rows, rejected
