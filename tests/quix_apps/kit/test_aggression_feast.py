"""Integration tier: the lap-aggression app pushes its records to Feast as it streams them.

Two drivers of the bundled 2023 Las Vegas GP (VER, LEC): their offline-built telemetry windows
(each driver's final window left out: the telemetry app keeps it open) and lap features are
produced to the two input topics; the app runs with a ``BackgroundPusher`` for
``lap_aggression_push`` as its ``on_records`` hook (what ``stratx features run --app aggression``
wires) until idle. The online store must then hold, per driver, the last record the app produced,
which equals the offline build's last lap the produced telemetry has passed.

The broker is this module's own, as in ``test_lap_aggression_app.py``: the input topics must be
co-partitioned (6 partitions each), while ``catalog.FEATURES_LAP`` has 3 today.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from quixstreams.kafka import Producer

from stratx.bentos.lifecycle.feature_build import lap_feature_rows
from stratx.functions import catalog, schemas
from stratx.functions.features import aggression as ag
from stratx.functions.features import telemetry as tl
from stratx.functions.racedata import RaceData
from stratx.functions.schemas import LapAggression
from stratx.functions.settings import KafkaSettings
from stratx.quix_apps import lap_aggression as app_mod
from stratx.quix_apps.kit import admin, kafka_io
from stratx.quix_apps.kit import feature_store as fs
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration
REPO_DIR = Path(__file__).resolve().parents[3] / "feature_repo"
DRIVERS = {"VER", "LEC"}
FEATURES_LAP_6 = dataclasses.replace(catalog.FEATURES_LAP, partitions=catalog.TELEMETRY_WINDOW.partitions)
INPUTS = (catalog.TELEMETRY_WINDOW, FEATURES_LAP_6)
AGGRESSION = (
    "ThrottleMean", "FullThrottleShare", "BrakeShare", "ThrottleBrakeOverlapShare", "DRSOpenShare",
    "BrakeEvents", "GearChanges", "DecelMean", "UpshiftRPMMean", "SpeedMax", "Windows", "Samples",
)  # fmt: skip


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path_factory.mktemp("b") / "tansu.log") as b:
        yield b.address


@pytest.fixture(scope="module")
def inputs(las_vegas: RaceData) -> dict[str, Any]:
    race = las_vegas.filter_drivers(DRIVERS)
    frame = tl.offline_windows(race)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    windows = [schemas.TelemetryWindow.model_validate(r).model_dump(mode="json") for r in rows]
    laps, rejected = lap_feature_rows(race)
    assert rejected == []
    last: dict[str, float] = {}
    for w in windows:
        last[w["DriverNumber"]] = max(last.get(w["DriverNumber"], 0.0), w["WindowStart"])
    closed = [w for w in windows if w["WindowStart"] < last[w["DriverNumber"]]]
    return {"all_windows": windows, "windows": closed, "laps": laps}


def ms(date: str) -> int:
    return round(datetime.fromisoformat(date).timestamp() * 1000)


@pytest.fixture(scope="module")
def streamed(
    own_broker: str, inputs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    client = admin.connect(own_broker)
    admin.create_topics(client, [*INPUTS, app_mod.LAP_AGGRESSION, catalog.DEAD_LETTER])
    client.close()
    with Producer(broker_address=own_broker) as producer:
        for spec, records in (
            (catalog.TELEMETRY_WINDOW, inputs["windows"]),
            (FEATURES_LAP_6, inputs["laps"]),
        ):
            for r in records:
                key = f"{r['SessionKey']}:{r['DriverNumber']}"
                producer.produce(spec.name, json.dumps(r).encode(), key=key, timestamp=ms(r["Date"]))
        producer.flush(10)

    data_dir = tmp_path_factory.mktemp("feast")
    store = fs.open_store(REPO_DIR, data_dir)
    fs.apply_repo(store, REPO_DIR)
    pusher = fs.BackgroundPusher(store, push_source=fs.AGGRESSION_PUSH_SOURCE, model=LapAggression)
    hooked: list[dict[str, Any]] = []

    def on_records(record: dict[str, Any]) -> None:
        hooked.append(dict(record))
        pusher(record)

    app, _ = app_mod.build_app(
        KafkaSettings(broker_address=own_broker),
        lap_spec=FEATURES_LAP_6,
        state_dir=Path(tmp_path_factory.mktemp("aggression-state")),
        loglevel=logging.WARNING,
        on_records=on_records,
    )
    try:
        app.run(timeout=3.0, collect=False)  # stops after 3 s without new input
    finally:
        pusher.close()
    out = [json.loads(m.value()) for m in kafka_io.read_all(own_broker, app_mod.LAP_AGGRESSION.name)]
    return {"store": store, "pusher": pusher, "hooked": hooked, "out": out}


def test_hook_sees_every_record_the_app_produces(streamed: dict[str, Any]) -> None:
    out, hooked = streamed["out"], streamed["hooked"]
    assert len(out) == 2 * 49  # lap 1 of each driver has no start
    key = ("DriverNumber", "LapNumber")
    assert sorted(out, key=lambda r: [r[k] for k in key]) == sorted(hooked, key=lambda r: [r[k] for k in key])
    assert streamed["pusher"].pushed == len(hooked) and not streamed["pusher"].errors


def test_online_store_holds_each_drivers_last_streamed_lap(
    streamed: dict[str, Any], inputs: dict[str, Any]
) -> None:
    last: dict[str, dict[str, Any]] = {}
    for record in streamed["out"]:  # per key in lap order (one partition per key)
        last[record["DriverNumber"]] = record
    assert len(last) == len(DRIVERS)
    offline = ag.offline_lap_aggression(inputs["all_windows"], inputs["laps"])
    drivers = sorted(last)
    got = fs.online_features(
        streamed["store"],
        "driver_aggression_v1",
        [{"DriverNumber": d, "SessionKey": last[d]["SessionKey"]} for d in drivers],
    )
    for i, driver in enumerate(drivers):
        final = offline[offline.DriverNumber == driver].sort_values("LapNumber").iloc[-1]
        assert last[driver]["LapNumber"] == final["LapNumber"]
        for name in AGGRESSION:
            want = last[driver][name]
            if isinstance(want, float):
                assert got[name][i] == pytest.approx(want, abs=1e-9), f"{driver} {name}"
                assert want == pytest.approx(float(final[name]), abs=1e-9), f"{driver} {name} offline"
            else:
                assert got[name][i] == want, f"{driver} {name}"
        assert got["LapTime"][i] is None, "only the aggression family is pushed here"
