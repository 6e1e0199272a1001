"""Inbound OpenF1 records (Kafka records) -> StratX raw records + dead letters; stateless and pure.

The one core behind every stateless deployment of ingestion: the Quix app
(``quix_apps/ingest_app.py``) and the serverless adapters (``localstack/adapters/``) all turn their
platform's event into :class:`InboundRecord` and call :func:`transform_batch`.

Inbound contract (topic ``stratx.inbound.openf1``, :data:`catalog.INBOUND_OPENF1`):

* value: one OpenF1 API record as a JSON object, exactly as the API returns it;
* header ``openf1-endpoint`` (or, without it, the record key): the OpenF1 endpoint name;
* header ``openf1-session-start``: the session's ``date_start`` (ISO 8601), the clock origin of
  ``SessionTime`` (OpenF1 records do not carry it; the forwarder that polls ``/sessions`` does).

Header names match case-insensitively and ignoring ``-``/``_`` (Knative turns Kafka headers into
CloudEvents extensions such as ``kafkaheaderopenf1endpoint``).

Stateless endpoints only: ``car_data``, ``location``, ``intervals``, ``position``,
``race_control``, ``weather`` (one record -> one raw record). Laps, stints, pits and SessionInfo
need the session's drivers, stints and pit stops (state), so they stay with ``stratx live``; such
records here become dead letters that say so.

Determinism (delivery is at least once, so a retry must give the same bytes): ``Seq`` is the
inbound offset, the output key is ``<SessionKey>:<DriverNumber>`` (or ``<SessionKey>``), the
Kafka timestamp is the event's ``Date``, headers carry the source position and the OpenF1 event
id, and a dead letter's ``Date`` is the inbound record's timestamp, never the wall clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stratx.functions import catalog, dead_letters, ingest, openf1

STAGE = "ingest-fn"
ENDPOINT_HEADER = "openf1-endpoint"
SESSION_START_HEADER = "openf1-session-start"
SOURCE_HEADER = "stratx-source"  # <topic>/<partition>/<offset> of the inbound record
EVENT_ID_HEADER = "stratx-event-id"  # openf1.event_id of the record
STATELESS_ENDPOINTS = tuple(openf1.NORMALISERS)
_PAYLOAD_LIMIT = 10_000  # bytes of the original value kept in a dead letter

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class InboundRecord:
    """One Kafka record as every platform delivers it (decoded from its envelope)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    @property
    def source_id(self) -> str:
        """``<topic>/<partition>/<offset>``: the record's identity (idempotency key)."""
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class OutboundRecord:
    """One record to produce: a raw-topic record or a dead letter."""

    topic: str
    key: bytes
    value: bytes
    timestamp_ms: int | None
    headers: Headers = field(default_factory=tuple)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def header(record: InboundRecord, name: str) -> bytes | None:
    """The last value of header ``name`` (case and ``-``/``_`` insensitive), or None."""
    wanted = _norm(name)
    found = None
    for key, value in record.headers:
        if _norm(key) == wanted:
            found = value
    return found


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace").strip() if value is not None else None


def endpoint_of(record: InboundRecord) -> str | None:
    """The OpenF1 endpoint: the ``openf1-endpoint`` header, else the key if it names one."""
    named = _text(header(record, ENDPOINT_HEADER))
    if named:
        return named
    key = _text(record.key)
    return key if key in openf1.ENDPOINTS else None


