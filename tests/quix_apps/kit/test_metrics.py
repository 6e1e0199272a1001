"""The metrics module: bounded labels (reason categories, HTTP statuses), exporter ports, lag
arithmetic, and the counters an instrumented app moves (no broker: a broker-less Quix app)."""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from quixstreams import Application
from quixstreams.context import MessageContext
from quixstreams.models import Topic, TopicConfig

from stratx.functions import catalog, ingest
from stratx.functions.features import telemetry as tl
from stratx.functions.features.laps import lap_step
from stratx.functions.racedata import RaceData
from stratx.functions.settings import KafkaSettings, MetricsSettings
from stratx.quix_apps import telemetry_features
from stratx.quix_apps.kit import metrics, wire
from stratx.quix_apps.kit.broker import free_port
from stratx.quix_apps.kit.model_client import ModelClient, RetryPolicy


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------ reason categories
def test_reason_categories_of_the_reasons_the_code_writes(las_vegas: RaceData) -> None:
    car = next(tl.car_records(las_vegas.filter_drivers({"VER"})))
    schema_reason = ingest.validate(ingest.RawRecord(car.topic, car.key, {**car.payload, "nGear": 9}))
    assert isinstance(schema_reason, ingest.Rejected)
    not_json = wire.parse(b"{nope")[wire.INVALID]
    not_object = wire.parse(b"[1, 2]")[wire.INVALID]
    sample = orjson.loads(ingest.encode(car))
    state, _ = tl.window_update(None, sample)
    _, dup = tl.window_update(state, sample)
    lap = orjson.loads(ingest.encode(next(ingest.table_records(las_vegas, "laps"))))
    session, _ = lap_step(None, lap)
    _, lap_dup = lap_step(session, lap)
    assert isinstance(lap_dup, str)
    cases = {
        schema_reason.reason: "schema",
        not_json: "not_json",
        not_object: "not_json",
        dup[0][tl.REJECTED]: "duplicate",
        lap_dup: "duplicate",
        "late: SessionTime 12.000 s is before the open window [15, 20) s": "late",
        "out of order: Seq 7 after Seq 9": "out_of_order",
        "openf1 laps: out of order (2023-11-19T06:00:00 < cursor 2023-11-19T06:01:00)": "out_of_order",
        "openf1 car_data: missing date": "openf1",
        "LapFeatures schema: Field required": "schema",
        "something nobody planned for: 12345": "other",
        "": "other",
    }
    got = {reason: metrics.reason_category(reason) for reason in cases}
    assert got == cases
    assert set(got.values()) <= set(metrics.REASONS)


def test_reason_label_cardinality_stays_bounded() -> None:
    before = value("stratx_dead_letters_total", app="unit", reason="other")
    for i in range(500):  # 500 distinct free-text reasons -> one label value
        metrics.dead_letter("unit", f"weird thing number {i}: detail {i * 7}")
    assert value("stratx_dead_letters_total", app="unit", reason="other") == before + 500
    reasons = {
        s.labels["reason"]
        for m in REGISTRY.collect()
        if m.name == "stratx_dead_letters"
        for s in m.samples
        if s.labels.get("app") == "unit"
    }
    assert reasons <= set(metrics.REASONS)


@pytest.mark.parametrize(
    ("status", "label"),
    [(200, "200"), (429, "429"), (503, "5xx"), (404, "4xx"), (204, "2xx"), (None, "error")],
)
def test_status_label(status: int | None, label: str) -> None:
    assert metrics.status_label(status) == label


