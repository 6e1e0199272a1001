"""Retirements: which cars are out of the race, detected causally from the raw events as they arrive.

:func:`retire_step` folds one raw event (a record of ``stratx.raw.laps``, ``race_control``,
``track_status`` or ``car_position``, JSON mode) into the session state and returns the
Retirement records (``functions/schemas.py``) it reveals. Every rule looks only at what has
arrived so far (no race end, no later laps of the field); each car retires at most once.

Rules, first to fire wins (``Source``):

* ``race_control``: a message names the car as stopped or retired, e.g. "CAR 18 (STR) STOPPED AT
  TURN 23" (corpus 2018-2024: the 3 "STOPPED" messages were all retirements); "... AND
  CONTINUED" does not count. The retirement waits until the laps reach the message's time (the
  laps topic is one partition in event-time order): a stream that reads race control ahead of the
  laps (a replay at full speed) would otherwise stop the car at the last lap it happened to have
  read, and drop its valid laps after that (the backtest of 2024 Saudi Arabia: every lap of STR).
* ``lap``: a lap after lap 1 with neither a LapTime nor a Position: F1 timing closes the lap of a
  car that did not finish it so (corpus: 53 such laps in races, each the car's last).
* ``position``: the car has not moved :data:`STOP_M` in :data:`STOP_S` seconds while most of the
  field moved in the last :data:`FIELD_WINDOW_S` (a parked car; a pit stop takes seconds, a
  penalty stop 10 s); not under a red flag, not before the car's first lap. The stream reads the
  cars' positions from several partitions in no event-time order, so the rule is checked on every
  record, against each car's own stationary span, once the laps have reached that span.
* ``laps``: no lap from the car while the cars still running completed :data:`OVERDUE_LAPS`
  laps each (median) since its last one: the fallback when positions are missing.

Nothing is detected after the chequered flag (cars park after the finish): by event time, so a
flag read ahead of the laps does not silence a retirement that happened before it. ``LapNumber`` is the
car's last completed lap as the stream has seen it; predictions and alerts for the car stop there.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping
from typing import Any

from stratx.functions import catalog

STOP_S = 60.0  # s without progress: a parked car (pit stops: ~2-3 s stationary, penalties 5-10 s)
STOP_M = 5.0  # m of movement that counts as progress (garage jitter: < 1 m)
FIELD_WINDOW_S = 10.0  # the field "goes on": most other running cars moved within this many s
OVERDUE_LAPS = 3  # laps the running cars (median) completed since the car's last lap
RED_FLAG = "5"
_UNITS_PER_M = 10.0  # position samples are in 1/10 m
_CAR = re.compile(r"\bCAR (\d{1,2})\b")
_RETIRED = re.compile(r"\b(STOPPED|RETIRED|RETIREMENT|WITHDRAWN)\b")

LAPS, RACE_CONTROL, TRACK_STATUS, CAR_POSITION = "laps", "race_control", "track_status", "car_position"
# the raw topics the detector reads, by name
KINDS: dict[str, str] = {
    catalog.LAPS.name: LAPS,
    catalog.RACE_CONTROL.name: RACE_CONTROL,
    catalog.TRACK_STATUS.name: TRACK_STATUS,
    catalog.CAR_POSITION.name: CAR_POSITION,
}


def new_state() -> dict[str, Any]:
    """Per session: cars' last laps and lap ends, last movement, retired cars, flags."""
    return {
        "cars": {},
        "retired": {},
        "parked": set(),
        "red": False,
        "finished": False,
        "finished_at": None,  # SessionTime of the chequered flag
        "pending": {},  # race-control retirements waiting for the laps to reach them: driver -> record
        "now": -math.inf,
        "laps_now": -math.inf,
    }


def _car(st: dict[str, Any], driver: str) -> dict[str, Any]:
    return st["cars"].setdefault(
        driver,
        {
            "lap": 0,
            "lap_end": None,
            "first_end": None,  # SessionTime of the end of its first completed lap
            "ends": [],
            "anchor": None,
            "moved_at": None,
            "seen": None,
            "driver": None,
        },
    )


