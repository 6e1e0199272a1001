"""Data quality: the ingestion ranges keep every real record, and the batch suite of `stratx train`
passes the real corpus and names the checks a corrupted copy fails.

The corrupted tables below are SYNTHETIC CORRUPTION of real rows (labelled as such): values are
overwritten on purpose to prove that each check can fail.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from stratx.bentos.lifecycle import data_quality, sources, training
from stratx.functions import catalog, ingest, schemas
from stratx.functions.racedata import RaceData
from stratx.functions.settings import REPO_ROOT

DATA = REPO_ROOT / "data"
BUNDLED = [r.path for r in sources.list_bundled(DATA)]


@pytest.fixture(scope="module")
def corpus_races() -> list[RaceData]:
    return training.corpus_races(DATA)


@pytest.fixture(scope="module")
def lap_table(corpus_races: list[RaceData]) -> pd.DataFrame:
    return training.lap_table(corpus_races, progress=False)


@pytest.fixture(scope="module")
def window_table() -> pd.DataFrame:
    """The bundled real TelemetryWindow rows of the anomaly model's training races."""
    return pd.read_parquet(DATA / "corpus" / "telemetry_windows.parquet")


# ------------------------------------------------------------------ ingestion ranges
@pytest.mark.slow
@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_every_record_of_a_bundled_race_passes_the_ranges(path: Path) -> None:
    """Every event of the race is encoded (the path the replay takes); the only rejects are the car
    samples whose nGear is above 8 (the feed's gear glitches), rejected before the ranges were added
    too (182 in the three races)."""
    race = sources.load_bundled(path)
    glitches = int((race.table("car_data").nGear > 8).sum())
    rejected: Counter[str] = Counter()
    counted: Counter[str] = Counter()
    for record in ingest.iter_records(race):
        counted[record.topic.name] += 1
        out = ingest.encode(record)
        if isinstance(out, ingest.Rejected):
            assert record.topic is catalog.CAR_TELEMETRY and out.reason.startswith(
                "CarTelemetry schema: nGear"
            )
            rejected[record.topic.name] += 1
    assert sum(rejected.values()) == glitches
    assert counted[catalog.CAR_TELEMETRY.name] == len(race.table("car_data")) > 0


@pytest.mark.slow
def test_every_corpus_record_passes_the_ranges(corpus_races: list[RaceData]) -> None:
    """Laps, timing, weather, race control and track status of all 37 races: no reject (the car
    tables exist for the three bundled races only, covered above)."""
    assert len(corpus_races) == 37
    seen = 0
    for race in corpus_races:
        for name in ("laps", "timing", "weather", "race_control", "track_status"):
            for record in ingest.table_records(race, name):
                out = ingest.validate(record)
                assert not isinstance(out, ingest.Rejected), (race.meta.slug, out.reason)
                seen += 1
    assert seen > 120_000


@pytest.mark.parametrize(
    ("schema", "field", "value"),
    [
        (schemas.CarTelemetry, "RPM", 20_001),
        (schemas.CarTelemetry, "Speed", True),
        (schemas.CarTelemetry, "SessionTime", float("nan")),
        (schemas.CarTelemetry, "SessionTime", float("inf")),
        (schemas.CarTelemetry, "DriverNumber", "٣"),  # an Arabic-Indic digit: not a car number
        (schemas.CarPosition, "X", 10**7),
        (schemas.Lap, "LapTime", 5.0),
        (schemas.Lap, "LapNumber", 1000),
        (schemas.Lap, "SpeedST", 900.0),
        (schemas.Lap, "Compound", "soft; drop table"),
        (schemas.Weather, "Humidity", 140.0),
        (schemas.Weather, "AirTemp", float("nan")),
        (schemas.Timing, "GapToLeaderRaw", "+" * 100),
        (schemas.RaceControl, "Message", "x" * 5000),
        (schemas.Event, "Date", "2023-03-05T15:00:00"),  # no timezone
        (schemas.Event, "Date", "1890-03-05T15:00:00Z"),
    ],
)
def test_out_of_range_values_are_rejected(schema: type, field: str, value: object) -> None:
    base: dict[str, object] = {"SessionKey": 7953, "Seq": 1, "SessionTime": 10.0, "Date": None}
    extra = {
        schemas.CarTelemetry: {"DriverNumber": "1", "Speed": 300, "RPM": 11000, "nGear": 7,
                               "Throttle": 100, "Brake": False, "DRS": 12},
        schemas.CarPosition: {"DriverNumber": "1", "X": 1, "Y": 2, "Z": 3},
        schemas.Lap: {"DriverNumber": "1", "Driver": "VER", "LapNumber": 3, "LapTime": 95.0},
        schemas.Weather: {"AirTemp": 25.0},
        schemas.Timing: {"DriverNumber": "1", "Position": 1},
        schemas.RaceControl: {"Category": "Flag", "Message": "GREEN LIGHT"},
        schemas.Event: {},
    }[schema]  # fmt: skip
    good = {**base, **extra}
    schema.model_validate(good)  # the unmodified record is valid
    topic = next((t for t in catalog.ALL_TOPICS if t.schema is schema), None)
    if topic is not None:  # the ingestion path: a dead-letter reason that names the field
        out = ingest.encode(ingest.RawRecord(topic, "7953:1", {**good, field: value}))
        assert isinstance(out, ingest.Rejected) and field in out.reason
    with pytest.raises(ValueError, match=field):
        schema.model_validate({**good, field: value})


