"""Feature-app throughput and Feast online-read latency vs raw references on the same embedded broker.

    python bench/features_throughput.py [--race data/races/2023_las_vegas_grand_prix_race]

One embedded Tansu broker runs for the whole benchmark:

1. ``replay.run`` publishes the whole race at ``speed=0`` (timed and reported, but not part of
   the apps' numbers).
2. The input topics (``stratx.raw.car_telemetry``, ``stratx.raw.laps``) are read back once with
   ``kafka_io.read_all``. Reference: those exact messages (partition, key, value, timestamp)
   are produced by a bare confluent-kafka ``Producer`` (the replay's producer config) to a fresh
   ``bench.``-prefixed copy of the topic, then read back by a bare ``Consumer``:
   round trip = messages / (produce s + consume s).
3. Measured: the telemetry-features app and the lap-features app (without and with the Feast
   push), each with a fresh consumer group and state dir, run until idle. The processing time
   ("busy") runs from the partition assignment to the last processed message (Quix
   ``on_message_processed``), like the reference's assign -> last consume; the group join and
   first -> last processed are reported apart.
4. Feast online read latency of ``lap_time_v1`` for one driver vs a bare sqlite3 SELECT on the
   online store's file.

Correctness checks (the run fails otherwise): windows produced == ``offline_windows`` minus each
driver's final open window; features produced == pushes == laps; no dead letters from the apps;
every input message processed. JSON to bench/results/features_throughput.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from quixstreams import Application
from replay_throughput import (
    REFERENCE_PRODUCER_CONFIG,
    REPO_ROOT,
    peak_rss_bytes,
    resolve_race,
    result_header,
)
from tqdm import tqdm

from stratx.bentos.lifecycle.sources import load_bundled
from stratx.functions import catalog
from stratx.functions.catalog import TopicSpec
from stratx.functions.features import telemetry as tl
from stratx.functions.racedata import RaceData
from stratx.functions.settings import FeatureAppSettings, KafkaSettings, ReplaySettings
from stratx.quix_apps import lap_features, replay, telemetry_features
from stratx.quix_apps.kit import admin, feature_store, kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

DEFAULT_RACE = Path("data/races/2023_las_vegas_grand_prix_race")
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "features_throughput.json"
SERVICE = "lap_time_v1"
PROGRESS_EVERY = 5000


# ---------------------------------------------------------------- input capture
@dataclasses.dataclass
class Captured:
    """The messages on an input topic as the apps will consume them."""

    spec: TopicSpec
    messages: list[tuple[int, bytes | None, bytes | None, int]]  # partition, key, value, timestamp ms
    seconds: float

    @property
    def count(self) -> int:
        return len(self.messages)

    @property
    def value_bytes(self) -> int:
        return sum(len(m[2] or b"") for m in self.messages)

    @property
    def key_bytes(self) -> int:
        return sum(len(m[1] or b"") for m in self.messages)


def capture(address: str, spec: TopicSpec) -> Captured:
    messages = []
    started = time.perf_counter()
    with tqdm(desc=f"read_all {spec.name}", unit="msg", unit_scale=True, mininterval=0.5) as bar:
        for msg in kafka_io.read_all(address, spec.name, timeout_s=30):
            messages.append((msg.partition(), msg.key(), msg.value(), msg.timestamp()[1]))
            if len(messages) % PROGRESS_EVERY == 0:
                bar.update(PROGRESS_EVERY)
        bar.update(len(messages) - bar.n)
    return Captured(spec, messages, time.perf_counter() - started)


# ---------------------------------------------------------------- reference: raw confluent-kafka
def raw_round_trip(address: str, client: Any, captured: Captured, prefix: str) -> dict[str, Any]:
    """Produce ``captured`` to a fresh copy of its topic (same partitions), then consume it back."""
    spec = dataclasses.replace(captured.spec, name=prefix + captured.spec.name)
    warmup = dataclasses.replace(catalog.DEAD_LETTER, name=prefix + captured.spec.name + ".warmup")
    admin.create_topics(client, [spec, warmup])
    n = captured.count

    started = time.perf_counter()
    producer = Producer({"bootstrap.servers": address, **REFERENCE_PRODUCER_CONFIG})
    producer.produce(warmup.name, b"warmup")
    if producer.flush(30):
        raise RuntimeError("raw producer: warm-up message not delivered")
    producer.list_topics(timeout=10)
    startup_s = time.perf_counter() - started
    produce, poll, topic = producer.produce, producer.poll, spec.name
    with tqdm(total=n, desc=f"raw produce {topic}", unit="msg", unit_scale=True, mininterval=0.5) as bar:
        started = time.perf_counter()
        for i, (partition, key, value, ts) in enumerate(captured.messages, start=1):
            while True:
                try:
                    produce(topic, value, key, partition=partition, timestamp=ts)
                    break
                except BufferError:
                    poll(0.05)
            if i % 1000 == 0:
                poll(0)
                if i % PROGRESS_EVERY == 0:
                    bar.update(PROGRESS_EVERY)
        left = producer.flush(60)
        produce_s = time.perf_counter() - started
        bar.update(n - bar.n)
    if left:
        raise RuntimeError(f"raw producer: {left} messages not delivered after flush")

    consumer = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": f"stratx-bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    got = size = 0
    try:
        parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        with tqdm(total=n, desc=f"raw consume {topic}", unit="msg", unit_scale=True, mininterval=0.5) as bar:
            started = time.perf_counter()
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            idle = 0.0
            while got < n:
                # ask for no more than what is left: consume() blocks until it has num_messages
                # or the timeout passes, so a larger request would add up to 0.5 s to the end
                batch = consumer.consume(min(10_000, n - got), timeout=0.5)
                if not batch:
                    idle += 0.5
                    if idle > 30:
                        raise TimeoutError(f"raw consume of {topic} stalled at {got}/{n}")
                    continue
                idle = 0.0
                for msg in batch:
                    if msg.error():
                        raise KafkaException(msg.error())
                    size += len(msg.value() or b"")
                got += len(batch)
                bar.update(len(batch))
            consume_s = time.perf_counter() - started
        extra = [m for m in consumer.consume(10_000, timeout=1.0) if not m.error()]
    finally:
        consumer.close()
    if extra or got != n or size != captured.value_bytes:
        raise AssertionError(f"raw consume of {topic}: {got} (+{len(extra)}) msgs / {size} B, expected {n}")
    return {
        "topic": topic,
        "partitions": spec.partitions,
        "messages": n,
        "value_bytes": captured.value_bytes,
        "producer_startup_s": startup_s,
        "produce_s": produce_s,
        "consume_s": consume_s,
        "round_trip_s": produce_s + consume_s,
        "produce_msg_per_s": n / produce_s,
        "consume_msg_per_s": n / consume_s,
        "round_trip_msg_per_s": n / (produce_s + consume_s),
    }


# ---------------------------------------------------------------- measured: the apps
class ProcessedTracker:
    """Quix ``on_message_processed`` callback: per-topic counts, first and last processing time."""

    def __init__(self, bar: tqdm[Any]) -> None:
        self.counts: Counter[str] = Counter()
        self.n = 0
        self.assigned: float | None = None  # first non-empty partition assignment
        self.first: float | None = None
        self.last: float | None = None
        self.bar = bar

    def __call__(self, topic: str, partition: int, offset: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.counts[topic] += 1
        self.n += 1
        if self.n % PROGRESS_EVERY == 0:
            self.bar.update(PROGRESS_EVERY)


def run_app(app: Application, name: str, expected_inputs: int, idle_s: float) -> dict[str, Any]:
    """Run ``app`` until ``idle_s`` without input; times from the assignment and processed hooks.

    The build_app functions do not take ``Application(on_message_processed=...)``, so the same
    hook is set on the built app; its partition-assignment callback is wrapped to note when the
    group join ends (Quix subscribes with ``on_assign=self._on_assign`` when ``run`` starts).
    """
    if not (hasattr(app, "_on_message_processed") and hasattr(app, "_on_assign")):
        raise RuntimeError("quixstreams.Application lacks the _on_message_processed/_on_assign hooks")
    with tqdm(total=expected_inputs, desc=name, unit="msg", unit_scale=True, mininterval=0.5) as bar:
        tracker = ProcessedTracker(bar)
        on_assign = app._on_assign

        def assigned(consumer: Any, partitions: list[Any]) -> None:
            if partitions and tracker.assigned is None:
                tracker.assigned = time.perf_counter()
            on_assign(consumer, partitions)

        app._on_message_processed = tracker
        app._on_assign = assigned  # type: ignore[method-assign]
        started = time.perf_counter()
        app.run(timeout=idle_s, collect=False)
        ended = time.perf_counter()
        bar.update(tracker.n - bar.n)
    if tracker.first is None or tracker.last is None or tracker.assigned is None:
        raise AssertionError(f"{name}: processed no message")
    wall = ended - started
    return {
        "processed_per_topic": dict(tracker.counts),
        "processed_total": tracker.n,
        "wall_s": wall,
        "idle_timeout_s": idle_s,
        "join_s": tracker.assigned - started,  # run() -> partitions assigned (group join)
        "first_fetch_s": tracker.first - tracker.assigned,  # assigned -> first processed
        # assigned -> last processed: the raw reference's consume is timed assign -> last message too
        "busy_s": tracker.last - tracker.assigned,
        "span_s": tracker.last - tracker.first,  # first -> last processed message
        "tail_s": ended - tracker.last - idle_s,  # final commit/flush + up to one poll period
        "wall_minus_idle_s": wall - idle_s,
    }


def telemetry_app(address: str, tmp: Path, car: Captured, idle_s: float) -> dict[str, Any]:
    group = f"bench-telemetry-{uuid.uuid4().hex[:8]}"
    app, _ = telemetry_features.build_app(
        KafkaSettings(broker_address=address),
        state_dir=tmp / "telemetry-state",
        consumer_group=group,
        loglevel=logging.WARNING,
    )
    res = run_app(app, "telemetry-features app", car.count, idle_s)
    res["consumer_group"] = group
    res["input_records"] = res["processed_per_topic"].get(car.spec.name, 0)
    if res["input_records"] != car.count:
        raise AssertionError(f"telemetry app processed {res['input_records']} of {car.count} samples")
    return res


class Pusher:
    """``on_features`` for the lap app, as the CLI wires it: a BackgroundPusher (batched pushes
    from a thread). ``seconds`` is the time the stream spent handing rows over."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.background = feature_store.BackgroundPusher(store)
        self.rows = 0
        self.seconds = 0.0

    def __call__(self, row: dict[str, Any]) -> None:
        started = time.perf_counter()
        self.background(row)
        self.seconds += time.perf_counter() - started
        self.rows += 1


