"""The driver-aggression family in the Feast repo (feature_repo/), on the real 2023 Las Vegas GP.

No broker: Feast's local provider in a temporary data dir, as in ``test_feature_repo.py``. The
rows are the real LapAggression records built offline (``offline_lap_aggression`` over the race's
telemetry windows and lap features), in the JSON form the ``stratx.features.lap_aggression`` topic
carries; the lap features are pushed too, since ``driver_aggression_v1`` joins ``lap_pace``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import pandas as pd
import pyarrow.parquet as pq
import pytest
from feast import FeatureService, FeatureStore, FeatureView
from feast.types import Bool, Float64, Int64, String

from stratx.bentos.lifecycle.feature_build import lap_feature_rows
from stratx.functions.features import aggression as ag
from stratx.functions.features import telemetry as tl
from stratx.functions.racedata import RaceData
from stratx.functions.schemas import LapAggression
from stratx.quix_apps.kit import feature_store as fs
from tests.feature_repo.test_feature_repo import assert_same, last_lap_by_driver, plain, service_features

REPO_DIR = Path(__file__).resolve().parents[2] / "feature_repo"
SESSION_KEY = 9189  # 2023 Las Vegas GP race

AGGRESSION = {
    "ThrottleMean", "FullThrottleShare", "BrakeShare", "ThrottleBrakeOverlapShare", "DRSOpenShare",
    "BrakeEvents", "GearChanges", "DecelMean", "UpshiftRPMMean", "SpeedMax", "Windows", "Samples",
}  # fmt: skip
PACE = {
    "LapTime", "IsClean", "Last3Mean", "Last3Median", "Last3Std", "Last3Min", "Last5Mean",
    "Last5Median", "Last5Std", "Last5Min", "PersonalBest", "LapsSincePB", "DeltaToPB",
    "DeltaToSessionBest", "DeltaToTeammate", "DeltaToCarAhead", "DeltaToCarBehind",
    "DeltaToFieldMedian",
}  # fmt: skip
GAPS = {
    "PositionOnLap", "PositionChange", "GapToLeader", "IntervalAhead", "IntervalBehind",
    "InDRSRange", "LapsDown", "LapNumber",
}  # fmt: skip
FEAST_TYPES = {float: Float64, int: Int64, bool: Bool, str: String}


# ------------------------------------------------------------------ fixtures
pytestmark = pytest.mark.slow  # a whole race's telemetry windows and a Feast apply


@pytest.fixture(scope="module")
def lap_rows(las_vegas: RaceData) -> list[dict[str, Any]]:
    rows, rejected = lap_feature_rows(las_vegas)
    assert rows and rejected == []
    return rows


@pytest.fixture(scope="module")
def aggression_rows(las_vegas: RaceData, lap_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Real LapAggression records as the topic carries them (None for NaN, ISO Date), lap-end order."""
    frame = ag.offline_lap_aggression(tl.offline_windows(las_vegas), lap_rows)
    assert frame.attrs == {"rejected": 0, "pending": 0}
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    records = [LapAggression.model_validate(r).model_dump(mode="json") for r in rows]
    assert len(records) >= 900 and all(r["Date"] for r in records)
    return sorted(records, key=lambda r: (r["Date"], r["DriverNumber"]))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feast-aggression")


@pytest.fixture(scope="module")
def store(
    data_dir: Path, lap_rows: list[dict[str, Any]], aggression_rows: list[dict[str, Any]]
) -> FeatureStore:
    """Applied store: every real lap and aggression lap pushed online in lap-end order, and
    both families written offline."""
    store = fs.open_store(REPO_DIR, data_dir)
    fs.apply_repo(store, REPO_DIR)
    for i in range(0, len(lap_rows), 20):
        fs.push_lap_features(store, lap_rows[i : i + 20])
    for i in range(0, len(aggression_rows), 20):
        n = fs.push_rows(store, fs.AGGRESSION_PUSH_SOURCE, aggression_rows[i : i + 20], model=LapAggression)
        assert n == len(aggression_rows[i : i + 20])
    fs.write_offline(lap_rows, data_dir)
    fs.write_offline(aggression_rows, data_dir, model=LapAggression)
    return store


