"""Every /metrics endpoint scraped over HTTP during a replay on the real broker.

Parts: the replay (in this process, its exporter too), the feature apps (lap, telemetry,
aggression, progress, gaps), the prediction app (one real ``bentoml serve`` of a small lap_time
champion; the other four model URLs point at a closed port, so their calls are really
``unavailable``), the alerts app and the dashboard server, each in its own process with its
exporter at ``STRATX_METRICS_PORT_BASE`` + its offset (a free range). Three drivers of the real
2023 Las Vegas GP are replayed in two parts; after each part the counters must match what went
through the topics and grow from part 1 to part 2, consumer-lag gauges must exist, one injected
invalid record (labelled: ``b"INJECTED TEST RECORD: not json"``) must move the lap app's
dead-letter counter under ``reason="not_json"``, and the BentoML service's own /metrics must count
its /predict requests.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stratx.bentos.lifecycle import serve, sources
from stratx.functions import catalog
from stratx.functions.racedata import EVENT_TABLES
from stratx.functions.settings import ReplaySettings, ServingSettings
from stratx.quix_apps import replay
from stratx.quix_apps.kit import admin, metrics, pipeline
from stratx.quix_apps.kit.broker import free_port, port_is_free
from tests import bentos_support as support
from tests.conftest import LAS_VEGAS_2023

pytestmark = pytest.mark.integration
DRIVERS = {"VER", "LEC", "PER"}
FEATURE_APPS = ("lap", "telemetry", "aggression", "progress", "gaps")
APPS = (*FEATURE_APPS, "predict", "alerts")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_range(width: int) -> int:
    """A base port with ``width`` free ports from it, below the kernel's ephemeral range: a port in
    that range can be taken by any outgoing connection (another test's client, a service's) between
    this check and the app's bind, which left an exporter unbound ("Address already in use")."""
    low = ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(max(1024, low - 12000), low - width)
        if all(port_is_free("127.0.0.1", base + i) for i in range(width)):
            return base
    raise RuntimeError("no free port range")


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def scrape(port: int) -> Samples:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError as exc:  # exporter not up yet
            last_error = exc
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} ({last_error})")


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Champions]:
    folder = tmp_path_factory.mktemp("metrics")
    with support.bentoml_home(folder / "bentoml"):
        yield support.train_and_import(folder / "registry", keys=("lap_time",))


