"""The causal scope (functions/scope.py) on real laps: 2023 Bahrain GP, the virtual safety car of
laps 40-42 after Leclerc stopped (VSC deployed at 7758 s, ending 7854 s, green 7866 s)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratx.functions import ingest, scope
from stratx.functions.alerts import alert_step
from stratx.functions.features.laps import build_lap_features
from stratx.functions.models import anomaly_rows
from stratx.functions.racedata import RaceData


def _events(race: RaceData, table: str) -> list[dict[str, Any]]:
    return [json.loads(ingest.encode(r)) for r in ingest.table_records(race, table)]


@pytest.fixture(scope="module")
def rows(bahrain: RaceData) -> dict[tuple[str, int], dict[str, Any]]:
    track = _events(bahrain, "track_status") + _events(bahrain, "race_control")
    built, rejected = build_lap_features(_events(bahrain, "laps"), track)
    assert built and not rejected
    return {(r["Driver"], r["LapNumber"]): r for r in built}


VSC = (7758.298, 7866.437)  # track status 6 VSCDeployed .. 1 AllClear


def test_the_vsc_laps_are_neutralised(rows: dict[tuple[str, int], dict[str, Any]]) -> None:
    # every lap of laps 40-43 run (partly) under the VSC, whatever its number (lapped cars: NOR
    # and OCO ran their lap 40 under it, their lap 41 was green)
    timed = [r for (_, n), r in rows.items() if 40 <= n <= 43 and r["LapTime"] is not None]
    under = [r for r in timed if r["SessionTime"] - r["LapTime"] <= VSC[1] and r["SessionTime"] >= VSC[0]]
    assert len(under) == 31 and all(r["Neutralised"] and not r["GreenClean"] for r in under)
    assert not rows[("NOR", 41)]["Neutralised"] and rows[("NOR", 40)]["Neutralised"]
    # the leaders crossed the line for lap 40 before the VSC; the cars behind did not
    assert not rows[("VER", 40)]["Neutralised"] and rows[("VER", 40)]["GreenClean"]
    assert rows[("STR", 40)]["Neutralised"] and rows[("HUL", 40)]["Neutralised"]
    # VER and PER completed lap 42 while the VSC was ending ('7'); the rest had green laps
    assert rows[("VER", 42)]["Neutralised"] and not rows[("HAM", 42)]["Neutralised"]
    lap43 = [r for (_, n), r in rows.items() if n == 43]
    assert lap43 and all(r["GreenClean"] and not r["Neutralised"] for r in lap43)


def test_pit_laps_and_lap_1_are_out_of_scope(rows: dict[tuple[str, int], dict[str, Any]]) -> None:
    assert not rows[("ALB", 40)]["GreenClean"]  # in-lap under the VSC
    assert not rows[("ALB", 41)]["GreenClean"] and rows[("ALB", 41)]["Neutralised"]  # out-lap, VSC
    assert not rows[("VER", 1)]["GreenClean"]
    assert rows[("VER", 30)]["GreenClean"]


def test_the_scope_uses_nothing_after_the_line_crossing(bahrain: RaceData) -> None:
    # cut the race at NOR's lap-40 crossing (7883 s): the lap's scope is the same as with the
    # whole race, and does not depend on any lap of the rest of the field
    laps = _events(bahrain, "laps")
    track = _events(bahrain, "track_status") + _events(bahrain, "race_control")
    cut = 7883.168
    early, _ = build_lap_features(
        [x for x in laps if x["SessionTime"] <= cut], [e for e in track if e["SessionTime"] <= cut]
    )
    alone, _ = build_lap_features([x for x in laps if x["Driver"] == "NOR" and x["SessionTime"] <= cut])
    nor = {r["LapNumber"]: r for r in early if r["Driver"] == "NOR"}
    assert nor[40]["Neutralised"] and {r["LapNumber"]: r["Neutralised"] for r in alone}[40]


def test_periods_from_race_control_cover_laps_without_track_status_codes() -> None:
    # an OpenF1 lap carries no TrackStatus: the VSC message received before the line decides
    st = scope.new_state()
    st = scope.status_step(
        st, {"SessionTime": 7757.0, "Category": "SafetyCar", "Status": "DEPLOYED", "Flag": None}
    )
    lap = {"LapNumber": 40, "SessionTime": 7826.8, "LapTime": 118.7, "TrackStatus": None}
    assert scope.scope_reason(lap, st) == "neutralised"
    st = scope.status_step(st, {"SessionTime": 7866.0, "Category": "Flag", "Flag": "CLEAR", "Scope": "Track"})
    later = {"LapNumber": 43, "SessionTime": 8082.6, "LapTime": 97.5, "TrackStatus": None}
    assert scope.scope_reason(later, st) is None
    # a sector clear does not end it
    st2 = scope.status_step(None, {"SessionTime": 10.0, "Status": "6"})
    st2 = scope.status_step(
        st2, {"SessionTime": 20.0, "Category": "Flag", "Flag": "CLEAR", "Scope": "Sector"}
    )
    assert scope.neutralised({"LapNumber": 5, "SessionTime": 30.0, "LapTime": 5.0}, st2)


def test_anomaly_rows_and_alerts_leave_the_vsc_laps_alone(
    rows: dict[tuple[str, int], dict[str, Any]],
) -> None:
    import pandas as pd

    frame = pd.DataFrame([r for (_, n), r in rows.items() if 30 <= n <= 43])
    built = anomaly_rows.lap_rows(frame.assign(Year=2023, EventName="Bahrain Grand Prix"))
    on = built.set_index(["Driver", "LapNumber"])["InScope"]
    assert not on[[(d, 41) for d, n in rows if n == 41 and d not in ("NOR", "OCO")]].any()
    assert on[("HAM", 43)] and on[("VER", 40)] and on[("NOR", 41)]
    # an anomaly flag on a VSC lap raises nothing; the same flag on a green lap does
    now = pd.Timestamp("2023-03-05T16:10:00Z").to_pydatetime()
    for (driver, n), row in rows.items():
        if n not in (40, 41, 42, 43):
            continue
        record = {
            "SessionKey": row["SessionKey"],
            "DriverNumber": row["DriverNumber"],
            "LapNumber": n,
            "Model": "anomaly",
            "Status": "ok",
            "Values": {
                "Driver": driver,
                "AnomalyScore": 0.9995,
                "AnomalyFlag": True,
                "GreenClean": row["GreenClean"],
                "Neutralised": row["Neutralised"],
            },
            "EventSessionTime": row["SessionTime"],
        }
        _, alerts = alert_step(None, record, now)
        assert bool(alerts) == row["GreenClean"], (driver, n)
        assert all(a["Message"].startswith(f"{driver}: ") for a in alerts)
