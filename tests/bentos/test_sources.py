"""Bundled-race discovery, loading, corruption handling and the write/read round trip."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from stratx.bentos.lifecycle import sources
from stratx.functions.racedata import TABLE_COLUMNS, RaceData

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
BUNDLED = {
    "2023_bahrain_grand_prix_race": (2023, "Bahrain Grand Prix"),
    "2023_las_vegas_grand_prix_race": (2023, "Las Vegas Grand Prix"),
    "2024_bahrain_grand_prix_race": (2024, "Bahrain Grand Prix"),
}


def _folder(race: sources.BundledRace | None) -> str | None:
    return race.path.name if race is not None else None


# ------------------------------------------------------------------ discovery
def test_list_bundled_finds_the_three_races() -> None:
    races = sources.list_bundled(DATA_DIR)
    assert {r.path.name: (r.meta.year, r.meta.event_name) for r in races} == BUNDLED
    for race in races:
        raw = json.loads((race.path / "meta.json").read_text())
        assert race.meta.session_key == raw["session_key"]
        assert race.meta.session_name == "Race"
        assert race.meta.slug == race.path.name


def test_list_bundled_on_a_folder_without_races(tmp_path: Path) -> None:
    assert sources.list_bundled(tmp_path) == []


@pytest.mark.parametrize(
    ("year", "event", "session", "folder"),
    [
        (2023, "Las Vegas", "R", "2023_las_vegas_grand_prix_race"),
        (2023, "  las vegas ", "race", "2023_las_vegas_grand_prix_race"),
        (2023, "Bahrain", "R", "2023_bahrain_grand_prix_race"),
        (2024, "bahrain", "R", "2024_bahrain_grand_prix_race"),
        (2024, "Sakhir", "R", "2024_bahrain_grand_prix_race"),  # circuit name
        (2023, "vegas", "Race", "2023_las_vegas_grand_prix_race"),
        (2023, "Atlantis", "R", None),
        (2023, "Bahrain", "Q", None),  # only the races are bundled
        (2022, "Bahrain", "R", None),
    ],
)
def test_find_bundled(year: int, event: str, session: str, folder: str | None) -> None:
    assert _folder(sources.find_bundled(DATA_DIR, year, event, session)) == folder


def test_find_bundled_refuses_an_ambiguous_event() -> None:
    with pytest.raises(sources.SourceError, match="several"):
        sources.find_bundled(DATA_DIR, 2023, "Grand Prix", "R")


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("R", "Race"),
        ("r", "Race"),
        ("S", "Sprint"),
        ("Q", "Qualifying"),
        ("SQ", "Sprint Qualifying"),
        ("fp1", "Practice 1"),
        ("FP3", "Practice 3"),
        ("sprint shootout", "Sprint Shootout"),
    ],
)
def test_session_name(code: str, name: str) -> None:
    assert sources.session_name(code) == name


# ------------------------------------------------------------------ corrupt folders
@pytest.fixture
def race_copy(tmp_path: Path) -> Path:
    """A copy of the 2023 Las Vegas folder, free to damage."""
    dest = tmp_path / "2023_las_vegas_grand_prix_race"
    shutil.copytree(DATA_DIR / "races" / dest.name, dest)
    return dest


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 16)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flipped(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(200, len(data) // 2, 97):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _truncated, _empty, _flipped])
@pytest.mark.parametrize("table", ["laps", "drivers"])
def test_corrupt_parquet_is_a_source_error(
    race_copy: Path, table: str, damage: Callable[[Path], None]
) -> None:
    damage(race_copy / f"{table}.parquet")
    with pytest.raises(sources.SourceError, match="unreadable"):
        sources.load_bundled(race_copy)


@pytest.mark.parametrize(
    "meta",
    [
        "{not json",
        '{"year": 2023}',  # keys missing
        "[2023]",  # JSON, but not an object
        '{"year": null, "event_name": "Las Vegas Grand Prix", "session_name": "Race", "session_key": 9189}',
    ],
    ids=["invalid-json", "missing-keys", "not-an-object", "null-year"],
)
def test_corrupt_meta_is_a_source_error(race_copy: Path, meta: str) -> None:
    (race_copy / "meta.json").write_text(meta)
    with pytest.raises(sources.SourceError):
        sources.load_bundled(race_copy)


def test_missing_folder_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(sources.SourceError):
        sources.load_bundled(tmp_path / "nope")


@pytest.mark.parametrize("meta", ["{not json", '{"year": 2023}'], ids=["invalid-json", "missing-keys"])
def test_one_corrupt_meta_does_not_break_discovery(tmp_path: Path, meta: str) -> None:
    """A broken bundled folder must be skipped or reported as a SourceError (one user-facing line),
    never escape as a raw JSONDecodeError/KeyError."""
    for name in BUNDLED:
        (tmp_path / "races" / name).mkdir(parents=True)
        shutil.copy(DATA_DIR / "races" / name / "meta.json", tmp_path / "races" / name / "meta.json")
    (tmp_path / "races" / "broken").mkdir()
    (tmp_path / "races" / "broken" / "meta.json").write_text(meta)
    try:
        races = sources.list_bundled(tmp_path)
    except sources.SourceError as exc:
        assert "broken" in str(exc)
    else:
        assert {r.path.name for r in races} == set(BUNDLED)


# ------------------------------------------------------------------ write/read round trip
def test_write_then_load_round_trip(las_vegas: RaceData, tmp_path: Path) -> None:
    small = las_vegas.filter_drivers({"VER"})
    path = sources.write_bundle(small, tmp_path, {"origin": "unit test"})
    assert path == tmp_path / small.meta.slug
    loaded = sources.load_bundled(path)
    assert loaded.meta == small.meta
    assert loaded.missing == small.missing
    assert loaded.row_counts() == small.row_counts()
    assert loaded.row_counts()["car_data"] == (las_vegas.table("car_data").DriverNumber == "1").sum()
    for name in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(loaded.table(name), small.table(name).reset_index(drop=True))
    meta = json.loads((path / "meta.json").read_text())
    assert meta["rows"] == small.row_counts()
    assert meta["provenance"] == {"origin": "unit test"}


def test_round_trip_keeps_missing_tables(las_vegas: RaceData, tmp_path: Path) -> None:
    small = las_vegas.filter_drivers({"VER"})
    tables = {k: v for k, v in small.tables.items() if k not in ("pos_data", "timing")}
    race = RaceData(small.meta, tables, ("pos_data", "timing"))
    loaded = sources.load_bundled(sources.write_bundle(race, tmp_path, {}))
    assert loaded.missing == ("pos_data", "timing")
    assert not (tmp_path / race.meta.slug / "pos_data.parquet").exists()
    assert len(loaded.table("pos_data")) == 0
    assert loaded.row_counts() == race.row_counts()


def test_load_fastf1_needs_an_existing_cache(tmp_path: Path) -> None:
    with pytest.raises(sources.SourceError, match="does not exist"):
        sources.load_fastf1(2023, "Bahrain", "R", tmp_path / "absent", offline=True)


def test_exports_carry_the_scheduled_distance_the_offline_pit_window_uses() -> None:
    """A race from FastF1 exports announces its distance (SessionInfo TotalLaps), so the stream's
    pit-window requests carry the RaceLaps the offline build derives (the race's highest lap).
    Before: TotalLaps was None, the stream fell back to the median circuit's laps, and on 2023 São
    Paulo (71 laps) every streamed pit-window value differed from the offline one and no window opened."""
    from stratx.functions import ingest, prediction_requests
    from stratx.functions.models import pit_window_labels

    races = sources.load_exports(DATA_DIR / "corpus" / "fastf1_exports")
    sao_paulo = next(r for r in races if r.meta.year == 2023 and r.meta.event_name == "São Paulo Grand Prix")
    assert sao_paulo.meta.total_laps == 71
    for race in races:
        laps = race.table("laps")
        offline = pit_window_labels.race_laps(
            laps.assign(Year=race.meta.year, EventName=race.meta.event_name)
        )
        assert race.meta.total_laps == int(offline.max()), race.meta
        info = next(ingest.iter_records(race))
        assert info.payload["TotalLaps"] == race.meta.total_laps
    row = {"SessionKey": sao_paulo.meta.session_key, "DriverNumber": "14", "LapNumber": 20}
    announced = next(ingest.iter_records(sao_paulo)).payload
    context = {"EventName": announced["EventName"], "TotalLaps": announced["TotalLaps"]}
    _, requests = prediction_requests.request_step(None, row, context)
    assert requests["pit_window"][0]["RaceLaps"] == 71
