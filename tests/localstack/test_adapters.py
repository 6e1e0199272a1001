"""Serverless adapters over the stateless ingest core, with recorded events (tests/fixtures/serverless).

Every platform event carries the same inbound records (real OpenF1 records + two labelled
synthetic bad ones); each adapter must give exactly the outputs of the core called on the
records directly. Bad events fail with a clear error; retried batches add no output.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import azure.functions as func
import boto3
import pytest
from cloudevents.http import from_http
from moto import mock_aws

from stratx.functions import catalog, inbound, schemas
from stratx.functions.inbound import InboundRecord
from stratx.localstack.adapters import aws_lambda, azure_functions, cloudevents_http, runtime
from stratx.localstack.adapters.runtime import BadEventError, BatchFailedError, ListSink, MemoryStore, Runtime

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "serverless"


def load(name: str) -> Any:
    return json.loads((FIX / name).read_text())


def records(drop_keys: bool = False) -> list[InboundRecord]:
    return [
        InboundRecord(
            topic=r["topic"],
            partition=r["partition"],
            offset=r["offset"],
            timestamp_ms=r["timestamp"],
            key=None if drop_keys else r["key"].encode(),
            value=r["value"].encode(),
            headers=tuple((k, v.encode()) for k, v in r["headers"]),
        )
        for r in load("records.json")
    ]


def by_source(outputs: list[inbound.OutboundRecord]) -> dict[str, inbound.OutboundRecord]:
    out = {dict(o.headers)[inbound.SOURCE_HEADER].decode(): o for o in outputs}
    assert len(out) == len(outputs), "one output per inbound record"
    return out


def expected(drop_keys: bool = False) -> dict[str, inbound.OutboundRecord]:
    return by_source(inbound.transform_batch(records(drop_keys)))


def fresh() -> Runtime:
    return Runtime(MemoryStore(), ListSink())


def run_aws(event: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    return aws_lambda.make_handler(rt)(event, None)


def run_knative(requests: list[dict[str, Any]], rt: Runtime) -> None:
    for req in requests:
        status, answer = cloudevents_http.handle_http(
            req["headers"], base64.b64decode(req["body_base64"]), rt
        )
        assert status == 200, answer


def run_functions_framework(requests: list[dict[str, Any]], rt: Runtime) -> None:
    """What functions-framework hands the function: the request parsed by the cloudevents SDK."""
    for req in requests:
        event = from_http(req["headers"], base64.b64decode(req["body_base64"]))
        cloudevents_http.process_batch([cloudevents_http.record_from_cloud_event(event)], rt.store, rt.sink)


def azure_batch(items: list[dict[str, Any]]) -> list[func.KafkaEvent]:
    return [func.KafkaEvent(body=json.dumps(item).encode()) for item in items]


# --- the core ----------------------------------------------------------------------------------------
def test_core_outputs_real_records_and_dead_letters() -> None:
    outs = inbound.transform_batch(records())
    topics = [o.topic for o in outs]
    # Canada: 6 samples + 2 with the feed's invalid throttle (kept, Throttle None); Las Vegas 2 x 4
    assert topics.count(catalog.CAR_TELEMETRY.name) == 6 + 2 + 8
    assert topics.count(catalog.CAR_POSITION.name) == 6
    assert topics.count(catalog.WEATHER.name) == 3
    dead = [
        schemas.DeadLetter.model_validate_json(o.value) for o in outs if o.topic == catalog.DEAD_LETTER.name
    ]
    reasons = " | ".join(d.Reason for d in dead)
    assert len(dead) == 2 + 1 + 2, reasons  # 2 gear glitches (nGear > 8), 1 lap, 2 synthetic
    assert "needs session state" in reasons and "no OpenF1 endpoint" in reasons and "not JSON" in reasons
    assert all(d.Stage == inbound.STAGE and d.SourceTopic == catalog.INBOUND_OPENF1.name for d in dead)
    for o in outs:
        if o.topic == catalog.CAR_TELEMETRY.name:
            payload = schemas.CarTelemetry.model_validate_json(o.value)
            assert o.key == f"{payload.SessionKey}:{payload.DriverNumber}".encode()
            assert payload.Seq == int(dict(o.headers)[inbound.SOURCE_HEADER].decode().rsplit("/", 1)[1])
            assert payload.Date is not None and o.timestamp_ms == round(payload.Date.timestamp() * 1000)
        if o.topic == catalog.WEATHER.name:
            assert o.key == b"9531"


def test_core_is_deterministic_and_matches_the_live_normaliser() -> None:
    first, second = inbound.transform_batch(records()), inbound.transform_batch(records())
    assert first == second  # byte-identical, dead letters included (no wall clock)
    raw = load("records.json")[0]
    rec = json.loads(raw["value"])
    ctx = inbound.openf1.SessionContext(rec["session_key"], inbound.openf1.parse_date(raw["headers"][1][1]))
    live = inbound.openf1.NORMALISERS["car_data"](rec, ctx, raw["offset"])
    assert not isinstance(live, inbound.ingest.Rejected)
    assert first[0].value == inbound.ingest.encode(live)


def test_throttle_sentinel_is_mapped_not_rejected() -> None:
    """The feed's 104 throttle is 'invalid' (None), not a bad record; gear > 8 is rejected."""
    outs = by_source(inbound.transform_batch(records()))
    raws = load("records.json")
    for r in raws:
        value = json.loads(r["value"]) if r["label"] == "real" else None
        if value is None or "throttle" not in value:
            continue
        out = outs[f"{r['topic']}/{r['partition']}/{r['offset']}"]
        if value["n_gear"] > 8:
            assert out.topic == catalog.DEAD_LETTER.name
        elif value["throttle"] == 104:
            assert out.topic == catalog.CAR_TELEMETRY.name
            assert json.loads(out.value)["Throttle"] is None