# ------------------------------------------------------------------ definitions
def test_lap_aggression_view_mirrors_the_schema() -> None:
    objects = {o.name: o for o in fs.load_definitions(REPO_DIR)}
    view = objects["lap_aggression"]
    assert isinstance(view, FeatureView)
    assert {f.name for f in view.features} == AGGRESSION
    assert view.entities == ["driver", "session"]
    assert view.ttl == timedelta(days=1)
    assert view.stream_source is not None and view.stream_source.name == "lap_aggression_push"
    assert view.batch_source.name == "lap_aggression_file"
    assert view.batch_source.path == "lap_aggression.parquet"
    assert view.batch_source.timestamp_field == "event_timestamp"
    for field in view.features:
        annotation = LapAggression.model_fields[field.name].annotation
        python_type = next(a for a in (*get_args(annotation), annotation) if a in FEAST_TYPES)
        assert field.dtype == FEAST_TYPES[python_type], field.name
    # the lap families still read the lap-features push source only
    for name in ("lap_pace", "lap_stint", "lap_gaps"):
        source = objects[name].stream_source  # type: ignore[union-attr]
        assert source is not None and source.name == "lap_features_push"


def test_services_add_aggression_as_new_versions(store: FeatureStore, data_dir: Path) -> None:
    services = {s.name for s in store.list_feature_services()}
    assert {"driver_aggression_v1", "overtake_v1", "overtake_v2"} <= services
    assert set(service_features(store, "driver_aggression_v1")) == AGGRESSION | PACE
    assert set(service_features(store, "overtake_v1")) == GAPS | PACE, "v1 stays as it was"
    assert set(service_features(store, "overtake_v2")) == GAPS | PACE | AGGRESSION
    for name in ("lap_time_v1", "tyre_deg_v1", "pit_window_v1"):
        assert not AGGRESSION & set(service_features(store, name)), name
    for service in fs.load_definitions(REPO_DIR):
        if isinstance(service, FeatureService):
            names = [f.name for p in service.feature_view_projections for f in p.features]
            assert len(names) == len(set(names)), f"{service.name}: a feature name in two views"
    assert fs.offline_path(store, fs.AGGRESSION_PUSH_SOURCE) == data_dir.resolve() / "lap_aggression.parquet"
    assert fs.offline_path(store) == data_dir.resolve() / "lap_features.parquet"