@pytest.mark.timeout(900)
def test_every_exporter_counts_what_flows_through_it(
    own_broker: str, champion: support.Champions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker_address = own_broker  # the counters must see only this test's records
    champion.require("lap_time")
    base = free_range(len(metrics.PORT_OFFSETS))
    monkeypatch.setenv("STRATX_METRICS_PORT_BASE", str(base))
    port = {app: base + offset for app, offset in metrics.PORT_OFFSETS.items()}
    race = sources.load_bundled(LAS_VEGAS_2023).filter_drivers(DRIVERS)
    client = admin.connect(broker_address)
    admin.create_topics(client)
    client.close()
    settings = ServingSettings(lap_time_port=free_port())
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: those models are unavailable
    env = {
        "STRATX_METRICS_PORT_BASE": str(base),
        "STRATX_LAP_TIME_URL": f"http://127.0.0.1:{settings.lap_time_port}",
        **{f"STRATX_{k.upper()}_URL": closed for k in ("tyre_deg", "pit_window", "overtake", "anomaly")},
        "STRATX_MODEL_RETRIES": "1",
        "STRATX_MODEL_BACKOFF_S": "0.01",
    }
    with serve.services(["lap_time"], settings, log_dir=tmp_path) as running:
        procs = pipeline.start_apps(
            broker_address, tmp_path / "state", apps=APPS, feast=False, log_dir=tmp_path, extra_env=env
        )
        dash_cmd = [
            sys.executable,
            "-m",
            "stratx.panel_app",
            "--port",
            str(free_port()),
            "--broker",
            broker_address,
        ]
        with (tmp_path / "dashboard.log").open("ab") as log:
            procs["dashboard"] = subprocess.Popen(
                dash_cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            replay_settings = ReplaySettings(broker_address=broker_address)
            assert metrics.serve("replay", replay_settings) is not None
            # the replay runs in this (pytest) process, whose registry already counts the replays
            # of earlier tests: the replay's counters are compared from here on
            earlier = scrape(port["replay"])
            half = sum(len(race.table(name)) for name in EVENT_TABLES) // 2
            options = replay.ReplayOptions(speed=0, progress=False, max_events=half)
            first = replay.run(race, replay_settings, options)
            laps1 = first.published[catalog.LAPS.name]
            part1 = caught_up(port, first.total, laps1, procs, earlier=earlier)

            # one invalid record on the raw laps topic -> the lap app's not_json dead letters
            before = get(part1["lap"], "stratx_dead_letters_total", app="lap", reason="not_json")
            inject(broker_address)
            wait_for(
                lambda: (
                    get(scrape(port["lap"]), "stratx_dead_letters_total", app="lap", reason="not_json")
                    == before + 1
                ),
                60,
                "the injected record's dead letter",
            )

            second = replay.run(
                race, replay_settings, dataclasses.replace(options, resume=True, max_events=None)
            )
            assert second.finished
            laps = laps1 + second.published[catalog.LAPS.name]
            part2 = caught_up(port, first.total + second.total, laps, procs, invalid=1, earlier=earlier)
            for app, topic in (
                ("lap", catalog.LAPS.name),
                ("telemetry", catalog.CAR_TELEMETRY.name),
                ("aggression", catalog.TELEMETRY_WINDOW.name),  # lap records wait for their windows
                ("progress", catalog.CAR_POSITION.name),
                ("gaps", catalog.PROGRESS.name),
                ("predict", catalog.FEATURES_LAP_BY_SESSION.name),
                ("alerts", catalog.PREDICTION_TOPICS["lap_time"].name),
                ("dashboard", catalog.FEATURES_LAP.name),
            ):
                a = get(part1[app], "stratx_records_consumed_total", app=app, topic=topic)
                b = get(part2[app], "stratx_records_consumed_total", app=app, topic=topic)
                assert 0 < a < b, (app, topic, a, b)
            bento = urllib.request.urlopen(f"{running[0].url}/metrics", timeout=5).read().decode()
            predict_requests = [
                line for line in bento.splitlines() if "request_total" in line and '"/predict"' in line
            ]
            assert predict_requests and float(predict_requests[0].rsplit(" ", 1)[1]) > 0, bento[:2000]
        finally:
            pipeline.stop_apps(procs)


def inject(broker_address: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker_address})
    producer.produce(catalog.LAPS.name, key=b"INJECTED:0", value=b"INJECTED TEST RECORD: not json")
    assert producer.flush(10) == 0


def caught_up(
    port: dict[str, int],
    events: int,
    laps: int,
    procs: dict[str, subprocess.Popen[bytes]],
    invalid: int = 0,
    earlier: Samples | None = None,
) -> dict[str, Samples]:
    """Wait until every app's counters account for what the replay published so far; return a
    scrape of every exporter."""

    def scrapes() -> dict[str, Samples]:
        for name, proc in procs.items():
            assert proc.poll() is None, f"the {name} app exited (code {proc.returncode}); see its log"
        return {app: scrape(port[app]) for app in (*APPS, "dashboard", "replay")}

    def before(topic: str | None = None) -> float:
        labels = {"app": "replay"} | ({"topic": topic} if topic else {})
        return get(earlier or {}, "stratx_records_produced_total", **labels)

    def done() -> bool:
        s = scrapes()
        replayed = get(s["replay"], "stratx_records_produced_total", app="replay", topic=catalog.LAPS.name)
        features = get(s["lap"], "stratx_records_produced_total", app="lap", topic=catalog.FEATURES_LAP.name)
        return (
            replayed - before(catalog.LAPS.name)
            == laps  # the replay's counters are flushed at the end of each run
            and get(s["lap"], "stratx_records_consumed_total", app="lap", topic=catalog.LAPS.name)
            == laps + invalid
            and features > 0
            and get(
                s["lap"],
                "stratx_records_produced_total",
                app="lap",
                topic=catalog.FEATURES_LAP_BY_SESSION.name,
            )
            == features
            and get(s["predict"], "stratx_records_consumed_total", app="predict") == features
            and get(s["alerts"], "stratx_records_consumed_total", app="alerts") == predictions(s)
            and all(get(s[a], "stratx_records_consumed_total", app=a) > 0 for a in FEATURE_APPS)
            and get(s["dashboard"], "stratx_records_consumed_total", app="dashboard") > 0
        )

    wait_for(done, 300, "every app to count the replayed records")
    wait_for(  # the lag monitors measure every 5 s
        lambda: all(
            any(n == "stratx_consumer_lag_records" for n, _ in scrape(port[a])) for a in (*APPS, "dashboard")
        ),
        30,
        "consumer-lag gauges",
    )
    s = scrapes()
    assert get(s["replay"], "stratx_records_produced_total", app="replay") - before() == events
    for app in APPS:
        assert get(s[app], "stratx_processing_seconds_count", app=app) > 0, app
    features = get(s["lap"], "stratx_records_produced_total", app="lap", topic=catalog.FEATURES_LAP.name)
    assert 0 < get(s["predict"], "stratx_model_calls_total", model="lap_time", status="ok") <= features
    assert get(s["predict"], "stratx_model_calls_total", model="lap_time", status="unavailable") == 0
    assert get(s["predict"], "stratx_model_call_seconds_count", model="lap_time") <= features
    for key in ("tyre_deg", "pit_window", "anomaly"):
        down = get(s["predict"], "stratx_model_calls_total", model=key, status="unavailable")
        assert 0 < down <= features, key
        assert get(s["predict"], "stratx_model_calls_total", model=key, status="ok") == 0, key
        assert get(s["predict"], "stratx_retries_total", app="predict", target=key) == down, (
            key
        )  # 1 retry each
    return s


def predictions(s: dict[str, Samples]) -> float:
    """Prediction records the prediction app produced (all five topics)."""
    return sum(
        get(s["predict"], "stratx_records_produced_total", app="predict", topic=t.name)
        for t in catalog.PREDICTION_TOPICS.values()
    )
