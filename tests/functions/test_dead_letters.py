"""The one dead-letter builder (functions/dead_letters.py): shape, key, reason wording, payload.

Real records: a car-data sample with the nGear glitch of the bundled Las Vegas race (ALO), laps of
the same race, and the recorded inbound OpenF1 records of the serverless fixtures.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from stratx.functions import catalog, dead_letters, inbound, ingest, schemas
from stratx.functions.racedata import RaceData
from stratx.quix_apps import lap_features, predictions

NOW = datetime(2024, 11, 24, 6, 30, tzinfo=UTC)
SERVERLESS = Path(__file__).resolve().parents[1] / "fixtures" / "serverless" / "records.json"


def failure(schema: type[schemas.BaseModel], value: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        schema.model_validate(value)
    return caught.value


@pytest.fixture(scope="module")
def glitch(las_vegas: RaceData) -> ingest.RawRecord:
    """ALO's first car-data sample with nGear > 8 (a real feed glitch)."""
    for record in ingest.iter_records(las_vegas.filter_drivers({"ALO"})):
        if record.topic is catalog.CAR_TELEMETRY and record.payload["nGear"] > 8:
            return record
    raise AssertionError("ALO's car data has nGear glitches in this race")


@pytest.fixture(scope="module")
def laps(las_vegas: RaceData) -> list[dict[str, Any]]:
    return [json.loads(ingest.encode(r)) for r in ingest.table_records(las_vegas, "laps")]


def test_a_real_glitch_becomes_a_dead_letter_with_field_and_value(glitch: ingest.RawRecord) -> None:
    exc = failure(schemas.CarTelemetry, glitch.payload)
    letter = dead_letters.build(glitch.topic, glitch.payload, exc, stage="replay", key=glitch.key, now=NOW)
    gear = glitch.payload["nGear"]
    assert (
        letter.Reason == f"CarTelemetry schema: nGear: Input should be less than or equal to 8 (got {gear})"
    )
    assert (letter.v, letter.SourceTopic, letter.Key, letter.Stage, letter.Date) == (
        1,
        catalog.CAR_TELEMETRY.name,
        glitch.key,
        "replay",
        NOW,
    )
    restored = json.loads(letter.Payload)
    assert datetime.fromisoformat(restored.pop("Date")) == glitch.payload["Date"]
    assert restored == {k: v for k, v in glitch.payload.items() if k != "Date"}
    assert schemas.DeadLetter.model_validate_json(letter.model_dump_json()) == letter


def test_ingest_and_the_builder_word_a_schema_failure_the_same(glitch: ingest.RawRecord) -> None:
    rejected = ingest.validate(glitch)
    assert isinstance(rejected, ingest.Rejected)
    assert rejected.reason == dead_letters.schema_reason(failure(schemas.CarTelemetry, glitch.payload))
    from_text = dead_letters.build(glitch.topic, glitch.payload, rejected.reason, stage="s", now=NOW)
    from_exc = dead_letters.build(
        glitch.topic, glitch.payload, failure(schemas.CarTelemetry, glitch.payload), stage="s", now=NOW
    )
    assert from_text == from_exc


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"LapNumber": 0}, "LapNumber: Input should be greater than or equal to 1 (got 0)"),
        ({"Bogus": 1}, "Bogus: Extra inputs are not permitted (got 1)"),
        (
            {"LapTime": "x" * 500},
            "LapTime: Input should be a valid number, unable to parse string as a number"
            f" (got '{'x' * 119}... (502 chars))",
        ),
    ],
)
def test_every_producer_words_a_lap_schema_failure_the_same(
    laps: list[dict[str, Any]], change: dict[str, Any], detail: str
) -> None:
    """Replay/ingest (ingest.validate) and the lap-features app give one reason for one bad lap."""
    bad = {**laps[0], **change}
    want = f"Lap schema: {detail}"
    assert dead_letters.schema_reason(failure(schemas.Lap, bad)) == want
    rejected = ingest.validate(ingest.RawRecord(catalog.LAPS, "k", bad))
    assert isinstance(rejected, ingest.Rejected) and rejected.reason == want
    app = schemas.DeadLetter.model_validate(lap_features.step(bad, _NoState())["dead_letter"])
    assert app.Reason == want and app.Key == f"{bad['SessionKey']}:{bad['DriverNumber']}"


