"""Typed, versioned message schemas for every StratX topic.

Field names follow F1 timing / FastF1 vocabulary (DriverNumber, LapTime, Stint, Compound,
TyreLife, nGear, ...). Every event carries its event time twice:

* ``SessionTime``: seconds since the session-time origin ``t0`` (FastF1's ``SessionTime`` axis)
* ``Date``: the UTC wall-clock time of the event (``t0 + SessionTime``), or ``None`` when the
  source has no UTC origin

and ``Seq``: the position of the event in the replay's event-time order (unique per session,
used for resume and de-duplication downstream). Units are given per field.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from stratx.functions.models.registry import MODEL_KEYS

SCHEMA_VERSION = 1

NonNegFloat = Annotated[float, Field(ge=0)]


# ---- ingestion ranges (README "Data quality": each bound is checked against every record of the
# bundled races and the 37-race corpus, tests/unit/test_data_quality.py)
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


class LapFeatures(BaseModel):
    """One driver-lap of features (``functions/features/laps.py`` defines every field)."""

    # finite numbers only: the model services take these rows (NaN/inf would reach the models)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    schema_name: ClassVar[str] = "LapFeatures"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(pattern=DRIVER_NUMBER)
    Driver: str | None = None
    Team: str | None = None
    LapNumber: int = Field(ge=1)
    SessionTime: float = Field(description="lap end, s since session t0")
    Date: datetime | None = Field(default=None, description="lap end, UTC")
    LapTime: float | None = Field(default=None, description="s")
    IsClean: bool
    CleanReason: str | None = None
    Stint: int | None = None
    Compound: str | None = None
    TyreLife: float | None = Field(default=None, description="laps")
    FreshTyre: bool | None = None
    LapsInStint: int
    StintCleanLaps: int
    FuelKg: float = Field(description="kg on board at lap start (fuel model)")
    FuelCorrectedLapTime: float | None = Field(default=None, description="s")
    Last3Mean: float | None = None
    Last3Median: float | None = None
    Last3Std: float | None = None
    Last3Min: float | None = None
    Last5Mean: float | None = None
    Last5Median: float | None = None
    Last5Std: float | None = None
    Last5Min: float | None = None
    StintTrendSlope: float | None = Field(default=None, description="s/lap")
    StintDegSlope: float | None = Field(default=None, description="fuel-corrected s/lap of tyre life")
    StintDegSlopeStderr: float | None = Field(default=None, description="s/lap")
    PersonalBest: float | None = None
    LapsSincePB: int | None = None
    DeltaToPB: float | None = None
    DeltaToSessionBest: float | None = None
    DeltaToTeammate: float | None = None
    DeltaToCarAhead: float | None = None
    DeltaToCarBehind: float | None = None
    DeltaToFieldMedian: float | None = None
    PositionOnLap: int = Field(ge=1)
    PositionChange: int | None = None
    GapToLeader: float = Field(ge=0, description="s")
    IntervalAhead: float | None = Field(default=None, description="s")
    IntervalBehind: float | None = Field(default=None, description="s")
    InDRSRange: bool
    LapsDown: int = Field(ge=0)
    Neutralised: bool = Field(
        default=False, description="SC, VSC or red flag on the lap, causal (functions/scope.py)"
    )
    GreenClean: bool = Field(
        default=True, description="not lap 1, in-lap, out-lap or neutralised (functions/scope.py)"
    )
    TrackStatus: str | None = Field(
        default=None, description="track status codes seen on the lap (passed through)"
    )
    SpeedI1: float | None = Field(default=None, description="km/h, speed trap 1 (passed through)")
    SpeedI2: float | None = Field(default=None, description="km/h, speed trap 2 (passed through)")
    SpeedFL: float | None = Field(default=None, description="km/h, finish line (passed through)")
    SpeedST: float | None = Field(
        default=None, description="km/h, speed trap on the longest straight (passed through)"
    )


class TelemetryWindow(BaseModel):
    """Car-telemetry features of one driver over one tumbling SessionTime window."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "TelemetryWindow"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(pattern=DRIVER_NUMBER)
    WindowStart: float = Field(description="s, SessionTime of the window start (inclusive)")
    WindowEnd: float = Field(description="s, SessionTime of the window end (exclusive)")
    Date: datetime | None = Field(description="UTC time of WindowEnd; None when samples had no Date")
    Samples: int = Field(ge=1)
    SpeedMean: float = Field(ge=0, description="km/h")
    SpeedStd: float | None = Field(ge=0, description="km/h, ddof=1; None if Samples < 2")
    SpeedMin: int = Field(ge=0, description="km/h")
    SpeedMax: int = Field(ge=0, description="km/h")
    RPMMean: float = Field(ge=0, description="1/min")
    RPMMax: int = Field(ge=0, description="1/min")
    ThrottleMean: float | None = Field(ge=0, le=100, description="%, valid samples only")
    FullThrottleShare: float | None = Field(ge=0, le=1, description="share with Throttle >= 98")
    BrakeShare: float | None = Field(ge=0, le=1, description="share with Brake on")
    ThrottleBrakeOverlapShare: float | None = Field(ge=0, le=1, description="Throttle > 10 and Brake")
    BrakeEvents: int = Field(ge=0, description="brake applications (rising edges)")
    DecelMean: float | None = Field(description="km/h/s, mean speed drop per second while braking")
    GearChanges: int = Field(ge=0)
    UpshiftRPMMean: float | None = Field(ge=0, description="1/min before each upshift")
    DRSOpenShare: float = Field(ge=0, le=1, description="share with DRS open (10, 12, 14)")
    MaxGear: int = Field(ge=0, le=8)


