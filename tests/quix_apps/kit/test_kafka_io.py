"""read_all must return every message, even where Tansu's high watermark stops short."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from stratx.functions.catalog import DAY_MS, KeyRule, TopicSpec
from stratx.functions.schemas import DeadLetter
from stratx.quix_apps.kit import admin, kafka_io

pytestmark = pytest.mark.integration


def test_read_all_reads_past_a_short_watermark(broker_address: str) -> None:
    name = f"test.read_all.{uuid.uuid4().hex[:6]}"
    spec = TopicSpec(name, 2, KeyRule.SOURCE, DAY_MS, DeadLetter, "test topic")
    client = admin.connect(broker_address)
    admin.create_topics(client, [spec])
    client.close()
    producer = Producer({"bootstrap.servers": broker_address, "linger.ms": 50})
    sent = {f"k{i}": f"v{i}" for i in range(500)}
    for key, value in sent.items():  # many messages per batch: one batch per partition
        producer.produce(name, key=key, value=value)
    assert producer.flush(10) == 0
    got = {m.key().decode(): m.value().decode() for m in kafka_io.read_all(broker_address, name)}
    assert got == sent
