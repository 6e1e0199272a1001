"""Dashboard components driven through their params with recorded real records (no server, no broker)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratx.bentos.lifecycle import feature_build
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


def rule_predictions(store: StateStore, rows: list[dict[str, Any]]) -> None:
    """Prediction records as the prediction app emits them for ``rows``: ``unavailable`` with the
    input rule's reason where the row lacks a model's input, else ``ok`` with a TEST value."""
    from datetime import UTC, datetime

    from stratx.functions.models.inputs import missing
    from stratx.functions.prediction_requests import predictions

    now = datetime(2023, 11, 19, 7, 0, tzinfo=UTC)
    for row in rows:
        for key in ("lap_time", "tyre_deg", "pit_window", "anomaly"):
            reason = missing(key, row)
            values = None if reason else {"Test": 1.0}
            record = predictions(row, key, None if reason else ds.TEST_VERSION, values, reason, now, now)
            store.apply_record(catalog.PREDICTION_TOPICS[key].name, record)


def test_session_inputs_say_what_a_live_session_lacks_and_which_models_cannot_answer() -> None:
    """The real OpenF1 laps of 2023 Las Vegas as a live session before its stint data: no car
    telemetry or positions yet, no tyre life, so tyre deg and pit window are unavailable for every car."""
    from tests.functions.models.test_model_inputs import openf1_info, openf1_rows

    rows = [r for r in openf1_rows(with_stints=False) if r["LapNumber"] <= 3]
    live = StateStore()
    live.apply_record(catalog.SESSION_INFO.name, openf1_info())
    for row in rows:
        live.apply_record(catalog.FEATURES_LAP.name, row)
    panel = c.SessionInputs(snapshot=live.snapshot(SESSION))
    html = panel._pane.object
    assert "data-role='session-lacks'" in html and "no car telemetry" in html and "no car positions" in html
    assert "timing stream" not in html  # a live session counts no tables: only what it names
    rule_predictions(live, rows)
    panel.snapshot = live.snapshot(SESSION)
    html = panel._pane.object
    for model in ("tyre_deg", "pit_window"):
        line = html.split(f"<li data-model='{model}'>")[1].split("</li>")[0]
        assert (
            "unavailable for 20 cars (VER, SAR, RIC, NOR, GAS, PER +14)" in line
            and "no tyre life for this car" in line
        )
    assert "data-model='lap_time'" not in html and "data-model='anomaly'" not in html
    live.apply_record(
        catalog.CAR_TELEMETRY.name, {"SessionKey": SESSION, "DriverNumber": "1", "SessionTime": 1.0}
    )
    panel.snapshot = live.snapshot(SESSION)
    assert "no car telemetry" not in panel._pane.object and "no car positions" in panel._pane.object


def test_session_inputs_of_an_export_race_and_of_a_complete_one(store: StateStore) -> None:
    """2025 Miami from the unseen lap exports: no timing stream, telemetry, positions, race control or
    weather in the source, and no stint data for any car's first stint (laps 1-23). The bundled 2023 Las Vegas: nothing missing."""
    from stratx.bentos.lifecycle.sources import load_exports
    from stratx.functions import ingest
    from tests.conftest import DATA_DIR

    race = next(
        r
        for r in load_exports(DATA_DIR / "corpus" / "lap_exports")
        if (r.meta.year, r.meta.event_name) == (2025, "Miami Grand Prix")
    )
    rows, _ = feature_build.lap_feature_rows(race)
    info = {"SessionKey": race.meta.session_key, **ingest.session_info_payload(race, 0.0)}
    s = StateStore()
    s.apply_record(catalog.SESSION_INFO.name, info)
    early = [r for r in rows if r["LapNumber"] <= 10]
    for row in early:
        s.apply_record(catalog.FEATURES_LAP.name, row)
    rule_predictions(s, early)
    html = c.SessionInputs(snapshot=s.snapshot(race.meta.session_key))._pane.object
    for what in ("timing stream", "car telemetry", "car positions", "race control messages", "weather"):
        assert f"no {what} (" in html
    line = html.split("<li data-model='tyre_deg'>")[1].split("</li>")[0]
    cars = {r["DriverNumber"] for r in early if r["TyreLife"] is None}
    assert (
        f"unavailable for {len(cars)} cars (VER, NOR, " in line and "no tyre life" in line and len(cars) >= 18
    )
    complete = c.SessionInputs(snapshot=store.snapshot(SESSION))._pane.object
    assert "data-role='inputs-complete'" in complete and "session-lacks" not in complete
