"""OpenF1 endpoints and record validation: which endpoints StratX polls and what each record must carry.

:data:`ENDPOINTS` says, per endpoint, how long a silent car holds back its session-wide poll, the
field the incremental cursor follows, the raw topic it feeds and its required fields; :class:`SessionContext` is what
every normalisation needs; :func:`parse_date` and :func:`malformed` check single fields and whole
records (the reason a record goes to the dead letters). Pure; re-exported by
:mod:`stratx.functions.openf1`, which documents the clock and the fields OpenF1 cannot give.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard

from stratx.functions import catalog, schemas
from stratx.functions.catalog import TopicSpec

T0_SOURCE = "openf1-session-start"
Record = Mapping[str, Any]


@dataclass(frozen=True)
class Endpoint:
    name: str
    stale_s: float  # a car this far behind the endpoint's newest record no longer holds back the poll
    date_field: str | None  # the field the incremental cursor follows; None = fetched whole
    topic: TopicSpec | None  # the raw topic it feeds; None = enrichment / not published
    required: tuple[str, ...]  # fields a record must carry (else it is malformed)
    id_fields: tuple[str, ...] = ()  # extra identity fields for event_id (beyond driver + date)
    feeds: str = ""


# Every endpoint is polled once per session (not per car): one request a cycle whatever the field.
# Its cursor is the oldest of the cars' cursors, so one car's late record is not filtered out by
# another's newer one; a car silent for longer than ``stale_s`` behind the newest (stopped, retired,
# out of the feed) is left out, or the query would start at its last record forever. Streams a car
# sends several times a second: 30 s; laps (a lap starts every ~90 s, longer through a stop) and the
# occasional records: 300 s. A car's record published more than that after the newest one is not
# asked for again (OpenF1 publishes within seconds).
STALE_S = 30.0
STALE_LAPS_S = 300.0
_E = Endpoint
ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        _E("sessions", STALE_S, None, catalog.SESSION_INFO, ("session_key", "date_start"), (), "SessionInfo clock and names"),
        _E("meetings", STALE_S, None, catalog.SESSION_INFO, ("meeting_key",), (), "SessionInfo.EventName"),
        _E("drivers", STALE_S, None, catalog.SESSION_INFO, ("driver_number", "name_acronym"), (), "SessionInfo.Drivers, Lap.Driver/Team"),
        _E("laps", STALE_LAPS_S, "date_start", catalog.LAPS, ("driver_number", "lap_number"), ("lap_number",), "Lap"),
        _E("stints", STALE_S, None, catalog.LAPS, ("driver_number", "stint_number", "lap_start"), ("stint_number",), "Lap Stint/Compound/TyreLife/FreshTyre"),
        _E("pit", STALE_LAPS_S, "date", catalog.LAPS, ("driver_number", "date", "lap_number"), ("lap_number",), "Lap PitInTime/PitOutTime"),
        _E("intervals", STALE_S, "date", catalog.TIMING, ("driver_number", "date"), (), "Timing gaps"),
        _E("position", STALE_S, "date", catalog.TIMING, ("driver_number", "date", "position"), (), "Timing Position"),
        _E("car_data", STALE_S, "date", catalog.CAR_TELEMETRY, ("driver_number", "date", "speed", "rpm", "n_gear", "throttle", "brake", "drs"), (), "CarTelemetry"),
        _E("location", STALE_S, "date", catalog.CAR_POSITION, ("driver_number", "date", "x", "y", "z"), (), "CarPosition"),
        _E("race_control", STALE_LAPS_S, "date", catalog.RACE_CONTROL, ("date", "category", "message"), ("message",), "RaceControl"),
        _E("weather", STALE_LAPS_S, "date", catalog.WEATHER, ("date",), (), "Weather"),
        _E("overtakes", STALE_LAPS_S, "date", None, ("date", "overtaking_driver_number", "overtaken_driver_number"), ("overtaking_driver_number", "overtaken_driver_number"), "not published yet (no raw topic)"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class SessionContext:
    """What every normalisation needs: the session key, the clock origin and the drivers."""

    session_key: int
    t0: datetime  # /sessions date_start (UTC)
    drivers: Mapping[str, schemas.DriverInfo] = field(default_factory=dict)


# --- field parsing -------------------------------------------------------------------------------


def parse_date(value: Any) -> datetime:
    """OpenF1 ISO date (with 'T' or ' ', 'Z' or offset; naive = UTC) -> aware UTC datetime."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"not a date: {value!r}")
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise ValueError(f"date out of range: {value!r}") from exc


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _num(v: Any) -> float | None:
    return float(v) if _is_num(v) else None


_INT_FIELDS = {"driver_number", "lap_number", "speed", "rpm", "n_gear", "throttle", "brake", "drs",
               "x", "y", "z", "position", "stint_number", "lap_start", "session_key"}  # fmt: skip
_DATE_FIELDS = {"date", "date_start"}


def _not_numbers(endpoint: str, record: Record, names: Sequence[str], ints: bool = False) -> str | None:
    """Why an optional numeric field holds something else than a (finite) number, or None: such a
    record is rejected with the reason rather than having the value silently dropped."""
    for name in names:
        value = record.get(name)
        if value is not None and not (_is_int(value) if ints else _is_num(value)):
            kind = "an integer" if ints else "a finite number"
            return f"openf1 {endpoint}: {name} is not {kind} (got {str(value)[:80]!r})"
    return None


_LAP_NUMBERS = ("lap_duration", "duration_sector_1", "duration_sector_2", "duration_sector_3",
                "i1_speed", "i2_speed", "st_speed")  # fmt: skip
_WEATHER_NUMBERS = (
    "air_temperature",
    "humidity",
    "pressure",
    "track_temperature",
    "wind_direction",
    "wind_speed",
)


def malformed(endpoint: str, record: Any) -> str | None:
    """Why ``record`` cannot be normalised (missing field, wrong type), or None if it can."""
    if not isinstance(record, Mapping):
        return f"openf1 {endpoint}: record is {type(record).__name__}, not an object"
    spec = ENDPOINTS[endpoint]
    for name in spec.required:
        value = record.get(name)
        if value is None:
            return f"openf1 {endpoint}: missing {name}"
        if name in _INT_FIELDS and not _is_int(value):
            return f"openf1 {endpoint}: {name} is not an integer (got {value!r})"
        if name in _DATE_FIELDS:
            try:
                parse_date(value)
            except ValueError:
                return f"openf1 {endpoint}: {name} is not an ISO date (got {value!r})"
    return None
