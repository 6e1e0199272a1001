"""Safety-car / VSC deployments (functions/neutralisations.py) and the pit-window alerts they open
(functions/alerts.py: neutralisation_alerts), on the real 2023 Las Vegas GP: a VSC at 946 s and a
safety car at 1164 s in the first laps, and the lap-26 safety car at 3682 s, under which ten cars
stopped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stratx.functions import alerts, ingest, neutralisations, race_state, schemas
from stratx.functions.racedata import RaceData

NOW = datetime(2023, 11, 19, 7, 0, tzinfo=UTC)
# a lap record that ends after every synthetic deployment below (the deployments wait for one)
LAP = {"SessionKey": 1, "DriverNumber": "1", "LapNumber": 1, "SessionTime": 9000.0, "LapTime": 100.0}
LAP_26_SC = 3681.656  # race control "SAFETY CAR DEPLOYED" (track status '4' follows at 3682.070)


def _events(race: RaceData) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for table, kind in (
        ("laps", race_state.LAPS),
        ("race_control", race_state.RACE_CONTROL),
        ("track_status", race_state.TRACK_STATUS),
    ):
        out += [(kind, json.loads(ingest.encode(r))) for r in ingest.table_records(race, table)]
    return sorted(out, key=lambda e: float(e[1]["SessionTime"]))


@pytest.fixture(scope="module")
def deployments(las_vegas: RaceData) -> list[dict[str, Any]]:
    state = None
    found = []
    for kind, record in _events(las_vegas):
        state, _ = race_state.retire_step(state, kind, record)
        state, out = neutralisations.neutral_step(state, kind, record)
        found += out
    return found


def test_each_deployment_goes_out_once(deployments: list[dict[str, Any]]) -> None:
    # race control and track status both announce each one: one record per period
    assert [(d["Kind"], round(d["SessionTime"], 3), d["Source"]) for d in deployments] == [
        ("VSC", 946.656, "race_control"),
        ("SC", 1164.656, "race_control"),
        ("SC", LAP_26_SC, "race_control"),
    ]
    for d in deployments:
        schemas.Neutralisation.model_validate(d)


def test_the_cars_are_as_the_laps_showed_them_before_the_deployment(
    las_vegas: RaceData, deployments: list[dict[str, Any]]
) -> None:
    laps = las_vegas.table("laps")
    sc = deployments[2]
    cars = {c["Driver"]: c for c in sc["Cars"]}
    assert "NOR" not in cars and len(cars) == 19  # NOR crashed on lap 3: retired, not listed
    for driver, car in cars.items():
        own = laps[(laps.Driver == driver) & (laps.Time <= sc["SessionTime"])]
        last = own.sort_values("LapNumber").iloc[-1]
        assert car["LapNumber"] == int(last.LapNumber)
        assert car["TyreLife"] == float(last.TyreLife) and car["Compound"] == last.Compound
    assert cars["VER"]["LapNumber"] == 25 and cars["VER"]["TyreLife"] == 9.0


def test_the_safety_car_opens_windows_that_came_true(
    las_vegas: RaceData, deployments: list[dict[str, Any]]
) -> None:
    laps = las_vegas.table("laps")
    stopped = set(laps[(laps.LapNumber.between(26, 28)) & laps.PitInTime.notna()].Driver)
    raised = alerts.neutralisation_alerts(deployments[2], {}, NOW)
    named = {a["Message"].split(":")[0] for a in raised}
    for a in raised:
        schemas.Alert.model_validate(a)
        assert a["Type"] == "pit_window_open" and a["Value"] == a["LapNumber"] + 3
    assert {"VER", "PER", "ALO", "STR", "MAG", "ZHO", "HUL", "HAM", "SAI", "RUS"} <= stopped
    assert stopped <= named  # every stop under it was announced while the car was on the lap
    young = {c["Driver"] for c in deployments[2]["Cars"] if c["TyreLife"] < alerts.SC_MIN_TYRE_LIFE}
    assert young and not (young & named)  # tyres under 5 laps old: no cheap-stop alert
    assert len(stopped & named) / len(named) >= 0.5


def test_a_window_is_announced_once_whichever_rule_comes_first(deployments: list[dict[str, Any]]) -> None:
    sc = deployments[2]
    ver = next(c for c in sc["Cars"] if c["Driver"] == "VER")
    key = (sc["SessionKey"], ver["DriverNumber"])
    # the model opened VER's window first: the deployment adds none for him
    windows = {key: {"open": 24, "close": 30, "closing": False, "stint": ver["Stint"]}}
    assert "VER" not in {a["Message"].split(":")[0] for a in alerts.neutralisation_alerts(sc, windows, NOW)}
    # the deployment first: the model's next forecast of the same stint opens nothing
    windows = {}
    alerts.neutralisation_alerts(sc, windows, NOW)
    prediction = {
        "SessionKey": sc["SessionKey"],
        "DriverNumber": ver["DriverNumber"],
        "LapNumber": 25,
        "Model": "pit_window",
        "Status": "ok",
        "Values": {
            "PitProbability3Laps": 0.6,
            "WindowOpenLap": 26,
            "WindowCloseLap": 27,
            "Stint": ver["Stint"],
        },
        "EventSessionTime": 3650.0,
    }
    st, raised = alerts.alert_step(alerts.share_window(None, windows[key]), prediction, NOW)
    assert raised == [] and st["window"]["close"] == 28
    # a new stint (he stopped): the shared window no longer holds
    later = {**prediction, "LapNumber": 27, "Values": {**prediction["Values"], "Stint": ver["Stint"] + 1}}
    _, raised = alerts.alert_step(st, later, NOW)
    assert [a["Type"] for a in raised] == ["pit_window_open"]


def test_a_vsc_needs_older_tyres_and_wet_tyres_never_qualify(deployments: list[dict[str, Any]]) -> None:
    vsc = deployments[0]  # lap 2-3: everyone on tyres 1-3 laps old
    assert alerts.neutralisation_alerts(vsc, {}, NOW) == []
    car = {
        "DriverNumber": "1",
        "Driver": "VER",
        "LapNumber": 20,
        "TyreLife": 12.0,
        "Compound": "HARD",
        "Stint": 1,
    }
    record = {**vsc, "Cars": [car, {**car, "DriverNumber": "4", "Driver": "NOR", "Compound": "INTERMEDIATE"}]}
    assert [a["DriverNumber"] for a in alerts.neutralisation_alerts(record, {}, NOW)] == ["1"]
    record = {**vsc, "Cars": [{**car, "TyreLife": 9.0}]}
    assert alerts.neutralisation_alerts(record, {}, NOW) == []
    assert len(alerts.neutralisation_alerts({**record, "Kind": "SC"}, {}, NOW)) == 1


def test_green_ends_a_period_and_a_vsc_upgraded_to_a_safety_car_is_new() -> None:
    state = None
    seen = []
    for status, t in (("6", 10.0), ("6", 12.0), ("4", 20.0), ("4", 21.0), ("1", 30.0), ("4", 40.0)):
        record = {"SessionKey": 1, "SessionTime": t, "Status": status}
        state, out = neutralisations.neutral_step(state, race_state.TRACK_STATUS, record)
        seen += [(o["Kind"], o["SessionTime"]) for o in out]
    assert seen == []  # no lap has ended after them yet: the cars' laps so far are unknown
    state, out = neutralisations.neutral_step(state, race_state.LAPS, LAP)
    assert [(o["Kind"], o["SessionTime"], len(o["Cars"])) for o in out] == [
        ("VSC", 10.0, 0),
        ("SC", 20.0, 0),
        ("SC", 40.0, 0),
    ]


def test_a_car_standing_still_on_track_is_not_offered_a_stop(bahrain: RaceData) -> None:
    # 2023 Bahrain: LEC stopped at turn 16 about 20 s before the VSC (7757 s) his car caused; with
    # the positions folded in, he is left out of the deployment's cars, the others are listed
    state = None
    events = _events(bahrain) + [
        (race_state.CAR_POSITION, json.loads(ingest.encode(r)))
        for r in ingest.table_records(bahrain.filter_drivers({"LEC", "VER"}), "pos_data")
        if 7600 <= r.payload["SessionTime"] <= 7760
    ]
    found = []
    for kind, record in sorted(events, key=lambda e: float(e[1]["SessionTime"])):
        state, _ = race_state.retire_step(state, kind, record)
        state, out = neutralisations.neutral_step(state, kind, record)
        found += out
    vsc = next(d for d in found if d["Kind"] == "VSC")
    drivers = {c["Driver"] for c in vsc["Cars"]}
    assert "LEC" not in drivers and "VER" in drivers and "PIA" not in drivers  # PIA retired on lap 13


def test_a_deployment_read_late_from_the_other_topic_is_the_same_one() -> None:
    # the stream reads track status and race control as separate topics: here the VSC's whole
    # track-status period (deployed 7758, green 7866) is read before race control's message (7757)
    state = None
    seen = []
    events = [
        (race_state.TRACK_STATUS, {"SessionKey": 1, "SessionTime": 7758.3, "Status": "6"}),
        (race_state.TRACK_STATUS, {"SessionKey": 1, "SessionTime": 7866.4, "Status": "1"}),
        (
            race_state.RACE_CONTROL,
            {"SessionKey": 1, "SessionTime": 7757.1, "Category": "SafetyCar", "Status": "DEPLOYED",
             "Message": "VIRTUAL SAFETY CAR DEPLOYED"},
        ),
        (race_state.TRACK_STATUS, {"SessionKey": 1, "SessionTime": 8100.0, "Status": "6"}),
    ]  # fmt: skip
    for kind, record in [*events, (race_state.LAPS, {**LAP, "SessionTime": 8200.0})]:
        state, out = neutralisations.neutral_step(state, kind, record)
        seen += [(o["Kind"], o["SessionTime"]) for o in out]
    assert seen == [("VSC", 7758.3), ("VSC", 8100.0)]


def test_the_cars_are_the_same_whether_the_laps_are_read_ahead_or_behind(
    las_vegas: RaceData, deployments: list[dict[str, Any]]
) -> None:
    # the stream reads the laps topic (one partition, in event-time order) ahead of race control
    # and track status or behind them (a replay at full speed: ~5 laps ahead); here 10 minutes
    # ahead and behind: the records are those of the event-time order
    events = _events(las_vegas)
    for skew in (-600.0, 600.0):
        order = sorted(
            events, key=lambda e: float(e[1]["SessionTime"]) + (skew if e[0] == race_state.LAPS else 0.0)
        )
        state = None
        found: list[dict[str, Any]] = []
        for kind, record in order:
            state, _ = race_state.retire_step(state, kind, record)
            state, out = neutralisations.neutral_step(state, kind, record)
            found += out
        assert [(d["Kind"], d["SessionTime"]) for d in found] == [
            (d["Kind"], d["SessionTime"]) for d in deployments
        ]
        ahead = {c["Driver"]: (c["LapNumber"], c["TyreLife"]) for c in found[2]["Cars"]}
        assert ahead == {c["Driver"]: (c["LapNumber"], c["TyreLife"]) for c in deployments[2]["Cars"]}
