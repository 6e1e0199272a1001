"""Alert rules: hysteresis (no storms), re-arming, pit-window open/closing once, schema contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stratx.functions import schemas
from stratx.functions.alerts import REARM_LAPS, alert_step

NOW = datetime(2024, 3, 2, 15, 0, tzinfo=UTC)


def prediction(
    model: str, lap: int, status: str = "ok", other: str | None = None, **values: Any
) -> dict[str, Any]:
    return {
        "SessionKey": 9472,
        "DriverNumber": "1",
        "LapNumber": lap,
        "Model": model,
        "ModelVersion": "4",
        "Status": status,
        "Values": {"Driver": "VER", **values},
        "OtherDriverNumber": other,
        "EventSessionTime": 3600.0 + 95 * lap,
    }


def fold(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    state = None
    out: list[dict[str, Any]] = []
    for r in records:
        state, alerts = alert_step(state, r, NOW)
        out += alerts
    return out


def test_a_flickering_cliff_probability_raises_one_alert() -> None:
    probs = [0.2, 0.65, 0.55, 0.62, 0.45, 0.7, 0.5]  # never below the 0.40 clear level after raising
    alerts = fold([prediction("tyre_deg", 10 + i, CliffProbability=p) for i, p in enumerate(probs)])
    assert [a["Type"] for a in alerts] == ["tyre_cliff"]
    assert alerts[0]["LapNumber"] == 11 and alerts[0]["Severity"] == "warning"
    assert alerts[0]["Message"].startswith("VER: tyre cliff")


def test_clearing_rearms_only_after_the_rearm_laps() -> None:
    probs = [0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.9]  # raise lap 10, clear, too soon at 12, again at 16
    alerts = fold([prediction("tyre_deg", 10 + i, CliffProbability=p) for i, p in enumerate(probs)])
    assert [a["LapNumber"] for a in alerts] == [10, 16]
    assert REARM_LAPS <= 16 - 10
    assert {a["Severity"] for a in alerts} == {"critical"}


def test_overtake_alerts_are_per_pair() -> None:
    records = [
        prediction("overtake", 20, other="44", OvertakeProbability1Lap=0.6),
        prediction("overtake", 20, other="16", OvertakeProbability1Lap=0.8),
        prediction("overtake", 21, other="44", OvertakeProbability1Lap=0.55),
    ]
    alerts = fold(records)
    assert [(a["Type"], a["Severity"]) for a in alerts] == [
        ("overtake_likely", "info"),
        ("overtake_likely", "warning"),
    ]
    assert "car #16" in alerts[1]["Message"]


def test_pit_window_opens_and_closes_once_even_if_the_forecast_shifts_a_lap() -> None:
    records = [
        prediction("pit_window", 14, WindowOpenLap=16, WindowCloseLap=20),
        prediction("pit_window", 15, WindowOpenLap=16, WindowCloseLap=20),
        prediction("pit_window", 16, WindowOpenLap=16, WindowCloseLap=20),
        prediction("pit_window", 17, WindowOpenLap=17, WindowCloseLap=21),
        prediction("pit_window", 18, WindowOpenLap=17, WindowCloseLap=21),
        prediction("pit_window", 19, WindowOpenLap=17, WindowCloseLap=21),
        prediction("pit_window", 20, WindowOpenLap=17, WindowCloseLap=21),
        prediction("pit_window", 21, WindowOpenLap=17, WindowCloseLap=21),
    ]
    alerts = fold(records)
    assert [(a["Type"], a["LapNumber"]) for a in alerts] == [
        ("pit_window_open", 16),
        ("pit_window_closing", 20),
    ]


def test_anomaly_alerts_follow_the_models_own_flag() -> None:
    scores = [(0.97, False), (0.9991, True), (0.999, True), (0.5, False), (0.99, True)]
    records = [
        prediction("anomaly", 20 + i, AnomalyScore=s, AnomalyFlag=f, AnomalySignal="SpeedST")
        for i, (s, f) in enumerate(scores)
    ]
    alerts = fold(records)
    assert [(a["LapNumber"], a["Severity"]) for a in alerts] == [(21, "critical"), (24, "warning")]
    assert "SpeedST" in alerts[0]["Message"]


def test_unavailable_predictions_and_missing_values_change_nothing() -> None:
    records = [
        prediction("tyre_deg", 5, status="unavailable"),
        prediction("tyre_deg", 6, CliffProbability=None),
        prediction("anomaly", 6, AnomalyScore="not a number"),
        prediction("lap_time", 6, PredictedNextLapTime=95.1),
    ]
    assert fold(records) == []


@pytest.mark.parametrize(
    "record",
    [
        prediction("anomaly", 30, AnomalyScore=0.995, AnomalyFlag=True, AnomalySignal="SpeedST"),
        prediction("tyre_deg", 30, CliffProbability=0.7),
        prediction("pit_window", 30, WindowOpenLap=30, WindowCloseLap=33),
        prediction("overtake", 30, other="11", OvertakeProbability1Lap=0.9),
    ],
)
def test_every_alert_fits_the_schema(record: dict[str, Any]) -> None:
    alerts = fold([record])
    assert len(alerts) == 1
    alert = schemas.Alert.model_validate(alerts[0])
    assert alert.Model == record["Model"] and alert.LapNumber == 30 and alert.Message.startswith("VER: ")
