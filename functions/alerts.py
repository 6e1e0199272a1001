"""Strategy alerts from predictions, with hysteresis so a flickering number raises one alert.

One pure step, :func:`alert_step`, folds a Prediction record (as a dict) into per-driver state
and returns the alerts to raise. The alerts app keeps the state per ``<SessionKey>:<DriverNumber>``
key in Quix Streams; tests and the offline tuning (``bentos/lifecycle/alert_tuning.py``) fold
recorded predictions through it directly.

Rules (per driver; ``raise`` / ``clear`` thresholds; an alert is raised when the value crosses
``raise`` while the condition is clear, and the condition clears only below ``clear``, so values
oscillating between the two raise nothing new; after clearing, the same alert type can fire again
only ``REARM_LAPS`` laps after the last one):

=====================  ================================  ========  ========  ===================
type                   value (Prediction.Values)         raise     clear     severity
=====================  ================================  ========  ========  ===================
tyre_cliff             CliffProbability (tyre_deg)       >= 0.30   < 0.18    warning, critical >= 0.60
anomaly                AnomalyFlag set (the model's own  flag on  flag off  warning; critical when
                       calibrated threshold)                                the car's next lap is
                                                                            flagged too (sustained)
overtake_likely        OvertakeProbability1Lap           >= 0.60   < 0.36    info, warning >= 0.70
pit_window_open        PitProbability3Laps (pit_window)  >= 0.10   (the announced window ends or the
                       announces [WindowOpenLap,                   stint changes), info
                       WindowCloseLap + 4]
pit_window_closing     LapNumber == the announced window's last lap - 1: once per window, warning
=====================  ================================  ========  ========  ===================

Tuned on the training and validation races (tyre_cliff: validation only), never the test races
(``docs/serving.md``, "Alert rules"; ``python -m stratx.bentos.lifecycle.alert_tuning``).

Scope (``functions/scope.py``, carried in ``Values`` as ``GreenClean`` / ``Neutralised`` by the
prediction app): an anomaly alert needs a green and clean lap (never lap 1, an in/out lap or a
lap under SC, VSC or red flag); overtake_likely needs a lap that is not neutralised (no passing
under SC/VSC). Pit-window alerts are not gated: teams stop under neutralisations on purpose.

tyre_cliff (``clean_reference``, one state per stint): a clean lap (``IsClean``) of a stint with >=
``scope.CLIFF_REFERENCE_LAPS`` clean laps (``StintCleanLaps``), the laps a cliff's reference needs: no
cliff (nor the model's label) exists earlier; half the ungated alerts fired there (docs/backtest.md).

Safety car / VSC (:func:`neutralisation_alerts`, from ``stratx.race.neutralisations``): when one
is deployed, a stop costs far less, and the model's per-lap forecast (made when the car crossed the
line, before the deployment) cannot know it. So the deployment itself opens a pit window, laps
[next lap, next lap + 2], for each running car on dry tyres at least ``sc_min_life`` (3) laps old
under a safety car, ``vsc_min_life`` (10) under a VSC, unless a window is already open for its
stint. Chosen on the training and validation races (``python -m
stratx.bentos.lifecycle.alert_tuning``: their deployments folded from the laps, race control and
track status through the race-state steps, scored by the backtest's scorer; the most stops
announced with precision >= 0.55: 372 alerts, precision 0.556, 223 of their 1,286 stops; SC >= 5
laps: 0.592 and 213; every car under a safety car: 0.474). The alert is raised while the car is on
the lap, keyed to its last completed lap; the window is shared with the model's rule
(:func:`share_window`),
so a car gets one pit-window alert either way.

Burst limit: at most ``BURST_LIMIT`` (3) alerts of one type on one lap of a session
(:func:`burst_allow`, kept by the alerts app across drivers). An alert over the limit is not
raised and its rule's state is not advanced, so it is raised on the driver's next record where
its condition still holds: real events (several cars whose pit windows open together) are spread
over laps rather than lost, while a common cause (a neutralisation the scope missed, a timing
glitch) cannot flood the topic. One exception: ``pit_window_open`` on a neutralised lap (SC, VSC,
red flag) is not limited, because teams stop under a neutralisation on purpose and many windows
open together for a real reason (tuned: on the training and validation races these alerts are as
precise as the others, and stops under a safety car were otherwise announced a lap too late).
The stream cannot know, when the alert would be raised, whether the race will hold as many events,
so the limit is not lifted by later evidence; the backtest checks bursts against them in hindsight.

Anomaly severity: one irregular lap is a ``warning`` (a driver's moment, a lock-up, a lift: on
the test races none of the single-lap alerts was followed by a retirement or a mechanical
message); ``critical`` ("check the car") is raised, once per episode, when the car's very next lap
is flagged too. The stream knows this when that lap ends; nothing later is used.

The chequered flag (:func:`before_finish`): no alert about a lap that ended at or after it (the
lap on which a car takes the flag: cars lift, wave and weave; on the 2023 São Paulo GP an anomaly
alert came on GAS's flag lap). The alerts app reads the flag from race control; the lap features
do not carry it, because the lap and race-control topics are read in no common order and the
features must equal the offline build.

Predictions with ``Status`` ``unavailable`` change nothing. Alerts carry the prediction's
driver, lap, model and version, and a one-line explanation naming the driver by the three-letter
code of the session's driver table (``Values.Driver``; the other car of an overtake by
``Values.OtherDriver``), the car number only when the code is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stratx.functions.scope import CLIFF_REFERENCE_LAPS

REARM_LAPS = 3
BURST_LIMIT = 3  # alerts of one type on one lap of a session
PIT_OPEN_P = 0.10  # PitProbability3Laps that announces the pit window (tuned, module doc)
PIT_GRACE_LAPS = 4  # laps added after the model's WindowCloseLap in the announced window (tuned)
PIT_BURST_NEUTRALISED = False  # the burst limit holds pit-window alerts on SC/VSC/red-flag laps (tuned)
SC_MIN_TYRE_LIFE = 3.0  # laps: a safety car opens the window for cars on tyres at least this old (tuned)
VSC_MIN_TYRE_LIFE = 10.0  # laps, under a virtual safety car (tuned)
NEUTRAL_WINDOW_LAPS = 3  # the lap in progress and the next two
WET_COMPOUNDS = frozenset({"INTERMEDIATE", "WET"})
NEUTRALISATION = "neutralisation"  # the source of a window opened by a deployment
Allow = Callable[[str, int], bool]  # (alert type, lap) -> may this alert be raised now?


@dataclass(frozen=True)
class Hysteresis:
    alert: str
    model: str
    value: str
    raise_at: float
    clear_below: float
    escalate_at: float
    severity: str
    escalated: str
    text: str
    flag: str | None = None  # a model's own calibrated flag: raise while it is set, clear when not
    scope: str = "not_neutralised"  # or "green_clean" (functions/scope.py), "clean_reference" (doc)
    repeat_text: str | None = None  # set: raise ``escalated`` when the next lap is flagged too
    key_by: str | None = None  # a Values field: one rule state per its value (tyre_cliff: the stint)


THRESHOLD_RULES: tuple[Hysteresis, ...] = (
    Hysteresis(
        "tyre_cliff", "tyre_deg", "CliffProbability", 0.30, 0.18, 0.60, "warning", "critical",
        "tyre cliff risk within 3 laps (p={v:.2f})", scope="clean_reference", key_by="Stint",
    ),
    Hysteresis(
        "anomaly", "anomaly", "AnomalyScore", 0.0, 0.0, math.inf, "warning", "critical",
        "irregular lap (anomaly score {v:.3f}{why})", flag="AnomalyFlag", scope="green_clean",
        repeat_text="irregular for 2 laps running, check the car (anomaly score {v:.3f}{why})",
    ),
    Hysteresis(
        "overtake_likely", "overtake", "OvertakeProbability1Lap", 0.60, 0.36, 0.70, "info", "warning",
        "likely to pass {other} next lap (p={v:.2f})",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Rules:
    """The tunable thresholds: the hysteresis rules and the pit-window announcement probability."""

    threshold: tuple[Hysteresis, ...] = THRESHOLD_RULES
    pit_open_p: float = PIT_OPEN_P
    pit_grace: int = PIT_GRACE_LAPS
    pit_burst_neutralised: bool = PIT_BURST_NEUTRALISED
    sc_min_life: float = SC_MIN_TYRE_LIFE
    vsc_min_life: float = VSC_MIN_TYRE_LIFE


RULES = Rules()


def new_state() -> dict[str, Any]:
    return {"active": {}, "last_lap": {}, "window": None, "streak": {}}


def _name(prediction: dict[str, Any]) -> str:
    values = prediction.get("Values") or {}
    return str(values.get("Driver") or f"#{prediction['DriverNumber']}")


def _other(prediction: dict[str, Any]) -> str:
    values = prediction.get("Values") or {}
    number = prediction.get("OtherDriverNumber")
    return str(values.get("OtherDriver") or (f"#{number}" if number else "the car ahead"))


def in_scope(prediction: dict[str, Any], scope: str) -> bool:
    """The record's lap is one the rule may fire on (``Values``: the lap's scope flags and
    ``IsClean`` / ``StintCleanLaps``, set by the prediction app; absent: in scope)."""
    values = prediction.get("Values") or {}
    if values.get("Neutralised") is True:
        return False
    if scope == "green_clean":
        return values.get("GreenClean") is not False
    if scope == "clean_reference":
        laps = _number(values.get("StintCleanLaps"))
        return values.get("IsClean") is not False and (laps is None or laps >= CLIFF_REFERENCE_LAPS)
    return True


def burst_allow(counts: dict[str, int], session: Any, kind: str, lap: int, limit: int = BURST_LIMIT) -> bool:
    """Count one alert of ``kind`` on ``lap`` of ``session`` in ``counts`` (updated in place) if
    fewer than ``limit`` were raised there; False (nothing counted) when the lap is full.
    Entries older than 5 laps are dropped, so ``counts`` stays small."""
    key = f"{session}:{lap}:{kind}"
    if counts.get(key, 0) >= limit:
        return False
    counts[key] = counts.get(key, 0) + 1
    for old in [k for k in counts if k.startswith(f"{session}:") and int(k.split(":")[1]) < lap - 5]:
        del counts[old]
    return True


def _alert(
    prediction: dict[str, Any], kind: str, severity: str, message: str, value: float | None, now: datetime
) -> dict[str, Any]:
    return {
        "SessionKey": prediction["SessionKey"],
        "DriverNumber": prediction["DriverNumber"],
        "LapNumber": prediction.get("LapNumber"),
        "Type": kind,
        "Severity": severity,
        "Message": f"{_name(prediction)}: {message}",
        "Model": prediction.get("Model"),
        "ModelVersion": prediction.get("ModelVersion"),
        "Value": value,
        "EventSessionTime": prediction["EventSessionTime"],
        "Date": now.isoformat(),
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None


def _threshold(
    st: dict[str, Any], rule: Hysteresis, prediction: dict[str, Any], now: datetime, allow: Allow
) -> list[dict[str, Any]]:
    values = prediction.get("Values") or {}
    value = _number(values.get(rule.value))
    if value is None or not in_scope(prediction, rule.scope):
        return []
    key = rule.alert
    if rule.alert == "overtake_likely" or rule.key_by:
        by = prediction.get("OtherDriverNumber") if rule.key_by is None else values.get(rule.key_by)
        key = f"{rule.alert}:{by}"
    active = st["active"].get(key, False)
    lap = prediction.get("LapNumber") or 0
    flagged = bool(values.get(rule.flag)) if rule.flag else value >= rule.raise_at
    streak = st.setdefault("streak", {})  # key -> [last flagged lap, escalated this episode]
    signal = values.get("AnomalySignal") or values.get("TopSignal")
    why = f", {signal}" if signal else ""
    if active:
        if (not flagged) if rule.flag else value < rule.clear_below:
            st["active"][key] = False
            streak.pop(key, None)
            return []
        last_flagged, escalated = streak.get(key, (None, True))
        if rule.repeat_text and flagged and not escalated and last_flagged == lap - 1:
            if not allow(rule.alert, lap):
                return []
            streak[key] = (lap, True)
            text = rule.repeat_text.format(v=value, other=_other(prediction), why=why)
            return [_alert(prediction, rule.alert, rule.escalated, text, value, now)]
        if flagged:
            streak[key] = (lap, escalated)
        return []
    last = st["last_lap"].get(key)
    if not flagged or (last is not None and lap - last < REARM_LAPS) or not allow(rule.alert, lap):
        return []
    st["active"][key] = True
    st["last_lap"][key] = lap
    streak[key] = (lap, False)
    severity = rule.escalated if value >= rule.escalate_at else rule.severity
    text = rule.text.format(v=value, other=_other(prediction), why=why)
    return [_alert(prediction, rule.alert, severity, text, value, now)]


def _pit_window(
    st: dict[str, Any], prediction: dict[str, Any], now: datetime, allow: Allow, rules: Rules
) -> list[dict[str, Any]]:
    """Announce the forecast window once when a stop within 3 laps becomes likely; warn the lap
    before it closes. The window [WindowOpenLap, WindowCloseLap] always lies ahead (in-laps after
    this lap), so the rule keys on the stop probability, not on the lap entering the window."""
    values = prediction.get("Values") or {}
    lap = prediction.get("LapNumber")
    p = _number(values.get("PitProbability3Laps"))
    open_lap, close_lap = _number(values.get("WindowOpenLap")), _number(values.get("WindowCloseLap"))
    stint = values.get("Stint")
    window = st["window"]
    if lap is None:
        return []
    if window is not None and (lap > window["close"] or (stint is not None and stint != window.get("stint"))):
        window = st["window"] = None  # the window passed, or the car stopped (a new stint)
    out = []
    if window is None:
        if p is None or open_lap is None or close_lap is None or p < rules.pit_open_p:
            return []
        neutralised = values.get("Neutralised") is True
        if (rules.pit_burst_neutralised or not neutralised) and not allow("pit_window_open", lap):
            return []
        close_lap += rules.pit_grace
        st["window"] = {"open": open_lap, "close": close_lap, "closing": False, "stint": stint}
        text = f"pit window open, laps {int(open_lap)}-{int(close_lap)} (p={p:.2f} within 3 laps)"
        out.append(_alert(prediction, "pit_window_open", "info", text, close_lap, now))
    elif not window["closing"] and lap == window["close"] - 1 and allow("pit_window_closing", lap):
        window["closing"] = True
        text = f"pit window closes after lap {int(window['close'])}"
        out.append(_alert(prediction, "pit_window_closing", "warning", text, window["close"], now))
    return out


def _always(kind: str, lap: int) -> bool:
    return True


def alert_step(
    state: dict[str, Any] | None,
    prediction: dict[str, Any],
    now: datetime,
    allow: Allow | None = None,
    rules: Rules = RULES,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold one Prediction (dict, JSON mode) into the driver's alert state; returns the alerts.
    ``allow``: the session's burst limit (:func:`burst_allow` bound to a session); None: none.
    ``rules``: the thresholds (the tuned defaults unless a tuning run tries others)."""
    st = state if state is not None else new_state()
    if prediction.get("Status") != "ok":
        return st, []
    gate = allow or _always
    model = prediction.get("Model")
    alerts: list[dict[str, Any]] = []
    for rule in rules.threshold:
        if rule.model == model:
            alerts += _threshold(st, rule, prediction, now, gate)
    if model == "pit_window":
        alerts += _pit_window(st, prediction, now, gate, rules)
    return st, alerts


