"""Broadcast lower third: battle forecast, pit window, tyre cliff; 1920x1080, transparent, title-safe."""

from __future__ import annotations

from typing import ClassVar

import param

from stratx.panel_app import views
from stratx.panel_app.components.base import HTMLComponent, esc

WIDTH, HEIGHT = 1920, 1080
# title-safe area: 10 % of the width/height in from each edge (SMPTE RP 2046-2 / EBU R 95)
SAFE_X, SAFE_Y = WIDTH // 10, HEIGHT // 10
THEMES = {
    "dark": {"panel": "rgba(12,18,32,0.88)", "text": "#f9fafb", "muted": "#9ca3af", "accent": "#e10600"},
    "light": {"panel": "rgba(249,250,251,0.92)", "text": "#111827", "muted": "#4b5563", "accent": "#e10600"},
}


class LowerThird(HTMLComponent):
    """The overlay's only content; the page around it stays transparent for keying."""

    theme: param.Selector = param.Selector(
        default="dark", objects=list(THEMES), doc="colour theme (URL ?theme=)"
    )
    sections: ClassVar[tuple[str, ...]] = ("timing", "laps", "predictions", "alerts", "info", "retired")
    css: ClassVar[str] = f"""
:host {{ background: transparent; }}
div.stage {{ position: relative; width: {WIDTH}px; height: {HEIGHT}px; background: transparent; overflow: hidden; }}
div.lower-third {{ position: absolute; left: {SAFE_X}px; right: {SAFE_X}px; bottom: {SAFE_Y}px;
  display: flex; gap: 16px; align-items: stretch; }}
div.box {{ flex: 1; background: var(--panel); color: var(--text); border-left: 8px solid var(--accent);
  padding: 14px 20px; font-size: 26px; line-height: 1.25; }}
div.box .head {{ font-size: 18px; letter-spacing: .12em; text-transform: uppercase; color: var(--muted); }}
div.box b {{ font-size: 32px; }}
div.box.empty {{ display: none; }}
"""

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._pane.margin = 0  # the stage is the page: 1920x1080 from the top-left corner
        self._pane.sizing_mode = "fixed"
        self._pane.width, self._pane.height = WIDTH, HEIGHT
        self.param.watch(lambda *_: self.refresh(force=True), ["theme"])

    def html(self) -> str:
        t = THEMES[str(self.theme)]
        style = f"--panel:{t['panel']};--text:{t['text']};--muted:{t['muted']};--accent:{t['accent']}"
        boxes = self._battle() + self._pit() + self._cliff()
        return (
            f"<div class='stage theme-{esc(self.theme)}' style='{style}'>"
            f"<div class='lower-third'>{boxes}</div></div>"
        )

    def _battle(self) -> str:
        snap = self.snapshot
        pair = views.battle_forecast(snap)
        if pair is None:
            return "<div class='box battle empty'></div>"
        p1 = pair.overtake.get("OvertakeProbability1Lap")
        p3 = pair.overtake.get("OvertakeProbability3Laps")
        odds = (
            f" &middot; pass in 1 lap <b data-role='p1'>{p1:.0%}</b>"
            + (f", in 3 laps {p3:.0%}" if p3 is not None else "")
            if p1 is not None
            else " &middot; <span class='muted'>no overtake forecast yet</span>"
        )
        return (
            "<div class='box battle'><div class='head'>Battle forecast</div>"
            f"<b>{esc(views.code_of(snap, pair.behind))}</b> on <b>{esc(views.code_of(snap, pair.ahead))}</b>"
            f" {pair.interval:.3f} s{odds}</div>"
        )

    def _pit(self) -> str:
        window = views.pit_window(self.snapshot, self.driver)
        if window is None or window.probability is None:
            return "<div class='box pit empty'></div>"
        laps = (
            f" &middot; laps {window.open_lap}-{window.close_lap}"
            if window.open_lap is not None and window.close_lap is not None
            else ""
        )
        return (
            "<div class='box pit'><div class='head'>Pit window</div>"
            f"<b>{esc(views.code_of(self.snapshot, window.driver))}</b> stop within 3 laps "
            f"<b>{window.probability:.0%}</b>{laps}</div>"
        )

    def _cliff(self) -> str:
        alert = views.latest_alert(self.snapshot, ("tyre_cliff",), self.driver)
        if alert is None:
            return "<div class='box cliff empty'></div>"
        return (
            "<div class='box cliff'><div class='head'>Tyre cliff</div>"
            f"<b>{esc(views.code_of(self.snapshot, alert.get('DriverNumber')))}</b> {esc(alert.get('Message'))}</div>"
        )