def lap_app(
    address: str, tmp: Path, laps: Captured, idle_s: float, feast_push: bool
) -> tuple[dict[str, Any], Any]:
    tag = "push" if feast_push else "nopush"
    settings = FeatureAppSettings(
        broker_address=address,
        state_dir=tmp / f"lap-state-{tag}",
        consumer_group_prefix=f"bench-{tag}-{uuid.uuid4().hex[:8]}",
        feast_push=feast_push,
        feast_data_dir=tmp / "feast",
    )
    store = pusher = None
    setup_s = 0.0
    if settings.feast_push:
        started = time.perf_counter()
        store = feature_store.setup_store(settings)
        setup_s = time.perf_counter() - started
        pusher = Pusher(store)
    on_features: Callable[[dict[str, Any]], None] | None = pusher
    app = lap_features.build_app(settings, on_features=on_features)
    # the raw laps topic has one partition, so Quix's group_by re-keys in place (no repartition
    # topic); if one ever appears, its messages are processed too and must count every lap again
    res = run_app(app, f"lap-features app ({tag})", laps.count, idle_s)
    res["consumer_group_prefix"] = settings.consumer_group_prefix
    res["feast_push"] = feast_push
    res["input_records"] = res["processed_per_topic"].get(laps.spec.name, 0)
    # the app also reads track status and race control (the causal lap scope, functions/scope.py):
    # their own records, counted apart; any other topic would be a repartition of the laps
    scope = {catalog.TRACK_STATUS.name, catalog.RACE_CONTROL.name}
    res["scope_records"] = {t: c for t, c in res["processed_per_topic"].items() if t in scope}
    others = {t: c for t, c in res["processed_per_topic"].items() if t != laps.spec.name and t not in scope}
    if res["input_records"] != laps.count or any(c != laps.count for c in others.values()):
        raise AssertionError(f"lap app ({tag}) processed {res['processed_per_topic']}, {laps.count} laps")
    if pusher is not None:
        started = time.perf_counter()
        pusher.background.close()  # the online store is complete once the queue is drained
        res["feast_drain_s"] = time.perf_counter() - started
        res["feast_pushed_rows"] = pusher.background.pushed
        res["feast_setup_s"] = setup_s
        res["pushed_rows"] = pusher.rows
        res["push_s"] = pusher.seconds
        if pusher.rows != laps.count:
            raise AssertionError(f"pushed {pusher.rows} rows for {laps.count} laps")
    return res, store


