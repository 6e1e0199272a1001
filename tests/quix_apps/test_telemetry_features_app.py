"""Integration tier: the telemetry-features app on a real broker equals the offline build.

Two drivers of the bundled 2024 Bahrain GP (NOR, PIA; other tests replay other drivers and races
into the same broker, so windows are filtered by SessionKey and DriverNumber) are replayed to the
raw topic; the app runs until idle; the windows read back equal ``offline_windows`` row for row,
except each driver's final window, which the stream keeps open.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition

from stratx.bentos.lifecycle import sources
from stratx.functions import catalog
from stratx.functions.features import telemetry as tl
from stratx.functions.racedata import RaceData
from stratx.functions.settings import KafkaSettings, ReplaySettings
from stratx.quix_apps import replay, telemetry_features
from stratx.quix_apps.kit import kafka_io
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.integration
DRIVERS = {"NOR", "PIA"}


def skip_to_end(broker: str, group: str, topic: str) -> None:
    """Commit the topic's end offsets for ``group``: the app then reads only what comes next."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in parts
        ]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def race() -> RaceData:
    return sources.load_bundled(DATA_DIR / "races" / "2024_bahrain_grand_prix_race").filter_drivers(DRIVERS)


@pytest.fixture(scope="module")
def streamed(
    broker_address: str, race: RaceData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[Any], list[dict[str, Any]]]:
    """(window messages, this stage's dead letters) of the two drivers after a full replay."""
    settings = KafkaSettings(broker_address=broker_address)
    state_dir = Path(tmp_path_factory.mktemp("telemetry-state"))
    app, _ = telemetry_features.build_app(settings, state_dir=state_dir, loglevel=logging.WARNING)
    skip_to_end(broker_address, telemetry_features.CONSUMER_GROUP, catalog.CAR_TELEMETRY.name)
    result = replay.run(
        race, ReplaySettings(broker_address=broker_address), replay.ReplayOptions(progress=False)
    )
    assert result.finished
    started = time.monotonic()
    app.run(timeout=3.0, collect=False)  # stops after 3 s without new input
    print(f"telemetry features app: {time.monotonic() - started:.1f} s incl. join and 3 s idle")

    key = race.meta.session_key
    numbers = set(race.table("drivers").DriverNumber)
    windows = [
        msg
        for msg in kafka_io.read_all(broker_address, catalog.TELEMETRY_WINDOW.name)
        if (v := json.loads(msg.value()))["SessionKey"] == key and v["DriverNumber"] in numbers
    ]
    letters = [
        letter
        for msg in kafka_io.read_all(broker_address, catalog.DEAD_LETTER.name)
        if (letter := json.loads(msg.value()))["Stage"] == telemetry_features.STAGE
        and letter["Key"] in {f"{key}:{n}" for n in numbers}
    ]
    return windows, letters


def test_stream_equals_offline_windows(
    streamed: tuple[list[Any], list[dict[str, Any]]], race: RaceData
) -> None:
    messages, letters = streamed
    assert letters == []  # the replay already dead-lettered schema failures; no duplicates here
    offline = tl.offline_windows(race)
    closed = offline[offline.WindowStart < offline.groupby("DriverNumber").WindowStart.transform("max")]
    stream = tl.windows_frame(json.loads(m.value()) for m in messages)
    stream = stream.sort_values(["DriverNumber", "WindowStart"]).reset_index(drop=True)
    closed = closed.sort_values(["DriverNumber", "WindowStart"]).reset_index(drop=True)
    assert len(stream) == len(closed) > 2 * 1800  # ~ 9330 s of telemetry / 5 s per driver
    pd.testing.assert_frame_equal(stream, closed, check_exact=False, rtol=0, atol=1e-9)


def test_windows_are_keyed_timestamped_and_ordered(
    streamed: tuple[list[Any], list[dict[str, Any]]], race: RaceData
) -> None:
    messages, _ = streamed
    per_key: dict[str, list[float]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for msg in messages:
        value = tl.TelemetryWindow.model_validate_json(msg.value())
        key = msg.key().decode()
        assert key == f"{value.SessionKey}:{value.DriverNumber}"
        assert value.Date is not None
        assert msg.timestamp()[1] == round(value.Date.timestamp() * 1000)  # window end Date, ms
        per_key[key].append(value.WindowStart)
        partitions[key].add(msg.partition())
    assert len(per_key) == len(DRIVERS)
    for key, starts in per_key.items():
        assert starts == sorted(starts) and len(set(starts)) == len(starts), key
        assert len(partitions[key]) == 1
