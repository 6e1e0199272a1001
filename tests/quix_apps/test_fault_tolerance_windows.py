"""Integration tier: the telemetry-window, lap-aggression and session-gap apps killed (SIGKILL)
mid-stream and restarted resume from their committed offsets, and their output topics hold each
output once and equal the offline build (issue #8; the lap app's test is in test_fault_tolerance.py).

The kill lands two seconds after a checkpoint was seen to commit, so the restarted app always
processes some inputs again; outputs it processes again are the ones the restart filter
(quix_apps/kit/emitted.py) must not send twice. How many that are is known exactly: the outputs on the
topic at the kill minus those the committed input prefix gives through the same pure functions.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from quixstreams.kafka import Producer

from stratx.bentos.lifecycle import sources
from stratx.bentos.lifecycle.feature_build import lap_feature_rows
from stratx.functions import catalog, ingest, schemas
from stratx.functions.catalog import TopicSpec
from stratx.functions.features import aggression as ag
from stratx.functions.features import telemetry as tl
from stratx.functions.features import track_gaps as tg
from stratx.functions.racedata import RaceData
from stratx.functions.settings import KafkaSettings, ReplaySettings
from stratx.quix_apps import lap_aggression, replay, telemetry_features, track_gaps
from stratx.quix_apps.kit import kafka_io, pipeline
from tests.conftest import DATA_DIR, LAS_VEGAS_2023, REPO
from tests.quix_apps.test_fault_tolerance import Tail, not_re_emitted, wait_for

pytestmark = pytest.mark.integration
DRIVERS = {"VER", "LEC"}
NO_METRICS = {"STRATX_METRICS_ENABLED": "false"}  # no fixed exporter port shared with other test runs
TELEMETRY_GROUP = "stratx-telemetry-features"  # the apps' consumer groups with the default prefix
AGGRESSION_GROUP = "stratx-lap-aggression"
GAP_GROUP = track_gaps.GAP_GROUP
Offsets = dict[tuple[str, int], int]


class Committed:
    """The committed offsets of a consumer group on some topics (read without joining the group)."""

    def __init__(self, broker: str, group: str, topics: dict[str, int]) -> None:
        """``topics``: name -> partition count."""
        self._consumer = Consumer(
            {"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False}
        )
        self._parts = [TopicPartition(name, p) for name, n in topics.items() for p in range(n)]

    def read(self) -> Offsets:
        """Offset of the next input per partition (0 before the first commit)."""
        return {
            (tp.topic, tp.partition): max(tp.offset, 0) for tp in self._consumer.committed(self._parts, 10)
        }

    def close(self) -> None:
        self._consumer.close()


def partitions(*specs: TopicSpec) -> dict[str, int]:
    return {s.name: s.partitions for s in specs}


def app_started(broker: str, group: str) -> bool:
    """A stateful app creates its state changelog topic when it starts."""
    names = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics
    return any(t.startswith("changelog__") and group in t for t in names)


def kill_mid_stream(proc: subprocess.Popen[bytes], tail: Tail, total: int, committed: Committed) -> None:
    """SIGKILL once a third of the outputs are out, 2 s after a checkpoint (every 5 s) committed:
    the inputs of those 2 s are processed again after the restart."""
    wait_for(lambda: tail.count > 0, 120, "the first output")
    wait_for(lambda: tail.count >= total // 3, 120, "a third of the outputs")
    before = committed.read()
    wait_for(lambda: committed.read() != before, 30, "a checkpoint")
    time.sleep(2.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def committed_inputs(broker: str, topics: tuple[str, ...], offsets: Offsets) -> Iterator[Any]:
    """The input messages before the committed offsets, each partition in order."""
    for topic in topics:
        for m in kafka_io.read_all(broker, topic, drain_s=0.5):
            if m.offset() < offsets[(topic, m.partition())]:
                yield m


def messages(broker: str, spec: TopicSpec) -> list[Any]:
    return list(kafka_io.read_all(broker, spec.name, drain_s=0.5))


def assert_each_output_once(values: list[dict[str, Any]], key: Callable[[dict[str, Any]], object]) -> None:
    ids = Counter(key(v) for v in values)
    duplicates = sum(ids.values()) - len(ids)
    print(f"{duplicates} duplicates of {len(values)} outputs ({len(ids)} keys)")
    assert duplicates == 0, f"{duplicates} duplicate outputs of {len(values)}"


def my_letters(broker: str, stage: str) -> list[dict[str, Any]]:
    letters = (json.loads(m.value()) for m in messages(broker, catalog.DEAD_LETTER))
    return [x for x in letters if x["Stage"] == stage]


# ------------------------------------------------------------------ telemetry windows


def car_data_only(race: RaceData) -> RaceData:
    keep = {k: v for k, v in race.tables.items() if k in ("drivers", "car_data")}
    return RaceData(race.meta, keep, race.missing)


def closed_windows(race: RaceData) -> pd.DataFrame:
    """The offline windows but each driver's last, which the stream keeps open."""
    offline = tl.offline_windows(race)
    closed = offline[offline.WindowStart < offline.groupby("DriverNumber").WindowStart.transform("max")]
    return closed.sort_values(["DriverNumber", "WindowStart"]).reset_index(drop=True)


