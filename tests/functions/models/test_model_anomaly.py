"""Model 5 (anomaly): context and labels on hand-made rows, SYNTHETIC fault injection, alarm
counting, the bundled windows file, and behaviour of a small model fitted on real bundled laps.

Lap level fitted on the bundled races: train 2023 Bahrain, calibrate 2024 Bahrain, hold out 2023
Las Vegas (a test-only split for speed; the real split is base.race_split).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import sources, training
from stratx.functions.models import anomaly as an
from stratx.functions.models import base
from stratx.functions.schemas import TelemetryWindow
from tests.conftest import BAHRAIN_2023, DATA_DIR, LAS_VEGAS_2023

BAHRAIN_2024 = DATA_DIR / "races" / "2024_bahrain_grand_prix_race"
ROLE = {(2023, "Bahrain Grand Prix"): "train", (2024, "Bahrain Grand Prix"): "validation"}


def small_split(frame: pd.DataFrame) -> pd.Series:
    roles = [ROLE.get((int(y), str(e)), "test") for y, e in zip(frame.Year, frame.EventName, strict=True)]
    return pd.Series(roles, index=frame.index, dtype=object)


@pytest.fixture(scope="module")
def corpus() -> base.Corpus:
    races = [sources.load_bundled(p) for p in (BAHRAIN_2023, BAHRAIN_2024, LAS_VEGAS_2023)]
    return training.build_corpus(races, progress=False)


@pytest.fixture(scope="module")
def laps(corpus: base.Corpus) -> pd.DataFrame:
    return an.lap_rows(corpus.laps, corpus.raw_laps)


@pytest.fixture(scope="module")
def lap_model(laps: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    where = small_split(laps).to_numpy()
    boosters, meta = an._fit_level(laps, where == "train", where == "validation")
    val = laps[where == "validation"]
    meta["threshold"] = an.choose_threshold(val, an.score_rows(boosters, meta, val)[0], an.race_hours(val))
    return boosters, meta


def _one_driver(speed_st: list[float], reasons: list[str | None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = len(speed_st)
    common = {"Year": 2023, "EventName": "X", "DriverNumber": "1", "LapNumber": range(1, n + 1)}
    laps = pd.DataFrame(
        {
            **common,
            "LapTime": 90.0,
            "IsClean": [r is None for r in reasons],
            "CleanReason": reasons,
            "Last3Median": 90.0,
        }
    )
    raw = pd.DataFrame(
        {
            **common,
            "LapStartTime": [100.0 * i for i in range(n)],
            "Time": [100.0 * (i + 1) for i in range(n)],
            "TrackStatus": "1",
            "SpeedI1": 250.0,
            "SpeedI2": 260.0,
            "SpeedFL": 280.0,
            "SpeedST": speed_st,
        }
    )
    return laps, raw


# ------------------------------------------------------------------ context and labels
def test_reference_is_the_median_of_the_previous_in_scope_laps() -> None:
    laps, raw = _one_driver([300, 302, 304, 250, 306], [None, None, None, "pit_in", None])
    rows = an.lap_rows(laps, raw)
    assert rows["InScope"].tolist() == [True, True, True, False, True]
    ref = rows["Ref_SpeedST"].tolist()
    assert np.isnan(ref[0]) and np.isnan(ref[1])  # fewer than 2 earlier laps
    assert ref[2] == 301 and ref[3] == 302 and ref[4] == 302  # the pit lap's 250 is never used
    assert rows["Field_SpeedST"].tolist()[3] != 250 and rows["Ref_LapTime"].eq(90.0).all()


def test_windows_take_the_lap_they_lie_in() -> None:
    laps, raw = _one_driver([300, 302, 304], [None, "pit_in", None])
    rows = an.lap_rows(laps, raw)
    starts = [0.0, 5.0, 97.0, 100.0, 150.0, 250.0, 320.0]
    windows = pd.DataFrame({"Year": 2023, "EventName": "X", "DriverNumber": "1", "WindowStart": starts})
    windows["WindowEnd"] = windows.WindowStart + 5
    for col in {c for group in an.SENSOR_GROUPS.values() for c in group} - {"SpeedMeanPrev"}:
        windows[col] = 1.0
    w = an.window_rows(windows, rows)
    assert w["LapNumber"].tolist() == [1, 1, 2, 2, 2, 3, 4]  # 97-102 spans laps 1/2: not inside lap 1
    assert w["InScope"].tolist() == [True, True, False, False, False, True, False]
    assert w["SpeedMeanPrev"].iloc[1] == 1.0  # 5 follows the window ending at 5
    assert w["SpeedMeanPrev"].drop(index=1).isna().all()  # no other window follows its predecessor


def test_alarms_are_runs_of_flagged_in_scope_rows() -> None:
    rows = pd.DataFrame(
        {
            "Year": 2023,
            "EventName": "X",
            "DriverNumber": ["1"] * 5 + ["2"] * 2,
            "LapNumber": [3, 4, 6, 7, 8, 2, 3],
            "InScope": [True, True, True, False, True, True, True],
        }
    )
    flag = np.array([True, True, True, True, True, False, True])
    assert an.alarm_runs(rows, flag) == 4  # 1: laps 3-4, 6, 8 (7 out of scope); 2: lap 3
    assert an.alarm_runs(rows, np.zeros(7, dtype=bool)) == 0


def test_calibrated_score_is_monotone_and_bounded() -> None:
    rng = np.random.default_rng(1)
    table = an.calibration_table(rng.normal(size=5000))
    s = np.linspace(-6, 30, 400)
    score = an.calibrated(s, table)
    assert (np.diff(score) >= 0).all() and score.min() >= 0 and score.max() <= 1
    assert an.calibrated(np.array([0.0]), table)[0] == pytest.approx(0.5, abs=0.02)
    assert an.calibrated(np.array([20.0]), table)[0] > an.calibrated(np.array([5.0]), table)[0]


def test_mechanical_retirement_reports_laps_before_the_end() -> None:
    laps = pd.DataFrame({"Year": 2023, "EventName": "X", "DriverNumber": "16", "LapNumber": range(1, 41)})
    results = pd.DataFrame(
        {
            "Year": [2023, 2023],
            "EventName": "X",
            "DriverNumber": ["16", "1"],
            "Status": ["Power Unit", "Finished"],
        }
    )
    flagged = laps.assign(AnomalyFlag=laps.LapNumber.isin([5, 36, 38]))
    ret = an.retirements(results, laps, flagged)
    assert len(ret) == 1 and ret.LastLap[0] == 40 and ret.LapsBefore[0] == 4  # lap 5 is too early
    none = an.retirements(results, laps, laps.assign(AnomalyFlag=False))
    assert np.isnan(none.LapsBefore[0])


# ------------------------------------------------------------------ SYNTHETIC faults
def _constant_windows(n: int, drivers: int = 2) -> pd.DataFrame:
    rows = []
    for d in range(drivers):
        rows.append(
            pd.DataFrame(
                {
                    "Year": 2023, "EventName": "X", "DriverNumber": str(d + 1),
                    "WindowStart": np.arange(n) * 5.0, "WindowEnd": np.arange(n) * 5.0 + 5, "InScope": True,
                    "SpeedMean": 250.0, "SpeedMin": 200.0, "SpeedMax": 300.0, "SpeedStd": 20.0,
                    "RPMMean": 10500.0, "RPMMax": 11500.0, "UpshiftRPMMean": 11000.0,
                    "MaxGear": 8, "GearChanges": 2, "ThrottleMean": 90.0, "FullThrottleShare": 0.8,
                    "BrakeShare": 0.0, "BrakeEvents": 0,
                }
            )
        )  # fmt: skip
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("kind", an.FAULT_KINDS)
def test_injected_faults_are_synthetic_episodes_that_persist(kind: str) -> None:
    windows = _constant_windows(400)
    out = an.inject_faults(windows, kind, np.random.default_rng(0), share=0.05)
    hit = out["Synthetic"].to_numpy(dtype=bool)
    assert (out.loc[hit, "FaultKind"] == kind).all() and out.loc[~hit, "FaultKind"].isna().all()
    assert (out.loc[~hit, "FaultEpisode"] == -1).all()
    sizes = out.loc[hit].groupby("FaultEpisode").size()
    low, high = an.FAULT_WINDOWS
    assert len(sizes) >= 4 and sizes.between(1, high).all() and (sizes >= low).mean() > 0.8
    for onset, episode in out.loc[hit].groupby("FaultEpisode"):  # one driver, contiguous, from the onset
        assert episode.DriverNumber.nunique() == 1 and episode.index[0] == onset
        assert (np.diff(episode.WindowStart) == 5.0).all()
    signals = windows.columns.drop(["Year", "EventName", "DriverNumber", "InScope"])
    changed = (out[signals].astype(float) != windows[signals].astype(float)).any(axis=1)
    np.testing.assert_array_equal(changed.to_numpy(), hit)  # a constant trace: every fault row changes
    if kind == "gear_stuck":
        assert (out.loc[hit, "MaxGear"] <= 6).all() and (out.loc[hit, "GearChanges"] == 0).all()
    if kind == "power_loss":
        ratio = out.loc[hit, "SpeedMax"] / 300.0
        assert ((ratio >= 0.92) & (ratio <= 0.97)).all()
        assert ratio.groupby(out.loc[hit, "FaultEpisode"]).nunique().eq(1).all()  # one magnitude


def test_references_see_the_healthy_past_at_the_onset() -> None:
    windows = an.window_context(_constant_windows(400, drivers=1))
    out = an.inject_faults(windows, "rpm_drop", np.random.default_rng(0), share=0.05)
    onsets = out.loc[out.Synthetic, "FaultEpisode"].unique()
    np.testing.assert_array_equal(out.loc[onsets, "Ref_RPMMax"], windows.loc[onsets, "Ref_RPMMax"])
    assert out.loc[onsets, "RPMMax"].lt(11500.0).all()


def test_one_odd_window_does_not_make_a_run_but_a_persistent_fault_does() -> None:
    rows = _constant_windows(20, drivers=1)
    d = pd.DataFrame({"RPMMax": 0.0, "BrakeShare": 0.0}, index=rows.index)
    d.loc[5, "BrakeShare"] = 40.0  # one absurd window (a feed oddity)
    d.loc[10:, "RPMMax"] = 4.0  # a fault from window 10 on
    run = an.run_deficits(d, rows)
    assert run.iloc[: an.RUN_WINDOWS - 1].isna().all().all()  # not enough history yet
    assert run["BrakeShare"].max() <= an.RUN_CLIP / an.RUN_WINDOWS
    assert run["RPMMax"].iloc[-1] == an.RUN_CLIP and run["RPMMax"].iloc[9] == 0.0
    gap = rows.assign(WindowStart=rows.WindowStart.where(rows.index < 12, rows.WindowStart + 1))
    assert an.run_deficits(d, gap)["RPMMax"].iloc[12 : 12 + an.RUN_WINDOWS - 1].isna().all()  # a gap restarts


def test_lap_faults_change_only_power(laps: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    assert not an.inject_faults(laps, "rpm_drop", rng)["Synthetic"].any()
    out = an.inject_faults(laps, "power_loss", rng)
    hit = out["Synthetic"].to_numpy(dtype=bool)
    onsets = out.loc[hit, "FaultEpisode"].unique()
    assert len(onsets) > 20 and laps.loc[onsets, "InScope"].all()  # a fault starts on a green lap
    for col, op in (("SpeedST", np.less), ("LapTime", np.greater)):
        timed = hit & laps[col].notna().to_numpy()  # a pit or untimed lap keeps its missing value
        assert timed.sum() > 0.8 * hit.sum() and op(out.loc[timed, col], laps.loc[timed, col]).all()
    sizes = out.loc[hit].groupby("FaultEpisode").size()
    assert sizes.between(1, an.FAULT_LAPS[1]).all() and (sizes >= an.FAULT_LAPS[0]).mean() > 0.8
    # causal references: the healthy past at the onset, the faulty laps afterwards
    np.testing.assert_array_equal(out.loc[onsets, "Ref_SpeedST"], laps.loc[onsets, "Ref_SpeedST"])
    later = hit & (out["FaultEpisode"].to_numpy() != out.index.to_numpy()) & laps["InScope"].to_numpy()
    moved = out.loc[later, "Ref_SpeedST"] < laps.loc[later, "Ref_SpeedST"]
    assert moved.any() and (out.loc[~hit, "SpeedST"].fillna(0) == laps.loc[~hit, "SpeedST"].fillna(0)).all()


# ------------------------------------------------------------------ data checks
def test_bundled_windows_are_real_training_races_in_schema() -> None:
    w = an.bundled_windows(DATA_DIR)
    assert len(w) > 100_000
    races = set(zip(w.Year, w.EventName, strict=True))
    assert races == set(an.WINDOW_FIT_RACES) | set(an.WINDOW_CALIBRATION_RACES)
    assert not races & (set(base.TEST_RACES) | set(base.VALIDATION_RACES))
    assert set(TelemetryWindow.model_fields) - {"Date"} <= set(w.columns)
    assert w[["DriverNumber", "WindowStart", "SpeedMax", "RPMMax", "MaxGear"]].notna().all().all()
    assert w.SpeedMax.between(0, 400).all() and w.MaxGear.between(0, 8).all()
    assert w.BrakeShare.dropna().between(0, 1).all() and "Synthetic" not in w.columns


def test_training_windows_come_from_the_corpus_data_dir_only() -> None:
    """The recipe reads no repo path of its own: the caller says where the bundled windows are."""
    empty = base.Corpus(laps=pd.DataFrame())
    assert an.training_windows(empty).empty
    bundled = an.training_windows(base.Corpus(laps=pd.DataFrame(), data_dir=DATA_DIR))
    assert len(bundled) == len(an.bundled_windows(DATA_DIR))
    one_race = base.Corpus(
        laps=pd.DataFrame({"Year": [2023], "EventName": ["Bahrain Grand Prix"]}), data_dir=DATA_DIR
    )
    assert one_race.only(lambda f: base.race_split(f) == "test").data_dir == DATA_DIR, (
        "a split corpus keeps its data folder"
    )


def test_lap_rows_schema(laps: pd.DataFrame) -> None:
    assert laps["InScope"].dtype == bool and 0.6 < laps["InScope"].mean() < 0.95
    for s in an.LAP_SIGNALS:
        x = an.lap_matrix(laps, s)
        assert {"Driver", "DriverNumber"}.isdisjoint(x.columns)
        assert isinstance(x["Compound"].dtype, pd.CategoricalDtype)
    assert laps.loc[laps.InScope, "SpeedST"].between(150, 380).mean() > 0.99


# ------------------------------------------------------------------ behaviour (STYLE 7)
def test_lower_speed_trap_scores_higher(
    lap_model: tuple[dict[str, Any], dict[str, Any]], laps: pd.DataFrame
) -> None:
    boosters, meta = lap_model
    held = laps[(small_split(laps) == "test").to_numpy() & laps.InScope.to_numpy()].dropna(
        subset=["Ref_SpeedST"]
    )
    slower = held.copy()
    for trap in an.SPEED_TRAPS:  # a 5 % lower speed everywhere the car is timed
        slower[trap] = slower[trap] * 0.95
    base_score, _ = an.score_rows(boosters, meta, held)
    slow_score, top = an.score_rows(boosters, meta, slower)
    assert (slow_score >= base_score - 1e-12).mean() > 0.99 and (slow_score > base_score).mean() > 0.9
    assert pd.Series(top).value_counts().index[0] in an.SPEED_TRAPS


def test_clean_validation_laps_score_below_threshold(
    lap_model: tuple[dict[str, Any], dict[str, Any]], laps: pd.DataFrame
) -> None:
    boosters, meta = lap_model
    val = laps[(small_split(laps) == "validation").to_numpy() & laps.InScope.to_numpy()]
    score, _ = an.score_rows(boosters, meta, val)
    scored = score[np.isfinite(score)]
    assert len(scored) > 500 and meta["threshold"] >= 0.99 and np.mean(scored < 0.99) > 0.97


def test_driver_identity_does_not_change_the_score(
    lap_model: tuple[dict[str, Any], dict[str, Any]], laps: pd.DataFrame
) -> None:
    boosters, meta = lap_model
    held = laps[(small_split(laps) == "test").to_numpy()]
    swapped = held.assign(Driver=held.Driver.iloc[::-1].to_numpy(), Team=held.Team.iloc[::-1].to_numpy())
    np.testing.assert_array_equal(
        an.score_rows(boosters, meta, swapped)[0], an.score_rows(boosters, meta, held)[0]
    )
