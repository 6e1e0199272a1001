"""Track maps: a circuit's closed polyline in the track frame and the projection of a car onto it.

:class:`TrackMap` (static data in ``data/circuits/<circuit>.json``) holds the points (x, y in
1/10 m, FastF1 ``pos_data`` / OpenF1 location frame) and the cumulative distance ``s`` along them
in metres, ``s = 0`` at the timing line. :func:`build_track_map` makes one from the winner's first
clean lap of a race, :func:`write_track_map` / :func:`load_track_map` store and read it, and
:func:`project` maps a position to a lap distance. Pure apart from the two file helpers;
re-exported by :mod:`stratx.functions.features.track_gaps`, which documents the definitions.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratx.functions.features.laps import clean_reason
from stratx.functions.racedata import RaceData

UNITS_PER_M = 10.0  # track frame: 1/10 m
FALLBACK_SEARCH_M = 30.0  # farther from the hinted segments: search the whole map
HINT_BACK, HINT_AHEAD = 4, 16  # segments searched around the previous position


@dataclass(frozen=True)
class TrackMap:
    """Closed polyline: points (x, y) in 1/10 m, ``s`` cumulative distance (m) of each point."""

    circuit: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    s: tuple[float, ...]
    length: float  # m, including the closing segment back to the first point
    source: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "circuit": self.circuit,
            "length_m": round(self.length, 3),
            "units": {"x": "1/10 m (track frame)", "y": "1/10 m (track frame)", "s": "m from the line"},
            "source": dict(self.source),
            "x": list(self.x),
            "y": list(self.y),
            "s": list(self.s),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrackMap:
        return cls(
            data["circuit"],
            tuple(data["x"]),
            tuple(data["y"]),
            tuple(data["s"]),
            float(data["length_m"]),
            data.get("source", {}),
        )


def circuit_slug(circuit: str) -> str:
    """File stem of a circuit's map: 'Las Vegas' -> 'las_vegas'."""
    return "_".join(re.sub(r"[^0-9a-z]+", " ", circuit.lower()).split())


def map_from_points(
    circuit: str, points: Sequence[tuple[float, float]], source: Mapping[str, Any]
) -> TrackMap:
    """A closed map through ``points`` (first point on the line); points closer than 1 m are merged."""
    xs: list[float] = []
    ys: list[float] = []
    for x, y in points:
        if xs and math.hypot(x - xs[-1], y - ys[-1]) < UNITS_PER_M:
            continue
        xs.append(round(float(x), 1))
        ys.append(round(float(y), 1))
    if len(xs) < 10:
        raise ValueError(f"{circuit}: a map needs at least 10 distinct points, got {len(xs)}")
    s = [0.0]
    for i in range(1, len(xs)):
        s.append(s[-1] + math.hypot(xs[i] - xs[i - 1], ys[i] - ys[i - 1]) / UNITS_PER_M)
    length = s[-1] + math.hypot(xs[0] - xs[-1], ys[0] - ys[-1]) / UNITS_PER_M
    return TrackMap(circuit, tuple(xs), tuple(ys), tuple(round(v, 3) for v in s), round(length, 3), source)


def _at(times: Sequence[float], xs: Sequence[float], ys: Sequence[float], t: float) -> tuple[float, float]:
    k = bisect.bisect_left(times, t)
    if k == 0 or k == len(times):
        raise ValueError(f"no positions around SessionTime {t:.3f} s")
    w = (t - times[k - 1]) / (times[k] - times[k - 1])
    return xs[k - 1] + w * (xs[k] - xs[k - 1]), ys[k - 1] + w * (ys[k] - ys[k - 1])


def lap_points(
    times: Sequence[float], xs: Sequence[float], ys: Sequence[float], start: float, end: float
) -> list[tuple[float, float]]:
    """One lap's path from a car's positions (``times`` ascending, no-fix samples removed): the
    position at ``start`` (the line crossing, interpolated), then every position strictly inside
    (``start``, ``end``); the input of :func:`map_from_points`."""
    inside = range(bisect.bisect_right(times, start), bisect.bisect_left(times, end))
    return [_at(times, xs, ys, start), *((float(xs[i]), float(ys[i])) for i in inside)]


