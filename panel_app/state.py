"""Fold topic records into the latest race state, per session (pure: no broker, no Panel).

:class:`RaceState` holds what the dashboard shows about one session: the session info, the
latest timing-tower update and every lap-feature record per driver, the latest prediction of
each model per driver (plus a short history for the wear curves), the alerts, the retired cars
(``stratx.race.retirements``), and the latest car-telemetry / car-position / track-gap sample per driver. High-rate topics (car telemetry and
positions, ~75 records/s each in a live race and far more in a fast replay) are kept as the raw
bytes of the latest record and parsed only when a snapshot is taken, so the consumer keeps up.

:class:`StateStore` is the thread-safe holder the shared consumer writes into and the browser
sessions read from (:meth:`StateStore.snapshot`, cached per state version).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from stratx.functions import catalog

Record = dict[str, Any]

PREDICTION_TOPIC_MODELS: dict[str, str] = {spec.name: key for key, spec in catalog.PREDICTION_TOPICS.items()}
# latest sample per driver, kept as raw bytes (parsed at snapshot time)
LATEST_RAW_TOPICS: dict[str, str] = {
    catalog.CAR_TELEMETRY.name: "telemetry",
    catalog.CAR_POSITION.name: "positions",
    catalog.TRACK_GAP.name: "track_gaps",
}
PARSED_TOPICS: tuple[str, ...] = (
    catalog.SESSION_INFO.name,
    catalog.TIMING.name,
    catalog.FEATURES_LAP.name,
    catalog.ALERTS.name,
    catalog.RETIREMENTS.name,
    *PREDICTION_TOPIC_MODELS,
)
DASHBOARD_TOPICS: tuple[str, ...] = (*PARSED_TOPICS, *LATEST_RAW_TOPICS)
MAX_ALERTS = 200
MAX_PREDICTION_HISTORY = 300  # per model and driver: a race has ~70 laps


@dataclass
class RaceState:
    """Everything the dashboard knows about one session; mutated only by the fold functions."""

    session_key: int
    info: Record | None = None
    timing: dict[str, Record] = field(default_factory=dict)
    laps: dict[str, dict[int, Record]] = field(default_factory=dict)
    predictions: dict[str, dict[str, Record]] = field(default_factory=dict)
    prediction_history: dict[str, dict[str, dict[float, Record]]] = field(default_factory=dict)
    alerts: deque[Record] = field(default_factory=lambda: deque(maxlen=MAX_ALERTS))
    alert_keys: set[tuple[Any, ...]] = field(default_factory=set)
    retired: dict[str, Record] = field(default_factory=dict)  # DriverNumber -> its Retirement record
    latest_raw: dict[str, dict[str, bytes]] = field(
        default_factory=lambda: {name: {} for name in LATEST_RAW_TOPICS.values()}
    )
    versions: dict[str, int] = field(default_factory=dict)
    version: int = 0
    session_time: float = 0.0
    touched: int = 0  # the store's record counter when this session last changed

    def bump(self, section: str, session_time: float | None = None) -> None:
        self.version += 1
        self.versions[section] = self.version
        if session_time is not None and session_time > self.session_time:
            self.session_time = session_time


def session_key_of(key: bytes | str | None) -> int | None:
    """The SessionKey from a message key ``<SessionKey>`` or ``<SessionKey>:<DriverNumber>``."""
    if key is None:
        return None
    text = key.decode() if isinstance(key, bytes) else key
    head = text.split(":", 1)[0]
    try:
        return int(head)
    except ValueError:
        return None


def driver_of(key: bytes | str | None) -> str | None:
    if key is None:
        return None
    text = key.decode() if isinstance(key, bytes) else key
    _, sep, tail = text.partition(":")
    return tail if sep and tail.isdigit() else None


def fold_session_info(state: RaceState, rec: Record) -> None:
    state.info = rec
    state.bump("info", rec.get("SessionTime"))


def fold_timing(state: RaceState, rec: Record) -> None:
    drv = str(rec["DriverNumber"])
    current = state.timing.get(drv)
    if current is not None and current.get("Seq", -1) >= rec.get("Seq", -1):
        return  # a repeat (at-least-once) or an older update
    state.timing[drv] = rec
    state.bump("timing", rec.get("SessionTime"))


def fold_lap_features(state: RaceState, rec: Record) -> None:
    drv = str(rec["DriverNumber"])
    state.laps.setdefault(drv, {})[int(rec["LapNumber"])] = rec
    state.bump("laps", rec.get("SessionTime"))


def fold_prediction(state: RaceState, rec: Record) -> None:
    model, drv = str(rec["Model"]), str(rec["DriverNumber"])
    latest = state.predictions.setdefault(model, {})
    current = latest.get(drv)
    event_time = float(rec.get("EventSessionTime") or 0.0)
    if current is None or float(current.get("EventSessionTime") or 0.0) <= event_time:
        latest[drv] = rec
    history = state.prediction_history.setdefault(model, {}).setdefault(drv, {})
    history[event_time] = rec
    if len(history) > MAX_PREDICTION_HISTORY:
        del history[min(history)]
    state.bump("predictions")


def fold_alert(state: RaceState, rec: Record) -> None:
    key = (rec.get("Type"), rec.get("DriverNumber"), rec.get("LapNumber"), rec.get("EventSessionTime"))
    if key in state.alert_keys:
        return
    if len(state.alerts) == state.alerts.maxlen:
        old = state.alerts[0]
        state.alert_keys.discard(
            (old.get("Type"), old.get("DriverNumber"), old.get("LapNumber"), old.get("EventSessionTime"))
        )
    state.alert_keys.add(key)
    state.alerts.append(rec)
    state.bump("alerts")


def fold_retirement(state: RaceState, rec: Record) -> None:
    """A car out of the race (``stratx.race.retirements``): the first record per car stays."""
    drv = str(rec["DriverNumber"])
    if drv in state.retired:
        return
    state.retired[drv] = rec
    state.bump("retired", rec.get("SessionTime"))


def fold_latest_raw(state: RaceState, topic: str, driver: str, value: bytes) -> None:
    """Keep the latest raw record of a high-rate topic per driver (parsed at snapshot time)."""
    section = LATEST_RAW_TOPICS[topic]
    state.latest_raw[section][driver] = value
    state.bump(section)


FOLDERS = {
    catalog.SESSION_INFO.name: fold_session_info,
    catalog.TIMING.name: fold_timing,
    catalog.FEATURES_LAP.name: fold_lap_features,
    catalog.ALERTS.name: fold_alert,
    catalog.RETIREMENTS.name: fold_retirement,
    **dict.fromkeys(PREDICTION_TOPIC_MODELS, fold_prediction),
}


def fold(state: RaceState, topic: str, rec: Record) -> None:
    """Fold one parsed record of ``topic`` into ``state`` (records of other topics are ignored)."""
    folder = FOLDERS.get(topic)
    if folder is not None:
        folder(state, rec)


@dataclass(frozen=True)
class RaceSnapshot:
    """A consistent, read-only copy of one session's state for rendering."""

    session_key: int
    version: int
    versions: dict[str, int]
    session_time: float
    info: Record | None
    timing: dict[str, Record]
    laps: dict[str, list[Record]]
    predictions: dict[str, dict[str, Record]]
    prediction_history: dict[str, dict[str, list[Record]]]
    alerts: list[Record]
    telemetry: dict[str, Record]
    positions: dict[str, Record]
    track_gaps: dict[str, Record]
    retired: dict[str, Record] = field(default_factory=dict)  # DriverNumber -> Retirement record

    def section_version(self, *sections: str) -> int:
        return max((self.versions.get(s, 0) for s in sections), default=0)


