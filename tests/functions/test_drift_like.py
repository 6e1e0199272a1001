"""Drift like with like (functions/drift_like.py) on real laps: the circuit-free view, the speed
references, Evidently's distances and the leave-one-race-out calibration; and the team-pace check
(functions/drift_team.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import feature_build
from stratx.functions import drift_inject, drift_like, drift_team
from stratx.functions.racedata import RaceData


@pytest.fixture(scope="module")
def rows(bahrain: RaceData) -> pd.DataFrame:
    """The real 2023 Bahrain GP's lap features (offline feature build)."""
    return pd.DataFrame(feature_build.lap_feature_rows(bahrain)[0])


def test_view_is_circuit_free(rows: pd.DataFrame) -> None:
    view = drift_like.like_view(rows)
    anchor = rows["Last3Median"].fillna(rows["LapTime"]).astype(float)
    assert np.allclose(view["LapTimeToAnchor"], rows["LapTime"].astype(float) / anchor, equal_nan=True)
    green = rows["GreenClean"].astype(bool)
    assert 0.99 < view.loc[green, "LapTimeToAnchor"].median() < 1.01  # a ratio, not ~95 s
    assert np.allclose(
        view["DeltaToCarAheadPerLap"], rows["DeltaToCarAhead"].astype(float) / anchor, equal_nan=True
    )
    assert not {"LapNumber", "FuelKg", "GapToLeader", "LapsDown", "Stint", "LapTime"} & set(view)
    assert (view[drift_like.TYRE_UNDER_STINT] == 0).all()  # real counters agree with the stints
    assert not any(c.endswith(drift_like.SPEED_SUFFIX) for c in view)  # no circuit reference given


def test_speed_traps_relative_to_the_circuit_on_green_laps(rows: pd.DataFrame) -> None:
    speeds = drift_like.race_speeds(rows)
    assert set(speeds) == set(drift_like.SPEED_TRAPS) and 280 < speeds["SpeedST"] < 320
    view = drift_like.like_view(rows, speeds)
    green = rows["GreenClean"].astype(bool).to_numpy()
    st = view["SpeedSTToCircuit"]
    assert st[~green].isna().all() and 0.98 < st[green].median() < 1.02
    # older than 3 seasons: no reference, and the summary says why
    assert drift_like.circuit_speeds([(2019, speeds)], 2023) == {}
    assert drift_like.circuit_speeds([(2020, speeds), (2022, {"SpeedST": 290.0})], 2023)["SpeedST"] == (
        pytest.approx((speeds["SpeedST"] + 290.0) / 2)
    )
    note = drift_like.speed_note("Styrian Grand Prix", {})
    assert note is not None and "Austrian Grand Prix" in note


@pytest.mark.slow  # importing Evidently takes 7-35 s on a shared machine
def test_distances_are_evidentlys(rows: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
        from evidently.legacy.calculations.stattests.wasserstein_distance_norm import (
            _wasserstein_distance_norm,
        )
        from evidently.legacy.core import ColumnType
    early, late = rows[rows.LapNumber <= 20], rows[rows.LapNumber > 20]
    ref, cur = early["SpeedST"].dropna(), late["SpeedST"].dropna()
    theirs, _ = _wasserstein_distance_norm(ref, cur, ColumnType.Numerical, 0.1)
    assert drift_like.normed_wasserstein(ref.to_numpy(), cur.to_numpy()) == pytest.approx(theirs)
    ref_c, cur_c = early["Compound"].dropna(), late["Compound"].dropna()
    theirs, _ = _jensenshannon(ref_c, cur_c, ColumnType.Categorical, 0.1)
    assert drift_like.jensen_shannon(ref_c, cur_c) == pytest.approx(theirs)


def test_calibration_is_the_furthest_race_times_the_margin(rows: pd.DataFrame) -> None:
    """Three real 'races' (thirds of the field of 2023 Bahrain, by driver) as reference races."""
    drivers = sorted(rows["DriverNumber"].unique())
    thirds = {d: f"group {i % 3}" for i, d in enumerate(drivers)}
    view = drift_like.like_view(rows)
    view[drift_like.RACE] = rows["DriverNumber"].map(thirds).to_numpy()
    laps = rows["LapNumber"]
    cal = drift_like.calibrate(view, laps, grid=(20,))
    cut = view[(laps <= 20).to_numpy()]
    by_hand = max(
        drift_like.column_distance(
            cut.loc[cut[drift_like.RACE] != g, "LapTimeToAnchor"],
            cut.loc[cut[drift_like.RACE] == g, "LapTimeToAnchor"],
        )
        or 0.0
        for g in ("group 0", "group 1", "group 2")
    )
    assert cal[20]["LapTimeToAnchor"] == pytest.approx(
        max(drift_like.FLOOR, (1 + drift_like.MARGIN) * by_hand)
    )
    assert min(cal[20].values()) >= drift_like.FLOOR
    assert drift_like.thresholds_for(cal, 33) == cal[20] == drift_like.thresholds_for(cal, 12)
    # a group against the others at the calibrated thresholds: nothing drifts ...
    mine = (view[drift_like.RACE] == "group 0").to_numpy() & (laps <= 20).to_numpy()
    others = ~(view[drift_like.RACE] == "group 0").to_numpy() & (laps <= 20).to_numpy()
    share, drifted, _ = drift_like.compare_window(view[mine], view[others], cal[20])
    assert share == 0.0 and drifted == []
    # ... SYNTHETIC tyres 15 laps older than they are drift TyreLife, and only it
    shifted = view[mine].copy()
    shifted["TyreLife"] += 15
    share, drifted, found = drift_like.compare_window(shifted, view[others], cal[20])
    assert drifted == ["TyreLife"] and share == pytest.approx(1 / len(found))


def test_windows_and_causal_races() -> None:
    starts = {"b": "2023-03-05T15:00", "a": "2022-03-20T15:00", "c": "2023-11-19T06:00"}
    assert drift_like.races_before(starts, "2023-04-01") == ["a", "b"]
    assert drift_like.grid_lap(9) == 10 and drift_like.grid_lap(57) == 55 and drift_like.grid_lap(99) == 80
    laps = pd.DataFrame({"LapNumber": [1, 5, 10, 11, 20]})
    assert drift_like.lap_window(laps, 10)["LapNumber"].tolist() == [1, 5, 10]
    assert drift_like.lap_window(laps, 20, window_laps=10)["LapNumber"].tolist() == [11, 20]
    assert drift_like.circuit("Styrian Grand Prix") == drift_like.circuit("Austrian Grand Prix")


def test_team_pace_sees_one_team_one_percent_slower(bahrain: RaceData, rows: pd.DataFrame) -> None:
    """SYNTHETIC: the winner's team 1 % slower, against the same real race as its 'earlier' race."""
    laps = bahrain.table("laps")
    team = drift_inject.winner_team(laps)
    shifted = drift_inject.team_slower(laps, team, 1.01)
    import dataclasses

    slow = pd.DataFrame(
        feature_build.lap_feature_rows(
            dataclasses.replace(bahrain, tables={**bahrain.tables, "laps": shifted})
        )[0]
    )
    shifts = drift_team.team_shifts(slow, [rows])
    assert shifts[team] == pytest.approx(0.01, abs=0.002)
    assert shifts.drop(team).abs().max() < 0.002
    assert drift_team.team_shifts(rows, []).empty
    assert np.isnan(drift_team.natural_limit([rows]))
