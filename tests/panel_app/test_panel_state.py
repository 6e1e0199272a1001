"""The dashboard's state store and views, folding recorded real records of the 2023 Las Vegas GP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratx.functions import catalog
from stratx.functions.racedata import RaceData
from stratx.panel_app import views
from stratx.panel_app.replay_control import ReplayRequest, replay_command
from stratx.panel_app.state import MAX_ALERTS, RaceSnapshot, StateStore
from tests import dashboard_support as ds

TIMING, LAPS, INFO = catalog.TIMING.name, catalog.FEATURES_LAP.name, catalog.SESSION_INFO.name


@pytest.fixture(scope="module")
def recorded(las_vegas: RaceData) -> dict[str, Any]:
    return ds.recorded_race(las_vegas)


def fill(recorded: dict[str, Any], laps_upto: int | None = None) -> StateStore:
    store = StateStore()
    store.apply_record(INFO, recorded["info"])
    for rec in recorded["timing"]:
        store.apply(TIMING, ds.key_of(rec), json.dumps(rec).encode())
    for rec in recorded["laps"]:
        if laps_upto is None or rec["LapNumber"] <= laps_upto:
            store.apply(LAPS, ds.key_of(rec), json.dumps(rec).encode())
    return store


def with_test_predictions(store: StateStore, recorded: dict[str, Any], laps_upto: int = 99) -> None:
    positions: dict[int, dict[int, str]] = {}
    for row in recorded["laps"]:
        if row["LapNumber"] > laps_upto:
            continue
        lap = positions.setdefault(row["LapNumber"], {})
        lap[row["PositionOnLap"]] = row["DriverNumber"]
        for topic, rec in ds.test_predictions(row, recorded["outcomes"], lap.get(row["PositionOnLap"] - 1)):
            store.apply_record(topic, rec)


@pytest.fixture(scope="module")
def full(recorded: dict[str, Any]) -> RaceSnapshot:
    store = fill(recorded)
    with_test_predictions(store, recorded)
    return store.snapshot(9189)


def test_the_whole_race_folds_into_twenty_drivers_in_the_real_finishing_order(full: RaceSnapshot) -> None:
    rows = views.tower_rows(full)
    assert len(rows) == 20
    assert sum(len(laps) for laps in full.laps.values()) == 946
    assert [r.position for r in rows] == list(range(1, 21))
    assert [r.code for r in rows[:3]] == ["VER", "LEC", "PER"]  # 2023 Las Vegas GP result
    assert rows[0].gap == "Leader"
    assert rows[0].pit_stops >= 1 and rows[0].compound in views.COMPOUND_COLOURS


def test_repeated_and_older_records_change_nothing(recorded: dict[str, Any]) -> None:
    store = fill(recorded, laps_upto=10)
    before = store.snapshot(9189)
    for rec in recorded["timing"][:500]:  # at-least-once repeats of old updates
        store.apply_record(TIMING, rec)
    after = store.snapshot(9189)
    assert after.timing == before.timing
    assert views.tower_rows(after) == views.tower_rows(before)


def test_snapshots_are_shared_until_the_state_changes(recorded: dict[str, Any]) -> None:
    store = fill(recorded, laps_upto=3)
    first = store.snapshot(9189)
    assert store.snapshot(9189) is first
    store.apply_record(LAPS, next(r for r in recorded["laps"] if r["LapNumber"] == 4))
    second = store.snapshot(9189)
    assert second is not first and second.version > first.version
    assert second.section_version("laps") > first.section_version("laps")
    assert second.section_version("telemetry") == first.section_version("telemetry")


def test_high_rate_topics_keep_the_latest_sample_per_driver(recorded: dict[str, Any]) -> None:
    store = fill(recorded, laps_upto=1)
    for rec in recorded["car"]:
        store.apply_record(catalog.CAR_TELEMETRY.name, rec)
    snap = store.snapshot(9189)
    latest = {}
    for rec in recorded["car"]:
        latest[rec["DriverNumber"]] = rec
    assert snap.telemetry == latest
    assert views.has_telemetry(snap) is True


def test_sessions_are_kept_apart_and_the_latest_one_is_followed(recorded: dict[str, Any]) -> None:
    store = fill(recorded, laps_upto=2)
    other = dict(recorded["laps"][0], SessionKey=1234)
    store.apply_record(LAPS, other)
    assert store.latest_session() == 1234
    assert [k for k, _ in store.sessions()] == [1234, 9189]
    assert "Las Vegas" in dict(store.sessions())[9189]
    assert len(store.snapshot(1234).laps) == 1


def test_bad_records_are_counted_and_skipped() -> None:
    store = StateStore()
    store.apply(LAPS, b"9189:1", b"not json")
    store.apply(LAPS, b"9189:1", b'{"no": "session"}')
    store.apply(catalog.CAR_TELEMETRY.name, b"garbage", b"{}")
    assert store.rejected == 3 and store.sessions() == []


def test_predictions_keep_the_latest_per_driver_and_unavailable_ones_show_no_value(
    recorded: dict[str, Any], full: RaceSnapshot
) -> None:
    ver_last = max((r for r in recorded["laps"] if r["Driver"] == "VER"), key=lambda r: r["LapNumber"])
    assert views.predicted_next_lap(full, "1") == ver_last["Last3Median"]
    store = fill(recorded, laps_upto=12)
    with_test_predictions(store, recorded, laps_upto=12)
    rec = dict(store.snapshot(9189).predictions["lap_time"]["1"], Status="unavailable", Values={})
    rec["EventSessionTime"] += 1.0
    rec["Reason"] = "service timeout"
    store.apply_record(catalog.PREDICTION_TOPICS["lap_time"].name, rec)
    snap = store.snapshot(9189)
    assert views.predicted_next_lap(snap, "1") is None
    row = next(r for r in views.prediction_rows(snap, "1") if r.model == "lap_time")
    assert (row.status, row.reason) == ("unavailable", "service timeout")


def test_alerts_are_deduplicated_and_bounded(full: RaceSnapshot) -> None:
    alerts = full.alerts
    assert alerts and all(a["Type"] == "tyre_cliff" for a in alerts)
    store = StateStore()
    for i in range(MAX_ALERTS + 50):
        rec = dict(alerts[0], EventSessionTime=float(i))
        store.apply_record(catalog.ALERTS.name, rec)
        store.apply_record(catalog.ALERTS.name, rec)  # a repeat
    assert len(store.snapshot(alerts[0]["SessionKey"]).alerts) == MAX_ALERTS


def test_stints_race_trace_and_pairs_come_from_the_lap_features(full: RaceSnapshot) -> None:
    bars = [b for b in views.stints(full) if b.driver == "1"]
    ver = full.laps["1"]
    assert len(bars) == len({r["Stint"] for r in ver if r["Stint"] is not None})
    assert bars[0].start_lap == 1 and bars[-1].end_lap == ver[-1]["LapNumber"]
    xs, ys = views.race_trace(full)["1"]
    assert len(xs) == len(ver) and ys == [r["GapToLeader"] for r in ver]
    for pair in views.pairs(full):
        assert pair.interval < views.DRS_RANGE_S
    battle = views.battle_forecast(full)
    assert battle is not None and battle.interval == min(
        r.interval_s for r in views.tower_rows(full) if r.interval_s is not None
    )


def test_wear_curves_draw_the_tyre_prediction_through_the_stints_clean_laps(full: RaceSnapshot) -> None:
    curves = views.wear_curves(full, "16")
    modelled = [c for c in curves if c.model_life]
    assert curves and modelled
    for c in modelled:
        assert all(lo <= hi for lo, hi in zip(c.model_low, c.model_high, strict=True))
        assert len(c.tyre_life) == len(c.fuel_corrected) > 0
        assert c.model_version == ds.TEST_VERSION


def test_sessions_without_car_telemetry_say_so(recorded: dict[str, Any]) -> None:
    store = StateStore()
    info = dict(
        recorded["info"], Sources={**recorded["info"]["Sources"], "car_data": 0}, Missing=["car_data"]
    )
    store.apply_record(INFO, info)
    assert views.has_telemetry(store.snapshot(9189)) is False


def test_formatting() -> None:
    assert views.fmt_lap_time(95.1234) == "1:35.123"
    assert views.fmt_lap_time(None) == "-"
    assert views.fmt_gap(1.5) == "+1.500" and views.fmt_gap(None, "1L") == "1L"
    assert (
        views.drs_state(12) == "open" and views.drs_state(8) == "eligible" and views.drs_state(0) == "closed"
    )


def test_a_speed_change_resumes_the_same_replay() -> None:
    cmd = replay_command(ReplayRequest(2023, "Las Vegas Grand Prix", 20.0, resume=True))
    assert cmd[-1] == "--resume" and cmd[cmd.index("--speed") + 1] == "20"


def test_a_retired_car_shows_out_with_its_lap_and_leaves_the_battles(recorded: dict[str, Any]) -> None:
    """TEST records: the real 2023 Las Vegas laps up to lap 30, with a Retirement record for LEC
    (who in fact finished second) on stratx.race.retirements."""
    store = fill(recorded, laps_upto=30)
    with_test_predictions(store, recorded, laps_upto=30)
    before = views.tower_rows(store.snapshot(9189))
    leclerc = next(r for r in before if r.code == "LEC")
    assert leclerc.position is not None and not leclerc.gap.startswith("OUT")
    retirement = {
        "SessionKey": 9189,
        "DriverNumber": "16",
        "Driver": "LEC",
        "LapNumber": 29,
        "SessionTime": 6000.0,
        "Source": "race_control",
        "Reason": "TEST record",
    }
    store.apply_record(catalog.RETIREMENTS.name, retirement)
    store.apply_record(catalog.RETIREMENTS.name, {**retirement, "LapNumber": 30})  # a repeat: the first stays
    snap = store.snapshot(9189)
    assert snap.retired["16"]["LapNumber"] == 29
    rows = views.tower_rows(snap)
    assert rows[-1].code == "LEC" and rows[-1].gap == "OUT L29" and rows[-1].position is None
    assert rows[-1].predicted_next_lap is None and rows[-1].retired_lap == 29
    assert [r.position for r in rows[:-1]] == [r.position for r in before if r.code != "LEC"]
    assert all("16" not in (p.ahead, p.behind) for p in views.pairs(snap, within_s=None))
    assert views.pit_window(snap, "16") is None
    assert (views.pit_window(snap, None) or views.PitWindow("1", None, None, None, None)).driver != "16"
