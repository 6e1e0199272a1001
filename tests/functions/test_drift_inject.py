"""The SYNTHETIC injected shifts (functions/drift_inject.py) on the real 2023 Bahrain GP's raw laps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import feature_build
from stratx.functions import drift_inject, drift_like
from stratx.functions.racedata import RaceData


@pytest.fixture(scope="module")
def laps(bahrain: RaceData) -> pd.DataFrame:
    return bahrain.table("laps")


def test_speed_trap_offset_moves_the_four_traps_only(laps: pd.DataFrame) -> None:
    before = laps.copy()
    out = drift_inject.speed_trap_offset(laps, 0.05)
    for trap in drift_inject.SPEED_TRAPS:
        assert np.allclose(out[trap], laps[trap] * 1.05, equal_nan=True)
    rest = [c for c in laps.columns if c not in drift_inject.SPEED_TRAPS]
    pd.testing.assert_frame_equal(out[rest], laps[rest])
    pd.testing.assert_frame_equal(laps, before)  # the input is not modified


def test_team_slower_keeps_session_times_consistent(laps: pd.DataFrame) -> None:
    team = drift_inject.winner_team(laps)
    assert team == "Red Bull Racing"
    out = drift_inject.team_slower(laps, team, 1.01)
    mine = laps["Team"] == team
    assert np.allclose(out.loc[mine, "LapTime"], laps.loc[mine, "LapTime"] * 1.01, equal_nan=True)
    assert np.allclose(out.loc[mine, "Sector2Time"], laps.loc[mine, "Sector2Time"] * 1.01, equal_nan=True)
    pd.testing.assert_frame_equal(out[~mine], laps[~mine])
    # each lap still ends LapTime after it started, wherever it did in the real data
    held = (laps["Time"] - laps["LapStartTime"] - laps["LapTime"]).abs() < 1e-3
    check = mine & held
    assert check.sum() > 50
    assert np.allclose(out.loc[check, "Time"] - out.loc[check, "LapStartTime"], out.loc[check, "LapTime"])
    start = laps["LapStartTime"].min()
    last = laps[mine]["Time"].idxmax()
    assert out.loc[last, "Time"] - start == pytest.approx(1.01 * (laps.loc[last, "Time"] - start))
    with pytest.raises(ValueError, match="no team"):
        drift_inject.team_slower(laps, "Brabham")


def test_tyre_life_reset_mid_stint(bahrain: RaceData, laps: pd.DataFrame) -> None:
    lap0 = drift_inject.reset_lap(laps)
    assert lap0 == 29  # 57 laps
    out = drift_inject.tyre_life_reset(laps)
    before = laps["LapNumber"] < lap0
    pd.testing.assert_series_equal(out.loc[before, "TyreLife"], laps.loc[before, "TyreLife"].astype(float))
    at = out[out["LapNumber"] == lap0]
    assert (at["TyreLife"] == 1).all()
    # a car that pitted after lap0 starts its next stint with the real counter
    stint_at = laps[laps["LapNumber"] == lap0].set_index("DriverNumber")["Stint"]
    later = laps[(laps["LapNumber"] > lap0) & laps["DriverNumber"].isin(stint_at.index)]
    later = later[later["Stint"].to_numpy() != stint_at[later["DriverNumber"]].to_numpy()]
    assert len(later) > 100
    pd.testing.assert_series_equal(
        out.loc[later.index, "TyreLife"], laps.loc[later.index, "TyreLife"].astype(float)
    )
    # the features of the injected race: the counter now reads fewer laps than the stint has run
    shifted = dataclasses.replace(bahrain, tables={**bahrain.tables, "laps": out})
    rows = pd.DataFrame(feature_build.lap_feature_rows(shifted)[0])
    view = drift_like.like_view(rows)
    under = view[drift_like.TYRE_UNDER_STINT]
    assert under[(rows["LapNumber"] < lap0).to_numpy()].sum() == 0
    assert under[(rows["LapNumber"] >= lap0).to_numpy()].sum() > 100


def test_inject_by_name(laps: pd.DataFrame) -> None:
    assert set(drift_inject.INJECTIONS) == {"speed_trap_+5%", "team_+1%", "tyre_life_reset"}
    with pytest.raises(ValueError, match="unknown injection"):
        drift_inject.inject(laps, "rain")
