"""Raw topic schemas: the ingestion events (telemetry, positions, laps, timing, race control,
track status, weather, session info) and the field types and bounds they share.

Every event carries ``SessionTime``, ``Date`` and ``Seq`` (see :mod:`stratx.functions.schemas`);
the bounds are the README's "Data quality" ranges. Re-exported by :mod:`stratx.functions.schemas`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

SCHEMA_VERSION = 1

NonNegFloat = Annotated[float, Field(ge=0)]


# ---- ingestion ranges (README "Data quality": each bound is checked against every record of the
# bundled races and the 37-race corpus, tests/bentos/test_data_quality.py)
def _not_bool(value: Any) -> Any:
    """JSON true/false is not a number (pydantic's lax mode would read it as 1/0)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _utc_date(value: datetime) -> datetime:
    """A timezone-aware date between 1950 (the first championship) and 2100."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("date has no timezone (UTC expected)")
    if not 1950 <= value.year <= 2100:
        raise ValueError(f"date year {value.year} outside 1950-2100")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
UtcDate = Annotated[datetime, AfterValidator(_utc_date)]
# |SessionTime| bound, 10 years: guards date arithmetic (bundled races: -5,399 to 15,287 s)
SESSION_TIME_MAX_S = 3_650 * 86_400.0
SessionSeconds = Annotated[Float, Field(ge=-SESSION_TIME_MAX_S, le=SESSION_TIME_MAX_S)]
DRIVER_NUMBER = r"^[0-9]{1,2}$"  # ASCII only: the regex engine's \d also matches other scripts' digits
LONGEST_S = 14_400.0  # a lap or sector that spans a red-flag stoppage: 4 h bound (corpus max 216 s)
MAX_LAPS = 200  # lap numbers (longest race in the corpus: 78 laps)


class Event(BaseModel):
    """Header shared by every raw event."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    schema_name: ClassVar[str] = "Event"

    v: Literal[1] = 1
    SessionKey: Int = Field(
        ge=-(2**31), le=2**31 - 1, description="F1 live-timing / OpenF1 session key (corpus: negative)"
    )
    Seq: Int = Field(ge=0, le=2**63 - 1, description="position in the session's event-time order")
    SessionTime: SessionSeconds = Field(description="event time, seconds since session t0")
    Date: UtcDate | None = Field(default=None, description="event time, UTC")


class DriverEvent(Event):
    DriverNumber: str = Field(pattern=DRIVER_NUMBER, description="car number as F1 timing gives it")


class CarTelemetry(DriverEvent):
    """One car-data sample (~3.7 Hz per car)."""

    schema_name: ClassVar[str] = "CarTelemetry"
    Speed: Int = Field(ge=0, le=400, description="km/h")
    RPM: Int = Field(ge=0, le=20000, description="engine revolutions per minute")
    nGear: Int = Field(ge=0, le=8, description="0 neutral, 1-8 gear")
    Throttle: Int | None = Field(ge=0, le=100, description="% pedal; None when the feed has no valid value")
    Brake: bool | None = Field(description="brake pedal on/off; None when the feed has no valid value")
    DRS: Int = Field(ge=0, le=15, description="raw feed code: 0/1 off, 8 eligible, 10/12/14 open")


class CarPosition(DriverEvent):
    """One car-position sample (~3.8 Hz per car), FastF1 pos_data track frame (1/10 m)."""

    schema_name: ClassVar[str] = "CarPosition"
    X: Int = Field(ge=-100_000, le=100_000, description="1/10 m; |X| <= 10 km (bundled max 7,734)")
    Y: Int = Field(ge=-100_000, le=100_000, description="1/10 m (bundled max 17,775)")
    Z: Int = Field(ge=-100_000, le=100_000, description="1/10 m (bundled max 6,164)")


class Lap(DriverEvent):
    """A completed lap; event time is the lap's end (FastF1 ``Time``). Times in seconds."""

    schema_name: ClassVar[str] = "Lap"
    Driver: str = Field(min_length=2, max_length=3, description="three-letter code")
    Team: str | None = Field(default=None, max_length=100)
    LapNumber: Int = Field(ge=1, le=MAX_LAPS)
    LapTime: Float | None = Field(
        default=None,
        ge=30,
        le=LONGEST_S,
        description="s; None when not timed (e.g. lap 1); corpus 65.6-216.4",
    )
    Sector1Time: Float | None = Field(default=None, gt=0, le=LONGEST_S)
    Sector2Time: Float | None = Field(default=None, gt=0, le=LONGEST_S)
    Sector3Time: Float | None = Field(default=None, gt=0, le=LONGEST_S)
    LapStartTime: SessionSeconds | None = Field(default=None, description="session time of lap start, s")
    PitInTime: SessionSeconds | None = Field(default=None, description="session time of pit entry, s")
    PitOutTime: SessionSeconds | None = Field(default=None, description="session time of pit exit, s")
    Stint: Int | None = Field(default=None, ge=1, le=20)
    Compound: str | None = Field(
        default=None, pattern=r"^[A-Z_]{1,20}$", description="e.g. SOFT, INTERMEDIATE"
    )
    TyreLife: Float | None = Field(default=None, ge=0, le=MAX_LAPS, description="laps on this tyre set")
    FreshTyre: bool | None = None
    TrackStatus: str | None = Field(
        default=None, pattern=r"^[1-7]{0,32}$", description="track status codes seen on the lap, e.g. '14'"
    )
    Position: Int | None = Field(default=None, ge=1, le=30)
    IsPersonalBest: bool | None = None
    Deleted: bool | None = None
    IsAccurate: bool | None = None
    SpeedI1: Float | None = Field(default=None, ge=0, le=400, description="km/h")
    SpeedI2: Float | None = Field(default=None, ge=0, le=400, description="km/h")
    SpeedFL: Float | None = Field(default=None, ge=0, le=400, description="km/h")
    SpeedST: Float | None = Field(default=None, ge=0, le=400, description="km/h")


class Timing(DriverEvent):
    """A live-timing tower update: running position and gaps (FastF1 timing stream)."""

    schema_name: ClassVar[str] = "Timing"
    Position: Int | None = Field(default=None, ge=1, le=30)
    GapToLeader: Float | None = Field(
        default=None, ge=0, le=3600, description="s; None when lapped or unknown"
    )
    IntervalToPositionAhead: Float | None = Field(
        default=None, ge=0, le=3600, description="s; None when unknown"
    )
    GapToLeaderRaw: str | None = Field(
        default=None, max_length=32, description="as shown on the tower, e.g. '+1.234', '1L'"
    )
    IntervalRaw: str | None = Field(default=None, max_length=32, description="as shown on the tower")


class RaceControl(Event):
    """A race-control message (flags, safety car, penalties, DRS)."""

    schema_name: ClassVar[str] = "RaceControl"
    Category: str = Field(max_length=64)
    Message: str = Field(max_length=2000, description="free text (corpus: up to 146 characters)")
    Status: str | None = Field(default=None, max_length=64)
    Flag: str | None = Field(default=None, max_length=64)
    Scope: str | None = Field(default=None, max_length=64)
    Sector: Int | None = Field(default=None, ge=1, le=99, description="marshal sector (corpus: 1-21)")
    RacingNumber: str | None = Field(default=None, pattern=DRIVER_NUMBER)
    Lap: Int | None = Field(default=None, ge=1, le=MAX_LAPS)


class TrackStatus(Event):
    """Track status change: 1 green, 2 yellow, 4 SC, 5 red, 6 VSC, 7 VSC ending."""

    schema_name: ClassVar[str] = "TrackStatus"
    Status: str = Field(pattern=r"^[1-7]$")
    Message: str | None = Field(default=None, max_length=64)


class Weather(Event):
    """Weather-station reading (about once a minute)."""

    schema_name: ClassVar[str] = "Weather"
    AirTemp: Float | None = Field(default=None, ge=-30, le=60, description="deg C (corpus 11.1-37.2)")
    Humidity: Float | None = Field(default=None, ge=0, le=100, description="%")
    Pressure: Float | None = Field(default=None, ge=500, le=1100, description="mbar (corpus 778.5-1019)")
    Rainfall: bool | None = None
    TrackTemp: Float | None = Field(default=None, ge=-30, le=90, description="deg C (corpus 15.6-55.6)")
    WindDirection: Float | None = Field(default=None, ge=0, le=360, description="deg")
    WindSpeed: Float | None = Field(default=None, ge=0, le=100, description="m/s (corpus max 7.6)")


class DriverInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    DriverNumber: str = Field(pattern=DRIVER_NUMBER)
    Abbreviation: str = Field(min_length=1, max_length=8)
    FullName: str | None = Field(default=None, max_length=200)
    TeamName: str | None = Field(default=None, max_length=200)
    TeamColor: str | None = Field(default=None, max_length=16)


class SessionInfo(Event):
    """Describes the session; emitted first, so consumers know the drivers and the clock."""

    schema_name: ClassVar[str] = "SessionInfo"
    Year: Int = Field(ge=1950, le=2100)
    EventName: str = Field(max_length=200)
    SessionName: str = Field(max_length=200)
    Circuit: str | None = Field(default=None, max_length=200)
    TotalLaps: Int | None = Field(default=None, ge=1, le=MAX_LAPS)
    T0Date: UtcDate | None = Field(default=None, description="UTC time of SessionTime 0")
    T0Source: str = Field(description="'fastf1' (exact) or 'estimate' (OpenF1 lap alignment)")
    Drivers: list[DriverInfo]
    Sources: dict[str, int] = Field(description="rows per source table in this replay")
    Missing: list[str] = Field(default_factory=list, description="source tables that were unavailable")
