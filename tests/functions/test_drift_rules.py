"""The pure parts of drift monitoring (functions/drift.py): the compared view of lap features, column
selection, the session window, reading an Evidently snapshot, and the alert hysteresis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stratx.functions import drift, schemas

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _laps(n: int = 6, session: int = 7) -> pd.DataFrame:
    """LapFeatures-like rows (hand-made values for the view's arithmetic, not race data)."""
    laps = np.arange(1, n + 1)
    return pd.DataFrame(
        {
            "SessionKey": session,
            "DriverNumber": "1",
            "LapNumber": laps,
            "SessionTime": 3600.0 + 95.0 * laps,
            "LapTime": 95.0 + 0.1 * laps,
            "Last3Median": [np.nan, np.nan, 95.2, 95.3, 95.4, 95.5][:n],
            "Last3Mean": 95.0,
            "IsClean": [False, True, True, True, True, False][:n],
            "Compound": ["SOFT", "SOFT", None, "HARD", "HARD", "HARD"][:n],
            "TyreLife": laps.astype(float),
            "LapNumberX": 0,
            "FuelKg": 100.0 - laps,
            "GapToLeader": 1.0 * laps,
        }
    )


def test_feature_view_compares_lap_times_to_the_anchor_and_leaves_race_progress_out() -> None:
    table = _laps()
    view = drift.feature_view(table)
    anchor = table["Last3Median"].fillna(table["LapTime"])
    np.testing.assert_allclose(view["LapTimeToAnchor"], table["LapTime"] - anchor)
    np.testing.assert_allclose(view["Last3MeanToAnchor"], 95.0 - anchor)
    assert "LapTime" not in view and "Last3Median" not in view and "Last3MedianToAnchor" not in view
    for name in ("LapNumber", "FuelKg", "GapToLeader"):
        assert name not in view
    assert view["IsClean"].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert view["Compound"].tolist()[:3] == ["SOFT", "SOFT", None]
    assert "LapNumberX" not in view  # only model features


def test_model_features_cover_every_lap_model_input() -> None:
    from stratx.functions.models import lap_time, pit_window, tyre_deg

    for recipe in (lap_time, tyre_deg, pit_window):
        assert set(recipe.SERVICE_FEATURES) <= set(drift.MODEL_FEATURES)
    assert set(drift.MODEL_FEATURES) <= set(schemas.LapFeatures.model_fields)


def test_select_columns_drops_constant_reference_and_empty_current() -> None:
    ref = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 1.0], "c": [1.0, 2.0], "d": [0.0, 1.0]})
    cur = pd.DataFrame({"a": [3.0], "b": [2.0], "c": [np.nan], "e": [1.0]})
    assert drift.select_columns(ref, cur) == ["a"]


def test_session_window_by_laps_and_minutes() -> None:
    table = pd.concat([_laps(6, session=7), _laps(6, session=8)], ignore_index=True)
    assert len(drift.session_window(table, 7)) == 6
    assert drift.session_window(table, 7, last_laps=2)["LapNumber"].tolist() == [5, 6]
    # laps end every 95 s: the last 3.2 minutes (192 s) hold laps 5 and 6 (and 4 ends 190 s before 6)
    assert drift.session_window(table, 8, last_minutes=3.2)["LapNumber"].tolist() == [4, 5, 6]
    assert drift.session_window(table, 9).empty


def test_latest_session_is_the_most_recent_record() -> None:
    records = [
        {"SessionKey": 9, "Date": "2024-03-02T15:00:00+00:00", "SessionTime": 10.0},
        {"SessionKey": 5, "Date": "2024-03-02T16:00:00+00:00", "SessionTime": 1.0},
        {"SessionKey": 9, "Date": "2024-03-02T15:30:00+00:00", "SessionTime": 20.0},
    ]
    assert drift.latest_session(records) == 5
    assert drift.latest_session([]) is None


