"""Idempotency keys of the restart filter (quix_apps/kit/emitted.py) in the telemetry-window,
lap-aggression and track-gap apps: one key per output, and an output read back from its topic (as
Quix writes it, with orjson) is recognized when the restarted app produces it again."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from quixstreams import Application
from quixstreams.context import MessageContext
from quixstreams.models import Topic, TopicConfig
from quixstreams.utils.json import dumps as quix_dumps

from stratx.bentos.lifecycle.feature_build import lap_feature_rows
from stratx.functions import catalog, ingest
from stratx.functions.features import aggression as ag
from stratx.functions.features import telemetry as tl
from stratx.functions.features import track_gaps as tg
from stratx.functions.racedata import RaceData
from stratx.quix_apps import lap_aggression, telemetry_features, track_gaps
from stratx.quix_apps.kit import emitted
from stratx.quix_apps.kit.emitted import Emitted
from tests.conftest import DATA_DIR

DRIVERS = {"VER", "LEC"}
Key = Callable[[dict[str, Any]], object]


def read_back(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as a restarted app reads them from its output topic."""
    return [json.loads(quix_dumps(r)) for r in records]


def assert_each_output_recognized_once(outputs: list[dict[str, Any]], key: Key) -> None:
    ids = Counter(key(o) for o in outputs)
    assert len(outputs) > 50 and max(ids.values()) == 1  # one key per output
    seen = Emitted(read_back(outputs), key)
    assert [o for o in outputs if seen(o)] == []  # processed again after a kill: none sent again
    assert seen.suppressed == len(outputs)
    assert all(seen(o) for o in outputs[:3])  # each record on the topic absorbs one repeat only
    changed = Emitted(read_back(outputs[:1]), key)
    assert changed({**outputs[0], "SessionKey": outputs[0]["SessionKey"] + 1}) is True


@pytest.fixture(scope="module")
def race(las_vegas: RaceData) -> RaceData:
    return las_vegas.filter_drivers(DRIVERS)


@pytest.fixture(scope="module")
def windows(race: RaceData) -> list[dict[str, Any]]:
    """Closed windows as the telemetry app makes them (validated samples; JSON state between samples)."""
    states: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    for record in tl.car_records(race):
        checked = ingest.validate(record)
        if isinstance(checked, ingest.Rejected):
            continue
        state, items = tl.window_update(states.get(record.key), checked.model_dump())
        states[record.key] = json.loads(json.dumps(state))
        out += [item for item in items if not tl.is_rejected(item)]
    return out


def test_window_id_is_the_driver_window(windows: list[dict[str, Any]]) -> None:
    w = windows[0]
    assert telemetry_features.window_id(w) == (w["SessionKey"], w["DriverNumber"], w["WindowStart"])
    assert_each_output_recognized_once(windows, telemetry_features.window_id)


def test_lap_id_is_the_driver_lap(windows: list[dict[str, Any]], race: RaceData) -> None:
    laps, rejected = lap_feature_rows(race)
    assert rejected == []
    states: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    for item in [*read_back(windows), *laps]:  # each driver's windows and laps, each in its own order
        states[item["DriverNumber"]], out = ag.aggression_step(states.get(item["DriverNumber"]), item)
        records += [
            ag.LapAggression.model_validate(x).model_dump(mode="json") for x in out if not ag.is_rejected(x)
        ]
    r = records[0]
    assert lap_aggression.lap_id(r) == (r["SessionKey"], r["DriverNumber"], r["LapNumber"])
    assert_each_output_recognized_once(records, lap_aggression.lap_id)


def test_point_id_is_the_driver_time_of_a_progress_point_and_a_gap_row(race: RaceData) -> None:
    track = tg.load_track_map(DATA_DIR / "circuits", race.meta.circuit)
    assert track is not None
    session = tg.session_track(race, track)
    points, _ = tg.offline_progress(tg.position_samples(race), session)
    merged = [dict(p) for p in tg.merged_points(points)]
    rows, _ = tg.run_gaps(merged, session)
    p = merged[0]
    assert track_gaps.point_id(p) == (p["SessionKey"], p["DriverNumber"], p["SessionTime"])
    assert_each_output_recognized_once(merged, track_gaps.point_id)
    assert_each_output_recognized_once(rows, track_gaps.point_id)


