"""Scale-out: one vs two copies of the telemetry-features app in one consumer group, whole race.

    python bench/scale_out.py [--race data/races/2024_bahrain_grand_prix_race]

The race is replayed once (``replay.run``, speed 0) into a source broker and its car-telemetry
messages (partition, key, value, timestamp) are kept. Then, once with one copy and once with two,
on a fresh embedded Tansu broker each: the copies start as a deployer starts them
(``stratx features run --app telemetry --no-feast``, ``STRATX_INSTANCE`` 0 and 1, one shared
``STRATX_STATE_DIR``, each copy its own /metrics exporter); once every copy has joined (the group
Stable for 3.5 s, longer than a heartbeat) a bare confluent-kafka producer sends the kept messages
to their partitions, and the copies' ``stratx_records_consumed_total`` is polled every 0.2 s until
it reaches the message count. Reported per run: each copy's consumed records (the split; the range
assignor gives one copy partitions 0-2 and the other 3-5), time from the first message sent to the
last consumed, and throughput; the ratio two copies / one copy; and whether both runs wrote the
same window records (key, value, timestamp, per key in order): the run fails otherwise. The
broker, the producer and the copies share the machine's cores. JSON to
bench/results/scale_out.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from replay_throughput import REFERENCE_PRODUCER_CONFIG, REPO_ROOT, resolve_race, result_header

from stratx.bentos.lifecycle.sources import load_bundled
from stratx.functions import catalog
from stratx.functions.settings import ReplaySettings
from stratx.quix_apps import replay, telemetry_features
from stratx.quix_apps.kit import admin, kafka_io, pipeline
from stratx.quix_apps.kit import copies as copies_kit
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

DEFAULT_RACE = Path("data/races/2024_bahrain_grand_prix_race")
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "scale_out.json"
GROUP = telemetry_features.CONSUMER_GROUP
APP, TOPIC = "telemetry", catalog.CAR_TELEMETRY.name
Message = tuple[int, bytes, bytes, int]  # partition, key, value, timestamp


def source_messages(race_dir: Path, tmp: Path) -> tuple[Any, list[Message]]:
    """The race's car-telemetry messages as the replay publishes them."""
    race = load_bundled(race_dir)
    with EmbeddedBroker("127.0.0.1", free_port(), tmp / "source.log") as broker:
        client = admin.connect(broker.address)
        admin.create_topics(client)
        client.close()
        replay.run(race, ReplaySettings(broker_address=broker.address), replay.ReplayOptions(progress=False))
        messages = [
            (m.partition(), m.key(), m.value(), m.timestamp()[1])
            for m in kafka_io.read_all(broker.address, catalog.CAR_TELEMETRY.name, drain_s=0.5)
        ]
    return race, messages


def run_copies(messages: list[Message], copies: int, tmp: Path) -> dict[str, Any]:
    tmp.mkdir()
    base = copies_kit.free_base(APP)
    ports = [copies_kit.port_of(APP, base, n) for n in range(copies)]
    with EmbeddedBroker("127.0.0.1", free_port(), tmp / "tansu.log") as broker:
        client = admin.connect(broker.address)
        admin.create_topics(client)
        client.close()
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for n in range(copies):
                (tmp / f"copy{n}").mkdir()
                env = {"STRATX_INSTANCE": str(n), "STRATX_METRICS_PORT_BASE": str(base)}
                started = pipeline.start_apps(
                    broker.address, tmp / "state", ("telemetry",), False, tmp / f"copy{n}", env
                )
                procs[f"copy{n}"] = started["telemetry"]
            while any(copies_kit.consumed(p, TOPIC) is None for p in ports):
                pipeline.check_alive(procs, tmp)
                time.sleep(0.2)
            copies_kit.wait_stable(broker.address, GROUP)
            producer = Producer({"bootstrap.servers": broker.address, **REFERENCE_PRODUCER_CONFIG})
            t0 = time.monotonic()
            for partition, key, value, ts in messages:
                while True:
                    try:
                        producer.produce(
                            catalog.CAR_TELEMETRY.name, value, key, partition=partition, timestamp=ts
                        )
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        producer.poll(0.05)
                producer.poll(0)
            producer.flush()
            sent_s = time.monotonic() - t0
            counts = [0] * copies
            while sum(counts) < len(messages):
                pipeline.check_alive(procs, tmp)
                time.sleep(0.2)
                counts = [copies_kit.consumed(p, TOPIC) or 0 for p in ports]
            busy_s = time.monotonic() - t0
        finally:
            pipeline.stop_apps(procs)
        records: dict[str, list[tuple[bytes, int]]] = defaultdict(list)
        for m in kafka_io.read_all(broker.address, catalog.TELEMETRY_WINDOW.name, drain_s=0.5):
            records[m.key().decode()].append((m.value(), m.timestamp()[1]))
    return {
        "copies": copies,
        "consumed_per_copy": counts,
        "send_s": round(sent_s, 2),
        "first_sent_to_last_consumed_s": round(busy_s, 2),
        "msg_per_s": round(len(messages) / busy_s),
        "windows": sum(map(len, records.values())),
        "_records": dict(records),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--race", type=Path, default=DEFAULT_RACE, help="bundled race folder (data/races/...)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON")
    args = parser.parse_args(argv)
    race_dir = resolve_race(args.race)
    with tempfile.TemporaryDirectory(prefix="stratx-scale-out-") as folder:
        tmp = Path(folder)
        race, messages = source_messages(race_dir, tmp)
        per_partition: dict[int, int] = defaultdict(int)
        for partition, *_ in messages:
            per_partition[partition] += 1
        one = run_copies(messages, 1, tmp / "one")
        two = run_copies(messages, 2, tmp / "two")
    halves = [
        sum(n for p, n in per_partition.items() if p < 3),
        sum(n for p, n in per_partition.items() if p >= 3),
    ]
    same = one.pop("_records") == two.pop("_records")
    result = {
        **result_header("scale_out", argv, race, race_dir),
        "messages": len(messages),
        "messages_per_partition": dict(sorted(per_partition.items())),
        "range_assignment_halves": halves,
        "one_copy": one,
        "two_copies": two,
        "throughput_ratio_two_vs_one": round(two["msg_per_s"] / one["msg_per_s"], 2),
        "split_is_the_range_assignment": sorted(two["consumed_per_copy"]) == sorted(halves),
        "same_windows": same,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "race")}, indent=2))
    print(f"wrote {args.out}")
    return 0 if same and result["split_is_the_range_assignment"] else 1


if __name__ == "__main__":
    sys.exit(main())
