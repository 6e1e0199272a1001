"""Race state for continuous gaps: each session's track (clock, drivers, race start, map), causally.

:func:`track_step` folds one raw event (a record of ``stratx.raw.session_info``, ``laps`` or
``car_position``, JSON mode) into the session's state and returns the RaceTrack record
(``stratx.race.track``, ``functions/schemas.py``) once the stream has shown all of:

* **clock, drivers, circuit**: the session's SessionInfo (the replay's and the live poller's first
  record);
* **race start**: ``LapStartTime`` of the first lap-1 record. F1 timing starts every car's lap 1 at
  lights out, and a lap reaches ``stratx.raw.laps`` when it is completed, so on a live session the
  start is known once the first car has completed lap 1 (2023 Las Vegas: 106 s after lights out);
* **map**: the circuit's bundled map (``data/circuits``, matched by ``circuit_slug`` of
  SessionInfo ``Circuit``) when there is one, else one built from the session's own positions
  (:func:`built_map`): the first lap that is clean (``laps.clean_reason``: timed, not lap 1, no
  pit time, green), lies between two laps of the same stint (neither an out-lap nor an in-lap, as
  the feed's pit records may be missing) and whose car's positions cover it with no hole longer
  than :data:`MAX_HOLE_S`, cut at its line crossings as ``build_track_map`` cuts the winner's lap.

Every rule looks only at what has arrived (no later laps, no race end). While a map is to be built
the state keeps each car's positions of the last :data:`SAMPLE_WINDOW_S`; they are dropped once the
record is out. One record per session; nothing after it.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

from stratx.functions import catalog
from stratx.functions.features.laps import clean_reason
from stratx.functions.features.track_map import TrackMap, circuit_slug, lap_points, map_from_points

SESSION_INFO, LAPS, CAR_POSITION = "session_info", "laps", "car_position"
# the raw topics the fold reads, by name
KINDS: dict[str, str] = {
    catalog.SESSION_INFO.name: SESSION_INFO,
    catalog.LAPS.name: LAPS,
    catalog.CAR_POSITION.name: CAR_POSITION,
}
SAMPLE_WINDOW_S = 600.0  # positions kept per car while a map is to be built (two slow laps)
MAX_HOLE_S = 3.0  # a longer gap between a lap's positions would cut a corner off the map
CLOSE_M = 60.0  # the lap's last position lies at most this far before its first (the closing segment)
LENGTH_M = (2_000.0, 8_000.0)  # plausible lap lengths (the calendar: 3.3 km Monaco to 7.0 km Spa)
MAP_RULE = "first clean lap between two laps of its stint: its car's positions between its line crossings"


def new_state() -> dict[str, Any]:
    """Per session: what is known so far and, while a map is to be built, the cars' positions."""
    return {
        "info": None,  # SessionKey, Circuit, EventName, T0Date, Drivers of the SessionInfo
        "start": None,  # {"t": LapStartTime, "source": ...}
        "map": None,  # TrackMap
        "map_source": None,  # "bundled" or "session"
        "laps": {},  # DriverNumber -> the car's last three laps (number, stint, start, end, clean)
        "candidates": [],  # laps confirmed clean, waiting for their car's positions to cover them
        "samples": {},  # DriverNumber -> {"t": [...], "x": [...], "y": [...]}, ascending t
        "rejected": [],  # why laps could not give a map
        "known": {},  # info / start / map -> [SessionTime, Date] of the event that showed it
        "emitted": False,
    }


