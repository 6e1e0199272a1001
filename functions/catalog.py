"""The topic contract: every StratX topic, its partitions, key, retention and value schema.

This module is the single catalog. Admin code creates topics from it (up front, with explicit
partitions and ``retention.ms``: Quix Streams and Tansu need both), producers look up the key
rule here, and the contract tests assert it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from stratx.functions import schemas
from stratx.functions.models import registry

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class KeyRule(StrEnum):
    """How a topic's message key is built; keys keep one driver's events in order."""

    SESSION_DRIVER = "<SessionKey>:<DriverNumber>"
    SESSION = "<SessionKey>"
    SOURCE = "<key of the rejected record>"
    REPLAY_ID = "<ReplayId>"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: KeyRule
    retention_ms: int
    schema: type[BaseModel]
    description: str
    cleanup_policy: str = "delete"

    def config(self) -> dict[str, str]:
        """Topic-level configs passed at creation."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


CAR_TELEMETRY = TopicSpec(
    "stratx.raw.car_telemetry",
    6,
    KeyRule.SESSION_DRIVER,
    7 * DAY_MS,
    schemas.CarTelemetry,
    "car-data samples: Speed, RPM, nGear, Throttle, Brake, DRS (~3.7 Hz per car)",
)
CAR_POSITION = TopicSpec(
    "stratx.raw.car_position",
    6,
    KeyRule.SESSION_DRIVER,
    7 * DAY_MS,
    schemas.CarPosition,
    "car positions X/Y/Z on the track frame (~3.8 Hz per car)",
)
LAPS = TopicSpec(
    "stratx.raw.laps",
    1,  # one partition: a session's laps stay in event-time order for the cross-driver features
    KeyRule.SESSION_DRIVER,
    30 * DAY_MS,
    schemas.Lap,
    "completed laps with sector times, stint, compound and tyre life",
)
TIMING = TopicSpec(
    "stratx.raw.timing",
    3,
    KeyRule.SESSION_DRIVER,
    30 * DAY_MS,
    schemas.Timing,
    "timing-tower updates: position, gap to leader, interval to the car ahead",
)
RACE_CONTROL = TopicSpec(
    "stratx.raw.race_control",
    1,
    KeyRule.SESSION,
    30 * DAY_MS,
    schemas.RaceControl,
    "race-control messages: flags, safety car, penalties",
)
TRACK_STATUS = TopicSpec(
    "stratx.raw.track_status",
    1,
    KeyRule.SESSION,
    30 * DAY_MS,
    schemas.TrackStatus,
    "track status changes (green, yellow, SC, red, VSC)",
)
WEATHER = TopicSpec(
    "stratx.raw.weather",
    1,
    KeyRule.SESSION,
    30 * DAY_MS,
    schemas.Weather,
    "weather-station readings, about one a minute",
)
SESSION_INFO = TopicSpec(
    "stratx.raw.session_info",
    1,
    KeyRule.SESSION,
    30 * DAY_MS,
    schemas.SessionInfo,
    "one record per replayed session: drivers, clock origin, sources",
)
FEATURES_LAP = TopicSpec(
    "stratx.features.lap",
    6,  # co-partitioned with stratx.features.telemetry_window: the lap-aggression app joins them
    KeyRule.SESSION_DRIVER,
    30 * DAY_MS,
    schemas.LapFeatures,
    "one record per driver-lap: rolling pace, stint, fuel-corrected degradation, pace deltas, gaps",
)
TELEMETRY_WINDOW = TopicSpec(
    "stratx.features.telemetry_window",
    6,
    KeyRule.SESSION_DRIVER,
    7 * DAY_MS,
    schemas.TelemetryWindow,
    "5 s tumbling-window car-telemetry features per driver (anomaly model, driver aggression)",
)
LAP_AGGRESSION = TopicSpec(
    "stratx.features.lap_aggression",
    6,  # co-partitioned with its inputs (same key, same partition number)
    KeyRule.SESSION_DRIVER,
    30 * DAY_MS,
    schemas.LapAggression,
    "one record per driver-lap: throttle, brake, overlap, DRS, decel and upshift features of the lap",
)
PROGRESS = TopicSpec(
    "stratx.features.progress",
    6,
    KeyRule.SESSION_DRIVER,
    7 * DAY_MS,
    schemas.CarProgress,
    "per-driver distance along the track from car positions, ~1 Hz",
)
TRACK_GAP = TopicSpec(
    "stratx.features.track_gap",
    6,
    KeyRule.SESSION_DRIVER,
    7 * DAY_MS,
    schemas.TrackGap,
    "continuous gap to the car ahead and to the leader per driver, 1 s grid (from car positions)",
)
DEAD_LETTER = TopicSpec(
    "stratx.dead_letter",
    1,
    KeyRule.SOURCE,
    30 * DAY_MS,
    schemas.DeadLetter,
    "records rejected by any stage, with the reason and the original payload",
)
REPLAY_CHECKPOINTS = TopicSpec(
    "stratx.replay_checkpoints",
    1,
    KeyRule.REPLAY_ID,
    365 * DAY_MS,
    schemas.ReplayCheckpoint,
    "last published event per replay, for resume",
    cleanup_policy="compact",
)

