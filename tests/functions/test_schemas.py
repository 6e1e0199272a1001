"""The message-schema contract: JSON round trips, no extra fields, value ranges, immutability.

Valid payloads come from a real race (2023 Las Vegas GP, one driver to keep it fast).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from stratx.functions import catalog, dead_letters, ingest, neutralisations, race_state, schemas, track_state
from stratx.functions.features import track_gaps as tg
from stratx.functions.features.aggression import offline_lap_aggression
from stratx.functions.features.laps import build_lap_features
from stratx.functions.features.telemetry import offline_windows
from stratx.functions.features.track_map import load_track_maps
from stratx.functions.racedata import RaceData
from tests.conftest import DATA_DIR

NOW = datetime(2024, 3, 2, 15, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def samples(las_vegas: RaceData) -> dict[str, list[BaseModel]]:
    """Validated models per topic name: every session-topic event and every 25th driver-topic event of
    one driver, plus a dead letter and a checkpoint."""
    out: dict[str, list[BaseModel]] = {t.name: [] for t in catalog.ALL_TOPICS}
    rejected = None
    for record in ingest.iter_records(las_vegas.filter_drivers({"VER", "ALO"})):
        checked = ingest.validate(record)
        if isinstance(checked, ingest.Rejected):
            rejected = rejected or (record, checked)
            continue
        if record.topic.key is not catalog.KeyRule.SESSION_DRIVER or record.payload["Seq"] % 25 == 0:
            out[record.topic.name].append(checked)
    assert rejected is not None, "ALO's car data has nGear glitches in this race"
    record, why = rejected
    out[catalog.DEAD_LETTER.name].append(
        dead_letters.build(record.topic, record.payload, why.reason, stage="replay", key=record.key, now=NOW)
    )
    lap_events = [ingest.validate(r).model_dump(mode="json") for r in ingest.table_records(las_vegas, "laps")]
    features, _ = build_lap_features(lap_events)
    out[catalog.FEATURES_LAP.name] += [schemas.LapFeatures.model_validate(f) for f in features[::50]]
    out[catalog.FEATURES_LAP_BY_SESSION.name] = list(out[catalog.FEATURES_LAP.name])  # the same records
    windows = offline_windows(
        [r.payload for r in ingest.table_records(las_vegas.filter_drivers({"VER"}), "car_data")]
    )
    out[catalog.TELEMETRY_WINDOW.name] += [
        schemas.TelemetryWindow.model_validate({k: (None if v != v else v) for k, v in w.items()})
        for w in windows.to_dict("records")[::200]
    ]
    vegas_laps = [schemas.LapFeatures.model_validate(f).model_dump(mode="json") for f in features]
    lap_aggr = offline_lap_aggression(windows, [f for f in vegas_laps if f["DriverNumber"] == "1"])
    out[catalog.LAP_AGGRESSION.name] += [
        schemas.LapAggression.model_validate({k: (None if v != v else v) for k, v in r.items()})
        for r in lap_aggr.to_dict("records")
    ]
    pair = las_vegas.filter_drivers({"VER", "LEC"})
    vegas_map = tg.load_track_map(DATA_DIR / "circuits", pair.meta.circuit)
    assert vegas_map is not None
    gaps = tg.offline_track_gaps(pair, vegas_map)
    out[catalog.TRACK_GAP.name] += [
        schemas.TrackGap.model_validate({k: (None if v != v else v) for k, v in r.items()})
        for r in gaps.to_dict("records")[::400]
    ]
    samples = [json.loads(ingest.encode(r)) for r in ingest.table_records(pair, "pos_data")]
    progress, _ = tg.offline_progress(samples, tg.session_track(pair, vegas_map))
    out[catalog.PROGRESS.name] += [
        schemas.CarProgress.model_validate(p) for points in progress.values() for p in points[::400]
    ]
    detector = None  # the real retirements of the race's laps (HUL, TSU: laps not completed)
    for event in lap_events:
        detector, retired = race_state.retire_step(detector, race_state.LAPS, event)
        out[catalog.RETIREMENTS.name] += [schemas.Retirement.model_validate(r) for r in retired]
    # a safety-car status placed after the first 300 laps (SYNTHETIC timing: the schema is the point)
    neutral = None
    for event in lap_events[:300]:
        neutral, _ = neutralisations.neutral_step(neutral, race_state.LAPS, event)
    sc = {
        "SessionKey": 9189,
        "SessionTime": lap_events[299]["SessionTime"] + 1.0,
        "Status": "4",
        "Message": "SCDeployed",
    }
    neutral, deployed = neutralisations.neutral_step(neutral, race_state.TRACK_STATUS, sc)
    later = next(e for e in lap_events if e["SessionTime"] > sc["SessionTime"])
    neutral, deployed = neutralisations.neutral_step(neutral, race_state.LAPS, later)
    out[catalog.NEUTRALISATIONS.name] += [schemas.Neutralisation.model_validate(r) for r in deployed]
    # the race's track as the race-state app announces it (SessionInfo, then the first lap-1 record)
    info = next(r for r in ingest.iter_records(las_vegas) if r.topic is catalog.SESSION_INFO)
    track: dict[str, Any] | None = None
    for kind, event in [
        ("session_info", ingest.validate(info).model_dump(mode="json")),
        ("laps", lap_events[0]),
    ]:
        track, announced = track_state.track_step(track, kind, event, load_track_maps(DATA_DIR / "circuits"))
    out[catalog.RACE_TRACK.name] += [schemas.RaceTrack.model_validate(r) for r in announced]
    out[catalog.REPLAY_CHECKPOINTS.name] += [
        schemas.ReplayCheckpoint(
            ReplayId="9189", SessionKey=9189, Seq=-1, SessionTime=0.0, Finished=False, Date=NOW
        ),
        schemas.ReplayCheckpoint(
            ReplayId="vegas-2", SessionKey=9189, Seq=12345, SessionTime=4321.5, Finished=True, Date=NOW
        ),
    ]
    lap = features[200]
    for key, spec in catalog.PREDICTION_TOPICS.items():
        head = {
            "SessionKey": lap["SessionKey"],
            "DriverNumber": lap["DriverNumber"],
            "LapNumber": lap["LapNumber"],
            "Model": key,
            "EventSessionTime": lap["SessionTime"],
            "IngestedAt": NOW,
            "ProducedAt": NOW,
        }
        out[spec.name] += [
            # shape-only samples: the value is the lap's clean rolling median, not a model output
            schemas.Prediction(**head, ModelVersion="3", Status="ok", Values={"Example": lap["Last3Median"]}),
            schemas.Prediction(
                **head, ModelVersion=None, Status="unavailable", Reason="HTTP 503 after 3 tries"
            ),
        ]
    out[catalog.ALERTS.name].append(
        schemas.Alert(
            SessionKey=lap["SessionKey"],
            DriverNumber=lap["DriverNumber"],
            LapNumber=lap["LapNumber"],
            Type="pit_window_open",
            Severity="info",
            Message=f"{lap['Driver']}: pit window open (shape-only sample)",
            EventSessionTime=lap["SessionTime"],
            Date=NOW,
        )
    )
    return out


def _valid(samples: dict[str, list[BaseModel]], schema: type[BaseModel]) -> dict[str, Any]:
    topic = next(t for t in catalog.ALL_TOPICS if t.schema is schema)
    return samples[topic.name][-1].model_dump()


TOPIC_NAMES = [t.name for t in catalog.ALL_TOPICS]


@pytest.mark.parametrize("topic", TOPIC_NAMES)
def test_json_round_trip(topic: str, samples: dict[str, list[BaseModel]]) -> None:
    models = samples[topic]
    assert models, f"no sample for {topic}"
    schema = catalog.BY_NAME[topic].schema
    for model in models:
        assert type(model) is schema
        assert schema.model_validate_json(model.model_dump_json()) == model


@pytest.mark.parametrize("topic", TOPIC_NAMES)
def test_extra_fields_are_rejected(topic: str, samples: dict[str, list[BaseModel]]) -> None:
    schema = catalog.BY_NAME[topic].schema
    payload = samples[topic][0].model_dump()
    with pytest.raises(ValidationError) as err:
        schema.model_validate({**payload, "Bogus": 1})
    assert [e["type"] for e in err.value.errors()] == ["extra_forbidden"]


@pytest.mark.parametrize("topic", TOPIC_NAMES)
def test_models_are_frozen(topic: str, samples: dict[str, list[BaseModel]]) -> None:
    model = samples[topic][0]
    field = next(iter(type(model).model_fields))
    with pytest.raises(ValidationError):
        setattr(model, field, getattr(model, field))


@pytest.mark.parametrize(
    ("schema", "field", "value"),
    [
        (schemas.CarTelemetry, "Speed", -1),
        (schemas.CarTelemetry, "Speed", 401),
        (schemas.CarTelemetry, "nGear", 9),
        (schemas.CarTelemetry, "nGear", -1),
        (schemas.CarTelemetry, "Throttle", ingest.FEED_INVALID),  # the sentinel must be mapped first
        (schemas.CarTelemetry, "RPM", -5),
        (schemas.CarTelemetry, "DriverNumber", "VER"),
        (schemas.CarTelemetry, "DriverNumber", "123"),
        (schemas.CarTelemetry, "Seq", -1),
        (schemas.TrackStatus, "Status", "9"),
        (schemas.TrackStatus, "Status", "0"),
        (schemas.TrackStatus, "Status", "12"),
        (schemas.Lap, "LapNumber", 0),
        (schemas.Lap, "LapTime", -0.5),
        (schemas.Lap, "Position", 0),
        (schemas.Lap, "Driver", "V"),
        (schemas.Timing, "GapToLeader", -1.0),
        (schemas.SessionInfo, "v", 2),
    ],
)
def test_out_of_range_values_are_rejected(
    schema: type[BaseModel], field: str, value: object, samples: dict[str, list[BaseModel]]
) -> None:
    payload = {**_valid(samples, schema), field: value}
    with pytest.raises(ValidationError) as err:
        schema.model_validate(payload)
    assert [e["loc"][0] for e in err.value.errors()] == [field]


@pytest.mark.parametrize(
    ("schema", "field", "value"),
    [
        (schemas.CarTelemetry, "Speed", 0),
        (schemas.CarTelemetry, "nGear", 8),
        (schemas.CarTelemetry, "Throttle", 100),
        (schemas.CarTelemetry, "Throttle", None),
        (schemas.CarTelemetry, "Brake", None),
        (schemas.CarTelemetry, "DriverNumber", "81"),
        (schemas.TrackStatus, "Status", "7"),
        (schemas.Lap, "LapTime", None),
        (schemas.Timing, "GapToLeader", None),
        (schemas.Weather, "Date", None),
    ],
)
def test_edge_values_are_accepted(
    schema: type[BaseModel], field: str, value: object, samples: dict[str, list[BaseModel]]
) -> None:
    model = schema.model_validate({**_valid(samples, schema), field: value})
    assert getattr(model, field) == value


@pytest.mark.parametrize("topic", [t for t in catalog.RAW_TOPICS])
def test_raw_schemas_carry_the_event_header(topic: catalog.TopicSpec) -> None:
    assert issubclass(topic.schema, schemas.Event)
    assert {"v", "SessionKey", "Seq", "SessionTime", "Date"} <= set(topic.schema.model_fields)


@pytest.mark.parametrize("topic", TOPIC_NAMES)
def test_schema_name_is_the_class_name(topic: str) -> None:
    schema = catalog.BY_NAME[topic].schema
    assert schema.schema_name == schema.__name__  # type: ignore[attr-defined]
    assert schema.model_fields["v"].default == schemas.SCHEMA_VERSION
