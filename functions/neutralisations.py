"""Safety cars and virtual safety cars as the stream sees them deployed, with every running car's tyres.

:func:`neutral_step` folds one raw event (``stratx.raw.laps``, ``race_control`` or
``track_status``, JSON mode) into the race state of a session (the dict of
:mod:`stratx.functions.race_state`, under ``"neutral"``) and returns the Neutralisation records
(``functions/schemas.py``) it reveals: one when a safety car or a VSC is deployed, listing each
running car's last completed lap, tyre life, compound and stint as the laps showed them until that
moment. Nothing later is used: the alerts app turns the record into "a cheap stop now" pit-window
alerts (:func:`stratx.functions.alerts.neutralisation_alerts`) while the cars are still on the lap.

Deployment: track status '4' (safety car) or '6' (VSC), or a race-control ``SafetyCar`` message with
``Status`` DEPLOYED (VSC when the message says VIRTUAL; OpenF1 has no track-status feed). Each
deployment goes out once: the periods seen so far (start, end at track status '1' or a track-wide
CLEAR / GREEN flag, kind) absorb any message of the same or a lesser kind inside them, up to
:data:`SAME_S` before their start, in whatever order the topics are read (the stream reads track
status and race control as separate topics: a period's green can arrive before the race-control
message that opened it). A VSC turned into a safety car is a new record (more cars stop under a
full safety car). A red flag is not a pit stop.

Ordering: the laps topic is one partition in event-time order, but it is read ahead of or behind
track status and race control. So a deployment waits until a lap that ended after it has been read
(at 1x: the next car to cross the line, seconds later) and, in a session with car positions, until
every car's positions have passed it too (at most :data:`POSITIONS_WAIT_S` of laps), then lists for each car its last lap that
ended before the deployment (every car's laps are kept: a few kB a race; the laps were read up to
5 laps ahead of race control in a replay at full speed).

Cars listed: every car with a completed lap that the race state had not retired by then, and whose
positions (when the session has them) do not show it standing still for :data:`STOPPED_S` at the
deployment: the car that stopped on track and caused it is not offered a pit stop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from stratx.functions import race_state

SC, VSC = "SC", "VSC"
RANK = {VSC: 1, SC: 2}
_CODES = {"4": SC, "6": VSC}
_GREEN_CODES = frozenset("1")
SAME_S = 10.0  # s: two announcements of one deployment (race control and track status differ by ~1 s)
POSITIONS_WAIT_S = 90.0  # s of laps past a deployment after which lagging positions are not awaited
STOPPED_S = 10.0  # s without progress at the deployment: a car stopped on track (pit stops: 2-3 s)


def _state(st: dict[str, Any]) -> dict[str, Any]:
    """``periods``: ``[start, end or None, kind]`` in session seconds; ``laps``: per car, its
    completed laps; ``laps_now``: the latest lap end read; ``pending``:
    deployments waiting for the laps to reach them; ``retired_at``: when each retirement was
    revealed (event time of the record that revealed it)."""
    return st.setdefault(
        "neutral", {"periods": [], "laps": {}, "laps_now": -math.inf, "pending": [], "retired_at": {}}
    )


def _green(ns: dict[str, Any], t: float) -> None:
    """Close the latest period that started before ``t`` and is still open."""
    for period in reversed(ns["periods"]):
        if period[0] <= t:
            if period[1] is None:
                period[1] = t
            return


def _known(ns: dict[str, Any], kind: str, t: float) -> bool:
    """A period of this kind or a greater one already covers ``t`` (or starts just after it); an
    upgrade (VSC -> SC) inside a period marks the period as the greater kind; otherwise a new
    period starts at ``t``."""
    for period in ns["periods"]:
        if period[0] - SAME_S <= t and (period[1] is None or t <= period[1]):
            if RANK[period[2]] >= RANK[kind]:
                return True
            period[2] = kind
            return False
    ns["periods"].append([t, None, kind])
    return False


def neutral_step(
    state: dict[str, Any] | None, kind: str, record: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold one raw event of topic ``kind`` (``race_state.LAPS`` ...) into ``state``; the
    Neutralisation records it reveals (JSON-ready dicts)."""
    st = state if state is not None else race_state.new_state()
    ns = _state(st)
    t = float(record["SessionTime"])
    retired = st.get("retired", {})
    if len(retired) > len(ns["retired_at"]):  # retired by this event (race_state folds it first)
        for driver in retired:
            ns["retired_at"].setdefault(driver, t)
    deployed, source = None, None
    if kind == race_state.LAPS:
        _lap(ns, record)
    elif kind == race_state.TRACK_STATUS:
        code = str(record.get("Status") or "")
        if code in _GREEN_CODES:
            _green(ns, t)
        deployed, source = _CODES.get(code), "track_status"
    elif kind == race_state.RACE_CONTROL:
        message = str(record.get("Message") or "").upper()
        flag = str(record.get("Flag") or "").upper()
        category, status = str(record.get("Category") or ""), str(record.get("Status") or "").upper()
        if flag in ("CLEAR", "GREEN") and str(record.get("Scope") or "Track") == "Track":
            _green(ns, t)
        elif category == "SafetyCar" and status == "DEPLOYED":
            deployed, source = (VSC if "VIRTUAL" in message else SC), "race_control"
    if deployed is not None and not race_state.finished_by(st, t) and not _known(ns, deployed, t):
        head = {"SessionKey": record["SessionKey"], "Kind": deployed, "SessionTime": t}
        ns["pending"].append({**head, "Date": record.get("Date"), "Source": source})
    return st, _ready(st, ns) if ns["pending"] else []


