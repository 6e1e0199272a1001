"""Serverless adapters vs the Quix ingest app: cold start and per-record cost, in the same run.

    .venv/bin/python bench/serverless_cold_start.py [--records 20000] [--repeat 3]

Input: real recorded OpenF1 records of the 2023 Las Vegas GP (``tests/fixtures/openf1_session``:
``/car_data`` and ``/location`` of cars 1 and 11), as inbound Kafka records on
``stratx.inbound.openf1`` (the format of ``tests/fixtures/serverless/records.json``).

* Adapter cold start (per adapter, ``--repeat`` fresh subprocesses, median): wall time from
  spawning ``python`` to the first record's output in the sink (interpreter start + imports +
  first event), the import share measured inside the child, and the child's peak RSS. Then, in
  the same child, a batch of ``--records`` records in the platform's envelope (AWS: one event;
  Knative: one HTTP request per record; Azure: one trigger batch) -> per-record cost, envelope
  decoding included. Outputs go to an in-memory sink (no broker), idempotency store in memory.
* Quix path: the same records on the inbound topic of an embedded broker, then ``stratx ingest``
  spawned; startup = spawn -> first output seen by a consumer; per-record = (last output - first
  output) / (records - 1); peak RSS of the app process.
* Reference: the core alone (``inbound.transform_batch``) in this process.

Results: bench/results/serverless_cold_start.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SESSION = REPO_ROOT / "tests" / "fixtures" / "openf1_session"
PY = str(REPO_ROOT / ".venv" / "bin" / "python")
ADAPTERS = ("aws_lambda", "cloudevents_http", "azure_functions")


# --------------------------------------------------------------------------- inputs
def inbound_records(n: int) -> list[dict[str, Any]]:
    """n real records (half car_data, half location; cars 1 and 11) as inbound Kafka records."""
    from tests.fixtures.serverless.build_fixtures import TOPIC, _compact, _ms

    with gzip.open(SESSION / "sessions.jsonl.gz", "rt") as fh:
        t0 = json.loads(fh.readline())["date_start"]
    out: list[dict[str, Any]] = []
    offsets: dict[int, int] = {}
    for endpoint in ("car_data", "location"):
        with gzip.open(SESSION / f"{endpoint}.jsonl.gz", "rt") as fh:
            rows = [json.loads(line) for line in fh]
        rows = [r for r in rows if r["driver_number"] in (1, 11)][: n // 2]
        for r in rows:
            p = r["driver_number"] % 6
            out.append(
                {
                    "topic": TOPIC,
                    "partition": p,
                    "offset": offsets.setdefault(p, 0),
                    "timestamp": _ms(r["date"]),
                    "key": f"{r['session_key']}:{r['driver_number']}",
                    "value": _compact(r),
                    "headers": [["openf1-endpoint", endpoint], ["openf1-session-start", t0]],
                }
            )
            offsets[p] += 1
    return out


def envelopes(adapter: str, records: list[dict[str, Any]]) -> Any:
    from tests.fixtures.serverless import build_fixtures as bf

    if adapter == "aws_lambda":
        return bf.aws_event(records, "current")
    if adapter == "cloudevents_http":
        return bf.knative_binary(records)
    return bf.azure_events(records)


# --------------------------------------------------------------------------- the child (one cold start)
def child(adapter: str, first_file: str, batch_file: str) -> None:
    started = time.perf_counter()
    import base64

    if adapter == "aws_lambda":
        from stratx.localstack.adapters import aws_lambda as mod
    elif adapter == "cloudevents_http":
        from stratx.localstack.adapters import cloudevents_http as mod  # type: ignore[no-redef]
    else:
        from stratx.localstack.adapters import azure_functions as mod  # type: ignore[no-redef]
    from stratx.localstack.adapters.runtime import ListSink, MemoryStore, Runtime

    imported = time.perf_counter()

    def run(payload: Any, rt: Runtime) -> None:
        if adapter == "aws_lambda":
            mod.make_handler(rt)(payload, None)
        elif adapter == "cloudevents_http":
            for req in payload:
                status, answer = mod.handle_http(req["headers"], base64.b64decode(req["body_base64"]), rt)
                assert status == 200, answer
        else:
            import azure.functions as func

            mod.handle_events([func.KafkaEvent(body=json.dumps(e).encode()) for e in payload], rt)

    first_payload = json.loads(Path(first_file).read_text())
    rt = Runtime(MemoryStore(), ListSink())
    run(first_payload, rt)
    assert isinstance(rt.sink, ListSink) and len(rt.sink.records) == 1
    first_done_epoch = time.time()
    first = time.perf_counter()
    rss_first = _peak_rss_mb(os.getpid())
    batch_payload = json.loads(Path(batch_file).read_text())
    rt = Runtime(MemoryStore(), ListSink())
    t = time.perf_counter()
    run(batch_payload, rt)
    batch_s = time.perf_counter() - t
    assert isinstance(rt.sink, ListSink)
    print(
        json.dumps(
            {
                "import_s": imported - started,
                "first_record_s": first - imported,
                "first_done_epoch": first_done_epoch,
                "batch_s": batch_s,
                "batch_outputs": len(rt.sink.records),
                # VmHWM (ru_maxrss would carry the parent's over exec): after the first record, after the batch
                "rss_first_mb": rss_first,
                "rss_batch_mb": _peak_rss_mb(os.getpid()),
            }
        )
    )


def cold_start(adapter: str, first_file: Path, batch_file: Path, n: int) -> dict[str, Any]:
    spawned = time.time()
    proc = subprocess.run(
        [PY, __file__, "--child", adapter, str(first_file), str(batch_file)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    if proc.returncode:
        raise RuntimeError(f"{adapter} child failed: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["batch_outputs"] == n
    out["cold_start_s"] = out["first_done_epoch"] - spawned
    out["per_record_us"] = out["batch_s"] / n * 1e6
    return out


# --------------------------------------------------------------------------- the Quix path
def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def quix_path(records: list[dict[str, Any]]) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    from stratx.functions import catalog
    from stratx.quix_apps import ingest_app
    from stratx.quix_apps.kit import admin
    from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker("127.0.0.1", free_port(), Path(tmp) / "t.log") as b,
    ):
        client = admin.connect(b.address, 10)
        admin.create_topics(client, (*catalog.ALL_TOPICS, *catalog.INBOUND_TOPICS))
        client.close()
        producer = Producer({"bootstrap.servers": b.address, "linger.ms": 5})
        for r in records:
            producer.produce(
                r["topic"],
                key=r["key"].encode(),
                value=r["value"].encode(),
                partition=r["partition"],
                timestamp=r["timestamp"],
                headers=[(k, v.encode()) for k, v in r["headers"]],
            )
        assert producer.flush(30) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": b.address,
                "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                "session.timeout.ms": 6000,
            }
        )
        parts = [
            TopicPartition(spec.name, p, OFFSET_BEGINNING)
            for spec in ingest_app.OUTPUT_TOPICS
            for p in range(spec.partitions)
        ]
        consumer.assign(parts)
        spawned = time.time()
        proc = subprocess.Popen(
            [
                str(REPO_ROOT / ".venv" / "bin" / "stratx"),
                "ingest",
                "--broker",
                b.address,
                "--idle-timeout",
                "3",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seen = 0
        first = last = None
        rss = float("nan")
        deadline = time.time() + 120
        while seen < len(records) and time.time() < deadline:
            for msg in consumer.consume(1000, timeout=0.05):
                if msg.error():
                    continue
                now = time.time()
                first = first or now
                last = now
                seen += 1
            rss = max(rss, _peak_rss_mb(proc.pid)) if rss == rss else _peak_rss_mb(proc.pid)
        consumer.close()
        proc.wait(timeout=60)
        assert seen == len(records), f"Quix app produced {seen} of {len(records)}"
        assert first is not None and last is not None
        return {
            "startup_to_first_output_s": first - spawned,
            "per_record_us": (last - first) / (len(records) - 1) * 1e6,
            "rss_mb": rss,
            "outputs": seen,
        }


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from replay_throughput import machine_info

    from stratx.functions import inbound

    records = inbound_records(args.records)
    n = len(records)
    result: dict[str, Any] = {
        "benchmark": "serverless_cold_start",
        "command": " ".join(["python", "bench/serverless_cold_start.py", *sys.argv[1:]]),
        "machine": machine_info(),  # the commit the figures were measured on (make bench-check)
        "records": n,
        "repeat": args.repeat,
        "input": "2023 Las Vegas GP OpenF1 car_data + location, cars 1 and 11 (real)",
    }
    # reference: the core alone, in process
    from stratx.functions.inbound import InboundRecord

    objs = [
        InboundRecord(r["topic"], r["partition"], r["offset"], r["timestamp"], r["key"].encode(), r["value"].encode(), tuple((k, v.encode()) for k, v in r["headers"]))
        for r in records
    ]  # fmt: skip
    inbound.transform_batch(objs[:100])
    t = time.perf_counter()
    inbound.transform_batch(objs)
    result["core_per_record_us"] = (time.perf_counter() - t) / n * 1e6
    with tempfile.TemporaryDirectory() as tmp:
        adapters: dict[str, Any] = {}
        for adapter in ADAPTERS:
            first_file, batch_file = Path(tmp) / f"{adapter}-first.json", Path(tmp) / f"{adapter}-batch.json"
            first_file.write_text(json.dumps(envelopes(adapter, records[:1])))
            batch_file.write_text(json.dumps(envelopes(adapter, records)))
            runs = [cold_start(adapter, first_file, batch_file, n) for _ in range(args.repeat)]
            adapters[adapter] = {
                key: statistics.median(r[key] for r in runs)
                for key in (
                    "cold_start_s",
                    "import_s",
                    "first_record_s",
                    "per_record_us",
                    "rss_first_mb",
                    "rss_batch_mb",
                )
            }
            print(adapter, json.dumps(adapters[adapter]), flush=True)
        result["adapters"] = adapters
    quix = [quix_path(records) for _ in range(args.repeat)]
    result["quix"] = {
        k: statistics.median(q[k] for q in quix)
        for k in ("startup_to_first_output_s", "per_record_us", "rss_mb")
    }
    print("quix", json.dumps(result["quix"]), flush=True)
    for a in result["adapters"].values():
        a["cold_start_vs_quix_startup"] = a["cold_start_s"] / result["quix"]["startup_to_first_output_s"]
        a["per_record_vs_quix"] = a["per_record_us"] / result["quix"]["per_record_us"]
    result["cpu_count"] = os.cpu_count()
    out = REPO_ROOT / "bench" / "results" / "serverless_cold_start.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