Share = Annotated[float | None, Field(ge=0, le=1)]


class LapAggression(BaseModel):
    """Driver-aggression features of one driver-lap (``functions/features/aggression.py`` defines
    every field and the Samples weighting)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "LapAggression"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(pattern=DRIVER_NUMBER)
    LapNumber: int = Field(ge=1)
    LapStartTime: float = Field(description="s, lap start (previous lap end), SessionTime axis")
    SessionTime: float = Field(description="s, lap end")
    Date: datetime | None = Field(default=None, description="lap end, UTC")
    Windows: int = Field(ge=0, description="telemetry windows whose midpoint lies in the lap")
    Samples: int = Field(ge=0, description="car-data samples in those windows")
    ThrottleMean: float | None = Field(ge=0, le=100, description="%, Samples-weighted")
    FullThrottleShare: Share = Field(description="Throttle >= 98, Samples-weighted")
    BrakeShare: Share = Field(description="Brake on, Samples-weighted")
    ThrottleBrakeOverlapShare: Share = Field(description="Throttle > 10 and Brake, Samples-weighted")
    DRSOpenShare: Share = Field(description="DRS open, Samples-weighted")
    BrakeEvents: int = Field(ge=0, description="brake applications")
    GearChanges: int = Field(ge=0)
    DecelMean: float | None = Field(description="km/h/s while braking, Samples-weighted")
    UpshiftRPMMean: float | None = Field(ge=0, description="1/min before upshifts, Samples-weighted")
    SpeedMax: int | None = Field(ge=0, description="km/h")


class CarProgress(BaseModel):
    """One driver's progress along the track (at most one per second of SessionTime)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "CarProgress"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(pattern=DRIVER_NUMBER)
    SessionTime: float = Field(description="s since session t0, of the position sample")
    Date: datetime | None = Field(default=None, description="UTC of the sample")
    DistanceTotal: float = Field(description="m from the line at the race start (monotone)")
    LapDistance: float | None = Field(ge=0, description="m from the line; None when OnTrack is False")
    OnTrack: bool = Field(description="False: no usable position (no fix, off the map, glitch); D held")


