"""Consumer lag: how far each consumer app's group is behind on its input topics.

:func:`lag_of` is the per-partition arithmetic and :class:`LagMonitor` the daemon thread that sets
``stratx_consumer_lag_records`` from committed offsets against the watermarks, with a consumer of
its own. Re-exported by :mod:`stratx.quix_apps.kit.metrics`, whose :func:`instrument_app` starts it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from stratx.functions.settings import KafkaSettings
from stratx.quix_apps.kit.metrics_registry import CONSUMER_LAG

log = logging.getLogger(__name__)


def lag_of(high: int, low: int, committed: int) -> int:
    """Records of a partition still to process: high watermark - committed offset (nothing
    committed yet: everything from the low watermark). Never negative: Tansu reports a partition's
    high watermark as the first offset of its last batch + 1, which can be below a committed offset."""
    start = committed if committed >= 0 else low
    return max(0, high - start)


class LagMonitor:
    """A daemon thread that sets ``stratx_consumer_lag_records`` for ``group`` on ``topics`` every
    ``interval_s``: committed offsets (OffsetFetch, no group join) against the watermarks, from a
    consumer of its own (the app's consumer is not thread-safe). Broker errors are logged and retried."""

    def __init__(
        self,
        app: str,
        settings: KafkaSettings,
        group: str,
        topics: Iterable[str],
        interval_s: float = 5.0,
    ) -> None:
        self.app, self.settings, self.group = app, settings, group
        self.topics = tuple(topics)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stratx-lag-{app}", daemon=True)

    def start(self) -> LagMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.broker_address,
                "group.id": self.group,
                "client.id": f"stratx-lag-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "session.timeout.ms": self.settings.consumer_session_timeout_ms,
                **self.settings.kafka_auth().librdkafka(),
            }
        )
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    self.update(consumer)
                except KafkaException as exc:
                    log.debug("%s lag: %s", self.app, exc)
        finally:
            consumer.close()

    def update(self, consumer: Any) -> dict[tuple[str, int], int]:
        """One measurement; returns {(topic, partition): lag} (also set on the gauge)."""
        from confluent_kafka import TopicPartition

        timeout = self.settings.connect_timeout_s
        meta = consumer.list_topics(timeout=timeout)
        parts = [
            TopicPartition(t, p)
            for t in self.topics
            if t in meta.topics and meta.topics[t].error is None
            for p in sorted(meta.topics[t].partitions)
        ]
        out: dict[tuple[str, int], int] = {}
        if not parts:
            return out
        for tp in consumer.committed(parts, timeout=timeout):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=timeout
            )
            lag = lag_of(high, low, tp.offset)
            out[(tp.topic, tp.partition)] = lag
            CONSUMER_LAG.labels(self.app, tp.topic, str(tp.partition)).set(lag)
        return out
