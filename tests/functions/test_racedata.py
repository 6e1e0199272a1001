"""RaceData: driver filtering and the bundled-race naming."""

from __future__ import annotations

import pandas as pd
import pytest

from stratx.functions.racedata import TABLE_COLUMNS, RaceData

SESSION_TABLES = ("weather", "race_control", "track_status")
DRIVER_TABLES = ("laps", "timing", "car_data", "pos_data")


def _number(race: RaceData, code: str) -> str:
    drivers = race.table("drivers")
    return str(drivers.loc[drivers.Abbreviation == code, "DriverNumber"].iloc[0])


def test_table_columns_split_into_driver_and_session_tables() -> None:
    per_driver = {name for name, cols in TABLE_COLUMNS.items() if "DriverNumber" in cols}
    assert per_driver == {"drivers", *DRIVER_TABLES}
    assert set(TABLE_COLUMNS) == per_driver | set(SESSION_TABLES)


@pytest.mark.parametrize("wanted", [{"VER"}, {"ver"}, {"1"}])
def test_filter_one_driver_by_code_or_number(las_vegas: RaceData, wanted: set[str]) -> None:
    number = _number(las_vegas, "VER")
    one = las_vegas.filter_drivers(wanted)
    assert list(one.table("drivers").Abbreviation) == ["VER"]
    for name in DRIVER_TABLES:
        source = las_vegas.table(name)
        kept = one.table(name)
        assert set(kept.DriverNumber) == {number}
        assert len(kept) == (source.DriverNumber == number).sum() > 0


def test_filter_mixes_codes_and_numbers(las_vegas: RaceData) -> None:
    numbers = {_number(las_vegas, "HAM"), _number(las_vegas, "LEC")}
    two = las_vegas.filter_drivers({"HAM", _number(las_vegas, "LEC")})
    assert set(two.table("drivers").DriverNumber) == numbers
    for name in DRIVER_TABLES:
        assert len(two.table(name)) == las_vegas.table(name).DriverNumber.isin(numbers).sum()


def test_filter_keeps_session_tables_meta_and_source(las_vegas: RaceData) -> None:
    before = las_vegas.row_counts()
    one = las_vegas.filter_drivers({"VER"})
    for name in SESSION_TABLES:
        pd.testing.assert_frame_equal(one.table(name), las_vegas.table(name))
    assert one.meta == las_vegas.meta
    assert one.missing == las_vegas.missing
    assert las_vegas.row_counts() == before  # the source race is not modified


@pytest.mark.parametrize("unknown", ["ZZZ", "99"])
def test_unknown_driver_is_named(las_vegas: RaceData, unknown: str) -> None:
    with pytest.raises(ValueError) as err:
        las_vegas.filter_drivers({"VER", unknown})
    named, _, listing = str(err.value).partition(";")
    assert unknown in named and "VER" not in named
    assert "VER (1)" in listing  # the message tells the user what the session has


def test_filter_works_on_another_race(bahrain: RaceData) -> None:
    # 2023 Bahrain: De Vries (21) raced, Ricciardo (3) did not
    assert (
        len(bahrain.filter_drivers({"DEV"}).table("laps"))
        == (bahrain.table("laps").DriverNumber == "21").sum()
    )
    with pytest.raises(ValueError, match="RIC"):
        bahrain.filter_drivers({"RIC"})


def test_absent_table_is_an_empty_frame_with_its_columns(las_vegas: RaceData) -> None:
    race = RaceData(las_vegas.meta, {}, ("car_data",))
    frame = race.table("car_data")
    assert len(frame) == 0 and tuple(frame.columns) == TABLE_COLUMNS["car_data"]
    assert race.row_counts() == dict.fromkeys(TABLE_COLUMNS, 0)


def test_slug_is_the_bundled_folder_name(las_vegas: RaceData, bahrain: RaceData) -> None:
    assert las_vegas.meta.slug == "2023_las_vegas_grand_prix_race"
    assert bahrain.meta.slug == "2023_bahrain_grand_prix_race"