class TrackGap(BaseModel):
    """Continuous gaps of one driver at one 1 s grid time (``track_gaps.py`` defines every field)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "TrackGap"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(pattern=DRIVER_NUMBER)
    SessionTime: float = Field(description="grid time T, s since session t0")
    Date: datetime | None = Field(default=None, description="UTC of T")
    DistanceTotal: float = Field(description="m from the line at the race start")
    LapNumber: int = Field(ge=1, description="lap being driven by distance: floor(D / L) + 1")
    Stopped: bool = Field(description="under 10 m of progress in the last 60 s: no position or gaps")
    PositionByDistance: int | None = Field(default=None, ge=1)
    CarAhead: str | None = Field(default=None, description="DriverNumber of the car ahead by distance")
    GapAhead: float | None = Field(default=None, ge=0, description="s since the car ahead was here")
    GapToLeader: float | None = Field(default=None, ge=0, description="s since the leader was here")


# The model keys come from the registry (functions/models/registry.py); ModelKey is their Literal.
if TYPE_CHECKING:
    ModelKey = str
else:
    ModelKey = Literal[MODEL_KEYS]


class Prediction(BaseModel):
    """One model's prediction for one feature record (topic ``stratx.predictions.<model>``).

    ``EventSessionTime``/``EventDate`` are the feature record's event time and ``IngestedAt`` the
    wall-clock time the prediction app read it, so ``ProducedAt - IngestedAt`` is the serving
    latency and ``ProducedAt - EventDate`` (live) the end-to-end lag. ``Status`` ``unavailable``:
    the model's service did not answer after the retries; ``Values`` is then empty and ``Reason``
    says why. ``Values`` holds the model's output columns (e.g. PredictedNextLapTime, DegRate,
    DegRateP10, PitProbability3Laps, OvertakeProbability1Lap, AnomalyScore).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "Prediction"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(pattern=DRIVER_NUMBER, description="the driver the prediction is about")
    LapNumber: int | None = Field(default=None, ge=1, description="the lap of the feature record")
    Model: ModelKey
    ModelVersion: str | None = Field(description="registry version of the model that answered")
    Status: Literal["ok", "unavailable"]
    Reason: str | None = None
    Values: dict[str, float | str | bool | None] = Field(default_factory=dict)
    OtherDriverNumber: str | None = Field(default=None, description="overtake: the car ahead")
    EventSessionTime: float = Field(description="s, the feature record's SessionTime")
    EventDate: datetime | None = Field(default=None, description="UTC, the feature record's Date")
    IngestedAt: datetime = Field(description="UTC wall clock when the feature record was read")
    ProducedAt: datetime = Field(description="UTC wall clock when the prediction was produced")


class Alert(BaseModel):
    """A strategy alert derived from predictions (topic ``stratx.alerts``), debounced."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "Alert"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(
        pattern=DRIVER_NUMBER,
        description='the car; "0" = the whole session (drift alerts; no car races as 0)',
    )
    LapNumber: int | None = Field(default=None, ge=1)
    Type: Literal[
        "tyre_cliff", "anomaly", "pit_window_open", "pit_window_closing", "overtake_likely", "drift"
    ]
    Severity: Literal["info", "warning", "critical"]
    Message: str = Field(description="one line a strategist can read, e.g. 'VER: tyre cliff likely (p=0.72)'")
    Model: str | None = None
    ModelVersion: str | None = None
    Value: float | None = Field(default=None, description="the number that triggered the alert")
    EventSessionTime: float
    Date: datetime = Field(description="UTC wall clock when the alert was raised")


DEAD_LETTER_PAYLOAD_MAX = 65_536  # characters; a dead letter must stay far below the broker's 1 MB limit


def _bounded(payload: str) -> str:
    """The payload, cut to :data:`DEAD_LETTER_PAYLOAD_MAX` characters with a note saying so: a
    huge poison record must not make its own dead letter too large to produce (the app would stop)."""
    if len(payload) <= DEAD_LETTER_PAYLOAD_MAX:
        return payload
    return payload[:DEAD_LETTER_PAYLOAD_MAX] + f"...[truncated: {len(payload)} characters]"


class DeadLetter(BaseModel):
    """A record that could not be published, with the reason and the original payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "DeadLetter"

    v: Literal[1] = 1
    SourceTopic: str
    Key: str | None
    Reason: str
    Payload: Annotated[str, AfterValidator(_bounded)] = Field(
        description="the original record, JSON (cut to DEAD_LETTER_PAYLOAD_MAX characters)"
    )
    Stage: str = Field(description="pipeline stage that rejected the record, e.g. 'replay'")
    Date: datetime = Field(description="UTC time the record was rejected")


class ReplayCheckpoint(BaseModel):
    """Last event of a replay known to be on the broker (compacted topic, key = replay id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "ReplayCheckpoint"

    v: Literal[1] = 1
    ReplayId: str
    SessionKey: int
    Seq: int = Field(ge=-1, description="last published Seq; -1 when nothing was published")
    SessionTime: float
    Finished: bool
    Date: datetime


class OpenF1Inbound(BaseModel):
    """An OpenF1 API record as forwarded to ``stratx.inbound.openf1`` (fields as OpenF1 names them;
    the endpoint and the session start travel in headers, see ``functions/inbound.py``)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    schema_name: ClassVar[str] = "OpenF1Inbound"

    session_key: int = Field(description="OpenF1 session key")
