"""Azure Functions (Python v2 programming model): Kafka trigger, cardinality many.

With ``cardinality=MANY`` and ``data_type=STRING`` each ``func.KafkaEvent`` body is the trigger's
JSON view of one Kafka record (https://learn.microsoft.com/azure/azure-functions/functions-bindings-kafka-trigger):
``{"Offset": 364, "Partition": 0, "Topic": "...", "Timestamp": "2022-04-09T03:20:06.591Z",
"Key": "...", "Value": "<record value>", "Headers": [{"Key": "...", "Value": "..."}]}``.
A body that is not this JSON (``data_type=BINARY``) is taken as the value, with the position from
the event's metadata (``offset``, ``partition``, ``topic``, ``timestamp``, ``key``).

Deploy: copy this module's ``app`` into the function app's ``function_app.py``
(``from stratx.localstack.adapters.azure_functions import app``); app settings
``STRATX_BROKER_ADDRESS`` (the trigger's broker list and the output producer) and the other
``STRATX_*`` variables. The Kafka extension commits offsets even when the function fails, so the
function carries a retry policy (``@app.retry``); idempotency makes the retries safe.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from stratx.functions import catalog
from stratx.functions.inbound import InboundRecord
from stratx.localstack.adapters.runtime import (
    BadEventError,
    BatchFailedError,
    BatchResult,
    Runtime,
    default_runtime,
    process_batch,
)


def _time_ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadEventError(f"Kafka event Timestamp {value!r} is not ISO 8601") from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return round(parsed.timestamp() * 1000)


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def _header_value(value: Any, where: str) -> bytes:
    """Header values: a string as the trigger gives it, or ``{"base64": ...}`` for raw bytes."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and isinstance(value.get("base64"), str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadEventError(f"{where}: header value is not valid base64") from None
    raise BadEventError(f"{where}: header value must be a string")


def record_from_data(data: Any, where: str = "Kafka event") -> InboundRecord:
    """The trigger's JSON view of one record (``KafkaEventData``) -> the record."""
    if not isinstance(data, dict):
        raise BadEventError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [name for name in ("Offset", "Partition", "Topic", "Value") if name not in data]
    if missing:
        raise BadEventError(f"{where}: missing {', '.join(missing)}")
    for name in ("Offset", "Partition"):
        if not isinstance(data[name], int) or isinstance(data[name], bool):
            raise BadEventError(f"{where}: {name} must be an integer (got {data[name]!r})")
    headers = data.get("Headers") or []
    if not isinstance(headers, list) or not all(isinstance(h, dict) and "Key" in h for h in headers):
        raise BadEventError(f"{where}: Headers must be a list of {{Key, Value}} objects")
    return InboundRecord(
        topic=str(data["Topic"]),
        partition=data["Partition"],
        offset=data["Offset"],
        timestamp_ms=_time_ms(data.get("Timestamp")),
        key=_bytes(data.get("Key")),
        value=_bytes(data["Value"]),
        headers=tuple((str(h["Key"]), _header_value(h.get("Value"), where)) for h in headers),
    )


def record_from_event(event: func.KafkaEvent, index: int = 0) -> InboundRecord:
    """One ``func.KafkaEvent`` -> the record (JSON body, or binary body + metadata)."""
    where = f"Kafka event {index}"
    body = event.get_body()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and "Value" in data:
        return record_from_data(data, where)
    if event.offset is None or event.partition is None or event.topic is None:
        raise BadEventError(
            f"{where}: body is not the trigger's JSON record view (Offset/Partition/Topic/Value) "
            "and the event has no offset/partition/topic metadata"
        )
    return InboundRecord(
        topic=event.topic,
        partition=event.partition,
        offset=event.offset,
        timestamp_ms=_time_ms(event.timestamp),
        key=_bytes(event.key),
        value=body,
        headers=tuple(
            (str(h.get("Key")), _header_value(h.get("Value"), where))
            for h in (event.headers or [])
            if isinstance(h, dict)
        ),
    )


def handle_events(events: Sequence[func.KafkaEvent], runtime: Runtime) -> BatchResult:
    """A batch of trigger events through the core; raises if some outputs were not delivered."""
    records = [record_from_event(e, i) for i, e in enumerate(events)]
    result = process_batch(records, runtime.store, runtime.sink)
    if result.failed:
        raise BatchFailedError(f"{len(result.failed)} of {result.received} records failed: {result.error}")
    return result


app = func.FunctionApp()


@app.retry(strategy="exponential_backoff", max_retry_count="5", minimum_interval="00:00:01",
           maximum_interval="00:01:00")  # fmt: skip
@app.kafka_trigger(
    arg_name="events",
    topic=catalog.INBOUND_OPENF1.name,
    broker_list="%STRATX_BROKER_ADDRESS%",
    consumer_group="stratx-azure-ingest",
    cardinality=func.Cardinality.MANY,
    data_type=func.DataType.STRING,
)
def ingest_kafka(events: list[func.KafkaEvent]) -> None:
    handle_events(events, default_runtime())
