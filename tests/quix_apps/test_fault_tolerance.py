"""Integration tier: fault tolerance of the streaming apps on the real broker (issue #8).

* an app killed (SIGKILL) mid-replay and restarted resumes from its committed offsets, and the
  downstream topic holds each output once and nothing is missing against the offline build;
* the same race replayed twice into fresh brokers gives identical feature outputs;
* poison records (garbage bytes, wrong schema, a huge payload) between valid ones are
  dead-lettered with the reason and the rest of the partition is processed.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from stratx.functions import catalog, ingest, schemas
from stratx.functions.features.laps import build_lap_features
from stratx.functions.racedata import RaceData
from stratx.functions.settings import FeatureAppSettings, ReplaySettings
from stratx.quix_apps import lap_features, replay
from stratx.quix_apps.kit import admin, kafka_io, pipeline
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration
DRIVERS = {"VER", "LEC", "PER", "SAI", "HAM", "NOR"}
GROUP = "stratx-lap-features"  # the lap app's consumer group with the default prefix
NO_METRICS = {"STRATX_METRICS_ENABLED": "false"}  # no fixed exporter port shared with other test runs


def laps_only(race: RaceData) -> RaceData:
    keep = {k: v for k, v in race.tables.items() if k not in ("car_data", "pos_data")}
    return RaceData(race.meta, keep, race.missing)


def offline_features(race: RaceData) -> dict[tuple[str, int], dict[str, Any]]:
    events = [json.loads(ingest.encode(r)) for r in ingest.table_records(race, "laps")]
    rows, rejected = build_lap_features(events)
    assert rejected == []
    return {
        (r["DriverNumber"], r["LapNumber"]): schemas.LapFeatures.model_validate(r).model_dump(mode="json")
        for r in rows
    }


def feature_messages(broker: str, topic: str = catalog.FEATURES_LAP.name) -> list[tuple[bytes, bytes]]:
    return [(m.key(), m.value()) for m in kafka_io.read_all(broker, topic, drain_s=0.5)]


def committed_offset(broker: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Tail:
    """Counts the messages of a topic as they arrive (one consumer, all partitions, from the start)."""

    def __init__(self, broker: str, spec: catalog.TopicSpec) -> None:
        self.count = 0
        self._consumer = Consumer({"bootstrap.servers": broker, "group.id": f"tail-{time.time_ns()}"})
        self._consumer.assign(
            [TopicPartition(spec.name, p, OFFSET_BEGINNING) for p in range(spec.partitions)]
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.count += sum(1 for m in self._consumer.consume(1000, timeout=0.1) if not m.error())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def app_started(broker: str) -> bool:
    """The lap app creates its state changelog topic when it starts."""
    names = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics
    return any(t.startswith("changelog__") and "lap-features" in t for t in names)


def not_re_emitted(log: Path, topic: str | None = None) -> int:
    """Outputs the restarted app processed again and did not send (quix_apps/kit/emitted.py logs each),
    to ``topic`` only if given (the lap app writes each output to two topics)."""
    mark = f"already on {topic}, not re-emitted" if topic else "not re-emitted"
    return sum(mark in line for line in log.read_text().splitlines())


def assert_equal_features(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for field, w in want.items():
        g = got[field]
        if isinstance(w, float) and g is not None:
            assert math.isclose(g, w, rel_tol=1e-12, abs_tol=1e-12), (field, want["LapNumber"])
        else:
            assert g == w, (field, want["DriverNumber"], want["LapNumber"])


def test_lap_app_killed_mid_replay_resumes_and_emits_each_output_once(
    fresh_broker: str, las_vegas: RaceData, tmp_path: Path
) -> None:
    race = laps_only(las_vegas.filter_drivers(DRIVERS))
    want = offline_features(race)
    options = replay.ReplayOptions(speed=250, progress=False)  # ~20 s of laps: the kill lands mid-replay
    paced = threading.Thread(
        target=replay.run, args=(race, ReplaySettings(broker_address=fresh_broker), options), daemon=True
    )
    state = tmp_path / "state"
    procs = pipeline.start_apps(fresh_broker, state, ("lap",), False, tmp_path, NO_METRICS)
    tail = Tail(fresh_broker, catalog.FEATURES_LAP)
    try:
        wait_for(lambda: app_started(fresh_broker), 90, "the lap app to start")
        paced.start()
        wait_for(lambda: tail.count > 0, 120, "the first feature")
        first = time.monotonic()  # a checkpoint (every 5 s) commits offsets before the kill
        wait_for(
            lambda: tail.count >= len(want) // 3 and time.monotonic() - first > 6,
            120,
            "a third of the features",
        )
        procs["lap"].send_signal(signal.SIGKILL)
        procs["lap"].wait(10)
        assert paced.is_alive(), "the replay ended before the kill: not a mid-replay kill"
        emitted_before = len(feature_messages(fresh_broker))
        committed = committed_offset(fresh_broker, GROUP, catalog.LAPS.name)
        procs = pipeline.start_apps(fresh_broker, state, ("lap",), False, tmp_path, NO_METRICS)
        paced.join(120)
        wait_for(lambda: tail.count >= len(want), 120, "every feature")
        time.sleep(3)  # anything more would be a duplicate: give it time to show
    finally:
        tail.close()
        pipeline.stop_apps(procs)
    # resumed from the committed offset: exactly the laps after it were processed again (one
    # feature per lap), and their outputs, already on the topic, were not sent again
    assert 0 < committed <= emitted_before < len(want)
    reprocessed = not_re_emitted(tmp_path / "lap.log", catalog.FEATURES_LAP.name)
    assert reprocessed == emitted_before - committed
    # each output once (key: SessionKey, DriverNumber, LapNumber) and nothing missing vs the offline build
    messages = feature_messages(fresh_broker)
    values = [json.loads(v) for _, v in messages]
    ids = Counter(lap_features.lap_id(v) for v in values)
    assert max(ids.values()) == 1, f"{sum(ids.values()) - len(ids)} duplicate outputs"
    assert len(values) == len(want)
    for (key, _), value in zip(messages, values, strict=True):
        assert key.decode() == f"{value['SessionKey']}:{value['DriverNumber']}"
        assert_equal_features(value, want[(value["DriverNumber"], value["LapNumber"])])
    # the session-keyed copy (the prediction app's input): the same records, each once, in lap order
    by_session = [
        (k.decode(), json.loads(v))
        for k, v in feature_messages(fresh_broker, catalog.FEATURES_LAP_BY_SESSION.name)
    ]
    assert sorted(lap_features.lap_id(v) for _, v in by_session) == sorted(ids)
    assert {k for k, _ in by_session} == {str(v["SessionKey"]) for v in values}
    assert [v["SessionTime"] for _, v in by_session] == sorted(v["SessionTime"] for _, v in by_session)
    assert not_re_emitted(tmp_path / "lap.log", catalog.FEATURES_LAP_BY_SESSION.name) == reprocessed
    print(f"killed after {emitted_before} outputs, committed {committed}, re-processed {reprocessed}")


POISON = {
    "garbage": b"\x00\xff\xfe not json at all \x81",
    "array": b"[1, 2, 3]",
    "wrong_schema": json.dumps({"SessionKey": 9189, "DriverNumber": "1", "LapNumber": "one"}).encode(),
    "huge": json.dumps({"SessionKey": 9189, "DriverNumber": "1", "Junk": "x" * 2_000_000}).encode(),
}


def test_poison_records_are_dead_lettered_and_the_partition_goes_on(
    fresh_broker: str, las_vegas: RaceData, tmp_path: Path
) -> None:
    race = laps_only(las_vegas.filter_drivers({"VER", "LEC", "HAM"}))
    want = offline_features(race)
    records = list(ingest.table_records(race, "laps"))
    half = len(records) // 2
    producer = Producer({"bootstrap.servers": fresh_broker, "message.max.bytes": 4_000_000})
    for r in records[:half]:
        producer.produce(catalog.LAPS.name, key=r.key, value=ingest.encode(r))
    for name, value in POISON.items():  # the laps topic has one partition: all between valid laps
        producer.produce(catalog.LAPS.name, key=f"9189:{name}".encode(), value=value)
    for r in records[half:]:
        producer.produce(catalog.LAPS.name, key=r.key, value=ingest.encode(r))
    assert producer.flush(30) == 0
    settings = FeatureAppSettings(broker_address=fresh_broker, state_dir=tmp_path / "state", feast_push=False)
    lap_features.build_app(settings).run(timeout=8.0)

    got = {
        (v["DriverNumber"], v["LapNumber"]): v
        for v in (json.loads(m) for _, m in feature_messages(fresh_broker))
    }
    assert got.keys() == want.keys()  # every valid lap after the poison was processed too
    for k, w in want.items():
        assert_equal_features(got[k], w)
    letters = [json.loads(m.value()) for m in kafka_io.read_all(fresh_broker, catalog.DEAD_LETTER.name)]
    mine = [x for x in letters if x["Stage"] == lap_features.STAGE]  # in the order they were produced
    assert [x["Reason"].split(":")[0] for x in mine] == [
        "not JSON",
        "not a JSON object",
        "Lap schema",
        "Lap schema",
    ]
    assert mine[1]["Payload"] == json.dumps({"raw": "[1, 2, 3]"}, sort_keys=True)
    assert json.loads(mine[2]["Payload"])["LapNumber"] == "one"
    # the huge record's dead letter carries its head and says it was cut (it must fit the broker)
    assert mine[3]["Payload"].endswith(f"...[truncated: {len(POISON['huge'])} characters]")
    assert len(mine[3]["Payload"]) < schemas.DEAD_LETTER_PAYLOAD_MAX + 100


# wall-clock fields, left out of the comparison: the dead letter's rejection time (the feature
# records carry only event times: Date is the lap's or window's UTC end, from the data)
WALL_CLOCK = {catalog.DEAD_LETTER.name: frozenset({"Date"})}
COMPARED = (catalog.FEATURES_LAP, catalog.TELEMETRY_WINDOW, catalog.LAP_AGGRESSION, catalog.DEAD_LETTER)


def replay_through_feature_apps(race: RaceData, state: Path) -> dict[str, dict[str, list[str]]]:
    """A fresh broker: replay the race, run the lap, telemetry and aggression apps until idle;
    per topic, per message key, the values in partition order (canonical JSON, wall clock left out)."""
    from stratx.quix_apps import lap_aggression, telemetry_features

    with EmbeddedBroker("127.0.0.1", free_port(), state / "tansu.log") as broker:
        client = admin.connect(broker.address)
        admin.create_topics(client)
        client.close()
        replay.run(race, ReplaySettings(broker_address=broker.address), replay.ReplayOptions(progress=False))
        settings = FeatureAppSettings(broker_address=broker.address, state_dir=state / "s", feast_push=False)
        lap_features.build_app(settings).run(timeout=5.0)
        telemetry_features.build_app(settings, state_dir=state / "s")[0].run(timeout=5.0)
        lap_aggression.build_app(settings, state_dir=state / "s")[0].run(timeout=5.0)
        out: dict[str, dict[str, list[str]]] = {}
        for spec in COMPARED:
            per_key: dict[str, list[str]] = {}
            for m in kafka_io.read_all(broker.address, spec.name):
                value = json.loads(m.value())
                value = {k: v for k, v in value.items() if k not in WALL_CLOCK.get(spec.name, ())}
                per_key.setdefault(m.key().decode(), []).append(json.dumps(value, sort_keys=True))
            out[spec.name] = per_key
        return out


def test_a_replay_run_twice_gives_identical_feature_outputs(las_vegas: RaceData, tmp_path: Path) -> None:
    race = las_vegas.filter_drivers({"VER", "LEC"})
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = replay_through_feature_apps(race, tmp_path / "one")
    second = replay_through_feature_apps(race, tmp_path / "two")
    sizes = {t: sum(map(len, keys.values())) for t, keys in first.items()}
    print(sizes)
    assert sizes[catalog.FEATURES_LAP.name] == len(race.table("laps"))
    assert sizes[catalog.TELEMETRY_WINDOW.name] > 0 and sizes[catalog.LAP_AGGRESSION.name] > 0
    for spec in COMPARED:
        assert first[spec.name].keys() == second[spec.name].keys(), spec.name
        for key, values in first[spec.name].items():
            assert values == second[spec.name][key], (spec.name, key)
