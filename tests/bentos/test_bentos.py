"""The BentoML services (bentos/<model>/), layers 1 and 2 of three: the class called directly, and
its ASGI app (``to_asgi()`` + TestClient). Layer 3, a real ``bentoml serve``, is in
tests/bentos/test_bentos_serve.py. Small real champions (tests/bentos_support.py)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd
import pytest
import yaml
from starlette.exceptions import StarletteDeprecationWarning

from stratx.bentos.kit import serving
from stratx.bentos.kit.serving_schemas import MAX_ROWS, SCHEMAS, PredictResponse
from stratx.bentos.lifecycle import serve
from stratx.functions import models
from stratx.functions.models import anomaly, overtake
from tests import bentos_support as support

with warnings.catch_warnings():
    # starlette asks for httpx2 instead of httpx; the client works the same with httpx 0.28
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

KEYS = support.SERVED_KEYS


pytestmark = pytest.mark.slow  # the trained champions (tests/conftest.py trained_champions)


@pytest.fixture(scope="module")
def champions(trained_champions: support.Champions) -> Iterator[support.Champions]:
    """Every served model trained small, registered as champion and imported into a temp store."""
    with support.bentoml_home(trained_champions.home):
        yield trained_champions


@pytest.fixture(scope="module")
def laps(champions: support.Champions) -> pd.DataFrame:
    return champions.corpus.laps


@dataclass
class App:
    key: str
    client: TestClient


@pytest.fixture(scope="module", params=KEYS)
def app(request: pytest.FixtureRequest, champions: support.Champions) -> Iterator[App]:
    """One service's ASGI app behind a TestClient (lifespan: the model loads on enter). One app at
    a time: BentoML's metrics live in one Prometheus registry per process."""
    key = request.param
    champions.require(key)
    support.isolated_metrics()
    with TestClient(support.load_service(key).to_asgi()) as client:
        yield App(key, client)