def windows_of_committed_samples(broker: str, offsets: Offsets) -> int:
    """The windows the committed samples close, through the app's own validation and window step."""
    states: dict[str, Any] = {}
    closed = 0
    for m in committed_inputs(broker, (catalog.CAR_TELEMETRY.name,), offsets):
        key = m.key().decode()
        checked = ingest.validate(ingest.RawRecord(catalog.CAR_TELEMETRY, key, json.loads(m.value())))
        assert not isinstance(checked, ingest.Rejected)
        states[key], items = tl.window_update(states.get(key), checked.model_dump())
        closed += sum(not tl.is_rejected(item) for item in items)
    return closed


def test_telemetry_app_killed_mid_replay_resumes_and_emits_each_window_once(
    fresh_broker: str, las_vegas: RaceData, tmp_path: Path
) -> None:
    race = car_data_only(las_vegas.filter_drivers(DRIVERS))
    want = closed_windows(race)
    # lights out comes at full speed, then ~21 s of the race: the kill lands mid-replay
    options = replay.ReplayOptions(speed=250, progress=False, pace_from_lap=1)
    paced = threading.Thread(
        target=replay.run, args=(race, ReplaySettings(broker_address=fresh_broker), options), daemon=True
    )
    state = tmp_path / "state"
    procs = pipeline.start_apps(fresh_broker, state, ("telemetry",), False, tmp_path, NO_METRICS)
    tail = Tail(fresh_broker, catalog.TELEMETRY_WINDOW)
    committed = Committed(fresh_broker, TELEMETRY_GROUP, partitions(catalog.CAR_TELEMETRY))
    try:
        wait_for(lambda: app_started(fresh_broker, TELEMETRY_GROUP), 90, "the telemetry app to start")
        paced.start()
        kill_mid_stream(procs["telemetry"], tail, len(want), committed)
        assert paced.is_alive(), "the replay ended before the kill: not a mid-replay kill"
        emitted_before = len(messages(fresh_broker, catalog.TELEMETRY_WINDOW))
        offsets = committed.read()
        procs = pipeline.start_apps(fresh_broker, state, ("telemetry",), False, tmp_path, NO_METRICS)
        paced.join(120)
        wait_for(lambda: tail.count >= len(want), 120, "every window")
        time.sleep(3)  # anything more would be a duplicate: give it time to show
    finally:
        tail.close()
        committed.close()
        pipeline.stop_apps(procs)
    # each window once (key: SessionKey, DriverNumber, WindowStart), equal to the offline build
    found = messages(fresh_broker, catalog.TELEMETRY_WINDOW)
    values = [json.loads(m.value()) for m in found]
    assert_each_output_once(values, telemetry_features.window_id)
    for m, v in zip(found, values, strict=True):
        assert m.key().decode() == f"{v['SessionKey']}:{v['DriverNumber']}"
    stream = tl.windows_frame(values).sort_values(["DriverNumber", "WindowStart"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(stream, want, check_exact=False, rtol=0, atol=1e-9)
    # resumed from the committed offsets with the committed state: the samples after them were
    # processed again (none is a duplicate to the state), and the windows they closed, already on
    # the topic, were not sent again
    assert my_letters(fresh_broker, telemetry_features.STAGE) == []
    covered = windows_of_committed_samples(fresh_broker, offsets)
    reprocessed = not_re_emitted(tmp_path / "telemetry.log")
    assert 0 < covered < emitted_before < len(want)
    assert reprocessed == emitted_before - covered > 0
    print(f"killed after {emitted_before} windows, {covered} committed, {reprocessed} processed again")


# ------------------------------------------------------------------ lap aggression


def ms(date: str) -> int:
    return round(datetime.fromisoformat(date).timestamp() * 1000)


def produce_paced(
    broker: str, windows: list[dict[str, Any]], laps: list[dict[str, Any]], seconds: float
) -> None:
    """Windows and lap features to their topics in event-time order (as the upstream apps write
    them: key, message timestamp = Date, Quix's murmur2 partitioner), spread over ``seconds``."""
    records = sorted(
        [(ms(w["Date"]), catalog.TELEMETRY_WINDOW.name, w) for w in windows]
        + [(ms(lap["Date"]), catalog.FEATURES_LAP.name, lap) for lap in laps],
        key=lambda r: r[0],
    )
    chunk = 25
    pause = seconds / (len(records) / chunk)
    with Producer(broker_address=broker) as producer:
        for i, (timestamp, topic, value) in enumerate(records):
            key = f"{value['SessionKey']}:{value['DriverNumber']}"
            producer.produce(topic, json.dumps(value).encode(), key=key, timestamp=timestamp)
            if i % chunk == chunk - 1:
                producer.flush(10)
                time.sleep(pause)
        producer.flush(10)


def laps_of_committed_inputs(broker: str, offsets: Offsets) -> int:
    """The laps the committed windows and laps finalize, through the app's validation and step
    (each key's windows, then its laps: the output does not depend on the interleaving)."""
    states: dict[str, Any] = {}
    done = 0
    for m in committed_inputs(broker, (catalog.TELEMETRY_WINDOW.name, catalog.FEATURES_LAP.name), offsets):
        spec = (
            catalog.TELEMETRY_WINDOW if m.topic() == catalog.TELEMETRY_WINDOW.name else catalog.FEATURES_LAP
        )
        key = m.key().decode()
        item = lap_aggression.validated(json.loads(m.value()), key, spec)
        states[key], out = ag.aggression_step(states.get(key), item["Record"])
        done += sum(not ag.is_rejected(x) for x in out)
    return done


def test_aggression_app_killed_mid_stream_resumes_and_emits_each_lap_once(
    fresh_broker: str, las_vegas: RaceData, tmp_path: Path
) -> None:
    assert catalog.FEATURES_LAP.partitions == catalog.TELEMETRY_WINDOW.partitions  # co-partitioned
    race = las_vegas.filter_drivers(DRIVERS)
    frame = closed_windows(race)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    windows = [schemas.TelemetryWindow.model_validate(r).model_dump(mode="json") for r in rows]
    laps, rejected = lap_feature_rows(race)
    assert rejected == []
    want = ag.offline_lap_aggression(windows, laps).sort_values(["DriverNumber", "LapNumber"])
    want = want.reset_index(drop=True)
    paced = threading.Thread(target=produce_paced, args=(fresh_broker, windows, laps, 20.0), daemon=True)
    state = tmp_path / "state"
    procs = pipeline.start_apps(fresh_broker, state, ("aggression",), False, tmp_path, NO_METRICS)
    tail = Tail(fresh_broker, catalog.LAP_AGGRESSION)
    committed = Committed(
        fresh_broker, AGGRESSION_GROUP, partitions(catalog.TELEMETRY_WINDOW, catalog.FEATURES_LAP)
    )
    try:
        wait_for(lambda: app_started(fresh_broker, AGGRESSION_GROUP), 90, "the aggression app to start")
        paced.start()
        kill_mid_stream(procs["aggression"], tail, len(want), committed)
        assert paced.is_alive(), "the inputs were all sent before the kill: not a mid-stream kill"
        emitted_before = len(messages(fresh_broker, catalog.LAP_AGGRESSION))
        offsets = committed.read()
        procs = pipeline.start_apps(fresh_broker, state, ("aggression",), False, tmp_path, NO_METRICS)
        paced.join(120)
        wait_for(lambda: tail.count >= len(want), 120, "every lap")
        time.sleep(3)  # anything more would be a duplicate: give it time to show
    finally:
        tail.close()
        committed.close()
        pipeline.stop_apps(procs)
    # each lap once (key: SessionKey, DriverNumber, LapNumber), equal to the offline build
    found = messages(fresh_broker, catalog.LAP_AGGRESSION)
    values = [json.loads(m.value()) for m in found]
    assert_each_output_once(values, lap_aggression.lap_id)
    per_key: dict[str, list[int]] = defaultdict(list)
    for m, v in zip(found, values, strict=True):
        assert m.key().decode() == f"{v['SessionKey']}:{v['DriverNumber']}"
        per_key[m.key().decode()].append(v["LapNumber"])
    assert all(numbers == sorted(numbers) for numbers in per_key.values())  # in lap order per driver
    stream = ag.aggression_frame(values).sort_values(["DriverNumber", "LapNumber"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(stream, want, check_exact=True)
    # resumed from the committed offsets with the committed state (see the telemetry test)
    assert my_letters(fresh_broker, lap_aggression.STAGE) == []
    covered = laps_of_committed_inputs(fresh_broker, offsets)
    reprocessed = not_re_emitted(tmp_path / "aggression.log")
    assert 0 < covered < emitted_before < len(want)
    assert reprocessed == emitted_before - covered > 0
    print(f"killed after {emitted_before} laps, {covered} committed, {reprocessed} processed again")


# ------------------------------------------------------------------ session gaps

GAP_DRIVERS = ("1", "11", "16")  # Verstappen, Perez, Leclerc


def gap_session(race: RaceData) -> tg.SessionTrack:
    track = tg.load_track_map(DATA_DIR / "circuits", race.meta.circuit)
    assert track is not None
    full = tg.session_track(race, track)
    return tg.SessionTrack(full.session_key, track, full.start_time, GAP_DRIVERS)


def run_gap_app(broker: str, state_dir: str) -> None:
    """The session gap app in its own process (SIGKILL-able), as ``stratx features run --app gaps``
    runs it but with the staleness rule off: the paced points arrive far apart in event time."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    session = gap_session(sources.load_bundled(LAS_VEGAS_2023))
    settings = KafkaSettings(broker_address=broker)
    tracks = {session.session_key: session}
    app = track_gaps.build_gap_app(settings, tracks, stale_s=None, state_dir=Path(state_dir))
    app.run()


def start_gap_app(broker: str, state: Path, log_dir: Path) -> dict[str, subprocess.Popen[bytes]]:
    code = f"from {__name__} import run_gap_app; run_gap_app({broker!r}, {str(state)!r})"
    with (log_dir / "gaps.log").open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    return {"gaps": proc}


def internal_topic(broker: str, prefix: str, group: str) -> tuple[str, int] | None:
    """An app's internal topic (``repartition__<group>--...``) and its partition count, once created."""
    topics = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics
    found = [(n, len(t.partitions)) for n, t in topics.items() if n.startswith(prefix) and group in n]
    return found[0] if found else None


def produce_points(broker: str, points: list[dict[str, Any]], seconds: float) -> None:
    """Progress points in event-time order, as the progress app writes them, spread over ``seconds``."""
    chunk = 50
    pause = seconds / (len(points) / chunk)
    with Producer(broker_address=broker) as producer:
        for i, p in enumerate(points):
            key = f"{p['SessionKey']}:{p['DriverNumber']}"
            timestamp = ms(p["Date"]) if p["Date"] is not None else None
            producer.produce(catalog.PROGRESS.name, json.dumps(p).encode(), key=key, timestamp=timestamp)
            if i % chunk == chunk - 1:
                producer.flush(10)
                time.sleep(pause)
        producer.flush(10)


def rows_of_committed_points(broker: str, topic: str, offsets: Offsets, session: tg.SessionTrack) -> int:
    """The gap rows the committed points of the session topic give, through the app's gap step."""
    state: dict[str, Any] | None = None
    rows = 0
    for m in committed_inputs(broker, (topic,), offsets):
        point = schemas.CarProgress.model_validate_json(m.value()).model_dump(mode="json")
        state, items = tg.gap_step(state, point, session, None)
        rows += sum(not tg.is_rejected(item) for item in items)
    return rows


def test_gap_app_killed_mid_stream_resumes_and_emits_each_row_once(
    fresh_broker: str, las_vegas: RaceData, tmp_path: Path
) -> None:
    session = gap_session(las_vegas)
    race = las_vegas.filter_drivers({"VER", "PER", "LEC"})
    assert set(race.table("drivers").DriverNumber) == set(GAP_DRIVERS)
    points, _ = tg.offline_progress(tg.position_samples(race), session)
    merged = [dict(p) for p in tg.merged_points(points)]
    want, reasons = tg.run_gaps(merged, session, stale_s=None)
    assert reasons == []
    paced = threading.Thread(target=produce_points, args=(fresh_broker, merged, 20.0), daemon=True)
    state = tmp_path / "state"
    procs = start_gap_app(fresh_broker, state, tmp_path)
    tail = Tail(fresh_broker, catalog.TRACK_GAP)
    committed = Committed(fresh_broker, GAP_GROUP, partitions(catalog.PROGRESS))
    try:
        wait_for(lambda: app_started(fresh_broker, GAP_GROUP), 90, "the gap app to start")
        wait_for(lambda: internal_topic(fresh_broker, "repartition__", GAP_GROUP), 30, "its session topic")
        repartition = internal_topic(fresh_broker, "repartition__", GAP_GROUP)
        assert repartition is not None
        paced.start()
        kill_mid_stream(procs["gaps"], tail, len(want), committed)
        emitted_before = len(messages(fresh_broker, catalog.TRACK_GAP))
        with_session = Committed(fresh_broker, GAP_GROUP, dict([repartition]))
        offsets = with_session.read()
        with_session.close()
        procs = start_gap_app(fresh_broker, state, tmp_path)
        paced.join(120)
        wait_for(lambda: tail.count >= len(want), 120, "every row")
        time.sleep(3)  # anything more would be a duplicate: give it time to show
    finally:
        tail.close()
        committed.close()
        pipeline.stop_apps(procs)
    # each row once (key: SessionKey, DriverNumber, SessionTime), equal to the offline build
    values = [json.loads(m.value()) for m in messages(fresh_broker, catalog.TRACK_GAP)]
    assert_each_output_once(values, track_gaps.point_id)
    got = {track_gaps.point_id(v): v for v in values}
    assert got.keys() == {track_gaps.point_id(r) for r in want}
    for row in want:
        g = got[track_gaps.point_id(row)]
        for field, value in row.items():
            if isinstance(value, float) and g[field] is not None:
                assert math.isclose(g[field], value, rel_tol=0, abs_tol=1e-9), (row["SessionTime"], field)
            else:
                assert g[field] == value, (row["SessionTime"], field)
    # resumed from the committed offsets of the session (re-partition) topic with the committed
    # state; the points re-sent to that topic by the restart are dead-lettered as duplicates
    covered = rows_of_committed_points(fresh_broker, repartition[0], offsets, session)
    reprocessed = not_re_emitted(tmp_path / "gaps.log")
    assert 0 < covered < emitted_before < len(want)
    assert reprocessed == emitted_before - covered > 0
    letters = my_letters(fresh_broker, track_gaps.STAGE)
    assert {x["Reason"].split(":")[0] for x in letters} <= {"duplicate", "out of order", "late"}
    print(
        f"killed after {emitted_before} rows, {covered} committed, {reprocessed} processed again, "
        f"{len(letters)} points re-sent to the session topic dead-lettered"
    )
