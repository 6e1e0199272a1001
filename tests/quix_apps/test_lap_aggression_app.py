"""Integration tier: the lap-aggression app on a real broker equals the offline build.

Two drivers of the bundled 2023 Las Vegas GP (VER, LEC): their offline-built telemetry windows
(each driver's final window left out: the telemetry app keeps it open) and lap features are
produced to the two input topics, each key in its own order but the four streams (2 drivers x 2
topics) randomly interleaved, with the timestamps the upstream apps give them (window end / lap
end Date). The app runs until idle; its output equals ``offline_lap_aggression`` field for field,
except laps the produced telemetry has not passed.

The broker is this module's own: the input topics must be co-partitioned (6 partitions each),
while ``catalog.FEATURES_LAP`` has 3 today (see :mod:`stratx.quix_apps.lap_aggression`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from quixstreams.kafka import Producer
from quixstreams.models.topics.exceptions import TopicPartitionsMismatch

from stratx.bentos.lifecycle.feature_build import lap_feature_rows
from stratx.functions import catalog, schemas
from stratx.functions.catalog import TopicSpec
from stratx.functions.features import aggression as ag
from stratx.functions.features import telemetry as tl
from stratx.functions.racedata import RaceData
from stratx.functions.settings import KafkaSettings
from stratx.quix_apps import lap_aggression as app_mod
from stratx.quix_apps.kit import admin, kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration
DRIVERS = {"VER", "LEC"}
# the lap-features topic as this app needs it: co-partitioned with the telemetry windows
FEATURES_LAP_6 = dataclasses.replace(catalog.FEATURES_LAP, partitions=catalog.TELEMETRY_WINDOW.partitions)
INPUTS = (catalog.TELEMETRY_WINDOW, FEATURES_LAP_6)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own: its topics are created here with the 6 partitions co-partitioning needs."""
    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path_factory.mktemp("b") / "tansu.log") as b:
        yield b.address


@pytest.fixture(scope="module")
def race(las_vegas: RaceData) -> RaceData:
    return las_vegas.filter_drivers(DRIVERS)


@pytest.fixture(scope="module")
def inputs(race: RaceData) -> dict[str, Any]:
    """Offline windows and lap features of the two drivers, as the upstream topics carry them."""
    frame = tl.offline_windows(race)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    windows = [schemas.TelemetryWindow.model_validate(r).model_dump(mode="json") for r in rows]
    laps, rejected = lap_feature_rows(race)
    assert rejected == []
    last = {}
    for w in windows:
        last[w["DriverNumber"]] = max(last.get(w["DriverNumber"], 0.0), w["WindowStart"])
    closed = [w for w in windows if w["WindowStart"] < last[w["DriverNumber"]]]
    return {"all_windows": windows, "windows": closed, "laps": laps}


def ms(date: str) -> int:
    return round(datetime.fromisoformat(date).timestamp() * 1000)


def produce_interleaved(broker: str, windows: list[dict], laps: list[dict], seed: int) -> None:
    """Each key's records in their own order, the four (driver, topic) streams randomly merged.

    Quix's producer (murmur2, as the upstream apps use) puts a key on the same partition number
    of both 6-partition topics.
    """
    streams: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for w in windows:
        streams[(catalog.TELEMETRY_WINDOW.name, f"{w['SessionKey']}:{w['DriverNumber']}")].append(w)
    for lap in laps:
        streams[(FEATURES_LAP_6.name, f"{lap['SessionKey']}:{lap['DriverNumber']}")].append(lap)
    labels = [name for name, records in streams.items() for _ in records]
    random.Random(seed).shuffle(labels)
    its = {name: iter(records) for name, records in streams.items()}
    with Producer(broker_address=broker) as producer:
        for topic, key in labels:
            value = next(its[(topic, key)])
            producer.produce(topic, json.dumps(value).encode(), key=key, timestamp=ms(value["Date"]))
        # at-least-once redelivery of a lap, and a record that is not JSON
        dup = laps[-1]  # the latest lap of its driver, redelivered
        producer.produce(
            FEATURES_LAP_6.name,
            json.dumps(dup).encode(),
            key=f"{dup['SessionKey']}:{dup['DriverNumber']}",
            timestamp=ms(dup["Date"]),
        )
        producer.produce(catalog.TELEMETRY_WINDOW.name, b"{not json", key=f"{dup['SessionKey']}:1")
        producer.flush(10)