def expected(key: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipe's own predictions for the same rows, in-process (what the service must return).
    Anomaly: ``lap_rows`` of the batch first (it sorts the rows: matched back on driver and lap)."""
    store_model = serving.load_served(bentoml.models.get(serving.bento_tag(key)), key)
    table = serving.rows_frame([SCHEMAS[key].row.model_validate(r) for r in rows])
    if key == "anomaly":
        built = anomaly.lap_rows(table.drop(columns=["EventName"]))
        scored = store_model.recipe.predict(store_model.bundle, built)
        scored.index = pd.MultiIndex.from_frame(built[["DriverNumber", "LapNumber"]])
        frame = scored.loc[list(zip(table["DriverNumber"], table["LapNumber"], strict=True))]
    else:
        frame = store_model.recipe.predict(store_model.bundle, table)
    out = frame.astype(object).where(frame.notna(), None)
    return [dict(r) for r in out.to_dict("records")]


def assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Same rows, same fields; floats equal to 1e-9 relative, other values equal, nulls where the
    recipe gave NaN."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for name, value in w.items():
            assert (g[name] is None) == (value is None), name
            if isinstance(value, float):
                assert g[name] == pytest.approx(value, rel=1e-9), name
            else:
                assert g[name] == value, name


def stream_requests(laps: pd.DataFrame, key: str) -> list[list[dict[str, Any]]]:
    """Model ``key``'s requests for lap 21 of 2024 Bahrain, as the prediction app builds them."""
    return [r[key] for r in support.app_requests(laps) if key in r]


def offline(key: str, laps: pd.DataFrame, lap: int = 21) -> pd.DataFrame:
    """Model ``key``'s offline scores of ``lap`` of 2024 Bahrain from the whole race's LapFeatures,
    indexed by DriverNumber (the car behind for overtake)."""
    store_model = serving.load_served(bentoml.models.get(serving.bento_tag(key)), key)
    race = laps[laps["Year"] == 2024]
    rows = anomaly.lap_rows(race) if key == "anomaly" else overtake.pair_rows(race)
    rows = rows[rows["LapNumber"] == lap]
    scored = store_model.recipe.predict(store_model.bundle, rows)
    return scored.set_axis(rows["DriverNumber"].astype(str).to_numpy())


def test_every_model_with_a_recipe_is_served_and_the_keys_follow_the_recipes() -> None:
    assert set(KEYS) == set(models.MODEL_KEYS)
    assert set(KEYS) <= set(SCHEMAS) and set(KEYS) <= set(models.available())


# ------------------------------------------------------------------ layer 1: the class
@pytest.mark.parametrize("key", KEYS)
def test_calling_the_class_predicts_every_row(
    key: str, champions: support.Champions, laps: pd.DataFrame
) -> None:
    champions.require(key)
    service = support.load_service(key)()
    rows = [SCHEMAS[key].row.model_validate(r) for r in support.request_rows(key, laps)]
    response = asyncio.run(service.predict(rows))  # async endpoint: no thread hop per call
    assert isinstance(response, PredictResponse)
    assert response.model == models.recipe(key).model_name and response.version == "1"
    assert response.rows == len(rows) == len(response.predictions)
    assert all(isinstance(p, SCHEMAS[key].prediction) for p in response.predictions)
    assert service.predict_rows(rows) == response.predictions


def test_lap_time_predictions_match_the_recipe_in_process(champions: Any, laps: pd.DataFrame) -> None:
    rows = support.request_rows("lap_time", laps)
    got = asyncio.run(
        support.load_service("lap_time")().predict([SCHEMAS["lap_time"].row.model_validate(r) for r in rows])
    )
    want = [r["PredictedNextLapTime"] for r in expected("lap_time", rows)]
    assert [p.PredictedNextLapTime for p in got.predictions] == pytest.approx(want)
    assert all(80 < p < 120 for p in want)  # Bahrain laps, s


# ------------------------------------------------------------------ layer 2: ASGI app
def test_good_batch(app: App, laps: pd.DataFrame) -> None:
    rows = support.request_rows(app.key, laps)
    response = app.client.post("/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == models.recipe(app.key).model_name and body["rows"] == len(rows)
    assert_same(body["predictions"], expected(app.key, rows))
    batched = app.client.post("/predict_rows", json={"rows": rows})
    assert batched.status_code == 200 and batched.json() == body["predictions"]


@pytest.mark.parametrize("route", ["/predict", "/predict_rows"])
def test_a_bad_row_is_a_400_naming_the_row_and_the_reason(app: App, route: str, laps: pd.DataFrame) -> None:
    rows = support.request_rows(app.key, laps, n=3)
    rows[1] = {**rows[1], "TyreLife": "old"}
    rows[2] = {k: v for k, v in rows[2].items() if k != "PositionOnLap"}
    response = app.client.post(route, json={"rows": rows})
    assert response.status_code == 400
    problems = {(tuple(d["loc"]), d["type"]) for d in response.json()["detail"]}
    assert problems == {(("rows", 1, "TyreLife"), "float_parsing"), (("rows", 2, "PositionOnLap"), "missing")}


@pytest.mark.parametrize("route", ["/predict", "/predict_rows"])
def test_empty_batch_is_a_400(app: App, route: str) -> None:
    response = app.client.post(route, json={"rows": []})
    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == "too_short"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "json_invalid"),
        (b"[1, 2]", "model_type"),
        (b"{}", "missing"),
        (b'{"rows": {"LapNumber": 3}}', "list_type"),
        (b'{"rows": [{"LapNumber": -1}]}', "greater_than_equal"),
        (b'{"rows": [17]}', "model_type"),
    ],
)
def test_malformed_requests_get_a_4xx_never_a_500(app: App, body: bytes, reason: str) -> None:
    for route in ("/predict", "/predict_rows"):
        response = app.client.post(route, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert reason in {d["type"] for d in response.json()["detail"]}


def test_oversized_batch_is_a_400(app: App, laps: pd.DataFrame) -> None:
    row = support.request_rows(app.key, laps, n=1)[0]
    response = app.client.post("/predict", json={"rows": [row] * (MAX_ROWS + 1)})
    assert response.status_code == 400 and response.json()["detail"][0]["type"] == "too_long"


def test_probes_and_metrics(app: App) -> None:
    assert app.client.get("/livez").status_code == 200
    assert app.client.get("/readyz").status_code == 200
    # Prometheus text; the request counters are checked on a real `bentoml serve` (integration)
    metrics = app.client.get("/metrics")
    assert metrics.status_code == 200 and metrics.text.startswith("# HELP")


@pytest.mark.parametrize("app", ["overtake"], indirect=True)
def test_overtake_scores_the_pair_rows_the_prediction_app_sends(app: App, laps: pd.DataFrame) -> None:
    requests = stream_requests(laps, "overtake")
    assert len(requests) == 19 and all(len(r) == 1 for r in requests)  # every car but the first
    rows = [r[0] for r in requests]
    response = app.client.post("/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    want = offline("overtake", laps).loc[[r["DriverNumber"] for r in rows]]
    got = pd.DataFrame(response.json()["predictions"], index=want.index)
    pd.testing.assert_frame_equal(got, want, rtol=1e-9)
    assert ((got >= 0) & (got <= 1)).all().all()


@pytest.mark.parametrize("app", ["overtake"], indirect=True)
def test_overtake_rejects_a_row_that_is_not_an_adjacent_pair(app: App, laps: pd.DataFrame) -> None:
    rows = support.request_rows("overtake", laps, n=2)
    rows[1] = {**rows[1], "AheadPositionOnLap": rows[1]["PositionOnLap"] + 1, "AheadSpeedST": 300.0}
    response = app.client.post("/predict", json={"rows": rows})
    assert response.status_code == 400
    problems = {(tuple(d["loc"]), d["type"]) for d in response.json()["detail"]}
    assert problems == {(("rows", 1, "AheadSpeedST"), "extra_forbidden")}
    rows[1].pop("AheadSpeedST")
    response = app.client.post("/predict", json={"rows": rows})
    assert response.status_code == 400 and "not a pair" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("app", ["anomaly"], indirect=True)
def test_anomaly_scores_the_prediction_app_context_as_the_offline_race(app: App, laps: pd.DataFrame) -> None:
    """The app's request (earlier cars on the lap, the driver's last laps, the row last) gets the
    same score for its last row as the recipe over the whole race: the references are causal."""
    requests = stream_requests(laps, "anomaly")
    assert len(requests) == 20 and all(r[-1]["LapNumber"] == 21 for r in requests)
    want = offline("anomaly", laps)
    for rows in requests:
        response = app.client.post("/predict", json={"rows": rows})
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == len(rows)
        last = response.json()["predictions"][-1]
        row = want.loc[rows[-1]["DriverNumber"]]
        assert last["AnomalySignal"] == row["AnomalySignal"] and last["AnomalyFlag"] == row["AnomalyFlag"]
        assert last["AnomalyScore"] == pytest.approx(row["AnomalyScore"], rel=1e-9)
    assert want["AnomalyScore"].notna().sum() >= 15


@pytest.mark.parametrize("app", ["anomaly"], indirect=True)
def test_anomaly_merged_contexts_score_their_last_rows_as_alone(app: App, laps: pd.DataFrame) -> None:
    """Adaptive batching merges requests: driver-laps sent twice are scored once, and the row each
    client reads (its last) keeps the score of its own request (context rows may gain history)."""
    first, second = stream_requests(laps, "anomaly")[-2:]
    alone = [app.client.post("/predict_rows", json={"rows": rows}).json() for rows in (first, second)]
    merged = app.client.post("/predict_rows", json={"rows": first + second})
    assert merged.status_code == 200 and len(merged.json()) == len(first) + len(second)
    assert merged.json()[len(first) - 1] == alone[0][-1] and merged.json()[-1] == alone[1][-1]


# ------------------------------------------------------------------ model store and build config
def test_import_champion_is_idempotent(champions: support.Champions) -> None:
    tag = serving.import_champion(champions.settings, "lap_time")
    assert tag == champions.tags["lap_time"]
    assert tag.startswith("stratx-lap-time:")


@pytest.mark.parametrize("key", KEYS)
def test_bentofile_is_lean_and_pinned_to_the_environment(key: str) -> None:
    config = yaml.safe_load((serve.BENTOS_DIR / key / "bentofile.yaml").read_text())
    assert config["include"] == ["service.py"]
    assert config["service"].startswith("service:")
    assert config["name"] == serving.service_name(key)
    python = config["python"]
    assert python["lock_packages"] is False
    assert python["wheels"] == [f"../dist/{serve.WHEEL_NAME}-{serve.WHEEL_VERSION}-py3-none-any.whl"]
    pins = dict(p.split("==") for p in python["packages"])
    assert pins == {p: importlib.metadata.version(p) for p in ("lightgbm", "numpy", "pandas", "pydantic")}


def test_the_serving_wheel_holds_only_the_serving_modules(tmp_path: Path) -> None:
    wheel = serve.build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.startswith("stratx/")}
    assert "stratx/bentos/kit/serving.py" in modules and "stratx/functions/models/lap_time.py" in modules
    assert not any("cli" in n or "training" in n or "model_store" in n for n in modules)
    metadata = zipfile.ZipFile(wheel).read(f"{serve.WHEEL_NAME}-{serve.WHEEL_VERSION}.dist-info/METADATA")
    assert b"Requires-Dist" not in metadata
    assert serve.build_wheel(tmp_path / "again").read_bytes() == wheel.read_bytes()  # reproducible
