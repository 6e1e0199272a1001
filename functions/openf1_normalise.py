"""OpenF1 records -> StratX raw events: one ``normalise_*`` per endpoint, plus the SessionInfo record.

Each normaliser turns one OpenF1 record into a :class:`~stratx.functions.ingest.RawRecord` with the
same payload as the FastF1 replay (``SessionTime`` counted from the session's ``date_start``), or a
:class:`~stratx.functions.ingest.Rejected` reason for the dead letters. Laps are joined with the
driver's ``/stints`` and ``/pit`` records here. Pure; re-exported by :mod:`stratx.functions.openf1`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from stratx.functions import catalog, schemas
from stratx.functions.catalog import TopicSpec
from stratx.functions.ingest import FEED_INVALID, RawRecord, Rejected, parse_gap
from stratx.functions.openf1_records import (
    _LAP_NUMBERS,
    _WEATHER_NUMBERS,
    T0_SOURCE,
    Record,
    SessionContext,
    _is_int,
    _is_num,
    _not_numbers,
    _num,
    malformed,
    parse_date,
)


def _finish(
    spec: TopicSpec, ctx: SessionContext, seq: int, date: datetime, payload: dict[str, Any]
) -> RawRecord:
    payload = {
        "v": schemas.SCHEMA_VERSION,
        "SessionKey": ctx.session_key,
        "Seq": seq,
        "SessionTime": (date - ctx.t0).total_seconds(),
        "Date": date,
        **payload,
    }
    driver = payload.get("DriverNumber")
    key = catalog.message_key(spec, ctx.session_key, driver if isinstance(driver, str) else None)
    return RawRecord(spec, key, payload)


def normalise_car_data(record: Record, ctx: SessionContext, seq: int) -> RawRecord | Rejected:
    if (reason := malformed("car_data", record)) is not None:
        return Rejected(reason)
    thr, brk = record["throttle"], record["brake"]
    return _finish(
        catalog.CAR_TELEMETRY,
        ctx,
        seq,
        parse_date(record["date"]),
        {
            "DriverNumber": str(record["driver_number"]),
            "Speed": record["speed"],
            "RPM": record["rpm"],
            "nGear": record["n_gear"],
            "Throttle": None if thr == FEED_INVALID else thr,
            "Brake": None if brk == FEED_INVALID else brk > 0,
            "DRS": record["drs"],
        },
    )


def normalise_location(record: Record, ctx: SessionContext, seq: int) -> RawRecord | Rejected:
    if (reason := malformed("location", record)) is not None:
        return Rejected(reason)
    return _finish(
        catalog.CAR_POSITION,
        ctx,
        seq,
        parse_date(record["date"]),
        {"DriverNumber": str(record["driver_number"]), "X": record["x"], "Y": record["y"], "Z": record["z"]},
    )


def _gap(value: Any) -> tuple[float | None, str | None]:
    """OpenF1 gap: a number of seconds, null, or text such as '+1 LAP' (kept raw, value None)."""
    if value is None:
        return None, None
    if _is_num(value):
        return (float(value) if value >= 0 else None), f"+{float(value):.3f}"
    text = str(value)
    return parse_gap(text) if "LAP" not in text.upper() else None, text


def normalise_interval(record: Record, ctx: SessionContext, seq: int) -> RawRecord | Rejected:
    if (reason := malformed("intervals", record)) is not None:
        return Rejected(reason)
    gap, gap_raw = _gap(record.get("gap_to_leader"))
    interval, interval_raw = _gap(record.get("interval"))
    return _finish(
        catalog.TIMING,
        ctx,
        seq,
        parse_date(record["date"]),
        {
            "DriverNumber": str(record["driver_number"]),
            "GapToLeader": gap,
            "IntervalToPositionAhead": interval,
            "GapToLeaderRaw": gap_raw,
            "IntervalRaw": interval_raw,
        },
    )


def normalise_position(record: Record, ctx: SessionContext, seq: int) -> RawRecord | Rejected:
    if (reason := malformed("position", record)) is not None:
        return Rejected(reason)
    return _finish(
        catalog.TIMING,
        ctx,
        seq,
        parse_date(record["date"]),
        {"DriverNumber": str(record["driver_number"]), "Position": record["position"]},
    )


def normalise_race_control(record: Record, ctx: SessionContext, seq: int) -> RawRecord | Rejected:
    if (reason := malformed("race_control", record)) is not None:
        return Rejected(reason)
    if (reason := _not_numbers("race_control", record, ("sector", "lap_number"), ints=True)) is not None:
        return Rejected(reason)
    number, lap, sector = record.get("driver_number"), record.get("lap_number"), record.get("sector")
    return _finish(
        catalog.RACE_CONTROL,
        ctx,
        seq,
        parse_date(record["date"]),
        {
            "Category": str(record["category"]),
            "Message": str(record["message"]),
            "Flag": record.get("flag"),
            "Scope": record.get("scope"),
            "Sector": sector if _is_int(sector) else None,
            "RacingNumber": str(number) if number is not None else None,
            "Lap": lap if _is_int(lap) else None,
        },
    )


def normalise_weather(record: Record, ctx: SessionContext, seq: int) -> RawRecord | Rejected:
    if (reason := malformed("weather", record)) is not None:
        return Rejected(reason)
    if (reason := _not_numbers("weather", record, _WEATHER_NUMBERS)) is not None:
        return Rejected(reason)
    rain = record.get("rainfall")
    if rain is not None and not (_is_num(rain) or isinstance(rain, bool)):
        return Rejected(f"openf1 weather: rainfall is not a number or boolean (got {str(rain)[:80]!r})")
    return _finish(
        catalog.WEATHER,
        ctx,
        seq,
        parse_date(record["date"]),
        {
            "AirTemp": _num(record.get("air_temperature")),
            "Humidity": _num(record.get("humidity")),
            "Pressure": _num(record.get("pressure")),
            "Rainfall": bool(rain) if _is_num(rain) or isinstance(rain, bool) else None,
            "TrackTemp": _num(record.get("track_temperature")),
            "WindDirection": _num(record.get("wind_direction")),
            "WindSpeed": _num(record.get("wind_speed")),
        },
    )


def stint_for_lap(stints: Iterable[Record], driver: str, lap: int) -> dict[str, Any]:
    """Stint, Compound, TyreLife, FreshTyre of ``lap`` from the driver's ``/stints`` records.

    TyreLife follows FastF1 (laps on the set including this one): ``tyre_age_at_start + lap -
    lap_start + 1``. OpenF1 sometimes starts a stint on the previous stint's last lap (the in-lap,
    e.g. 2024 Canada: 1-25, 25-45); that lap stays in the earlier stint and the new stint counts
    from the next lap. A lap after the last stint's ``lap_end`` belongs to the last stint (live,
    ``lap_end`` lags; after the race, the final lap is sometimes left out).
    """
    own = sorted(
        (s for s in stints if str(s.get("driver_number")) == driver and malformed("stints", s) is None),
        key=lambda s: int(s["stint_number"]),
    )
    if own and _is_int(own[-1].get("lap_end")) and lap > int(own[-1]["lap_end"]):
        own[-1] = {**own[-1], "lap_end": None}  # the running stint: OpenF1's lap_end lags the laps
    prev_end: int | None = None
    for s in own:
        start = int(s["lap_start"])
        if prev_end is not None and start <= prev_end:
            start = prev_end + 1
        end = s.get("lap_end")
        prev_end = int(end) if _is_int(end) else prev_end
        if start <= lap and (not _is_int(end) or lap <= int(end)):
            age = s.get("tyre_age_at_start")
            compound = s.get("compound")
            life = age + lap - start + 1 if _is_int(age) else None
            return {
                "Stint": int(s["stint_number"]),
                "Compound": str(compound) if compound else None,
                # an absurd age becomes inf, which the Lap schema rejects with the reason
                "TyreLife": (float(life) if abs(life) < 1e15 else math.inf) if life is not None else None,
                "FreshTyre": age == 0 if _is_int(age) else None,
            }
    return {}


def pit_times(pits: Iterable[Record], ctx: SessionContext, driver: str, lap: int) -> dict[str, float]:
    """PitInTime on the pit's lap (the in-lap), PitOutTime on the next lap (the out-lap)."""
    out: dict[str, float] = {}
    for p in pits:
        if str(p.get("driver_number")) != driver or malformed("pit", p) is not None:
            continue
        entry = (parse_date(p["date"]) - ctx.t0).total_seconds()
        lane = _num(p.get("lane_duration"))
        lane = lane if lane is not None else _num(p.get("pit_duration"))
        if p["lap_number"] == lap:
            out["PitInTime"] = entry
        elif p["lap_number"] == lap - 1 and lane is not None:
            out["PitOutTime"] = entry + lane
    return out


