"""`stratx live` over real HTTP: a local OpenF1-compatible server replays recorded real OpenF1
records of the 2023 Las Vegas GP on a simulated clock; the poller feeds a real broker."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stratx.functions import catalog
from stratx.functions.settings import LiveSettings
from stratx.quix_apps import live
from stratx.quix_apps.kit import kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port
from stratx.quix_apps.kit.openf1_client import OpenF1Client
from stratx.quix_apps.kit.openf1_server import Faults, create_app, lights_out_clock, serve
from stratx.quix_apps.kit.recording import Recorder

pytestmark = pytest.mark.integration
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openf1_session"
SESSION = 9189


def records(endpoint: str) -> list[dict[str, Any]]:
    with gzip.open(FIXTURE / f"{endpoint}.jsonl.gz", "rt") as fh:
        return [json.loads(line) for line in fh]


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path_factory.mktemp("b") / "tansu.log") as b:
        yield b.address


@pytest.fixture(scope="module")
def polled(own_broker: str) -> dict[str, Any]:
    """Ten poll cycles, one minute of race apart, each in a NEW poller process-equivalent (run()
    again with resume), with 429 bursts, 500s and duplicated records injected on the way."""
    app = create_app(clock=None)
    app.clock = lights_out_clock(app, offset_s=-60)
    base_url, stop = serve(app)
    settings = LiveSettings(broker_address=own_broker, openf1_url=f"{base_url}/v1", poll_interval_s=0)
    faults = [
        {},
        {"burst_429": 2, "retry_after_s": 1},
        {"error_next": 2},
        {"duplicate_records": 50},
        {},
        {"drop_next": 1},
        {"duplicate_records": 200, "burst_429": 1, "retry_after_s": 1},
        {},
        {"error_next": 1},
        {},
    ]
    results = []
    clocks = []
    try:
        for fault in faults:
            app.clock.advance(60)
            reset = {f.name: getattr(Faults(), f.name) for f in fields(Faults)}
            app.faults.update(**{**reset, **fault})
            with OpenF1Client(base_url=settings.openf1_url, rate_limit=1000, backoff_base=0.05) as client:
                results.append(
                    live.run(client, settings, live.LiveOptions(session_key=str(SESSION), max_cycles=1))
                )
            clocks.append(app.clock.now())
        end = app.clock.now()
    finally:
        stop()
    topics = {}
    for spec in (
        catalog.CAR_TELEMETRY,
        catalog.CAR_POSITION,
        catalog.LAPS,
        catalog.SESSION_INFO,
        catalog.RACE_CONTROL,
        catalog.WEATHER,
        catalog.DEAD_LETTER,
    ):
        topics[spec.name] = [
            (m.key().decode(), json.loads(m.value())) for m in kafka_io.read_all(own_broker, spec.name)
        ]
    return {
        "results": results,
        "topics": topics,
        "end": end,
        "clocks": clocks,
        "statuses": dict(app.stats.by_status),
    }


def test_every_car_sample_arrives_exactly_once(polled: dict[str, Any]) -> None:
    end = polled["end"]
    source = [r for r in records("car_data") if parse(r["date"]) <= end]
    valid = [r for r in source if r["n_gear"] <= 8]
    got = polled["topics"][catalog.CAR_TELEMETRY.name]
    assert len(got) == len(valid) > 7_000  # 4 cars x ~9 min x 3.7 Hz
    per_driver = Counter(v["DriverNumber"] for _, v in got)
    assert per_driver == Counter(str(r["driver_number"]) for r in valid)
    stamps = Counter((v["DriverNumber"], v["Date"]) for _, v in got)
    assert max(stamps.values()) == 1, "a sample was published twice"
    positions = [r for r in records("location") if parse(r["date"]) <= end]
    assert len(polled["topics"][catalog.CAR_POSITION.name]) == len(positions)


def test_every_completed_lap_arrives_once_in_order_per_driver(polled: dict[str, Any]) -> None:
    end = polled["end"]
    done = [
        r
        for r in records("laps")
        if r.get("lap_duration") is not None
        and parse(r["date_start"]) + timedelta(seconds=r["lap_duration"]) <= end
    ]
    got = polled["topics"][catalog.LAPS.name]
    assert Counter((v["DriverNumber"], v["LapNumber"]) for _, v in got) == Counter(
        (str(r["driver_number"]), r["lap_number"]) for r in done
    )
    by_driver: dict[str, list[int]] = {}
    for key, value in got:
        assert key == f"{SESSION}:{value['DriverNumber']}"
        by_driver.setdefault(value["DriverNumber"], []).append(value["LapNumber"])
    assert all(laps == sorted(laps) for laps in by_driver.values())


def test_one_session_info_and_seq_unique_across_restarts(polled: dict[str, Any]) -> None:
    topics = polled["topics"]
    assert len(topics[catalog.SESSION_INFO.name]) == 1
    seqs = Counter(
        v["Seq"] for name, msgs in topics.items() if name != catalog.DEAD_LETTER.name for _, v in msgs
    )
    assert max(seqs.values()) == 1


def test_bad_records_are_dead_lettered_and_polling_continued(polled: dict[str, Any]) -> None:
    letters = [v for _, v in polled["topics"][catalog.DEAD_LETTER.name] if v["Stage"] == "live"]
    gear = [x for x in letters if "nGear" in x["Reason"]]
    end = polled["end"]
    glitches = [r for r in records("car_data") if parse(r["date"]) <= end and r["n_gear"] > 8]
    assert len(gear) == len(glitches)
    assert all(r.cycles == 1 for r in polled["results"])
    # the faults really happened: the poller rode out 429s (Retry-After), 500s and a dropped connection
    assert polled["statuses"].get("429", 0) >= 3 and polled["statuses"].get("500", 0) >= 3
    assert sum(r.published[catalog.CAR_TELEMETRY.name] for r in polled["results"][5:]) > 0


def _payloads(broker: str, spec: Any) -> list[tuple[Any, ...]]:
    out = []
    for m in kafka_io.read_all(broker, spec.name):
        value = json.loads(m.value())
        value.pop("Seq", None)  # Seq numbers the arrival order of one run, not the event
        out.append(tuple(sorted((k, json.dumps(v)) for k, v in value.items())))
    return sorted(out)


def test_record_then_replay_the_recording(tmp_path: Path) -> None:
    """`stratx record` saves what it fetched; `stratx replay --recording` republishes the same events."""
    app = create_app(clock=None)
    app.clock = lights_out_clock(app, offset_s=180)
    base_url, stop = serve(app)
    recording = tmp_path / "rec"
    try:
        with EmbeddedBroker("127.0.0.1", free_port()) as first:
            settings = LiveSettings(
                broker_address=first.address, openf1_url=f"{base_url}/v1", poll_interval_s=0
            )
            with OpenF1Client(base_url=settings.openf1_url, rate_limit=1000) as client:
                live.run(
                    client,
                    settings,
                    live.LiveOptions(session_key=str(SESSION), max_cycles=1),
                    Recorder(recording),
                )
            recorded = {s.name: _payloads(first.address, s) for s in (catalog.CAR_TELEMETRY, catalog.LAPS)}
    finally:
        stop()
    manifest = json.loads((recording / "MANIFEST.json").read_text())
    assert manifest["session_key"] == SESSION and manifest["files"]["car_data"] > 1000
    with EmbeddedBroker("127.0.0.1", free_port()) as second:
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "stratx"),
                "replay",
                "--recording",
                str(recording),
                "--broker",
                second.address,
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        replayed = {s.name: _payloads(second.address, s) for s in (catalog.CAR_TELEMETRY, catalog.LAPS)}
    assert recorded == replayed
    assert len(replayed[catalog.CAR_TELEMETRY.name]) > 1000 and len(replayed[catalog.LAPS.name]) >= 20


def test_unreachable_openf1_is_one_clear_error(tmp_path: Path) -> None:
    """No OpenF1 server: the retries run out and the CLI says so in one line (no traceback, no stall)."""
    with EmbeddedBroker("127.0.0.1", free_port()) as b:
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "stratx"),
                "live",
                "--session-key",
                "9189",
                "--broker",
                b.address,
                "--openf1-url",
                f"http://127.0.0.1:{free_port()}/v1",
                "--max-cycles",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("stratx: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr


def test_lag_is_bounded_by_one_poll_cycle(polled: dict[str, Any]) -> None:
    """After every cycle (faults included) everything the source had published by then is on the
    topic: no record waits longer than one poll cycle."""
    source = sorted(parse(r["date"]) for r in records("car_data") if r["n_gear"] <= 8)
    published = 0
    for clock, result in zip(polled["clocks"], polled["results"], strict=True):
        published += result.published[catalog.CAR_TELEMETRY.name]
        assert published == sum(1 for d in source if d <= clock), clock
