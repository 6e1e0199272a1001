"""Restart without re-emitting: what an app already wrote to its output topic, read once at start.

Quix Streams commits offsets and state together every checkpoint (at-least-once; Tansu cannot run
Kafka transactions). After a hard kill the records processed since the last checkpoint are
processed again, from the same state, so they give the same outputs, which were often already
delivered. :class:`Emitted` reads the output topic once when the app starts and lets an output
through only if an equal record (same idempotency key, same value apart from the fields named in
``ignore``) is not already there. Each match is used once, so it only absorbs the repeats of one
restart; the read costs one pass over the topic (retention-bounded).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stratx.functions.kafka_auth import KafkaAuth

log = logging.getLogger(__name__)
Key = Callable[[dict[str, Any]], object]


def fingerprint(value: dict[str, Any], key: Key, ignore: frozenset[str] = frozenset()) -> tuple[object, str]:
    """The idempotency key and a canonical form of the value (``ignore``d fields left out)."""
    body = {k: v for k, v in value.items() if k not in ignore}
    return key(value), json.dumps(body, sort_keys=True, default=str)


class Emitted:
    """A filter callback: False for an output already on the topic (each seen record absorbs one)."""

    def __init__(
        self,
        seen: Iterable[dict[str, Any]],
        key: Key,
        ignore: frozenset[str] = frozenset(),
        topic: str = "",
        key_only: bool = False,
    ) -> None:
        """``key_only``: an output whose idempotency key is already on the topic is dropped whatever its
        value (first write wins: for outputs that depend on in-memory context lost in the kill)."""
        self._key, self._ignore, self._topic, self._key_only = key, ignore, topic, key_only
        self._seen: Counter[tuple[object, str]] = Counter(self._mark(v) for v in seen)
        self.loaded = sum(self._seen.values())
        self.suppressed = 0

    def _mark(self, value: dict[str, Any]) -> tuple[object, str]:
        return (self._key(value), "") if self._key_only else fingerprint(value, self._key, self._ignore)

    def __call__(self, value: dict[str, Any]) -> bool:
        mark = self._mark(value)
        if self._seen[mark] > 0:
            self._seen[mark] -= 1
            self.suppressed += 1
            log.info("already on %s, not re-emitted: %s", self._topic or "the output topic", mark[0])
            return False
        return True


def restart_filter(
    broker_address: str,
    topic: str,
    key: Key,
    ignore: frozenset[str] = frozenset(),
    key_only: bool = False,
    auth: KafkaAuth | None = None,
) -> Emitted:
    """An :class:`Emitted` over what ``topic`` holds when the app starts, the count logged
    (``auth`` as :func:`read_topic`'s)."""
    emitted = Emitted(read_topic(broker_address, topic, auth), key, ignore, topic, key_only)
    log.info("restart filter: %d records already on %s", emitted.loaded, topic)
    return emitted


def read_topic(broker_address: str, topic: str, auth: KafkaAuth | None = None) -> list[dict[str, Any]]:
    """Every JSON object currently on ``topic`` (anything else is not an output of ours); ``auth``:
    the app's TLS / SASL settings (``KafkaSettings.kafka_auth()``, default PLAINTEXT)."""
    from stratx.functions.kafka_auth import PLAINTEXT
    from stratx.quix_apps.kit import kafka_io

    out = []
    for message in kafka_io.read_all(broker_address, topic, drain_s=0.3, auth=auth or PLAINTEXT):
        try:
            value = json.loads(message.value() or b"")
        except (TypeError, ValueError):
            continue
        if isinstance(value, dict):
            out.append(value)
    return out