def reference_lap(race: RaceData) -> dict[str, Any]:
    """The lap a map is built from: the winner's first clean lap (a laps row as a dict)."""
    laps = race.table("laps")
    last = laps[laps.LapNumber == laps.LapNumber.max()]
    winner = last.sort_values("Time").DriverNumber.iloc[0]
    own = laps[laps.DriverNumber == winner].sort_values("LapNumber")
    for row in own.to_dict("records"):
        lap = {str(k): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        if clean_reason(lap) is None and lap["LapStartTime"] is not None:
            return lap
    raise ValueError(f"{race.meta.slug}: the winner ({winner}) has no clean lap")


def build_track_map(race: RaceData) -> TrackMap:
    """The circuit's map from the positions of the winner's first clean lap, cut at the line."""
    lap = reference_lap(race)
    pos = race.table("pos_data")
    pos = pos[(pos.DriverNumber == lap["DriverNumber"]) & ((pos.X != 0) | (pos.Y != 0))]
    pos = pos.sort_values("SessionTime", kind="mergesort").drop_duplicates("SessionTime")
    start, end = float(lap["LapStartTime"]), float(lap["Time"])
    times = pos.SessionTime.astype(float).tolist()
    points = lap_points(times, pos.X.astype(float).tolist(), pos.Y.astype(float).tolist(), start, end)
    source = {
        "year": race.meta.year,
        "event": race.meta.event_name,
        "session_key": race.meta.session_key,
        "DriverNumber": lap["DriverNumber"],
        "LapNumber": int(lap["LapNumber"]),
        "LapStartTime": start,
        "Time": end,
        "rule": "winner's first clean lap, positions between its line crossings",
    }
    return map_from_points(race.meta.circuit or race.meta.slug, points, source)


def write_track_map(track: TrackMap, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{circuit_slug(track.circuit)}.json"
    path.write_text(json.dumps(track.to_json(), separators=(",", ":")) + "\n")
    return path


def load_track_map(directory: Path, circuit: str | None) -> TrackMap | None:
    """The circuit's map from ``directory``, or None when the circuit has none."""
    if circuit is None:
        return None
    path = directory / f"{circuit_slug(circuit)}.json"
    return TrackMap.from_json(json.loads(path.read_text())) if path.exists() else None


def _segment(track: TrackMap, i: int, px: float, py: float) -> tuple[float, float]:
    """(squared distance in units^2, lap distance m) of the point's projection on segment i."""
    n = len(track.x)
    j = (i + 1) % n
    ax, ay = track.x[i], track.y[i]
    dx, dy = track.x[j] - ax, track.y[j] - ay
    seg2 = dx * dx + dy * dy
    u = 0.0 if seg2 == 0 else min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy) / seg2))
    qx, qy = ax + u * dx - px, ay + u * dy - py
    s_end = track.s[j] if j else track.length
    return qx * qx + qy * qy, track.s[i] + u * (s_end - track.s[i])


def _best(track: TrackMap, indices: Iterable[int], px: float, py: float) -> tuple[float, float]:
    best = (math.inf, 0.0)
    for i in indices:
        cand = _segment(track, i, px, py)
        if cand[0] < best[0]:
            best = cand
    return best


def project(track: TrackMap, x: float, y: float, hint: float | None = None) -> tuple[float, float]:
    """(lap distance s in m, distance from the map in m) of the track-frame point (x, y).

    With ``hint`` (the previous lap distance) only the segments just around it are searched; the
    whole map is searched without a hint or when the hinted best is farther than
    ``FALLBACK_SEARCH_M`` from the map.
    """
    n = len(track.x)
    if hint is not None:
        k = bisect.bisect_right(track.s, hint % track.length) - 1
        d2, s = _best(track, ((k + o) % n for o in range(-HINT_BACK, HINT_AHEAD + 1)), x, y)
        if math.sqrt(d2) / UNITS_PER_M <= FALLBACK_SEARCH_M:
            return s % track.length, math.sqrt(d2) / UNITS_PER_M
    d2, s = _best(track, range(n), x, y)
    return s % track.length, math.sqrt(d2) / UNITS_PER_M


def load_track_maps(directory: Path) -> dict[str, TrackMap]:
    """Every map in ``directory``, by circuit slug (the file stem)."""
    return {
        path.stem: TrackMap.from_json(json.loads(path.read_text()))
        for path in sorted(directory.glob("*.json"))
    }