# --- each format -> the core -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,drop_keys",
    [
        ("aws_self_managed_kafka.json", False),
        ("aws_msk.json", False),
        ("aws_self_managed_kafka_legacy.json", True),
    ],
)
def test_aws_events_give_the_core_outputs(name: str, drop_keys: bool) -> None:
    rt = fresh()
    answer = run_aws(load(name), rt)
    assert answer["batchItemFailures"] == [] and answer["stratx"]["processed"] == len(load("records.json"))
    assert isinstance(rt.sink, ListSink)
    assert by_source(rt.sink.records) == expected(drop_keys)


def test_legacy_event_has_string_partitions_and_no_key() -> None:
    event = load("aws_self_managed_kafka_legacy.json")
    item = next(iter(event["records"].values()))[0]
    assert event["eventSource"] == "aws:SelfManagedKafka" and isinstance(item["partition"], str)
    assert "key" not in item
    parsed = aws_lambda.parse_event(event)
    assert all(r.key is None for r in parsed) and {r.partition for r in parsed} == {0, 1, 2, 5}


@pytest.mark.parametrize(
    "runner", [run_knative, run_functions_framework], ids=["wsgi-handler", "functions-framework"]
)
@pytest.mark.parametrize("name", ["knative_binary.json", "knative_structured.json"])
def test_cloudevents_give_the_core_outputs(name: str, runner: Any) -> None:
    rt = fresh()
    runner(load(name), rt)
    assert isinstance(rt.sink, ListSink)
    assert by_source(rt.sink.records) == expected()


def test_azure_events_give_the_core_outputs() -> None:
    rt = fresh()
    result = azure_functions.handle_events(azure_batch(load("azure_kafka_events.json")), rt)
    assert result.processed == len(load("records.json"))
    assert isinstance(rt.sink, ListSink)
    assert by_source(rt.sink.records) == expected()


