"""Model 3 (pit window): labels, circuit tables, windows, undercut pairs, data checks, behaviour.

Hand-made frames check every definition where the answer is known; the behavioural tests use a
small model (few trees) fitted on real laps of the bundled races: train on both Bahrain races,
early-stop and pick the window on 2023 Las Vegas (this file's held-out race).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import sources, training
from stratx.functions.models import base
from stratx.functions.models import pit_window as pw
from stratx.functions.models.boosters import matrix
from tests.conftest import BAHRAIN_2023, DATA_DIR, LAS_VEGAS_2023

BAHRAIN_2024 = DATA_DIR / "races" / "2024_bahrain_grand_prix_race"
SMALL = {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 30}
ROUNDS = 60


def _split(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(
        np.where(frame["EventName"] == "Las Vegas Grand Prix", "validation", "train"), frame.index
    )


@pytest.fixture(scope="module")
def corpus() -> base.Corpus:
    races = [sources.load_bundled(p) for p in (BAHRAIN_2023, BAHRAIN_2024, LAS_VEGAS_2023)]
    return training.build_corpus(races, progress=False)


@pytest.fixture(scope="module")
def bundle(corpus: base.Corpus) -> base.ModelBundle:
    fitted, _ = pw.fit(corpus, _split, params=SMALL, rounds=ROUNDS)
    return fitted


@pytest.fixture(scope="module")
def held_out(corpus: base.Corpus, bundle: base.ModelBundle) -> pd.DataFrame:
    frame = pw.labelled(corpus.only(lambda f: _split(f) == "validation"), bundle.meta)
    return frame[frame[pw.LABEL].notna().to_numpy()].reset_index(drop=True)


# ------------------------------------------------------------------ hand-made frames
def _raw(
    driver: str, laps: int, pit_in: tuple[int, ...] = (), status: dict[int, str] | None = None
) -> pd.DataFrame:
    n = np.arange(1, laps + 1)
    return pd.DataFrame(
        {
            "Year": 2023,
            "EventName": "X",
            "DriverNumber": driver,
            "LapNumber": n,
            "PitInTime": [100.0 * k if k in pit_in else np.nan for k in n],
            "TrackStatus": [(status or {}).get(int(k), "1") for k in n],
        }
    )


def test_stops_need_a_next_lap_and_flag_neutralised_in_laps() -> None:
    raw = pd.concat([_raw("1", 10, (5,), {5: "14"}), _raw("2", 6, (3, 6))])
    s = pw.stops(raw)
    assert list(zip(s.DriverNumber, s.LapNumber, s.Neutralised, strict=True)) == [
        ("1", 5, True),
        ("2", 3, False),  # lap 6 of driver 2 is a retirement into the pits, not a stop
    ]


def test_pit3_label_horizon_and_undefined_rows() -> None:
    raw = pd.concat([_raw("1", 10, (5,)), _raw("2", 6)])
    laps = raw.drop(columns=["PitInTime", "TrackStatus"])
    out = pw.pit_labels(laps, raw).set_index(["DriverNumber", "LapNumber"])
    one = out.loc["1", pw.LABEL].tolist()
    # in-lap 5 is within N+1..N+3 for N = 2, 3, 4; driver 1 reached the final lap (10): defined to the end
    assert one == [False, True, True, True, False, False, False, False, False, False]
    two = out.loc["2", pw.LABEL]
    # driver 2 retired after lap 6 with no stop: laps 4..6 have an unobserved horizon
    assert two.loc[[1, 2, 3]].tolist() == [False, False, False] and two.loc[[4, 5, 6]].isna().all()
    assert out.loc[("1", 4), "NextStopLap"] == 5 and out["RaceLaps"].eq(10).all()


def test_neutralised_horizon_marks_the_whole_field() -> None:
    raw = pd.concat([_raw("1", 8, status={6: "4"}), _raw("2", 8)])
    out = pw.pit_labels(raw.drop(columns=["PitInTime", "TrackStatus"]), raw)
    marked = out[out.DriverNumber == "2"].set_index("LapNumber")["NeutralisedHorizon"]
    assert marked.loc[[3, 4, 5, 6]].all() and not marked.loc[[1, 2, 7, 8]].any()


def test_pit_loss_is_in_plus_out_minus_twice_the_clean_median() -> None:
    raw = _raw("1", 6, (3,))
    laps = raw.drop(columns=["PitInTime", "TrackStatus"]).assign(
        LapTime=[95.0, 90.0, 110.0, 115.0, 90.0, 90.0], Last5Median=[np.nan, 90.0, 90.0, 90.0, 90.0, 90.0]
    )
    assert pw.pit_loss_table(laps, raw) == {"X": pytest.approx(110 + 115 - 180)}
    assert pw.lookup({"A": 20.0, "B": 30.0}, pd.Series(["A", "Z"])).tolist() == [20.0, 25.0]


def test_hazard_baseline_is_the_shrunk_rate() -> None:
    frame = pd.DataFrame(
        {"Compound": ["SOFT"] * 4, "TyreLife": [1, 1, 20, 20], pw.LABEL: pd.array([False, False, True, True])}
    )
    table = pw.hazard_table(frame)
    prior = pw.PRIOR_ROWS
    rate = (2 + prior * 0.5) / (4 + prior)
    assert table["SOFT"]["20"] == pytest.approx((2 + prior * rate) / (2 + prior))
    p = pw.hazard_predict(table, frame.assign(Compound=["SOFT", "SOFT", "SOFT", "HARD"]))
    assert p[2] > p[0] and p[3] == pytest.approx(0.5)  # unseen compound: the overall rate


def test_window_from_a_known_cdf() -> None:
    frame = pd.DataFrame({"LapNumber": [10, 10, 10], "RaceLaps": [50, 50, 50]})
    cdf = np.array([[0.0, 0.1, 0.3, 0.6, 0.9], [0.0, 0.0, 0.0, 0.01, 0.01], [0.2, 0.3, 0.4, 0.45, 0.5]])
    w = pw.windows(frame, cdf, lo=0.1, hi=0.6)
    assert w.iloc[0].tolist() == [12.0, 14.0]  # F >= 0.1 at in-lap 12, >= 0.6 at 14
    assert w.iloc[1].isna().all()  # never likely to stop: no window
    assert w.iloc[2].tolist() == [11.0, 15.0]  # never reaches hi: closes at the last lap looked at


def test_window_metrics_count_stops_inside() -> None:
    leads = pd.DataFrame({"StopLap": [12, 20, 15], "StopNeutralised": [False, False, True]})
    win = pd.DataFrame({"WindowOpenLap": [10.0, 10.0, np.nan], "WindowCloseLap": [14.0, 14.0, np.nan]})
    m = pw.window_metrics(leads, win)
    assert m["stops_in_window_share"] == pytest.approx(1 / 3)
    assert m["green_stops_in_window_share"] == pytest.approx(1 / 2)
    assert m["stops_without_window_share"] == pytest.approx(1 / 3) and m["window_width_mean_laps"] == 5


def _duel(b_first: bool) -> pd.DataFrame:
    """Car 2 runs 2 s behind car 1, stops on lap 5; car 1 stops on lap 7; car 2 leads after it
    when ``b_first``. Labelled rows with derived columns."""
    raw = pd.concat([_raw("1", 10, (7,)), _raw("2", 10, (5,))])
    rows = raw.drop(columns=["PitInTime", "TrackStatus"]).copy()
    lap = rows["LapNumber"].to_numpy()
    behind = rows["DriverNumber"] == "2"
    swapped = behind & (lap >= 8) if b_first else np.zeros(len(rows), bool)
    rows["SessionTime"] = 90.0 * lap + np.where(behind, 2.0, 0.0) - np.where(swapped, 4.0, 0.0)
    rows["PositionOnLap"] = np.where(behind != swapped, 2, 1)
    rows["IntervalAhead"] = np.where(rows["PositionOnLap"] == 2, 2.0, np.nan)
    rows = rows.assign(TyreLife=lap + 1.0, StintDegSlope=0.05, Last3Median=90.0)
    return pw.with_derived(pw.pit_labels(rows, raw), {"race_laps": {}, "pit_loss": {"X": 21.0}})


@pytest.mark.parametrize("b_first", [True, False])
def test_undercut_pair_and_its_success(b_first: bool) -> None:
    pairs = pw.undercut_pairs(_duel(b_first))
    assert len(pairs) == 1
    pair = pairs.iloc[0]
    assert (pair.DriverNumber, pair.AheadNumber, pair.StopLap, pair.AheadStopLap) == ("2", "1", 5, 7)
    assert bool(pair.Success) is b_first and pair.Gap == 2.0 and pair.PitLossSeconds == 21.0


# ------------------------------------------------------------------ data checks
def test_features_are_the_pit_window_v1_service() -> None:
    spec = importlib.util.spec_from_file_location(
        "lap_features_repo", Path(__file__).resolve().parents[3] / "feature_repo" / "lap_features.py"
    )
    assert spec is not None and spec.loader is not None
    repo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(repo)
    service = repo.pit_window_v1
    names = [f.name for p in service.feature_view_projections for f in p.features]
    assert service.name == pw.FEATURE_SERVICE and sorted(names) == sorted(pw.SERVICE_FEATURES)


def test_real_labels_and_circuit_tables(corpus: base.Corpus, bundle: base.ModelBundle) -> None:
    frame = pw.labelled(corpus)
    assert len(frame) == len(corpus.laps)
    y = frame[pw.LABEL].dropna().astype(float)
    assert 0.04 < y.mean() < 0.25 and len(y) > 0.9 * len(frame)
    stop = frame[frame[pw.IN_LAP]]
    assert 60 < len(stop) < 200  # ~1-3 stops per car in three races
    before = frame.set_index([*pw.DRIVER, "LapNumber"])[pw.LABEL]
    for s in stop.itertuples():
        for k in (1, 2, 3):
            key = (s.Year, s.EventName, s.DriverNumber, s.LapNumber - k)
            if key in before.index:
                assert before.loc[key] is True or bool(before.loc[key])
    loss = bundle.meta["pit_loss"]
    assert set(loss) == {"Bahrain Grand Prix", "Las Vegas Grand Prix"}
    assert all(15.0 < v < 35.0 for v in loss.values())


def test_feature_matrix_schema(held_out: pd.DataFrame) -> None:
    x = pw.feature_matrix(held_out)
    assert list(x.columns) == list(pw.FEATURES)
    assert isinstance(x["Compound"].dtype, pd.CategoricalDtype)
    assert {"Driver", "DriverNumber", "Team", "EventName"}.isdisjoint(x.columns)
    assert x["PitLossSeconds"].notna().all() and (x["LapsRemaining"] >= 0).all()
    assert x["SafetyCarNow"].isin([0.0, 1.0]).all()


# ------------------------------------------------------------------ behaviour (STYLE 7)
def _p(bundle: base.ModelBundle, rows: pd.DataFrame) -> np.ndarray:
    booster = bundle.boosters[pw.PIT_BOOSTER]
    return np.asarray(booster.predict(pw.feature_matrix(rows), num_iteration=booster.best_iteration or None))


def test_older_tyres_never_lower_the_pit_probability(
    bundle: base.ModelBundle, held_out: pd.DataFrame
) -> None:
    older = held_out.assign(TyreLife=held_out["TyreLife"] + 10)
    base_p, aged_p = _p(bundle, held_out), _p(bundle, older)
    assert (aged_p >= base_p - 1e-12).all() and aged_p.mean() > base_p.mean()


def test_a_driver_who_just_pitted_gets_a_low_probability(
    bundle: base.ModelBundle, held_out: pd.DataFrame
) -> None:
    green = held_out[held_out["TrackStatus"] == "1"]
    fresh = green.assign(TyreLife=1.0, LapsInStint=1, StintCleanLaps=0, StintDegSlope=np.nan)
    p = _p(bundle, fresh)
    assert np.median(p) < 0.05 and p.mean() < green[pw.LABEL].astype(float).mean()


def test_high_deg_window_opens_no_later(bundle: base.ModelBundle, held_out: pd.DataFrame) -> None:
    rows = held_out[(held_out["TyreLife"] > 3) & (held_out["LapsRemaining"] > 15)].head(150)
    low = pw.predict(bundle, rows.assign(StintDegSlope=0.0))
    high = pw.predict(bundle, rows.assign(StintDegSlope=0.3))
    both = low["WindowOpenLap"].notna()
    assert both.any() and high.loc[both, "WindowOpenLap"].notna().all()
    assert (high.loc[both, "WindowOpenLap"] <= low.loc[both, "WindowOpenLap"]).all()
    assert (high["PitProbability3Laps"] >= low["PitProbability3Laps"] - 1e-12).all()


def test_held_out_race_beats_the_tyre_age_baseline(bundle: base.ModelBundle, corpus: base.Corpus) -> None:
    ev = pw.evaluate(bundle, corpus.only(lambda f: _split(f) == "validation"))
    m = ev.metrics
    assert m["pit3_rows"] > 500 and m["window_stops"] > 20
    assert m["model_pit3_auc_roc"] > max(0.7, m["baseline_pit3_auc_roc"])
    assert m["model_pit3_brier"] < m["baseline_pit3_brier"]
    assert m["stops_in_window_share"] > 0.5


def test_predict_columns_and_bundle_round_trip(
    bundle: base.ModelBundle, held_out: pd.DataFrame, tmp_path: Path
) -> None:
    rows = held_out[held_out["LapNumber"].isin([20, 21])]
    out = pw.predict(bundle, rows)
    assert list(out.columns) == [
        "PitProbability3Laps", "WindowOpenLap", "WindowCloseLap", "PitLossSeconds", "UndercutScore",
    ]  # fmt: skip
    assert out.index.equals(rows.index) and out["PitProbability3Laps"].between(0, 1).all()
    near = (rows["IntervalAhead"] > 0) & (rows["IntervalAhead"] <= pw.UNDERCUT_GAP)
    assert out.loc[~near, "UndercutScore"].isna().all() and out.loc[near, "UndercutScore"].notna().any()
    loaded = base.ModelBundle.load(bundle.save(tmp_path / "bundle"))
    pd.testing.assert_frame_equal(pw.predict(loaded, rows), out)


def test_the_vectorised_roll_forward_equals_the_lap_by_lap_one(corpus: base.Corpus) -> None:
    rows = pw.with_derived(
        corpus.laps.head(30).assign(RaceLaps=57), {"pit_loss": {"": 20.0}, "race_laps": {}}
    )
    expected = pw.feature_matrix(pd.concat([pw.aged(rows, k) for k in range(7)], ignore_index=True))
    categories = [list(pw.COMPOUNDS)]
    np.testing.assert_array_equal(pw.aged_matrix(rows, 7, categories), matrix(expected, categories))
    assert pw.aged_matrix(rows, 7, categories).shape == (7 * len(rows), expected.shape[1])


def test_the_streams_two_row_request_gives_the_undercut_score_of_the_whole_lap(
    bundle: base.ModelBundle, held_out: pd.DataFrame
) -> None:
    """The prediction app sends the car ahead's row and this car's (functions/prediction_requests.py);
    the last row's UndercutScore must equal the one scored with the whole lap, as offline."""
    lap = held_out[held_out["LapNumber"] == 20]
    whole = pw.predict(bundle, lap)
    by_position = {int(p): i for i, p in zip(lap.index, lap["PositionOnLap"], strict=True)}
    scored = 0
    for i, position in zip(lap.index, lap["PositionOnLap"], strict=True):
        ahead = by_position.get(int(position) - 1)
        request = lap.loc[[ahead, i]] if ahead is not None else lap.loc[[i]]
        got = pw.predict(bundle, request).iloc[-1]
        pd.testing.assert_series_equal(got, whole.loc[i], check_names=False)
        scored += int(pd.notna(got["UndercutScore"]))
    assert scored >= 3  # cars within the undercut gap of the car ahead get a score


def test_the_car_ahead_by_position_is_the_reindexed_one(corpus: base.Corpus) -> None:
    """``ahead_positions`` (the service's fast path) finds the row ``car_ahead`` finds, on a real race;
    a row whose position is unknown has no car ahead."""
    from stratx.functions.models import pit_window_undercut as pu

    frame = corpus.laps.reset_index(drop=True)
    frame.loc[5, "PositionOnLap"] = np.nan
    ahead = pu.ahead_positions(frame, pw.RACE)
    reindexed = pw.car_ahead(frame, pw.RACE)
    found = ahead >= 0
    assert found.sum() > 0.8 * len(frame) and not found[5]
    known = frame["PositionOnLap"].notna().to_numpy()
    np.testing.assert_array_equal(
        frame["DriverNumber"].to_numpy()[ahead[found]], reindexed["DriverNumber"].to_numpy()[found]
    )
    assert reindexed.loc[known & ~found, "DriverNumber"].isna().all()  # no car ahead there either
