"""Request and response models of the BentoML services, one small block per model.

A request is a batch ``{"rows": [...]}`` of feature rows; a response names the model and its
registry version and holds one prediction per row, in order. A prediction field is ``null`` where
the recipe cannot score a row (e.g. no lap time yet to anchor on). Field names are the recipes'
output columns (F1 timing vocabulary). Adding a model = a row model (when it is not LapFeatures),
a prediction model, and an entry in :data:`SCHEMAS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from stratx.functions.schemas import LapFeatures

MAX_ROWS = 5000  # rows per request; larger batches get a 400 (split them client-side)

P = TypeVar("P", bound=BaseModel)


class Prediction(BaseModel):
    """Base of the per-row prediction models."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PredictResponse(BaseModel, Generic[P]):
    """Predictions for a batch of rows, in request order, and the model that made them."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    model: str = Field(description="MLflow registered model name, e.g. stratx-lap-time")
    version: str = Field(description="MLflow registry version of the champion being served")
    rows: int = Field(ge=0, description="number of predictions")
    predictions: list[P]


# ------------------------------------------------------------------ lap_time
class LapTimePrediction(Prediction):
    PredictedNextLapTime: float | None = Field(description="s, the driver's next lap")


# ------------------------------------------------------------------ tyre_deg
class TyreDegPrediction(Prediction):
    DegRate: float | None = Field(description="s/lap, median fuel-corrected degradation of the stint")
    DegRateP10: float | None = Field(description="s/lap, lower end of the calibrated 80% band")
    DegRateP90: float | None = Field(description="s/lap, upper end of the calibrated 80% band")
    FalloffScore: float | None = Field(description="pace lost since new, 0..1")
    CliffProbability: float | None = Field(description="P(a >= 1 s cliff in the next 3 laps)")


# ------------------------------------------------------------------ pit_window
class PitWindowRow(LapFeatures):
    """LapFeatures plus what sharpens the pit-window model (all optional)."""

    EventName: str | None = Field(default=None, description="circuit tables (RaceLaps, pit loss)")
    RaceLaps: int | None = Field(default=None, ge=1, description="scheduled race distance, laps")
    TrackStatus: str | None = Field(default=None, pattern=r"^\d*$", description="raw lap status codes")


class PitWindowPrediction(Prediction):
    PitProbability3Laps: float | None = Field(description="P(the driver pits within 3 laps)")
    WindowOpenLap: float | None = Field(description="first recommended in-lap (null: no window)")
    WindowCloseLap: float | None = Field(description="last recommended in-lap")
    PitLossSeconds: float | None = Field(description="s, the circuit's pit-lane loss")
    UndercutScore: float | None = Field(
        description="P(undercut succeeds) if stopping now; null when no car is within 3 s ahead"
    )


@dataclass(frozen=True)
class ModelSchema:
    """The request row type and the per-row prediction type of one model's service."""

    row: type[BaseModel]
    prediction: type[Prediction]


SCHEMAS: dict[str, ModelSchema] = {
    "lap_time": ModelSchema(LapFeatures, LapTimePrediction),
    "tyre_deg": ModelSchema(LapFeatures, TyreDegPrediction),
    "pit_window": ModelSchema(PitWindowRow, PitWindowPrediction),
}
