"""Continuous gaps from car positions: track maps, per-driver progress, session gaps (~1 Hz).

Three pure pieces, each used both on the stream (Quix state holds their JSON state) and offline
(:func:`offline_track_gaps` folds the same functions over a race), so the two agree by
construction:

1. **Track map** (:class:`TrackMap`, static data in ``data/circuits/<circuit>.json``): a closed
   polyline of track-frame points (x, y in 1/10 m, FastF1 ``pos_data`` / OpenF1 location frame)
   with the cumulative distance ``s`` along it in metres; ``s = 0`` is the timing line.
   :func:`build_track_map` makes it from one lap of one car (the winner's first clean lap, cut
   at the line crossings ``LapStartTime`` / ``Time`` on the session clock);
   :func:`project` maps a position to a lap distance.
2. **Progress** (:func:`progress_step`, state per ``<SessionKey>:<DriverNumber>``): one car's
   position samples in time order -> progress points, at most one per ``PROGRESS_STEP_S`` bucket
   of SessionTime (the first sample of each bucket), from the race start on.
3. **Session gaps** (:func:`gap_step`, state per session): every driver's progress points ->
   one row per driver per 1 s grid time ``T``, emitted behind an event-time watermark.

Definitions (times in s on the SessionTime axis, distances in m)
------------------------------------------------------------------
* ``LapDistance`` s: distance along the map from the line to the projection of the car on the
  nearest map segment, ``0 <= s < L`` (``L`` = map length).
* ``DistanceTotal`` D: distance from the line at the race start. At the first position at/after
  the start ``D = s`` when ``s < L/2`` (the grid lies past the line, as at Sakhir and Las
  Vegas), else ``s - L`` (a grid behind the line); so lap n is completed at ``D = n * L``;
  from then on ``D`` adds the signed along-track step between consecutive points, unwrapped at
  the line (a step beyond +-L/2 crossed it). The emitted D is the running maximum (monotone):
  short backward steps (projection noise, pit-lane geometry, a spin) hold D. A sample with no fix
  (X = Y = 0), farther than ``MAX_OFF_TRACK_M`` from the map, or implying more than
  ``MAX_SPEED_MS`` since the last good sample is not used; the point is still emitted (a
  heartbeat with D held and ``OnTrack`` False), so the driver keeps the watermark moving.
* Per grid time T: ``D_i(T)`` linear between the driver's points around T. A driver whose D grew
  less than ``STOP_MIN_M`` over the last ``STOP_WINDOW_S`` is ``Stopped`` (retired, parked, red
  flag): no position, no gaps, not a car ahead of anyone.
* ``PositionByDistance``: rank by ``D_i(T)`` among moving drivers (1 = most distance; ties by
  DriverNumber).
* ``t_j(D)``: the time car j passed distance D, linear between its points.
* ``GapAhead`` = ``T - t_ahead(D_i(T))`` for the car ranked directly ahead (``CarAhead``), and
  ``GapToLeader`` = ``T - t_leader(D_i(T))`` (0 for the leader). Lapped cars: the time since
  that car was at the same total distance, as the timing line does it (see ``laps.py``). None
  when that time is older than ``HISTORY_S`` (the state keeps that much history).

Watermark: T is emitted once every active driver's stream has a point at or after T (the
session's expected drivers are given up front). A driver with no point for more than ``stale_s``
of event time while others advance stops holding the watermark. With ``stale_s = None`` the
output is independent of how the per-driver streams interleave; with a finite ``stale_s`` it is
as long as the streams are less than ``stale_s`` apart (live operation). Points of a driver at or
before its last point (duplicates, late) are rejected with a reason.

The track map lives in :mod:`~stratx.functions.features.track_map` and the per-driver progress in
:mod:`~stratx.functions.features.track_progress`; this module holds the session gaps and the
offline run, and re-exports both (the public import path).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from stratx.functions import ingest
from stratx.functions.features.track_map import (
    FALLBACK_SEARCH_M,
    HINT_AHEAD,
    HINT_BACK,
    UNITS_PER_M,
    TrackMap,
    build_track_map,
    circuit_slug,
    load_track_map,
    map_from_points,
    project,
    reference_lap,
    write_track_map,
)
from stratx.functions.features.track_progress import (
    JUMP_TOLERANCE_M,
    MAX_OFF_TRACK_M,
    MAX_SPEED_MS,
    PROGRESS_STEP_S,
    REJECTED,
    STATE_VERSION,
    SessionTrack,
    _reject,
    is_rejected,
    new_progress_state,
    progress_step,
    session_track,
)
from stratx.functions.racedata import RaceData

__all__ = [
    "FALLBACK_SEARCH_M",
    "GAP_COLUMNS",
    "GRID_STEP_S",
    "HINT_AHEAD",
    "HINT_BACK",
    "HISTORY_S",
    "JUMP_TOLERANCE_M",
    "MAX_OFF_TRACK_M",
    "MAX_SPEED_MS",
    "PROGRESS_STEP_S",
    "REJECTED",
    "STALE_S",
    "STATE_VERSION",
    "STOP_MIN_M",
    "STOP_WINDOW_S",
    "UNITS_PER_M",
    "SessionTrack",
    "TrackMap",
    "build_track_map",
    "circuit_slug",
    "gap_step",
    "is_rejected",
    "load_track_map",
    "map_from_points",
    "merged_points",
    "new_gap_state",
    "new_progress_state",
    "offline_progress",
    "offline_track_gaps",
    "position_samples",
    "progress_step",
    "project",
    "reference_lap",
    "run_gaps",
    "session_track",
    "write_track_map",
]

GRID_STEP_S = 1.0  # output grid of the session gaps
STOP_WINDOW_S = 60.0
STOP_MIN_M = 10.0
STALE_S = 60.0
HISTORY_S = 400.0  # > 3 laps: gaps of cars up to three laps down


# ----------------------------------------------------------------------------- session gaps


def new_gap_state(session: SessionTrack) -> dict[str, Any]:
    return {
        "v": STATE_VERSION,
        "drivers": {d: {"t": [], "d": []} for d in session.drivers},
        "first": None,  # earliest point time seen (never-seen drivers count from here)
        "max": None,  # latest point time seen
        "emitted": None,  # last emitted grid time T
        "t0": None,  # ISO UTC of SessionTime 0, from the first dated point
    }


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """ys at x, linear; xs ascending; None outside [xs[0], xs[-1]]. For equal xs: the first."""
    k = bisect.bisect_left(xs, x)
    if k == len(xs) or (k == 0 and xs[0] != x):
        return None
    if xs[k] == x:
        return ys[k]
    w = (x - xs[k - 1]) / (xs[k] - xs[k - 1])
    return ys[k - 1] + w * (ys[k] - ys[k - 1])


def _watermark(st: dict[str, Any], stale_s: float | None) -> float | None:
    """Min over non-stale drivers of their last point time (None: nothing can be emitted yet)."""
    if st["max"] is None:
        return None
    lasts = []
    for h in st["drivers"].values():
        last = h["t"][-1] if h["t"] else None
        if stale_s is not None and (last if last is not None else st["first"]) < st["max"] - stale_s:
            continue
        if last is None:
            return None
        lasts.append(last)
    return min(lasts) if lasts else None


def _rows_at(st: dict[str, Any], session: SessionTrack, key: int, T: float) -> list[dict[str, Any]]:
    at: dict[str, float] = {}
    stopped: dict[str, bool] = {}
    for drv, h in st["drivers"].items():
        d = _interp(h["t"], h["d"], T)
        if d is None:
            continue
        at[drv] = d
        before = _interp(h["t"], h["d"], T - STOP_WINDOW_S)
        stopped[drv] = before is not None and d - before < STOP_MIN_M
    order = sorted((drv for drv in at if not stopped[drv]), key=lambda drv: (-at[drv], drv))
    rank = {drv: i for i, drv in enumerate(order)}
    date = None
    if st["t0"] is not None:
        date = (datetime.fromisoformat(st["t0"]) + timedelta(seconds=T)).isoformat()
    rows = []
    for drv in sorted(at):
        d = at[drv]
        row: dict[str, Any] = {
            "v": 1,
            "SessionKey": key,
            "DriverNumber": drv,
            "SessionTime": T,
            "Date": date,
            "DistanceTotal": d,
            "LapNumber": max(1, math.floor(d / session.track.length) + 1),
            "Stopped": stopped[drv],
            "PositionByDistance": None,
            "CarAhead": None,
            "GapAhead": None,
            "GapToLeader": None,
        }
        if drv in rank:
            i = rank[drv]
            row["PositionByDistance"] = i + 1
            row["GapToLeader"] = 0.0 if i == 0 else _passed_gap(st, order[0], d, T)
            if i > 0:
                row["CarAhead"] = order[i - 1]
                row["GapAhead"] = _passed_gap(st, order[i - 1], d, T)
        rows.append(row)
    return rows


def _passed_gap(st: dict[str, Any], other: str, d: float, T: float) -> float | None:
    h = st["drivers"][other]
    passed = _interp(h["d"], h["t"], d)
    if passed is None or passed < T - HISTORY_S:
        return None
    return T - passed


def _prune(st: dict[str, Any], T: float) -> None:
    """Drop history older than T - HISTORY_S, keeping the last point before that (a bracket)."""
    cutoff = T - HISTORY_S
    for h in st["drivers"].values():
        k = bisect.bisect_left(h["t"], cutoff) - 1
        if k > 0:
            del h["t"][:k]
            del h["d"][:k]


def gap_step(
    state: dict[str, Any] | None,
    point: Mapping[str, Any],
    session: SessionTrack,
    stale_s: float | None = STALE_S,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold one progress point into the session state; returns (state, rows or one rejected item).

    Rows are track-gap records for every grid time the point's arrival let the watermark pass,
    in (SessionTime, DriverNumber) order. The state is updated in place (it is large) and returned.
    """
    st = state if state is not None else new_gap_state(session)
    drv, t = str(point["DriverNumber"]), float(point["SessionTime"])
    h = st["drivers"].setdefault(drv, {"t": [], "d": []})
    if h["t"] and t <= h["t"][-1]:
        kind = "duplicate" if t == h["t"][-1] else "out of order"
        return st, [_reject(f"{kind}: progress at {t:.3f} s, last was {h['t'][-1]:.3f} s", point)]
    if st["emitted"] is not None and t <= st["emitted"]:
        return st, [_reject(f"late: progress at {t:.3f} s, gaps emitted up to {st['emitted']:g} s", point)]
    h["t"].append(t)
    h["d"].append(float(point["DistanceTotal"]))
    st["first"] = t if st["first"] is None else min(st["first"], t)
    st["max"] = t if st["max"] is None else max(st["max"], t)
    if st["t0"] is None and point.get("Date") is not None:
        t0 = datetime.fromisoformat(str(point["Date"])) - timedelta(seconds=t)
        t0 = t0.replace(microsecond=0) + timedelta(milliseconds=round(t0.microsecond / 1000))  # ms clock
        st["t0"] = t0.isoformat()
    mark = _watermark(st, stale_s)
    if mark is None:
        return st, []
    if st["emitted"] is None:
        starts = [h["t"][0] for h in st["drivers"].values() if h["t"]]
        T = math.ceil(min(starts) / GRID_STEP_S) * GRID_STEP_S
    else:
        T = st["emitted"] + GRID_STEP_S
    rows: list[dict[str, Any]] = []
    key = int(point["SessionKey"])
    while mark >= T:
        rows.extend(_rows_at(st, session, key, T))
        st["emitted"] = T
        T += GRID_STEP_S
    if rows:
        _prune(st, st["emitted"])
    return st, rows