def test_prediction_frame_and_view() -> None:
    head: dict[str, Any] = {"SessionKey": 7, "DriverNumber": "1", "LapNumber": 3, "Status": "ok"}
    records = [
        {**head, "Model": "lap_time", "Values": {"PredictedNextLapTime": 96.0, "Driver": "VER"}},
        {**head, "Model": "tyre_deg", "Values": {"DegRate": 0.05, "Flag": True}},
        {**head, "Model": "anomaly", "Status": "unavailable", "Values": {}},
    ]
    frame = drift.prediction_frame(records)
    assert frame.columns.tolist() == [
        "SessionKey", "DriverNumber", "LapNumber", "lap_time.PredictedNextLapTime", "tyre_deg.DegRate",
    ]  # fmt: skip
    view = drift.prediction_view(frame, _laps())
    assert view["lap_time.PredictedNextLapTimeToAnchor"].tolist() == pytest.approx([96.0 - 95.2])
    assert view["tyre_deg.DegRate"].tolist() == [0.05]


def _snapshot(share: float, columns: dict[str, tuple[float, str, float, str]]) -> dict[str, Any]:
    """The shape of Evidently 0.7's Snapshot.dict() (DataDriftPreset, include_tests=True)."""
    metrics: list[dict[str, Any]] = [
        {"config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"count": 1, "share": share}}
    ]
    tests = []
    for name, (score, method, threshold, status) in columns.items():
        metrics.append(
            {
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": name,
                    "method": method,
                    "threshold": threshold,
                },
                "value": score,
            }
        )
        tests.append({"id": "drift", "metric_config": {"params": {"column": name}}, "status": status})
    return {"metrics": metrics, "tests": tests}


def test_read_snapshot() -> None:
    snap = _snapshot(
        0.5,
        {
            "a": (0.31, "Wasserstein distance (normed)", 0.1, "FAIL"),
            "b": (0.02, "Wasserstein distance (normed)", 0.1, "SUCCESS"),
        },
    )
    result = drift.read_snapshot(snap)
    assert result.share == 0.5
    assert result.drifted == ["a"]
    assert [c.score for c in result.columns] == [0.31, 0.02]
    rows = drift.column_summary(result)
    assert rows[0]["column"] == "a" and rows[0]["drifted"] is True
    with pytest.raises(ValueError, match="DriftedColumnsCount"):
        drift.read_snapshot({"metrics": []})


def test_alarm_raises_once_per_crossing() -> None:
    armed, raised = True, []
    for share in (0.5, 0.95, 0.97, 0.85, 0.92, 0.7, 0.91):
        armed, fire = drift.alarm_step(armed, share, threshold=0.9, rearm_below=0.8)
        raised.append(fire)
    # 0.95 raises; 0.97 and 0.92 do not (not re-armed: 0.85 is above 0.8); 0.7 re-arms; 0.91 raises
    assert raised == [False, True, False, False, False, False, True]
    with pytest.raises(ValueError):
        drift.alarm_step(True, 0.5, threshold=0.5, rearm_below=0.6)


def test_drift_alert_is_a_valid_session_wide_alert() -> None:
    result = drift.DriftResult(
        0.75,
        (
            drift.ColumnDrift("a", 0.4, "Wasserstein distance (normed)", 0.1, True),
            drift.ColumnDrift("b", 0.9, "Wasserstein distance (normed)", 0.1, True),
            drift.ColumnDrift("c", 0.2, "Wasserstein distance (normed)", 0.1, True),
            drift.ColumnDrift("d", 0.01, "Wasserstein distance (normed)", 0.1, False),
        ),
    )
    record = drift.drift_alert(7, drift.FEATURES, result, 0.7, _laps(), NOW, top=2)
    alert = schemas.Alert.model_validate(record)
    assert alert.Type == "drift" and alert.DriverNumber == drift.SESSION_WIDE_DRIVER
    assert alert.Value == 0.75 and alert.LapNumber == 6
    assert alert.EventSessionTime == pytest.approx(3600.0 + 95.0 * 6)
    assert "75% of 4 features columns" in alert.Message and "most: b, a" in alert.Message


def test_alert_datasets() -> None:
    assert drift.alert_datasets("features") == {"features"}
    assert drift.alert_datasets(" features, predictions ,") == {"features", "predictions"}
    assert drift.alert_datasets("") == set()
    with pytest.raises(ValueError, match="telemetry"):
        drift.alert_datasets("features,telemetry")