def normalise_lap(
    record: Record,
    ctx: SessionContext,
    seq: int,
    stints: Iterable[Record] = (),
    pits: Iterable[Record] = (),
    next_lap_start: datetime | None = None,
) -> RawRecord | Rejected:
    """A completed lap; event time = ``date_start + lap_duration`` (or the next lap's start)."""
    if (reason := malformed("laps", record) or _not_numbers("laps", record, _LAP_NUMBERS)) is not None:
        return Rejected(reason)
    driver = str(record["driver_number"])
    info = ctx.drivers.get(driver)
    if info is None:
        return Rejected(f"openf1 laps: driver {driver} is not in /drivers")
    if record.get("date_start") is None:
        return Rejected("openf1 laps: missing date_start")
    try:
        start = parse_date(record["date_start"])
    except ValueError:
        return Rejected(f"openf1 laps: date_start is not an ISO date (got {record['date_start']!r})")
    duration = _num(record.get("lap_duration"))
    if duration is not None:
        try:
            end = start + timedelta(seconds=duration)
        except OverflowError:
            return Rejected(f"openf1 laps: lap_duration out of range (got {duration!r})")
    elif next_lap_start is not None:
        end = next_lap_start
    else:
        return Rejected("openf1 laps: no lap_duration and no next lap (lap end unknown)")
    lap = int(record["lap_number"])
    payload: dict[str, Any] = {
        "DriverNumber": driver,
        "Driver": info.Abbreviation,
        "Team": info.TeamName,
        "LapNumber": lap,
        "LapTime": duration,
        "Sector1Time": _num(record.get("duration_sector_1")),
        "Sector2Time": _num(record.get("duration_sector_2")),
        "Sector3Time": _num(record.get("duration_sector_3")),
        "LapStartTime": (start - ctx.t0).total_seconds(),
        "SpeedI1": _num(record.get("i1_speed")),
        "SpeedI2": _num(record.get("i2_speed")),
        "SpeedST": _num(record.get("st_speed")),
        **stint_for_lap(stints, driver, lap),
        **pit_times(pits, ctx, driver, lap),
    }
    return _finish(catalog.LAPS, ctx, seq, end, payload)


