"""Request and response models of the BentoML services, one small block per model.

A request is a batch ``{"rows": [...]}`` of feature rows; a response names the model and its
registry version and holds one prediction per row, in order. A prediction field is ``null`` where
the recipe cannot score a row (e.g. no lap time yet to anchor on). Field names are the recipes'
output columns (F1 timing vocabulary). Adding a model = a row model (when it is not LapFeatures)
and a prediction model here, named by the model's registry entry (:data:`SCHEMAS` follows it). Rows are what the recipe's ``predict`` takes,
except anomaly: its rows are LapFeatures and the service builds the recipe's rows from the batch
(``serving.recipe_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stratx.functions.models import registry
from stratx.functions.schemas import DRIVER_NUMBER, LapFeatures

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
    NextLapTimeP10: float | None = Field(
        default=None, description="s, lower end of the calibrated 80% band for the next lap if it is raced"
    )
    NextLapTimeP90: float | None = Field(default=None, description="s, upper end of that band")


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
    TrackStatus: str | None = Field(default=None, pattern=r"^[0-9]*$", description="raw lap status codes")


class PitWindowPrediction(Prediction):
    PitProbability3Laps: float | None = Field(description="P(the driver pits within 3 laps)")
    WindowOpenLap: float | None = Field(description="first recommended in-lap (null: no window)")
    WindowCloseLap: float | None = Field(description="last recommended in-lap")
    PitLossSeconds: float | None = Field(description="s, the circuit's pit-lane loss")
    UndercutScore: float | None = Field(
        description="P(undercut succeeds) if stopping now; null when no car is within 3 s ahead"
    )


# ------------------------------------------------------------------ overtake
class OvertakeRow(LapFeatures):
    """A pair row (the overtake recipe's ``pair_rows``): the car behind's LapFeatures unprefixed, the
    car ahead's ``overtake.PAIR_COLUMNS`` prefixed ``Ahead`` (its ``LapNumber`` is the same lap, so not
    repeated). The car ahead is the one that crossed the line just before on the same lap."""

    EventName: str | None = Field(default=None, description="circuit pass rate; else the overall rate")
    AheadDriverNumber: str = Field(pattern=DRIVER_NUMBER)
    AheadSessionTime: float = Field(description="the car ahead's lap end, s since session t0")
    AheadLapTime: float | None = Field(default=None, description="s")
    AheadCompound: str | None = None
    AheadTyreLife: float | None = Field(default=None, description="laps")
    AheadLapsInStint: int
    AheadLast3Median: float | None = None
    AheadLast5Median: float | None = None
    AheadStintDegSlope: float | None = Field(default=None, description="fuel-corrected s/lap of tyre life")
    AheadDeltaToCarAhead: float | None = None
    AheadIntervalAhead: float | None = Field(default=None, description="s, the car ahead's own gap")
    AheadInDRSRange: bool
    AheadPositionOnLap: int = Field(ge=1)

    @model_validator(mode="after")
    def _adjacent(self) -> OvertakeRow:
        if self.AheadPositionOnLap != self.PositionOnLap - 1:
            raise ValueError(
                f"not a pair: the car ahead crossed the line P{self.AheadPositionOnLap}, "
                f"the car behind P{self.PositionOnLap} (must be adjacent)"
            )
        return self


class OvertakePrediction(Prediction):
    OvertakeProbability1Lap: float | None = Field(description="P(the car behind passes within 1 lap)")
    OvertakeProbability2Laps: float | None = Field(description="P(passes within 2 laps)")
    OvertakeProbability3Laps: float | None = Field(description="P(passes within 3 laps)")


# ------------------------------------------------------------------ anomaly
class AnomalyRow(LapFeatures):
    """One LapFeatures row of a lap-level anomaly request. The recipe's references are causal and
    built from the *batch* (``anomaly.lap_rows``): a request holds one session's context, the cars
    that completed the current lap earlier (field reference), the driver's recent laps (own
    reference, >= 5 for a full one) and the row to score, which the client reads last. Every row
    gets a prediction; a (SessionKey, DriverNumber, LapNumber) sent twice is scored once.
    ``EventName`` is accepted (the prediction app sends it) and unused: one session per request, keyed
    by ``SessionKey``. Window-level (TelemetryWindow) scoring is offline only for now."""

    EventName: str | None = Field(default=None, description="accepted, unused (sessions key on SessionKey)")


class AnomalyPrediction(Prediction):
    AnomalyScore: float | None = Field(ge=0, le=1, description="calibrated, 0..1 (null: too few signals)")
    AnomalyFlag: bool | None = Field(description="score at or above the alarm threshold")
    AnomalySignal: str | None = Field(
        description="the signal with the largest deficit (SpeedI1/I2/FL/ST, LapTime); '' when none"
    )


@dataclass(frozen=True)
class ModelSchema:
    """The request row type and the per-row prediction type of one model's service."""

    row: type[BaseModel]
    prediction: type[Prediction]


# Per model, the types its registry entry names (functions/models/registry.py: ``row``, ``prediction``).
SCHEMAS: dict[str, ModelSchema] = {
    m.key: ModelSchema(globals()[m.row], globals()[m.prediction]) for m in registry.MODELS
}
