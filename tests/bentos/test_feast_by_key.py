"""Integration tier: a model service asked by entity key alone reads Feast's online store and
answers as ``predict`` does on the stream's record (the BentoML + Feast pattern).

The bundled 2023 Las Vegas GP (laps only) is replayed into a broker of this module's own; the
lap-features app runs as its deployable does (``lap_features.main`` with ``feast_push``: a
``BackgroundPusher`` to the online store) until idle. Small real champions of the by-key models
(tests/bentos_support.py) are then asked ``predict_by_key`` for every car of the session: each
answer must equal ``predict`` on that car's last LapFeatures record read from the feature topic
(the online store keeps the latest lap per key), prediction for prediction. An unknown car is
``unavailable`` with the reason. Layer 1 (the class) for every by-key model, layer 2 (``to_asgi()``
+ TestClient) for lap_time.
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from stratx.bentos.kit.serving_by_key import BY_KEY_MODELS, FeatureKey
from stratx.bentos.kit.serving_schemas import SCHEMAS
from stratx.functions import catalog
from stratx.functions.racedata import RaceData
from stratx.functions.settings import FeatureAppSettings, ReplaySettings
from stratx.quix_apps import lap_features, replay
from stratx.quix_apps.kit import admin, kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port
from tests import bentos_support as support

with warnings.catch_warnings():
    # starlette asks for httpx2 instead of httpx; the client works the same with httpx 0.28
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.integration
REPO_DIR = Path(__file__).resolve().parents[2] / "feature_repo"


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path_factory.mktemp("b") / "tansu.log") as b:
        yield b.address


@pytest.fixture(scope="module")
def feast_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """STRATX_FEAST_* for the services, as a deployment sets them (the app gets the same values)."""
    data_dir = tmp_path_factory.mktemp("feast")
    saved = {k: os.environ.get(k) for k in ("STRATX_FEAST_DATA_DIR", "STRATX_FEAST_REPO")}
    os.environ.update(STRATX_FEAST_DATA_DIR=str(data_dir), STRATX_FEAST_REPO=str(REPO_DIR))
    yield data_dir
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def streamed(
    own_broker: str, las_vegas: RaceData, feast_env: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[int, str], dict[str, Any]]:
    """Each car's last LapFeatures record on the feature topic, after the app pushed to Feast."""
    race = RaceData(
        las_vegas.meta,
        {k: v for k, v in las_vegas.tables.items() if k not in ("car_data", "pos_data")},
        las_vegas.missing,
    )
    client = admin.connect(own_broker)
    admin.create_topics(client)
    client.close()
    replay.run(race, ReplaySettings(broker_address=own_broker), replay.ReplayOptions(progress=False))
    settings = FeatureAppSettings(
        broker_address=own_broker,
        state_dir=tmp_path_factory.mktemp("state"),
        feast_push=True,
        feast_repo=REPO_DIR,
        feast_data_dir=feast_env,
    )
    lap_features.main(settings, idle_timeout=8.0)  # pushes through its BackgroundPusher, closed on exit
    last: dict[tuple[int, str], dict[str, Any]] = {}
    for msg in kafka_io.read_all(own_broker, catalog.FEATURES_LAP.name):
        record = json.loads(msg.value())
        key = (record["SessionKey"], record["DriverNumber"])
        if key not in last or record["LapNumber"] > last[key]["LapNumber"]:
            last[key] = record
    assert len(last) == 20
    return last


@pytest.fixture(scope="module")
def champions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Champions]:
    folder = tmp_path_factory.mktemp("serving")
    with support.bentoml_home(folder / "bentoml"), warnings.catch_warnings():
        # MLflow 3 warns about the pyfunc's type hints when it logs the model (nothing to act on here)
        warnings.filterwarnings("ignore", message=r".*Any type hint is inferred as AnyType")
        champions = support.train_and_import(folder / "registry", keys=BY_KEY_MODELS)
        assert champions.failed == {}
        yield champions


@pytest.mark.parametrize("key", BY_KEY_MODELS)
def test_predict_by_key_equals_predict_on_the_streamed_record(
    key: str, champions: support.Champions, streamed: dict[tuple[int, str], dict[str, Any]]
) -> None:
    champions.require(key)
    service = support.load_service(key)()
    keys = sorted(streamed)
    row_type = SCHEMAS[key].row
    want = asyncio.run(service.predict([row_type.model_validate(streamed[k]) for k in keys]))
    got = service.predict_by_key([FeatureKey(SessionKey=s, DriverNumber=d) for s, d in keys])
    assert got.unavailable == []
    assert (got.model, got.version, got.rows) == (want.model, want.version, len(keys))
    assert got.predictions == want.predictions
    if "LapNumber" in got.model_fields and key != "tyre_deg":  # tyre_deg_v1 holds no LapNumber
        assert got.LapNumbers == [streamed[k]["LapNumber"] for k in keys]


def test_a_key_without_an_online_row_is_unavailable_with_the_reason(
    champions: support.Champions, streamed: dict[tuple[int, str], dict[str, Any]]
) -> None:
    champions.require("lap_time")
    session, driver = sorted(streamed)[0]
    got = support.load_service("lap_time")().predict_by_key(
        [
            FeatureKey(SessionKey=session, DriverNumber=driver),
            FeatureKey(SessionKey=session, DriverNumber="99"),
        ]
    )
    assert got.rows == 2 and got.predictions[0].PredictedNextLapTime is not None
    assert got.predictions[1].PredictedNextLapTime is None and got.LapNumbers[1] is None
    (missing,) = got.unavailable
    assert (missing.index, missing.DriverNumber) == (1, "99") and "no online row" in missing.reason


def test_predict_by_key_over_http(
    champions: support.Champions, streamed: dict[tuple[int, str], dict[str, Any]]
) -> None:
    champions.require("lap_time")
    support.isolated_metrics()
    keys = sorted(streamed)
    body = {"keys": [{"SessionKey": s, "DriverNumber": d} for s, d in keys]}
    rows = {"rows": [streamed[k] for k in keys]}
    with TestClient(support.load_service("lap_time").to_asgi()) as client:
        by_key = client.post("/predict_by_key", json=body)
        direct = client.post("/predict", json=rows)
        bad = client.post("/predict_by_key", json={"keys": [{"SessionKey": 1}]})
    assert by_key.status_code == 200, by_key.text
    assert by_key.json()["predictions"] == direct.json()["predictions"]
    assert by_key.json()["unavailable"] == []
    assert bad.status_code == 400