def count_topic(address: str, spec: TopicSpec) -> list[Any]:
    return [json.loads(m.value()) for m in kafka_io.read_all(address, spec.name, timeout_s=30)]


# ---------------------------------------------------------------- Feast online read latency
def percentiles(samples_ns: list[int]) -> dict[str, float]:
    us = sorted(s / 1000 for s in samples_ns)
    q = statistics.quantiles(us, n=100, method="inclusive")
    return {
        "calls": len(us),
        "p50_us": q[49],
        "p90_us": q[89],
        "p99_us": q[98],
        "mean_us": statistics.fmean(us),
        "max_us": us[-1],
    }


def time_calls(fn: Callable[[], Any], calls: int, desc: str, warmup: int = 20) -> list[int]:
    for _ in range(warmup):
        fn()
    out = []
    clock = time.perf_counter_ns
    for _ in tqdm(range(calls), desc=desc, unit="call", mininterval=0.5):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


def feast_latency(store: Any, race: RaceData, calls: int) -> dict[str, Any]:
    session_key = race.meta.session_key
    laps = race.table("laps")
    drivers = sorted(set(laps.DriverNumber), key=lambda d: (d != "1", d))
    driver = str(drivers[0])
    last_lap = int(laps.loc[laps.DriverNumber == driver, "LapNumber"].max())
    entity = {"DriverNumber": driver, "SessionKey": session_key}

    got = feature_store.online_features(store, SERVICE, [entity])
    if got["LapNumber"] != [last_lap]:
        raise AssertionError(
            f"online {SERVICE} of driver {driver}: LapNumber {got['LapNumber']} != {last_lap}"
        )
    feast_ns = time_calls(lambda: feature_store.online_features(store, SERVICE, [entity]), calls, "feast")

    # reference: the online store's SQLite file, read with bare sqlite3 on a kept connection
    db = Path(store.config.online_store.path)
    conn = sqlite3.connect(db)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        project = store.config.project
        views = [f"{project}_{v}" for v in ("lap_pace", "lap_stint", "lap_gaps")]
        if not set(views) <= tables:
            raise AssertionError(f"online store tables {sorted(tables)} lack {views}")
        key = serialize_entity_key(
            EntityKeyProto(
                join_keys=["DriverNumber", "SessionKey"],
                entity_values=[ValueProto(string_val=driver), ValueProto(int64_val=session_key)],
            ),
            entity_key_serialization_version=store.config.entity_key_serialization_version,
        )
        one_sql = f'SELECT value FROM "{views[0]}" WHERE entity_key = ? AND feature_name = ?'
        if conn.execute(one_sql, (key, "LapTime")).fetchone() is None:
            raise AssertionError("bare SQLite lookup found no LapTime row for the driver")

        def one_row() -> Any:
            return conn.execute(one_sql, (key, "LapTime")).fetchone()

        view_sql = [
            f'SELECT entity_key, feature_name, value, event_ts FROM "{v}" WHERE entity_key IN (?) '
            "ORDER BY entity_key"
            for v in views
        ]
        rows_per_call = sum(len(conn.execute(s, (key,)).fetchall()) for s in view_sql)

        def feast_rows() -> Any:
            return [conn.execute(s, (key,)).fetchall() for s in view_sql]

        one_ns = time_calls(one_row, calls, "sqlite one row")
        rows_ns = time_calls(feast_rows, calls, "sqlite feast's rows")
    finally:
        conn.close()
    feast = percentiles(feast_ns)
    one = percentiles(one_ns)
    rows = percentiles(rows_ns)
    return {
        "service": SERVICE,
        "entity": entity,
        "features_returned": len(got) - 2,
        "online_store_db": db.name,
        "feast_online_features": feast,
        "sqlite_one_row": one,
        "sqlite_feast_rows": {**rows, "rows_per_call": rows_per_call, "queries_per_call": len(view_sql)},
        "ratio_p50_feast_vs_sqlite_one_row": feast["p50_us"] / one["p50_us"],
        "ratio_p99_feast_vs_sqlite_one_row": feast["p99_us"] / one["p99_us"],
        "ratio_p50_feast_vs_sqlite_feast_rows": feast["p50_us"] / rows["p50_us"],
    }


