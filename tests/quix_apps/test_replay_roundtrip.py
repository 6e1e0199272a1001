"""Integration tier: a real Tansu broker, a full real race replayed at max speed and read back."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from typing import Any

import pytest

from stratx.functions import catalog
from stratx.functions.ingest import TABLE_TOPICS
from stratx.functions.racedata import RaceData
from stratx.functions.settings import ReplaySettings
from stratx.quix_apps import replay
from stratx.quix_apps.kit import admin, kafka_io

pytestmark = pytest.mark.integration


def read_session(broker: str, topic: str, session_key: int) -> list[tuple[str, int, dict[str, Any]]]:
    """(key, partition, value) of every message of ``session_key`` on ``topic``."""
    out = []
    for msg in kafka_io.read_all(broker, topic):
        value = json.loads(msg.value())
        if value.get("SessionKey", session_key) == session_key:
            out.append((msg.key().decode(), msg.partition(), value))
    return out


@pytest.fixture(scope="module")
def replayed(broker_address: str, las_vegas: RaceData) -> tuple[replay.ReplayResult, dict[str, list]]:
    settings = ReplaySettings(broker_address=broker_address)
    result = replay.run(las_vegas, settings, replay.ReplayOptions(speed=0, progress=False))
    key = las_vegas.meta.session_key
    topics = {spec.name: read_session(broker_address, spec.name, key) for spec in catalog.RAW_TOPICS}
    letters = [
        (k, p, v)
        for k, p, v in read_session(broker_address, catalog.DEAD_LETTER.name, key)
        if k.startswith(f"{key}:")
    ]
    topics[catalog.DEAD_LETTER.name] = letters
    return result, topics


def test_topics_exist_with_catalog_partitions(broker_address: str, replayed: object) -> None:
    client = admin.connect(broker_address)
    infos = {i.name: i for i in admin.describe_topics(client, [t.name for t in catalog.ALL_TOPICS])}
    client.close()
    for spec in catalog.ALL_TOPICS:
        assert infos[spec.name].partitions == spec.partitions


def test_every_event_comes_back(
    replayed: tuple[replay.ReplayResult, dict[str, list]], las_vegas: RaceData
) -> None:
    result, topics = replayed
    assert result.finished and not result.interrupted
    car = las_vegas.table("car_data")
    glitches = int((car.nGear > 8).sum())
    assert glitches > 0  # the real feed has gear glitches: they must surface as dead letters
    for table, (spec, _) in TABLE_TOPICS.items():
        expected = len(las_vegas.table(table)) - (glitches if table == "car_data" else 0)
        assert len(topics[spec.name]) == expected, spec.name
        assert result.published[spec.name] == expected
    assert len(topics[catalog.SESSION_INFO.name]) == 1
    assert len(topics[catalog.DEAD_LETTER.name]) == glitches == result.dead_letters


def test_dead_letters_carry_reason_and_payload(replayed: tuple[replay.ReplayResult, dict[str, list]]) -> None:
    _, topics = replayed
    for _key, _p, letter in topics[catalog.DEAD_LETTER.name]:
        assert letter["SourceTopic"] == catalog.CAR_TELEMETRY.name
        assert "nGear" in letter["Reason"]
        assert json.loads(letter["Payload"])["nGear"] > 8


def test_values_equal_the_source(
    replayed: tuple[replay.ReplayResult, dict[str, list]], las_vegas: RaceData
) -> None:
    _, topics = replayed
    rng = random.Random(7)
    laps = las_vegas.table("laps")
    by_lap = {(v["DriverNumber"], v["LapNumber"]): v for _, _, v in topics[catalog.LAPS.name]}
    for i in rng.sample(range(len(laps)), 100):
        row = laps.iloc[i]
        got = by_lap[(str(row.DriverNumber), int(row.LapNumber))]
        assert got["Driver"] == row.Driver
        assert got["Compound"] == (row.Compound if isinstance(row.Compound, str) else None)
        if row.LapTime == row.LapTime:  # not NaN
            assert got["LapTime"] == pytest.approx(row.LapTime)
        else:
            assert got["LapTime"] is None
        assert got["SessionTime"] == pytest.approx(row.Time)
    car = las_vegas.table("car_data")
    car = car[car.nGear <= 8]
    by_sample = {
        (v["DriverNumber"], round(v["SessionTime"], 3)): v for _, _, v in topics[catalog.CAR_TELEMETRY.name]
    }
    for i in rng.sample(range(len(car)), 300):
        row = car.iloc[i]
        got = by_sample[(str(row.DriverNumber), round(float(row.SessionTime), 3))]
        assert (got["Speed"], got["RPM"], got["nGear"], got["DRS"]) == (
            row.Speed,
            row.RPM,
            row.nGear,
            row.DRS,
        )


def test_keys_keep_each_driver_in_order(replayed: tuple[replay.ReplayResult, dict[str, list]]) -> None:
    _, topics = replayed
    for spec in (catalog.CAR_TELEMETRY, catalog.CAR_POSITION, catalog.LAPS, catalog.TIMING):
        seen: dict[str, list[int]] = defaultdict(list)
        partitions: dict[str, set[int]] = defaultdict(set)
        for key, partition, value in topics[spec.name]:
            assert key == f"{value['SessionKey']}:{value['DriverNumber']}"
            seen[key].append(value["Seq"])
            partitions[key].add(partition)
        assert len(seen) == 20
        for key, seqs in seen.items():
            assert seqs == sorted(seqs), f"{spec.name} {key} out of order"
            assert len(partitions[key]) == 1


def test_seq_is_unique_and_complete(
    replayed: tuple[replay.ReplayResult, dict[str, list]], las_vegas: RaceData
) -> None:
    _, topics = replayed
    seqs = Counter(
        v["Seq"] for name, msgs in topics.items() if name != catalog.DEAD_LETTER.name for _, _, v in msgs
    )
    letters = {json.loads(v["Payload"])["Seq"] for _, _, v in topics[catalog.DEAD_LETTER.name]}
    assert max(seqs.values()) == 1
    total = 1 + sum(len(las_vegas.table(t)) for t in TABLE_TOPICS)
    assert set(seqs) | letters == set(range(total))
