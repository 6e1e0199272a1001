"""Turn a :class:`RaceData` into raw events, in event-time order.

Pure functions: no broker, no I/O. ``iter_records`` yields one :class:`RawRecord` per source row
(plus one SessionInfo record first), so event counts per type equal source rows. Records are
plain dicts; :func:`validate` turns a record into its typed schema or a dead-letter reason.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from pydantic import BaseModel, ValidationError

from stratx.functions import catalog, dead_letters, schemas
from stratx.functions.catalog import TopicSpec

if TYPE_CHECKING:  # numpy / pandas only for whole races: the record-level path (validate, encode,
    # the serverless handlers) imports neither, which saves ~0.85 s of every cold start
    import pandas as pd

    from stratx.functions.racedata import RaceData

# invalid-value sentinel of the live car-data feed (Throttle, Brake)
FEED_INVALID = 104

# table -> (topic, column holding the event time); order breaks ties between equal times
TABLE_TOPICS: dict[str, tuple[TopicSpec, str]] = {
    "track_status": (catalog.TRACK_STATUS, "Time"),
    "race_control": (catalog.RACE_CONTROL, "Time"),
    "weather": (catalog.WEATHER, "Time"),
    "laps": (catalog.LAPS, "Time"),
    "timing": (catalog.TIMING, "Time"),
    "car_data": (catalog.CAR_TELEMETRY, "SessionTime"),
    "pos_data": (catalog.CAR_POSITION, "SessionTime"),
}


class RawRecord(NamedTuple):
    topic: TopicSpec
    key: str
    payload: dict[str, Any]


class Rejected(NamedTuple):
    reason: str


def parse_gap(raw: object) -> float | None:
    """Timing-tower gap text to seconds: '+1.234' -> 1.234; 'LAP 12', '1L', '' -> None."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    text = str(raw).strip().lstrip("+")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _cleaner() -> Callable[[Any], Any]:
    """A function of one table value: NaN/NaT -> None; numpy scalars -> Python scalars."""
    import numpy as np
    import pandas as pd

    nat = pd.NaT

    def clean(value: Any) -> Any:
        if value is None or value is nat:
            return None
        if isinstance(value, float | np.floating):
            return None if math.isnan(value) else float(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.bool_):
            return bool(value)
        return value

    return clean


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = _cleaner()
    return [{str(k): clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _car_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Map the feed's sentinels: Throttle/Brake 104 -> None, Brake 0/100 -> False/True."""
    import numpy as np
    import pandas as pd

    thr = frame.Throttle.to_numpy(dtype=np.int64)
    brk = frame.Brake.to_numpy(dtype=np.int64)
    return pd.DataFrame(
        {
            "SessionTime": frame.SessionTime.to_numpy(dtype=float),
            "DriverNumber": frame.DriverNumber.astype(str).to_numpy(),
            "Speed": frame.Speed.to_numpy(dtype=np.int64),
            "RPM": frame.RPM.to_numpy(dtype=np.int64),
            "nGear": frame.nGear.to_numpy(dtype=np.int64),
            "Throttle": pd.Series(thr, dtype=object).where(thr != FEED_INVALID, None).to_numpy(),
            "Brake": pd.Series(brk > 0, dtype=object).where(brk != FEED_INVALID, None).to_numpy(),
            "DRS": frame.DRS.to_numpy(dtype=np.int64),
        }
    )


def _pos_frame(frame: pd.DataFrame) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            "SessionTime": frame.SessionTime.to_numpy(dtype=float),
            "DriverNumber": frame.DriverNumber.astype(str).to_numpy(),
            "X": frame.X.to_numpy(dtype=np.int64),
            "Y": frame.Y.to_numpy(dtype=np.int64),
            "Z": frame.Z.to_numpy(dtype=np.int64),
        }
    )