def _ready(st: dict[str, Any], ns: dict[str, Any]) -> list[dict[str, Any]]:
    """The pending deployments the laps have reached (every lap that ended before one is read: the
    laps topic is one partition in event-time order), each with the cars as they were then."""
    ready = [d for d in ns["pending"] if _reached(st, ns, d["SessionTime"])]
    ns["pending"] = [d for d in ns["pending"] if d not in ready]
    out = []
    for d in ready:
        t = d["SessionTime"]
        cars = [
            car
            for driver, laps in sorted(ns["laps"].items())
            if ns["retired_at"].get(driver, math.inf) > t and not _standing(st, driver, t)
            for car in [_last_before(laps, t)]
            if car is not None
        ]
        out.append({**d, "Cars": cars})
    return out


def _reached(st: dict[str, Any], ns: dict[str, Any], t: float) -> bool:
    """The laps have passed ``t``, and so have the positions of every car still racing that has any
    (each car's positions are read from their own partition), or the laps are
    :data:`POSITIONS_WAIT_S` past ``t``."""
    if ns["laps_now"] < t:
        return False
    cars = st.get("cars", {}).items()
    out = ns["retired_at"]
    seen = [c["seen"] for d, c in cars if c.get("seen") is not None and out.get(d, math.inf) > t]
    return all(x >= t for x in seen) or ns["laps_now"] >= t + POSITIONS_WAIT_S


def _last_before(laps: list[dict[str, Any]], t: float) -> dict[str, Any] | None:
    done = [lap for lap in laps if lap["end"] <= t]
    if not done:
        return None
    return {k: v for k, v in done[-1].items() if k != "end"}


def _standing(st: dict[str, Any], driver: str, t: float) -> bool:
    """The car's positions show no progress from ``STOPPED_S`` before ``t`` to ``t`` (race_state's
    per-car ``moved_at`` / ``seen``; no positions: False)."""
    car = st.get("cars", {}).get(driver) or {}
    moved, seen = car.get("moved_at"), car.get("seen")
    return moved is not None and seen is not None and moved <= t - STOPPED_S and seen >= t - 1.0


def _lap(ns: dict[str, Any], record: Mapping[str, Any]) -> None:
    """A completed lap: the car's tyres at its end (a later lap of the car only)."""
    driver = str(record["DriverNumber"])
    lap, end = int(record["LapNumber"]), float(record["SessionTime"])
    ns["laps_now"] = max(ns["laps_now"], end)
    laps = ns["laps"].setdefault(driver, [])
    if laps and lap <= laps[-1]["LapNumber"]:
        return
    if record.get("LapTime") is None and record.get("Position") is None and lap > 1:
        return  # the lap of a car that did not finish it (race_state retires it)
    life = record.get("TyreLife")
    stint = record.get("Stint")
    laps.append(
        {
            "DriverNumber": driver,
            "Driver": record.get("Driver"),
            "LapNumber": lap,
            "TyreLife": float(life) if life is not None else None,
            "Compound": record.get("Compound"),
            "Stint": int(stint) if stint is not None else None,
            "end": end,
        }
    )
