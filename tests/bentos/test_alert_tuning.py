"""The alert tuning picks its settings by the targets, and scores with the backtest's own scorer
(SYNTHETIC candidate rows and alerts: the rule under test is the choice, not a model)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from stratx.bentos.lifecycle import alert_tuning


def candidate(raise_at: float, precision: float, recall: float, races_precise: float = 0.5) -> dict[str, Any]:
    return {"raise_at": raise_at, "precision": precision, "recall": recall, "races_precise": races_precise}


def test_the_pit_window_setting_keeps_the_largest_margin_over_both_targets() -> None:
    rows = [
        candidate(0.05, 0.49, 0.90),  # misses precision
        candidate(0.10, 0.59, 0.78),  # margins 0.09 and 0.08: the most robust
        candidate(0.12, 0.62, 0.74),  # the most precise that meets recall, at its edge
        candidate(0.20, 0.75, 0.50),  # misses recall
    ]
    assert alert_tuning.choose("pit_window_open", rows)["raise_at"] == 0.10


def test_overtake_takes_the_most_races_over_the_precision_target_then_the_lowest_threshold() -> None:
    rows = [candidate(0.5, 0.60, 0.3, 0.77), candidate(0.6, 0.65, 0.3, 0.87), candidate(0.7, 0.70, 0.2, 0.87)]
    assert alert_tuning.choose("overtake_likely", rows)["raise_at"] == 0.6


def test_tyre_cliff_takes_the_best_f1_within_the_broadcast_budget() -> None:
    def rate(row: dict[str, Any], per_hour: float) -> dict[str, Any]:
        return {**row, "per_race_hour": per_hour}

    rows = [
        rate(candidate(0.25, 0.16, 0.21), alert_tuning.CLIFF_PER_RACE_HOUR + 2),  # best F1, too many alerts
        rate(candidate(0.30, 0.17, 0.15), alert_tuning.CLIFF_PER_RACE_HOUR - 3),
        rate(candidate(0.35, 0.18, 0.09), alert_tuning.CLIFF_PER_RACE_HOUR - 8),
    ]
    assert alert_tuning.choose("tyre_cliff", rows)["raise_at"] == 0.30
    assert alert_tuning.choose("tyre_cliff", rows[:1]) is None


def test_scores_are_the_backtests_per_race_and_pooled() -> None:
    events = {
        "stop": pd.DataFrame(
            {"Year": [2023, 2024], "EventName": ["A", "B"], "DriverNumber": ["1", "1"], "LapNumber": [12, 30]}
        )
    }
    truth = alert_tuning.Truth(events, {"2023 A": 1.5, "2024 B": 1.5})
    found = pd.DataFrame(
        {
            "Year": [2023, 2024, 2024],
            "EventName": ["A", "B", "B"],
            "DriverNumber": ["1", "1", "1"],
            "LapNumber": [10, 10, 20],
            "Type": "pit_window_open",
            "Severity": "info",
            "Value": [14.0, 14.0, 24.0],  # the announced window's last lap
        }
    )
    pit = alert_tuning.score(found, truth)["pit_window_open"]
    assert pit["count"] == 3 and pit["precision"] == 1 / 3 and pit["recall"] == 0.5
    assert pit["races_precise"] == 0.5  # race A: 1 of 1 came true; race B: 0 of 2
    assert pit["per_race_hour"] == 1.0


def test_the_safety_car_rule_takes_the_most_stops_over_the_precision_floor() -> None:
    from stratx.bentos.lifecycle import alert_tuning_neutral as neutral

    rows = [
        {"sc_min_life": 0.0, "vsc_min_life": 5.0, "precision": 0.47, "stops_announced": 230},  # too imprecise
        {"sc_min_life": 3.0, "vsc_min_life": 10.0, "precision": 0.56, "stops_announced": 223},
        {"sc_min_life": 5.0, "vsc_min_life": 10.0, "precision": 0.59, "stops_announced": 213},
    ]
    assert neutral.choose(rows) == rows[1]
    assert neutral.choose(rows[:1]) is None


def test_the_safety_car_rule_is_scored_on_real_deployments(las_vegas: Any) -> None:
    # 2023 Las Vegas: the lap-26 safety car's windows, scored against the race's real stops
    from stratx.bentos.lifecycle import alert_tuning_neutral as neutral
    from stratx.bentos.lifecycle import training
    from stratx.functions import alerts

    deployed = neutral.deployments([las_vegas])
    assert [d["Kind"] for _, _, d in deployed] == ["VSC", "SC", "SC"]
    truth = alert_tuning.Truth.of(training.build_corpus([las_vegas], progress=False))
    found = neutral.replay(deployed, alerts.RULES)
    s = neutral.score(found, truth)
    assert s["count"] == len(found) > 0 and s["precision"] >= 0.5 and s["stops_announced"] >= 10
    rows = neutral.tune(deployed, truth)
    assert len(rows) == len(neutral.SC_LIFE_GRID) * len(neutral.VSC_LIFE_GRID)
