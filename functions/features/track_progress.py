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
from datetime import datetime
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


def session_track(race: RaceData, track: TrackMap) -> SessionTrack:
    laps = race.table("laps")
    starts = laps.loc[laps.LapNumber == 1, "LapStartTime"].dropna()
    if starts.empty:
        raise ValueError(f"{race.meta.slug}: no lap-1 LapStartTime, so no race start")
    drivers = tuple(sorted(set(race.table("pos_data").DriverNumber.astype(str))))
    return SessionTrack(race.meta.session_key, track, float(starts.min()), drivers)


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