# ----------------------------------------------------------------------------- offline


def position_samples(race: RaceData) -> Iterator[dict[str, Any]]:
    """The race's valid CarPosition payloads as ingestion builds them (Seq counts position rows)."""
    for record in ingest.table_records(race, "pos_data"):
        if not isinstance(ingest.encode(record), ingest.Rejected):  # the stream dead-letters these
            yield record.payload


def offline_progress(
    samples: Iterable[Mapping[str, Any]], session: SessionTrack
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Progress points per driver (each in time order) and the number of rejected samples."""
    per_driver: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for sample in samples:
        per_driver[str(sample["DriverNumber"])].append(sample)
    points: dict[str, list[dict[str, Any]]] = {}
    rejected = 0
    for drv in sorted(per_driver):
        state: dict[str, Any] | None = None
        points[drv] = []
        for sample in sorted(per_driver[drv], key=lambda s: (s["SessionTime"], s["Seq"])):
            state, items = progress_step(state, sample, session)
            for item in items:
                if is_rejected(item):
                    rejected += 1
                else:
                    points[drv].append(item)
    return points, rejected


def merged_points(points: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    """All drivers' points in (SessionTime, DriverNumber) order: the offline interleaving."""
    return sorted(
        (p for ps in points.values() for p in ps), key=lambda p: (p["SessionTime"], p["DriverNumber"])
    )


def run_gaps(
    points: Iterable[Mapping[str, Any]], session: SessionTrack, stale_s: float | None = STALE_S
) -> tuple[list[dict[str, Any]], list[str]]:
    """Fold :func:`gap_step` over progress points in the given order; (rows, rejection reasons)."""
    state: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    reasons: list[str] = []
    for point in points:
        state, items = gap_step(state, point, session, stale_s)
        for item in items:
            if is_rejected(item):
                reasons.append(item[REJECTED])
            else:
                rows.append(item)
    return rows, reasons


GAP_COLUMNS = (
    "SessionKey",
    "DriverNumber",
    "SessionTime",
    "Date",
    "DistanceTotal",
    "LapNumber",
    "Stopped",
    "PositionByDistance",
    "CarAhead",
    "GapAhead",
    "GapToLeader",
)


def offline_track_gaps(
    race: RaceData, track: TrackMap | None, stale_s: float | None = STALE_S
) -> pd.DataFrame:
    """Every track-gap row of a race, through the same functions as the stream.

    ``track`` None (a circuit without a map) gives an empty frame with ``attrs["reason"]``.
    """
    if track is None:
        frame = pd.DataFrame(columns=list(GAP_COLUMNS))
        frame.attrs["reason"] = f"no track map for circuit {race.meta.circuit!r}"
        return frame
    session = session_track(race, track)
    points, rejected = offline_progress(position_samples(race), session)
    rows, reasons = run_gaps(merged_points(points), session, stale_s)
    frame = pd.DataFrame.from_records(rows, columns=list(GAP_COLUMNS))
    frame.attrs["rejected"] = rejected + len(reasons)
    return frame