RAW_TOPICS: tuple[TopicSpec, ...] = (
    SESSION_INFO,
    CAR_TELEMETRY,
    CAR_POSITION,
    LAPS,
    TIMING,
    RACE_CONTROL,
    TRACK_STATUS,
    WEATHER,
)
FEATURES_LAP_BY_SESSION = TopicSpec(
    "stratx.features.lap_by_session",
    6,
    KeyRule.SESSION,  # a session's records share one partition, in the order the lap app emits them
    30 * DAY_MS,
    schemas.LapFeatures,
    "the records of stratx.features.lap keyed by session, in line-crossing order: the prediction "
    "app's input (its cross-driver context, e.g. the anomaly field reference, then never depends on "
    "how six partitions interleave)",
)
FEATURE_TOPICS: tuple[TopicSpec, ...] = (
    FEATURES_LAP,
    FEATURES_LAP_BY_SESSION,
    TELEMETRY_WINDOW,
    LAP_AGGRESSION,
    PROGRESS,
    TRACK_GAP,
)
PREDICTION_TOPICS: dict[str, TopicSpec] = {
    model.key: TopicSpec(
        model.topic,
        6,
        KeyRule.SESSION_DRIVER,
        7 * DAY_MS,
        schemas.Prediction,
        f"{model.key} model predictions per driver, with the model version and the feature record's event time",
    )
    for model in registry.MODELS
}
ALERTS = TopicSpec(
    "stratx.alerts",
    1,
    KeyRule.SESSION_DRIVER,
    30 * DAY_MS,
    schemas.Alert,
    "debounced strategy alerts (tyre cliff, anomaly, pit window, overtake likely, drift)",
)
RETIREMENTS = TopicSpec(
    "stratx.race.retirements",
    6,  # co-partitioned with stratx.features.lap_by_session (same key): the prediction app joins them
    KeyRule.SESSION,
    30 * DAY_MS,
    schemas.Retirement,
    "race state: one record per retired car (last lap, the signal and rule that showed it)",
)
NEUTRALISATIONS = TopicSpec(
    "stratx.race.neutralisations",
    1,  # a few records a race, read whole by the alerts app
    KeyRule.SESSION,
    30 * DAY_MS,
    schemas.Neutralisation,
    "race state: one record per safety car / VSC deployment, with every running car's tyres",
)
RACE_TRACK = TopicSpec(
    "stratx.race.track",
    1,  # one record a session, followed whole by every replica of the track-gap apps
    KeyRule.SESSION,
    30 * DAY_MS,
    schemas.RaceTrack,
    "race state: each session's clock, drivers, race start and track map, once the stream has shown them",
)
RACE_STATE_TOPICS: tuple[TopicSpec, ...] = (RETIREMENTS, NEUTRALISATIONS, RACE_TRACK)
ALL_TOPICS: tuple[TopicSpec, ...] = (
    *RAW_TOPICS,
    *FEATURE_TOPICS,
    *RACE_STATE_TOPICS,
    *PREDICTION_TOPICS.values(),
    ALERTS,
    DEAD_LETTER,
    REPLAY_CHECKPOINTS,
)
BY_NAME: dict[str, TopicSpec] = {t.name: t for t in ALL_TOPICS}

# Inbound topics (not raw events yet; kept out of ALL_TOPICS, whose topics all carry StratX schemas):
# the stateless ingest function (quix_apps/ingest_app.py, localstack/adapters/) reads them.
INBOUND_OPENF1 = TopicSpec(
    "stratx.inbound.openf1",
    6,
    KeyRule.SESSION_DRIVER,  # session-wide endpoints (weather, race control) use <SessionKey>
    7 * DAY_MS,
    schemas.OpenF1Inbound,
    "raw OpenF1 API records as JSON; headers openf1-endpoint and openf1-session-start",
)
INBOUND_TOPICS: tuple[TopicSpec, ...] = (INBOUND_OPENF1,)


def message_key(spec: TopicSpec, session_key: int, driver_number: str | None = None) -> str:
    """The message key for an event on ``spec``; raises for a driver topic without a driver."""
    if spec.key is KeyRule.SESSION_DRIVER:
        if driver_number is None:
            raise ValueError(f"{spec.name} needs a DriverNumber for its key")
        return f"{session_key}:{driver_number}"
    if spec.key is KeyRule.SESSION:
        return str(session_key)
    raise ValueError(f"{spec.name} keys are not derived from a session ({spec.key})")