def test_azure_function_is_registered_as_a_kafka_trigger() -> None:
    functions = azure_functions.app.get_functions()
    assert [f.get_function_name() for f in functions] == ["ingest_kafka"]
    binding = functions[0].get_bindings()[0].get_dict_repr()
    assert binding["type"] == "kafkaTrigger" and binding["cardinality"] == func.Cardinality.MANY
    assert binding["topic"] == catalog.INBOUND_OPENF1.name


def test_wsgi_app_serves_one_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    rt = fresh()
    monkeypatch.setattr(runtime, "_DEFAULT", rt)
    req = load("knative_binary.json")[0]
    body = base64.b64decode(req["body_base64"])
    environ = {
        f"HTTP_{k.upper().replace('-', '_')}": v for k, v in req["headers"].items() if k != "content-type"
    }
    environ.update(
        CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)), **{"wsgi.input": io.BytesIO(body)}
    )
    seen: list[str] = []
    answer = b"".join(cloudevents_http.wsgi_app(environ, lambda status, headers: seen.append(status)))
    assert seen == ["200 OK"] and json.loads(answer)["processed"] == 1
    assert isinstance(rt.sink, ListSink) and len(rt.sink.records) == 1


# --- bad events -----------------------------------------------------------------------------------------
def _aws_first(event: dict[str, Any]) -> dict[str, Any]:
    return next(iter(event["records"].values()))[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda e: e.pop("records"), "missing 'records'"),
        (lambda e: e.update(eventSource="aws:sqs"), "eventSource 'aws:sqs'"),
        (lambda e: _aws_first(e).update(value="not base64!!"), "value: not valid base64"),
        (lambda e: _aws_first(e).update(key=12), "key: expected a base64 string"),
        (lambda e: _aws_first(e).update(partition="zero"), "partition: expected an integer"),
        (lambda e: _aws_first(e).pop("offset"), "missing 'offset'"),
        (lambda e: _aws_first(e).update(headers=[{"h": "text"}]), "list of byte values"),
    ],
    ids=["no-records", "wrong-source", "bad-base64", "bad-key", "bad-partition", "no-offset", "bad-header"],
)
def test_bad_aws_events_fail_clearly(mutate: Any, message: str) -> None:
    event = copy.deepcopy(load("aws_self_managed_kafka.json"))
    mutate(event)
    rt = fresh()
    with pytest.raises(BadEventError, match=message):
        run_aws(event, rt)
    assert isinstance(rt.sink, ListSink) and rt.sink.records == []  # nothing half-done


def _binary(i: int = 0) -> tuple[dict[str, str], bytes]:
    req = load("knative_binary.json")[i]
    return dict(req["headers"]), base64.b64decode(req["body_base64"])


def test_bad_cloudevents_fail_clearly() -> None:
    headers, body = _binary()
    del headers["ce-id"]
    status, answer = cloudevents_http.handle_http(headers, body, fresh())
    assert status == 400 and "missing header(s) ce-id" in answer["error"]
    status, answer = cloudevents_http.handle_http(
        {"content-type": "application/cloudevents+json"}, b"{not json", fresh()
    )
    assert status == 400 and "body is not JSON" in answer["error"]
    headers, body = _binary()
    headers["ce-subject"], headers["ce-id"] = "no-position", "x-1"
    status, answer = cloudevents_http.handle_http(headers, body, fresh())
    assert status == 400 and "no Kafka position" in answer["error"]
    headers, body = _binary()
    headers["ce-source"] = "/apis/v1/namespaces/stratx/kafkasources/stratx-ingest"
    status, answer = cloudevents_http.handle_http(headers, body, fresh())
    assert status == 400 and "does not end with '#<topic>'" in answer["error"]


