"""The one builder of :class:`~stratx.functions.schemas.DeadLetter` records; pure (no I/O, no env).

Every producer of dead letters (replay, ``stratx live``, the serverless ingest core, the Quix
apps) calls :func:`build`, so every dead letter has the same shape:

* ``SourceTopic``: the topic (or ``openf1:<endpoint>``) the rejected record came from;
* ``Key``: the record's key; given, or ``<SessionKey>:<DriverNumber>`` (``<SessionKey>`` without a
  driver) read from the record, ``None`` when it carries no SessionKey;
* ``Reason``: ``<what>: <detail>`` (the text before the first colon is the reason category the
  apps' ``stratx_dead_letters_total`` metric counts); a schema failure is :func:`schema_reason`'s
  ``<Schema> schema: <field>: <message> (got <value>)``, up to three errors joined by ``; ``
  (then ``<n> more``);
* ``Payload``: the record as received: bytes decoded as UTF-8, anything else as sorted JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from stratx.functions import schemas
from stratx.functions.catalog import TopicSpec

REASON_INPUT_CHARS = 120  # a rejected value is quoted in the reason up to this many characters
REASON_ERRORS = 3  # errors of one ValidationError named in a reason; more are left out


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= REASON_INPUT_CHARS else f"{text[:REASON_INPUT_CHARS]}... ({len(text)} chars)"


def error_detail(exc: ValidationError, limit: int = REASON_ERRORS) -> str:
    """The first ``limit`` failures as ``<field>: <message> (got <value>)`` joined by ``; ``, then
    ``<n> more`` when there are more.

    The field is the error's location (``Windows.0.Speed``; ``record`` for the whole record). A
    missing field quotes no value (pydantic's input there is the whole record, not the field).
    """
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:limit]:
        field = ".".join(str(part) for part in error["loc"]) or "record"
        got = "" if error["type"] == "missing" else f" (got {_quoted(error.get('input'))})"
        parts.append(f"{field}: {error['msg']}{got}")
    if len(errors) > limit:
        parts.append(f"{len(errors) - limit} more")
    return "; ".join(parts)


def schema_reason(exc: ValidationError) -> str:
    """The reason for a record that fails its schema: ``<Schema> schema: <field>: <message> (got <value>)``,
    e.g. ``Lap schema: LapNumber: Input should be greater than or equal to 1 (got 0)``."""
    return f"{exc.title} schema: {error_detail(exc)}"


def record_key(record: Any) -> str | None:
    """``<SessionKey>:<DriverNumber>`` (``<SessionKey>`` without a driver) of a record, or ``None``
    when it is not a mapping with a SessionKey (e.g. a value that is not JSON)."""
    if not isinstance(record, Mapping) or record.get("SessionKey") is None:
        return None
    driver = record.get("DriverNumber")
    return f"{record['SessionKey']}" if driver is None else f"{record['SessionKey']}:{driver}"


def build(
    source: str | TopicSpec,
    record: Any,
    reason: str | ValidationError,
    *,
    stage: str,
    key: str | None = None,
    now: datetime | None = None,
) -> schemas.DeadLetter:
    """A dead letter for ``record``, rejected by ``stage`` while reading ``source``.

    ``record`` is the offending record as received (bytes: the raw value; otherwise a JSON-able
    value); ``reason`` is the text, or the :class:`ValidationError` it failed with (worded by
    :func:`schema_reason`); ``key`` defaults to :func:`record_key`; ``now`` to the wall clock.
    """
    if isinstance(record, bytes | bytearray):
        payload = bytes(record).decode("utf-8", "backslashreplace")
    else:
        payload = json.dumps(record, default=str, sort_keys=True)
    return schemas.DeadLetter(
        SourceTopic=source.name if isinstance(source, TopicSpec) else source,
        Key=record_key(record) if key is None else key,
        Reason=schema_reason(reason) if isinstance(reason, ValidationError) else reason,
        Payload=payload,
        Stage=stage,
        Date=now or datetime.now(UTC),
    )
