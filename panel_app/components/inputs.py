"""What the session lacks, and which models cannot answer because of it (and why), in plain words."""

from __future__ import annotations

from typing import ClassVar

from stratx.panel_app import views
from stratx.panel_app.components.base import HTMLComponent, esc

MAX_CARS = 6  # cars named per unavailable model and reason; the rest are counted


class SessionInputs(HTMLComponent):
    """The session's missing source tables (session info) and every model whose latest
    predictions are ``unavailable``, with the reason and the cars; says so when nothing is missing."""

    sections: ClassVar[tuple[str, ...]] = ("info", "predictions", "telemetry", "positions", "timing")
    driver_sensitive: ClassVar[bool] = False
    title: ClassVar[str] = "Session inputs"
    css: ClassVar[str] = """
ul.unavailable { margin: 2px 0 4px 0; padding-left: 18px; font-size: 13px; }
ul.unavailable li { margin: 2px 0; }
ul.unavailable b { color: #a78bfa; }
"""

    def render(self) -> None:
        html = self.html()
        if html != self._pane.object:  # telemetry samples re-check it; the text rarely changes
            self._pane.object = html

    def html(self) -> str:
        snap = self.snapshot
        head = f"<h3>{self.title}</h3>"
        if snap.info is None and not snap.predictions:
            return head + "<div class='note'>Waiting for the session...</div>"
        lacks = views.session_lacks(snap)
        out = [head]
        if lacks:
            parts = ", ".join(f"no {esc(x.what)} ({esc(x.effect)})" for x in lacks)
            out.append(f"<div class='note' data-role='session-lacks'>This session has {parts}.</div>")
        unavailable = views.unavailable_models(snap)
        if unavailable:
            out.append(
                f"<ul class='unavailable' data-role='models-unavailable'>{self._items(unavailable)}</ul>"
            )
        if not lacks and not unavailable:
            out.append(
                "<div class='note' data-role='inputs-complete'>Nothing missing: every model answers.</div>"
            )
        return "".join(out)

    def _items(self, unavailable: list[views.Unavailable]) -> str:
        labels = views.driver_labels(self.snapshot)
        items = []
        for u in unavailable:
            codes = [labels[d].code if d in labels else d for d in u.drivers]
            named = ", ".join(codes[:MAX_CARS]) + (
                f" +{len(codes) - MAX_CARS}" if len(codes) > MAX_CARS else ""
            )
            cars = "1 car" if len(codes) == 1 else f"{len(codes)} cars"
            items.append(
                f"<li data-model='{esc(u.model)}'><b>{esc(u.label)}</b> unavailable for {cars} "
                f"({esc(named)}): {esc(u.reason)}</li>"
            )
        return "".join(items)