def track_step(
    state: dict[str, Any] | None,
    kind: str,
    record: Mapping[str, Any],
    maps: Mapping[str, TrackMap],
    emit: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold one raw event of ``kind`` into the session state; returns (state, [RaceTrack record]
    or []). ``maps``: the bundled maps by circuit slug. ``emit`` False (seeding after a restart)
    folds without sending: the record then goes out with the session's next event."""
    st = state if state is not None else new_state()
    if st["emitted"]:
        return st, []
    before = {name: st[name] is not None for name in ("info", "start", "map")}
    if kind == SESSION_INFO:
        _info(st, record, maps)
    elif kind == LAPS:
        _lap(st, record)
    elif kind == CAR_POSITION:
        _position(st, record)
    for name, had in before.items():
        if not had and st[name] is not None:
            st["known"][name] = [float(record["SessionTime"]), record.get("Date")]
    if not emit or st["info"] is None or st["start"] is None or st["map"] is None:
        return st, []
    st["emitted"] = True
    out = _race_track(st)
    st["laps"], st["candidates"], st["samples"] = {}, [], {}
    return st, [out]


def _info(st: dict[str, Any], info: Mapping[str, Any], maps: Mapping[str, TrackMap]) -> None:
    st["info"] = {
        "SessionKey": int(info["SessionKey"]),
        "Circuit": info.get("Circuit"),
        "EventName": info.get("EventName"),
        "T0Date": info.get("T0Date"),
        "Drivers": sorted({str(d["DriverNumber"]) for d in info.get("Drivers") or []}),
    }
    bundled = maps.get(circuit_slug(info["Circuit"])) if info.get("Circuit") else None
    if bundled is not None and st["map_source"] != "session":
        st["map"], st["map_source"] = bundled, "bundled"
        st["candidates"], st["samples"] = [], {}


def _lap(st: dict[str, Any], lap: Mapping[str, Any]) -> None:
    drv = str(lap["DriverNumber"])
    if lap["LapNumber"] == 1 and lap.get("LapStartTime") is not None and st["start"] is None:
        st["start"] = {
            "t": float(lap["LapStartTime"]),
            "source": f"lap 1 LapStartTime of car {drv}, on the stream at {float(lap['SessionTime']):.3f} s",
        }
    if st["map"] is not None:
        return
    own = st["laps"].setdefault(drv, [])
    own.append(
        {
            "n": int(lap["LapNumber"]),
            "stint": lap.get("Stint"),
            "start": lap.get("LapStartTime"),
            "end": float(lap["SessionTime"]),
            "clean": clean_reason(dict(lap)),
        }
    )
    del own[:-3]
    if len(own) == 3 and own[0]["n"] + 2 == own[1]["n"] + 1 == own[2]["n"]:
        before, lap_, after = own
        if (
            lap_["clean"] is None
            and lap_["start"] is not None
            and before["stint"] == lap_["stint"] == after["stint"]
        ):
            st["candidates"].append({"DriverNumber": drv, **lap_})
            _try_build(st, drv)


def _position(st: dict[str, Any], sample: Mapping[str, Any]) -> None:
    if st["map"] is not None:
        return
    x, y, t = float(sample["X"]), float(sample["Y"]), float(sample["SessionTime"])
    if x == 0 and y == 0:  # no fix
        return
    drv = str(sample["DriverNumber"])
    own = st["samples"].setdefault(drv, {"t": [], "x": [], "y": []})
    if own["t"] and t <= own["t"][-1]:  # a repeat or out of order (the progress app dead-letters it)
        return
    own["t"].append(t)
    own["x"].append(x)
    own["y"].append(y)
    old = bisect.bisect_left(own["t"], t - SAMPLE_WINDOW_S)
    if old > 0:
        for name in ("t", "x", "y"):
            del own[name][:old]
    _try_build(st, drv)


def _try_build(st: dict[str, Any], drv: str) -> None:
    """Build the map from the car's first candidate lap its positions now cover, if any."""
    own = st["samples"].get(drv)
    if own is None or not own["t"]:
        return
    info = st["info"] or {}
    circuit = info.get("Circuit") or info.get("EventName") or f"session {info.get('SessionKey')}"
    for cand in [c for c in st["candidates"] if c["DriverNumber"] == drv]:
        if own["t"][-1] < cand["end"]:
            return  # the lap's last positions have not come in yet
        st["candidates"].remove(cand)
        source = {
            "SessionKey": info.get("SessionKey"),
            "DriverNumber": drv,
            "LapNumber": cand["n"],
            "LapStartTime": cand["start"],
            "Time": cand["end"],
            "rule": MAP_RULE,
        }
        built = built_map(
            str(circuit), own["t"], own["x"], own["y"], float(cand["start"]), cand["end"], source
        )
        if isinstance(built, TrackMap):
            st["map"], st["map_source"] = built, "session"
            st["candidates"], st["samples"] = [], {}
            return
        st["rejected"].append(f"car {drv} lap {cand['n']}: {built}")


def built_map(
    circuit: str,
    times: Sequence[float],
    xs: Sequence[float],
    ys: Sequence[float],
    start: float,
    end: float,
    source: Mapping[str, Any],
) -> TrackMap | str:
    """The map of one lap from its car's positions (``times`` ascending, no-fix samples removed),
    or why that lap cannot give one."""
    first, last = bisect.bisect_right(times, start), bisect.bisect_left(times, end)
    if first == 0 or last == len(times):
        return "its positions do not reach both line crossings"
    hole = max(times[i + 1] - times[i] for i in range(first - 1, last))
    if hole > MAX_HOLE_S:
        return f"a {hole:.1f} s hole in its positions (at most {MAX_HOLE_S:g} s)"
    try:
        track = map_from_points(circuit, lap_points(times, xs, ys, start, end), source)
    except ValueError as exc:
        return str(exc)
    closing = track.length - track.s[-1]
    if closing > CLOSE_M:
        return f"its path does not close ({closing:.0f} m from its end to its start, at most {CLOSE_M:g} m)"
    if not LENGTH_M[0] <= track.length <= LENGTH_M[1]:
        return f"implausible lap length {track.length:.0f} m (expected {LENGTH_M[0]:g}-{LENGTH_M[1]:g} m)"
    return track


def _race_track(st: dict[str, Any]) -> dict[str, Any]:
    info, track = st["info"], st["map"]
    assert isinstance(track, TrackMap)
    data = track.to_json()
    del data["units"]
    # event time: the latest of the events that showed the parts (the order they were read in may
    # differ: the inputs are separate topics)
    when, date = max(st["known"].values(), key=lambda known: known[0])
    return {
        "v": 1,
        "SessionKey": info["SessionKey"],
        "SessionTime": when,
        "Date": date,
        "T0Date": info["T0Date"],
        "Circuit": info["Circuit"],
        "Drivers": info["Drivers"],
        "StartTime": st["start"]["t"],
        "StartSource": st["start"]["source"],
        "MapSource": st["map_source"],
        "Map": data,
    }
