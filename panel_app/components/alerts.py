"""Alerts feed: tyre cliff, anomaly, pit window, overtake, drift; newest first, severity colours."""

from __future__ import annotations

from typing import ClassVar

from stratx.panel_app import views
from stratx.panel_app.components.base import HTMLComponent, esc

ALERT_LABELS = {
    "tyre_cliff": "Tyre cliff",
    "anomaly": "Anomaly",
    "pit_window_open": "Pit window open",
    "pit_window_closing": "Pit window closing",
    "overtake_likely": "Overtake likely",
    "drift": "Model drift",
}


class AlertsFeed(HTMLComponent):
    """The latest alerts of the session; ``only_driver`` narrows the feed to the selected driver."""

    sections: ClassVar[tuple[str, ...]] = ("alerts", "info")
    driver_sensitive: ClassVar[bool] = False
    title: ClassVar[str] = "Alerts"
    css: ClassVar[str] = """
ul.alerts { list-style: none; margin: 0; padding: 0; max-height: 330px; overflow-y: auto; }
li.alert { border-left: 5px solid var(--sev); background: #111827; margin: 3px 0; padding: 4px 8px; font-size: 13px; }
li.alert .kind { font-weight: 700; color: var(--sev); margin-right: 6px; }
"""

    def html(self) -> str:
        alerts = views.alerts_newest_first(self.snapshot)
        if not alerts:
            return f"<h3>{self.title}</h3><div class='note'>No alerts yet.</div>"
        items = []
        for a in alerts:
            severity = str(a.get("Severity", "info"))
            colour = views.SEVERITY_COLOURS.get(severity, "#9ca3af")
            lap = f"L{a['LapNumber']} " if a.get("LapNumber") else ""
            label = ALERT_LABELS.get(str(a.get("Type")), str(a.get("Type")))
            items.append(
                f"<li class='alert sev-{esc(severity)}' data-type='{esc(a.get('Type'))}' style='--sev:{colour}'>"
                f"<span class='kind'>{esc(label)}</span><span class='muted'>{esc(lap)}"
                f"{esc(views.code_of(self.snapshot, a.get('DriverNumber')))}</span> {esc(a.get('Message'))}</li>"
            )
        return f"<h3>{self.title}</h3><ul class='alerts'>{''.join(items)}</ul>"
