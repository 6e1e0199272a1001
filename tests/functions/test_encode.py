"""Contract: the fast JSON path of the hot topics gives exactly what the pydantic schemas give."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from stratx.functions import catalog, ingest
from stratx.functions.racedata import RaceData

pytestmark = pytest.mark.slow  # every record of a whole race encoded


@pytest.fixture(scope="module")
def encoded(las_vegas: RaceData) -> list[tuple[ingest.RawRecord, bytes | ingest.Rejected]]:
    return [(r, ingest.encode(r)) for r in ingest.iter_records(las_vegas)]


def test_fast_path_bytes_parse_to_the_pydantic_model(encoded: list) -> None:
    checked = Counter()
    for record, out in encoded[::37]:  # a spread sample of every topic
        model = ingest.validate(record)
        if isinstance(model, ingest.Rejected):
            assert isinstance(out, ingest.Rejected)
            continue
        assert not isinstance(out, ingest.Rejected)
        assert record.topic.schema.model_validate_json(out) == model
        assert json.loads(out)["v"] == 1
        checked[record.topic.name] += 1
    assert checked[catalog.CAR_TELEMETRY.name] > 10_000 and checked[catalog.CAR_POSITION.name] > 10_000


def test_fast_path_rejects_exactly_what_the_schema_rejects(encoded: list, las_vegas: RaceData) -> None:
    rejected = [(r, out) for r, out in encoded if isinstance(out, ingest.Rejected)]
    car = las_vegas.table("car_data")
    assert len(rejected) == int((car.nGear > 8).sum())
    for record, out in rejected:
        assert isinstance(ingest.validate(record), ingest.Rejected)
        assert "nGear" in out.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Speed", -1),
        ("Speed", 401),
        ("RPM", 20001),
        ("nGear", 9),
        ("Throttle", 101),
        ("DRS", 16),
        ("DriverNumber", "123"),
        ("DriverNumber", "VER"),
    ],
)
def test_out_of_range_car_sample_is_rejected_by_both_paths(encoded: list, field: str, value: object) -> None:
    record = next(r for r, _ in encoded if r.topic is catalog.CAR_TELEMETRY)
    bad = record._replace(payload={**record.payload, field: value})
    assert isinstance(ingest.validate(bad), ingest.Rejected)
    assert isinstance(ingest.encode(bad), ingest.Rejected)