# ------------------------------------------------------------------ ports, exporter
def test_every_app_has_its_own_port_and_one_variable_moves_them(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = {app: metrics.port(app, MetricsSettings()) for app in metrics.PORT_OFFSETS}
    assert len(set(ports.values())) == len(ports) and ports["replay"] == 9400 and ports["drift"] == 9410
    monkeypatch.setenv("STRATX_METRICS_PORT_BASE", "12000")
    moved = {app: metrics.port(app, KafkaSettings()) for app in metrics.PORT_OFFSETS}
    assert {app: p - 12000 for app, p in moved.items()} == metrics.PORT_OFFSETS


def test_serve_exposes_the_registry_and_tolerates_a_taken_port(monkeypatch: pytest.MonkeyPatch) -> None:
    base = free_port("127.0.0.1")
    monkeypatch.setattr(metrics, "_exporters", {})
    settings = MetricsSettings(metrics_port_base=base)
    assert metrics.serve("replay", settings.model_copy(update={"metrics_enabled": False})) is None
    metrics.RECORDS_PRODUCED.labels("replay", "stratx.raw.laps").inc(3)
    exporter = metrics.serve("replay", settings)
    assert exporter is not None and exporter.port == base
    try:
        assert metrics.serve("replay", settings) is exporter  # once per process
        text = urllib.request.urlopen(f"http://127.0.0.1:{base}/metrics", timeout=5).read().decode()
        assert 'stratx_records_produced_total{app="replay",topic="stratx.raw.laps"}' in text
        for name in ("stratx_processing_seconds_bucket", "stratx_model_calls_total"):
            assert f"# TYPE {name.removesuffix('_bucket').removesuffix('_total')}" in text
        with socket.socket() as taken:  # another process holds the lap app's port: no exporter, no crash
            try:
                taken.bind(("127.0.0.1", metrics.port("lap", settings)))
                taken.listen()
            except OSError:
                pass  # already held by some other process: just as taken
            assert metrics.serve("lap", settings) is None
    finally:
        exporter.close()


def test_lag_never_negative_on_short_high_watermarks() -> None:
    assert metrics.lag_of(high=100, low=0, committed=40) == 60
    assert metrics.lag_of(high=100, low=10, committed=-1001) == 90  # nothing committed yet
    assert metrics.lag_of(high=95, low=0, committed=100) == 0  # Tansu: watermark below the commit


def test_metric_names_follow_the_conventions() -> None:
    families = {m.name: m.type for m in REGISTRY.collect() if m.name.startswith("stratx_")}
    for name in metrics.METRIC_NAMES:
        base = name.removesuffix("_total")
        assert base in families, name
        kind = families[base]
        assert (kind == "counter") == name.endswith("_total")
        assert kind != "histogram" or name.endswith("_seconds")


# ------------------------------------------------------------------ an instrumented app
@pytest.fixture
def wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """The telemetry app's pipeline with its meter on a broker-less Application."""
    app = Application(
        broker_address="127.0.0.1:9",
        consumer_group="unit",
        use_changelog_topics=False,
        auto_create_topics=False,
        state_dir=tmp_path,
        loglevel=logging.WARNING,
    )
    config = TopicConfig(num_partitions=1, replication_factor=1, extra_config={"retention.ms": "1000"})
    topics = []
    for name in (catalog.CAR_TELEMETRY.name, catalog.TELEMETRY_WINDOW.name, catalog.DEAD_LETTER.name):
        topic = Topic(name, create_config=config, key_deserializer="str", key_serializer="str")
        topic.broker_config = config
        topics.append(topic)
    meter = metrics.AppMeter("unit-telemetry")
    sdf = telemetry_features.build_pipeline(app.dataframe(topics[0]), topics[1], topics[2], meter)
    context = sdf.processing_context
    context.state_manager.on_partition_assign(stream_id=sdf.stream_id, partition=0, committed_offsets={})
    context.init_checkpoint()
    produced: list[dict[str, Any]] = []
    monkeypatch.setattr(context.producer, "produce", lambda **kw: produced.append(kw))
    yield sdf, produced
    context.state_manager.close()


def test_an_instrumented_app_counts_what_it_reads_produces_and_rejects(
    wired: tuple[Any, list[dict[str, Any]]], las_vegas: RaceData
) -> None:
    sdf, produced = wired
    app, raw, windows = "unit-telemetry", catalog.CAR_TELEMETRY.name, catalog.TELEMETRY_WINDOW.name
    before = {
        "consumed": value("stratx_records_consumed_total", app=app, topic=raw),
        "windows": value("stratx_records_produced_total", app=app, topic=windows),
        "letters": value("stratx_records_produced_total", app=app, topic=catalog.DEAD_LETTER.name),
        "timed": value("stratx_processing_seconds_count", app=app),
    }
    records = list(tl.car_records(las_vegas.filter_drivers({"VER"})))[:400]
    inputs = [orjson.loads(ingest.encode(r)) for r in records]
    injected = dict(inputs[200], nGear=9)  # INJECTED fault: a gear-glitch sample
    stream = [*inputs[:200], inputs[199], injected, inputs[5], *inputs[200:]]
    ctx = MessageContext(topic=raw, partition=0, offset=0, size=0)
    for v in stream:
        sdf.test(v, key=f"{v['SessionKey']}:{v['DriverNumber']}", timestamp=1, ctx=ctx)
    n_windows = sum(m["topic"] == windows for m in produced)
    n_letters = sum(m["topic"] == catalog.DEAD_LETTER.name for m in produced)
    assert n_windows > 0 and n_letters == 3
    assert value("stratx_records_consumed_total", app=app, topic=raw) - before["consumed"] == len(stream)
    assert value("stratx_records_produced_total", app=app, topic=windows) - before["windows"] == n_windows
    assert (
        value("stratx_records_produced_total", app=app, topic=catalog.DEAD_LETTER.name) - before["letters"]
        == n_letters
    )
    assert value("stratx_processing_seconds_count", app=app) - before["timed"] == len(stream)
    for reason in ("duplicate", "schema", "late"):
        assert value("stratx_dead_letters_total", app=app, reason=reason) >= 1


def test_a_disabled_meter_leaves_the_dataframe_alone() -> None:
    meter = metrics.AppMeter("unit-off", enabled=False)
    marker = object()
    assert meter.consumed(marker, "t") is marker  # type: ignore[arg-type]
    assert meter.letters(marker) is marker  # type: ignore[arg-type]

    def fn() -> int:
        return 1

    assert meter.timed(fn) is fn


def test_model_calls_are_counted_by_model_and_status() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if "lap" in str(request.url) and calls["n"] == 1:
            return httpx.Response(503, text="busy")  # retried once, then ok
        if "anomaly" in str(request.url):
            return httpx.Response(500, text="down")
        return httpx.Response(200, json={"predictions": [{"x": 1}], "version": "v1"})

    before = {
        "ok": value("stratx_model_calls_total", model="lap_time", status="ok"),
        "down": value("stratx_model_calls_total", model="anomaly", status="unavailable"),
        "retries": value("stratx_retries_total", app="predict", target="lap_time"),
        "seconds": value("stratx_model_call_seconds_count", model="lap_time"),
    }
    urls = {"lap_time": "http://lap", "anomaly": "http://anomaly"}
    policy = RetryPolicy(timeout_s=1, retries=1, backoff_s=0.0)
    with ModelClient(urls, policy, seed=1, transport=httpx.MockTransport(handler)) as client:
        out = client.predict_all({"lap_time": [{"a": 1}], "anomaly": [{"a": 1}]})
    assert out["lap_time"].predictions is not None and out["anomaly"].predictions is None
    assert value("stratx_model_calls_total", model="lap_time", status="ok") == before["ok"] + 1
    assert value("stratx_model_calls_total", model="anomaly", status="unavailable") == before["down"] + 1
    assert value("stratx_retries_total", app="predict", target="lap_time") == before["retries"] + 1
    assert value("stratx_model_call_seconds_count", model="lap_time") == before["seconds"] + 1


def test_loop_meter_adds_only_the_increase() -> None:
    meter = metrics.LoopMeter("unit-loop", sample_every=4)
    before = value("stratx_records_produced_total", app="unit-loop", topic="t")
    meter.flush({"t": 10})
    meter.flush({"t": 10})
    meter.flush({"t": 25})
    assert value("stratx_records_produced_total", app="unit-loop", topic="t") == before + 25
    assert [meter.tick() % meter.sample_every == 0 for _ in range(8)] == [False, False, False, True] * 2


def test_openf1_requests_are_counted_by_status_and_retries() -> None:
    from stratx.quix_apps.kit.openf1_client import OpenF1Client

    replies = iter(
        [httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(503), httpx.Response(200, json=[])]
    )
    before = {s: value("stratx_openf1_requests_total", status=s) for s in ("200", "429", "5xx")}
    retries = value("stratx_retries_total", app="live", target="openf1")
    client = OpenF1Client(
        base_url="http://openf1.test/v1",
        rate_limit=1000,
        transport=httpx.MockTransport(lambda _request: next(replies)),
        sleep=lambda _s: None,
    )
    with client:
        assert client.fetch("laps", {"session_key": "9189"}) == []
    after = {s: value("stratx_openf1_requests_total", status=s) for s in ("200", "429", "5xx")}
    assert {s: after[s] - before[s] for s in after} == {"200": 1, "429": 1, "5xx": 1}
    assert value("stratx_retries_total", app="live", target="openf1") == retries + 2


def test_values_stay_in_process_memory_after_feast_set_the_multiprocess_dir() -> None:
    """Feast sets PROMETHEUS_MULTIPROC_DIR on import (and children inherit it): prometheus-client
    would then keep every value in an mmap file with a pid check per update (~27 % of the telemetry
    app's time). The apps' metrics must stay plain in-process values, and still be exported."""
    import subprocess
    import sys

    code = (
        "import os, feast\n"
        "assert os.environ.get('PROMETHEUS_MULTIPROC_DIR')\n"
        "from prometheus_client import generate_latest\n"
        "from stratx.quix_apps.kit import metrics_registry as r\n"
        "child = r.RECORDS_CONSUMED.labels('telemetry', 'stratx.raw.car_telemetry')\n"
        "child.inc(3)\n"
        "assert type(child._value).__name__ == 'MutexValue', type(child._value)\n"
        'assert b\'stratx_records_consumed_total{app="telemetry",topic="stratx.raw.car_telemetry"} 3.0\' in generate_latest()\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_MULTIPROC")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