def empty_snapshot(session_key: int = 0) -> RaceSnapshot:
    return snapshot_of(RaceState(session_key))


def _parsed(raw: dict[str, bytes]) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for drv, value in raw.items():
        try:
            out[drv] = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
    return out


def snapshot_of(state: RaceState) -> RaceSnapshot:
    """Copy ``state`` for readers (records themselves are never mutated, so copies are shallow)."""
    return RaceSnapshot(
        session_key=state.session_key,
        version=state.version,
        versions=dict(state.versions),
        session_time=state.session_time,
        info=state.info,
        timing=dict(state.timing),
        laps={drv: [laps[n] for n in sorted(laps)] for drv, laps in state.laps.items()},
        predictions={m: dict(per) for m, per in state.predictions.items()},
        prediction_history={
            m: {drv: [h[t] for t in sorted(h)] for drv, h in per.items()}
            for m, per in state.prediction_history.items()
        },
        alerts=list(state.alerts),
        telemetry=_parsed(state.latest_raw["telemetry"]),
        positions=_parsed(state.latest_raw["positions"]),
        track_gaps=_parsed(state.latest_raw["track_gaps"]),
        retired=dict(state.retired),
    )


class StateStore:
    """Thread-safe latest state of every session seen on the topics (one per server process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[int, RaceState] = {}
        self._snapshots: dict[int, RaceSnapshot] = {}
        self.records = 0
        self.rejected = 0

    def apply(self, topic: str, key: bytes | str | None, value: bytes | None) -> None:
        """Fold one message as it comes off the broker (bad records are counted and skipped)."""
        if value is None:
            return
        section = LATEST_RAW_TOPICS.get(topic)
        if section is not None:
            session_key, driver = session_key_of(key), driver_of(key)
            if session_key is None or driver is None:
                self.rejected += 1
                return
            with self._lock:
                state = self._state(session_key)
                fold_latest_raw(state, topic, driver, value)
                self.records += 1
                state.touched = self.records
            return
        try:
            rec = orjson.loads(value)
            session_key = int(rec["SessionKey"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.rejected += 1
            return
        with self._lock:
            state = self._state(session_key)
            try:
                fold(state, topic, rec)
            except (KeyError, TypeError, ValueError):
                self.rejected += 1
                return
            self.records += 1
            state.touched = self.records

    def apply_record(self, topic: str, rec: Record) -> None:
        """Fold an already parsed record (tests, and callers that hold dicts)."""
        self.apply(topic, _key_for(topic, rec), orjson.dumps(rec, default=str))

    def _state(self, session_key: int) -> RaceState:
        state = self._sessions.get(session_key)
        if state is None:
            state = self._sessions[session_key] = RaceState(session_key)
        return state

    def sessions(self) -> list[tuple[int, str]]:
        """(SessionKey, label) of every session, the most recently updated first."""
        with self._lock:
            items = [(k, _label(s), s.touched) for k, s in self._sessions.items()]
        items.sort(key=lambda item: -item[2])
        return [(k, label) for k, label, _ in items]

    def latest_session(self) -> int | None:
        sessions = self.sessions()
        return sessions[0][0] if sessions else None

    def version(self, session_key: int) -> int:
        with self._lock:
            state = self._sessions.get(session_key)
            return state.version if state is not None else 0

    def snapshot(self, session_key: int) -> RaceSnapshot:
        """The session's current snapshot; shared by every reader until the state changes."""
        with self._lock:
            state = self._sessions.get(session_key)
            if state is None:
                return empty_snapshot(session_key)
            cached = self._snapshots.get(session_key)
            if cached is not None and cached.version == state.version:
                return cached
            snap = snapshot_of(state)
            self._snapshots[session_key] = snap
            return snap


def _key_for(topic: str, rec: Record) -> str:
    drv = rec.get("DriverNumber")
    return f"{rec.get('SessionKey')}:{drv}" if drv is not None else str(rec.get("SessionKey"))


def _label(state: RaceState) -> str:
    info = state.info
    if info is None:
        return f"session {state.session_key}"
    return f"{info.get('Year')} {info.get('EventName')} {info.get('SessionName')} ({state.session_key})"
