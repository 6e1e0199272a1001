"""Pipeline control schemas: dead letters (a rejected record with its reason, size-bounded),
replay checkpoints (resume after a restart), inbound OpenF1 records forwarded to the broker, and
the race state (retired cars, safety-car and VSC deployments, each session's track).
Re-exported by :mod:`stratx.functions.schemas`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from stratx.functions.schemas_raw import DRIVER_NUMBER

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


# ---- race state
class Retirement(BaseModel):
    """A car out of the race (topic ``stratx.race.retirements``), detected causally by
    ``functions/race_state.py``; one record per car, never withdrawn."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "Retirement"

    v: Literal[1] = 1
    SessionKey: int
    DriverNumber: str = Field(pattern=DRIVER_NUMBER)
    Driver: str | None = Field(default=None, description="three-letter code, when a lap named it")
    LapNumber: int = Field(ge=0, description="the car's last completed lap (0: none)")
    SessionTime: float = Field(description="s, event time of the signal that showed the retirement")
    Date: datetime | None = Field(default=None, description="UTC of that signal")
    Source: Literal["race_control", "lap", "position", "laps"] = Field(description="the rule that fired")
    Reason: str = Field(max_length=2000)


class CarAtNeutralisation(BaseModel):
    """One running car when a neutralisation was deployed, as the laps had shown it so far."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    DriverNumber: str = Field(pattern=DRIVER_NUMBER)
    Driver: str | None = None
    LapNumber: int = Field(ge=0, description="the car's last completed lap; the lap in progress is the next")
    TyreLife: float | None = Field(default=None, description="laps on its tyres at that lap's end")
    Compound: str | None = None
    Stint: int | None = None


class Neutralisation(BaseModel):
    """A safety car or virtual safety car deployed (topic ``stratx.race.neutralisations``), with
    every running car's tyres at that moment; ``functions/neutralisations.py``. One record per
    deployment (a VSC turned into a safety car gives a second one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "Neutralisation"

    v: Literal[1] = 1
    SessionKey: int
    Kind: Literal["SC", "VSC"]
    SessionTime: float = Field(description="s, event time of the deployment")
    Date: datetime | None = None
    Source: Literal["track_status", "race_control"]
    Cars: list[CarAtNeutralisation]


class TrackMapData(BaseModel):
    """A circuit map as ``data/circuits/<circuit>.json`` holds it (``track_map.TrackMap``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    circuit: str = Field(max_length=200)
    length_m: float = Field(gt=0, description="lap length along the polyline, m")
    x: list[float] = Field(min_length=10, description="track frame, 1/10 m; x[0], y[0] on the line")
    y: list[float] = Field(min_length=10)
    s: list[float] = Field(min_length=10, description="m from the line")
    source: dict[str, Any] = Field(description="what the map was built from")

    @model_validator(mode="after")
    def _same_lengths(self) -> TrackMapData:
        if not len(self.x) == len(self.y) == len(self.s):
            raise ValueError(f"x, y and s differ in length ({len(self.x)}, {len(self.y)}, {len(self.s)})")
        return self


class RaceTrack(BaseModel):
    """What the track-gap apps need to know about a session (topic ``stratx.race.track``), as the
    stream showed it: its clock, drivers, race start and map; ``functions/track_state.py``. One
    record per session."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str] = "RaceTrack"

    v: Literal[1] = 1
    SessionKey: int
    SessionTime: float = Field(
        description="s, when the stream had shown it all: the latest event that showed a part"
    )
    Date: datetime | None = None
    T0Date: datetime | None = Field(default=None, description="UTC of SessionTime 0 (SessionInfo.T0Date)")
    Circuit: str | None = Field(default=None, max_length=200)
    Drivers: list[Annotated[str, Field(pattern=DRIVER_NUMBER)]]
    StartTime: float = Field(description="s, the race start: LapStartTime of the first lap-1 record")
    StartSource: str = Field(max_length=200)
    MapSource: Literal["bundled", "session"] = Field(
        description="bundled: data/circuits; session: built from this session's own positions"
    )
    Map: TrackMapData
