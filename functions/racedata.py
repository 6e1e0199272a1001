"""``RaceData``: one session's source tables in a normalised, FastF1-named form.

Loaders (bundled parquet, FastF1 cache) build it; ingestion turns it into events. All session
times are float seconds since the session-time origin ``t0``; dates are UTC.

Tables and columns (absent tables are empty frames and listed in ``missing``):

* ``drivers``: DriverNumber, Abbreviation, FullName, TeamName, TeamColor
* ``laps``: Time (lap end, s) + every field of :class:`schemas.Lap`
* ``timing``: Time, DriverNumber, Position, GapToLeaderRaw, IntervalRaw
* ``car_data``: SessionTime, DriverNumber, Speed, RPM, nGear, Throttle, Brake, DRS, as the live
  feed sends them (Throttle/Brake 104 = no valid value, Brake 0/100)
* ``pos_data``: SessionTime, DriverNumber, X, Y, Z
* ``weather``: Time, AirTemp, Humidity, Pressure, Rainfall, TrackTemp, WindDirection, WindSpeed
* ``race_control``: Time, Category, Message, Status, Flag, Scope, Sector, RacingNumber, Lap
* ``track_status``: Time, Status, Message
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas loads with the first table: listing races needs none
    import pandas as pd

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "drivers": ("DriverNumber", "Abbreviation", "FullName", "TeamName", "TeamColor"),
    "laps": (
        "Time",
        "DriverNumber",
        "Driver",
        "Team",
        "LapNumber",
        "LapTime",
        "Sector1Time",
        "Sector2Time",
        "Sector3Time",
        "LapStartTime",
        "PitInTime",
        "PitOutTime",
        "Stint",
        "Compound",
        "TyreLife",
        "FreshTyre",
        "TrackStatus",
        "Position",
        "IsPersonalBest",
        "Deleted",
        "IsAccurate",
        "SpeedI1",
        "SpeedI2",
        "SpeedFL",
        "SpeedST",
    ),
    "timing": ("Time", "DriverNumber", "Position", "GapToLeaderRaw", "IntervalRaw"),
    "car_data": ("SessionTime", "DriverNumber", "Speed", "RPM", "nGear", "Throttle", "Brake", "DRS"),
    "pos_data": ("SessionTime", "DriverNumber", "X", "Y", "Z"),
    "weather": (
        "Time",
        "AirTemp",
        "Humidity",
        "Pressure",
        "Rainfall",
        "TrackTemp",
        "WindDirection",
        "WindSpeed",
    ),
    "race_control": (
        "Time",
        "Category",
        "Message",
        "Status",
        "Flag",
        "Scope",
        "Sector",
        "RacingNumber",
        "Lap",
    ),
    "track_status": ("Time", "Status", "Message"),
}
# lap columns that are session times or durations: float seconds here, timedeltas in FastF1
LAP_SECONDS_COLUMNS = (
    "Time",
    "LapTime",
    "Sector1Time",
    "Sector2Time",
    "Sector3Time",
    "LapStartTime",
    "PitInTime",
    "PitOutTime",
)
EVENT_TABLES = ("laps", "timing", "car_data", "pos_data", "weather", "race_control", "track_status")


@dataclass(frozen=True)
class SessionMeta:
    year: int
    event_name: str
    session_name: str
    session_key: int
    circuit: str | None = None
    total_laps: int | None = None
    t0_date: pd.Timestamp | None = None
    t0_source: str = "none"

    @property
    def slug(self) -> str:
        """Folder name of a bundled race, e.g. ``2023_bahrain_grand_prix_race``."""
        words = f"{self.year} {self.event_name} {self.session_name}".lower()
        return "_".join("".join(c if c.isalnum() else " " for c in words).split())


@dataclass(frozen=True)
class RaceData:
    meta: SessionMeta
    tables: dict[str, pd.DataFrame]
    missing: tuple[str, ...] = field(default=())

    def table(self, name: str) -> pd.DataFrame:
        frame = self.tables.get(name)
        if frame is None:
            import pandas as pd

            return pd.DataFrame(columns=list(TABLE_COLUMNS[name]))
        return frame

    def row_counts(self) -> dict[str, int]:
        return {name: len(self.table(name)) for name in TABLE_COLUMNS}

    def filter_drivers(self, drivers: set[str]) -> RaceData:
        """Keep only the given drivers (numbers or three-letter codes) in per-driver tables."""
        wanted = {d.upper() for d in drivers}
        table = self.table("drivers")
        numbers = set(table.loc[table.Abbreviation.str.upper().isin(wanted), "DriverNumber"]) | (
            wanted & set(table.DriverNumber)
        )
        unknown = wanted - numbers - set(table.Abbreviation.str.upper())
        if unknown:
            known = ", ".join(
                f"{a} ({n})" for n, a in zip(table.DriverNumber, table.Abbreviation, strict=True)
            )
            raise ValueError(f"unknown driver(s) {sorted(unknown)}; this session has: {known}")
        tables = {
            name: (frame[frame.DriverNumber.isin(numbers)] if "DriverNumber" in frame.columns else frame)
            for name, frame in self.tables.items()
        }
        return RaceData(self.meta, tables, self.missing)
