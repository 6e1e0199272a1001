"""Strategy alerts from predictions, with hysteresis so a flickering number raises one alert.

One pure step, :func:`alert_step`, folds a Prediction record (as a dict) into per-driver state
and returns the alerts to raise. The alerts app keeps the state per ``<SessionKey>:<DriverNumber>``
key in Quix Streams; tests fold recorded predictions through it directly.

Rules (per driver; ``raise`` / ``clear`` thresholds; an alert is raised when the value crosses
``raise`` while the condition is clear, and the condition clears only below ``clear``, so values
oscillating between the two raise nothing new; after clearing, the same alert type can fire again
only ``REARM_LAPS`` laps after the last one):

=====================  ================================  ========  ========  ===================
type                   value (Prediction.Values)         raise     clear     severity
=====================  ================================  ========  ========  ===================
tyre_cliff             CliffProbability (tyre_deg)       >= 0.60   < 0.40    warning, critical >= 0.80
anomaly                AnomalyFlag set (the model's own  flag on  flag off  warning, critical when
                       calibrated threshold)                                AnomalyScore >= 0.999
overtake_likely        OvertakeProbability1Lap           >= 0.50   < 0.30    info, warning >= 0.70
pit_window_open        LapNumber >= WindowOpenLap and <= WindowCloseLap (pit_window): once per window
pit_window_closing     LapNumber == WindowCloseLap - 1 while open: once per window
=====================  ================================  ========  ========  ===================

Predictions with ``Status`` ``unavailable`` change nothing. Alerts carry the prediction's
driver, lap, model and version, and a one-line explanation naming the driver (``Driver`` value
when the prediction has it, else the car number).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

REARM_LAPS = 3


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


THRESHOLD_RULES: tuple[Hysteresis, ...] = (
    Hysteresis(
        "tyre_cliff", "tyre_deg", "CliffProbability", 0.60, 0.40, 0.80, "warning", "critical",
        "tyre cliff likely within 3 laps (p={v:.2f})",
    ),
    Hysteresis(
        "anomaly", "anomaly", "AnomalyScore", 0.0, 0.0, 0.999, "warning", "critical",
        "irregular lap, check the car (anomaly score {v:.3f}{why})", flag="AnomalyFlag",
    ),
    Hysteresis(
        "overtake_likely", "overtake", "OvertakeProbability1Lap", 0.50, 0.30, 0.70, "info", "warning",
        "likely to pass car #{other} next lap (p={v:.2f})",
    ),
)  # fmt: skip


def new_state() -> dict[str, Any]:
    return {"active": {}, "last_lap": {}, "window": None}


def _name(prediction: dict[str, Any]) -> str:
    values = prediction.get("Values") or {}
    return str(values.get("Driver") or f"#{prediction['DriverNumber']}")


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
    st: dict[str, Any], rule: Hysteresis, prediction: dict[str, Any], now: datetime
) -> list[dict[str, Any]]:
    value = _number((prediction.get("Values") or {}).get(rule.value))
    if value is None:
        return []
    key = rule.alert
    if rule.alert == "overtake_likely":
        key = f"{rule.alert}:{prediction.get('OtherDriverNumber')}"
    active = st["active"].get(key, False)
    lap = prediction.get("LapNumber") or 0
    values = prediction.get("Values") or {}
    flagged = bool(values.get(rule.flag)) if rule.flag else value >= rule.raise_at
    if active:
        if (not flagged) if rule.flag else value < rule.clear_below:
            st["active"][key] = False
        return []
    last = st["last_lap"].get(key)
    if not flagged or (last is not None and lap - last < REARM_LAPS):
        return []
    st["active"][key] = True
    st["last_lap"][key] = lap
    severity = rule.escalated if value >= rule.escalate_at else rule.severity
    signal = values.get("AnomalySignal") or values.get("TopSignal")
    why = f", {signal}" if signal else ""
    text = rule.text.format(v=value, other=prediction.get("OtherDriverNumber") or "?", why=why)
    return [_alert(prediction, rule.alert, severity, text, value, now)]


def _pit_window(st: dict[str, Any], prediction: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    values = prediction.get("Values") or {}
    lap = prediction.get("LapNumber")
    open_lap, close_lap = _number(values.get("WindowOpenLap")), _number(values.get("WindowCloseLap"))
    if lap is None or open_lap is None or close_lap is None:
        return []
    window = st["window"]
    same = window is not None and window["close"] == close_lap
    if not same and window is not None and window.get("announced") and lap <= window["close"]:
        same = abs(close_lap - window["close"]) <= 1  # the forecast shifted by a lap: same window
        if same:
            window["close"] = close_lap
    if not same:
        window = {"open": open_lap, "close": close_lap, "announced": False, "closing": False}
        st["window"] = window
    out = []
    if not window["announced"] and open_lap <= lap <= close_lap:
        window["announced"] = True
        text = f"pit window open, laps {int(open_lap)}-{int(close_lap)}"
        out.append(_alert(prediction, "pit_window_open", "info", text, close_lap, now))
    if window["announced"] and not window["closing"] and lap == close_lap - 1:
        window["closing"] = True
        out.append(
            _alert(
                prediction,
                "pit_window_closing",
                "warning",
                f"pit window closes after lap {int(close_lap)}",
                close_lap,
                now,
            )
        )
    return out


def alert_step(
    state: dict[str, Any] | None, prediction: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold one Prediction (dict, JSON mode) into the driver's alert state; returns the alerts."""
    st = state if state is not None else new_state()
    if prediction.get("Status") != "ok":
        return st, []
    model = prediction.get("Model")
    alerts: list[dict[str, Any]] = []
    for rule in THRESHOLD_RULES:
        if rule.model == model:
            alerts += _threshold(st, rule, prediction, now)
    if model == "pit_window":
        alerts += _pit_window(st, prediction, now)
    return st, alerts
