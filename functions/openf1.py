"""OpenF1 records -> StratX raw events (the same payloads as the FastF1 replay), pure.

No I/O: the HTTP client lives in ``quix_apps/kit/openf1_client.py``. This module holds

* :data:`ENDPOINTS`: the OpenF1 endpoints StratX polls, whether they are polled per driver, the
  field the incremental cursor follows, and the topic they feed;
* ``normalise_*``: one OpenF1 record -> :class:`~stratx.functions.ingest.RawRecord` (or a
  :class:`~stratx.functions.ingest.Rejected` reason for the dead letters);
* :func:`event_id`, :func:`query_params`, :func:`dedup` and :class:`PollState`: incremental
  polling, where OpenF1 repeats records across polls and records can arrive late.

Clock. OpenF1 has no FastF1 ``t0``. ``SessionTime`` here is seconds since the session's
``date_start`` from ``/sessions`` (``SessionInfo.T0Source = "openf1-session-start"``), so its
origin differs from a FastF1 replay of the same session (FastF1's t0 lies before the scheduled
start; ``data/telemetry/t0_estimates.csv`` gives the offset for past races). ``Date`` is exact UTC.

Seq. A poller cannot know a session-wide event-time order, so ``Seq`` is a per-session counter the
caller supplies (the order of publication); :func:`event_id` is the stable record identity used
for de-duplication.

What OpenF1 cannot give (fields left ``None``): Lap ``Position``, ``TrackStatus``,
``IsPersonalBest``, ``Deleted``, ``IsAccurate``, ``SpeedFL``; SessionInfo ``TotalLaps``;
RaceControl ``Status``. ``PitInTime`` assumes ``/pit`` ``date`` is the pit-lane entry (the docs
call it the start of the stop); ``PitOutTime`` = entry + ``lane_duration`` (falling back to
``pit_duration``), set only when that duration is known.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeGuard

from pydantic import ValidationError

from stratx.functions import catalog, schemas
from stratx.functions.catalog import TopicSpec
from stratx.functions.ingest import FEED_INVALID, RawRecord, Rejected, parse_gap

T0_SOURCE = "openf1-session-start"
Record = Mapping[str, Any]


@dataclass(frozen=True)
class Endpoint:
    name: str
    per_driver: bool  # polled once per driver_number (high-rate streams); else one call per session
    date_field: str | None  # the field the incremental cursor follows; None = fetched whole
    topic: TopicSpec | None  # the raw topic it feeds; None = enrichment / not published
    required: tuple[str, ...]  # fields a record must carry (else it is malformed)
    id_fields: tuple[str, ...] = ()  # extra identity fields for event_id (beyond driver + date)
    feeds: str = ""


_E = Endpoint
ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        _E("sessions", False, None, catalog.SESSION_INFO, ("session_key", "date_start"), (), "SessionInfo clock and names"),
        _E("meetings", False, None, catalog.SESSION_INFO, ("meeting_key",), (), "SessionInfo.EventName"),
        _E("drivers", False, None, catalog.SESSION_INFO, ("driver_number", "name_acronym"), (), "SessionInfo.Drivers, Lap.Driver/Team"),
        _E("laps", True, "date_start", catalog.LAPS, ("driver_number", "lap_number"), ("lap_number",), "Lap"),
        _E("stints", False, None, catalog.LAPS, ("driver_number", "stint_number", "lap_start"), ("stint_number",), "Lap Stint/Compound/TyreLife/FreshTyre"),
        _E("pit", False, "date", catalog.LAPS, ("driver_number", "date", "lap_number"), ("lap_number",), "Lap PitInTime/PitOutTime"),
        _E("intervals", False, "date", catalog.TIMING, ("driver_number", "date"), (), "Timing gaps"),
        _E("position", False, "date", catalog.TIMING, ("driver_number", "date", "position"), (), "Timing Position"),
        _E("car_data", True, "date", catalog.CAR_TELEMETRY, ("driver_number", "date", "speed", "rpm", "n_gear", "throttle", "brake", "drs"), (), "CarTelemetry"),
        _E("location", True, "date", catalog.CAR_POSITION, ("driver_number", "date", "x", "y", "z"), (), "CarPosition"),
        _E("race_control", False, "date", catalog.RACE_CONTROL, ("date", "category", "message"), ("message",), "RaceControl"),
        _E("weather", False, "date", catalog.WEATHER, ("date",), (), "Weather"),
        _E("overtakes", False, "date", None, ("date", "overtaking_driver_number", "overtaken_driver_number"), ("overtaking_driver_number", "overtaken_driver_number"), "not published yet (no raw topic)"),
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


# --- identity, cursors, de-duplication -----------------------------------------------------------


def record_date(endpoint: str, record: Record) -> datetime | None:
    name = ENDPOINTS[endpoint].date_field
    value = record.get(name) if name else None
    return parse_date(value) if value is not None else None


def event_id(endpoint: str, record: Record) -> str:
    """Stable identity of an OpenF1 record: sha1 of endpoint, session_key, driver_number, the
    cursor date (normalised to UTC ISO, so '2024-06-09 18:00:00+00:00' and '...T18:00:00Z' agree)
    and the endpoint's ``id_fields`` (lap_number for laps and pit, message for race_control, the
    two car numbers for overtakes, stint_number for stints); 16 hex digits."""
    spec = ENDPOINTS[endpoint]
    date = record_date(endpoint, record)
    parts = [endpoint, str(record.get("session_key")), str(record.get("driver_number"))]
    parts.append(date.isoformat() if date is not None else "")
    parts.extend(str(record.get(name)) for name in spec.id_fields)
    return hashlib.sha1("|".join(parts).encode(), usedforsecurity=False).hexdigest()[:16]


def query_params(
    endpoint: str, session_key: int, driver: str | None = None, cursor: datetime | None = None
) -> dict[str, str]:
    """Query parameters for one poll: ``session_key``, ``driver_number`` and ``<date field>>=``.

    The filter is inclusive (``>=`` the cursor): records sharing the cursor's timestamp that arrive
    after a poll are not lost; the repeats this causes are dropped by :func:`dedup`.
    """
    spec = ENDPOINTS[endpoint]
    params = {"session_key": str(session_key)}
    if driver is not None:
        params["driver_number"] = str(driver)
    if cursor is not None and spec.date_field is not None:
        params[f"{spec.date_field}>="] = cursor.astimezone(UTC).isoformat()
    return params


def dedup(endpoint: str, records: Iterable[Record], seen_ids: set[str]) -> tuple[list[Record], set[str]]:
    """The records whose :func:`event_id` is not in ``seen_ids`` (nor repeated within the batch),
    and their ids. ``seen_ids`` is not modified."""
    fresh: list[Record] = []
    ids: set[str] = set()
    for record in records:
        rid = event_id(endpoint, record)
        if rid in seen_ids or rid in ids:
            continue
        ids.add(rid)
        fresh.append(record)
    return fresh, ids


class Accepted(NamedTuple):
    new: list[Record]  # to normalise and publish, in cursor-date order
    late: list[tuple[Record, str]]  # older than their cursor: dead letters, with the reason
    malformed: list[tuple[Record, str]]  # dead letters, with the reason
    pending: list[Record]  # laps still running (no lap_duration yet): not emitted, polled again


@dataclass
class PollState:
    """Cursors (per endpoint and driver: last emitted date) and the ids seen at or after them.

    Usage per poll: ``params = state.params(ep, key, driver)`` -> fetch -> ``state.accept(ep, rows)``.
    Session-wide endpoints keep a cursor per driver found in the records (``None`` for records
    without a driver) and query from the oldest of them, so a late record of one car is not
    filtered out by another car's newer one.
    """

    cursors: dict[tuple[str, str | None], datetime] = field(default_factory=dict)
    seen: dict[str, dict[str, datetime]] = field(default_factory=dict)  # endpoint -> id -> date

    def cursor(self, endpoint: str, driver: str | None = None) -> datetime | None:
        if driver is not None or ENDPOINTS[endpoint].per_driver:
            return self.cursors.get((endpoint, driver))
        dates = [d for (ep, _), d in self.cursors.items() if ep == endpoint]
        return min(dates) if dates else None

    def params(self, endpoint: str, session_key: int, driver: str | None = None) -> dict[str, str]:
        return query_params(endpoint, session_key, driver, self.cursor(endpoint, driver))

    def accept(self, endpoint: str, records: Iterable[Any]) -> Accepted:
        spec = ENDPOINTS[endpoint]
        good: list[Record] = []
        bad: list[tuple[Record, str]] = []
        for record in records:
            reason = malformed(endpoint, record)
            if reason is None and spec.date_field is not None and record.get(spec.date_field) is None:
                reason = f"openf1 {endpoint}: missing {spec.date_field}"
            (good.append(record) if reason is None else bad.append((record, reason)))
        if spec.date_field is None:  # reference data (stints grow as laps run): the whole set, always
            return Accepted(good, [], bad, [])
        seen = self.seen.setdefault(endpoint, {})
        fresh, _ = dedup(endpoint, good, set(seen))
        pending: list[Record] = []
        if endpoint == "laps":
            fresh, pending = split_pending_laps(fresh)
        new: list[Record] = []
        late: list[tuple[Record, str]] = []
        for record in sorted(fresh, key=lambda r: record_date(endpoint, r) or datetime.min):
            date = record_date(endpoint, record)
            assert date is not None
            driver = _driver(record)
            key = (endpoint, driver)
            current = self.cursors.get(key)
            if current is not None and date < current:
                late.append(
                    (
                        record,
                        f"openf1 {endpoint}: out of order ({date.isoformat()} < cursor {current.isoformat()})",
                    )
                )
                continue
            self.cursors[key] = date
            seen[event_id(endpoint, record)] = date
            new.append(record)
        self._prune(endpoint)
        return Accepted(new, late, bad, pending)

    def _prune(self, endpoint: str) -> None:
        """Forget ids older than the oldest cursor of the endpoint (no query returns them again)."""
        oldest = min((d for (ep, _), d in self.cursors.items() if ep == endpoint), default=None)
        if oldest is not None:
            seen = self.seen[endpoint]
            for rid in [rid for rid, d in seen.items() if d < oldest]:
                del seen[rid]


def _driver(record: Record) -> str | None:
    number = record.get("driver_number")
    return str(number) if number is not None else None


def split_pending_laps(records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    """(complete, pending): OpenF1 creates a lap at its start and fills it in as it runs. A lap is
    complete when it has a ``lap_duration`` or the same driver has a later lap in the batch."""
    last: dict[str | None, int] = {}
    for r in records:
        d = _driver(r)
        last[d] = max(last.get(d, 0), int(r["lap_number"]))
    done: list[Record] = []
    pending: list[Record] = []
    for r in records:
        complete = r.get("lap_duration") is not None or int(r["lap_number"]) < last[_driver(r)]
        (done if complete else pending).append(r)
    return done, pending


# --- normalisation ---------------------------------------------------------------------------------


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
