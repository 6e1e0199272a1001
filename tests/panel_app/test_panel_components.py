"""Dashboard components driven through their params with recorded real records (no server, no broker)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratx.functions import catalog
from stratx.functions.racedata import RaceData
from stratx.panel_app import app, views
from stratx.panel_app import components as c
from stratx.panel_app.components.overlay import SAFE_X, SAFE_Y
from stratx.panel_app.state import StateStore
from tests import dashboard_support as ds
from tests.panel_app.test_panel_state import fill, with_test_predictions

SESSION = 9189


@pytest.fixture(scope="module")
def recorded(las_vegas: RaceData) -> dict[str, Any]:
    return ds.recorded_race(las_vegas)


@pytest.fixture(scope="module")
def store(recorded: dict[str, Any]) -> StateStore:
    """The race up to lap 20, with test prediction/alert records and a few car samples."""
    s = StateStore()
    s.apply_record(catalog.SESSION_INFO.name, recorded["info"])
    upto = max(r["SessionTime"] for r in recorded["laps"] if r["LapNumber"] == 20)
    for rec in recorded["timing"]:
        if rec["SessionTime"] <= upto:
            s.apply_record(catalog.TIMING.name, rec)
    for rec in recorded["laps"]:
        if rec["LapNumber"] <= 20:
            s.apply_record(catalog.FEATURES_LAP.name, rec)
    with_test_predictions(s, recorded, laps_upto=20)
    for rec in recorded["car"]:
        s.apply_record(catalog.CAR_TELEMETRY.name, rec)
    return s


def test_tower_shows_every_driver_and_follows_the_snapshot(
    store: StateStore, recorded: dict[str, Any]
) -> None:
    tower = c.TimingTower()
    assert "Waiting" in tower._pane.object
    tower.snapshot = store.snapshot(SESSION)
    html = tower._pane.object
    assert html.count("<tr data-driver=") == 20 and "Lap 20/50" in html
    tower.driver = "1"
    assert "<tr data-driver='1' class='selected'>" in tower._pane.object
    later = fill(recorded, laps_upto=30)
    tower.snapshot = later.snapshot(SESSION)
    assert "Lap 30/50" in tower._pane.object


def test_components_skip_renders_when_their_sections_did_not_change(
    store: StateStore, recorded: dict[str, Any]
) -> None:
    local = StateStore()
    local.apply_record(catalog.SESSION_INFO.name, recorded["info"])
    for rec in recorded["laps"][:40]:
        local.apply_record(catalog.FEATURES_LAP.name, rec)
    tower, gauges = c.TimingTower(driver="1"), c.TelemetryGauges(driver="1")
    tower.snapshot = gauges.snapshot = local.snapshot(SESSION)
    tower._pane.object = gauges._pane.object = "sentinel"
    local.apply_record(catalog.CAR_TELEMETRY.name, recorded["car"][0] | {"DriverNumber": "1"})
    tower.snapshot = gauges.snapshot = local.snapshot(SESSION)
    assert tower._pane.object == "sentinel"  # telemetry is not a tower section
    assert gauges._pane.object != "sentinel"


def test_predictions_show_every_model_for_the_driver_and_the_field(store: StateStore) -> None:
    panel = c.Predictions(snapshot=store.snapshot(SESSION))
    assert "Pick a driver" in panel._pane.object
    panel.driver = "1"
    html = panel._pane.object
    for model in ("lap_time", "tyre_deg", "pit_window"):
        assert f"data-model='{model}'" in html
    assert ds.TEST_VERSION in html and "<table class='field'>" in html


def test_alerts_feed_colours_by_severity(store: StateStore) -> None:
    feed = c.AlertsFeed(snapshot=store.snapshot(SESSION))
    html = feed._pane.object
    assert "sev-warning" in html and "#f59e0b" in html and "TEST RECORD" in html


def test_gauges_show_the_drivers_sample_or_say_there_is_no_telemetry(
    store: StateStore, recorded: dict[str, Any]
) -> None:
    sample = next(r for r in reversed(recorded["car"]) if r["DriverNumber"] == "1")
    gauges = c.TelemetryGauges(snapshot=store.snapshot(SESSION), driver="1")
    assert f"{sample['Speed']} km/h" in gauges._pane.object
    none = StateStore()
    none.apply_record(
        catalog.SESSION_INFO.name,
        dict(recorded["info"], Sources={**recorded["info"]["Sources"], "car_data": 0}, Missing=["car_data"]),
    )
    gauges.snapshot = none.snapshot(SESSION)
    assert "no car telemetry" in gauges._pane.object


def test_charts_fill_their_sources(store: StateStore) -> None:
    snap = store.snapshot(SESSION)
    trace, strategy = c.RaceTrace(snapshot=snap, driver="1"), c.TyreStrategy(snapshot=snap)
    assert len(trace.source.data["xs"]) == 20
    assert max(trace.source.data["width"]) > min(trace.source.data["width"])  # the selected driver stands out
    assert len(strategy._fig.y_range.factors) == 20 and set(strategy.source.data["compound"]) <= {
        "SOFT",
        "MEDIUM",
        "HARD",
        "INTERMEDIATE",
        "WET",
        "?",
    }
    wear = c.WearCurves(snapshot=snap)
    assert wear.points.data["x"] == []
    wear.driver = "16"
    assert len(wear.points.data["x"]) > 0 and len(wear.bands.data["xs"]) >= 1


def test_track_map_draws_the_circuit_and_the_cars(store: StateStore, recorded: dict[str, Any]) -> None:
    local = StateStore()
    local.apply_record(catalog.SESSION_INFO.name, recorded["info"])
    local.apply_record(
        catalog.CAR_POSITION.name,
        {
            "v": 1,
            "SessionKey": SESSION,
            "Seq": 1,
            "SessionTime": 10.0,
            "DriverNumber": "1",
            "X": 1,
            "Y": 2,
            "Z": 0,
        },
    )
    track = c.TrackMap(snapshot=local.snapshot(SESSION), circuits_dir=app.CIRCUITS_DIR, driver="1")
    assert len(track.outline.data["x"]) > 300
    assert track.cars.data["code"] == ["VER"]


def test_lower_third_is_title_safe_themeable_and_transparent(store: StateStore) -> None:
    third = c.LowerThird(snapshot=store.snapshot(SESSION), driver="1")
    html = third._pane.object
    assert "Battle forecast" in html and "Pit window" in html
    css = third._pane.stylesheets[0]
    assert f"left: {SAFE_X}px" in css and f"bottom: {SAFE_Y}px" in css and "background: transparent" in css
    assert "rgba(12,18,32" in html
    third.theme = "light"
    assert "rgba(249,250,251" in third._pane.object


def test_the_refresher_hands_new_snapshots_only(store: StateStore, recorded: dict[str, Any]) -> None:
    local = fill(recorded, laps_upto=2)
    tower = c.TimingTower()
    seen: list[int] = []
    tower.param.watch(lambda e: seen.append(e.new.version), "snapshot")
    refresher = app.Refresher(local, [tower], None)
    refresher()
    refresher()
    assert len(seen) == 1
    local.apply_record(catalog.FEATURES_LAP.name, next(r for r in recorded["laps"] if r["LapNumber"] == 3))
    refresher()
    assert len(seen) == 2 and seen[-1] == local.version(SESSION)


def test_settings_from_the_command_line() -> None:
    args = app.parse_args(["--port", "0", "--allow-websocket-origin", "obs.local:8080", "--broker", "b:9092"])
    settings = app.settings_from_args(args)
    assert settings.dashboard_allow_websocket_origin == ["obs.local:8080"]
    assert "obs.local:8080" in app.websocket_origins(
        settings, 5006
    ) and "localhost:5006" in app.websocket_origins(settings, 5006)
    assert json.loads(settings.model_dump_json())["broker_address"] == "b:9092"


def test_a_retired_car_is_out_on_the_tower_and_never_on_the_overlay(recorded: dict[str, Any]) -> None:
    """TEST records: a Retirement of the car in the closest battle and of the likeliest pit stop."""
    s = fill(recorded, laps_upto=20)
    with_test_predictions(s, recorded, laps_upto=20)
    snap = s.snapshot(SESSION)
    pair = views.battle_forecast(snap)
    window = views.pit_window(snap, None)
    assert pair is not None and window is not None
    out = {pair.behind, window.driver}
    for drv in out:
        s.apply_record(
            catalog.RETIREMENTS.name,
            {
                "SessionKey": SESSION,
                "DriverNumber": drv,
                "LapNumber": 20,
                "SessionTime": 1.0,
                "Source": "lap",
                "Reason": "TEST",
            },
        )
    snap = s.snapshot(SESSION)
    tower = c.TimingTower(snapshot=snap)
    assert tower._pane.object.count("OUT L20") == len(out)
    third = c.LowerThird(snapshot=snap)
    html = third._pane.object
    codes = {views.code_of(snap, d) for d in out}
    shown = views.battle_forecast(snap)
    assert shown is None or not {shown.ahead, shown.behind} & out
    assert all(f"<b>{code}</b>" not in html for code in codes), html