# ---------------------------------------------------------------- report
def print_report(res: dict[str, Any]) -> None:
    s = res["summary"]
    rt = res["reference"]
    tel, nop, psh = res["apps"]["telemetry"], res["apps"]["lap_nopush"], res["apps"]["lap_push"]
    rp = res["replay"]
    print()
    print(
        f"race {res['race']['slug']}: {rp['messages']:,} events replayed; "
        f"{tel['input_records']:,} car_telemetry samples, {nop['input_records']:,} laps; "
        f"{res['machine']['cpu_count']} CPUs"
    )
    head = f"{'stage':<50} {'messages':>9} {'seconds':>8} {'msg/s':>10} {'vs raw':>7}"
    print(head)
    print("-" * len(head))

    def row(name: str, n: int, secs: float, ratio: float | None = None) -> None:
        r = f"{ratio:>7.3g}" if ratio is not None else ""
        print(f"{name:<50} {n:>9,} {secs:>8.2f} {n / secs:>10,.0f} {r}")

    row("replay.run end to end (speed 0, all topics)", rp["messages"], rp["wall_s"])
    for name, ref in rt.items():
        row(f"raw produce + flush {name}", ref["messages"], ref["produce_s"])
        row(f"raw consume {name} (assign -> last)", ref["messages"], ref["consume_s"])
        row(f"raw round trip {name}", ref["messages"], ref["round_trip_s"])
    n = tel["input_records"]
    row("telemetry app: assigned -> last processed", n, tel["busy_s"], s["ratio_telemetry_vs_raw_round_trip"])
    row("  first -> last processed", n, tel["span_s"], s["ratio_telemetry_first_to_last_vs_raw_round_trip"])
    row(
        "  wall - idle (join, final commit)",
        n,
        tel["wall_minus_idle_s"],
        s["ratio_telemetry_wall_minus_idle_vs_raw_round_trip"],
    )
    row("  windows out (assigned -> last)", s["telemetry_windows"], tel["busy_s"])
    row(
        "lap app, no Feast push: assigned -> last",
        nop["input_records"],
        nop["busy_s"],
        s["ratio_lap_nopush_vs_raw_round_trip"],
    )
    row("  first -> last processed", nop["input_records"], nop["span_s"])
    row(
        "lap app, Feast push: assigned -> last",
        psh["input_records"],
        psh["busy_s"],
        s["ratio_lap_push_vs_raw_round_trip"],
    )
    row("  first -> last processed", psh["input_records"], psh["span_s"])
    print(
        f"  hand-over to the background pusher: {psh['push_s']:.2f}s of the span, "
        f"{1000 * psh['push_s'] / psh['pushed_rows']:.3f} ms/row; queue drained {psh['feast_drain_s']:.2f}s "
        f"after the last lap; setup_store {psh['feast_setup_s']:.2f}s"
    )
    print(
        f"  group join (run() -> assigned): telemetry {tel['join_s']:.2f}s, laps {nop['join_s']:.2f}s / "
        f"{psh['join_s']:.2f}s; assigned -> first message {tel['first_fetch_s']:.2f}s / "
        f"{nop['first_fetch_s']:.2f}s / {psh['first_fetch_s']:.2f}s"
    )
    print("-" * len(head))
    f = res["feast"]
    print(
        f"Feast online read, {f['service']} for driver {f['entity']['DriverNumber']} ({f['feast_online_features']['calls']} calls):"
    )
    for label, key in (
        ("feature_store.online_features", "feast_online_features"),
        ("bare sqlite3 SELECT of one row", "sqlite_one_row"),
        (
            f"bare sqlite3 of Feast's rows ({f['sqlite_feast_rows']['queries_per_call']} SELECTs)",
            "sqlite_feast_rows",
        ),
    ):
        v = f[key]
        print(f"  {label:<48} p50 {v['p50_us']:>8.1f} us   p99 {v['p99_us']:>8.1f} us")
    print(
        f"  Feast / one-row SELECT: p50 {f['ratio_p50_feast_vs_sqlite_one_row']:.0f}x, "
        f"p99 {f['ratio_p99_feast_vs_sqlite_one_row']:.0f}x; "
        f"Feast / its rows' SELECTs: p50 {f['ratio_p50_feast_vs_sqlite_feast_rows']:.0f}x"
    )
    v = res["verification"]
    print(
        f"verified: {v['windows_streamed']:,} windows == {v['windows_offline']:,} offline - "
        f"{v['open_windows']} open; features {v['lap_features_per_run']} per run == {v['laps']} laps; "
        f"dead letters from the apps: {v['app_dead_letters']}"
    )


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--race", type=Path, default=DEFAULT_RACE, help="bundled race folder (data/races/...)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    parser.add_argument(
        "--idle-timeout", type=float, default=3.0, help="seconds without input before an app stops"
    )
    parser.add_argument("--feast-calls", type=int, default=1000, help="timed online reads per method")
    args = parser.parse_args(argv)

    race_dir = resolve_race(args.race)
    t = time.perf_counter()
    race = load_bundled(race_dir)
    print(f"loaded {race_dir.name} in {time.perf_counter() - t:.2f}s: {race.row_counts()}", flush=True)
    t = time.perf_counter()
    offline = tl.offline_windows(race)
    offline_s = time.perf_counter() - t
    open_windows = int(offline.groupby(["SessionKey", "DriverNumber"]).ngroups)
    print(f"offline_windows: {len(offline):,} windows ({open_windows} final open ones) in {offline_s:.1f}s")

    with (
        tempfile.TemporaryDirectory(prefix="stratx-bench-") as tmpdir,
        EmbeddedBroker(port=free_port(), log_path=Path(tmpdir) / "tansu.log") as broker,
    ):
        tmp = Path(tmpdir)
        address = broker.address
        print(f"Tansu broker on {address}", flush=True)
        client = admin.connect(address)
        try:
            admin.create_topics(client)
            replay_id = f"bench-features-{uuid.uuid4().hex[:8]}"
            t = time.perf_counter()
            result = replay.run(
                race,
                ReplaySettings(broker_address=address),
                replay.ReplayOptions(speed=0, replay_id=replay_id),
            )
            replay_wall = time.perf_counter() - t
            if not result.finished:
                raise AssertionError(f"replay did not finish: {result}")
            replay_res = {
                "replay_id": replay_id,
                "messages": result.total,
                "dead_letters": result.dead_letters,
                "published": dict(result.published),
                "wall_s": replay_wall,
                "msg_per_s": result.total / replay_wall,
            }
            print(f"replay: {result.total:,} events in {replay_wall:.1f}s", flush=True)

            car = capture(address, catalog.CAR_TELEMETRY)
            laps = capture(address, catalog.LAPS)
            for c in (car, laps):
                if c.count != result.published[c.spec.name]:
                    raise AssertionError(
                        f"{c.spec.name}: read {c.count}, replay published {result.published}"
                    )
            prefix = f"bench.{uuid.uuid4().hex[:6]}."
            reference = {
                "car_telemetry": raw_round_trip(address, client, car, prefix),
                "laps": raw_round_trip(address, client, laps, prefix),
            }
        finally:
            client.close()

        telemetry = telemetry_app(address, tmp, car, args.idle_timeout)
        windows = count_topic(address, catalog.TELEMETRY_WINDOW)
        nopush, _ = lap_app(address, tmp, laps, args.idle_timeout, feast_push=False)
        features_after_nopush = len(count_topic(address, catalog.FEATURES_LAP))
        push, store = lap_app(address, tmp, laps, args.idle_timeout, feast_push=True)
        features_after_push = len(count_topic(address, catalog.FEATURES_LAP))
        letters = Counter(
            d["Stage"]
            for d in count_topic(address, catalog.DEAD_LETTER)
            if d["Stage"] in (telemetry_features.STAGE, lap_features.STAGE)
        )
        feast = feast_latency(store, race, args.feast_calls)

    # ---- verification
    expected_windows = len(offline) - open_windows
    # the second run reads the same raw laps with a new consumer group: the app's idempotency
    # (quix_apps/kit/emitted.py) sends none of them to the topic again, so its features are counted
    # where every one of them goes first, the Feast push
    per_run = [features_after_nopush, push.get("pushed_rows", 0)]
    problems = []
    if features_after_push != features_after_nopush:
        problems.append(
            f"the second run re-emitted {features_after_push - features_after_nopush} lap features"
        )
    if len(windows) != expected_windows:
        problems.append(f"{len(windows)} windows streamed, expected {expected_windows}")
    if per_run != [laps.count, laps.count]:
        problems.append(f"lap features per run {per_run}, expected {laps.count} each")
    if letters:
        problems.append(f"dead letters from the apps: {dict(letters)}")
    if problems:
        raise AssertionError("feature apps' output is wrong:\n  " + "\n  ".join(problems))

    car_rt, lap_rt = reference["car_telemetry"], reference["laps"]
    n_car, n_lap = telemetry["input_records"], laps.count
    summary: dict[str, Any] = {
        "telemetry_records_per_s": n_car / telemetry["busy_s"],
        "telemetry_records_per_s_first_to_last": n_car / telemetry["span_s"],
        "telemetry_records_per_s_wall_minus_idle": n_car / telemetry["wall_minus_idle_s"],
        "telemetry_windows": len(windows),
        "telemetry_windows_per_s": len(windows) / telemetry["busy_s"],
        "raw_round_trip_car_telemetry_msg_per_s": car_rt["round_trip_msg_per_s"],
        "lap_nopush_laps_per_s": n_lap / nopush["busy_s"],
        "lap_nopush_laps_per_s_first_to_last": n_lap / nopush["span_s"],
        "lap_push_laps_per_s": n_lap / push["busy_s"],
        "lap_push_laps_per_s_first_to_last": n_lap / push["span_s"],
        "raw_round_trip_laps_msg_per_s": lap_rt["round_trip_msg_per_s"],
        "push_ms_per_row": 1000 * push["push_s"] / push["pushed_rows"],
        "feast_p50_us": feast["feast_online_features"]["p50_us"],
        "feast_p99_us": feast["feast_online_features"]["p99_us"],
        "sqlite_one_row_p50_us": feast["sqlite_one_row"]["p50_us"],
        "sqlite_one_row_p99_us": feast["sqlite_one_row"]["p99_us"],
        "feast_ratio_p50": feast["ratio_p50_feast_vs_sqlite_one_row"],
        "feast_ratio_p99": feast["ratio_p99_feast_vs_sqlite_one_row"],
    }
    for name, rate, ref in (
        ("telemetry", "telemetry_records_per_s", car_rt),
        ("telemetry_first_to_last", "telemetry_records_per_s_first_to_last", car_rt),
        ("telemetry_wall_minus_idle", "telemetry_records_per_s_wall_minus_idle", car_rt),
        ("lap_nopush", "lap_nopush_laps_per_s", lap_rt),
        ("lap_push", "lap_push_laps_per_s", lap_rt),
    ):
        summary[f"ratio_{name}_vs_raw_round_trip"] = summary[rate] / ref["round_trip_msg_per_s"]
    out = {
        **result_header("features_throughput", argv, race, race_dir),
        "config": {
            "broker": "tansu (memory storage, embedded, loopback)",
            "reference_producer_config": REFERENCE_PRODUCER_CONFIG,
            "idle_timeout_s": args.idle_timeout,
            "feast_calls": args.feast_calls,
            "window_width_s": tl.WINDOW_WIDTH_S,
        },
        "replay": replay_res,
        "inputs": {
            c.spec.name: {
                "messages": c.count,
                "partitions": c.spec.partitions,
                "value_bytes": c.value_bytes,
                "key_bytes": c.key_bytes,
                "read_all_s": c.seconds,
            }
            for c in (car, laps)
        },
        "reference": reference,
        "apps": {"telemetry": telemetry, "lap_nopush": nopush, "lap_push": push},
        "feast": feast,
        "verification": {
            "windows_streamed": len(windows),
            "windows_offline": len(offline),
            "open_windows": open_windows,
            "offline_rejected": offline.attrs.get("rejected"),
            "offline_windows_s": offline_s,
            "laps": laps.count,
            "lap_features_per_run": per_run,
            "app_dead_letters": sum(letters.values()),
        },
        "summary": summary,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print_report(out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
