"""Feast definitions for the per-lap families: the lap features (``stratx.functions.features.laps``)
and the driver-aggression features (``stratx.functions.features.aggression``).

Declarative only: no I/O and no environment reads, so ``feast apply`` (CLI) and
``stratx.quix_apps.kit.feature_store.apply_repo`` (set-up code) register the same objects.
The record schemas ``stratx.functions.schemas.LapFeatures`` and ``LapAggression`` own the feature
names and types: a view here picks its family of names and :func:`_fields` types each as the schema
does (a name the schema lacks fails the import). Each model recipe's ``SERVICE_FEATURES`` is what
its versioned service below holds (unit tests check it).
"""

import typing
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Bool, Float64, Int64, String
from pydantic import BaseModel

from stratx.functions.features import families
from stratx.functions.schemas import LapAggression, LapFeatures

# A race is ~2 h; one day of ttl keeps every lap of a session in the point-in-time lookback
# of training joins without reaching into another race weekend.
LAP_TTL = timedelta(days=1)

# The car: every lap feature is a per-driver value (F1 timing's DriverNumber, e.g. "1", "44").
driver = Entity(
    name="driver",
    join_keys=["DriverNumber"],
    value_type=ValueType.STRING,
    description="Car number as F1 timing writes it",
)

# The session: the same driver runs many sessions; OpenF1's session_key keeps them apart.
session = Entity(
    name="session",
    join_keys=["SessionKey"],
    value_type=ValueType.INT64,
    description="OpenF1 session_key",
)

# Offline history for training: one row per driver-lap, event time = lap end (UTC). The path is
# relative; Feast resolves it against the data dir (STRATX_FEAST_DATA_DIR, see open_store).
lap_features_file = FileSource(
    name="lap_features_file",
    path="lap_features.parquet",
    timestamp_field="event_timestamp",
    description="LapFeatures rows, all columns, event_timestamp = lap end UTC",
)

# Streaming writes: the lap-features app pushes each new driver-lap straight to the online store.
lap_features_push = PushSource(
    name="lap_features_push",
    batch_source=lap_features_file,
    description="LapFeatures rows pushed as laps complete",
)

# Python type of a schema field -> Feast type (bool before int: a bool is an int).
_FEAST_TYPES = ((bool, Bool), (int, Int64), (float, Float64), (str, String))


def _feast_type(record: type[BaseModel], name: str) -> typing.Any:
    """The Feast type of ``record``'s field ``name`` (``float | None`` -> Float64)."""
    annotation = record.model_fields[name].annotation
    found = {t for t in typing.get_args(annotation) or (annotation,) if t is not type(None)}
    for python_type, feast_type in _FEAST_TYPES:
        if found == {python_type}:
            return feast_type
    raise TypeError(f"{record.__name__}.{name}: no Feast type for {annotation}")


def _fields(record: type[BaseModel], *names: str) -> list[Field]:
    """The entity keys, then ``names`` typed as ``record`` types them."""
    return [Field(name=n, dtype=_feast_type(record, n)) for n in ("DriverNumber", "SessionKey", *names)]


# Pace: lap time, cleanliness, rolling clean-lap windows, bests and deltas to rivals.
lap_pace = FeatureView(
    name="lap_pace",
    entities=[driver, session],
    ttl=LAP_TTL,
    source=lap_features_push,
    schema=_fields(LapFeatures, *families.PACE),
    online=True,
    description="Lap pace: rolling clean-lap windows, personal/session bests, deltas",
)

# Stint: tyre state, fuel model and in-stint degradation slopes.
lap_stint = FeatureView(
    name="lap_stint",
    entities=[driver, session],
    ttl=LAP_TTL,
    source=lap_features_push,
    schema=_fields(LapFeatures, *families.STINT),
    online=True,
    description="Stint: compound, tyre life, fuel-corrected degradation",
)

# Gaps: running order and time gaps at the timing line (traffic, DRS, lapped cars).
lap_gaps = FeatureView(
    name="lap_gaps",
    entities=[driver, session],
    ttl=LAP_TTL,
    source=lap_features_push,
    schema=_fields(LapFeatures, *families.GAPS),
    online=True,
    description="Gaps: position and intervals at the line",
)

# Next-lap-time model v1: pace and stint in full, plus the traffic that slows a lap.
lap_time_v1 = FeatureService(
    name="lap_time_v1",
    features=[
        lap_pace,
        lap_stint,
        lap_gaps[list(families.TRAFFIC)],
    ],
    description="Inputs of the lap-time model, version 1",
)

