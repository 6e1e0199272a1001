"""Screenshots of a running dashboard (``stratx up``) for the README: real model predictions.

    .venv/bin/stratx up --speed 20 --no-progress &     # prints "dashboard: http://127.0.0.1:PORT"
    .venv/bin/python bench/dashboard_screenshot.py --url http://127.0.0.1:PORT --lap 20

Waits until the tower's lap counter reaches ``--lap`` and the selected driver's prediction cards
show real model versions (not the browser test's "test-record" stand-in), then saves a 1600 px
wide full-page screenshot and a 1920x1080 overlay screenshot with a transparent background.
Headless Debian chromium through Playwright, as tests/panel_app/test_dashboard_browser.py.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests.dashboard_support: the browser settings
from tests.dashboard_support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def lap_of(page: Any) -> int:
    texts = page.locator("[data-role=lap]").all_inner_texts()
    found = re.search(r"Lap (\d+)", texts[0]) if texts else None
    return int(found.group(1)) if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the dashboard's URL (stratx up prints it)")
    parser.add_argument("--lap", type=int, default=20, help="take the screenshot from this lap on")
    parser.add_argument("--driver", default="VER")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "dashboard_live.png")
    parser.add_argument("--overlay-out", type=Path, default=REPO_ROOT / "docs" / "overlay_live.png")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)

    from urllib.parse import urlsplit

    from stratx.quix_apps.kit.broker import wait_for_port

    where = urlsplit(args.url)
    if not wait_for_port(where.hostname or "127.0.0.1", where.port or 80, 180):  # Panel starts in seconds
        raise SystemExit(f"nothing listens at {args.url}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.goto(f"{args.url}/?driver={args.driver}")
            wait_until(lambda: lap_of(page) >= args.lap, args.timeout, f"lap {args.lap}", every_s=1.0)
            cards = page.locator("div.cards")
            wait_until(
                lambda: cards.count() and " · v" in cards.inner_text(),
                120,
                "prediction cards with a model version",
            )
            time.sleep(2.0)  # let every view catch up with the same refresh
            text = page.locator("body").inner_text()
            if "test-record" in text or "TEST RECORD" in text:
                raise SystemExit("the page shows test records, not model predictions")
            print(f"lap {lap_of(page)}; prediction cards:\n{cards.inner_text()[:600]}", file=sys.stderr)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            page.close()

            overlay = browser.new_page(viewport={"width": 1920, "height": 1080})
            overlay.goto(f"{args.url}/overlay?driver={args.driver}&theme=dark")
            battle = overlay.locator("div.box.battle:not(.empty)")
            wait_until(lambda: battle.count() == 1, 120, "the overlay's battle forecast")
            time.sleep(2.0)
            overlay.screenshot(path=str(args.overlay_out), omit_background=True)
            overlay.close()
        finally:
            browser.close()
    print(f"wrote {args.out} and {args.overlay_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
