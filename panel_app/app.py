"""The dashboard server: `/` (strategy dashboard) and `/overlay` (broadcast lower third).

One :class:`SharedConsumer` per server process lives in ``pn.state.cache``; every browser
session builds its components and refreshes them from the shared store with its own periodic
callback (``refresh_ms``). Run with :func:`serve` (``stratx dashboard``) or
``python -m stratx.panel_app.app --port 5006``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

import panel as pn

from stratx.functions.settings import REPO_ROOT
from stratx.panel_app import components as c
from stratx.panel_app import views
from stratx.panel_app.consumer import SharedConsumer
from stratx.panel_app.options import add_arguments
from stratx.panel_app.replay_control import ReplayController
from stratx.panel_app.settings import DashboardSettings
from stratx.panel_app.state import StateStore
from stratx.quix_apps.kit import metrics

log = logging.getLogger(__name__)
CONSUMER_CACHE_KEY = "stratx-dashboard-consumer"
APP = "dashboard"  # metrics app label and exporter port offset
REPLAY_CACHE_KEY = "stratx-dashboard-replay"
CIRCUITS_DIR = REPO_ROOT / "data" / "circuits"
PAGE_CSS = "body { background: #030712; color: #e5e7eb; margin: 0; }"
OVERLAY_CSS = "html, body { background: transparent !important; margin: 0; overflow: hidden; }"


def shared_consumer(settings: DashboardSettings) -> SharedConsumer:
    """The process's one consumer (created and started on first use)."""

    def make() -> SharedConsumer:
        log.info("dashboard consumer: reading %s", settings.broker_address)
        return SharedConsumer(
            settings.broker_address,
            StateStore(),
            session_timeout_ms=settings.consumer_session_timeout_ms,
            auth=settings.kafka_auth(),
        ).start()

    return pn.state.as_cached(CONSUMER_CACHE_KEY, make)


def count_session() -> None:
    """One more open browser session in ``stratx_dashboard_sessions``, one fewer when it closes."""
    if pn.state.curdoc is None:  # not a server session (e.g. a page built in a test)
        return
    metrics.DASHBOARD_SESSIONS.inc()
    pn.state.on_session_destroyed(lambda _ctx: metrics.DASHBOARD_SESSIONS.dec())


def replay_controller(settings: DashboardSettings) -> ReplayController:
    return pn.state.as_cached(REPLAY_CACHE_KEY, lambda: ReplayController(settings.broker_address))


def query_arg(name: str, default: str | None = None) -> str | None:
    """A URL query argument of the current session (``?driver=1&theme=light``)."""
    values = pn.state.session_args.get(name) if pn.state.session_args else None
    return values[0].decode() if values else default


def resolve_driver(store: StateStore, session_key: int | None, wanted: str | None) -> str | None:
    """A driver number from a query value that may be a number ('1') or a code ('VER').

    None while the code cannot be resolved yet (no session info read so far)."""
    if wanted is None or wanted.isdigit():
        return wanted
    if session_key is None:
        return None
    for number, label in views.driver_labels(store.snapshot(session_key)).items():
        if label.code.upper() == wanted.upper():
            return number
    return None


