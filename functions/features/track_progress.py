"""Per-driver progress along the track: CarPosition samples -> monotone total distance (~1 Hz).

:func:`progress_step` folds one car's position samples (state per ``<SessionKey>:<DriverNumber>``)
into progress points, at most one per ``PROGRESS_STEP_S`` of SessionTime, from the race start on;
glitches (no fix, off the map, impossible speed) are held as heartbeats and duplicates or
out-of-order samples are rejected with a reason. :class:`SessionTrack` is what the gap functions
know about a session. Pure; re-exported by :mod:`stratx.functions.features.track_gaps`, which
documents ``DistanceTotal`` and ``LapDistance``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stratx.functions.features.track_map import TrackMap, project
from stratx.functions.racedata import RaceData

PROGRESS_STEP_S = 1.0  # at most one progress point per this much SessionTime
MAX_OFF_TRACK_M = 80.0  # farther from the map: not a track position (garage, glitch)
MAX_SPEED_MS = 110.0  # ~400 km/h: faster implied motion is a glitch
JUMP_TOLERANCE_M = 30.0  # allowance on top of MAX_SPEED_MS * dt
STATE_VERSION = 1
REJECTED = "Rejected"


@dataclass(frozen=True)
class SessionTrack:
    """What the gap functions need to know about a session: its map, start and drivers."""

    session_key: int
    track: TrackMap
    start_time: float  # s, SessionTime of the race start (lap 1 LapStartTime)
    drivers: tuple[str, ...]  # expected DriverNumbers: each holds the watermark until stale
    t0: datetime | None = None  # UTC of SessionTime 0: the clock start_time is on (None: any)


def session_track(race: RaceData, track: TrackMap) -> SessionTrack:
    """A bundled race's track, in hindsight (its laps table): what a replay of it uses."""
    laps = race.table("laps")
    starts = laps.loc[laps.LapNumber == 1, "LapStartTime"].dropna()
    if starts.empty:
        raise ValueError(f"{race.meta.slug}: no lap-1 LapStartTime, so no race start")
    drivers = tuple(sorted(set(race.table("pos_data").DriverNumber.astype(str))))
    t0 = _utc(race.meta.t0_date) if race.meta.t0_date is not None else None
    return SessionTrack(race.meta.session_key, track, float(starts.min()), drivers, t0)


def from_race_track(record: Mapping[str, Any]) -> SessionTrack:
    """The SessionTrack of a ``stratx.race.track`` record (``functions/track_state.py``)."""
    t0 = record.get("T0Date")
    return SessionTrack(
        int(record["SessionKey"]),
        TrackMap.from_json(record["Map"]),
        float(record["StartTime"]),
        tuple(str(d) for d in record["Drivers"]),
        _utc(t0) if t0 is not None else None,
    )


def _utc(value: Any) -> datetime:
    if hasattr(value, "to_pydatetime"):  # a pandas Timestamp (RaceMeta.t0_date)
        value = value.to_pydatetime()
    date = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return date.replace(tzinfo=UTC) if date.tzinfo is None else date


def on_clock(session: SessionTrack, record: Mapping[str, Any], tolerance_s: float = 1.0) -> bool:
    """Whether ``record`` (Date and SessionTime) is on the session track's clock: a bundled race's
    track must not be applied to a live session of the same key (its SessionTime counts from the
    OpenF1 session start, the replay's from FastF1's t0). True when either side has no date."""
    date = record.get("Date")
    if session.t0 is None or date is None:
        return True
    origin = _utc(date) - timedelta(seconds=float(record["SessionTime"]))
    return abs((origin - session.t0).total_seconds()) <= tolerance_s


def is_rejected(item: Mapping[str, Any]) -> bool:
    return REJECTED in item


def _reject(reason: str, value: Mapping[str, Any]) -> dict[str, Any]:
    return {REJECTED: reason, "Value": dict(value)}


def new_progress_state() -> dict[str, Any]:
    return {
        "v": STATE_VERSION,
        "last_seq": None,  # Seq / SessionTime of the last accepted sample
        "last_time": None,
        "bucket": None,  # last emitted bucket, floor(SessionTime / PROGRESS_STEP_S)
        "s": None,  # lap distance of the last good position, m
        "s_time": None,  # its SessionTime
        "raw": None,  # unwrapped distance of the last good position, m
        "d": None,  # emitted (monotone) DistanceTotal, m
    }


def _date(sample: Mapping[str, Any]) -> str | None:
    date = sample.get("Date")
    if date is None:
        return None
    return date.isoformat() if isinstance(date, datetime) else str(date)


def progress_step(
    state: dict[str, Any] | None, sample: Mapping[str, Any], session: SessionTrack
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold one CarPosition sample (a dict) into the driver's state; returns (state, items).

    Items: at most one progress point ``{SessionKey, DriverNumber, SessionTime, Date,
    DistanceTotal, LapDistance, OnTrack}``, or one rejected item ``{"Rejected": reason, "Value":
    sample}`` for a duplicate (same Seq) or out-of-order sample, which leaves the state unchanged.
    The input state is not mutated.
    """
    st = dict(state) if state is not None else new_progress_state()
    seq, t = int(sample["Seq"]), float(sample["SessionTime"])
    if st["last_seq"] is not None and seq == st["last_seq"]:
        return st, [_reject(f"duplicate: Seq {seq} was already processed", sample)]
    if st["last_seq"] is not None and (seq < st["last_seq"] or t < st["last_time"]):
        return st, [
            _reject(
                f"out of order: Seq {seq} at {t:.3f} s after Seq {st['last_seq']} at {st['last_time']:.3f} s",
                sample,
            )
        ]
    st["last_seq"], st["last_time"] = seq, t
    bucket = math.floor(t / PROGRESS_STEP_S)
    if t < session.start_time or (st["bucket"] is not None and bucket <= st["bucket"]):
        return st, []
    track = session.track
    x, y = float(sample["X"]), float(sample["Y"])
    good = False
    if x != 0 or y != 0:
        s, off = project(track, x, y, st["s"])
        if off <= MAX_OFF_TRACK_M:
            if st["raw"] is None:
                good = True
                st["raw"] = s - track.length if s > track.length / 2 else s
            else:
                step = s - st["s"]
                if step < -track.length / 2:
                    step += track.length
                elif step > track.length / 2:
                    step -= track.length
                if step <= MAX_SPEED_MS * (t - st["s_time"]) + JUMP_TOLERANCE_M:
                    good = True
                    st["raw"] += step
            if good:
                st["s"], st["s_time"] = s, t
                st["d"] = st["raw"] if st["d"] is None else max(st["d"], st["raw"])
    if st["d"] is None:  # no good position since the start yet: nothing to report
        return st, []
    st["bucket"] = bucket
    point = {
        "v": 1,
        "SessionKey": int(sample["SessionKey"]),
        "DriverNumber": str(sample["DriverNumber"]),
        "SessionTime": t,
        "Date": _date(sample),
        "DistanceTotal": st["d"],
        "LapDistance": st["s"] if good else None,
        "OnTrack": good,
    }
    return st, [point]
