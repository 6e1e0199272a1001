"""AWS Lambda handler for Kafka event source mappings: self-managed Kafka (Redpanda) and Amazon MSK.

Event shape (https://docs.aws.amazon.com/lambda/latest/dg/with-kafka.html and
https://docs.aws.amazon.com/lambda/latest/dg/with-msk.html): ``eventSource`` is
``SelfManagedKafka`` (older events: ``aws:SelfManagedKafka``) or ``aws:kafka`` (MSK, with
``eventSourceArn``); ``records`` maps ``"<topic>-<partition>"`` to a list of records with
``topic``, ``partition`` (a number; a string in older events), ``offset``, ``timestamp`` (ms),
``timestampType``, ``key`` (base64; absent in older events and for null keys), ``value`` (base64)
and ``headers`` (a list of one-entry objects ``{name: [byte, ...]}``).

SQS (the replay queue the deploy script maps; moto and LocalStack's free edition run SQS triggers):
``Records`` with ``eventSource`` ``aws:sqs``; each message ``body`` is ONE Kafka record in the
shape above (``topic``, ``partition``, ``offset``, base64 ``key``/``value``, ...), so a record
re-driven through the queue keeps its source coordinates and the idempotency store still
recognises it. Failed messages are reported by ``messageId`` (``batchItemFailures``) when
``STRATX_LAMBDA_BATCH_ITEM_FAILURES`` is on (the mapping's ``ReportBatchItemFailures``).

Failures: the outputs of a record that cannot be delivered fail the batch. With
``STRATX_LAMBDA_BATCH_ITEM_FAILURES`` (the mapping has ``ReportBatchItemFailures``, provisioned
mode: https://docs.aws.amazon.com/lambda/latest/dg/kafka-retry-configurations.html) the handler
returns ``{"batchItemFailures": [{"itemIdentifier": {"topic-partition": ..., "offset": ...}}]}``
with the first failed record of each partition; otherwise it raises, and Lambda retries the whole
batch. Either way the idempotency store skips what was already delivered.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from stratx.functions.inbound import InboundRecord
from stratx.localstack.adapters.runtime import (
    BadEventError,
    BatchFailedError,
    Runtime,
    default_runtime,
    process_batch,
)

EVENT_SOURCES = ("SelfManagedKafka", "aws:SelfManagedKafka", "aws:kafka")
Handler = Callable[[Mapping[str, Any], Any], dict[str, Any]]


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BadEventError(f"{what}: expected a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadEventError(f"{what}: not valid base64 ({exc})") from None


def _headers(raw: Any, where: str) -> tuple[tuple[str, bytes], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadEventError(f"{where}: headers must be a list")
    out: list[tuple[str, bytes]] = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise BadEventError(f"{where}: a header must be an object {{name: [bytes]}}")
        for name, value in entry.items():
            if not isinstance(value, list) or not all(isinstance(b, int) and 0 <= b < 256 for b in value):
                raise BadEventError(f"{where}: header {name!r} must be a list of byte values")
            out.append((str(name), bytes(value)))
    return tuple(out)


def _int(value: Any, what: str) -> int:
    """A number, or a decimal string (older events give partitions as strings)."""
    if isinstance(value, bool):
        raise BadEventError(f"{what}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise BadEventError(f"{what}: expected an integer, got {value!r}")


def _record(item: Any, where: str) -> InboundRecord:
    """One Kafka record object of a Lambda event (also the body of a replay-queue message)."""
    if not isinstance(item, Mapping):
        raise BadEventError(f"{where}: expected an object")
    for name in ("topic", "partition", "offset", "value"):
        if name not in item:
            raise BadEventError(f"{where}: missing {name!r}")
    key = item.get("key")
    stamp = item.get("timestamp")
    return InboundRecord(
        topic=str(item["topic"]),
        partition=_int(item["partition"], f"{where}.partition"),
        offset=_int(item["offset"], f"{where}.offset"),
        timestamp_ms=_int(stamp, f"{where}.timestamp") if stamp is not None else None,
        key=_b64(key, f"{where}.key") if key is not None else None,
        value=_b64(item["value"], f"{where}.value") if item["value"] is not None else None,
        headers=_headers(item.get("headers"), where),
    )


def is_sqs_event(event: Any) -> bool:
    return isinstance(event, Mapping) and "Records" in event and "records" not in event


def parse_sqs_event(event: Mapping[str, Any]) -> list[tuple[str, InboundRecord]]:
    """A Lambda SQS event of the replay queue -> (messageId, Kafka record) pairs in message order."""
    messages = event.get("Records")
    if not isinstance(messages, list):
        raise BadEventError("Lambda SQS event: 'Records' must be a list of messages")
    out: list[tuple[str, InboundRecord]] = []
    for i, message in enumerate(messages):
        where = f"Records[{i}]"
        if not isinstance(message, Mapping):
            raise BadEventError(f"{where}: expected an object")
        if message.get("eventSource") != "aws:sqs":
            raise BadEventError(f"{where}: eventSource {message.get('eventSource')!r} is not 'aws:sqs'")
        message_id = message.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            raise BadEventError(f"{where}: missing 'messageId'")
        body = message.get("body")
        if not isinstance(body, str):
            raise BadEventError(f"{where}: 'body' must be a string (one Kafka record as JSON)")
        try:
            item = json.loads(body)
        except ValueError as exc:
            raise BadEventError(f"{where}.body: not JSON ({exc})") from None
        out.append((message_id, _record(item, f"{where}.body")))
    return out


def parse_event(event: Any) -> list[InboundRecord]:
    """A Lambda Kafka event -> its records in event order (partition by partition, offset order)."""
    if not isinstance(event, Mapping):
        raise BadEventError(f"Lambda Kafka event: expected an object, got {type(event).__name__}")
    source = event.get("eventSource")
    if source not in EVENT_SOURCES:
        raise BadEventError(f"Lambda Kafka event: eventSource {source!r} is not one of {EVENT_SOURCES}")
    groups = event.get("records")
    if not isinstance(groups, Mapping):
        raise BadEventError("Lambda Kafka event: missing 'records' (an object keyed by topic-partition)")
    out: list[InboundRecord] = []
    for group, items in groups.items():
        if not isinstance(items, list):
            raise BadEventError(f"records[{group!r}]: expected a list of records")
        for i, item in enumerate(items):
            out.append(_record(item, f"records[{group!r}][{i}]"))
    return out


def make_handler(runtime: Runtime | Callable[[], Runtime]) -> Handler:
    """A Lambda handler over ``runtime`` (or a factory called on the first invocation)."""

    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        if is_sqs_event(event):
            return _sqs(parse_sqs_event(event), runtime if isinstance(runtime, Runtime) else runtime())
        records = parse_event(event)
        rt = runtime if isinstance(runtime, Runtime) else runtime()
        result = process_batch(records, rt.store, rt.sink)
        if result.failed and not rt.report_batch_item_failures:
            raise BatchFailedError(
                f"{len(result.failed)} of {result.received} records failed: {result.error}"
            )
        failures = [
            {"itemIdentifier": {"topic-partition": f"{r.topic}-{r.partition}", "offset": r.offset}}
            for r in result.first_failures()
        ]
        return {"batchItemFailures": failures, "stratx": result.summary()}

    return handler


def _sqs(messages: list[tuple[str, InboundRecord]], rt: Runtime) -> dict[str, Any]:
    result = process_batch([record for _, record in messages], rt.store, rt.sink)
    if result.failed and not rt.report_batch_item_failures:
        raise BatchFailedError(f"{len(result.failed)} of {result.received} messages failed: {result.error}")
    failed = {r.source_id for r in result.failed}
    failures = [{"itemIdentifier": mid} for mid, record in messages if record.source_id in failed]
    return {"batchItemFailures": failures, "stratx": result.summary()}


# the function's entry point (STRATX_* settings from the Lambda environment)
handler = make_handler(default_runtime)
