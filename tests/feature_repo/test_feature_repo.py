"""Feast repo (feature_repo/) and its I/O module, on the real 2023 Las Vegas GP laps.

No broker: the store is Feast's local provider (SQLite registry and online store, parquet offline
store) in a temporary data dir. The rows are the real LapFeatures built offline from the bundled
race; the online store must hold each driver's last lap, the offline join must return the lap
that had ended at the asked time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import pandas as pd
import pyarrow.parquet as pq
import pytest
from feast import FeatureService, FeatureStore, FeatureView
from feast.types import Bool, Float64, Int64, String
from google.protobuf.json_format import MessageToDict

from stratx.functions import ingest, models
from stratx.functions.features.laps import build_lap_features
from stratx.functions.racedata import RaceData
from stratx.functions.schemas import LapAggression, LapFeatures
from stratx.quix_apps.kit import feature_store as fs

REPO_DIR = Path(__file__).resolve().parents[2] / "feature_repo"
SESSION_KEY = 9189  # 2023 Las Vegas GP race

PACE = {
    "LapTime", "IsClean", "Last3Mean", "Last3Median", "Last3Std", "Last3Min", "Last5Mean",
    "Last5Median", "Last5Std", "Last5Min", "PersonalBest", "LapsSincePB", "DeltaToPB",
    "DeltaToSessionBest", "DeltaToTeammate", "DeltaToCarAhead", "DeltaToCarBehind",
    "DeltaToFieldMedian",
}  # fmt: skip
STINT = {
    "Stint", "Compound", "TyreLife", "FreshTyre", "LapsInStint", "StintCleanLaps", "FuelKg",
    "FuelCorrectedLapTime", "StintTrendSlope", "StintDegSlope", "StintDegSlopeStderr",
}  # fmt: skip
GAPS = {
    "PositionOnLap", "PositionChange", "GapToLeader", "IntervalAhead", "IntervalBehind",
    "InDRSRange", "LapsDown", "LapNumber",
}  # fmt: skip
AGGRESSION = {
    "ThrottleMean", "FullThrottleShare", "BrakeShare", "ThrottleBrakeOverlapShare", "DRSOpenShare",
    "BrakeEvents", "GearChanges", "DecelMean", "UpshiftRPMMean", "SpeedMax", "Windows", "Samples",
}  # fmt: skip
SERVICES = {
    "lap_time_v1",
    "tyre_deg_v1",
    "pit_window_v1",
    "overtake_v1",
    "driver_aggression_v1",
    "overtake_v2",
    "overtake_v3",
    "anomaly_v1",
}
CONTEXT = {"TrackStatus", "Neutralised", "GreenClean", "SpeedI1", "SpeedI2", "SpeedFL", "SpeedST"}
FEAST_TYPES = {float: Float64, int: Int64, bool: Bool, str: String}


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def lap_rows(las_vegas: RaceData) -> list[dict[str, Any]]:
    rows, rejected = build_lap_features(
        [json.loads(ingest.encode(r)) for r in ingest.table_records(las_vegas, "laps")]
    )
    assert rows and not rejected
    return rows


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feast")


@pytest.fixture(scope="module")
def store(data_dir: Path, lap_rows: list[dict[str, Any]]) -> FeatureStore:
    """Applied store with every real lap pushed online in lap-end order and written offline."""
    store = fs.open_store(REPO_DIR, data_dir)
    fs.apply_repo(store, REPO_DIR)
    for i in range(0, len(lap_rows), 20):  # 20 crossings per push, as a lap's worth of events
        fs.push_lap_features(store, lap_rows[i : i + 20])
    fs.write_offline(lap_rows, data_dir)
    return store


def last_lap_by_driver(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in rows:  # rows are in lap-end order
        out[row["DriverNumber"]] = row
    return out


def service_features(store: FeatureStore, name: str) -> list[str]:
    service = store.get_feature_service(name)
    return [f.name for p in service.feature_view_projections for f in p.features]


def assert_same(got: Any, want: Any, what: str) -> None:
    """Equal within 1e-9 for floats; None must stay None (no NaN, no 0)."""
    if want is None:
        assert got is None, f"{what}: expected None, got {got!r}"
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-9), what
    else:
        assert got == want and type(got) is type(want), f"{what}: {got!r} != {want!r}"


def plain(value: Any) -> Any:
    """A pandas cell (NA, numpy scalars) as the Python value the online API returns."""
    if value is pd.NA or value is None:
        return None
    return value.item() if hasattr(value, "item") else value


# ------------------------------------------------------------------ definitions
@pytest.mark.slow
def test_repo_applies_every_definition_into_the_data_dir(store: FeatureStore, data_dir: Path) -> None:
    assert {e.name for e in store.list_entities()} == {"driver", "session"}
    assert {v.name for v in store.list_feature_views()} == {
        "lap_pace",
        "lap_stint",
        "lap_gaps",
        "lap_aggression",
        "lap_context",
    }
    assert {s.name for s in store.list_feature_services()} == SERVICES
    # the definition's relative path, registered under the data dir (the DuckDB offline store needs it)
    assert store.get_data_source("lap_features_push").batch_source.path == str(
        data_dir.resolve() / "lap_features.parquet"
    )
    assert fs.offline_path(store) == data_dir.resolve() / "lap_features.parquet"
    assert {p.name for p in data_dir.iterdir()} >= {"registry.db", "online_store.db", "lap_features.parquet"}
    assert not list(REPO_DIR.glob("*.db")), "nothing may be written into feature_repo/"


def test_feature_views_hold_the_documented_families() -> None:
    views = {o.name: o for o in fs.load_definitions(REPO_DIR) if isinstance(o, FeatureView)}
    assert {n: {f.name for f in v.features} for n, v in views.items()} == {
        "lap_pace": PACE,
        "lap_stint": STINT,
        "lap_gaps": GAPS,
        "lap_aggression": AGGRESSION,
        "lap_context": CONTEXT,
    }
    for name, view in views.items():
        assert view.entities == ["driver", "session"]
        assert view.ttl == timedelta(days=1)
        push = "lap_aggression_push" if name == "lap_aggression" else "lap_features_push"
        assert view.stream_source is not None and view.stream_source.name == push


def test_every_service_feature_is_a_record_field_of_the_same_type() -> None:
    services = [o for o in fs.load_definitions(REPO_DIR) if isinstance(o, FeatureService)]
    assert {s.name for s in services} == SERVICES
    for service in services:
        assert re.fullmatch(r"[a-z_]+_v\d+", service.name), "services are versioned like the models"
        for projection in service.feature_view_projections:
            model = LapAggression if projection.name == "lap_aggression" else LapFeatures
            for field in projection.features:
                assert field.name in model.model_fields, f"{service.name}: {field.name}"
                annotation = model.model_fields[field.name].annotation
                python_type = next(a for a in (*get_args(annotation), annotation) if a in FEAST_TYPES)
                assert field.dtype == FEAST_TYPES[python_type], f"{service.name}: {field.name}"


@pytest.mark.slow
def test_services_compose_the_families_as_documented(store: FeatureStore) -> None:
    assert set(service_features(store, "tyre_deg_v1")) == STINT | PACE
    assert set(service_features(store, "pit_window_v1")) == STINT | GAPS | PACE
    assert set(service_features(store, "overtake_v1")) == GAPS | PACE
    lap_time = set(service_features(store, "lap_time_v1"))
    assert PACE | STINT <= lap_time <= PACE | STINT | GAPS
    assert {"LapNumber", "IntervalAhead", "InDRSRange"} <= lap_time
    assert set(service_features(store, "anomaly_v1")) >= CONTEXT


def test_model_recipes_name_services_that_hold_their_features() -> None:
    from stratx.functions.models import overtake

    services = {o.name: o for o in fs.load_definitions(REPO_DIR) if isinstance(o, FeatureService)}
    assert overtake.FEATURE_SERVICE == "overtake_v3"
    held = {f.name for p in services["overtake_v3"].feature_view_projections for f in p.features}
    assert held == set(overtake.SERVICE_FEATURES)


FEATURE_FIELDS = set(LapFeatures.model_fields) - {"v", "SessionKey", "DriverNumber", "SessionTime", "Date"}


@pytest.mark.parametrize("key", models.MODEL_KEYS)
def test_every_recipe_reads_schema_fields_its_service_holds(key: str) -> None:
    """The feature list of a model is declared by its recipe; the schema owns the names and the
    versioned Feast service must hold exactly that list."""
    recipe = models.recipe(key)
    features = recipe.service_features
    assert features and len(set(features)) == len(features), key
    assert set(features) <= FEATURE_FIELDS, f"{key}: not LapFeatures fields: {set(features) - FEATURE_FIELDS}"
    services = {o.name: o for o in fs.load_definitions(REPO_DIR) if isinstance(o, FeatureService)}
    assert recipe.feature_service in services, f"{key}: no Feast service {recipe.feature_service}"
    held = [f.name for p in services[recipe.feature_service].feature_view_projections for f in p.features]
    assert sorted(held) == sorted(features), key


def test_the_views_cover_every_lap_feature_once() -> None:
    views = [
        o for o in fs.load_definitions(REPO_DIR) if isinstance(o, FeatureView) and o.name != "lap_aggression"
    ]
    names = [f.name for v in views for f in v.features]
    assert len(names) == len(set(names)), "a lap feature in two views"
    # identity and free text stay out of the store: they are not model inputs
    assert FEATURE_FIELDS - set(names) == {"Driver", "Team", "CleanReason"}


# ------------------------------------------------------------------ frame
def test_to_frame_keeps_every_field_but_v_with_nulls_and_utc_event_time(
    lap_rows: list[dict[str, Any]],
) -> None:
    frame = fs.to_frame(lap_rows)
    assert list(frame.columns) == [n for n in LapFeatures.model_fields if n != "v"] + ["event_timestamp"]
    assert len(frame) == len(lap_rows)
    assert str(frame["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert (frame["event_timestamp"] == frame["Date"]).all()
    first = lap_rows[0]
    assert frame["event_timestamp"].iloc[0] == pd.Timestamp(first["Date"])
    assert first["LapTime"] is None and frame["LapTime"].iloc[0] is pd.NA
    assert not frame.select_dtypes("number").isin([float("nan")]).any().any()


def test_to_frame_refuses_a_row_without_event_time(lap_rows: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="no Date"):
        fs.to_frame([{**lap_rows[0], "Date": None}])


# ------------------------------------------------------------------ online
@pytest.mark.slow
def test_online_vector_of_every_driver_is_its_last_lap(
    store: FeatureStore, lap_rows: list[dict[str, Any]]
) -> None:
    last = last_lap_by_driver(lap_rows)
    assert len(last) == 20
    names = service_features(store, "lap_time_v1")
    drivers = sorted(last)
    got = fs.online_features(
        store, "lap_time_v1", [{"DriverNumber": d, "SessionKey": SESSION_KEY} for d in drivers]
    )
    assert got["DriverNumber"] == drivers
    for i, driver in enumerate(drivers):
        for name in names:
            assert_same(got[name][i], last[driver][name], f"driver {driver} {name}")


@pytest.mark.slow
def test_every_service_serves_online(store: FeatureStore) -> None:
    for name in ("lap_time_v1", "tyre_deg_v1", "pit_window_v1", "overtake_v1"):
        got = fs.online_features(store, name, [{"DriverNumber": "1", "SessionKey": SESSION_KEY}])
        assert set(got) == {"DriverNumber", "SessionKey", *service_features(store, name)}


@pytest.mark.slow
def test_unknown_driver_reads_as_nulls(store: FeatureStore) -> None:
    got = fs.online_features(store, "overtake_v1", [{"DriverNumber": "99", "SessionKey": SESSION_KEY}])
    assert all(got[n] == [None] for n in service_features(store, "overtake_v1"))


@pytest.mark.slow
def test_online_read_latency(store: FeatureStore) -> None:
    row = [{"DriverNumber": "1", "SessionKey": SESSION_KEY}]
    fs.online_features(store, "lap_time_v1", row)  # warm the registry cache
    took = []
    for _ in range(300):
        t = time.perf_counter()
        fs.online_features(store, "lap_time_v1", row)
        took.append(time.perf_counter() - t)
    q = statistics.quantiles(took, n=100)
    print(f"\nonline lap_time_v1, one driver, 300 reads: p50 {q[49] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms")
    assert max(took) < 1.0


# ------------------------------------------------------------------ offline
def lap(rows: list[dict[str, Any]], driver: str, n: int) -> dict[str, Any]:
    return next(r for r in rows if r["DriverNumber"] == driver and r["LapNumber"] == n)


@pytest.mark.slow
def test_historical_values_are_as_of_the_entity_time(
    store: FeatureStore, lap_rows: list[dict[str, Any]]
) -> None:
    drivers = sorted({r["DriverNumber"] for r in lap_rows if r["LapNumber"] == 11})
    assert len(drivers) >= 15
    asked: list[tuple[str, pd.Timestamp, dict[str, Any] | None]] = []
    for d in drivers:
        end10, end11 = (pd.Timestamp(lap(lap_rows, d, n)["Date"]) for n in (10, 11))
        asked.append((d, end10 + (end11 - end10) / 2, lap(lap_rows, d, 10)))  # between laps 10 and 11
        asked.append((d, end11, lap(lap_rows, d, 11)))  # exactly at a lap end: that lap counts
    first_end = pd.Timestamp(lap(lap_rows, "1", 1)["Date"])
    asked.append(("1", first_end - pd.Timedelta(seconds=1), None))  # before the driver's first lap
    asked.append(("99", first_end, None))  # no such driver
    entity_df = pd.DataFrame(
        {
            "DriverNumber": [a[0] for a in asked],
            "SessionKey": SESSION_KEY,
            "event_timestamp": [a[1] for a in asked],
        }
    )
    got = fs.historical_features(store, "lap_time_v1", entity_df)
    assert list(got["DriverNumber"]) == list(entity_df["DriverNumber"]), "one row per entity row, in order"
    names = service_features(store, "lap_time_v1")
    for i, (driver, when, want) in enumerate(asked):
        for name in names:
            value = plain(got[name].iloc[i])
            assert_same(value, None if want is None else want[name], f"driver {driver} at {when}: {name}")


@pytest.mark.slow
def test_offline_at_race_end_equals_online(store: FeatureStore, lap_rows: list[dict[str, Any]]) -> None:
    last = last_lap_by_driver(lap_rows)
    end = max(pd.Timestamp(r["Date"]) for r in lap_rows)
    entity_df = pd.DataFrame(
        {"DriverNumber": sorted(last), "SessionKey": SESSION_KEY, "event_timestamp": end}
    )
    offline = fs.historical_features(store, "pit_window_v1", entity_df)
    online = fs.online_features(
        store, "pit_window_v1", entity_df[["DriverNumber", "SessionKey"]].to_dict("records")
    )
    for name in service_features(store, "pit_window_v1"):
        for i in range(len(entity_df)):
            assert_same(plain(offline[name].iloc[i]), online[name][i], f"{entity_df.DriverNumber[i]} {name}")


def test_write_offline_replaces_a_rewritten_lap(tmp_path: Path, lap_rows: list[dict[str, Any]]) -> None:
    path = fs.write_offline(lap_rows[:100], tmp_path)
    changed = [{**r, "LapTime": 1.0} for r in lap_rows[50:150]]
    fs.write_offline(changed, tmp_path)
    table = pq.read_table(path).to_pandas()
    assert len(table) == 150
    assert not table.duplicated(["SessionKey", "DriverNumber", "LapNumber"]).any()
    assert (table.sort_values("event_timestamp")["LapTime"].iloc[50:] == 1.0).all()


def test_push_to_offline_writes_each_row_once(tmp_path: Path, lap_rows: list[dict[str, Any]]) -> None:
    store = fs.open_store(REPO_DIR, tmp_path)
    fs.apply_repo(store, REPO_DIR)
    assert fs.push_lap_features(store, lap_rows[:40], to_offline=True) == 40
    assert fs.push_lap_features(store, lap_rows[40:60], to_offline=True) == 20
    assert pq.read_metadata(tmp_path / "lap_features.parquet").num_rows == 60
    assert fs.push_lap_features(store, []) == 0


# ------------------------------------------------------------------ CLI
def spec(obj: Any, data_dir: Path | None = None) -> Any:
    """An object's registered definition without the apply-time timestamps (`meta`); with
    ``data_dir``, file paths under it as the definitions write them (relative)."""
    prefix = f"{data_dir.resolve()}/" if data_dir else None

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "meta"}
        if isinstance(node, str) and prefix and node.startswith(prefix):
            return node.removeprefix(prefix)
        return [strip(v) for v in node] if isinstance(node, list) else node

    proto = obj.to_proto()
    return strip(MessageToDict(proto.spec if hasattr(proto, "spec") else proto))


@pytest.mark.slow
def test_feast_cli_apply_registers_the_same_repo(tmp_path: Path, data_dir: Path, store: FeatureStore) -> None:
    """The README command: `cd feature_repo && STRATX_FEAST_DATA_DIR=... feast apply`. The CLI keeps
    the definitions' relative parquet paths; set-up code registers them under the data dir."""
    feast = shutil.which("feast", path=str(Path(sys.executable).parent))
    assert feast
    env: Mapping[str, str] = {**os.environ, "STRATX_FEAST_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [feast, "apply", "--skip-source-validation"],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    cli = fs.open_store(REPO_DIR, tmp_path)
    for kind in ("list_entities", "list_feature_views", "list_feature_services", "list_data_sources"):
        ours = {o.name: o for o in getattr(store, kind)()}
        theirs = {o.name: o for o in getattr(cli, kind)()}
        assert theirs.keys() == ours.keys(), kind
        for name, obj in ours.items():
            assert spec(theirs[name]) == spec(obj, data_dir), f"{kind} {name}"
    assert not list(REPO_DIR.glob("*.db")) and not (REPO_DIR / "data").exists()


def test_setup_store_follows_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATX_FEAST_DATA_DIR", str(tmp_path / "feast"))
    settings = fs.FeastSettings()
    assert settings.feast_data_dir == tmp_path / "feast" and settings.feast_repo == REPO_DIR
    store = fs.setup_store(settings)
    assert (tmp_path / "feast" / "registry.db").exists()
    assert store.get_feature_service("overtake_v1").name == "overtake_v1"
    bare = fs.open_store()  # no arguments: the same settings, read from the environment
    assert bare.config.repo_path == (tmp_path / "feast").resolve()
    assert {s.name for s in fs.apply_repo(bare) if isinstance(s, FeatureService)} >= {"lap_time_v1"}
    before = dict(os.environ)
    fs.open_store(REPO_DIR, tmp_path / "other")
    assert dict(os.environ) == before, "open_store fills the yaml without touching the environment"


def test_background_pusher_batches_and_keeps_the_latest_lap(
    tmp_path: Path, lap_rows: list[dict[str, Any]]
) -> None:
    store = fs.open_store(REPO_DIR, tmp_path)
    fs.apply_repo(store, REPO_DIR)
    pusher = fs.BackgroundPusher(store, max_batch=100)
    for row in lap_rows:  # as the stream calls it: one row at a time, in lap-end order
        pusher(row)
    pusher.close()
    assert pusher.pushed == len(lap_rows) and not pusher.errors
    last = last_lap_by_driver(lap_rows)
    got = fs.online_features(
        store, "lap_time_v1", [{"DriverNumber": d, "SessionKey": 9189} for d in sorted(last)]
    )
    for i, driver in enumerate(got["DriverNumber"]):
        assert got["LapTime"][i] == last[driver]["LapTime"]


def test_background_pusher_reports_failed_pushes(tmp_path: Path) -> None:
    store = fs.open_store(REPO_DIR, tmp_path)  # not applied: every push fails
    pusher = fs.BackgroundPusher(store)
    pusher({"SessionKey": 1, "DriverNumber": "1", "Date": None})
    with pytest.raises(RuntimeError, match="Feast pushes failed"):
        pusher.close()
