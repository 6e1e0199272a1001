"""Serverless parity on a real broker: the Quix ingest app and every serverless adapter give the
same outputs for the same recorded inbound records (tests/fixtures/serverless).

The recorded records are produced to ``stratx.inbound.openf1`` at the offsets the platform events
carry; the Quix ingest app (``stratx ingest``) turns them into raw records and dead letters; each
adapter runs its recorded event; every output (topic, key, value bytes, timestamp, headers) must be
equal. The Lambda adapter also runs once with its real Kafka sink (kafka-python), so every output
then sits on the broker twice, byte for byte.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from confluent_kafka import Producer

from stratx.functions import catalog, inbound
from stratx.functions.inbound import OutboundRecord
from stratx.functions.settings import IngestSettings
from stratx.localstack.adapters import aws_lambda, azure_functions, cloudevents_http
from stratx.localstack.adapters.runtime import KafkaSink, ListSink, MemoryStore, Runtime
from stratx.quix_apps import ingest_app
from stratx.quix_apps.kit import admin, kafka_io

pytestmark = pytest.mark.integration
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "serverless"


def load(name: str) -> Any:
    return json.loads((FIX / name).read_text())


def produce_inbound(broker: str) -> None:
    delivered: list[tuple[int, int]] = []
    errors: list[object] = []

    def on_delivery(err: object, msg: Any) -> None:
        (errors.append(err) if err else delivered.append((msg.partition(), msg.offset())))

    producer = Producer({"bootstrap.servers": broker, "enable.idempotence": True})
    for r in load("records.json"):
        producer.produce(
            r["topic"],
            key=r["key"].encode(),
            value=r["value"].encode(),
            partition=r["partition"],
            timestamp=r["timestamp"],
            headers=[(k, v.encode()) for k, v in r["headers"]],
            on_delivery=on_delivery,
        )
        producer.flush(10)  # one at a time: offsets in file order
    assert not errors, errors
    assert delivered == [(r["partition"], r["offset"]) for r in load("records.json")], "fresh inbound topic"


def read_outputs(broker: str) -> dict[str, list[OutboundRecord]]:
    """Every message on the output topics that came from the inbound topic, by source position."""
    out: dict[str, list[OutboundRecord]] = defaultdict(list)
    for spec in ingest_app.OUTPUT_TOPICS:
        for msg in kafka_io.read_all(broker, spec.name, drain_s=0.5):
            headers = tuple((k, bytes(v)) for k, v in (msg.headers() or []))
            source = dict(headers).get(inbound.SOURCE_HEADER, b"").decode()
            if source.startswith(catalog.INBOUND_OPENF1.name + "/"):
                out[source].append(
                    OutboundRecord(spec.name, msg.key(), msg.value(), msg.timestamp()[1], headers)
                )
    return dict(out)


def by_source(outputs: list[OutboundRecord]) -> dict[str, OutboundRecord]:
    found = {dict(o.headers)[inbound.SOURCE_HEADER].decode(): o for o in outputs}
    assert len(found) == len(outputs)
    return found


def adapter_outputs() -> dict[str, dict[str, OutboundRecord]]:
    results: dict[str, dict[str, OutboundRecord]] = {}
    for name in ("aws_self_managed_kafka.json", "aws_msk.json"):
        rt = Runtime(MemoryStore(), ListSink())
        aws_lambda.make_handler(rt)(load(name), None)
        assert isinstance(rt.sink, ListSink)
        results[name] = by_source(rt.sink.records)
    for name in ("knative_binary.json", "knative_structured.json"):
        rt = Runtime(MemoryStore(), ListSink())
        for req in load(name):
            status, answer = cloudevents_http.handle_http(
                req["headers"], base64.b64decode(req["body_base64"]), rt
            )
            assert status == 200, answer
        assert isinstance(rt.sink, ListSink)
        results[name] = by_source(rt.sink.records)
    rt = Runtime(MemoryStore(), ListSink())
    events = [func.KafkaEvent(body=json.dumps(e).encode()) for e in load("azure_kafka_events.json")]
    azure_functions.handle_events(events, rt)
    assert isinstance(rt.sink, ListSink)
    results["azure_kafka_events.json"] = by_source(rt.sink.records)
    return results


def test_quix_app_and_every_adapter_give_identical_outputs(own_broker: str) -> None:
    broker_address = own_broker  # its raw-topic outputs must not reach other modules' topics
    client = admin.connect(broker_address, 10)
    admin.create_topics(client, (*catalog.ALL_TOPICS, *catalog.INBOUND_TOPICS))
    client.close()
    produce_inbound(broker_address)

    settings = IngestSettings(broker_address=broker_address, ingest_consumer_group="stratx-ingest-parity")
    ingest_app.build_app(settings).run(timeout=3.0)  # stops after 3 s without new input

    quix = read_outputs(broker_address)
    n = len(load("records.json"))
    assert len(quix) == n and all(len(v) == 1 for v in quix.values()), "one output per inbound record"
    quix_one = {source: outs[0] for source, outs in quix.items()}
    topics = {o.topic for o in quix_one.values()}
    assert {catalog.CAR_TELEMETRY.name, catalog.CAR_POSITION.name, catalog.WEATHER.name} <= topics
    assert catalog.DEAD_LETTER.name in topics
    for name, outputs in adapter_outputs().items():
        assert outputs == quix_one, f"{name} differs from the Quix path"

    # the Lambda handler with its real Kafka sink, then the same batch again (a retry)
    sink = KafkaSink(broker_address)
    handler = aws_lambda.make_handler(Runtime(MemoryStore(), sink))
    first = handler(load("aws_self_managed_kafka.json"), None)
    retry = handler(load("aws_self_managed_kafka.json"), None)
    sink.close()
    assert first["stratx"]["processed"] == n and retry["stratx"]["skipped"] == n
    both = read_outputs(broker_address)
    assert all(len(v) == 2 and v[0] == v[1] for v in both.values()), "Lambda's copy equals the Quix app's"