def transform(record: InboundRecord) -> list[OutboundRecord]:
    """One inbound record -> its output: one raw record, or one dead letter with the reason."""
    endpoint = endpoint_of(record)
    if endpoint is None:
        return [_dead(record, f"no OpenF1 endpoint: set the {ENDPOINT_HEADER!r} header (or the key)")]
    if endpoint not in openf1.ENDPOINTS:
        return [_dead(record, f"unknown OpenF1 endpoint {endpoint!r}")]
    if endpoint not in STATELESS_ENDPOINTS:
        return [
            _dead(
                record,
                f"openf1 {endpoint}: needs session state (drivers, stints, pits); "
                "published by `stratx live`, not by the stateless ingest function",
            )
        ]
    if record.value is None:
        return [_dead(record, "empty value (tombstone)")]
    try:
        parsed = json.loads(record.value)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting too deep
        return [_dead(record, f"value is not JSON: {exc}")]
    if not isinstance(parsed, dict):
        return [_dead(record, f"value is a JSON {type(parsed).__name__}, not an OpenF1 record (object)")]
    start = _text(header(record, SESSION_START_HEADER))
    if not start:
        return [_dead(record, f"no session start: set the {SESSION_START_HEADER!r} header")]
    try:
        t0 = openf1.parse_date(start)
    except ValueError:
        return [_dead(record, f"{SESSION_START_HEADER} is not an ISO date (got {start!r})")]
    session_key = parsed.get("session_key")
    if not isinstance(session_key, int) or isinstance(session_key, bool):
        return [_dead(record, f"openf1 {endpoint}: session_key is not an integer (got {session_key!r})")]
    ctx = openf1.SessionContext(session_key, t0)
    out = openf1.NORMALISERS[endpoint](parsed, ctx, record.offset)
    if isinstance(out, ingest.Rejected):
        return [_dead(record, out.reason)]
    encoded = ingest.encode(out)
    if isinstance(encoded, ingest.Rejected):
        return [_dead(record, encoded.reason)]
    date = out.payload["Date"]
    headers: Headers = (
        (SOURCE_HEADER, record.source_id.encode()),
        (EVENT_ID_HEADER, openf1.event_id(endpoint, parsed).encode()),
    )
    return [OutboundRecord(out.topic.name, out.key.encode(), encoded, _ms(date), headers)]


def transform_batch(records: Iterable[InboundRecord]) -> list[OutboundRecord]:
    """Every record's outputs, in input order (same input -> byte-identical output)."""
    return [o for r in records for o in transform(r)]


def _ms(date: datetime) -> int:
    return round(date.timestamp() * 1000)


def _dead(record: InboundRecord, reason: str) -> OutboundRecord:
    """A dead letter for ``record``; every field derives from the record (no wall clock)."""
    when = (
        datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
        if record.timestamp_ms is not None
        else datetime.fromtimestamp(0, UTC)
    )
    key = _text(record.key) or record.source_id
    letter = dead_letters.build(
        record.topic,
        (record.value or b"")[:_PAYLOAD_LIMIT],
        f"{reason} [{record.source_id}]",
        stage=STAGE,
        key=key,
        now=when,
    )
    return OutboundRecord(
        catalog.DEAD_LETTER.name,
        key.encode(),
        letter.model_dump_json().encode(),
        record.timestamp_ms,
        ((SOURCE_HEADER, record.source_id.encode()),),
    )


# --- helpers shared by the producers of the inbound topic and by the adapters ---------------------


def inbound_headers(endpoint: str, session_start: datetime | str) -> Headers:
    """The headers a forwarder sets on an inbound record."""
    start = session_start.isoformat() if isinstance(session_start, datetime) else session_start
    return ((ENDPOINT_HEADER, endpoint.encode()), (SESSION_START_HEADER, start.encode()))


def inbound_key(record: Mapping[str, Any]) -> bytes:
    """A partitioning key for an inbound record: ``<session_key>:<driver_number>`` (or the session)."""
    driver = record.get("driver_number")
    return f"{record.get('session_key')}{'' if driver is None else f':{driver}'}".encode()


def as_dicts(outputs: Sequence[OutboundRecord]) -> list[dict[str, Any]]:
    """Outputs as plain comparable dicts (tests, parity checks)."""
    return [
        {
            "topic": o.topic,
            "key": o.key,
            "value": o.value,
            "timestamp_ms": o.timestamp_ms,
            "headers": tuple(o.headers),
        }
        for o in outputs
    ]