class Refresher:
    """Per browser session: pull the selected session's snapshot and hand it to the components.

    ``wanted_driver`` (from the URL, a number or a code) is resolved as soon as the session info
    is known and then handed to every component (``on_driver``)."""

    def __init__(
        self,
        store: StateStore,
        targets: list[c.RaceComponent],
        session_key: int | None,
        wanted_driver: str | None = None,
        on_driver: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.targets = targets
        self.session_key = session_key
        self.version = -1
        self.follow_latest = session_key is None
        self.wanted_driver = wanted_driver
        self.on_driver = on_driver

    def __call__(self) -> None:
        if self.follow_latest:
            latest = self.store.latest_session()
            if latest != self.session_key:
                self.session_key, self.version = latest, -1
        if self.session_key is None:
            return
        version = self.store.version(self.session_key)
        if version == self.version:
            return
        self.version = version
        snap = self.store.snapshot(self.session_key)
        for target in self.targets:
            target.snapshot = snap
        if self.wanted_driver is not None:
            driver = resolve_driver(self.store, self.session_key, self.wanted_driver)
            if driver is not None:
                self.wanted_driver = None
                for target in self.targets:
                    target.driver = driver
                if self.on_driver is not None:
                    self.on_driver(driver)


def dashboard_page(settings: DashboardSettings) -> pn.viewable.Viewable:
    """The strategy dashboard of one browser session."""
    pn.config.raw_css = [*pn.config.raw_css, PAGE_CSS]
    count_session()
    store = shared_consumer(settings).store
    session_arg = query_arg("session")
    session_key = int(session_arg) if session_arg and session_arg.lstrip("-").isdigit() else None
    wanted = query_arg("driver")
    driver = resolve_driver(store, session_key or store.latest_session(), wanted)
    tower, predictions, alerts = c.TimingTower(driver=driver), c.Predictions(driver=driver), c.AlertsFeed()
    gauges, gaps, inputs = c.TelemetryGauges(driver=driver), c.GapsAndTraffic(), c.SessionInputs()
    trace, strategy, wear = c.RaceTrace(driver=driver), c.TyreStrategy(), c.WearCurves(driver=driver)
    track = c.TrackMap(driver=driver, circuits_dir=CIRCUITS_DIR)
    parts: list[c.RaceComponent] = [
        tower,
        predictions,
        alerts,
        gauges,
        gaps,
        trace,
        strategy,
        wear,
        track,
        inputs,
    ]
    refresher = Refresher(store, parts, session_key, wanted_driver=wanted if driver is None else None)

    session_select = pn.widgets.Select(name="Session", options={"latest (follow)": 0}, value=0, width=320)
    driver_select = pn.widgets.Select(name="Driver", options={"-": ""}, value=driver or "", width=160)

    def on_session(event: Any) -> None:
        refresher.follow_latest = not event.new
        refresher.session_key = event.new or store.latest_session()
        refresher.version = -1
        refresher()

    def on_driver(event: Any) -> None:
        for part in parts:
            part.driver = event.new or None

    def update_pickers() -> None:
        options = {"latest (follow)": 0, **{label: key for key, label in store.sessions()}}
        if options != session_select.options:
            session_select.options = options
        snap = tower.snapshot
        drivers = {"-": "", **{f"{r.code} ({r.number})": r.number for r in views.tower_rows(snap)}}
        if drivers != driver_select.options:
            driver_select.options = drivers

    def show_driver(number: str) -> None:
        update_pickers()
        driver_select.value = number

    refresher.on_driver = show_driver
    session_select.param.watch(on_session, "value")
    driver_select.param.watch(on_driver, "value")
    refresher()
    update_pickers()
    pn.state.add_periodic_callback(refresher, period=settings.dashboard_refresh_ms)
    pn.state.add_periodic_callback(update_pickers, period=2000)

    controls: list[Any] = [session_select, driver_select]
    if settings.dashboard_replay_control:
        controls.append(replay_panel(settings))
    header = pn.pane.HTML(
        "<div style='font-size:20px;font-weight:700;color:#f9fafb'>StratX <span style='color:#e10600'>live"
        "</span> strategy</div>",
        margin=(8, 10),
    )
    left = pn.Column(tower, gaps, width=640)
    middle = pn.Column(inputs, predictions, alerts, gauges, sizing_mode="stretch_width")
    charts = pn.Tabs(
        ("Race trace", trace),
        ("Tyre strategy", strategy),
        ("Wear", wear),
        ("Track map", track),
        dynamic=False,
        sizing_mode="stretch_width",
    )
    return pn.Column(
        pn.Row(header, *controls),
        pn.Row(left, pn.Column(middle, charts, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
        sizing_mode="stretch_width",
        styles={"background": "#030712"},
    )


def replay_panel(settings: DashboardSettings) -> pn.viewable.Viewable:
    """Pick a bundled race and a speed; Start (or apply a new speed to the running replay)."""
    from stratx.bentos.lifecycle import sources

    controller = replay_controller(settings)
    races = {f"{r.meta.year} {r.meta.event_name}": r for r in sources.list_bundled(REPO_ROOT / "data")}
    race = pn.widgets.Select(name="Bundled race", options=list(races), width=260)
    speed = pn.widgets.FloatSlider(name="Replay speed (x)", start=1, end=100, step=1, value=10, width=200)
    button = pn.widgets.Button(name="Start / apply speed", button_type="primary", width=160)
    status = pn.pane.Str(controller.status())

    def start(_: Any) -> None:
        chosen = races[race.value]
        controller.start(chosen.meta.year, chosen.meta.event_name, float(speed.value or 1.0))
        status.object = controller.status()

    button.on_click(start)
    pn.state.add_periodic_callback(lambda: setattr(status, "object", controller.status()), period=2000)
    return pn.Row(race, speed, button, status)


def overlay_page(settings: DashboardSettings) -> pn.viewable.Viewable:
    """1920x1080, transparent page; ``?driver=VER&theme=light&session=9189``."""
    pn.config.raw_css = [*pn.config.raw_css, OVERLAY_CSS]
    count_session()
    store = shared_consumer(settings).store
    session_arg = query_arg("session")
    session_key = int(session_arg) if session_arg and session_arg.lstrip("-").isdigit() else None
    theme = query_arg("theme", "dark")
    wanted = query_arg("driver")
    driver = resolve_driver(store, session_key or store.latest_session(), wanted)
    lower_third = c.LowerThird(driver=driver, theme=theme if theme in ("dark", "light") else "dark")
    refresher = Refresher(store, [lower_third], session_key, wanted_driver=wanted if driver is None else None)
    refresher()
    pn.state.add_periodic_callback(refresher, period=settings.dashboard_refresh_ms)
    return pn.Column(lower_third, width=1920, height=1080, margin=0, styles={"background": "transparent"})


def routes(settings: DashboardSettings) -> dict[str, Callable[[], pn.viewable.Viewable]]:
    """Route -> page function (plain functions: Panel renders a functools.partial as an object)."""

    def dashboard() -> pn.viewable.Viewable:
        return dashboard_page(settings)

    def overlay() -> pn.viewable.Viewable:
        return overlay_page(settings)

    return {"/": dashboard, "/overlay": overlay}


def websocket_origins(settings: DashboardSettings, port: int) -> list[str]:
    """The server's own origins plus the configured embedding origins."""
    own = [f"{settings.dashboard_host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    return list(dict.fromkeys([*own, *settings.dashboard_allow_websocket_origin]))


def serve(settings: DashboardSettings | None = None, show: bool = False, threaded: bool = False) -> Any:
    """Serve the dashboard and the overlay until interrupted (``threaded``: in the background)."""
    settings = settings or DashboardSettings()
    shared_consumer(settings)  # start reading before the first browser connects
    metrics.serve(APP, settings)
    return pn.serve(
        routes(settings),
        address=settings.dashboard_host,
        port=settings.dashboard_port,
        allow_websocket_origin=websocket_origins(settings, settings.dashboard_port),
        show=show,
        threaded=threaded,
        title={"/": "StratX strategy dashboard", "/overlay": "StratX overlay"},
        start=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="stratx dashboard", description="the live strategy dashboard + overlay")
    add_arguments(p)
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> DashboardSettings:
    overrides: dict[str, Any] = {
        "dashboard_host": args.host,
        "dashboard_port": args.port,
        "broker_address": args.broker,
        "dashboard_allow_websocket_origin": args.allow_websocket_origin,
        "dashboard_refresh_ms": args.refresh_ms,
        "dashboard_replay_control": args.replay_control or None,
    }
    return DashboardSettings(**{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None, args: argparse.Namespace | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = settings_from_args(args if args is not None else parse_args(argv))
    print(
        f"StratX dashboard on http://{settings.dashboard_host}:{settings.dashboard_port}/ "
        f"(overlay: /overlay), broker {settings.broker_address}",
        flush=True,
    )
    serve(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
