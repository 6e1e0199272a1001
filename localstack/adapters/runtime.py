"""What every serverless adapter shares: the idempotency store, the output sink, the batch loop.

Delivery from every platform is at least once, so :func:`process_batch` is safe to repeat:

1. it asks the store which records (``<topic>/<partition>/<offset>``) were already processed and
   skips them;
2. it sends the outputs of the others (:func:`stratx.functions.inbound.transform`, deterministic)
   to the sink, stopping at the first record whose outputs cannot be sent;
3. it flushes the sink and only then marks the records whose outputs were delivered.

A retried batch therefore produces no new output, and after a partial failure the retry sends
only the records that were not delivered. If the process dies between the flush and the marks,
the retry re-sends byte-identical records (same key, value, timestamp, headers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stratx.functions import catalog, inbound
from stratx.functions.inbound import InboundRecord, OutboundRecord
from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth

log = logging.getLogger(__name__)


class BadEventError(ValueError):
    """The platform event is not in the expected shape (a clear message says what is wrong)."""


class BatchFailedError(RuntimeError):
    """Some records' outputs could not be delivered; the platform must retry the batch."""


# --- idempotency stores ---------------------------------------------------------------------------
class IdempotencyStore(Protocol):
    def seen(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` already processed."""
        ...

    def mark(self, source_id: str) -> bool:
        """Remember ``source_id`` as processed; False if it already was (conditional write)."""
        ...


class MemoryStore:
    """Processed ids in memory: enough for one warm instance and for tests."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def seen(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self.ids}

    def mark(self, source_id: str) -> bool:
        if source_id in self.ids:
            return False
        self.ids.add(source_id)
        return True


class NullStore:
    """No idempotency store: duplicates are left to the deterministic outputs."""

    def seen(self, ids: Sequence[str]) -> set[str]:
        return set()

    def mark(self, source_id: str) -> bool:
        return True


class DynamoDBStore:
    """Processed ids in a DynamoDB table (partition key ``Id``, string), written with a conditional
    put (``attribute_not_exists(Id)``) so two concurrent invocations cannot both claim a record.
    The table is created by ``localstack/deploy.py`` (``STRATX_IDEMPOTENCY_TABLE``)."""

    KEY = "Id"

    def __init__(self, table: str, client: Any | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.table, self.client = table, client

    def seen(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 100):  # BatchGetItem takes at most 100 keys
            request: dict[str, Any] = {
                self.table: {
                    "Keys": [{self.KEY: {"S": i}} for i in unique[start : start + 100]],
                    "ProjectionExpression": self.KEY,
                }
            }
            for attempt in range(8):
                answer = self.client.batch_get_item(RequestItems=request)
                found |= {item[self.KEY]["S"] for item in answer.get("Responses", {}).get(self.table, [])}
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise BatchFailedError(f"DynamoDB {self.table}: keys still unprocessed after retries")
        return found

    def mark(self, source_id: str) -> bool:
        try:
            self.client.put_item(
                TableName=self.table,
                Item={self.KEY: {"S": source_id}, "ProcessedAt": {"N": str(int(time.time()))}},
                ConditionExpression=f"attribute_not_exists({self.KEY})",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True


# --- output sinks -------------------------------------------------------------------------------------
class Sink(Protocol):
    def send(self, record: OutboundRecord) -> None: ...

    def flush(self) -> None:
        """Block until every sent record is delivered; raise if any was not."""
        ...


@dataclass
class ListSink:
    """Collects outputs (tests, benchmarks); ``fail_on`` makes a send fail (partial-failure tests)."""

    records: list[OutboundRecord] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)  # source ids (stratx-source header) that fail

    def send(self, record: OutboundRecord) -> None:
        source = dict(record.headers).get(inbound.SOURCE_HEADER, b"").decode()
        if source in self.fail_on:
            raise ConnectionError(f"injected send failure for {source}")
        self.records.append(record)

    def flush(self) -> None:
        return None


class KafkaSink:
    """Outputs to Kafka through kafka-python (pure Python: no native library in the function's
    package); ``acks=all``, delivery confirmed on :meth:`flush`."""

    def __init__(self, bootstrap_servers: str, timeout_s: float = 30.0, auth: KafkaAuth = PLAINTEXT) -> None:
        from kafka import KafkaProducer

        self.timeout_s = timeout_s
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            linger_ms=5,
            retries=5,
            **auth.kafka_python(),
        )
        self.pending: list[Any] = []

    def send(self, record: OutboundRecord) -> None:
        self.pending.append(
            self.producer.send(
                record.topic,
                key=record.key,
                value=record.value,
                timestamp_ms=record.timestamp_ms,
                headers=list(record.headers),
            )
        )

    def flush(self) -> None:
        self.producer.flush(timeout=self.timeout_s)
        pending, self.pending = self.pending, []
        for future in pending:
            future.get(timeout=self.timeout_s)  # raises the delivery error, if any

    def close(self) -> None:
        self.producer.close(timeout=self.timeout_s)


# --- the batch loop -------------------------------------------------------------------------------------
@dataclass
class BatchResult:
    received: int = 0
    processed: int = 0  # records whose outputs were delivered in this call
    skipped: int = 0  # already processed (a retry)
    outputs: int = 0
    dead_letters: int = 0
    failed: list[InboundRecord] = field(default_factory=list)  # not delivered: retry these
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "processed": self.processed,
            "skipped": self.skipped,
            "outputs": self.outputs,
            "dead_letters": self.dead_letters,
            "failed": len(self.failed),
            "error": self.error,
        }

    def first_failures(self) -> list[InboundRecord]:
        """Per topic-partition, the first failed record (where a stream retry must restart)."""
        first: dict[tuple[str, int], InboundRecord] = {}
        for r in self.failed:
            current = first.get((r.topic, r.partition))
            if current is None or r.offset < current.offset:
                first[(r.topic, r.partition)] = r
        return [first[k] for k in sorted(first)]


def process_batch(records: Sequence[InboundRecord], store: IdempotencyStore, sink: Sink) -> BatchResult:
    """Skip processed records, send the others' outputs, flush, then mark them processed."""
    result = BatchResult(received=len(records))
    done = store.seen([r.source_id for r in records])
    sent: list[InboundRecord] = []
    claimed: set[str] = set()
    for index, record in enumerate(records):
        if record.source_id in done or record.source_id in claimed:
            result.skipped += 1
            continue
        outputs = inbound.transform(record)
        try:
            for out in outputs:
                sink.send(out)
        except Exception as exc:  # the sink failed: nothing after this record is attempted
            result.error = f"{record.source_id}: {type(exc).__name__}: {exc}"
            result.failed = [
                r for r in records[index:] if r.source_id not in done and r.source_id not in claimed
            ]
            break
        claimed.add(record.source_id)
        sent.append(record)
        result.outputs += len(outputs)
        result.dead_letters += sum(o.topic == catalog.DEAD_LETTER.name for o in outputs)
    try:
        sink.flush()
    except Exception as exc:  # nothing is confirmed: every record sent here is retried
        result.error = f"flush: {type(exc).__name__}: {exc}"
        result.failed = [*sent, *result.failed]
        result.outputs = result.dead_letters = 0
        return result
    for record in sent:
        store.mark(record.source_id)
    result.processed = len(sent)
    if result.error:
        log.warning("batch partly failed: %s", result.error)
    return result


@dataclass
class Runtime:
    """What an adapter needs at run time; built once per warm instance (or injected in tests)."""

    store: IdempotencyStore
    sink: Sink
    report_batch_item_failures: bool = False


_DEFAULT: Runtime | None = None


def default_runtime() -> Runtime:
    """The runtime from the environment (``IngestSettings``), built on the first invocation."""
    global _DEFAULT
    if _DEFAULT is None:
        from stratx.functions.settings import IngestSettings

        settings = IngestSettings()
        store: IdempotencyStore
        if settings.idempotency_backend == "dynamodb":
            store = DynamoDBStore(settings.idempotency_table)
        elif settings.idempotency_backend == "none":
            store = NullStore()
        elif settings.idempotency_backend == "memory":
            store = MemoryStore()
        else:
            raise ValueError(
                f"STRATX_IDEMPOTENCY_BACKEND={settings.idempotency_backend!r}: use memory, dynamodb or none"
            )
        _DEFAULT = Runtime(
            store,
            KafkaSink(settings.broker_address, auth=settings.kafka_auth()),
            settings.lambda_batch_item_failures,
        )
    return _DEFAULT
