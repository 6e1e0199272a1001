"""End to end in headless Chromium: the dashboard and the overlay during a replay of a bundled race.

A broker of this module's own, the real lap-features app (subprocess), the dashboard server
(subprocess, `python -m stratx.panel_app.app`) and a replay of the real 2023 Las Vegas GP paced
from lights out at 100x. The prediction and alert apps are not part of this test: a stand-in
(:class:`tests.dashboard_support.TestRecordFeeder`) answers every lap-feature record with TEST
records in the Prediction/Alert schemas, ``ModelVersion`` "test-record", values from the race itself.

Debian chromium via Playwright's ``executable_path`` (no browser download). Screenshots go to
tests/artifacts/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from stratx.functions import catalog
from stratx.functions.racedata import RaceData
from stratx.quix_apps.kit import admin, kafka_io, pipeline
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port, wait_for_port
from tests import dashboard_support as ds

pytestmark = pytest.mark.integration
CHROMIUM, CHROMIUM_ARGS = ds.CHROMIUM, ds.CHROMIUM_ARGS
SPEED = 100


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path_factory.mktemp("b") / "tansu.log") as b:
        client = admin.connect(b.address)
        try:
            admin.create_topics(client)
        finally:
            client.close()
        yield b.address


@pytest.fixture(scope="module")
def server(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("dash") / "server.log"
    cmd = [sys.executable, "-m", "stratx.panel_app.app", "--port", str(port), "--broker", broker]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port("127.0.0.1", port, 120), log.read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def replaying(broker: str, las_vegas: RaceData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Lap-features app + test-record feeder + the paced replay, all running during the tests."""
    tmp = tmp_path_factory.mktemp("pipeline")
    apps = pipeline.start_apps(broker, tmp / "state", apps=("lap",), feast=False)
    feeder = ds.TestRecordFeeder(broker, ds.lap_features(las_vegas))
    feeder.start()
    env = {**os.environ, "STRATX_BROKER_ADDRESS": broker}
    cmd = [sys.executable, "-m", "stratx.quix_apps.cli", "replay", "--year", "2023", "--event", "Las Vegas"]
    cmd += ["--speed", str(SPEED), "--pace-from-lap", "1", "--no-progress"]
    with (tmp / "replay.log").open("wb") as out:
        replay = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield
    finally:
        replay.send_signal(signal.SIGINT)
        replay.wait(30)
        feeder.stop()
        pipeline.stop_apps(apps)


def texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def test_dashboard_follows_the_replay(server: str, browser: Any, replaying: None, broker: str) -> None:
    ds.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    page.goto(f"{server}/?driver=VER")

    # the tower shows all 20 drivers with a running position
    wait_until(
        lambda: len([t for t in texts(page, "table.tower td.pos") if t.isdigit()]) == 20, 90, "20 positions"
    )
    page.screenshot(path=str(ds.ARTIFACTS / "dashboard_early.png"), full_page=True)

    # a value visibly updates: the lap counter and the tower's gaps move with the replay
    first_lap, first_gaps = texts(page, "[data-role=lap]"), texts(page, "table.tower td.gap")
    wait_until(lambda: texts(page, "[data-role=lap]") != first_lap, 60, "the lap counter to move")
    assert texts(page, "table.tower td.gap") != first_gaps

    # a prediction (test record) appears in the tower and in the prediction cards
    pred = page.locator("td.pred[data-driver='1']")
    wait_until(lambda: pred.inner_text().strip() not in ("", "-"), 90, "VER's predicted next lap")
    assert page.locator("div.card[data-model='lap_time']").count() == 1
    assert ds.TEST_VERSION in page.locator("div.cards").inner_text()

    # an alert (test record) appears with its severity colour
    wait_until(lambda: page.locator("li.alert").count() > 0, 60, "an alert")
    assert "TEST RECORD" in page.locator("li.alert").first.inner_text()

    # the gauges read the replay's car telemetry for VER
    speed = page.locator("div.gauge[data-field='Speed'] .value")
    wait_until(lambda: speed.count() == 1 and "km/h" in speed.inner_text(), 30, "VER's speed gauge")
    page.screenshot(path=str(ds.ARTIFACTS / "dashboard.png"), full_page=True)

    # a retirement (a TEST record on stratx.race.retirements; SAR in fact finished the race) puts
    # the car at the bottom of the tower as OUT with its lap
    retirement = {
        "SessionKey": 9189,
        "DriverNumber": "2",
        "Driver": "SAR",
        "LapNumber": 3,
        "SessionTime": 0.0,
        "Source": "race_control",
        "Reason": "TEST RECORD",
    }
    kafka_io.produce_json(broker, catalog.RETIREMENTS.name, "9189", retirement)
    out = page.locator("table.tower tr[data-driver='2'] td.gap")
    wait_until(lambda: out.inner_text().strip() == "OUT L3", 30, "SAR shown OUT L3")
    assert page.locator("table.tower tbody tr").last.get_attribute("data-driver") == "2"
    page.close()


def test_overlay_page_is_transparent_around_its_lower_third(
    server: str, browser: Any, replaying: None
) -> None:
    ds.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.goto(f"{server}/overlay?driver=VER&theme=dark")
    battle = page.locator("div.box.battle:not(.empty)")
    wait_until(lambda: battle.count() == 1, 90, "the battle forecast")
    path = ds.ARTIFACTS / "overlay.png"

    def drawn() -> bool:  # on a busy machine the first frame after the update can be unpainted
        page.screenshot(path=str(path), omit_background=True)
        return bool(np.asarray(Image.open(path).convert("RGBA"))[800:972, 192:1728, 3].max() > 0)

    deadline = time.monotonic() + 15
    while not drawn() and time.monotonic() < deadline:
        time.sleep(0.5)
    page.close()

    image = np.asarray(Image.open(path).convert("RGBA"))
    assert image.shape[:2] == (1080, 1920)
    alpha = image[:, :, 3]
    assert alpha[:108, :].max() == 0 and alpha[:, :192].max() == 0  # outside title-safe: nothing drawn
    assert (alpha == 0).mean() > 0.7  # the page itself is transparent
    assert alpha[800:972, 192:1728].max() > 0  # the lower third is drawn
