"""CloudEvents over HTTP: Knative KafkaSource sinks and Google Cloud Run functions.

A Knative KafkaSource (https://knative.dev/docs/eventing/sources/kafka-source/) POSTs one
CloudEvent per Kafka record, in binary mode: ``ce-specversion``, ``ce-id``
(``partition:<N>/offset:<M>``), ``ce-source`` (``/apis/v1/namespaces/<ns>/kafkasources/<name>#<topic>``),
``ce-type`` (``dev.knative.kafka.event``), ``ce-subject`` (``partition:<N>#<offset>``), ``ce-time``
(the record timestamp), the record key in the ``key`` extension and each Kafka header as a
``kafkaheader<name>`` extension; the body is the record value. Structured mode
(``application/cloudevents+json``) carries the same attributes in one JSON object, the value in
``data`` (or ``data_base64``).

Entry points:

* :func:`ingest_cloud_event`: a functions-framework CloudEvent function (Cloud Run functions:
  ``functions-framework --target ingest_cloud_event --source <this file>``);
* :func:`handle_http` / :func:`wsgi_app`: plain request -> response for a Knative service, no web
  framework needed (``python -m stratx.localstack.adapters.cloudevents_http --host 0.0.0.0 --port 8080``
  in a container; the default is loopback).

Delivery: a 2xx answer acknowledges the record; a 5xx makes Knative (or Eventarc) retry it, a 4xx
is a malformed event that a retry cannot fix.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import functions_framework
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http

from stratx.functions.inbound import InboundRecord
from stratx.localstack.adapters.runtime import (
    BadEventError,
    BatchFailedError,
    BatchResult,
    Runtime,
    default_runtime,
    process_batch,
)

_SUBJECT = re.compile(r"^partition:(\d+)#(\d+)$")
_ID = re.compile(r"^partition:(\d+)/offset:(\d+)$")
HEADER_PREFIX = "kafkaheader"
_REQUIRED = ("specversion", "id", "source", "type")


def _position(attrs: Mapping[str, Any]) -> tuple[int, int]:
    for name, pattern in (("subject", _SUBJECT), ("id", _ID)):
        match = pattern.match(str(attrs.get(name) or ""))
        if match:
            return int(match.group(1)), int(match.group(2))
    raise BadEventError(
        f"CloudEvent {attrs.get('id')!r}: no Kafka position (subject 'partition:N#offset' or "
        f"id 'partition:N/offset:M'; got subject {attrs.get('subject')!r})"
    )


def _topic(attrs: Mapping[str, Any]) -> str:
    source = str(attrs.get("source") or "")
    if "#" not in source or not source.rsplit("#", 1)[1]:
        raise BadEventError(f"CloudEvent source {source!r} does not end with '#<topic>' (KafkaSource)")
    return source.rsplit("#", 1)[1]


def _time_ms(value: Any) -> int | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadEventError(f"CloudEvent time {value!r} is not RFC 3339") from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return round(parsed.timestamp() * 1000)


def _data_bytes(data: Any) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    # JSON data already decoded by the SDK: re-encoded compactly (the original bytes are gone)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def record_from_attributes(attrs: Mapping[str, Any], data: Any, has_time: bool = True) -> InboundRecord:
    """A KafkaSource CloudEvent (attributes + data) -> the Kafka record it carries."""
    missing = [name for name in _REQUIRED if not attrs.get(name)]
    if missing:
        raise BadEventError(f"CloudEvent: missing required attribute(s) {', '.join(missing)}")
    partition, offset = _position(attrs)
    key = attrs.get("key", attrs.get("partitionkey"))
    headers = tuple(
        (name[len(HEADER_PREFIX) :], str(value).encode())
        for name, value in sorted(attrs.items())
        if name.startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX)
    )
    return InboundRecord(
        topic=_topic(attrs),
        partition=partition,
        offset=offset,
        timestamp_ms=_time_ms(attrs.get("time")) if has_time else None,
        key=str(key).encode() if key is not None else None,
        value=_data_bytes(data),
        headers=headers,
    )


def record_from_cloud_event(event: CloudEvent, has_time: bool = True) -> InboundRecord:
    return record_from_attributes(event.get_attributes(), event.data, has_time)


def parse_request(headers: Mapping[str, str], body: bytes) -> InboundRecord:
    """An HTTP request (binary or structured mode) -> the Kafka record it carries."""
    lower = {k.lower(): v for k, v in headers.items()}
    structured = lower.get("content-type", "").startswith("application/cloudevents+json")
    if structured:
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadEventError(f"CloudEvent (structured mode): body is not JSON ({exc})") from None
        if not isinstance(envelope, dict):
            raise BadEventError("CloudEvent (structured mode): body is not a JSON object")
        missing = [name for name in _REQUIRED if not envelope.get(name)]
        if missing:
            raise BadEventError(f"CloudEvent: missing required attribute(s) {', '.join(missing)}")
        data: Any = envelope.get("data")
        if "data_base64" in envelope:
            try:
                data = base64.b64decode(str(envelope["data_base64"]), validate=True)
            except (binascii.Error, ValueError):
                raise BadEventError("CloudEvent (structured mode): data_base64 is not valid base64") from None
        attrs = {k: v for k, v in envelope.items() if k not in ("data", "data_base64")}
        return record_from_attributes(attrs, data, has_time="time" in envelope)
    missing = [f"ce-{name}" for name in _REQUIRED if not lower.get(f"ce-{name}")]
    if missing:
        raise BadEventError(f"CloudEvent (binary mode): missing header(s) {', '.join(missing)}")
    try:
        event = from_http(dict(headers), body, data_unmarshaller=lambda raw: raw)
    except GenericException as exc:
        raise BadEventError(f"CloudEvent: {exc}") from None
    return record_from_cloud_event(event, has_time="ce-time" in lower)


def _run(records: list[InboundRecord], runtime: Runtime) -> BatchResult:
    result = process_batch(records, runtime.store, runtime.sink)
    if result.failed:
        raise BatchFailedError(f"{len(result.failed)} record(s) not delivered: {result.error}")
    return result


def handle_http(
    headers: Mapping[str, str], body: bytes, runtime: Runtime | None = None
) -> tuple[int, dict[str, Any]]:
    """One HTTP delivery -> (status, JSON answer): 200 done, 400 bad event, 503 retry later."""
    try:
        record = parse_request(headers, body)
        result = _run([record], runtime or default_runtime())
    except BadEventError as exc:
        return 400, {"error": str(exc)}
    except BatchFailedError as exc:
        return 503, {"error": str(exc)}
    return 200, result.summary()


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI app over :func:`handle_http` (any WSGI server; the module's ``__main__`` uses wsgiref)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    headers = {
        key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    status, answer = handle_http(headers, body)
    text = {200: "200 OK", 400: "400 Bad Request", 503: "503 Service Unavailable"}[status]
    payload = json.dumps(answer).encode()
    start_response(text, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


@functions_framework.cloud_event
def ingest_cloud_event(event: CloudEvent) -> None:
    """Cloud Run functions / functions-framework entry point (raises so the platform retries)."""
    _run([record_from_cloud_event(event)], default_runtime())


def main(argv: list[str] | None = None) -> None:
    from wsgiref.simple_server import make_server

    parser = argparse.ArgumentParser(description="serve the CloudEvents ingest handler (Knative)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="listen address (loopback by default; 0.0.0.0 in a container)"
    )
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    with make_server(args.host, args.port, wsgi_app) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
