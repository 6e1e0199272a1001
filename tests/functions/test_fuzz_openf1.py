"""Property-based fuzzing of the OpenF1 side: every stateless normaliser followed by
``ingest.encode`` (the path of ``stratx live`` and of the serverless ingest), laps with stints and
pits, driver/session records, and ``inbound.transform`` on arbitrary Kafka records.

(a) valid OpenF1 records (fields drawn within the physical ranges, dates in several ISO spellings)
    -> a raw record whose bytes validate (0 lost);
(b) invalid ones (missing or mistyped required fields, out-of-range values, bad dates, huge text,
    records that are not objects) -> a ``Rejected`` with a non-empty reason; nothing raises.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratx.functions import catalog, inbound, ingest, openf1, schemas

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2024, 6, 9, 18, 0, tzinfo=UTC)  # 2024 Canada race start (the bundled OpenF1 sample)
DRIVER = schemas.DriverInfo(DriverNumber="1", Abbreviation="VER", TeamName="Red Bull Racing")
CTX = openf1.SessionContext(9531, T0, {"1": DRIVER})


def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def iso_dates(draw: st.DrawFn) -> str:
    """A date within a day of the session start, spelled as OpenF1 (or a proxy) may spell it."""
    when = T0 + timedelta(seconds=draw(floats(-86_400, 86_400)))
    zone = draw(st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]))
    text = when.astimezone(zone).isoformat(sep=draw(st.sampled_from(["T", " "])))
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


COMMON = {"session_key": st.just(9531), "meeting_key": st.just(1237), "date": iso_dates()}
NUMBERS = st.integers(1, 99)
VALID: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "car_data": {
        "driver_number": NUMBERS,
        "speed": st.integers(0, 400),
        "rpm": st.integers(0, 20000),
        "n_gear": st.integers(0, 8),
        "throttle": st.integers(0, 100) | st.just(104),
        "brake": st.sampled_from([0, 100, 104]),
        "drs": st.sampled_from([0, 1, 2, 3, 8, 10, 12, 14]),
    },
    "location": {"driver_number": NUMBERS, **{a: st.integers(-100_000, 100_000) for a in "xyz"}},
    "intervals": {
        "driver_number": NUMBERS,
        "gap_to_leader": opt(floats(0, 3600) | st.sampled_from(["+1 LAP", "+2 LAPS"])),
        "interval": opt(floats(0, 3600) | st.just("+1 LAP")),
    },
    "position": {"driver_number": NUMBERS, "position": st.integers(1, 30)},
    "race_control": {
        "category": st.sampled_from(["Flag", "Other", "SafetyCar", "Drs", "CarEvent"]),
        "message": st.text(max_size=500),
        "flag": opt(st.sampled_from(["GREEN", "YELLOW", "DOUBLE YELLOW", "CHEQUERED", "BLUE"])),
        "scope": opt(st.sampled_from(["Track", "Sector", "Driver"])),
        "sector": opt(st.integers(1, 99)),
        "driver_number": opt(NUMBERS),
        "lap_number": opt(st.integers(1, 200)),
    },
    "weather": {
        "air_temperature": opt(floats(-30, 60)),
        "humidity": opt(floats(0, 100)),
        "pressure": opt(floats(500, 1100)),
        "rainfall": opt(st.sampled_from([0, 1])),
        "track_temperature": opt(floats(-30, 90)),
        "wind_direction": opt(st.integers(0, 360)),
        "wind_speed": opt(floats(0, 100)),
    },
}
ENDPOINTS = sorted(VALID)


@st.composite
def valid_records(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    endpoint = draw(st.sampled_from(ENDPOINTS))
    fields = {**COMMON, **VALID[endpoint]}
    return endpoint, {k: draw(v) for k, v in fields.items()}


HUGE = st.integers(2_001, 20_000).map(lambda n: "m" * n)  # Hypothesis warns on reprs > 30 kB
INVALID: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "car_data": {
        "driver_number": st.integers(100, 10**6)
        | st.integers(max_value=-1)
        | st.sampled_from(["1", 1.0, None]),
        "speed": st.integers(401) | st.integers(max_value=-1) | st.sampled_from(["315", 315.0, True, None]),
        "rpm": st.integers(20_001) | st.integers(max_value=-1),
        "n_gear": st.integers(9) | st.integers(max_value=-1),
        "throttle": st.integers(105) | st.integers(101, 103) | st.integers(max_value=-1),
        "drs": st.integers(16) | st.integers(max_value=-1),
        "brake": st.sampled_from(["on", 1.5, None]),
        "date": st.sampled_from(["yesterday", "", 12, "9999-12-31T23:59:59-12:00", None]),
    },
    "location": {a: st.integers(100_001) | st.integers(max_value=-100_001) | st.just(1.5) for a in "xyz"},
    "position": {"position": st.integers(31) | st.integers(max_value=0) | st.just("P1")},
    "race_control": {
        "message": HUGE | st.none(),
        "category": st.none(),
        "sector": st.integers(100) | st.integers(max_value=0),
        "lap_number": st.integers(201) | st.integers(max_value=0),
        "driver_number": st.integers(100) | st.integers(max_value=-1),
    },
    "weather": {
        "air_temperature": floats(60.01, 1e300) | floats(-1e300, -30.01),
        "humidity": floats(100.01, 1e300),
        "pressure": floats(0, 499) | floats(1100.5, 1e9),
        "wind_direction": st.integers(361, 10**6),
        "date": st.sampled_from(["not a date", None, [2024]]),
    },
    "intervals": {"driver_number": st.integers(100) | st.none(), "gap_to_leader": floats(3600.5, 1e300)},
}


@st.composite
def invalid_records(draw: st.DrawFn) -> tuple[str, Any]:
    endpoint, record = draw(valid_records().filter(lambda er: er[0] in INVALID))
    how = draw(st.sampled_from(["field", "missing", "not_an_object"]))
    if how == "field":
        name = draw(st.sampled_from(sorted(INVALID[endpoint])))
        record[name] = draw(INVALID[endpoint][name])
    elif how == "missing":
        record.pop(draw(st.sampled_from(openf1.ENDPOINTS[endpoint].required)))
    else:
        return endpoint, draw(st.none() | st.integers() | st.text(max_size=20) | st.lists(st.integers()))
    return endpoint, record


def outcome(endpoint: str, record: Any) -> bytes | ingest.Rejected:
    out = openf1.NORMALISERS[endpoint](record, CTX, 7)
    return out if isinstance(out, ingest.Rejected) else ingest.encode(out)


@FUZZ
@given(valid_records())
def test_a_valid_openf1_record_is_never_lost(case: tuple[str, dict[str, Any]]) -> None:
    endpoint, record = case
    out = outcome(endpoint, record)
    assert isinstance(out, bytes), out
    topic = openf1.ENDPOINTS[endpoint].topic
    assert topic is not None
    model = topic.schema.model_validate_json(out)
    assert model.Date == openf1.parse_date(record["date"])  # type: ignore[attr-defined]


@FUZZ
@given(invalid_records())
def test_an_invalid_openf1_record_is_rejected_with_a_reason(case: tuple[str, Any]) -> None:
    endpoint, record = case
    out = outcome(endpoint, record)
    assert isinstance(out, ingest.Rejected), (endpoint, record)
    assert out.reason.strip() and len(out.reason) < 2_000


LAP = {
    "driver_number": st.just(1),
    "lap_number": st.integers(1, 200),
    "date_start": iso_dates(),
    "lap_duration": floats(30, 14_400),
    "duration_sector_1": opt(floats(0.01, 14_400)),
    "duration_sector_2": opt(floats(0.01, 14_400)),
    "duration_sector_3": opt(floats(0.01, 14_400)),
    "i1_speed": opt(st.integers(0, 400)),
    "i2_speed": opt(st.integers(0, 400)),
    "st_speed": opt(st.integers(0, 400)),
    "is_pit_out_lap": st.booleans(),
    "session_key": st.just(9531),
}
STINT = {
    "driver_number": st.just(1),
    "stint_number": st.integers(1, 20),
    "lap_start": st.integers(1, 200),
    "lap_end": opt(st.integers(1, 200)),
    "compound": opt(st.sampled_from(["SOFT", "MEDIUM", "HARD", "INTERMEDIATE", "WET", "UNKNOWN"])),
    "tyre_age_at_start": opt(st.integers(0, 30)),  # with laps <= 150: TyreLife <= 181
}
PIT = {
    "driver_number": st.just(1),
    "date": iso_dates(),
    "lap_number": st.integers(1, 200),
    "lane_duration": opt(floats(10, 120)),
    "pit_duration": opt(floats(10, 120)),
}


@FUZZ
@given(st.fixed_dictionaries({**LAP, "lap_number": st.integers(1, 150)}),
       st.lists(st.fixed_dictionaries(STINT), max_size=4),
       st.lists(st.fixed_dictionaries(PIT), max_size=3))  # fmt: skip
def test_a_valid_lap_with_stints_and_pits_is_never_lost(
    lap: dict[str, Any], stints: list[dict[str, Any]], pits: list[dict[str, Any]]
) -> None:
    out = openf1.normalise_lap(lap, CTX, 3, stints, pits)
    assert isinstance(out, ingest.RawRecord), out
    checked = ingest.encode(out)
    assert isinstance(checked, bytes), checked


@FUZZ
@given(
    st.fixed_dictionaries(LAP),
    st.sampled_from(
        ["lap_duration", "lap_number", "date_start", "driver_number", "i1_speed", "duration_sector_1"]
    ),
    st.sampled_from([-1, 0, 10**300, 1e300, -1e300, "abc", 2**64, 1e20, float("nan"), [1]]),
)
def test_an_invalid_lap_is_rejected_with_a_reason(lap: dict[str, Any], name: str, bad: Any) -> None:
    if name == "i1_speed" and bad == 0:
        bad = 401  # 0 km/h is a valid speed trap reading
    lap[name] = bad
    out: ingest.RawRecord | ingest.Rejected | bytes = openf1.normalise_lap(lap, CTX, 3)
    if isinstance(out, ingest.RawRecord):
        out = ingest.encode(out)
    assert isinstance(out, ingest.Rejected), (name, bad, out)
    assert out.reason.strip()


DRIVER_RECORD = {
    "driver_number": st.integers(1, 99),
    "name_acronym": st.from_regex(r"\A[A-Z]{3}\Z"),
    "full_name": opt(st.text(max_size=50)),
    "team_name": opt(st.text(max_size=50)),
    "team_colour": opt(st.from_regex(r"\A[0-9A-F]{6}\Z")),
}
ANY = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | st.lists(st.integers())


@FUZZ
@given(st.fixed_dictionaries(DRIVER_RECORD), st.sampled_from(sorted(DRIVER_RECORD)), ANY)
def test_driver_records_never_raise(record: dict[str, Any], name: str, value: Any) -> None:
    assert isinstance(openf1.driver_info(record), schemas.DriverInfo)
    record[name] = value
    out = openf1.driver_info(record)
    assert isinstance(out, schemas.DriverInfo | ingest.Rejected)
    if isinstance(out, ingest.Rejected):
        assert out.reason.strip()
    session = {"session_key": 9531, "date_start": "2024-06-09T18:00:00+00:00"}
    ctx = openf1.session_context(session, [record])
    assert isinstance(ctx, openf1.SessionContext)


# ------------------------------------------------------------------ inbound.transform (serverless ingest)
def _inbound(
    value: bytes | None, headers: tuple[tuple[str, bytes], ...], key: bytes | None, ts: int | None
) -> Any:
    return inbound.InboundRecord("stratx.inbound.openf1", 0, 11, ts, key, value, headers)


@FUZZ
@given(valid_records())
def test_inbound_valid_record_is_published(case: tuple[str, dict[str, Any]]) -> None:
    endpoint, record = case
    headers = inbound.inbound_headers(endpoint, T0)
    out = inbound.transform(_inbound(json.dumps(record).encode(), headers, None, 1_700_000_000_000))
    assert len(out) == 1 and out[0].topic != catalog.DEAD_LETTER.name, out


@FUZZ
@given(
    st.none() | st.binary(max_size=200) | invalid_records().map(lambda er: json.dumps(er[1]).encode()),
    st.sampled_from([*ENDPOINTS, "laps", "nope", ""]),
    st.sampled_from(["2024-06-09T18:00:00Z", "", "garbage", "0001-01-01T00:00:00+14:00"]),
    st.none() | st.binary(max_size=20),
    st.none() | st.integers(-1, 10**13),  # Kafka timestamps: -1 (none) or ms since the epoch
)
def test_inbound_anything_else_is_a_dead_letter(
    value: bytes | None, endpoint: str, start: str, key: bytes | None, ts: int | None
) -> None:
    headers = ((inbound.ENDPOINT_HEADER, endpoint.encode()), (inbound.SESSION_START_HEADER, start.encode()))
    out = inbound.transform(_inbound(value, headers, key, ts))
    assert len(out) == 1
    if out[0].topic == catalog.DEAD_LETTER.name:
        letter = schemas.DeadLetter.model_validate_json(out[0].value)
        assert letter.Reason.strip()


def test_inbound_deeply_nested_json_is_a_dead_letter() -> None:
    value = b"[" * 100_000 + b"]" * 100_000
    out = inbound.transform(_inbound(value, inbound.inbound_headers("car_data", T0), None, 0))
    assert len(out) == 1 and out[0].topic == catalog.DEAD_LETTER.name
    assert "not JSON" in schemas.DeadLetter.model_validate_json(out[0].value).Reason
