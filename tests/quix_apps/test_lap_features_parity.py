"""Parity: a bundled race replayed through the lap-features app equals the offline build."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from stratx.functions import catalog, ingest, schemas
from stratx.functions.features.laps import build_lap_features
from stratx.functions.racedata import RaceData
from stratx.functions.settings import FeastSettings, FeatureAppSettings, ReplaySettings
from stratx.quix_apps import lap_features, replay
from stratx.quix_apps.kit import admin, feature_store, kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own: the parity check needs each session replayed exactly once."""
    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path_factory.mktemp("b") / "tansu.log") as b:
        yield b.address


def laps_only(race: RaceData) -> RaceData:
    keep = {k: v for k, v in race.tables.items() if k not in ("car_data", "pos_data")}
    return RaceData(race.meta, keep, race.missing)


@pytest.fixture(scope="module")
def streamed(own_broker: str, las_vegas: RaceData, tmp_path_factory: pytest.TempPathFactory) -> dict:
    race = laps_only(las_vegas)
    client = admin.connect(own_broker)
    admin.create_topics(client)
    client.close()
    replay.run(race, ReplaySettings(broker_address=own_broker), replay.ReplayOptions(progress=False))
    # a duplicate lap (the replay's at-least-once worst case) must be dead-lettered, not double-counted
    dup = next(r for r in ingest.table_records(race, "laps"))
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": own_broker})
    producer.produce(catalog.LAPS.name, key=dup.key, value=ingest.encode(dup))
    producer.produce(catalog.LAPS.name, key=dup.key, value=b'{"SessionKey": 9189, "DriverNumber": "1"}')
    producer.flush(10)
    settings = FeatureAppSettings(
        broker_address=own_broker, state_dir=tmp_path_factory.mktemp("state"), feast_push=False
    )
    store = feature_store.setup_store(FeastSettings(feast_data_dir=tmp_path_factory.mktemp("feast")))
    # the deployable's sink (lap_features.main): batched pushes, each driver's newest row per batch
    # (one push per row cost ~18 ms each, ~20 s of this set-up)
    pusher = feature_store.BackgroundPusher(store)
    app = lap_features.build_app(settings, on_features=pusher)
    app.run(timeout=8.0)
    pusher.close()
    rows = {}
    for msg in kafka_io.read_all(own_broker, catalog.FEATURES_LAP.name):
        value = json.loads(msg.value())
        assert msg.key().decode() == f"{value['SessionKey']}:{value['DriverNumber']}"
        rows[(value["DriverNumber"], value["LapNumber"])] = value
    letters = [json.loads(m.value()) for m in kafka_io.read_all(own_broker, catalog.DEAD_LETTER.name)]
    assert pusher.pushed == len(rows), "every feature record went to the pusher"
    return {"rows": rows, "letters": [x for x in letters if x["Stage"] == lap_features.STAGE], "store": store}


def test_every_driver_lap_equals_the_offline_build(streamed: dict, las_vegas: RaceData) -> None:
    events = [json.loads(ingest.encode(r)) for r in ingest.table_records(las_vegas, "laps")]
    offline, rejected = build_lap_features(events)
    assert rejected == []
    online = streamed["rows"]
    assert len(online) == len(offline) == len(las_vegas.table("laps"))
    for want in offline:
        got = online[(want["DriverNumber"], want["LapNumber"])]
        want = schemas.LapFeatures.model_validate(want).model_dump(mode="json")
        assert got.keys() == want.keys()
        for field, w in want.items():
            g = got[field]
            if isinstance(w, float) and g is not None:
                assert math.isclose(g, w, rel_tol=1e-12, abs_tol=1e-12), (field, want["LapNumber"])
            else:
                assert g == w, (field, want["DriverNumber"], want["LapNumber"])


def test_duplicates_and_bad_records_go_to_dead_letters(streamed: dict) -> None:
    reasons = sorted(letter["Reason"] for letter in streamed["letters"])
    assert len(reasons) == 2
    assert any(r.startswith("duplicate or out-of-order lap") for r in reasons)
    assert any(r.startswith("Lap schema") for r in reasons)


def test_features_make_race_sense(streamed: dict) -> None:
    rows = streamed["rows"]
    last = max(n for _, n in rows)
    leader = [v for (d, n), v in rows.items() if n == last and v["PositionOnLap"] == 1]
    assert len(leader) == 1 and leader[0]["GapToLeader"] == 0 and leader[0]["IntervalAhead"] is None
    # 2023 Las Vegas GP: Verstappen (1) won
    assert leader[0]["DriverNumber"] == "1"


def test_feast_online_store_holds_every_drivers_last_lap(streamed: dict) -> None:
    """replay -> features topic -> Feast online store: the online vector is the last lap's features."""
    rows = streamed["rows"]
    last: dict[str, dict] = {}
    for (driver, lap), value in rows.items():
        if driver not in last or lap > last[driver]["LapNumber"]:
            last[driver] = value
    assert len(last) == 20
    entity_rows = [{"DriverNumber": d, "SessionKey": v["SessionKey"]} for d, v in last.items()]
    online = feature_store.online_features(streamed["store"], "pit_window_v1", entity_rows)
    names = [n for n in online if n not in ("DriverNumber", "SessionKey")]
    assert {"LapNumber", "StintDegSlope", "GapToLeader", "Last3Mean"} <= set(names)
    for i, driver in enumerate(online["DriverNumber"]):
        want = last[driver]
        for name in names:
            got, exp = online[name][i], want[name]
            if isinstance(exp, float) and got is not None:
                assert math.isclose(got, exp, rel_tol=1e-9, abs_tol=1e-9), (driver, name)
            else:
                assert got == exp, (driver, name, got, exp)