def test_non_json_record_value_is_a_dead_letter_not_an_error() -> None:
    """A bad *record* inside a good event goes to the dead letters; the pipeline keeps going."""
    headers, _ = _binary()
    rt = fresh()
    status, _answer = cloudevents_http.handle_http(headers, b"speed=224", rt)
    assert status == 200 and isinstance(rt.sink, ListSink)
    (out,) = rt.sink.records
    letter = schemas.DeadLetter.model_validate_json(out.value)
    assert (
        out.topic == catalog.DEAD_LETTER.name
        and "not JSON" in letter.Reason
        and letter.Payload == "speed=224"
    )


def test_bad_azure_events_fail_clearly() -> None:
    with pytest.raises(BadEventError, match="not the trigger's JSON record view"):
        azure_functions.handle_events([func.KafkaEvent(body=b"not json")], fresh())
    item = dict(load("azure_kafka_events.json")[0])
    del item["Offset"]
    item["Value"] = item.pop("Value")
    with pytest.raises(BadEventError, match="missing Offset"):
        azure_functions.handle_events(azure_batch([item]), fresh())
    item = dict(load("azure_kafka_events.json")[0], Partition="0")
    with pytest.raises(BadEventError, match="Partition must be an integer"):
        azure_functions.handle_events(azure_batch([item]), fresh())


# --- idempotency: retries and partial failures ------------------------------------------------------------
def test_retried_batch_adds_no_output_on_every_adapter() -> None:
    rt = fresh()
    run_aws(load("aws_self_managed_kafka.json"), rt)
    run_aws(load("aws_msk.json"), rt)  # the same records through another mapping: all skipped
    again = run_aws(load("aws_self_managed_kafka.json"), rt)
    run_knative(load("knative_binary.json"), rt)
    azure_functions.handle_events(azure_batch(load("azure_kafka_events.json")), rt)
    assert again["stratx"]["skipped"] == len(load("records.json")) and again["stratx"]["outputs"] == 0
    assert isinstance(rt.sink, ListSink)
    assert by_source(rt.sink.records) == expected()  # by_source asserts one output per record


def test_partial_failure_is_retried_safely_by_raising() -> None:
    store = MemoryStore()
    failing = ListSink(fail_on={f"{catalog.INBOUND_OPENF1.name}/1/3"})
    event = load("aws_self_managed_kafka.json")
    with pytest.raises(BatchFailedError, match="/1/3"):
        run_aws(event, Runtime(store, failing))
    delivered = len(failing.records)
    assert 0 < delivered < len(load("records.json"))
    failing.fail_on.clear()  # the sink recovers; Lambda retries the whole batch
    answer = run_aws(event, Runtime(store, failing))
    assert answer["stratx"]["skipped"] == delivered
    assert by_source(failing.records) == expected()  # every record exactly once


def test_partial_failure_reports_batch_item_failures() -> None:
    store = MemoryStore()
    failing = ListSink(fail_on={f"{catalog.INBOUND_OPENF1.name}/1/3"})
    rt = Runtime(store, failing, report_batch_item_failures=True)
    event = load("aws_msk.json")
    answer = run_aws(event, rt)
    failures = answer["batchItemFailures"]
    assert {
        "itemIdentifier": {"topic-partition": f"{catalog.INBOUND_OPENF1.name}-1", "offset": 3}
    } in failures
    # every failed item is the first unprocessed record of its partition
    for item in failures:
        assert set(item["itemIdentifier"]) == {"topic-partition", "offset"}
    failing.fail_on.clear()
    run_aws(event, rt)  # Lambda re-delivers from the reported offsets; a whole batch here
    assert by_source(failing.records) == expected()


def test_dynamodb_store_conditional_put_skips_processed_records() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="stratx-idempotency",
            KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        store = runtime.DynamoDBStore("stratx-idempotency", client)
        sink = ListSink(fail_on={f"{catalog.INBOUND_OPENF1.name}/2/1"})
        event = load("aws_self_managed_kafka.json")
        with pytest.raises(BatchFailedError):
            run_aws(event, Runtime(store, sink))
        sink.fail_on.clear()
        run_aws(event, Runtime(store, sink))
        run_aws(event, Runtime(store, sink))
        assert by_source(sink.records) == expected()
        assert store.mark(f"{catalog.INBOUND_OPENF1.name}/0/0") is False  # conditional put refuses
        assert store.seen([f"{catalog.INBOUND_OPENF1.name}/0/0", "other/0/0"]) == {
            f"{catalog.INBOUND_OPENF1.name}/0/0"
        }