@pytest.fixture(scope="module")
def streamed(own_broker: str, inputs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict:
    client = admin.connect(own_broker)
    admin.create_topics(client, [*INPUTS, app_mod.LAP_AGGRESSION, catalog.DEAD_LETTER])
    client.close()
    produce_interleaved(own_broker, inputs["windows"], inputs["laps"], seed=20231119)
    app, _ = app_mod.build_app(
        KafkaSettings(broker_address=own_broker),
        lap_spec=FEATURES_LAP_6,
        state_dir=Path(tmp_path_factory.mktemp("aggression-state")),
        loglevel=logging.WARNING,
    )
    started = time.monotonic()
    app.run(timeout=3.0, collect=False)  # stops after 3 s without new input
    print(f"lap aggression app: {time.monotonic() - started:.1f} s incl. join and 3 s idle")

    def read(topic: str) -> list[Any]:
        return list(kafka_io.read_all(own_broker, topic))

    return {
        "out": read(app_mod.LAP_AGGRESSION.name),
        "letters": [json.loads(m.value()) for m in read(catalog.DEAD_LETTER.name)],
        "partitions": {
            spec.name: {m.key().decode(): m.partition() for m in read(spec.name)} for spec in INPUTS
        },
    }


def test_stream_equals_offline_lap_aggression(streamed: dict, inputs: dict[str, Any]) -> None:
    offline = ag.offline_lap_aggression(inputs["all_windows"], inputs["laps"])
    # laps the produced (closed) windows have passed; the rest stays pending on the stream
    passed = {}
    for w in inputs["windows"]:
        passed[w["DriverNumber"]] = max(passed.get(w["DriverNumber"], 0.0), w["WindowStart"])
    final = offline[offline.SessionTime <= offline.DriverNumber.map(passed)]
    assert len(final) == len(offline) == 2 * 49  # lap 1 of each driver has no start

    records = [json.loads(m.value()) for m in streamed["out"]]
    for record in records:
        assert ag.LapAggression.model_validate(record).model_dump(mode="json") == record
    stream = ag.aggression_frame(records)
    assert list(stream.columns) == list(ag.FIELDS)
    stream = stream.sort_values(["DriverNumber", "LapNumber"]).reset_index(drop=True)
    final = final.sort_values(["DriverNumber", "LapNumber"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(stream, final, check_exact=True)


def test_records_are_keyed_timestamped_ordered_and_co_partitioned(streamed: dict) -> None:
    per_key: dict[str, list[int]] = defaultdict(list)
    for msg in streamed["out"]:
        value = ag.LapAggression.model_validate_json(msg.value())
        key = msg.key().decode()
        assert key == f"{value.SessionKey}:{value.DriverNumber}"
        assert value.Date is not None
        assert msg.timestamp()[1] == round(value.Date.timestamp() * 1000)  # lap end Date, ms
        per_key[key].append(value.LapNumber)
        # murmur2 over 6 partitions: the same partition number on both inputs and the output
        assert msg.partition() == streamed["partitions"][catalog.TELEMETRY_WINDOW.name][key]
        assert msg.partition() == streamed["partitions"][FEATURES_LAP_6.name][key]
    assert len(per_key) == len(DRIVERS)
    for key, laps in per_key.items():
        assert laps == sorted(laps) and len(set(laps)) == len(laps), key


def test_duplicates_and_bad_records_go_to_dead_letters(streamed: dict) -> None:
    letters = [x for x in streamed["letters"] if x["Stage"] == app_mod.STAGE]
    reasons = sorted((x["SourceTopic"], x["Reason"].split(":")[0]) for x in letters)
    assert reasons == [
        (FEATURES_LAP_6.name, "duplicate"),
        (catalog.TELEMETRY_WINDOW.name, "not JSON"),
    ]


def test_inputs_with_different_partition_counts_are_refused(own_broker: str, tmp_path: Path) -> None:
    """Quix keeps state per partition number: concat + state needs co-partitioned inputs."""
    laps_3: TopicSpec = dataclasses.replace(  # the catalog's FEATURES_LAP today
        catalog.FEATURES_LAP, name="stratx.test.lap_3_partitions", partitions=3
    )
    with pytest.raises(TopicPartitionsMismatch, match="same number of partitions"):
        app_mod.build_app(
            KafkaSettings(broker_address=own_broker),
            lap_spec=laps_3,
            state_dir=tmp_path,
            consumer_group="stratx-test-mismatch",
            loglevel=logging.WARNING,
        )