def _prepared(race: RaceData, name: str) -> pd.DataFrame:
    """The table as payload columns, sorted by event time (stable, so source order breaks ties)."""
    frame = race.table(name)
    if name == "car_data":
        frame = _car_frame(frame)
    elif name == "pos_data":
        frame = _pos_frame(frame)
    _, time_col = TABLE_TOPICS[name]
    return frame.sort_values(time_col, kind="mergesort", na_position="last")


def _rows(frame: pd.DataFrame, name: str, chunk: int = 20_000) -> Iterator[dict[str, Any]]:
    simple = name in ("car_data", "pos_data")
    clean = _cleaner()
    for start in range(0, len(frame), chunk):
        for raw in frame.iloc[start : start + chunk].to_dict("records"):
            row = (
                {str(k): v for k, v in raw.items()} if simple else {str(k): clean(v) for k, v in raw.items()}
            )
            if not simple and name == "timing":
                row["GapToLeader"] = parse_gap(row.get("GapToLeaderRaw"))
                row["IntervalToPositionAhead"] = parse_gap(row.get("IntervalRaw"))
            yield row


def _tagged(race: RaceData, rank: int, name: str) -> Iterator[tuple[float, int, str, dict[str, Any]]]:
    _, time_col = TABLE_TOPICS[name]
    for row in _rows(_prepared(race, name), name):
        value = row.pop(time_col) if time_col != "SessionTime" else row["SessionTime"]
        # a row without an event time sorts last; validation then sends it to the dead letters
        t = float(value) if value is not None and not math.isnan(value) else math.inf
        yield t, rank, name, row


def session_info_payload(race: RaceData, first_time: float) -> dict[str, Any]:
    meta = race.meta
    drivers = _records(race.table("drivers"))
    return {
        "SessionTime": first_time,
        "Year": meta.year,
        "EventName": meta.event_name,
        "SessionName": meta.session_name,
        "Circuit": meta.circuit,
        "TotalLaps": meta.total_laps,
        "T0Date": meta.t0_date.to_pydatetime() if meta.t0_date is not None else None,
        "T0Source": meta.t0_source,
        "Drivers": [{k: v for k, v in d.items() if v is not None} for d in drivers],
        "Sources": race.row_counts(),
        "Missing": list(race.missing),
    }


def iter_records(race: RaceData) -> Iterator[RawRecord]:
    """Every event of the session in event-time order, SessionInfo first, ``Seq`` from 0."""
    meta = race.meta
    t0 = meta.t0_date.to_pydatetime() if meta.t0_date is not None else None
    streams = [_tagged(race, rank, name) for rank, name in enumerate(TABLE_TOPICS)]
    merged = heapq.merge(*streams, key=lambda item: (item[0], item[1]))
    head = next(merged, None)
    first_time = head[0] if head is not None and math.isfinite(head[0]) else 0.0
    info = session_info_payload(race, first_time)
    yield _finish(catalog.SESSION_INFO, meta.session_key, t0, 0, info, first_time)
    rest = itertools.chain([head], merged) if head is not None else merged
    for seq, (t, _rank, name, row) in enumerate(rest, start=1):
        yield _finish(TABLE_TOPICS[name][0], meta.session_key, t0, seq, row, t)


def table_records(race: RaceData, name: str) -> Iterator[RawRecord]:
    """One table's records in event-time order, as :func:`iter_records` builds them.

    For offline feature builds: the payloads equal the streamed ones except ``Seq``, which here
    counts within the table (the global order needs every table merged).
    """
    meta = race.meta
    t0 = meta.t0_date.to_pydatetime() if meta.t0_date is not None else None
    spec = TABLE_TOPICS[name][0]
    for seq, (t, _rank, _name, row) in enumerate(_tagged(race, 0, name)):
        yield _finish(spec, meta.session_key, t0, seq, row, t)


