"""The model registry (functions/models/registry.py) is the one list of models: everything keyed by
model either derives from it or, where a declaration must stay explicit (pydantic settings fields,
Bento folders), is checked against it here."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from stratx.bentos.kit.serving_schemas import SCHEMAS, Prediction
from stratx.functions import catalog, models, prediction_requests, schemas
from stratx.functions.models import registry
from stratx.functions.settings import (
    ENV_VARS,
    KafkaSettings,
    PredictionAppSettings,
    ServingSettings,
    TrainingSettings,
)

REPO = Path(__file__).resolve().parents[3]
KEYS = registry.MODEL_KEYS


def test_keys_ports_and_names_are_unique() -> None:
    assert len(set(KEYS)) == len(KEYS) == len(registry.MODELS)
    assert all(re.fullmatch(r"[a-z][a-z_]*", k) for k in KEYS)
    assert len({m.port for m in registry.MODELS}) == len(KEYS)
    assert models.MODEL_KEYS is registry.MODEL_KEYS and schemas.MODEL_KEYS is registry.MODEL_KEYS
    assert models.spec("overtake") is registry.BY_KEY["overtake"]
    with pytest.raises(ValueError, match="unknown model"):
        models.spec("nope")


@pytest.mark.parametrize("key", KEYS)
def test_every_entry_has_its_recipe_and_its_bento(key: str) -> None:
    recipe = models.recipe(key)
    assert recipe.key == key
    assert registry.spec(key).recipe_module == f"stratx.functions.models.{key}"
    service = REPO / "bentos" / key / "service.py"
    assert service.is_file() and (REPO / "bentos" / key / "bentofile.yaml").is_file()
    tree = ast.parse(service.read_text())
    declared = [
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "KEY" for t in n.targets)
        and isinstance(n.value, ast.Constant)
    ]
    assert declared == [key]


def test_no_bento_or_recipe_outside_the_registry() -> None:
    bentos = {p.parent.name for p in (REPO / "bentos").glob("*/service.py")}
    assert bentos == set(KEYS)
    assert models.available() == list(KEYS)


def test_the_prediction_model_field_is_the_registry() -> None:
    assert get_args(schemas.Prediction.model_fields["Model"].annotation) == KEYS
    enum = schemas.Prediction.model_json_schema()["properties"]["Model"]["enum"]
    assert tuple(enum) == KEYS
    record = {
        "SessionKey": 1,
        "DriverNumber": "1",
        "Model": "nope",
        "ModelVersion": None,
        "Status": "unavailable",
        "EventSessionTime": 0.0,
        "IngestedAt": "2024-01-01T00:00:00Z",
        "ProducedAt": "2024-01-01T00:00:00Z",
    }
    with pytest.raises(ValidationError):
        schemas.Prediction.model_validate(record)
    for key in KEYS:
        assert schemas.Prediction.model_validate({**record, "Model": key}).Model == key


def test_topics_and_serving_schemas_follow_the_registry() -> None:
    assert list(catalog.PREDICTION_TOPICS) == list(KEYS)
    for m in registry.MODELS:
        assert catalog.PREDICTION_TOPICS[m.key].name == m.topic == f"stratx.predictions.{m.key}"
        assert catalog.BY_NAME[m.topic] is catalog.PREDICTION_TOPICS[m.key]
    assert list(SCHEMAS) == list(KEYS)
    for m in registry.MODELS:
        assert SCHEMAS[m.key].row.__name__ == m.row and SCHEMAS[m.key].prediction.__name__ == m.prediction
        assert issubclass(SCHEMAS[m.key].prediction, Prediction)
        assert m.primary in SCHEMAS[m.key].prediction.model_fields, "the headline output is an output"


def test_per_model_settings_fields_equal_the_registry() -> None:
    """pydantic-settings needs one declared field per variable: they must be exactly the registry's."""
    own_serving = set(ServingSettings.model_fields) - set(TrainingSettings.model_fields)
    own_app = set(PredictionAppSettings.model_fields) - set(KafkaSettings.model_fields)
    assert {n.removesuffix("_port") for n in own_serving if n.endswith("_port")} == set(KEYS)
    assert {n.removesuffix("_url") for n in own_app if n.endswith("_url")} == set(KEYS)
    serving, app = ServingSettings(), PredictionAppSettings()
    for m in registry.MODELS:
        assert serving.port(m.key) == m.port
        assert app.urls()[m.key] == m.default_url
        assert {m.url_env, m.port_env} <= set(ENV_VARS)
    assert list(app.urls()) == list(KEYS)


def test_the_prediction_app_asks_registry_models_only() -> None:
    row = {"SessionKey": 1, "DriverNumber": "1", "LapNumber": 3, "PositionOnLap": 1, "SessionTime": 10.0}
    _, requests = prediction_requests.request_step(None, row, {"EventName": "X", "TotalLaps": 50})
    single = {m.key for m in registry.MODELS if m.request != "pairs"}  # a lone car completes no pair
    assert set(requests) == single
    for key, rows in requests.items():
        kind = registry.spec(key).request
        assert rows[-1]["DriverNumber"] == "1"
        assert ("RaceLaps" in rows[-1]) == (kind == "race")
