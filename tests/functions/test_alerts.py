"""Alert rules: hysteresis (no storms), re-arming, pit-window open/closing once, scope gating,
burst limit, driver names, schema contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stratx.functions import schemas
from stratx.functions.alerts import BURST_LIMIT, PIT_GRACE_LAPS, REARM_LAPS, alert_step, burst_allow

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
    probs = [0.1, 0.40, 0.30, 0.45, 0.25, 0.5, 0.3]  # never below the 0.21 clear level after raising
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


def test_a_tyre_cliff_needs_a_clean_lap_of_a_stint_with_a_reference() -> None:
    # a cliff is measured against the median of the stint's last 3 clean laps: none can come
    # before there are 3, so the model's high probabilities on the first laps raise nothing, nor
    # does an unclean lap (traffic, a yellow); the first clean lap with a reference does
    def lap(n: int, clean_laps: int, clean: bool = True) -> dict[str, Any]:
        return prediction(
            "tyre_deg", n, CliffProbability=0.5, Stint=2, IsClean=clean, StintCleanLaps=clean_laps
        )

    records = [lap(20, 0, clean=False), lap(21, 1), lap(22, 2), lap(23, 3, clean=False), lap(24, 3)]
    assert [a["LapNumber"] for a in fold(records)] == [24]


def test_a_new_stint_starts_the_tyre_cliff_rule_afresh() -> None:
    # stint 1 ends with its alert still active (p never fell below the clear level); the new set
    # of tyres is a new question, announced once its own reference exists
    def lap(n: int, stint: int, clean_laps: int) -> dict[str, Any]:
        return prediction(
            "tyre_deg", n, CliffProbability=0.5, Stint=stint, IsClean=True, StintCleanLaps=clean_laps
        )

    records = [lap(10, 1, 8), lap(11, 1, 9), lap(12, 2, 1), lap(13, 2, 2), lap(14, 2, 3), lap(15, 2, 4)]
    assert [a["LapNumber"] for a in fold(records)] == [10, 14]


def test_the_prediction_record_carries_what_the_cliff_rule_reads() -> None:
    from stratx.functions import prediction_requests

    row = {"SessionKey": 1, "DriverNumber": "1", "LapNumber": 30, "SessionTime": 5000.0, "Driver": "VER"}
    row |= {"Stint": 2, "IsClean": False, "StintCleanLaps": 7, "GreenClean": True, "Neutralised": False}
    values = prediction_requests.predictions(row, "tyre_deg", "4", {"CliffProbability": 0.5}, None, NOW, NOW)
    assert {"IsClean": False, "StintCleanLaps": 7, "Stint": 2}.items() <= values["Values"].items()
    assert fold([{**values, "EventSessionTime": 5000.0}]) == []  # not a clean lap


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
    assert "#16" in alerts[1]["Message"]  # no driver table: the car number


def test_overtake_alerts_name_the_other_driver() -> None:
    alerts = fold([prediction("overtake", 20, other="44", OvertakeProbability1Lap=0.6, OtherDriver="HAM")])
    assert alerts[0]["Message"].startswith("VER: likely to pass HAM next lap")
    assert "#" not in alerts[0]["Message"]


def test_pit_window_opens_once_when_a_stop_becomes_likely_and_warns_before_it_closes() -> None:
    # the model's window always lies ahead of the lap (in-laps after it): the rule keys on the
    # stop probability and announces [open, close + PIT_GRACE_LAPS]; the window shifting does not
    # re-announce it
    p = [0.05, 0.12, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5]  # laps 14-22
    records = [
        prediction(
            "pit_window", 14 + i, PitProbability3Laps=q, WindowOpenLap=16 + i // 3, WindowCloseLap=18 + i // 3
        )
        for i, q in enumerate(p)
    ]
    alerts = fold(records)
    close = 18 + PIT_GRACE_LAPS  # the window announced on lap 15: [16, 18] plus the grace laps
    assert [(a["Type"], a["LapNumber"]) for a in alerts] == [
        ("pit_window_open", 15),
        ("pit_window_closing", close - 1),
    ]
    assert f"laps 16-{close}" in alerts[0]["Message"] and alerts[0]["Value"] == close


def test_a_new_stint_rearms_the_pit_window() -> None:
    records = [
        prediction("pit_window", 10, PitProbability3Laps=0.4, WindowOpenLap=11, WindowCloseLap=13, Stint=1),
        prediction("pit_window", 12, PitProbability3Laps=0.4, WindowOpenLap=13, WindowCloseLap=14, Stint=2),
    ]
    assert [a["LapNumber"] for a in fold(records)] == [10, 12]


def test_anomaly_never_fires_on_a_lap_out_of_scope() -> None:
    records = [
        prediction("anomaly", 40, AnomalyScore=0.9995, AnomalyFlag=True, GreenClean=False, Neutralised=True),
        prediction("anomaly", 41, AnomalyScore=0.9995, AnomalyFlag=True, GreenClean=False),  # pit lap
        prediction("overtake", 40, other="44", OvertakeProbability1Lap=0.9, Neutralised=True),
        prediction("tyre_deg", 40, CliffProbability=0.9, Neutralised=True),
    ]
    assert fold(records) == []


def test_no_more_than_three_alerts_of_one_type_on_one_lap_and_the_rest_wait() -> None:
    counts: dict[str, int] = {}
    states: dict[str, Any] = {}
    raised = []
    for lap in (20, 21):
        for car in ("1", "11", "16", "44", "55"):
            record = {**prediction("tyre_deg", lap, CliffProbability=0.5), "DriverNumber": car}
            states[car], out = alert_step(
                states.get(car), record, NOW, lambda kind, n: burst_allow(counts, 9472, kind, n)
            )
            raised += [(a["LapNumber"], a["DriverNumber"]) for a in out]
    assert [c for lap, c in raised if lap == 20] == ["1", "11", "16"]  # BURST_LIMIT
    assert [c for lap, c in raised if lap == 21] == ["44", "55"]  # deferred, not lost
    assert BURST_LIMIT == 3


def test_pit_windows_opening_under_a_neutralisation_are_not_held_by_the_burst_limit() -> None:
    """Teams stop under a safety car on purpose: every car whose stop became likely on the SC lap
    is announced on that lap; on a green lap the limit holds (SYNTHETIC probabilities)."""
    raised: dict[bool, list[str]] = {}
    for neutralised in (False, True):
        counts: dict[str, int] = {}
        raised[neutralised] = []
        for car in ("1", "11", "16", "44", "55", "63"):
            record = {
                **prediction(
                    "pit_window",
                    20,
                    PitProbability3Laps=0.4,
                    WindowOpenLap=21,
                    WindowCloseLap=23,
                    Neutralised=neutralised,
                ),
                "DriverNumber": car,
            }
            _, out = alert_step(None, record, NOW, lambda kind, n, c=counts: burst_allow(c, 9472, kind, n))
            raised[neutralised] += [a["DriverNumber"] for a in out if a["Type"] == "pit_window_open"]
    assert raised[False] == ["1", "11", "16"]
    assert raised[True] == ["1", "11", "16", "44", "55", "63"]


def test_anomaly_alerts_follow_the_models_own_flag() -> None:
    scores = [(0.97, False), (0.9991, True), (0.999, True), (0.5, False), (0.99, True)]
    records = [
        prediction("anomaly", 20 + i, AnomalyScore=s, AnomalyFlag=f, AnomalySignal="SpeedST")
        for i, (s, f) in enumerate(scores)
    ]
    alerts = fold(records)
    # one irregular lap: a warning; flagged again on the next lap: critical, once; re-armed at 24
    assert [(a["LapNumber"], a["Severity"]) for a in alerts] == [
        (21, "warning"),
        (22, "critical"),
        (24, "warning"),
    ]
    assert "SpeedST" in alerts[0]["Message"] and "check the car" not in alerts[0]["Message"]
    assert "2 laps running, check the car" in alerts[1]["Message"]


def test_anomaly_escalates_only_on_the_very_next_lap_and_once() -> None:
    def lap(n: int, flag: bool, **extra: Any) -> dict[str, Any]:
        return prediction("anomaly", n, AnomalyScore=0.999 if flag else 0.5, AnomalyFlag=flag, **extra)

    # flagged on 30, an in-lap (out of scope) on 31, flagged on 32: not two laps running
    gap = fold([lap(30, True), lap(31, True, GreenClean=False), lap(32, True)])
    assert [(a["LapNumber"], a["Severity"]) for a in gap] == [(30, "warning")]
    # flagged on four laps running: one warning, one critical, nothing more
    run = fold([lap(n, True) for n in range(40, 44)])
    assert [(a["LapNumber"], a["Severity"]) for a in run] == [(40, "warning"), (41, "critical")]


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
        prediction("pit_window", 30, PitProbability3Laps=0.3, WindowOpenLap=31, WindowCloseLap=33),
        prediction("overtake", 30, other="11", OvertakeProbability1Lap=0.9),
    ],
)
def test_every_alert_fits_the_schema(record: dict[str, Any]) -> None:
    alerts = fold([record])
    assert len(alerts) == 1
    alert = schemas.Alert.model_validate(alerts[0])
    assert alert.Model == record["Model"] and alert.LapNumber == 30 and alert.Message.startswith("VER: ")


def test_a_prediction_record_carries_the_names_and_scope_the_rules_read() -> None:
    from stratx.functions.prediction_requests import predictions
    from stratx.quix_apps.predictions import driver_names

    info = {
        "Drivers": [
            {"DriverNumber": "44", "Abbreviation": "HAM"},
            {"DriverNumber": "1", "Abbreviation": "VER"},
        ]
    }
    row = {"SessionKey": 9472, "DriverNumber": "1", "Driver": "VER", "LapNumber": 30, "SessionTime": 5000.0,
           "Stint": 2, "GreenClean": True, "Neutralised": False}  # fmt: skip
    record = predictions(
        row,
        "overtake",
        "1",
        {"OvertakeProbability1Lap": 0.8},
        None,
        NOW,
        NOW,
        other="44",
        names=driver_names(info),
    )
    schemas.Prediction.model_validate(record)
    assert {"Driver": "VER", "OtherDriver": "HAM", "GreenClean": True, "Stint": 2}.items() <= record[
        "Values"
    ].items()
    _, alerts = alert_step(None, record, NOW)
    assert alerts[0]["Message"] == "VER: likely to pass HAM next lap (p=0.80)"


def test_no_alert_about_a_lap_that_ended_after_the_chequered_flag(bahrain: Any) -> None:
    # 2023 Bahrain: the chequered flag from race control as the alerts app reads it; an alert about
    # VER's lap 56 (before it) stays, one about a lap ending after it does not
    import json

    from stratx.functions import alerts, ingest

    finished: dict[int, float] = {}
    for record in ingest.table_records(bahrain, "race_control"):
        alerts.chequered(json.loads(ingest.encode(record)), finished)
    flag = finished[bahrain.meta.session_key]
    laps = bahrain.table("laps")
    ver = laps[laps.Driver == "VER"].set_index("LapNumber")["Time"]
    assert ver[56] < flag <= ver[57] + 1.0
    alert = {"SessionKey": bahrain.meta.session_key, "DriverNumber": "1"}
    assert alerts.before_finish({**alert, "EventSessionTime": float(ver[56])}, finished)
    assert not alerts.before_finish({**alert, "EventSessionTime": flag + 20.0}, finished)
    assert alerts.before_finish({**alert, "SessionKey": 1, "EventSessionTime": flag + 20.0}, finished)