def _finish(
    spec: TopicSpec, session_key: int, t0: datetime | None, seq: int, row: dict[str, Any], t: float
) -> RawRecord:
    row["v"] = schemas.SCHEMA_VERSION
    row["SessionKey"] = session_key
    row["Seq"] = seq
    row["SessionTime"] = t if math.isfinite(t) else None
    row["Date"] = t0 + timedelta(seconds=t) if t0 is not None and math.isfinite(t) else None
    driver = row.get("DriverNumber")
    key = (
        catalog.message_key(spec, session_key, str(driver) if driver is not None else None)
        if (driver is not None or spec.key is not catalog.KeyRule.SESSION_DRIVER)
        else f"{session_key}:?"
    )
    return RawRecord(spec, key, row)


def validate(record: RawRecord) -> BaseModel | Rejected:
    """The record as its topic's schema, or the reason it is rejected (for the dead letters)."""
    try:
        return record.topic.schema.model_validate(record.payload)
    except ValidationError as exc:
        return Rejected(dead_letters.schema_reason(exc))


_INT32 = 2**31
_SEQ_MAX = 2**63 - 1
_XYZ = 100_000
_T_MAX = schemas.SESSION_TIME_MAX_S


def _header_ok(p: dict[str, Any]) -> bool:
    """The Event/DriverEvent checks for exactly typed payloads (anything else: False, pydantic decides).
    ``type(x) is int`` also keeps bools out; comparisons with NaN are False."""
    v, key, seq, t, date, number = (
        p["v"],
        p["SessionKey"],
        p["Seq"],
        p["SessionTime"],
        p["Date"],
        p["DriverNumber"],
    )
    return (
        type(v) is int
        and v == 1
        and type(key) is int
        and -_INT32 <= key < _INT32
        and type(seq) is int
        and 0 <= seq <= _SEQ_MAX
        and type(t) is float
        and -_T_MAX <= t <= _T_MAX
        and (date is None or (type(date) is datetime and date.tzinfo is UTC and 1950 <= date.year <= 2100))
        and type(number) is str
        and 0 < len(number) < 3
        and number.isascii()
        and number.isdigit()
    )


def _car_ok(p: dict[str, Any]) -> bool:
    """The CarTelemetry schema's checks, for exactly typed payloads such as ``_car_frame`` builds
    (exactly its 12 keys: a missing one raises KeyError -> False; an extra one changes the length)."""
    try:
        speed, rpm, gear, thr, brake, drs = (
            p["Speed"],
            p["RPM"],
            p["nGear"],
            p["Throttle"],
            p["Brake"],
            p["DRS"],
        )
        return (
            len(p) == 12
            and type(speed) is int
            and 0 <= speed <= 400
            and type(rpm) is int
            and 0 <= rpm <= 20000
            and type(gear) is int
            and 0 <= gear <= 8
            and (thr is None or (type(thr) is int and 0 <= thr <= 100))
            and (brake is None or type(brake) is bool)
            and type(drs) is int
            and 0 <= drs <= 15
            and _header_ok(p)
        )
    except KeyError:
        return False


def _pos_ok(p: dict[str, Any]) -> bool:
    """The CarPosition schema's checks, for exactly typed payloads (exactly its 9 keys)."""
    try:
        x, y, z = p["X"], p["Y"], p["Z"]
        return (
            len(p) == 9
            and type(x) is int
            and -_XYZ <= x <= _XYZ
            and type(y) is int
            and -_XYZ <= y <= _XYZ
            and type(z) is int
            and -_XYZ <= z <= _XYZ
            and _header_ok(p)
        )
    except KeyError:
        return False


# hot topics (~98 % of events): schema checks in plain Python, then orjson; the contract test
# (tests/functions/test_encode.py) proves the bytes parse to the same model pydantic would build
_FAST_CHECKS = {catalog.CAR_TELEMETRY.name: _car_ok, catalog.CAR_POSITION.name: _pos_ok}


def encode(record: RawRecord) -> bytes | Rejected:
    """The record as JSON bytes of its topic's schema, or the reason it is rejected."""
    check = _FAST_CHECKS.get(record.topic.name)
    if check is not None and isinstance(record.payload, dict) and check(record.payload):
        return orjson.dumps(record.payload)
    checked = validate(record)
    if isinstance(checked, Rejected):
        return checked
    return checked.model_dump_json().encode()
