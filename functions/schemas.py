"""Typed, versioned message schemas for every StratX topic.

Field names follow F1 timing / FastF1 vocabulary (DriverNumber, LapTime, Stint, Compound,
TyreLife, nGear, ...). Every event carries its event time twice:

* ``SessionTime``: seconds since the session-time origin ``t0`` (FastF1's ``SessionTime`` axis)
* ``Date``: the UTC wall-clock time of the event (``t0 + SessionTime``), or ``None`` when the
  source has no UTC origin

and ``Seq``: the position of the event in the replay's event-time order (unique per session,
used for resume and de-duplication downstream). Units are given per field.

The schemas live in four sibling modules by topic family, all re-exported here (the public
import path): :mod:`~stratx.functions.schemas_raw` (ingestion events and the shared field types),
:mod:`~stratx.functions.schemas_features` (feature topics), :mod:`~stratx.functions.schemas_predictions`
(predictions and alerts) and :mod:`~stratx.functions.schemas_control` (dead letters, replay
checkpoints, inbound OpenF1 records).
"""

from stratx.functions.schemas_control import (
    DEAD_LETTER_PAYLOAD_MAX,
    CarAtNeutralisation,
    DeadLetter,
    Neutralisation,
    OpenF1Inbound,
    RaceTrack,
    ReplayCheckpoint,
    Retirement,
    TrackMapData,
)
from stratx.functions.schemas_features import (
    CarProgress,
    LapAggression,
    LapFeatures,
    Share,
    TelemetryWindow,
    TrackGap,
)
from stratx.functions.schemas_predictions import MODEL_KEYS, Alert, ModelKey, Prediction
from stratx.functions.schemas_raw import (
    DRIVER_NUMBER,
    LONGEST_S,
    MAX_LAPS,
    SCHEMA_VERSION,
    SESSION_TIME_MAX_S,
    CarPosition,
    CarTelemetry,
    DriverEvent,
    DriverInfo,
    Event,
    Float,
    Int,
    Lap,
    NonNegFloat,
    RaceControl,
    SessionInfo,
    SessionSeconds,
    Timing,
    TrackStatus,
    UtcDate,
    Weather,
)

__all__ = [
    "DEAD_LETTER_PAYLOAD_MAX",
    "DRIVER_NUMBER",
    "LONGEST_S",
    "MAX_LAPS",
    "MODEL_KEYS",
    "SCHEMA_VERSION",
    "SESSION_TIME_MAX_S",
    "Alert",
    "CarAtNeutralisation",
    "CarPosition",
    "CarProgress",
    "CarTelemetry",
    "DeadLetter",
    "DriverEvent",
    "DriverInfo",
    "Event",
    "Float",
    "Int",
    "Lap",
    "LapAggression",
    "LapFeatures",
    "ModelKey",
    "Neutralisation",
    "NonNegFloat",
    "OpenF1Inbound",
    "Prediction",
    "RaceControl",
    "RaceTrack",
    "ReplayCheckpoint",
    "Retirement",
    "SessionInfo",
    "SessionSeconds",
    "Share",
    "TelemetryWindow",
    "Timing",
    "TrackGap",
    "TrackMapData",
    "TrackStatus",
    "UtcDate",
    "Weather",
]
