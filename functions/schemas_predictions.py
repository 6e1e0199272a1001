"""Model-output topic schemas: one model's :class:`Prediction` per feature record and the
debounced strategy :class:`Alert` derived from predictions. Re-exported by
:mod:`stratx.functions.schemas`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratx.functions.models.registry import MODEL_KEYS
from stratx.functions.schemas_raw import DRIVER_NUMBER

# The model keys come from the registry (functions/models/registry.py); ModelKey is their Literal.
if TYPE_CHECKING:
    ModelKey = str
else:
    ModelKey = Literal[MODEL_KEYS]


class Prediction(BaseModel):
    """One model's prediction for one feature record (topic ``stratx.predictions.<model>``).

    ``EventSessionTime``/``EventDate`` are the feature record's event time and ``IngestedAt`` the
    wall-clock time the prediction app read it, so ``ProducedAt - IngestedAt`` is the serving
    latency and ``ProducedAt - EventDate`` (live) the end-to-end lag. ``Status`` ``unavailable``:
    the model's service did not answer after the retries; ``Values`` is then empty and ``Reason``
    says why. ``Values`` holds the model's output columns (e.g. PredictedNextLapTime, DegRate,
    DegRateP10, PitProbability3Laps, OvertakeProbability1Lap, AnomalyScore).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "Prediction"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(pattern=DRIVER_NUMBER, description="the driver the prediction is about")
    LapNumber: int | None = Field(default=None, ge=1, description="the lap of the feature record")
    Model: ModelKey
    ModelVersion: str | None = Field(description="registry version of the model that answered")
    Status: Literal["ok", "unavailable"]
    Reason: str | None = None
    Values: dict[str, float | str | bool | None] = Field(default_factory=dict)
    OtherDriverNumber: str | None = Field(default=None, description="overtake: the car ahead")
    EventSessionTime: float = Field(description="s, the feature record's SessionTime")
    EventDate: datetime | None = Field(default=None, description="UTC, the feature record's Date")
    IngestedAt: datetime = Field(description="UTC wall clock when the feature record was read")
    ProducedAt: datetime = Field(description="UTC wall clock when the prediction was produced")


class Alert(BaseModel):
    """A strategy alert derived from predictions (topic ``stratx.alerts``), debounced."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "Alert"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(
        pattern=DRIVER_NUMBER,
        description='the car; "0" = the whole session (drift alerts; no car races as 0)',
    )
    LapNumber: int | None = Field(default=None, ge=1)
    Type: Literal[
        "tyre_cliff", "anomaly", "pit_window_open", "pit_window_closing", "overtake_likely", "drift"
    ]
    Severity: Literal["info", "warning", "critical"]
    Message: str = Field(description="one line a strategist can read, e.g. 'VER: tyre cliff likely (p=0.72)'")
    Model: str | None = None
    ModelVersion: str | None = None
    Value: float | None = Field(default=None, description="the number that triggered the alert")
    EventSessionTime: float
    Date: datetime = Field(description="UTC wall clock when the alert was raised")