# ------------------------------------------------------------------ frame
def test_to_frame_of_aggression_rows(aggression_rows: list[dict[str, Any]]) -> None:
    frame = fs.to_frame(aggression_rows, model=LapAggression)
    assert list(frame.columns) == [n for n in LapAggression.model_fields if n != "v"] + ["event_timestamp"]
    assert len(frame) == len(aggression_rows)
    assert str(frame["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert (frame["event_timestamp"] == frame["Date"]).all()
    assert str(frame["SpeedMax"].dtype) == "Int64" and str(frame["BrakeShare"].dtype) == "Float64"
    # a lap without usable telemetry metrics (synthetic None values) keeps them null, never NaN
    empty = {**aggression_rows[0], "ThrottleMean": None, "SpeedMax": None, "DecelMean": None}
    one = fs.to_frame([empty], model=LapAggression)
    assert one["ThrottleMean"].iloc[0] is pd.NA and one["SpeedMax"].iloc[0] is pd.NA
    with pytest.raises(ValueError, match=r"LapAggression row .* no Date"):
        fs.to_frame([{**aggression_rows[0], "Date": None}], model=LapAggression)


# ------------------------------------------------------------------ online
def test_online_vector_of_every_driver_is_its_last_aggression_lap(
    store: FeatureStore, aggression_rows: list[dict[str, Any]], lap_rows: list[dict[str, Any]]
) -> None:
    last = last_lap_by_driver(aggression_rows)
    last_lap = last_lap_by_driver(lap_rows)
    assert len(last) == 20
    drivers = sorted(last)
    got = fs.online_features(
        store, "driver_aggression_v1", [{"DriverNumber": d, "SessionKey": SESSION_KEY} for d in drivers]
    )
    assert set(got) == {"DriverNumber", "SessionKey", *AGGRESSION, *PACE}
    assert got["DriverNumber"] == drivers
    for i, driver in enumerate(drivers):
        for name in AGGRESSION:
            assert_same(got[name][i], last[driver][name], f"driver {driver} {name}")
        for name in PACE:  # the pace half of the service: the driver's last LapFeatures row
            assert_same(got[name][i], last_lap[driver][name], f"driver {driver} {name}")


def test_overtake_v2_serves_gaps_pace_and_aggression(
    store: FeatureStore, aggression_rows: list[dict[str, Any]]
) -> None:
    last = last_lap_by_driver(aggression_rows)["1"]
    got = fs.online_features(store, "overtake_v2", [{"DriverNumber": "1", "SessionKey": SESSION_KEY}])
    assert set(got) == {"DriverNumber", "SessionKey", *GAPS, *PACE, *AGGRESSION}
    assert got["LapNumber"] == [last["LapNumber"]]
    for name in AGGRESSION:
        assert_same(got[name][0], last[name], name)


# ------------------------------------------------------------------ offline
def test_historical_aggression_is_as_of_the_entity_time(
    store: FeatureStore, aggression_rows: list[dict[str, Any]], lap_rows: list[dict[str, Any]]
) -> None:
    def lap(rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
        return next(r for r in rows if r["DriverNumber"] == "1" and r["LapNumber"] == n)

    end10, end11 = (pd.Timestamp(lap(aggression_rows, n)["Date"]) for n in (10, 11))
    assert end10 == pd.Timestamp(lap(lap_rows, 10)["Date"]), "aggression event time = lap end"
    first = pd.Timestamp(min(r["Date"] for r in aggression_rows if r["DriverNumber"] == "1"))
    asked = [
        (end10 + (end11 - end10) / 2, 10),  # between laps 10 and 11: lap 10
        (end11, 11),  # exactly at a lap end: that lap counts
        (first - pd.Timedelta(seconds=1), None),  # before the driver's first aggression lap
    ]
    entity_df = pd.DataFrame(
        {"DriverNumber": "1", "SessionKey": SESSION_KEY, "event_timestamp": [a[0] for a in asked]}
    )
    got = fs.historical_features(store, "driver_aggression_v1", entity_df)
    assert len(got) == len(asked)
    for i, (when, n) in enumerate(asked):
        for name in AGGRESSION:
            want = None if n is None else lap(aggression_rows, n)[name]
            assert_same(plain(got[name].iloc[i]), want, f"at {when}: {name}")
        if n is not None:
            for name in PACE:
                assert_same(plain(got[name].iloc[i]), lap(lap_rows, n)[name], f"at {when}: {name}")
    assert str(got["SpeedMax"].dtype) == "Int64" and str(got["ThrottleMean"].dtype) == "Float64"


# ------------------------------------------------------------------ writes
def test_push_rows_to_offline_writes_the_aggression_parquet_once(
    tmp_path: Path, aggression_rows: list[dict[str, Any]]
) -> None:
    store = fs.open_store(REPO_DIR, tmp_path)
    fs.apply_repo(store, REPO_DIR)
    push = fs.AGGRESSION_PUSH_SOURCE
    assert fs.push_rows(store, push, aggression_rows[:40], LapAggression, to_offline=True) == 40
    assert fs.push_lap_aggression(store, aggression_rows[30:60], to_offline=True) == 30
    assert pq.read_metadata(tmp_path / "lap_aggression.parquet").num_rows == 60, "rewritten laps replace"
    assert not (tmp_path / "lap_features.parquet").exists()
    assert fs.push_rows(store, push, [], LapAggression) == 0


def test_background_pusher_for_the_aggression_source(
    tmp_path: Path, aggression_rows: list[dict[str, Any]]
) -> None:
    store = fs.open_store(REPO_DIR, tmp_path)
    fs.apply_repo(store, REPO_DIR)
    pusher = fs.BackgroundPusher(
        store, max_batch=100, push_source=fs.AGGRESSION_PUSH_SOURCE, model=LapAggression
    )
    for row in aggression_rows:  # as the stream calls it: one record at a time
        pusher(row)
    pusher.close()
    assert pusher.pushed == len(aggression_rows) and not pusher.errors
    last = last_lap_by_driver(aggression_rows)
    got = fs.online_features(
        store, "driver_aggression_v1", [{"DriverNumber": d, "SessionKey": SESSION_KEY} for d in sorted(last)]
    )
    for i, driver in enumerate(got["DriverNumber"]):
        assert got["SpeedMax"][i] == last[driver]["SpeedMax"]
        assert got["ThrottleMean"][i] == pytest.approx(last[driver]["ThrottleMean"], abs=1e-9)
        assert got["LapTime"][i] is None, "no lap features pushed to this store"
