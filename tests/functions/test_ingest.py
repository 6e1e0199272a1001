"""Ingestion of a bundled real race (2023 Las Vegas GP) into raw events, and its failure policy.

The whole session (~1 M events) is iterated and validated once per module; every expected number
below is derived from the source tables, never copied from a run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stratx.functions import catalog, dead_letters, ingest, schemas
from stratx.functions.racedata import EVENT_TABLES, RaceData

DRIVER_TOPICS = {t.name for t in catalog.ALL_TOPICS if t.key is catalog.KeyRule.SESSION_DRIVER}
GAP_TEXT = re.compile(r"^\+?(\d+\.\d+)$")  # how the timing tower shows a gap in seconds


@dataclasses.dataclass(frozen=True)
class Validation:
    rejected: list[tuple[ingest.RawRecord, ingest.Rejected]]
    valid: int


@pytest.fixture(scope="module")
def records(las_vegas: RaceData) -> list[ingest.RawRecord]:
    return list(ingest.iter_records(las_vegas))


@pytest.fixture(scope="module")
def validation(records: list[ingest.RawRecord]) -> Validation:
    rejected, valid = [], 0
    for record in records:
        checked = ingest.validate(record)
        if isinstance(checked, ingest.Rejected):
            rejected.append((record, checked))
        else:
            assert isinstance(checked, record.topic.schema)
            valid += 1
    return Validation(rejected, valid)


@pytest.fixture(scope="module")
def telemetry(records: list[ingest.RawRecord]) -> dict[tuple[str, float], dict[str, Any]]:
    """CarTelemetry payloads by (DriverNumber, SessionTime), unique in the source table."""
    return {
        (r.payload["DriverNumber"], r.payload["SessionTime"]): r.payload
        for r in records
        if r.topic is catalog.CAR_TELEMETRY
    }


def _t0(race: RaceData) -> datetime:
    assert race.meta.t0_date is not None
    return race.meta.t0_date.to_pydatetime()


# ------------------------------------------------------------------ counts and order
@pytest.mark.slow
def test_first_record_is_the_only_session_info(records: list[ingest.RawRecord]) -> None:
    assert records[0].topic is catalog.SESSION_INFO
    assert sum(r.topic is catalog.SESSION_INFO for r in records) == 1


@pytest.mark.slow
@pytest.mark.parametrize("table", list(ingest.TABLE_TOPICS))
def test_one_record_per_source_row(table: str, las_vegas: RaceData, records: list[ingest.RawRecord]) -> None:
    topic = ingest.TABLE_TOPICS[table][0]
    assert len(las_vegas.table(table)) > 0, "the bundled race should have every table"
    assert sum(r.topic is topic for r in records) == len(las_vegas.table(table))


def test_every_event_table_has_a_topic() -> None:
    assert set(ingest.TABLE_TOPICS) == set(EVENT_TABLES)
    topics = [spec for spec, _ in ingest.TABLE_TOPICS.values()]
    assert len({t.name for t in topics}) == len(topics)


@pytest.mark.slow
def test_total_is_session_info_plus_all_rows(las_vegas: RaceData, records: list[ingest.RawRecord]) -> None:
    assert len(records) == 1 + sum(len(las_vegas.table(t)) for t in EVENT_TABLES)


@pytest.mark.slow
def test_session_time_never_decreases(records: list[ingest.RawRecord]) -> None:
    times = [r.payload["SessionTime"] for r in records if r.payload["SessionTime"] is not None]
    assert len(times) == len(records)  # the real race has a time on every row
    backwards = [i for i in range(1, len(times)) if times[i] < times[i - 1]]
    assert backwards == [], f"SessionTime goes back at {backwards[:5]}"


@pytest.mark.slow
def test_seq_is_contiguous_from_zero(records: list[ingest.RawRecord]) -> None:
    assert [r.payload["Seq"] for r in records] == list(range(len(records)))


@pytest.mark.slow
def test_keys_follow_the_catalog_rule(las_vegas: RaceData, records: list[ingest.RawRecord]) -> None:
    session_key = las_vegas.meta.session_key
    wrong = []
    for r in records:
        if r.topic.name in DRIVER_TOPICS:
            expected = f"{session_key}:{r.payload['DriverNumber']}"
        else:
            expected = str(session_key)
        if r.key != expected:
            wrong.append((r.topic.name, r.key, expected))
    assert wrong == []


@pytest.mark.slow
def test_driver_keys_name_drivers_of_the_session(
    las_vegas: RaceData, records: list[ingest.RawRecord]
) -> None:
    numbers = set(las_vegas.table("drivers").DriverNumber)
    keyed = {r.key.split(":")[1] for r in records if r.topic.name in DRIVER_TOPICS}
    assert keyed <= numbers
    assert len(keyed) == len(numbers)  # every car of the race produced events


@pytest.mark.slow
def test_every_record_carries_the_session_key(las_vegas: RaceData, records: list[ingest.RawRecord]) -> None:
    assert {r.payload["SessionKey"] for r in records} == {las_vegas.meta.session_key}


@pytest.mark.slow
def test_date_is_t0_plus_session_time(las_vegas: RaceData, records: list[ingest.RawRecord]) -> None:
    t0 = _t0(las_vegas)
    off = [
        r.payload["Seq"]
        for r in records
        if abs((r.payload["Date"] - t0).total_seconds() - r.payload["SessionTime"]) > 1e-6
    ]
    assert off == []


@pytest.mark.slow
def test_session_info_describes_the_race(las_vegas: RaceData, records: list[ingest.RawRecord]) -> None:
    info = ingest.validate(records[0])
    assert isinstance(info, schemas.SessionInfo)
    meta = las_vegas.meta
    assert (info.Year, info.EventName, info.SessionName) == (meta.year, meta.event_name, meta.session_name)
    assert info.SessionKey == meta.session_key and info.Seq == 0
    assert info.T0Date == _t0(las_vegas)
    assert info.Sources == {name: len(las_vegas.table(name)) for name in las_vegas.row_counts()}
    drivers = las_vegas.table("drivers")
    assert [d.DriverNumber for d in info.Drivers] == list(drivers.DriverNumber)
    assert [d.Abbreviation for d in info.Drivers] == list(drivers.Abbreviation)
    first = min(float(las_vegas.table(t)[ingest.TABLE_TOPICS[t][1]].min()) for t in EVENT_TABLES)
    assert info.SessionTime == first
    assert info.Missing == list(las_vegas.missing)


# ------------------------------------------------------------------ validation and dead letters
@pytest.mark.slow
def test_only_glitched_gears_are_rejected(las_vegas: RaceData, validation: Validation) -> None:
    car = las_vegas.table("car_data")
    glitched = car[car.nGear > 8]
    assert len(glitched) > 0, "the 2023 Las Vegas feed has nGear glitches; the test relies on them"
    assert len(validation.rejected) == len(glitched)
    assert {r.topic.name for r, _ in validation.rejected} == {catalog.CAR_TELEMETRY.name}
    assert {(r.payload["DriverNumber"], r.payload["SessionTime"]) for r, _ in validation.rejected} == set(
        zip(glitched.DriverNumber, glitched.SessionTime, strict=True)
    )
    for _, rejected in validation.rejected:
        assert "nGear" in rejected.reason
        assert rejected.reason.startswith("CarTelemetry schema")


@pytest.mark.slow
def test_everything_else_validates(las_vegas: RaceData, validation: Validation) -> None:
    total = 1 + sum(len(las_vegas.table(t)) for t in EVENT_TABLES)
    assert validation.valid == total - len(validation.rejected)


@pytest.mark.slow
def test_dead_letter_keeps_payload_and_topic(validation: Validation) -> None:
    record, rejected = validation.rejected[0]
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    letter = dead_letters.build(
        record.topic, record.payload, rejected.reason, stage="replay", key=record.key, now=now
    )
    assert letter.SourceTopic == catalog.CAR_TELEMETRY.name
    assert (letter.Key, letter.Reason, letter.Stage, letter.Date) == (
        record.key,
        rejected.reason,
        "replay",
        now,
    )
    restored = json.loads(letter.Payload)
    assert set(restored) == set(record.payload)
    assert datetime.fromisoformat(restored.pop("Date")) == record.payload["Date"]
    assert restored == {k: v for k, v in record.payload.items() if k != "Date"}
    assert restored["nGear"] > 8
    assert schemas.DeadLetter.model_validate_json(letter.model_dump_json()) == letter


def test_record_without_event_time_is_rejected_not_dropped(las_vegas: RaceData) -> None:
    status = las_vegas.table("track_status").head(3).copy()
    status.loc[status.index[1], "Time"] = np.nan
    race = RaceData(las_vegas.meta, {"track_status": status})
    records = list(ingest.iter_records(race))
    assert len(records) == 1 + 3
    last = records[-1]  # a row without a time sorts last
    assert last.payload["SessionTime"] is None and last.payload["Date"] is None
    assert last.payload["Status"] == status.Status.iloc[1]
    checked = ingest.validate(last)
    assert isinstance(checked, ingest.Rejected)
    assert "SessionTime" in checked.reason
    assert all(not isinstance(ingest.validate(r), ingest.Rejected) for r in records[:-1])


def test_race_without_t0_has_no_dates(las_vegas: RaceData) -> None:
    small = las_vegas.filter_drivers({"VER"})
    race = RaceData(dataclasses.replace(small.meta, t0_date=None), small.tables)
    records = list(ingest.iter_records(race))
    assert len(records) == 1 + sum(len(race.table(t)) for t in EVENT_TABLES)
    assert all(r.payload["Date"] is None for r in records)
    assert not isinstance(ingest.validate(records[0]), ingest.Rejected)


def test_empty_race_yields_only_session_info(las_vegas: RaceData) -> None:
    records = list(ingest.iter_records(RaceData(las_vegas.meta, {})))
    assert [r.topic for r in records] == [catalog.SESSION_INFO]
    info = ingest.validate(records[0])
    assert isinstance(info, schemas.SessionInfo)
    assert info.SessionTime == 0.0 and info.Drivers == []


# ------------------------------------------------------------------ feed sentinels
def _first(car: pd.DataFrame, mask: pd.Series) -> tuple[str, float]:
    row = car[mask].iloc[0]
    return str(row.DriverNumber), float(row.SessionTime)


@pytest.mark.slow
def test_throttle_104_is_no_value(las_vegas: RaceData, telemetry: dict) -> None:
    car = las_vegas.table("car_data")
    payload = telemetry[_first(car, car.Throttle == ingest.FEED_INVALID)]
    assert payload["Throttle"] is None


@pytest.mark.slow
def test_brake_104_is_no_value(las_vegas: RaceData, telemetry: dict) -> None:
    car = las_vegas.table("car_data")
    assert telemetry[_first(car, car.Brake == ingest.FEED_INVALID)]["Brake"] is None


@pytest.mark.slow
def test_brake_100_is_on_and_0_is_off(las_vegas: RaceData, telemetry: dict) -> None:
    car = las_vegas.table("car_data")
    assert telemetry[_first(car, car.Brake == 100)]["Brake"] is True
    assert telemetry[_first(car, car.Brake == 0)]["Brake"] is False


@pytest.mark.slow
def test_valid_throttle_is_kept(las_vegas: RaceData, telemetry: dict) -> None:
    car = las_vegas.table("car_data")
    row = car[(car.Throttle > 0) & (car.Throttle < 100)].iloc[0]
    assert telemetry[(str(row.DriverNumber), float(row.SessionTime))]["Throttle"] == int(row.Throttle)


@pytest.mark.slow
def test_sentinel_counts_match_source(las_vegas: RaceData, telemetry: dict) -> None:
    car = las_vegas.table("car_data")
    throttle = Counter(p["Throttle"] is None for p in telemetry.values())
    brake = Counter(p["Brake"] for p in telemetry.values())
    assert throttle[True] == (car.Throttle == ingest.FEED_INVALID).sum()
    assert brake[None] == (car.Brake == ingest.FEED_INVALID).sum()
    assert brake[True] == ((car.Brake > 0) & (car.Brake != ingest.FEED_INVALID)).sum()
    assert brake[False] == (car.Brake == 0).sum()


# ------------------------------------------------------------------ timing gaps
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1.234", 1.234),
        ("1.234", 1.234),
        (" +0.155 ", 0.155),
        ("+63.022", 63.022),
        ("LAP 12", None),
        ("1L", None),
        ("1 L", None),
        ("2 L", None),
        ("", None),
        (None, None),
        (float("nan"), None),
        (np.float64("nan"), None),
        (pd.NA, None),
        ("nan", None),
        ("+inf", None),
        ("-1.0", None),
    ],
)
def test_parse_gap(raw: object, expected: float | None) -> None:
    assert ingest.parse_gap(raw) == expected


def _gap(raw: object) -> float | None:
    match = GAP_TEXT.match(raw) if isinstance(raw, str) else None
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("race_name", ["las_vegas", "bahrain"])
@pytest.mark.parametrize("column", ["GapToLeaderRaw", "IntervalRaw"])
def test_parse_gap_on_every_real_tower_text(
    race_name: str, column: str, request: pytest.FixtureRequest
) -> None:
    race: RaceData = request.getfixturevalue(race_name)
    raw = race.table("timing")[column].drop_duplicates()
    assert raw.map(lambda v: isinstance(v, str) and GAP_TEXT.match(v) is None).any(), "no lapped/LAP texts?"
    wrong = [(v, ingest.parse_gap(v)) for v in raw if ingest.parse_gap(v) != _gap(v)]
    assert wrong == []


@pytest.mark.slow
def test_timing_records_carry_parsed_gaps(las_vegas: RaceData, records: list[ingest.RawRecord]) -> None:
    timing = [r.payload for r in records if r.topic is catalog.TIMING]
    assert len(timing) == len(las_vegas.table("timing"))
    for p in timing:
        assert p["GapToLeader"] == _gap(p["GapToLeaderRaw"])
        assert p["IntervalToPositionAhead"] == _gap(p["IntervalRaw"])
    assert not any("Time" in p for p in timing)  # the source time column became SessionTime
    assert all(math.isfinite(p["SessionTime"]) for p in timing)


@pytest.mark.slow
def test_lap_event_time_is_lap_end(las_vegas: RaceData, records: list[ingest.RawRecord]) -> None:
    laps = las_vegas.table("laps")
    by_key = {
        (r.payload["DriverNumber"], r.payload["LapNumber"]): r.payload
        for r in records
        if r.topic is catalog.LAPS
    }
    assert len(by_key) == len(laps)
    for row in laps.itertuples():
        assert by_key[(row.DriverNumber, int(row.LapNumber))]["SessionTime"] == row.Time