def normalise_laps(
    records: Sequence[Record],
    ctx: SessionContext,
    seq_start: int,
    stints: Sequence[Record] = (),
    pits: Sequence[Record] = (),
) -> list[RawRecord | Rejected]:
    """Several laps; a lap without ``lap_duration`` ends where the same driver's next lap starts."""
    starts: dict[tuple[str, int], datetime] = {}
    for r in records:
        if malformed("laps", r) is None and r.get("date_start") is not None:
            starts[(str(r["driver_number"]), int(r["lap_number"]))] = parse_date(r["date_start"])
    out: list[RawRecord | Rejected] = []
    for i, r in enumerate(records):
        nxt = (
            starts.get((str(r.get("driver_number")), int(r["lap_number"]) + 1))
            if _is_int(r.get("lap_number"))
            else None
        )
        out.append(normalise_lap(r, ctx, seq_start + i, stints, pits, nxt))
    return out


def driver_info(record: Record) -> schemas.DriverInfo | Rejected:
    if (reason := malformed("drivers", record)) is not None:
        return Rejected(reason)
    colour = record.get("team_colour")
    try:
        return schemas.DriverInfo(
            DriverNumber=str(record["driver_number"]),
            Abbreviation=str(record["name_acronym"]),
            FullName=record.get("full_name"),
            TeamName=record.get("team_name"),
            TeamColor=f"#{colour}" if colour and not str(colour).startswith("#") else colour,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return Rejected(f"openf1 drivers: {where}: {first['msg']} (got {str(first.get('input'))[:80]!r})")


def session_context(session: Record, drivers: Iterable[Record]) -> SessionContext | Rejected:
    """The normalisation context from a ``/sessions`` record and the session's ``/drivers``."""
    if (reason := malformed("sessions", session)) is not None:
        return Rejected(reason)
    infos = [d for d in map(driver_info, drivers) if isinstance(d, schemas.DriverInfo)]
    return SessionContext(
        int(session["session_key"]), parse_date(session["date_start"]), {d.DriverNumber: d for d in infos}
    )


def session_info(
    session: Record,
    ctx: SessionContext,
    seq: int,
    meeting: Record | None = None,
    sources: Mapping[str, int] | None = None,
    missing: Sequence[str] = (),
) -> RawRecord | Rejected:
    """The SessionInfo record (first on the topic): clock origin = the session's ``date_start``."""
    if (reason := malformed("sessions", session)) is not None:
        return Rejected(reason)
    year = session.get("year")
    event = (
        (meeting or {}).get("meeting_name") or session.get("location") or session.get("country_name") or "?"
    )
    return _finish(
        catalog.SESSION_INFO,
        ctx,
        seq,
        ctx.t0,
        {
            "Year": year if _is_int(year) else ctx.t0.year,
            "EventName": str(event),
            "SessionName": str(session.get("session_name") or session.get("session_type") or "?"),
            "Circuit": session.get("circuit_short_name"),
            "TotalLaps": None,
            "T0Date": ctx.t0,
            "T0Source": T0_SOURCE,
            "Drivers": [d.model_dump() for d in ctx.drivers.values()],
            "Sources": dict(sources or {}),
            "Missing": list(missing),
        },
    )


NORMALISERS = {
    "car_data": normalise_car_data,
    "location": normalise_location,
    "intervals": normalise_interval,
    "position": normalise_position,
    "race_control": normalise_race_control,
    "weather": normalise_weather,
}