def test_the_prediction_app_names_the_field_too() -> None:
    """It used to say only the message ("LapFeatures schema: Field required")."""
    step = predictions.make_step(client=None, context=lambda _: {})  # type: ignore[arg-type]
    out = step({"SessionKey": 9189, "DriverNumber": "1"}, _NoState())
    letter = schemas.DeadLetter.model_validate(out["dead_letter"])
    assert letter.Reason.startswith(
        "LapFeatures schema: LapNumber: Field required; SessionTime: Field required"
    )
    assert letter.Reason.endswith(" more") and letter.Key == "9189:1"


def test_a_missing_field_quotes_no_value_and_extra_errors_are_counted() -> None:
    exc = failure(schemas.Lap, {"SessionKey": 9189, "DriverNumber": "1"})
    assert exc.error_count() > 3
    reason = dead_letters.schema_reason(exc)
    assert reason == (
        "Lap schema: Seq: Field required; SessionTime: Field required; Driver: Field required; "
        f"{exc.error_count() - 3} more"
    )
    assert "got" not in reason


def test_a_nested_field_is_a_dotted_path_and_a_non_object_is_the_record(laps: list[dict[str, Any]]) -> None:
    assert dead_letters.error_detail(failure(schemas.Lap, [1, 2])).startswith("record: Input should be")
    exc = failure(schemas.Lap, {**laps[0], "Bogus": {"a": 1}})
    assert dead_letters.error_detail(exc, limit=1) == "Bogus: Extra inputs are not permitted (got {'a': 1})"


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ({"SessionKey": 9189, "DriverNumber": "16"}, "9189:16"),
        ({"SessionKey": 9189}, "9189"),
        ({"raw": "not json"}, None),  # was "None:None" in the apps
        ([1, 2], None),
        (b"{", None),
    ],
)
def test_the_key_is_read_from_the_record(record: Any, key: str | None) -> None:
    assert dead_letters.record_key(record) == key
    assert dead_letters.build("t", record, "r: x", stage="s").Key == key
    assert dead_letters.build("t", record, "r: x", stage="s", key="given").Key == "given"


def test_raw_bytes_are_kept_as_received_not_json_quoted() -> None:
    records = json.loads(SERVERLESS.read_text())
    raw = records[0]["value"].encode()
    letter = dead_letters.build(catalog.INBOUND_OPENF1, raw, "openf1 x: y", stage="ingest-fn", now=NOW)
    assert letter.Payload == raw.decode() and json.loads(letter.Payload) == json.loads(raw)
    assert dead_letters.build("t", b"\xff{", "r", stage="s").Payload == "\\xff{"


def test_the_inbound_core_builds_its_dead_letters_from_the_record_only() -> None:
    """Same inbound record -> byte-identical dead letter (Date is the record's timestamp)."""
    records = json.loads(SERVERLESS.read_text())
    r = records[0]
    record = inbound.InboundRecord(
        topic=r["topic"],
        partition=r["partition"],
        offset=r["offset"],
        timestamp_ms=r["timestamp"],
        key=r["key"].encode(),
        value=r["value"].encode(),
        headers=(),  # no endpoint, no session start: a dead letter
    )
    first, again = inbound.transform(record), inbound.transform(record)
    assert first == again and [o.topic for o in first] == [catalog.DEAD_LETTER.name]
    letter = schemas.DeadLetter.model_validate_json(first[0].value)
    assert letter.Date == datetime.fromtimestamp(r["timestamp"] / 1000, UTC)
    assert letter.Payload == r["value"] and letter.Key == r["key"] and letter.Stage == inbound.STAGE
    assert letter.Reason.endswith(f"[{record.source_id}]")


def test_a_huge_payload_is_bounded() -> None:
    letter = dead_letters.build("t", {"raw": "x" * 100_000}, "r", stage="s")
    assert len(letter.Payload) < schemas.DEAD_LETTER_PAYLOAD_MAX + 100 and "truncated" in letter.Payload


class _NoState:
    def get(self, key: str, default: Any = None) -> Any:
        return default

    def set(self, key: str, value: Any) -> None:
        raise AssertionError("a rejected record must not change the state")
