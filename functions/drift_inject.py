"""**SYNTHETIC** shifts injected into the raw laps of a real race, to check that drift detection
catches what it should (``stratx.quix_apps.drift_measure``, the drift tests). Never real data:
each function returns a shifted copy of a ``laps`` table (``functions/racedata.py`` columns) and the
race built from it is labelled ``SYNTHETIC`` wherever it is reported.

* :func:`speed_trap_offset`: every speed trap (``SpeedI1``, ``SpeedI2``, ``SpeedFL``, ``SpeedST``)
  of every lap x (1 + ``offset``), default +5 % (a mis-calibrated trap feed).
* :func:`team_slower`: one team's cars ``factor`` slower (default 1 %): their LapTime and sector
  times x factor, and their session times kept consistent (each lap end, lap start, pit in and pit
  out time moved to ``start + factor x (time - start)``, ``start`` = the race start, the earliest
  LapStartTime), so gaps, intervals and positions at the line follow.
* :func:`tyre_life_reset`: from the mid-race lap on (``ceil(last lap / 2)``), every car's TyreLife
  counter restarts at 1 on that lap and counts up from there for the rest of the stint it is on,
  with no pit stop (a feed that reset its counters); later stints keep their real values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SYNTHETIC = "SYNTHETIC"
SPEED_TRAPS: tuple[str, ...] = ("SpeedI1", "SpeedI2", "SpeedFL", "SpeedST")
SECTORS: tuple[str, ...] = ("Sector1Time", "Sector2Time", "Sector3Time")
SESSION_TIMES: tuple[str, ...] = ("Time", "LapStartTime", "PitInTime", "PitOutTime")
INJECTIONS: tuple[str, ...] = ("speed_trap_+5%", "team_+1%", "tyre_life_reset")


def speed_trap_offset(laps: pd.DataFrame, offset: float = 0.05) -> pd.DataFrame:
    """Every speed trap of every lap x (1 + ``offset``)."""
    out = laps.copy()
    for trap in SPEED_TRAPS:
        if trap in out.columns:
            out[trap] = out[trap].astype(float) * (1.0 + offset)
    return out


def winner_team(laps: pd.DataFrame) -> str:
    """The team of the car that completed the most laps first (the winner)."""
    last = laps.sort_values(["LapNumber", "Time"], ascending=[False, True]).iloc[0]
    return str(last["Team"])


def team_slower(laps: pd.DataFrame, team: str, factor: float = 1.01) -> pd.DataFrame:
    """One team's laps ``factor`` slower, session times consistent (module doc)."""
    if team not in set(laps["Team"]):
        raise ValueError(f"no team {team!r} in these laps")
    out = laps.copy()
    mine = (out["Team"] == team).to_numpy()
    start = float(np.nanmin(laps["LapStartTime"].astype(float)))
    for col in ("LapTime", *SECTORS):
        if col in out.columns:
            out.loc[mine, col] = out.loc[mine, col].astype(float) * factor
    for col in SESSION_TIMES:
        if col in out.columns:
            values = out.loc[mine, col].astype(float)
            out.loc[mine, col] = start + factor * (values - start)
    return out


def reset_lap(laps: pd.DataFrame) -> int:
    """The lap from which :func:`tyre_life_reset` restarts the counters (the mid-race lap)."""
    return math.ceil(int(laps["LapNumber"].max()) / 2)


def tyre_life_reset(laps: pd.DataFrame, from_lap: int | None = None) -> pd.DataFrame:
    """Every car's TyreLife restarts at 1 on ``from_lap`` (default :func:`reset_lap`) and counts up
    for the rest of the stint it is on; no pit stop, later stints unchanged."""
    lap0 = reset_lap(laps) if from_lap is None else from_lap
    out = laps.copy()
    out["TyreLife"] = out["TyreLife"].astype(float)
    for _, car in out.groupby("DriverNumber", sort=False):
        at = car[car["LapNumber"] == lap0]
        if at.empty or pd.isna(at["Stint"].iloc[0]) or pd.isna(at["TyreLife"].iloc[0]):
            continue
        stint, life = at["Stint"].iloc[0], float(at["TyreLife"].iloc[0])
        rows = car.index[(car["Stint"] == stint) & (car["LapNumber"] >= lap0)]
        out.loc[rows, "TyreLife"] = out.loc[rows, "TyreLife"] - life + 1.0
    return out


def inject(laps: pd.DataFrame, name: str) -> pd.DataFrame:
    """The injection of :data:`INJECTIONS` called ``name`` (team: the winner's team)."""
    if name == "speed_trap_+5%":
        return speed_trap_offset(laps, 0.05)
    if name == "team_+1%":
        return team_slower(laps, winner_team(laps), 1.01)
    if name == "tyre_life_reset":
        return tyre_life_reset(laps)
    raise ValueError(f"unknown injection {name!r}; known: {', '.join(INJECTIONS)}")