# Tyre-degradation model v1: stint slopes and the pace they come from.
tyre_deg_v1 = FeatureService(
    name="tyre_deg_v1",
    features=[lap_stint, lap_pace],
    description="Inputs of the tyre-degradation model, version 1",
)

# Pit-window model v1: tyre state, the gaps a stop would cost, and current pace.
pit_window_v1 = FeatureService(
    name="pit_window_v1",
    features=[lap_stint, lap_gaps, lap_pace],
    description="Inputs of the pit-window model, version 1",
)

# Lap context: the lap's own timing values (track status, speed traps), passed through by the lap
# features so the anomaly model reads what the car measured next to what it expects, and the
# causal scope of the lap (neutralised; green and clean), which the alert rules read.
lap_context = FeatureView(
    name="lap_context",
    entities=[driver, session],
    ttl=LAP_TTL,
    source=lap_features_push,
    schema=_fields(LapFeatures, *families.CONTEXT),
    online=True,
    description="Lap context: track status codes and speed traps of the lap",
)

# Overtake model v1: the gap to the car ahead and who is faster.
overtake_v1 = FeatureService(
    name="overtake_v1",
    features=[lap_gaps, lap_pace],
    description="Inputs of the overtake model (1-3 laps), version 1",
)

# ------------------------------------------------------------------ driver aggression
# Offline history of the aggression family: one row per driver-lap, event time = lap end (UTC);
# its own parquet, since the rows (LapAggression) are not LapFeatures rows.
lap_aggression_file = FileSource(
    name="lap_aggression_file",
    path="lap_aggression.parquet",
    timestamp_field="event_timestamp",
    description="LapAggression rows, all columns, event_timestamp = lap end UTC",
)

# Streaming writes: the lap-aggression app pushes each finalized driver-lap to the online store.
lap_aggression_push = PushSource(
    name="lap_aggression_push",
    batch_source=lap_aggression_file,
    description="LapAggression rows pushed as laps are finalized",
)

# Aggression: throttle/brake/DRS use, braking and shifting over the lap's telemetry windows.
lap_aggression = FeatureView(
    name="lap_aggression",
    entities=[driver, session],
    ttl=LAP_TTL,
    source=lap_aggression_push,
    schema=_fields(LapAggression, *families.AGGRESSION),
    online=True,
    description="Driver aggression per lap: pedal, DRS, braking and gear-shift use from telemetry",
)

# Driver-aggression model v1: how hard a driver pushes, next to the pace it buys.
driver_aggression_v1 = FeatureService(
    name="driver_aggression_v1",
    features=[lap_aggression, lap_pace],
    description="Inputs of the driver-aggression model, version 1",
)

# Overtake model v2: v1's inputs plus aggression. A new version rather than an edit of
# overtake_v1, whose feature list is frozen for the model version trained on it.
overtake_v2 = FeatureService(
    name="overtake_v2",
    features=[lap_gaps, lap_pace, lap_aggression],
    description="Inputs of the overtake model (1-3 laps), version 2: v1 + driver aggression",
)

# Overtake model v3 (the trained model's inputs, per car of the pair): gap and DRS, pace, and the
# tyre state v1/v2 lacked; no aggression (most races have no car telemetry).
overtake_v3 = FeatureService(
    name="overtake_v3",
    features=[
        lap_gaps[["LapNumber", "PositionOnLap", "IntervalAhead", "InDRSRange"]],
        lap_pace[["LapTime", "Last3Median", "Last5Median", "DeltaToCarAhead"]],
        lap_stint[["Compound", "TyreLife", "LapsInStint", "StintDegSlope"]],
    ],
    description="Inputs of the overtake model (1-3 laps), version 3: gaps, pace and tyres of both cars",
)

# Anomaly model v1, lap level: what the car measured (speed traps, lap time) and the context that
# sets what to expect. Its window level reads TelemetryWindow records from the stream.
anomaly_v1 = FeatureService(
    name="anomaly_v1",
    features=[
        lap_context,
        lap_pace[["LapTime", "IsClean", "Last3Median"]],
        lap_stint[["Compound", "TyreLife", "FuelKg", "LapsInStint"]],
        lap_gaps[["LapNumber", "PositionOnLap", "IntervalAhead", "InDRSRange"]],
    ],
    description="Inputs of the anomaly model (lap level), version 1",
)
