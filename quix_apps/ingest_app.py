"""Ingest app: ``stratx.inbound.openf1`` -> raw topics + dead letters, through the same stateless
core as the serverless adapters (:mod:`stratx.functions.inbound`).

Each inbound message becomes an :class:`~stratx.functions.inbound.InboundRecord` (topic,
partition, offset, timestamp, key, value, headers from the message context), the core returns its
output record, and the app produces it to the record's own topic with the record's key,
timestamp and headers. At least once: offsets are committed after the outputs are produced, and
a repeat gives byte-identical outputs.
"""

from __future__ import annotations

import sys
from typing import Any

from quixstreams import Application, message_context
from quixstreams.models import Topic
from quixstreams.models.serializers import Serializer

from stratx.functions import catalog, inbound
from stratx.functions.inbound import InboundRecord, OutboundRecord
from stratx.functions.settings import IngestSettings
from stratx.quix_apps.kit import wire

OUTPUT_TOPICS = (*catalog.RAW_TOPICS, catalog.DEAD_LETTER)


class _OutboundValue(Serializer):
    """Produces an :class:`OutboundRecord`'s value bytes as they are."""

    def __call__(self, value: OutboundRecord, ctx: Any) -> bytes:
        return value.value


def to_outputs(value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> list[OutboundRecord]:
    """The current message through the core (message position from the Quix message context)."""
    ctx = message_context()
    record = InboundRecord(
        topic=ctx.topic,
        partition=ctx.partition,
        offset=ctx.offset,
        timestamp_ms=timestamp,
        key=key,
        value=value,
        headers=tuple((str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in headers or ()),
    )
    return inbound.transform(record)


def build_app(settings: IngestSettings) -> Application:
    app = wire.application(settings, settings.ingest_consumer_group, state_dir=None)
    source = app.topic(catalog.INBOUND_OPENF1.name, key_deserializer="bytes", value_deserializer="bytes")
    outputs: dict[str, Topic] = {
        spec.name: app.topic(spec.name, key_serializer="bytes", value_serializer=_OutboundValue())
        for spec in OUTPUT_TOPICS
    }
    sdf = app.dataframe(source).apply(to_outputs, metadata=True, expand=True)
    sdf = sdf.set_timestamp(lambda out, _key, ts, _headers: out.timestamp_ms if out.timestamp_ms else ts)
    sdf = sdf.set_headers(lambda out, _key, _ts, _headers: list(out.headers))
    sdf.to_topic(lambda out, _key, _ts, _headers: outputs[out.topic], key=lambda out: out.key)
    return app


def main(settings: IngestSettings | None = None, idle_timeout: float = 0.0) -> int:
    """The deployable: the raw, inbound and dead-letter topics, then the stateless app until Ctrl-C /
    SIGTERM or ``idle_timeout`` seconds without input. Settings from the STRATX_* environment unless given."""
    settings = settings or IngestSettings()
    wire.ensure_topics(settings, (*catalog.ALL_TOPICS, *catalog.INBOUND_TOPICS))
    build_app(settings).run(timeout=idle_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
