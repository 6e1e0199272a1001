"""The telemetry app's exact check of car samples without pydantic (functions/features/telemetry_input.py).

Contract: whatever :func:`sample_from_json` accepts, the standard path (``json.loads`` then
``CarTelemetry.model_validate``) accepts too, with the same decoded payload and the same values; and
it accepts every real sample as ingestion encodes it. Real samples are car 1's of the bundled 2023
Las Vegas GP; fuzzed ones redraw fields with valid, boundary, wrongly typed and invalid values.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratx.bentos.lifecycle import sources
from stratx.functions import ingest, schemas
from stratx.functions.features import telemetry_input as ti
from stratx.functions.settings import REPO_ROOT

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RACE = REPO_ROOT / "data" / "races" / "2023_las_vegas_grand_prix_race"
T_MAX = schemas.SESSION_TIME_MAX_S


@functools.cache
def encoded() -> list[bytes]:
    """Car 1's samples as the raw topic carries them (ingest.encode; the schema's rejects left out)."""
    race = sources.load_bundled(RACE).filter_drivers({"VER"})
    out = []
    for record in ingest.table_records(race, "car_data"):
        raw = ingest.encode(record)
        if isinstance(raw, bytes):
            out.append(raw)
    return out


def typed(payload: dict[str, Any]) -> list[tuple[str, type, Any]]:
    """Keys in order with the type and value of each (1 == 1.0 == True, so == alone is not enough)."""
    return [(k, type(v), v) for k, v in payload.items()]


def standard(raw: bytes) -> schemas.CarTelemetry | None:
    try:
        return schemas.CarTelemetry.model_validate(json.loads(raw))
    except ValueError:  # not JSON (json.JSONDecodeError) or not the schema (ValidationError)
        return None


def assert_same_as_standard(raw: bytes, sample: dict[str, Any]) -> None:
    assert typed(sample) == typed(json.loads(raw))  # the payload the standard path decodes
    model = standard(raw)
    assert model is not None, raw
    dumped = model.model_dump()
    date = sample["Date"]
    assert dumped == {**sample, "Date": None if date is None else datetime.fromisoformat(date)}
    assert dumped["Date"] is None or dumped["Date"].isoformat() == datetime.fromisoformat(date).isoformat()


def test_every_real_sample_is_accepted_with_the_values_pydantic_gives() -> None:
    raws = encoded()
    assert len(raws) > 20_000
    for raw in itertools.islice(raws, 0, None, 7):
        sample = ti.sample_from_json(raw)
        assert sample is not None, raw
        assert_same_as_standard(raw, sample)
    assert all(ti.sample_from_json(raw) is not None for raw in raws)


def test_bounds_come_from_the_schema() -> None:
    assert (ti._SPEED_MIN, ti._SPEED_MAX) == (0, 400) and (ti._GEAR_MIN, ti._GEAR_MAX) == (0, 8)
    assert (ti._THR_MIN, ti._THR_MAX) == (0, 100) and (ti._DRS_MIN, ti._DRS_MAX) == (0, 15)
    assert (ti._KEY_MIN, ti._KEY_MAX) == (-(2**31), 2**31 - 1)
    assert (ti._SEQ_MIN, ti._SEQ_MAX) == (0, 2**63 - 1)
    assert (ti._T_MIN, ti._T_MAX) == (-T_MAX, T_MAX)
    assert ti._N_FIELDS == 12


def base() -> dict[str, Any]:
    return json.loads(encoded()[1000])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Speed", 401),
        ("Speed", -1),
        ("Speed", 300.0),  # a float: pydantic decides (and accepts it as 300)
        ("Speed", True),
        ("nGear", 9),
        ("Throttle", 101),
        ("Brake", 1),
        ("DRS", "8"),
        ("SessionTime", 100),  # an int: pydantic decides
        ("SessionTime", T_MAX * 2),
        ("Seq", -1),
        ("SessionKey", 2**31),
        ("v", 2),
        ("DriverNumber", "٣"),
        ("DriverNumber", "123"),
        ("DriverNumber", "1\n"),
        ("Date", "2023-02-30T05:50:02.821000+00:00"),
        ("Date", "1949-12-31T23:59:59+00:00"),
        ("Date", "2101-01-01T00:00:00+00:00"),
        ("Date", "2023-11-19T05:50:02.821000"),  # no timezone
        ("Date", "2023-11-19T05:50:02.821000+01:00"),
        ("Date", "2023-11-19 05:50:02.821000+00:00"),
        ("Date", "2023-11-19T24:00:00+00:00"),
        ("Date", "2023-11-19T05:50:60+00:00"),
        ("Date", "2023-11-19T05:50:02.821000+00:00\n"),
        ("Date", 1700373002),
    ],
)
def test_anything_else_is_left_to_pydantic(field: str, value: Any) -> None:
    raw = json.dumps({**base(), field: value}).encode()
    assert ti.sample_from_json(raw) is None
    assert not ti.is_exact_sample(json.loads(raw))


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({k: v for k, v in base().items() if k != "Date"}).encode(),  # a default: pydantic decides
        json.dumps({**base(), "Extra": 1}).encode(),
        b"\xef\xbb\xbf" + json.dumps(base()).encode(),  # a BOM: json reads it, orjson does not
        json.dumps({**base(), "SessionKey": 2**64}).encode(),  # orjson: a float, json: an int
        json.dumps({**base(), "SessionTime": math.nan}).encode(),
        b"[1]",
        b"{not json",
        b"null",
    ],
)
def test_other_documents_are_left_to_the_standard_path(raw: bytes) -> None:
    assert ti.sample_from_json(raw) is None


def test_a_repeated_key_decodes_as_the_standard_library_reads_it() -> None:
    raw = json.dumps(base()).encode().replace(b'"Seq":', b'"Seq": 18446744073709551616, "Seq":')
    sample = ti.sample_from_json(raw)
    assert sample is not None  # the last one wins, at the first one's place, in both decoders
    assert_same_as_standard(raw, sample)


@pytest.mark.parametrize(
    "date",
    [
        None,
        "2023-11-19T05:50:02+00:00",
        "2023-11-19T05:50:02Z",
        "2023-11-19T05:50:02.8Z",
        "2100-12-31T23:59:59.999999+00:00",
    ],
)
def test_dates_as_isoformat_and_pydantic_write_them_are_accepted(date: str | None) -> None:
    raw = json.dumps({**base(), "Date": date}).encode()
    sample = ti.sample_from_json(raw)
    assert sample is not None
    assert_same_as_standard(raw, sample)


# ------------------------------------------------------------------ fuzz: never accepts more than pydantic
def near(lo: float, hi: float) -> st.SearchStrategy[Any]:
    edges = [lo - 1, lo, hi, hi + 1]
    return st.sampled_from(edges) | st.integers(int(lo) - 5, int(hi) + 5) | st.floats(lo - 1, hi + 1)


ODD = st.sampled_from([None, True, False, "1", "", [1], {"a": 1}, 1.5, -0.0, 2**64, -(2**64), 10**30])
DATES = st.datetimes(datetime(1940, 1, 1), datetime(2110, 12, 31), timezones=st.just(UTC))
DATE_TEXT = (
    DATES.map(lambda d: d.isoformat())
    | DATES.map(lambda d: d.isoformat().replace("+00:00", "Z"))
    | DATES.map(lambda d: d.replace(tzinfo=None).isoformat())
    | DATES.map(lambda d: d.isoformat(timespec="milliseconds"))
    | DATES.map(lambda d: d.isoformat(sep=" "))
    | st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?(Z|\+00:00|-00:00)\Z"
    )
    | st.text(max_size=40)
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "v": st.sampled_from([1, 1.0, 0, 2, "1", True]),
    "SessionKey": near(-(2**31), 2**31 - 1),
    "Seq": near(0, 2**63 - 1),
    "SessionTime": near(-T_MAX, T_MAX) | st.floats(allow_nan=True, allow_infinity=True),
    "Date": st.none() | DATE_TEXT,
    "DriverNumber": st.from_regex(r"\A[0-9]{1,2}\Z") | st.text(max_size=3),
    "Speed": near(0, 400),
    "RPM": near(0, 20000),
    "nGear": near(0, 8),
    "Throttle": st.none() | near(0, 100),
    "Brake": st.none() | st.booleans() | st.sampled_from([0, 1, "true"]),
    "DRS": near(0, 15),
}


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    payload = json.loads(draw(st.sampled_from(encoded()[:500])))
    for name in sorted(draw(st.sets(st.sampled_from(sorted(FIELDS)), max_size=4))):
        payload[name] = draw(FIELDS[name] | ODD)
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        payload.pop(draw(st.sampled_from(sorted(payload))))
    return json.dumps(payload).encode()


@FUZZ
@given(payloads())
def test_accepted_samples_are_accepted_by_pydantic_with_the_same_values(raw: bytes) -> None:
    sample = ti.sample_from_json(raw)
    if sample is not None:
        assert_same_as_standard(raw, sample)
    decoded = json.loads(raw)  # the app's other entry (a decoded dict) decides the same way
    assert ti.is_exact_sample(decoded) == (sample is not None)
