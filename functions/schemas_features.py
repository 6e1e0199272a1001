"""Feature topic schemas: what the streaming feature apps emit (lap features, telemetry windows,
lap aggression, car progress, track gaps); each field is defined by the feature module named in
the class docstring. Re-exported by :mod:`stratx.functions.schemas`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratx.functions.schemas_raw import DRIVER_NUMBER


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
