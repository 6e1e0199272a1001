"""Follow a small topic in the background and look its records up by key without blocking.

The prediction app needs each session's SessionInfo (event, scheduled laps, driver names) for
every lap record. It used to read the whole session-info topic (:func:`kafka_io.read_all`) on the
first record of a session and again every 5 s while the session had not announced itself: a new
consumer, its metadata and a 0.2 s drain, ~0.4 s added to that record (the slowest record of the
1x benchmark, 431 ms of a 115 ms median: ``bench/pipeline_latency.py``). A :class:`Follower` keeps
one consumer on every partition from the beginning in a thread and folds each record into a dict
(the latest record per key wins), so a lookup is a dict read. Only the first lookup of a key that
is not there yet waits, for at most ``wait_s``, until the thread has completed polls that began
after the lookup (a record already published is then in); later lookups of that key return at
once, and the record is picked up whenever it arrives.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Hashable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth
from stratx.quix_apps.kit.kafka_io import FETCH_WAIT_MS, POLL_S

log = logging.getLogger(__name__)
FIRST_MISS_POLLS = 3  # completed polls to wait for on a key's first miss (a poll lasts ~POLL_S)


class Follower:
    """The latest record (a JSON object) per ``key_of(record)`` of ``topic``, kept current by a
    background consumer. Use as a context manager, or :meth:`close` it. Records that are not JSON
    objects, or whose key is None, are skipped (the topic's producers validate them)."""

    def __init__(
        self,
        broker_address: str,
        topic: str,
        key_of: Callable[[dict[str, Any]], Hashable | None],
        auth: KafkaAuth = PLAINTEXT,
        wait_s: float = 1.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.topic = topic
        self.wait_s = wait_s
        self._key_of = key_of
        self._latest: dict[Hashable, dict[str, Any]] = {}
        self._missed: set[Hashable] = set()
        self._polls = 0
        self._failed: str | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": broker_address,
                "group.id": f"stratx-follower-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "socket.timeout.ms": int(timeout_s * 1000),
                "fetch.wait.max.ms": FETCH_WAIT_MS,
                **auth.librdkafka(),
            }
        )
        meta = self._consumer.list_topics(topic, timeout=timeout_s)
        if meta.topics[topic].error is not None:
            self._consumer.close()
            raise KafkaException(meta.topics[topic].error)
        parts = sorted(meta.topics[topic].partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)
        self._thread.start()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def get(self, key: Hashable) -> dict[str, Any] | None:
        """The latest record of ``key``, or None. The first miss of a key waits (at most ``wait_s``)
        for the polls in flight, so a record published before the call is found."""
        with self._changed:
            if key in self._latest or key in self._missed or self._stop.is_set():
                return self._latest.get(key)
            target = self._polls + FIRST_MISS_POLLS
            self._changed.wait_for(
                lambda: key in self._latest or self._polls >= target or self._stop.is_set(),
                timeout=self.wait_s,
            )
            if key not in self._latest:
                self._missed.add(key)
            return self._latest.get(key)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                messages = self._consumer.consume(500, timeout=POLL_S)
                folded = [r for r in (self._parse(m) for m in messages) if r is not None]
                with self._changed:
                    for key, record in folded:
                        self._latest[key] = record
                    self._polls += 1
                    self._changed.notify_all()
        except KafkaException as exc:  # the broker went away for good: lookups stop waiting
            self._failed = str(exc)
            log.warning("following %s stopped: %s", self.topic, exc)
        finally:
            self._stop.set()
            with self._changed:
                self._changed.notify_all()
            self._consumer.close()

    def _parse(self, message: Any) -> tuple[Hashable, dict[str, Any]] | None:
        if message.error() is not None:
            return None
        try:
            record = json.loads(message.value() or b"")
        except (TypeError, ValueError):
            return None
        key = self._key_of(record) if isinstance(record, dict) else None
        return (key, record) if key is not None else None
