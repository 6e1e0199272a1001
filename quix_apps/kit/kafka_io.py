"""Small broker helpers shared by the apps, the CLI, tests and benchmarks (confluent-kafka)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth

POLL_S = 0.05  # one batch consume of read_all (it always lasts this long unless `batch` messages come)
FETCH_WAIT_MS = 10  # read_all's broker fetch wait at the end of a partition


def read_all(
    broker_address: str,
    topic: str,
    timeout_s: float = 10.0,
    batch: int = 10_000,
    drain_s: float = 1.0,
    auth: KafkaAuth = PLAINTEXT,
) -> Iterator[Message]:
    """Every message currently in ``topic``, all partitions, from the beginning (``auth``: TLS / SASL).

    Reads up to the high watermarks, then keeps reading until nothing arrives for ``drain_s``:
    Tansu reports a partition's high watermark as the first offset of its last batch + 1, so the
    watermark alone can stop short of the real end. Short polls and fetch waits (``POLL_S``,
    ``FETCH_WAIT_MS``): librdkafka's batch consume waits out its whole timeout unless ``batch``
    messages come, and Tansu answers an empty fetch only after ``fetch.wait.max.ms``, so the
    defaults (0.25 s polls, 500 ms fetches) added about 0.5 s to every read.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": broker_address,
            "group.id": f"stratx-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "socket.timeout.ms": int(timeout_s * 1000),
            "fetch.wait.max.ms": FETCH_WAIT_MS,
            **auth.librdkafka(),
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        if meta.topics[topic].error is not None:
            raise KafkaException(meta.topics[topic].error)
        parts = sorted(meta.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in parts
        }
        remaining = {p for p in parts if ends[p] > 0}
        if not remaining:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        idle = 0.0
        while True:
            msgs = consumer.consume(batch, timeout=POLL_S)
            if not msgs:
                idle += POLL_S
                if not remaining and idle >= drain_s:
                    return
                if remaining and idle > timeout_s:
                    raise TimeoutError(f"{topic}: stalled with partitions {sorted(remaining)} unread")
                continue
            idle = 0.0
            for msg in msgs:
                if msg.error():
                    raise KafkaException(msg.error())
                yield msg
                if msg.offset() + 1 >= ends[msg.partition()]:
                    remaining.discard(msg.partition())
    finally:
        consumer.close()


def produce_json(
    broker_address: str,
    topic: str,
    key: str,
    value: dict[str, object],
    timeout_s: float = 10.0,
    auth: KafkaAuth = PLAINTEXT,
) -> None:
    """Produce one JSON record and wait for its delivery (tests, tools; not a hot path)."""
    import json

    from confluent_kafka import Producer

    errors: list[object] = []
    producer = Producer(
        {"bootstrap.servers": broker_address, "partitioner": "murmur2_random", **auth.librdkafka()}
    )
    producer.produce(
        topic, key=key.encode(), value=json.dumps(value).encode(), on_delivery=lambda e, _m: errors.append(e)
    )
    if producer.flush(timeout_s) or any(errors):
        raise KafkaException(f"delivery to {topic} failed: {errors}")
