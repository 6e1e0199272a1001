"""The model registry: every model StratX trains, serves and predicts with, declared once.

Everything keyed by model is derived from :data:`MODELS`: the training order and the CLI's
``--model`` choices (:data:`MODEL_KEYS`), the ``Prediction.Model`` field, the prediction topics
(``catalog.PREDICTION_TOPICS``), the rows the prediction app sends each model
(``prediction_requests``), the serving schemas (``serving_schemas.SCHEMAS``), the per-model
settings (``STRATX_<KEY>_URL``, ``STRATX_<KEY>_PORT``; tests check the fields against this list) and
the dashboard's labels. The recipe itself is ``stratx.functions.models.<key>`` (``RECIPE``), its
service ``bentos/<key>/``.

Pure and light (no pandas): the schemas, the catalog and the serving wheel import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What the prediction app sends a model for one LapFeatures record (prediction_requests.request_step):
#   lap: the record itself; race: the record plus EventName and RaceLaps (SessionInfo TotalLaps);
#   pairs: one pair row per (car behind, car ahead) the record completes, each about the car behind;
#   history: the cars that completed the lap earlier, the driver's last laps, then the record.
Request = Literal["lap", "race", "pairs", "history"]


@dataclass(frozen=True)
class ModelSpec:
    """One model. ``row``/``prediction``: the names of its request row and per-row prediction types in
    ``serving_schemas``; ``primary``: its headline output (the dashboard's column)."""

    key: str
    label: str
    port: int
    request: Request
    row: str
    prediction: str
    primary: str

    @property
    def model_name(self) -> str:
        """Its MLflow registered model (and BentoML model) name."""
        return f"stratx-{self.key.replace('_', '-')}"

    @property
    def recipe_module(self) -> str:
        return f"stratx.functions.models.{self.key}"

    @property
    def topic(self) -> str:
        """The topic its predictions go to."""
        return f"stratx.predictions.{self.key}"

    @property
    def url_env(self) -> str:
        """The environment variable with its service's base URL (prediction app)."""
        return f"STRATX_{self.key.upper()}_URL"

    @property
    def port_env(self) -> str:
        """The environment variable with its service's port (`stratx serve`)."""
        return f"STRATX_{self.key.upper()}_PORT"

    @property
    def default_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def service_name(self) -> str:
        """Its container / Kubernetes service name (compose, k8s manifests)."""
        return f"{self.key.replace('_', '-')}-service"


# Training, report and dashboard order.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "lap_time", "next lap", 3101, "lap", "LapFeatures", "LapTimePrediction", "PredictedNextLapTime"
    ),
    ModelSpec("tyre_deg", "tyre deg", 3102, "lap", "LapFeatures", "TyreDegPrediction", "DegRate"),
    ModelSpec(
        "pit_window", "pit window", 3103, "race", "PitWindowRow", "PitWindowPrediction", "PitProbability3Laps"
    ),
    ModelSpec(
        "overtake", "overtake", 3104, "pairs", "OvertakeRow", "OvertakePrediction", "OvertakeProbability1Lap"
    ),
    ModelSpec("anomaly", "anomaly", 3105, "history", "AnomalyRow", "AnomalyPrediction", "AnomalyScore"),
)
MODEL_KEYS: tuple[str, ...] = tuple(m.key for m in MODELS)
BY_KEY: dict[str, ModelSpec] = {m.key: m for m in MODELS}


def spec(key: str) -> ModelSpec:
    """The registry entry of model ``key``; ValueError for an unknown key."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise ValueError(f"unknown model {key!r}; known: {', '.join(MODEL_KEYS)}") from None