def test_restart_filter_reads_the_topic_once_and_logs_the_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[str, str, object]] = []
    record = {"SessionKey": 9189, "DriverNumber": "1", "LapNumber": 3, "Samples": 10}

    def read_topic(address: str, topic: str, auth: object = None) -> list[dict[str, Any]]:
        calls.append((address, topic, auth))
        return [record]

    monkeypatch.setattr(emitted, "read_topic", read_topic)
    topic = catalog.LAP_AGGRESSION.name
    with caplog.at_level(logging.INFO, logger=emitted.__name__):
        seen = emitted.restart_filter("127.0.0.1:9", topic, lap_aggression.lap_id, auth="the app's")
    assert calls == [("127.0.0.1:9", topic, "the app's")]  # TLS / SASL as the app's other clients
    assert f"restart filter: 1 records already on {topic}" in caplog.text
    assert seen(dict(record, Samples=11)) is True  # the whole value is compared
    assert seen(dict(record)) is False


# ------------------------------------------------------------------ the telemetry app's dataframe
Wire = Callable[[list[dict[str, Any]]], tuple[Any, list[dict[str, Any]]]]


@pytest.fixture
def wire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Wire]:
    """The telemetry pipeline on a broker-less Application, its restart filter holding the given
    records (what the killed app sent); produced messages are recorded."""
    managers: list[Any] = []

    def build(on_topic: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
        app = Application(
            broker_address="127.0.0.1:9",
            consumer_group="unit",
            use_changelog_topics=False,
            auto_create_topics=False,
            state_dir=tmp_path,
            loglevel=logging.WARNING,
        )
        config = TopicConfig(num_partitions=1, replication_factor=1, extra_config={"retention.ms": "1000"})
        topics = []
        for name in (catalog.CAR_TELEMETRY.name, catalog.TELEMETRY_WINDOW.name, catalog.DEAD_LETTER.name):
            topic = Topic(name, create_config=config, key_deserializer="str", key_serializer="str")
            topic.broker_config = config
            topics.append(topic)
        filter_ = Emitted(on_topic, telemetry_features.window_id)
        sdf = telemetry_features.build_pipeline(
            app.dataframe(topics[0]), topics[1], topics[2], emitted=filter_
        )
        context = sdf.processing_context
        context.state_manager.on_partition_assign(stream_id=sdf.stream_id, partition=0, committed_offsets={})
        context.init_checkpoint()
        managers.append(context.state_manager)
        produced: list[dict[str, Any]] = []
        monkeypatch.setattr(context.producer, "produce", lambda **kw: produced.append(kw))
        return sdf, produced

    yield build
    for manager in managers:
        manager.close()


def test_the_telemetry_app_does_not_send_a_window_already_on_its_topic(
    wire: Wire, race: RaceData, windows: list[dict[str, Any]]
) -> None:
    records = list(tl.car_records(race))
    first = records[0].payload["DriverNumber"]
    mine = [r for r in records if r.payload["DriverNumber"] == first][:600]
    driver_windows = [w for w in windows if w["DriverNumber"] == first]
    sdf, produced = wire(read_back(driver_windows[:3]))
    ctx = MessageContext(topic=catalog.CAR_TELEMETRY.name, partition=0, offset=0, size=0)
    for value in (orjson.loads(ingest.encode(r)) for r in mine):
        sdf.test(value, key=f"{value['SessionKey']}:{value['DriverNumber']}", timestamp=1, ctx=ctx)
    sent = [orjson.loads(m["value"]) for m in produced if m["topic"] == catalog.TELEMETRY_WINDOW.name]
    assert len(sent) > 5
    assert sent == read_back(driver_windows[3 : 3 + len(sent)])  # the three on the topic: not again