def test_a_rejected_huge_value_is_quoted_briefly() -> None:
    record = ingest.RawRecord(catalog.RACE_CONTROL, "7953", {"SessionKey": 7953, "Seq": 1, "SessionTime": 1.0,
                                                            "Category": "x" * 1_000_000, "Message": "m"})  # fmt: skip
    out = ingest.validate(record)
    assert isinstance(out, ingest.Rejected) and len(out.reason) < 500 and "1000002 chars" in out.reason


# ------------------------------------------------------------------ batch suite
@pytest.mark.slow
def test_the_real_corpus_passes(lap_table: pd.DataFrame, window_table: pd.DataFrame) -> None:
    report = data_quality.check_tables({"laps": lap_table, "windows": window_table})
    assert report.passed, report.summary()
    assert report.tables == {"laps": len(lap_table), "windows": len(window_table)}
    assert len(lap_table) == 39_774 and report.checks["laps"] > 50


def _corrupt(laps: pd.DataFrame) -> pd.DataFrame:
    """SYNTHETIC CORRUPTION of real rows: each change breaks one named check."""
    bad = laps.copy()
    bad.loc[bad.index[5], "LapTime"] = -3.0  # in_range
    bad.loc[bad.index[100:110], "GapToLeader"] = -1.0  # >= 0
    bad.loc[bad.index[200:220], "DriverNumber"] = [f"V{i}" for i in range(20)]  # str_matches
    first = bad.index[(bad.EventName == "Bahrain Grand Prix") & (bad.Year == 2023) & (bad.LapNumber == 30)][0]
    bad.loc[first, "SessionTime"] = 1.0  # lap 30 ends before lap 29
    bad.loc[bad.sample(frac=0.3, random_state=1).index, "Compound"] = None  # null share
    return pd.concat([bad, bad.iloc[[7, 8]]], ignore_index=True)  # duplicate (race, driver, lap)


@pytest.mark.slow
def test_a_corrupted_copy_fails_with_the_named_checks(lap_table: pd.DataFrame, tmp_path: Path) -> None:
    report = data_quality.check_tables({"laps": _corrupt(lap_table)})
    failed = {(f.column, f.check): f for f in report.failures}
    assert set(failed) == {
        ("LapTime", "in_range(30, 14400.0)"),
        ("GapToLeader", "greater_than_or_equal_to(0)"),
        ("DriverNumber", f"str_matches('{schemas.DRIVER_NUMBER}')"),
        ("Compound", "null_share<=0.01"),
        (None, "lap_end_never_decreases_with_lap_number"),
        (None, "multiple_fields_uniqueness"),
    }, report.summary()
    assert failed[("GapToLeader", "greater_than_or_equal_to(0)")].rows == 10
    assert failed[(None, "multiple_fields_uniqueness")].rows == 4  # two rows, each twice
    assert "car " in failed[("LapTime", "in_range(30, 14400.0)")].examples[0]
    with pytest.raises(data_quality.DataQualityError, match="GapToLeader: greater_than_or_equal_to"):
        data_quality.require(report, tmp_path / "r.json")
    written = json.loads(data_quality.write_report(report, tmp_path / "r.json").read_text())
    assert written["passed"] is False and len(written["failures"]) == 6


def test_a_missing_column_and_a_bad_window_fail(window_table: pd.DataFrame) -> None:
    windows = window_table.head(1000).copy()  # SYNTHETIC CORRUPTION below
    windows.loc[windows.index[3], "WindowEnd"] = windows.loc[windows.index[3], "WindowStart"]
    windows.loc[windows.index[4], "BrakeShare"] = 1.5
    report = data_quality.check_tables({"windows": windows.drop(columns=["MaxGear"])})
    assert {(f.column, f.check) for f in report.failures} == {
        (None, "column_in_dataframe"),
        (None, "window_end_after_start"),
        ("BrakeShare", "in_range(0, 1)"),
    }


@pytest.mark.slow
def test_stratx_train_stops_before_fitting_on_bad_data(
    lap_table: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratx.functions.models import base
    from stratx.functions.settings import TrainingSettings

    settings = TrainingSettings(reports_dir=tmp_path)
    corpus = base.Corpus(laps=_corrupt(lap_table), raw_laps=pd.DataFrame(), results=pd.DataFrame(),
                         race_control=pd.DataFrame())  # fmt: skip
    with pytest.raises(data_quality.DataQualityError) as caught:
        training.check_quality(settings, corpus)
    assert str(tmp_path / "data_quality.json") in str(caught.value)
    assert json.loads((tmp_path / "data_quality.json").read_text())["passed"] is False
    good = base.Corpus(
        laps=lap_table, raw_laps=pd.DataFrame(), results=pd.DataFrame(), race_control=pd.DataFrame()
    )
    assert training.check_quality(settings, good) == tmp_path / "data_quality.json"
