"""The one Kafka consumer of a dashboard server process (a daemon thread, held in pn.state.cache).

It assigns every partition of the dashboard topics itself (no consumer-group rebalance, so the
first records arrive in milliseconds): the low-rate topics (session info, timing, lap features,
predictions, alerts) from the beginning, so a dashboard opened mid-race still draws the whole
race trace and stint history; the high-rate ones (car telemetry, car positions, track gaps) from
their end, because only the latest sample per driver is shown. Records are folded into a
:class:`StateStore` that every browser session reads from with its own periodic callback.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth
from stratx.panel_app.state import LATEST_RAW_TOPICS, PARSED_TOPICS, StateStore
from stratx.quix_apps.kit import metrics

log = logging.getLogger(__name__)
APP = "dashboard"  # metrics app label
LAG_EVERY_S = 5.0


class SharedConsumer:
    """Reads the dashboard topics into ``store`` until :meth:`stop`; retries while topics are missing."""

    def __init__(
        self,
        broker_address: str,
        store: StateStore | None = None,
        session_timeout_ms: int = 6000,
        poll_s: float = 0.02,
        latest_from_end: bool = True,
        auth: KafkaAuth = PLAINTEXT,
    ) -> None:
        self.broker_address, self.auth = broker_address, auth
        self.store = store if store is not None else StateStore()
        self.session_timeout_ms = session_timeout_ms
        self.poll_s = poll_s
        self.latest_from_end = latest_from_end
        self.assigned = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stratx-dashboard-consumer", daemon=True)

    def start(self) -> SharedConsumer:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.broker_address,
                "group.id": f"stratx-dashboard-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "session.timeout.ms": self.session_timeout_ms,
                "fetch.wait.max.ms": 20,
                "socket.connection.setup.timeout.ms": 5000,
                **self.auth.librdkafka(),
            }
        )

    def _assignment(self, consumer: Consumer) -> list[TopicPartition]:
        meta = consumer.list_topics(timeout=5.0)
        parts: list[TopicPartition] = []
        for topic in (*PARSED_TOPICS, *LATEST_RAW_TOPICS):
            found = meta.topics.get(topic)
            if found is None or found.error is not None:
                continue
            start = OFFSET_END if (topic in LATEST_RAW_TOPICS and self.latest_from_end) else OFFSET_BEGINNING
            parts.extend(TopicPartition(topic, p, start) for p in sorted(found.partitions))
        return parts

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume_until_stopped()
            except KafkaException as exc:  # broker gone: report, back off, reconnect
                self.error = str(exc)
                log.warning("dashboard consumer: %s; reconnecting", exc)
                self._stop.wait(1.0)

    def _consume_until_stopped(self) -> None:
        consumer = self._consumer()
        try:
            wanted = len(PARSED_TOPICS) + len(LATEST_RAW_TOPICS)
            assignment = self._assignment(consumer)
            while len({tp.topic for tp in assignment}) < wanted and not self._stop.is_set():
                self._stop.wait(1.0)  # topics not created yet (the broker just started)
                assignment = self._assignment(consumer)
            consumer.assign(assignment)
            self.assigned.set()
            counters: dict[str | None, Any] = {}  # stratx_records_consumed_total{app="dashboard",topic}
            self.error = None
            next_lag = time.monotonic() + LAG_EVERY_S
            while not self._stop.is_set():
                if time.monotonic() >= next_lag:
                    record_lag(consumer, assignment)
                    next_lag = time.monotonic() + LAG_EVERY_S
                for msg in consumer.consume(5000, timeout=self.poll_s):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self.error = str(err)
                        continue
                    topic = msg.topic()
                    self.store.apply(topic, msg.key(), msg.value())
                    counter = counters.get(topic)
                    if counter is None:
                        counter = counters[topic] = metrics.RECORDS_CONSUMED.labels(APP, topic)
                    counter.inc()
        finally:
            consumer.close()


def record_lag(consumer: Consumer, assignment: list[TopicPartition]) -> None:
    """``stratx_consumer_lag_records{app="dashboard"}``: the last fetched high watermark minus the
    consumer's position, per partition (local state only, no broker round trip; partitions not
    fetched yet are skipped). The dashboard commits nothing, so position stands in for committed."""
    for tp in consumer.position(assignment):
        if tp.offset < 0:
            continue
        try:
            found = consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            continue
        high = found[1] if found is not None else -1
        if high >= 0:
            metrics.CONSUMER_LAG.labels(APP, tp.topic, str(tp.partition)).set(
                metrics.lag_of(high, 0, tp.offset)
            )


def wait_assigned(consumer: SharedConsumer, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if consumer.assigned.wait(0.05):
            return True
    return False
