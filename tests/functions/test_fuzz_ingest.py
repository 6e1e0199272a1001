"""Property-based fuzzing of ingestion: ``ingest.validate`` / ``ingest.encode`` for every raw topic,
the consumer side (``wire.parse`` of the produced bytes), and the dead-letter round trip.

(a) valid records: a real record of the 2023 Las Vegas GP (bundled) with any subset of its fields
    redrawn within the physical ranges -> accepted by both paths, and the produced bytes parse back
    to the same model on the consumer side (0 valid records lost);
(b) invalid records: one field made invalid (wrong type, out of range, NaN/inf, missing, extra,
    huge string, naive or absurd date) or a payload that is not an object -> rejected by both
    paths with a non-empty reason; the dead letter keeps the original payload and survives a JSON
    round trip; nothing raises.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratx.bentos.lifecycle import sources
from stratx.functions import catalog, dead_letters, ingest, schemas
from stratx.functions.catalog import TopicSpec
from stratx.functions.settings import REPO_ROOT
from stratx.quix_apps.kit import wire

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RACE = REPO_ROOT / "data" / "races" / "2023_las_vegas_grand_prix_race"
PER_TABLE = 30
T_MAX = schemas.SESSION_TIME_MAX_S


@functools.cache
def real_records() -> dict[str, list[ingest.RawRecord]]:
    """A few real records per raw topic (event-time order), SessionInfo included."""
    race = sources.load_bundled(RACE)
    out = {
        spec.name: list(itertools.islice(ingest.table_records(race, table), PER_TABLE))
        for table, (spec, _) in ingest.TABLE_TOPICS.items()
    }
    out[catalog.SESSION_INFO.name] = [next(ingest.iter_records(race))]
    return out


RAW_TOPICS = [catalog.SESSION_INFO, *(spec for spec, _ in ingest.TABLE_TOPICS.values())]


def real(topic: TopicSpec) -> st.SearchStrategy[ingest.RawRecord]:
    return st.deferred(lambda: st.sampled_from(real_records()[topic.name]))


# ------------------------------------------------------------------ valid values, by field
def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


DATES = st.datetimes(datetime(1950, 1, 1), datetime(2100, 12, 31), timezones=st.just(UTC))
NUMBER = st.from_regex(r"\A[0-9]{1,2}\Z")
TEXT = st.text(max_size=30)
HEADER: dict[str, st.SearchStrategy[Any]] = {
    "SessionKey": st.integers(-(2**31), 2**31 - 1),
    "Seq": st.integers(0, 2**63 - 1),
    "SessionTime": floats(-T_MAX, T_MAX),
    "Date": opt(DATES),
}
VALID: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    catalog.CAR_TELEMETRY.name: {
        "DriverNumber": NUMBER,
        "Speed": st.integers(0, 400),
        "RPM": st.integers(0, 20000),
        "nGear": st.integers(0, 8),
        "Throttle": opt(st.integers(0, 100)),
        "Brake": opt(st.booleans()),
        "DRS": st.integers(0, 15),
    },
    catalog.CAR_POSITION.name: {
        "DriverNumber": NUMBER,
        **{axis: st.integers(-100_000, 100_000) for axis in "XYZ"},
    },
    catalog.LAPS.name: {
        "DriverNumber": NUMBER,
        "Driver": st.from_regex(r"\A[A-Z]{3}\Z"),
        "Team": opt(st.text(max_size=100)),
        "LapNumber": st.integers(1, 200),
        "LapTime": opt(floats(30, 14_400)),
        **{f"Sector{i}Time": opt(floats(0.001, 14_400)) for i in (1, 2, 3)},
        **{f: opt(floats(-T_MAX, T_MAX)) for f in ("LapStartTime", "PitInTime", "PitOutTime")},
        "Stint": opt(st.integers(1, 20)),
        "Compound": opt(st.sampled_from(["SOFT", "MEDIUM", "HARD", "INTERMEDIATE", "WET", "TEST_UNKNOWN"])),
        "TyreLife": opt(floats(0, 200)),
        "FreshTyre": opt(st.booleans()),
        "TrackStatus": opt(st.from_regex(r"\A[1-7]{0,32}\Z")),
        "Position": opt(st.integers(1, 30)),
        **{f: opt(st.booleans()) for f in ("IsPersonalBest", "Deleted", "IsAccurate")},
        **{f: opt(floats(0, 400)) for f in ("SpeedI1", "SpeedI2", "SpeedFL", "SpeedST")},
    },
    catalog.TIMING.name: {
        "DriverNumber": NUMBER,
        "Position": opt(st.integers(1, 30)),
        "GapToLeader": opt(floats(0, 3600)),
        "IntervalToPositionAhead": opt(floats(0, 3600)),
        "GapToLeaderRaw": opt(st.text(max_size=32)),
        "IntervalRaw": opt(st.text(max_size=32)),
    },
    catalog.RACE_CONTROL.name: {
        "Category": st.text(max_size=64),
        "Message": st.text(max_size=300),
        **{f: opt(st.text(max_size=64)) for f in ("Status", "Flag", "Scope")},
        "Sector": opt(st.integers(1, 99)),
        "RacingNumber": opt(NUMBER),
        "Lap": opt(st.integers(1, 200)),
    },
    catalog.TRACK_STATUS.name: {"Status": st.sampled_from("1234567"), "Message": opt(st.text(max_size=64))},
    catalog.WEATHER.name: {
        "AirTemp": opt(floats(-30, 60)),
        "Humidity": opt(floats(0, 100)),
        "Pressure": opt(floats(500, 1100)),
        "Rainfall": opt(st.booleans()),
        "TrackTemp": opt(floats(-30, 90)),
        "WindDirection": opt(floats(0, 360)),
        "WindSpeed": opt(floats(0, 100)),
    },
    catalog.SESSION_INFO.name: {
        "Year": st.integers(1950, 2100),
        "EventName": st.text(max_size=200),
        "SessionName": st.text(max_size=200),
        "Circuit": opt(st.text(max_size=200)),
        "TotalLaps": opt(st.integers(1, 200)),
        "T0Date": opt(DATES),
    },
}


@st.composite
def valid_records(draw: st.DrawFn) -> ingest.RawRecord:
    topic = draw(st.sampled_from(RAW_TOPICS))
    record = draw(real(topic))
    fields = {**HEADER, **VALID[topic.name]}
    chosen = draw(st.sets(st.sampled_from(sorted(fields))))
    payload = dict(record.payload)
    payload.update({name: draw(fields[name]) for name in sorted(chosen)})
    return record._replace(payload=payload)


# ------------------------------------------------------------------ invalid values, by field
def below(lo: int) -> st.SearchStrategy[int]:
    return st.integers(max_value=lo - 1)


def above(hi: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=hi + 1)


HUGE = st.integers(1_000, 20_000).map(lambda n: "x" * n)  # Hypothesis warns on reprs > 30 kB
NOT_A_NUMBER = st.sampled_from(["abc", "", [1], {"a": 1}, True, False])
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
BAD_NUMBER = st.sampled_from(["123", "VER", "٣", "1 ", "", "+1", "１"]) | st.integers() | HUGE
BAD_DATE = st.sampled_from(["yesterday", "2023-11-19T05:50:02", "1890-01-01T00:00:00Z", "", 10**20, [1]])
INVALID_HEADER: dict[str, st.SearchStrategy[Any]] = {
    "v": st.sampled_from([0, 2, "1", None, 1.5]),
    "SessionKey": NOT_A_NUMBER | below(-(2**31)) | above(2**31 - 1) | st.just(1.5) | st.none(),
    "Seq": NOT_A_NUMBER | below(0) | st.none(),
    "SessionTime": NOT_A_NUMBER | NON_FINITE | st.none() | st.sampled_from([1e12, -1e12, 1e308]),
    "Date": BAD_DATE,
}
INVALID: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    catalog.CAR_TELEMETRY.name: {
        "DriverNumber": BAD_NUMBER,
        "Speed": NOT_A_NUMBER | below(0) | above(400) | NON_FINITE | st.just(300.5),
        "RPM": NOT_A_NUMBER | below(0) | above(20000),
        "nGear": NOT_A_NUMBER | below(0) | above(8),
        "Throttle": NOT_A_NUMBER | below(0) | above(100),
        "Brake": st.sampled_from(["abc", 5, [True], {"on": 1}]),
        "DRS": NOT_A_NUMBER | below(0) | above(15),
    },
    catalog.CAR_POSITION.name: {
        "DriverNumber": BAD_NUMBER,
        **{axis: NOT_A_NUMBER | below(-100_000) | above(100_000) | NON_FINITE for axis in "XYZ"},
    },
    catalog.LAPS.name: {
        "DriverNumber": BAD_NUMBER,
        "Driver": st.sampled_from(["", "V", "VERS", 44]) | HUGE,
        "Team": HUGE | st.just(5),
        "LapNumber": NOT_A_NUMBER | below(1) | above(200),
        "LapTime": NOT_A_NUMBER | NON_FINITE | floats(-1e6, 29.99) | floats(14_400.01, 1e9),
        "Sector1Time": NOT_A_NUMBER | NON_FINITE | floats(-1e6, 0),
        "PitInTime": NOT_A_NUMBER | NON_FINITE | floats(T_MAX * 1.01, 1e300),
        "Stint": below(1) | above(20),
        "Compound": st.sampled_from(["soft", "", "SOFT!", "A" * 21, 3]),
        "TyreLife": below(0) | above(200) | NON_FINITE,
        "TrackStatus": st.sampled_from(["8", "1a", "1" * 33, 1]),
        "Position": below(1) | above(30),
        "SpeedST": floats(400.01, 1e9) | floats(-1e9, -0.01) | NON_FINITE,
        "Deleted": st.sampled_from(["maybe", 3, [1]]),
    },
    catalog.TIMING.name: {
        "DriverNumber": BAD_NUMBER,
        "Position": below(1) | above(30) | NOT_A_NUMBER,
        "GapToLeader": floats(-1e9, -0.001) | floats(3600.01, 1e9) | NON_FINITE,
        "GapToLeaderRaw": HUGE | st.just(1.5),
    },
    catalog.RACE_CONTROL.name: {
        "Category": HUGE | st.none() | st.just(1),
        "Message": st.integers(2_001, 20_000).map(lambda n: "m" * n) | st.none(),
        "Sector": below(1) | above(99),
        "RacingNumber": BAD_NUMBER,
        "Lap": below(1) | above(200),
    },
    catalog.TRACK_STATUS.name: {"Status": st.sampled_from(["0", "8", "11", "", 1, None]), "Message": HUGE},
    catalog.WEATHER.name: {
        "AirTemp": floats(60.01, 1e9) | floats(-1e9, -30.01) | NON_FINITE,
        "Humidity": floats(100.01, 1e9) | floats(-1e9, -0.01),
        "Pressure": floats(0, 499.9) | floats(1100.1, 1e9),
        "WindDirection": floats(360.01, 1e6),
        "Rainfall": st.sampled_from(["heavy", 3, [1]]),
    },
    catalog.SESSION_INFO.name: {
        "Year": below(1950) | above(2100),
        "EventName": HUGE | st.none(),
        "TotalLaps": below(1) | above(200),
        "T0Date": BAD_DATE,
        "Drivers": st.sampled_from([None, "VER", [{"DriverNumber": "x"}], [1]]),
    },
}
REQUIRED = {
    catalog.CAR_TELEMETRY.name: ["DriverNumber", "Speed", "RPM", "nGear", "Throttle", "Brake", "DRS"],
    catalog.CAR_POSITION.name: ["DriverNumber", "X", "Y", "Z"],
    catalog.LAPS.name: ["DriverNumber", "Driver", "LapNumber"],
    catalog.TIMING.name: ["DriverNumber"],
    catalog.RACE_CONTROL.name: ["Category", "Message"],
    catalog.TRACK_STATUS.name: ["Status"],
    catalog.WEATHER.name: [],
    catalog.SESSION_INFO.name: ["Year", "EventName", "SessionName", "T0Source", "Drivers", "Sources"],
}


@st.composite
def invalid_records(draw: st.DrawFn) -> tuple[ingest.RawRecord, str]:
    """A real record made invalid in one way; returns it and what was done (for messages)."""
    topic = draw(st.sampled_from(RAW_TOPICS))
    record = draw(real(topic))
    payload = dict(record.payload)
    how = draw(st.sampled_from(["field", "header", "missing", "extra", "not_an_object"]))
    if how == "field":
        name = draw(st.sampled_from(sorted(INVALID[topic.name])))
        payload[name] = draw(INVALID[topic.name][name])
    elif how == "header":
        name = draw(st.sampled_from(sorted(INVALID_HEADER)))
        payload[name] = draw(INVALID_HEADER[name])
    elif how == "missing":
        name = draw(st.sampled_from(["SessionKey", "Seq", "SessionTime", *REQUIRED[topic.name]]))
        payload.pop(name)
    elif how == "extra":
        name = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in payload))
        payload[name] = draw(st.none() | st.integers() | TEXT)
    else:
        name = "payload"
        return record._replace(payload=draw(st.none() | st.integers() | TEXT | st.lists(st.integers()))), how
    return record._replace(payload=payload), f"{how} {name}"


# ------------------------------------------------------------------ properties
@FUZZ
@given(valid_records())
def test_a_valid_record_is_never_lost(record: ingest.RawRecord) -> None:
    model = ingest.validate(record)
    assert not isinstance(model, ingest.Rejected), model.reason
    out = ingest.encode(record)
    assert isinstance(out, bytes), out
    # the consumer side: the bytes parse (wire.parse) and validate to the same model
    parsed = wire.parse(out)
    assert not wire.is_invalid(parsed)
    again = ingest.validate(record._replace(payload=parsed))
    assert again == model == record.topic.schema.model_validate_json(out)


@FUZZ
@given(invalid_records())
def test_an_invalid_record_goes_to_the_dead_letters_with_a_reason(case: tuple[ingest.RawRecord, str]) -> None:
    record, how = case
    checked = ingest.validate(record)
    out = ingest.encode(record)
    assert isinstance(checked, ingest.Rejected), how
    assert isinstance(out, ingest.Rejected), how
    assert out.reason.strip() and len(out.reason) < 2_000
    letter = dead_letters.build(record.topic, record.payload, out.reason, stage="fuzz", key=record.key)
    kept = json.dumps(record.payload, default=str, sort_keys=True)
    assert letter.Payload[:1_000] == kept[:1_000]
    assert letter.Payload == kept or len(kept) > 60_000  # a bounded dead letter may cut huge payloads
    assert letter.Reason == out.reason and letter.SourceTopic == record.topic.name
    assert schemas.DeadLetter.model_validate_json(letter.model_dump_json()) == letter


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_garbage_bytes_become_an_invalid_marker(raw: bytes) -> None:
    value = wire.parse(raw)
    try:
        decoded = json.loads(raw)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        assert value == decoded
    else:
        assert wire.is_invalid(value) and value[wire.INVALID]


@FUZZ
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | TEXT, lambda c: st.lists(c) | st.dictionaries(TEXT, c)
    )
)
def test_any_json_value_is_a_dict_or_an_invalid_marker(value: Any) -> None:
    raw = json.dumps(value).encode()
    parsed = wire.parse(raw)
    assert isinstance(parsed, dict)
    assert wire.is_invalid(parsed) != isinstance(value, dict)


def test_deeply_nested_json_is_an_invalid_marker_not_a_crash() -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    value = wire.parse(raw)
    assert wire.is_invalid(value) and "JSON" in value[wire.INVALID]


@FUZZ
@given(valid_records(), st.sampled_from(["replay", "lap_features", "x" * 50]))
def test_a_dead_letter_survives_a_json_round_trip(record: ingest.RawRecord, stage: str) -> None:
    letter = dead_letters.build(
        record.topic,
        record.payload,
        "fuzz: a reason",
        stage=stage,
        key=record.key,
        now=datetime(2024, 1, 1, tzinfo=UTC),
    )
    again = schemas.DeadLetter.model_validate_json(orjson.dumps(letter.model_dump(mode="json")))
    assert again == letter
    assert json.loads(letter.Payload).keys() == record.payload.keys()
