"""Team pace against the team's own earlier races of the season: the closest real check for "one
team 1 % slower", which the circuit-free drift view cannot see (each lap is relative to the
driver's own anchor, so a whole team's pace offset cancels). Report only (no alert).

A team's pace in a race (:func:`team_pace`): the median over its green-flag laps of LapTime / the
median LapTime of the field's green-flag laps on the same lap. Its shift (:func:`team_shifts`):
this race's pace / the mean of the team's earlier races of the season - 1. How far teams move
naturally (:func:`natural_limit`): the largest |shift| over the season's earlier races, each
against the races before it (causal).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def team_pace(laps: pd.DataFrame) -> pd.Series:
    """Team -> pace (1.0 = the field's median lap; module doc)."""
    green = laps[laps["GreenClean"].astype(bool) & laps["LapTime"].notna() & laps["Team"].notna()]
    if green.empty:
        return pd.Series(dtype=float)
    field = green.groupby("LapNumber")["LapTime"].transform("median")
    return (green["LapTime"].astype(float) / field).groupby(green["Team"]).median()


def team_shifts(current: pd.DataFrame, earlier: Sequence[pd.DataFrame]) -> pd.Series:
    """Team -> this race's pace / the mean of its earlier races' pace - 1 (teams with history)."""
    if not earlier:
        return pd.Series(dtype=float)
    before = pd.concat([team_pace(t) for t in earlier], axis=1).mean(axis=1)
    now = team_pace(current)
    common = now.index.intersection(before.dropna().index)
    return (now[common] / before[common] - 1.0).sort_values()


def natural_limit(season: Sequence[pd.DataFrame]) -> float:
    """The largest |shift| of any team in the season's races (in time order) against its earlier
    races; NaN with fewer than 2 races."""
    shifts = [team_shifts(season[i], season[:i]).abs().max() for i in range(1, len(season))]
    values = [s for s in shifts if np.isfinite(s)]
    return float(max(values)) if values else float("nan")