def retire_step(
    state: dict[str, Any] | None, kind: str, record: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold one raw event of topic ``kind`` (:data:`LAPS`, ...) into ``state``: the new retirements."""
    st = state if state is not None else new_state()
    t = float(record["SessionTime"])
    st["now"] = max(st["now"], t)
    if kind == RACE_CONTROL:
        out = _race_control(st, record)
    elif kind == TRACK_STATUS:
        st["red"] = str(record.get("Status")) == RED_FLAG
        out = _check_parked(st, record)  # a red flag ended
    elif kind == LAPS:
        out = _lap(st, record)
        out += _check_parked(st, record)  # a parked car's first lap, or the field's, came after its samples
    elif kind == CAR_POSITION:
        out = _position(st, record)
    else:
        out = []
    return st, out


def finished_by(st: Mapping[str, Any], t: float) -> bool:
    """Whether the chequered flag had been shown at SessionTime ``t`` (as far as the stream knows)."""
    at = st.get("finished_at")
    if at is None:  # a state from before the flag's time was kept
        return bool(st.get("finished"))
    return t >= float(at)


def _retire(
    st: dict[str, Any], record: Mapping[str, Any], driver: str, source: str, reason: str
) -> list[dict]:
    if driver in st["retired"] or finished_by(st, float(record["SessionTime"])):
        return []
    car = _car(st, driver)
    retirement = {
        "SessionKey": record["SessionKey"],
        "DriverNumber": driver,
        "Driver": car["driver"],
        "LapNumber": car["lap"],
        "SessionTime": float(record["SessionTime"]),
        "Date": record.get("Date"),
        "Source": source,
        "Reason": reason,
    }
    st["retired"][driver] = car["lap"]
    return [retirement]


def _race_control(st: dict[str, Any], record: Mapping[str, Any]) -> list[dict]:
    message = str(record.get("Message") or "").upper()
    if str(record.get("Flag") or "").upper() == "CHEQUERED":
        st["finished"] = True
        st["finished_at"] = min(float(record["SessionTime"]), st.get("finished_at") or math.inf)
        return []
    if "RED FLAG" in message or str(record.get("Flag") or "").upper() == "RED":
        st["red"] = True
    match = _CAR.search(message)
    if match is None or _RETIRED.search(message) is None or "CONTINUED" in message:
        return []
    driver = str(record.get("RacingNumber") or match.group(1))
    if driver in st["retired"]:
        return []
    st.setdefault("pending", {}).setdefault(driver, {**record, "Message": message.capitalize()})
    return _pending(st)


def _pending(st: dict[str, Any]) -> list[dict]:
    """The race-control retirements the laps have reached: every lap that ended before the message
    has been read, so the car's last completed lap is known."""
    out: list[dict] = []
    for driver, record in list(st.setdefault("pending", {}).items()):
        if st.get("laps_now", -math.inf) >= float(record["SessionTime"]):
            del st["pending"][driver]
            out += _retire(st, record, driver, "race_control", str(record["Message"]))
    return out


def _lap(st: dict[str, Any], record: Mapping[str, Any]) -> list[dict]:
    driver, lap, t = str(record["DriverNumber"]), int(record["LapNumber"]), float(record["SessionTime"])
    car = _car(st, driver)
    car["driver"] = record.get("Driver") or car["driver"]
    st["laps_now"] = max(st.get("laps_now", -math.inf), t)
    out = _pending(st)  # before this lap is folded: it ended at or after the messages released
    if lap > 1 and record.get("LapTime") is None and record.get("Position") is None:
        return out + _retire(st, record, driver, "lap", f"lap {lap} not completed (no lap time, no position)")
    if car["first_end"] is None or t < car["first_end"]:
        car["first_end"] = t
    if lap > car["lap"]:
        car["lap"], car["lap_end"] = lap, t
        car["ends"] = [*car["ends"][-(OVERDUE_LAPS + 1) :], t]
    return out + _overdue(st, record, driver)


def _running(st: dict[str, Any], but: str) -> list[dict[str, Any]]:
    return [c for d, c in st["cars"].items() if d != but and d not in st["retired"] and c["lap"] > 0]


def _overdue(st: dict[str, Any], record: Mapping[str, Any], crossing: str) -> list[dict]:
    """Cars whose next lap is overdue, checked when another car completes a lap."""
    out: list[dict] = []
    if st["red"]:
        return out
    for driver, car in list(st["cars"].items()):
        if driver == crossing or driver in st["retired"] or car["lap_end"] is None:
            continue
        others = _running(st, driver)
        if len(others) < 3:
            continue
        since = statistics.median(sum(e > car["lap_end"] for e in c["ends"]) for c in others)
        if since >= OVERDUE_LAPS:
            reason = f"no lap since lap {car['lap']} while the field completed {OVERDUE_LAPS}"
            out += _retire(st, {**record, "DriverNumber": driver}, driver, "laps", reason)
    return out


def _position(st: dict[str, Any], record: Mapping[str, Any]) -> list[dict]:
    """A car's sample: its own progress, then the parked rule for every candidate car. The stream
    holds each car's positions in its own partition, consumed in no event-time order across cars,
    so the rule compares a car's own stationary span with the others' latest moves, whichever
    car's sample arrives last (in event-time order this is the same decision)."""
    driver, t = str(record["DriverNumber"]), float(record["SessionTime"])
    x, y, z = (int(record.get(k) or 0) for k in ("X", "Y", "Z"))
    if x == y == z == 0:  # no fix
        return []
    car = _car(st, driver)
    car["seen"] = max(car.get("seen") or t, t)
    parked = st.setdefault("parked", set())
    anchor = car["anchor"]
    if anchor is None or math.hypot(x - anchor[0], y - anchor[1]) / _UNITS_PER_M >= STOP_M:
        car["anchor"], car["moved_at"] = (x, y), t
        parked.discard(driver)
    elif driver not in st["retired"] and car["seen"] - car["moved_at"] >= STOP_S:
        parked.add(driver)
    return _check_parked(st, record)


def _check_parked(st: dict[str, Any], record: Mapping[str, Any]) -> list[dict]:
    """The parked rule for every candidate (a car whose own samples show STOP_S without progress)."""
    out: list[dict] = []
    for candidate in sorted(st.setdefault("parked", set())):
        out += _parked(st, record, candidate)
    return out


def _parked(st: dict[str, Any], record: Mapping[str, Any], driver: str) -> list[dict]:
    """``driver`` retires if, STOP_S after its last move, most other running cars had moved since
    (their latest move at or after that moment less FIELD_WINDOW_S); not under a red flag, and only
    once the laps have reached the moment it stopped (so that its last lap is known)."""
    car = st["cars"][driver]
    if driver in st["retired"] or car["lap"] == 0 or st["red"]:
        return []
    if st.get("laps_now", -math.inf) < car["moved_at"]:
        return []  # the laps (one partition, in event-time order) lag: the car's last lap may be unseen
    if car["moved_at"] < car["first_end"]:
        # stationary since before its first lap ended (the garage, the grid): not a retirement. The
        # laps topic can be read far ahead of a car's positions, so "it has a lap" is not enough.
        return []
    due = car["moved_at"] + STOP_S
    others = _running(st, driver)
    moving = sum(c["moved_at"] is not None and c["moved_at"] >= due - FIELD_WINDOW_S for c in others)
    if not others or moving * 2 <= len(others):
        return []
    st["parked"].discard(driver)
    stopped = car["seen"] - car["moved_at"]
    at = {**record, "DriverNumber": driver, "SessionTime": due, "Date": None}  # the sample's Date is later
    return _retire(st, at, driver, "position", f"stationary for {stopped:.0f} s while the field moved")


def retired_lap(state: Mapping[str, Any] | None, driver: str) -> int | None:
    """The retired car's last lap, or None while it races."""
    return None if state is None else state["retired"].get(str(driver))


def still_racing(record: Mapping[str, Any], retired: Mapping[tuple[int, str], int]) -> bool:
    """False for a record (an alert, a prediction) about a car in ``retired``
    ((SessionKey, DriverNumber) -> last completed lap, from ``stratx.race.retirements``) after that
    lap, or without a lap. A record about an earlier lap stays: it was raised while the car raced
    (read late only when the stream runs behind, as in a replay at full speed)."""
    last = retired.get((int(record["SessionKey"]), str(record["DriverNumber"])))
    lap = record.get("LapNumber")
    return last is None or (lap is not None and int(lap) <= last)
