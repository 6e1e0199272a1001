"""The background follower of a small topic (the prediction app's session info) on the real broker:
records published before and after it starts are found, the latest per key wins, a missing key
costs one bounded wait and then none, and lookups never read the topic again."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import Producer

from stratx.functions.catalog import DAY_MS, KeyRule, TopicSpec
from stratx.functions.schemas import DeadLetter
from stratx.quix_apps.kit import admin
from stratx.quix_apps.kit.follower import Follower

pytestmark = pytest.mark.integration


def _topic(broker_address: str) -> str:
    name = f"test.follower.{uuid.uuid4().hex[:6]}"
    client = admin.connect(broker_address)
    admin.create_topics(client, [TopicSpec(name, 2, KeyRule.SOURCE, DAY_MS, DeadLetter, "test topic")])
    client.close()
    return name


def _publish(producer: Producer, topic: str, *records: object) -> None:
    for r in records:
        producer.produce(topic, value=json.dumps(r).encode() if not isinstance(r, bytes) else r)
    assert producer.flush(10) == 0


def test_follower_finds_records_before_and_after_it_starts(broker_address: str) -> None:
    topic = _topic(broker_address)
    producer = Producer({"bootstrap.servers": broker_address, "linger.ms": 5})
    _publish(producer, topic, {"SessionKey": 1, "TotalLaps": 57}, b"not json", [1, 2], {"no": "key"})
    with Follower(broker_address, topic, lambda r: r.get("SessionKey")) as follower:
        assert follower.get(1) == {"SessionKey": 1, "TotalLaps": 57}  # published before the start

        started = time.perf_counter()
        assert follower.get(2) is None  # the first miss waits for the polls in flight, bounded
        first_miss = time.perf_counter() - started
        assert first_miss < follower.wait_s + 0.5
        started = time.perf_counter()
        assert follower.get(2) is None  # later misses of the same key do not wait
        assert time.perf_counter() - started < 0.05

        _publish(producer, topic, {"SessionKey": 2, "TotalLaps": 50}, {"SessionKey": 1, "TotalLaps": 58})
        deadline = time.monotonic() + 5
        while (follower.get(2) is None or follower.get(1)["TotalLaps"] != 58) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert follower.get(2) == {"SessionKey": 2, "TotalLaps": 50}  # arrived after its first miss
        assert follower.get(1) == {"SessionKey": 1, "TotalLaps": 58}  # the latest record wins

        started = time.perf_counter()
        for _ in range(1000):
            follower.get(1)
        assert time.perf_counter() - started < 0.1  # a lookup is a dict read, not a topic read


def test_a_record_published_just_before_the_lookup_is_found(broker_address: str) -> None:
    topic = _topic(broker_address)
    producer = Producer({"bootstrap.servers": broker_address, "linger.ms": 0})
    with Follower(broker_address, topic, lambda r: r.get("SessionKey")) as follower:
        for key in range(3, 8):
            _publish(producer, topic, {"SessionKey": key})
            assert follower.get(key) == {"SessionKey": key}
