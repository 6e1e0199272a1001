"""The stream backtest's pure scoring (functions/backtest.py, functions/backtest_alerts.py) on the
real 2023 Bahrain GP: hindsight events (stops, passes, retirements), alert precision/recall/lead,
parity and the model metrics on the same driver-laps, coverage and records for retired cars."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from stratx.functions import backtest, backtest_alerts
from stratx.functions.models import lap_time, tyre_deg_labels
from stratx.functions.racedata import RaceData

from ..conftest import DATA_DIR

pytestmark = pytest.mark.slow  # whole-race corpus (build_corpus on 2023 Bahrain)
RACE = (2023, "Bahrain Grand Prix")
SESSION = 7953


@pytest.fixture(scope="module")
def corpus(bahrain: RaceData) -> Any:
    from stratx.bentos.lifecycle import training

    return training.build_corpus(
        [bahrain], progress=False, results_files=training.default_results_files(DATA_DIR)
    )


def test_retirements_are_the_real_ones(corpus: Any) -> None:
    ret = backtest_alerts.retirements(corpus.raw_laps, corpus.results)
    stopped = dict(zip(ret.DriverNumber, ret.RetiredLap.astype(int), strict=True))
    # classification: PIA 13 laps, LEC 39, OCO 41 completed; each stopped on the next lap
    assert stopped == {"81": 14, "16": 40, "31": 42}


def test_retirements_without_a_classification_use_the_laps(corpus: Any) -> None:
    ret = backtest_alerts.retirements(corpus.raw_laps, pd.DataFrame())
    assert {"81", "16"} <= set(ret.DriverNumber)  # stopped far short of the leader's 57 laps
    assert "1" not in set(ret.DriverNumber)


def test_stops_and_passes_on_real_laps(corpus: Any) -> None:
    stops = backtest_alerts.stops(corpus.raw_laps)
    assert len(stops) == int(corpus.raw_laps.PitInTime.notna().sum()) > 30
    passes = backtest_alerts.passes(corpus.raw_laps)
    assert len(passes) > 20
    pit = corpus.raw_laps.PitInTime.notna() | corpus.raw_laps.PitOutTime.notna()
    pitting = set(
        zip(corpus.raw_laps.DriverNumber[pit].astype(str), corpus.raw_laps.LapNumber[pit], strict=True)
    )
    # a pass is credited to the car that gained places on track: mostly on laps it did not pit
    gains = set(zip(passes.DriverNumber, passes.LapNumber, strict=True))
    assert len(gains - pitting) >= 0.8 * len(gains)


def alert(driver: str, lap: int, kind: str, value: float | None = None) -> dict[str, Any]:
    return {
        "SessionKey": SESSION,
        "DriverNumber": driver,
        "LapNumber": lap,
        "Type": kind,
        "Severity": "info",
        "Message": f"{kind} for #{driver}",
        "Value": value,
        "EventSessionTime": 3600.0 + 95 * lap,
    }


def test_alert_scoring_on_real_events(corpus: Any) -> None:
    events = backtest_alerts.race_events(corpus.raw_laps, corpus.results, corpus.race_control, corpus.laps)
    stops = events["stop"]
    ver = sorted(stops[stops.DriverNumber == "1"].LapNumber.astype(int))
    records = [
        alert("1", ver[0] - 2, "pit_window_open", value=ver[0] + 1),  # the stop falls inside: a hit
        alert("1", 3, "pit_window_open", value=5),  # no stop on laps 4-5: a miss
        alert("16", 38, "anomaly"),  # LEC stopped on lap 40: lead 2 laps
        alert("16", 39, "a_new_rule"),  # unknown types are counted, not scored
    ]
    frame = backtest.alerts_frame(records, {SESSION: RACE})
    hours = backtest_alerts.race_hours(corpus.raw_laps)
    assert 1.4 < hours["2023 Bahrain Grand Prix"] < 1.8
    scored = backtest_alerts.score_alerts(frame, events, hours)
    pit = scored["pit_window_open"]
    assert pit["count"] == 2 and pit["precision"] == 0.5 and pit["lead_laps_median"] == 2
    assert pit["recall"] == pytest.approx(1 / len(stops)) and pit["recall_events"] == len(stops)
    assert scored["anomaly"]["precision"] == 1.0 and scored["anomaly"]["lead_laps_median"] == 2
    assert scored["a_new_rule"]["count"] == 1 and scored["a_new_rule"]["precision"] is None
    report = backtest_alerts.retirement_report(
        backtest_alerts.retirements(corpus.raw_laps, corpus.results), frame
    )
    by_car = {r["DriverNumber"]: r for r in report}
    assert by_car["16"]["lead_laps"] == 2 and by_car["81"]["first_alert_lap"] is None


def test_cliff_events_are_what_the_cliff_models_label_looks_ahead_for(corpus: Any) -> None:
    laps = corpus.laps.assign(DriverNumber=lambda f: f["DriverNumber"].astype(str))
    events = backtest_alerts.cliff_laps(laps)
    assert len(events) >= 10
    rows = laps.merge(
        events.assign(Event=True), how="left", on=["Year", "EventName", "DriverNumber", "LapNumber"]
    )
    hit = rows[rows["Event"].eq(True)]
    assert hit["IsClean"].all() and hit["Compound"].isin(tyre_deg_labels.DRY).all()
    assert ((hit["IntervalAhead"] > tyre_deg_labels.FREE_AIR_S) | hit["IntervalAhead"].isna()).all()
    first = backtest_alerts.first_of_runs(events)
    assert 0 < len(first) <= len(events)
    # a lap labelled CliffNext3 mostly has a cliff lap in the next 3 laps (the label measures them
    # against its own lap's reference, the event against the lap before); a lap labelled not, almost never
    keys = set(zip(events.DriverNumber, events.LapNumber, strict=True))
    ahead = [
        any((d, n + k) in keys for k in (1, 2, 3))
        for d, n in zip(laps.DriverNumber, laps.LapNumber, strict=True)
    ]
    label = tyre_deg_labels.cliff_labels(laps)[tyre_deg_labels.CLIFF]
    agree = pd.DataFrame({"label": label, "ahead": ahead}).dropna().groupby("label")["ahead"].mean()
    assert agree[True] >= 0.5 and agree[False] <= 0.02, agree  # corpus: 0.80 and 0.005


def test_bursts_are_checked_against_what_followed(corpus: Any) -> None:
    """Six cars stopped on lap 40 of the 2023 Bahrain GP, under the VSC: five windows announced on
    lap 39 for five of them and one for VER (no stop) is a burst the data holds more events for."""
    records = [alert(car, 39, "pit_window_open", value=42) for car in ("10", "2", "20", "22", "23", "1")]
    records.append(alert("27", 20, "pit_window_open", value=23))  # a lone alert: no burst
    frame = backtest.alerts_frame(records, {SESSION: RACE})
    events = backtest_alerts.race_events(corpus.raw_laps, corpus.results, corpus.race_control, corpus.laps)
    scored = backtest_alerts.score_alerts(frame, events, backtest_alerts.race_hours(corpus.raw_laps))
    bursts = scored["pit_window_open"]["bursts"]
    assert bursts == {"laps": 1, "alerts": 6, "came_true": 5, "laps_with_more_events_than_the_limit": 1}


def stream_records(rows: pd.DataFrame, values: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "SessionKey": SESSION,
            "DriverNumber": str(r.DriverNumber),
            "LapNumber": int(r.LapNumber),
            "Model": "lap_time",
            "Status": "ok",
            "Values": {"PredictedNextLapTime": v},
            "EventSessionTime": float(r.SessionTime),
        }
        for r, v in zip(rows.itertuples(index=False), values, strict=True)
    ]


def test_model_scores_and_parity_on_the_same_driver_laps(corpus: Any) -> None:
    scored = lap_time.next_lap_targets(corpus.laps)
    scored = scored[lap_time.trainable(scored)].copy()
    scored["Predicted"] = lap_time.anchor(scored).to_numpy()  # any predictor: the parity is the point
    values = list(scored["Predicted"])
    first_scored = int(lap_time.evaluation_rows(scored)["all"].to_numpy().argmax())
    values[first_scored] += 0.5  # one streamed value of a scored row differs
    half = scored.iloc[: len(scored) // 2]
    stream = backtest.predictions_frame(stream_records(half, values[: len(half)]), {SESSION: RACE})
    score = backtest.model_scores("lap_time", scored, {}, stream)
    assert score.matched_rows == len(half)
    p = score.parity["PredictedNextLapTime"]
    assert p["count"] == len(half) and p["max_abs_diff"] == pytest.approx(0.5)
    assert p["equal_share"] == pytest.approx((len(half) - 1) / len(half))
    # metrics on the matched laps only, both sides: the persistence baseline is the same
    assert score.offline["persistence_all_mae"] == score.streamed["persistence_all_mae"]
    assert score.offline["all_laps"] == score.streamed["all_laps"] <= len(half)
    assert score.streamed["model_all_mae"] > score.offline["model_all_mae"]


def test_coverage_and_records_for_retired_cars(corpus: Any) -> None:
    laps = corpus.laps[corpus.laps.DriverNumber.astype(str) == "16"].head(3)
    records = []
    for model in ("lap_time", "tyre_deg", "pit_window", "anomaly"):
        for r in stream_records(laps, [90.0] * len(laps)):
            records.append({**r, "Model": model})
    records.append({**records[0], "LapNumber": 45, "EventSessionTime": 9000.0})  # LEC stopped on lap 40
    stream = backtest.predictions_frame(records, {SESSION: RACE, 1: (2023, "Other")})
    cov = backtest.coverage(stream, corpus.laps)
    assert cov["driver_laps"] == 4 and cov["all_per_lap_models"] == 3 and cov["all_five"] == 0
    # the completed laps the stream reached (up to LEC's record at 9,000 s) that got no record at all
    done = corpus.laps[corpus.laps["LapTime"].notna() & (corpus.laps["SessionTime"] <= 9000.0)]
    assert cov["completed_laps"] == len(done) > 3
    assert cov["completed_laps_without_record"] == len(done) - 3
    retired = backtest_alerts.retirements(corpus.raw_laps, corpus.results)
    after = backtest.after_retirement(stream, retired)
    assert after == {"after_retired_lap": 1.0, "after_retired_time": 1.0}


def test_records_of_other_sessions_are_ignored() -> None:
    frame = backtest.predictions_frame([{"SessionKey": 1, "Model": "lap_time"}], {SESSION: RACE})
    assert frame.empty


def test_report_files(corpus: Any, tmp_path: Any) -> None:
    from stratx.quix_apps import backtest_report

    scored = lap_time.next_lap_targets(corpus.laps)
    scored = scored[lap_time.trainable(scored)].copy()
    scored["Predicted"] = lap_time.anchor(scored).to_numpy()
    stream = backtest.predictions_frame(stream_records(scored, list(scored["Predicted"])), {SESSION: RACE})
    model = backtest.model_scores("lap_time", scored, {}, stream)
    alerts = backtest.alerts_frame([alert("16", 38, "anomaly")], {SESSION: RACE})
    events = backtest_alerts.race_events(corpus.raw_laps, corpus.results, corpus.race_control, corpus.laps)
    hours = backtest_alerts.race_hours(corpus.raw_laps)
    retired = backtest_alerts.retirements(corpus.raw_laps, corpus.results)
    result = {
        "races": ["2023 Bahrain Grand Prix Race (session 7953)"],
        "race_hours": hours,
        "models": {"lap_time": model.as_dict(), "anomaly": {"note": "offline evaluation failed: x"}},
        "alerts": backtest_alerts.score_alerts(alerts, events, hours),
        "events": {k: len(v) for k, v in events.items()},
        "retirements": backtest_alerts.retirement_report(retired, alerts),
        "coverage": {
            **backtest.coverage(stream, corpus.laps),
            "records_after_retirement": {
                "predictions": backtest.after_retirement(stream, retired),
                "alerts": backtest.after_retirement(alerts, retired),
            },
        },
        "timings": [
            {
                "race": "2023 Bahrain Grand Prix",
                "events": 1,
                "driver_laps": 1,
                "replay_s": 1.0,
                "until_last_record_s": 2.0,
            }
        ],
        "_frames": {"pairs": {"lap_time": model.pairs}, "alerts": alerts, "events": events},
    }
    paths = backtest_report.write(result, tmp_path)
    md = paths[0].read_text()
    assert "| lap_time | PredictedNextLapTime |" in md and "| anomaly | 1 |" in md
    assert (tmp_path / "backtest_parity.png").is_file() and (tmp_path / "backtest_alerts.png").is_file()
    saved = json.loads(paths[1].read_text())
    assert saved["models"]["lap_time"]["parity"]["PredictedNextLapTime"]["equal_share"] == 1.0
    assert any("predictions for retired cars: 0" in line for line in backtest_report.summary_lines(saved))