def test_flush_failure_marks_nothing() -> None:
    class FlushFails(ListSink):
        def flush(self) -> None:
            raise ConnectionError("broker gone")

    store = MemoryStore()
    with pytest.raises(BatchFailedError, match="flush"):
        run_aws(load("aws_msk.json"), Runtime(store, FlushFails()))
    assert store.ids == set()


def sqs_event(kafka_event: dict[str, Any]) -> dict[str, Any]:
    """The replay queue's Lambda event (documented SQS envelope, constructed): one Kafka record per body."""
    items = [item for group in kafka_event["records"].values() for item in group]
    return {
        "Records": [
            {
                "messageId": f"msg-{i}",
                "receiptHandle": f"handle-{i}",
                "body": json.dumps(item),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(item["timestamp"])},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:stratx-replay",
                "awsRegion": "eu-west-1",
            }
            for i, item in enumerate(items)
        ]
    }


def test_replay_queue_messages_give_the_core_outputs_once() -> None:
    rt = fresh()
    event = sqs_event(load("aws_self_managed_kafka.json"))
    answer = run_aws(event, rt)
    assert answer["batchItemFailures"] == [] and answer["stratx"]["processed"] == len(load("records.json"))
    again = run_aws(event, rt)  # SQS redelivers the same messages: nothing new
    assert again["stratx"]["skipped"] == len(load("records.json"))
    run_aws(load("aws_self_managed_kafka.json"), rt)  # the same records from Kafka: skipped too
    assert isinstance(rt.sink, ListSink)
    assert by_source(rt.sink.records) == expected()


def test_replay_queue_reports_failed_messages_by_id() -> None:
    failing = ListSink(fail_on={f"{catalog.INBOUND_OPENF1.name}/1/3"})
    rt = Runtime(MemoryStore(), failing, report_batch_item_failures=True)
    event = sqs_event(load("aws_self_managed_kafka.json"))
    answer = run_aws(event, rt)
    ids = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    bodies = {m["messageId"]: json.loads(m["body"]) for m in event["Records"]}
    assert ids and all(isinstance(i, str) for i in ids)
    assert any(bodies[i]["partition"] == 1 and bodies[i]["offset"] == 3 for i in ids)
    failing.fail_on.clear()
    run_aws({"Records": [m for m in event["Records"] if m["messageId"] in ids]}, rt)
    assert by_source(failing.records) == expected()


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda m: m.update(eventSource="aws:sns"), "is not 'aws:sqs'"),
        (lambda m: m.update(body="{not json"), "not JSON"),
        (lambda m: m.pop("messageId"), "messageId"),
        (lambda m: m.update(body=json.dumps({"topic": "t"})), "missing 'partition'"),
    ],
)
def test_bad_replay_queue_messages_fail_clearly(mutate: Any, message: str) -> None:
    event = sqs_event(load("aws_self_managed_kafka.json"))
    mutate(event["Records"][0])
    with pytest.raises(BadEventError, match=message):
        run_aws(event, fresh())


@pytest.mark.parametrize("adapter", ["aws_lambda", "cloudevents_http", "azure_functions"])
def test_a_handler_imports_neither_pandas_nor_numpy(adapter: str) -> None:
    """The record-level path stays light: pandas + numpy cost ~0.85 s of every cold start."""
    import subprocess
    import sys

    code = (
        f"import sys, stratx.localstack.adapters.{adapter}; "
        "print(sorted(m for m in ('pandas', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
