"""Model 1 (next lap time): targets, baselines, behaviour and the MLflow registry round trip.

Real laps of the bundled races; the models are small (few trees) so the file runs in seconds.
Train on 2023 Bahrain, early-stop on 2024 Bahrain, hold out 2023 Las Vegas.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import evaluation, feature_build, model_store, sources, training
from stratx.functions.models import base
from stratx.functions.models import lap_time as lt
from stratx.functions.models.boosters import matrix
from tests.conftest import BAHRAIN_2023, DATA_DIR, LAS_VEGAS_2023

BAHRAIN_2024 = DATA_DIR / "races" / "2024_bahrain_grand_prix_race"
SMALL = {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 20}
ROUNDS = 60


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    races = [sources.load_bundled(p) for p in (BAHRAIN_2023, BAHRAIN_2024, LAS_VEGAS_2023)]
    frame, _ = feature_build.build_lap_table(races, progress=False)
    return frame


def bundled_split(frame: pd.DataFrame) -> pd.Series:
    """Train on 2023 Bahrain, validate on 2024 Bahrain, test on 2023 Las Vegas."""
    names = {2023: {"Bahrain Grand Prix": "train", "Las Vegas Grand Prix": "test"}, 2024: {}}
    return pd.Series(
        [names[y].get(e, "validation") for y, e in zip(frame.Year, frame.EventName, strict=True)],
        index=frame.index,
    )


@pytest.fixture(scope="module")
def booster(table: pd.DataFrame) -> object:
    frame = lt.next_lap_targets(table)
    return lt.fit_booster(frame, bundled_split(frame), SMALL, ROUNDS)


@pytest.fixture(scope="module")
def held_out(table: pd.DataFrame) -> pd.DataFrame:
    frame = lt.next_lap_targets(table)
    return frame[(bundled_split(frame) == "test") & lt.trainable(frame)]


# ------------------------------------------------------------------ targets and features
def test_target_is_the_next_lap_of_the_same_driver_and_race(table: pd.DataFrame) -> None:
    frame = lt.next_lap_targets(table)
    by_lap = table.set_index(["Year", "EventName", "DriverNumber", "LapNumber"])["LapTime"]
    checked = 0
    for row in frame.itertuples():
        key = (row.Year, row.EventName, row.DriverNumber, row.LapNumber + 1)
        if key in by_lap.index:
            expected = by_lap.loc[key]
            assert (math.isnan(row.NextLapTime) and pd.isna(expected)) or row.NextLapTime == expected
            checked += 1
        else:
            assert math.isnan(row.NextLapTime), f"{key} has no next lap"
    assert checked > 2000
    last = frame.groupby(["Year", "EventName", "DriverNumber"]).LapNumber.transform("max") == frame.LapNumber
    assert frame.loc[last, lt.TARGET].isna().all() and frame.loc[last, lt.NEXT_CLEAN].isna().all()


def test_a_gap_in_the_laps_gives_no_target() -> None:
    rows = pd.DataFrame(
        {
            "Year": 2023,
            "EventName": "X",
            "SessionKey": 1,
            "DriverNumber": ["1", "1", "1", "44"],
            "LapNumber": [2, 3, 5, 4],
            "LapTime": [90.0, 91.0, 92.0, 93.0],
            "IsClean": [True, True, False, True],
            "Last3Median": [None, 90.5, 91.0, None],
        }
    )
    frame = lt.next_lap_targets(rows)
    assert frame[lt.TARGET].tolist()[:1] == [91.0]
    assert frame[lt.TARGET].iloc[1:].isna().all()  # lap 4 missing; lap 5 last; driver 44 alone
    assert frame[lt.ANCHOR].tolist() == [90.0, 90.5, 91.0, 93.0]


def test_baselines_and_metrics_on_hand_checked_rows() -> None:
    frame = pd.DataFrame(
        {
            "LapTime": [95.0, 92.0, 100.0],
            "IsClean": [False, True, True],
            lt.ANCHOR: [93.0, 92.0, 93.0],
            lt.LAST_CLEAN: [94.0, 92.0, 100.0],
            lt.STINT_TREND: [94.0, 92.5, 101.0],
            lt.TARGET: [92.0, 93.0, 120.0],
            lt.NEXT_CLEAN: pd.array([True, True, False], dtype="boolean"),
        }
    )
    m = lt.metrics_table(frame, np.array([92.5, 92.5, 95.0]))
    assert m["both_clean_laps"] == 1 and m["clean_laps"] == 2 and m["all_laps"] == 3
    assert m["persistence_clean_mae"] == pytest.approx((3 + 1) / 2)
    assert m["last_clean_clean_mae"] == pytest.approx((2 + 1) / 2)
    assert m["rolling_median_clean_mae"] == pytest.approx((1 + 1) / 2)
    assert m["stint_trend_clean_mae"] == pytest.approx((2 + 0.5) / 2)
    assert m["model_clean_mae"] == pytest.approx(0.5)
    assert m["persistence_all_rmse"] == pytest.approx(math.sqrt((9 + 1 + 400) / 3))
    assert m["model_vs_persistence_clean_mae_ratio"] == pytest.approx(0.25)
    # the strongest baseline per row set, and the model against it
    assert lt.strongest(m, "clean") == "rolling_median" and m["strongest_clean_mae"] == pytest.approx(1.0)
    assert m["model_vs_strongest_clean_mae_ratio"] == pytest.approx(0.5)
    assert lt.strongest(m, "both_clean") == "stint_trend"  # lap 2 only: 93 vs 92 / 92 / 92 / 92.5
    assert m["model_vs_strongest_both_clean_mae_ratio"] == pytest.approx(0.5 / 0.5)


def test_last_clean_and_stint_trend_use_only_laps_up_to_n() -> None:
    rows = pd.DataFrame(
        {
            "Year": 2023,
            "EventName": "X",
            "SessionKey": 1,
            "DriverNumber": "1",
            "LapNumber": [2, 3, 4, 5, 6, 7],
            "Stint": [1, 1, 1, 1, 1, 2],
            "LapTime": [90.0, 91.0, 99.0, 92.0, 93.0, 110.0],
            "IsClean": [True, True, False, True, True, False],
            "Last3Median": [90.0, 90.5, 90.5, 91.0, 92.0, 92.0],
        }
    )
    frame = lt.next_lap_targets(rows)
    assert frame[lt.LAST_CLEAN].tolist() == [90.0, 91.0, 91.0, 92.0, 93.0, 93.0]
    trend = frame[lt.STINT_TREND].tolist()
    # < 3 clean laps: the last clean lap; then the line through (2, 90), (3, 91), (5, 92) at lap 6
    assert trend[:3] == [90.0, 91.0, 91.0]
    slope, intercept = np.polyfit([2, 3, 5], [90, 91, 92], 1)
    assert trend[3] == pytest.approx(intercept + slope * 6)
    slope, intercept = np.polyfit([2, 3, 5, 6], [90, 91, 92, 93], 1)
    assert trend[4] == pytest.approx(intercept + slope * 7)
    assert trend[5] == 93.0  # a new stint without clean laps: the last clean lap


def test_features_are_the_lap_time_v1_service() -> None:
    spec = importlib.util.spec_from_file_location(
        "lap_features_repo", Path(__file__).resolve().parents[3] / "feature_repo" / "lap_features.py"
    )
    assert spec is not None and spec.loader is not None
    repo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(repo)
    service = repo.lap_time_v1
    names = [f.name for p in service.feature_view_projections for f in p.features]
    assert service.name == lt.FEATURE_SERVICE
    assert sorted(names) == sorted(lt.SERVICE_FEATURES)


def test_feature_matrix_schema(table: pd.DataFrame) -> None:
    x = lt.feature_matrix(table)
    assert list(x.columns) == list(lt.SERVICE_FEATURES)
    assert isinstance(x["Compound"].dtype, pd.CategoricalDtype)
    assert {"Driver", "DriverNumber", "Team"}.isdisjoint(x.columns)
    assert all(pd.api.types.is_float_dtype(t) for t in x.drop(columns="Compound").dtypes)


def test_the_scored_matrix_is_the_training_frame_as_lightgbm_reads_it(
    booster: object, table: pd.DataFrame
) -> None:
    """``predict_frame`` builds the booster's matrix directly (``base.lap_array``): equal, value
    for value, to LightGBM's own pandas path over ``feature_matrix``, on the whole table and on
    one-row request frames (object columns holding None), with the categories in another order."""
    from stratx.bentos.kit import serving
    from stratx.functions.schemas import LapFeatures

    def lightgbm(frame: pd.DataFrame) -> np.ndarray:
        return lt.anchor(frame).to_numpy() + booster.predict(lt.feature_matrix(frame))  # type: ignore[attr-defined]

    np.testing.assert_array_equal(lt.predict_frame(booster, table), lightgbm(table))
    fields = [c for c in table.columns if c in LapFeatures.model_fields]
    records = table[fields].iloc[::97].astype(object).where(table[fields].iloc[::97].notna(), None)
    for record in records.to_dict("records"):
        one = serving.rows_frame([LapFeatures.model_validate(record)])
        np.testing.assert_array_equal(lt.predict_frame(booster, one), lightgbm(one))
    reordered = [list(reversed(lt.COMPOUNDS))]
    x = base.lap_array(table, lt.SERVICE_FEATURES, lt.RELATIVE_TO_ANCHOR, lt.anchor(table).to_numpy(),
                       lt.COMPOUNDS, reordered)  # fmt: skip
    np.testing.assert_array_equal(x, matrix(lt.feature_matrix(table), reordered))


# ------------------------------------------------------------------ behaviour (STYLE 7)
def test_older_tyres_do_not_predict_faster_laps(booster: object, held_out: pd.DataFrame) -> None:
    older = held_out.copy()
    older["TyreLife"] = older["TyreLife"] + 10
    base, aged = lt.predict_frame(booster, held_out), lt.predict_frame(booster, older)
    assert np.nanmean(aged - base) >= 0
    assert (aged >= base - 1e-9).all()  # monotone constraint: row by row, too


def test_driver_identity_does_not_change_the_prediction(booster: object, held_out: pd.DataFrame) -> None:
    swapped = held_out.copy()
    swapped["Driver"] = swapped["Driver"].iloc[::-1].to_numpy()
    swapped["DriverNumber"] = swapped["DriverNumber"].iloc[::-1].to_numpy()
    np.testing.assert_array_equal(lt.predict_frame(booster, swapped), lt.predict_frame(booster, held_out))


def test_held_out_race_beats_persistence(booster: object, held_out: pd.DataFrame) -> None:
    m = lt.metrics_table(held_out, lt.predict_frame(booster, held_out))
    assert m["clean_laps"] > 500
    assert m["model_clean_mae"] < m["persistence_clean_mae"]
    assert m["model_all_mae"] < m["persistence_all_mae"]


# ------------------------------------------------------------------ MLflow registry round trip


def small_recipe(**params: float) -> base.Recipe:
    """The lap-time recipe with a few fast trees (the registry logic is what is under test)."""
    rounds = int(params.pop("rounds", ROUNDS))
    return dataclasses.replace(
        lt.RECIPE, fit=functools.partial(lt.fit, params={**SMALL, **params}, rounds=rounds)
    )


@pytest.mark.slow
def test_train_registers_and_promotes_only_a_better_model(tmp_path: Path, table: pd.DataFrame) -> None:
    settings = training.TrainingSettings(
        mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_dir=tmp_path / "artifacts",
        reports_dir=tmp_path / "reports",
    )
    corpus = base.Corpus(laps=table)
    assert training.missing_champions(settings, ["lap_time", "tyre_deg"]) == ["lap_time", "tyre_deg"]
    first = training.train(settings, small_recipe(), corpus, progress=False, split=bundled_split)
    assert first.champion and first.previous_champion_score is None
    assert training.missing_champions(settings, ["lap_time", "tyre_deg"]) == ["tyre_deg"]  # --if-missing
    worse = training.train(
        settings, small_recipe(learning_rate=0.001, rounds=5), corpus, progress=False, split=bundled_split
    )
    assert not worse.champion and worse.previous_champion_score == pytest.approx(
        first.metrics["val_model_clean_mae"]
    )
    champion = model_store.load_registered(settings, "lap_time", dst=tmp_path / "champion")
    assert champion.version == first.version
    assert champion.tags["feast_feature_service"] == "lap_time_v1"
    assert len(champion.tags["data_snapshot_hash"]) == 64 and champion.tags["git_commit"]

    from stratx.bentos.lifecycle.model_store import import_pyfunc

    pyfunc = import_pyfunc().load_model(f"models:/{lt.MODEL_NAME}@champion")  # the models-from-code face
    rows = table[table.EventName == "Las Vegas Grand Prix"].head(40)
    np.testing.assert_allclose(
        pyfunc.predict(rows)["PredictedNextLapTime"],
        lt.predict(champion.bundle, rows)["PredictedNextLapTime"],
    )

    las_vegas = [sources.load_bundled(LAS_VEGAS_2023)]
    out = tmp_path / "reports"
    evaluation.evaluate(settings, las_vegas, out, keys=["lap_time"], progress=False)
    metrics = json.loads((out / "metrics.json").read_text())["lap_time"]
    assert metrics["races"] == ["2023 Las Vegas Grand Prix"]
    assert metrics["metrics"]["model_clean_mae"] < metrics["metrics"]["persistence_clean_mae"]
    assert metrics["targets"][0]["name"] == "model_vs_strongest_both_clean_mae_ratio"
    report = (out / "report.md").read_text()
    assert report.startswith("# StratX model evaluation") and "## lap_time: stratx-lap-time" in report
    assert (out / "lap_time_errors.png").stat().st_size > 1000


def test_bundle_round_trip_predicts_the_same(tmp_path: Path, booster: object, held_out: pd.DataFrame) -> None:
    bundle = base.ModelBundle("lap_time", {lt.BOOSTER: booster}, {"target": lt.TARGET_KIND})
    loaded = base.ModelBundle.load(bundle.save(tmp_path / "bundle"))
    np.testing.assert_allclose(
        lt.predict(loaded, held_out)["PredictedNextLapTime"], lt.predict_frame(booster, held_out), rtol=1e-12
    )


def test_evaluate_main_reads_a_fastf1_exports_folder(tmp_path: Path, las_vegas: object) -> None:
    """A user's FastF1-format lap table loads through sources.load_exports (no champion needed)."""
    args = argparse.Namespace(race_dir=None, exports=[str(DATA_DIR / "corpus" / "fastf1_exports")])
    races = evaluation.user_races(args, training.TrainingSettings())
    assert len(races) >= 30 and all(r.table("laps").shape[0] for r in races)