Windows = dict[tuple[int, str], dict[str, Any]]  # (SessionKey, DriverNumber) -> the open pit window


def neutralisation_alerts(
    record: dict[str, Any], windows: Windows, now: datetime, rules: Rules = RULES
) -> list[dict[str, Any]]:
    """``pit_window_open`` alerts for a Neutralisation record (JSON mode): each eligible car (module
    doc) without an open window for its stint gets one; ``windows`` (shared with the per-driver
    rule through the alerts app, :func:`share_window`) records the windows opened."""
    minimum = rules.sc_min_life if record["Kind"] == "SC" else rules.vsc_min_life
    what = "safety car" if record["Kind"] == "SC" else "virtual safety car"
    out = []
    for car in record["Cars"]:
        life, lap = car.get("TyreLife"), int(car["LapNumber"])
        if (
            life is None
            or life < minimum
            or lap < 1
            or str(car.get("Compound") or "").upper() in WET_COMPOUNDS
        ):
            continue
        key = (int(record["SessionKey"]), str(car["DriverNumber"]))
        current = windows.get(key)
        if current is not None and current.get("stint") == car.get("Stint") and current["close"] > lap:
            continue
        close = lap + NEUTRAL_WINDOW_LAPS
        windows[key] = {
            "open": lap + 1,
            "close": close,
            "closing": True,
            "stint": car.get("Stint"),
            "source": NEUTRALISATION,
        }
        name = car.get("Driver") or f"#{car['DriverNumber']}"
        text = (
            f"{what}: a cheap stop now, pit window open, laps {lap + 1}-{close} (tyres {life:.0f} laps old)"
        )
        prediction = {
            "SessionKey": record["SessionKey"],
            "DriverNumber": str(car["DriverNumber"]),
            "LapNumber": lap,
            "Model": "race_state",
            "Values": {"Driver": name},
            "EventSessionTime": record["SessionTime"],
        }
        out.append(_alert(prediction, "pit_window_open", "info", text, float(close), now))
    return out


def share_window(state: dict[str, Any] | None, shared: dict[str, Any] | None) -> dict[str, Any] | None:
    """The driver's alert state with a window a deployment opened (``shared``) adopted when the state
    has none, so the model's rule does not announce a second one; the state as it was otherwise."""
    if shared is None or shared.get("source") != NEUTRALISATION:
        return state
    st = state if state is not None else new_state()
    if st.get("window") is None:
        st["window"] = dict(shared)
    return st


def before_finish(alert: dict[str, Any], finished: dict[int, float]) -> bool:
    """False for an alert about a lap that ended at or after its session's chequered flag
    (``finished``: SessionKey -> the flag's session time, from race control as it arrives): the
    race is over for that car (it lifts, waves, weaves), so no strategy alert stays meaningful."""
    flag = finished.get(int(alert["SessionKey"]))
    return flag is None or float(alert["EventSessionTime"]) < flag


def chequered(record: dict[str, Any], finished: dict[int, float]) -> None:
    """Fold a race-control record (JSON mode) into ``finished``: the first CHEQUERED flag's time."""
    if str(record.get("Flag") or "").upper() == "CHEQUERED" and "SessionTime" in record:
        finished.setdefault(int(record["SessionKey"]), float(record["SessionTime"]))
