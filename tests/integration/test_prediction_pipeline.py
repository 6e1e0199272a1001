"""The serving path end to end on real parts: a bundled race replayed at max speed into a real
broker -> the lap-features app -> the prediction app -> five real ``bentoml serve`` processes ->
prediction topics -> the alerts app -> alerts. One service is stopped mid-stream and restarted.

Checks: every driver-lap gets exactly one record from each lap model (ok, or ``unavailable`` with
the reason while its service was down; none lost, none twice); once the service is back, its
predictions are ``ok`` again; overtake pairs every car with the car ahead; alerts fit the schema.
Models: small real champions (few trees, tests/bentos_support.py), not the production ones.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratx.functions import catalog, schemas
from stratx.functions.racedata import RaceData
from stratx.quix_apps import admin, kafka_io, pipeline, replay, serve, sources
from stratx.quix_apps.broker import EmbeddedBroker, free_port
from stratx.quix_apps.settings import ReplaySettings, ServingSettings
from tests import bentos_support as support
from tests.conftest import LAS_VEGAS_2023

pytestmark = pytest.mark.integration
LAP_MODELS = ("lap_time", "tyre_deg", "pit_window", "anomaly")
DOWN = "tyre_deg"


@pytest.fixture(scope="module")
def champions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Champions]:
    folder = tmp_path_factory.mktemp("pipeline")
    with support.bentoml_home(folder / "bentoml"):
        yield support.train_and_import(folder / "registry")


def laps_only(race: RaceData) -> RaceData:
    """The race's laps, session info and track status only: the lap models' whole input (the car
    telemetry would only make the replay longer)."""
    keep = {"laps", "drivers", "track_status", "race_control", "weather"}
    return RaceData(race.meta, {k: v for k, v in race.tables.items() if k in keep}, race.missing)


def read(address: str, topic: str, session_key: int) -> list[dict[str, Any]]:
    out = []
    for message in kafka_io.read_all(address, topic, drain_s=0.5):
        record = json.loads(message.value() or b"{}")
        if record.get("SessionKey") == session_key:
            out.append(record)
    return out


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture
def broker_address(tmp_path: Path) -> Iterator[str]:
    """A broker of its own: other tests replay the same bundled races into the shared one."""
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=tmp_path / "tansu.log") as broker:
        yield broker.address


def test_every_driver_lap_is_predicted_once_by_each_model_through_a_service_outage(
    broker_address: str, champions: support.Champions, tmp_path: Path
) -> None:
    assert not champions.failed, champions.failed
    keys = list(champions.tags)
    ports = {f"{k}_port": free_port() for k in keys}
    settings = ServingSettings(serve_start_timeout_s=240, **ports)  # type: ignore[arg-type]
    race = laps_only(sources.load_bundled(LAS_VEGAS_2023))
    session = race.meta.session_key
    client = admin.connect(broker_address)
    admin.create_topics(client)
    client.close()
    with serve.services(keys, settings, log_dir=tmp_path) as running:
        services = {r.key: r for r in running}
        urls = {f"STRATX_{k.upper()}_URL": r.url for k, r in services.items()}
        env = {
            **urls,
            "STRATX_MODEL_RETRIES": "2",
            "STRATX_MODEL_BACKOFF_S": "0.05",
            "STRATX_MODEL_TIMEOUT_S": "2",
        }
        procs = pipeline.start_apps(
            broker_address,
            tmp_path / "state",
            apps=("lap", "predict", "alerts"),
            feast=False,
            log_dir=tmp_path,
            extra_env=env,
        )
        try:
            result = replay.run(
                race,
                ReplaySettings(broker_address=broker_address),
                replay.ReplayOptions(speed=0, progress=False),
            )
            laps = result.published[catalog.LAPS.name]
            topic = catalog.PREDICTION_TOPICS[DOWN].name
            # let a quarter of the laps through, then take the service down
            wait_for(
                lambda: pipeline.count_session(broker_address, topic, session) >= laps // 4,
                300,
                "first predictions",
            )
            serve.stop([services[DOWN]], grace_s=5)
            wait_for(
                lambda: any(r["Status"] == "unavailable" for r in read(broker_address, topic, session)),
                120,
                "an unavailable record",
            )
            restarted = serve.start(DOWN, settings.serve_host, settings.port(DOWN), tmp_path / "restart.log")
            running.append(restarted)
            serve.wait_ready([restarted], 240)
            counts = pipeline.wait_predicted(
                broker_address, session, laps, tuple(LAP_MODELS), timeout_s=600, procs=procs
            )
        finally:
            pipeline.stop_apps(procs)
    features = read(broker_address, catalog.FEATURES_LAP.name, session)
    assert len(features) == laps
    driver_laps = {(f["DriverNumber"], f["LapNumber"]) for f in features}
    for key in LAP_MODELS:
        records = read(broker_address, catalog.PREDICTION_TOPICS[key].name, session)
        seen = Counter((r["DriverNumber"], r["LapNumber"]) for r in records)
        assert set(seen) == driver_laps, f"{key}: driver-laps without a prediction"
        assert max(seen.values()) == 1, f"{key}: a driver-lap predicted twice"
        for r in records:
            schemas.Prediction.model_validate(r)
        status = Counter(r["Status"] for r in records)
        if key == DOWN:
            assert status["unavailable"] > 0 and status["ok"] > laps // 4
            down = [r for r in records if r["Status"] == "unavailable"]
            assert all(r["Reason"] for r in down) and all(r["Values"] == {} for r in down)
            last = max(records, key=lambda r: r["ProducedAt"])
            assert last["Status"] == "ok", "predictions resume once the service is back"
        else:
            assert status == {"ok": laps}, f"{key}: {status}"
    assert counts["lap_time"] == laps
    pairs = read(broker_address, catalog.PREDICTION_TOPICS["overtake"].name, session)
    expected_pairs = sum(1 for f in features if f["PositionOnLap"] > 1)
    assert Counter((p["DriverNumber"], p["LapNumber"]) for p in pairs).most_common(1)[0][1] == 1
    assert len(pairs) >= 0.95 * expected_pairs  # a pair needs both cars' records within two laps
    assert all(p["OtherDriverNumber"] for p in pairs)
    wait_for(lambda: bool(read(broker_address, catalog.ALERTS.name, session)), 60, "an alert")
    for alert in read(broker_address, catalog.ALERTS.name, session):
        schemas.Alert.model_validate(alert)
