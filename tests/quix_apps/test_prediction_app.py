"""The prediction app's logic on real lap features of 2023 Las Vegas: what each model is asked,
duplicates, and Prediction records (ok and unavailable).

The services are httpx.MockTransport handlers here (unit tier): they answer with shape-only
values (the row's own LapNumber), not model output. The integration tier uses real services.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from stratx.bentos.lifecycle import feature_build
from stratx.functions import schemas
from stratx.functions.prediction_requests import KEEP_LAPS, new_cache, request_step
from stratx.functions.racedata import RaceData
from stratx.quix_apps.kit.model_client import ModelClient, RetryPolicy
from stratx.quix_apps.predictions import make_step

URLS = {k: f"http://{k}" for k in schemas.MODEL_KEYS}
FAST = RetryPolicy(timeout_s=0.5, retries=1, backoff_s=0.01, max_backoff_s=0.02)
NOW = datetime(2023, 11, 19, 7, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rows(las_vegas: RaceData) -> list[dict[str, Any]]:
    features, _ = feature_build.lap_feature_rows(las_vegas)
    return sorted(features, key=lambda r: r["SessionTime"])


class DictState:
    """The two State methods the step uses (Quix's State needs a running app)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


def test_every_car_but_the_first_on_a_lap_gets_an_overtake_pair_with_the_car_ahead(
    rows: list[dict[str, Any]],
) -> None:
    state, cache = None, new_cache()
    lap10 = []
    for row in rows:
        context = {"EventName": "Las Vegas Grand Prix", "TotalLaps": 50}
        state, requests = request_step(state, row, context, cache)
        if row["LapNumber"] == 10:
            lap10.append((row, requests))
    assert len(lap10) >= 18
    for row, requests in lap10:
        assert requests["lap_time"] == [row] and requests["tyre_deg"] == [row]
        assert requests["pit_window"][-1] == {**row, "RaceLaps": 50, "EventName": "Las Vegas Grand Prix"}
        if row["PositionOnLap"] == 1:
            assert "overtake" not in requests and len(requests["pit_window"]) == 1
        else:
            before = requests["pit_window"][0]  # the car ahead, for the undercut score
            assert len(requests["pit_window"]) == 2 and before["PositionOnLap"] == row["PositionOnLap"] - 1
            assert before["LapNumber"] == row["LapNumber"] and before["RaceLaps"] == 50
            pair = requests["overtake"][0]
            ahead = next(r for r, _ in lap10 if r["PositionOnLap"] == row["PositionOnLap"] - 1)
            assert pair["DriverNumber"] == row["DriverNumber"]
            assert pair["AheadDriverNumber"] == ahead["DriverNumber"]
            assert pair["AheadTyreLife"] == ahead["TyreLife"]


def test_out_of_order_records_still_pair_every_car_with_the_car_ahead_once(
    rows: list[dict[str, Any]],
) -> None:
    import random

    lap = [r for r in rows if r["LapNumber"] == 12]
    shuffled = random.Random(3).sample(lap, len(lap))  # records of different drivers interleave freely
    state, cache, pairs = None, new_cache(), []
    for i, row in enumerate(shuffled):
        context = {"EventName": "Las Vegas Grand Prix"} if i % 2 else None  # SessionInfo known late
        state, requests = request_step(state, row, context, cache)
        pairs += requests.get("overtake", [])
    by_position = {r["PositionOnLap"]: r["DriverNumber"] for r in lap}
    expected = {(by_position[p], by_position[p - 1]) for p in by_position if p > 1}
    got = [(p["DriverNumber"], p["AheadDriverNumber"]) for p in pairs]
    assert sorted(got) == sorted(expected)  # every car behind once, with the right car ahead


def test_drivers_many_laps_apart_still_pair(rows: list[dict[str, Any]]) -> None:
    """A backlog read partition by partition: one half of the field's records, 20 laps of them,
    before the other half's."""
    window = [r for r in rows if 10 <= r["LapNumber"] < 30]
    drivers = sorted({r["DriverNumber"] for r in window})
    first = [r for r in window if r["DriverNumber"] in drivers[::2]]
    second = [r for r in window if r["DriverNumber"] not in drivers[::2]]
    state, cache, pairs = None, new_cache(), 0
    for row in first + second:
        state, requests = request_step(state, row, None, cache)
        pairs += len(requests.get("overtake", []))
    assert pairs == sum(1 for r in window if r["PositionOnLap"] > 1)


def test_a_duplicate_record_asks_nothing_and_the_kept_state_stays_small(rows: list[dict[str, Any]]) -> None:
    state, cache = None, new_cache()
    for row in rows[:600]:
        state, _ = request_step(state, row, None, cache)
    state, again = request_step(state, rows[150], None, cache)
    assert again == {}
    assert len(json.dumps(state)) < 1000  # per-record state-store writes stay cheap
    # the cache is bounded: the race's laps of rows (a backlog may interleave drivers by many
    # laps) and 8 laps per driver for the anomaly references
    assert len(cache["rows"]) <= KEEP_LAPS and max(len(h) for h in cache["history"].values()) <= 8
    # after a restart (empty cache) nothing is asked twice either
    state, again = request_step(state, rows[150], None, new_cache())
    assert again == {}


def echo(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    model = request.url.host
    predictions = [{"Echo": float(r["LapNumber"])} for r in body["rows"]]
    return httpx.Response(
        200, json={"model": model, "version": "5", "rows": len(predictions), "predictions": predictions}
    )


def test_each_model_gives_one_prediction_record_and_a_down_service_gives_unavailable(
    rows: list[dict[str, Any]],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "tyre_deg":
            return httpx.Response(503, text="down for the test")
        return echo(request)

    state = DictState()
    with ModelClient(URLS, FAST, seed=0, transport=httpx.MockTransport(handler)) as client:
        step = make_step(client, lambda _key: {"EventName": "Las Vegas Grand Prix"}, now=lambda: NOW)
        outputs = [step(dict(r), state) for r in rows[:60]]
        again = step(dict(rows[30]), state)
    assert again == {"duplicate": True}
    later = outputs[-1]["predictions"]
    assert set(later) >= {"lap_time", "tyre_deg", "pit_window", "anomaly"}
    for key, records in later.items():
        assert len(records) == 1  # in crossing order each record completes one pair at most
        record = schemas.Prediction.model_validate(records[0])
        assert record.Model == key and record.DriverNumber == rows[59]["DriverNumber"]
        assert record.EventSessionTime == rows[59]["SessionTime"] and record.IngestedAt == NOW
        if key == "tyre_deg":
            assert record.Status == "unavailable" and record.Reason and "503" in record.Reason
            assert record.Values == {}
        else:
            assert record.Status == "ok" and record.ModelVersion == "5"
            assert record.Values["Echo"] == rows[59]["LapNumber"]
    overtakes = [o["predictions"]["overtake"][0] for o in outputs if "overtake" in o.get("predictions", {})]
    assert overtakes and all(r["OtherDriverNumber"] for r in overtakes)


def test_a_record_that_is_not_lap_features_goes_to_the_dead_letters() -> None:
    with ModelClient(URLS, FAST, seed=0, transport=httpx.MockTransport(echo)) as client:
        step = make_step(client, lambda _key: {}, now=lambda: NOW)
        out = step({"SessionKey": 1, "DriverNumber": "1", "LapNumber": 0}, DictState())
    letter = schemas.DeadLetter.model_validate(out["dead_letter"])
    assert letter.Stage == "predictions" and letter.Reason.startswith("LapFeatures schema")


def run_step(rows: list[dict[str, Any]]) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[str]]:
    """Each row through the app's step with echoing services; the outputs and the models asked."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        return echo(request)

    state = DictState()
    with ModelClient(URLS, FAST, seed=0, transport=httpx.MockTransport(handler)) as client:
        step = make_step(client, lambda _key: {"EventName": "Las Vegas Grand Prix"}, now=lambda: NOW)
        return [(row, step(dict(row), state)) for row in rows], asked


def statuses(
    rows: list[dict[str, Any]], outputs: list[tuple[dict[str, Any], dict[str, Any]]]
) -> dict[str, int]:
    """Counts of ok / unavailable records; fails on an ``ok`` record about a row whose inputs are
    missing, and on an ``unavailable`` one for missing inputs without the rule's reason."""
    from stratx.functions.models.inputs import missing

    by_lap = {(r["DriverNumber"], r["LapNumber"]): r for r in rows}
    seen = {"ok": 0, "unavailable": 0}
    for _, out in outputs:
        for key, records in out["predictions"].items():
            for rec in records:
                record = schemas.Prediction.model_validate(rec)
                seen[record.Status] += 1
                # the row it is about (a pair row carries the car behind's IntervalAhead)
                lacking = missing(key, by_lap[(record.DriverNumber, record.LapNumber)])
                if record.Status == "ok":
                    assert lacking is None, f"{key} lap {record.LapNumber} emitted ok without its inputs"
                else:
                    assert record.Reason == lacking and record.Values == {} and record.ModelVersion is None
    return seen


def test_a_model_whose_inputs_are_missing_is_not_asked_and_says_why(rows: list[dict[str, Any]]) -> None:
    """Two real cases. A live session before its stint data (the OpenF1 laps of 2023 Las Vegas,
    normalised without the ``/stints`` records): no tyre life, so tyre_deg and pit_window answer
    ``unavailable`` with the reason, never a number, and are not asked. The FastF1 laps of the same
    race: lap 1 has no LapTime (and no clean lap before it), so lap_time is unavailable there."""
    from tests.functions.models.test_model_inputs import openf1_rows

    live = sorted(openf1_rows(with_stints=False), key=lambda r: r["SessionTime"])[:80]
    outputs, asked = run_step(live)
    assert "tyre_deg" not in asked and "pit_window" not in asked and "lap_time" in asked
    seen = statuses(live, outputs)
    assert seen["ok"] > 100 and seen["unavailable"] == 2 * len(live)
    for _, out in outputs:
        for key in ("tyre_deg", "pit_window"):
            assert out["predictions"][key][0]["Reason"].startswith("no tyre life for this car")

    first = rows[:40]  # lap 1 of every car, then lap 2
    outputs, asked = run_step(first)
    seen = statuses(first, outputs)
    lap_one = [out["predictions"]["lap_time"][0] for row, out in outputs if row["LapNumber"] == 1]
    assert len(lap_one) == 20 and all("no lap time" in (p["Reason"] or "") for p in lap_one)
    assert seen["unavailable"] == 20 and "tyre_deg" in asked
