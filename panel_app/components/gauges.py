"""Telemetry gauges of the selected driver: speed, throttle, RPM, gear, brake, DRS."""

from __future__ import annotations

from typing import Any, ClassVar

from stratx.panel_app import views
from stratx.panel_app.components.base import HTMLComponent, esc

# (field, label, maximum, unit)
BARS = (("Speed", "Speed", 360.0, "km/h"), ("Throttle", "Throttle", 100.0, "%"), ("RPM", "RPM", 13000.0, ""))


class TelemetryGauges(HTMLComponent):
    """The latest car-data sample of the driver; says so plainly when the session has no telemetry."""

    sections: ClassVar[tuple[str, ...]] = ("telemetry", "info")
    title: ClassVar[str] = "Telemetry"
    css: ClassVar[str] = """
div.gauge { margin: 4px 0; }
div.gauge .label { display: flex; justify-content: space-between; font-size: 12px; color: #9ca3af; }
div.gauge .bar { height: 10px; background: #1f2937; border-radius: 3px; overflow: hidden; }
div.gauge .fill { height: 100%; background: #22d3ee; }
div.chips { display: flex; gap: 8px; margin-top: 6px; }
div.chip { background: #111827; border: 1px solid #374151; border-radius: 4px; padding: 3px 10px; text-align: center; }
div.chip b { display: block; font-size: 20px; }
div.chip.on { border-color: #ef4444; } div.chip.drs-open { border-color: #22c55e; }
"""

    def html(self) -> str:
        snap = self.snapshot
        code = views.code_of(snap, self.driver)
        head = f"<h3>{self.title} <span class='muted'>{esc(code)}</span></h3>"
        available = views.has_telemetry(snap)
        if available is False:
            return (
                head
                + "<div class='note' data-role='no-telemetry'>This session has no car telemetry (the source had none): no gauges.</div>"
            )
        if self.driver is None:
            return head + "<div class='note'>Pick a driver.</div>"
        sample = snap.telemetry.get(self.driver)
        if sample is None:
            return head + "<div class='note'>Waiting for car telemetry...</div>"
        return head + self._bars(sample) + self._chips(sample)

    def _bars(self, s: dict[str, Any]) -> str:
        out = []
        for name, label, maximum, unit in BARS:
            value = views.number(s.get(name))
            share = 0.0 if value is None else max(0.0, min(value / maximum, 1.0))
            text = "-" if value is None else f"{value:.0f} {unit}".strip()
            out.append(
                f"<div class='gauge' data-field='{name}'><div class='label'><span>{label}</span>"
                f"<span class='value'>{esc(text)}</span></div>"
                f"<div class='bar'><div class='fill' style='width:{share * 100:.1f}%'></div></div></div>"
            )
        return "".join(out)

    def _chips(self, s: dict[str, Any]) -> str:
        brake = s.get("Brake")
        drs = views.drs_state(s.get("DRS"))
        return (
            "<div class='chips'>"
            f"<div class='chip' data-field='nGear'>Gear<b>{esc(s.get('nGear', '-'))}</b></div>"
            f"<div class='chip {'on' if brake else ''}' data-field='Brake'>Brake<b>{'ON' if brake else ('-' if brake is None else 'off')}</b></div>"
            f"<div class='chip drs-{esc(drs)}' data-field='DRS'>DRS<b>{esc(drs)}</b></div>"
            "</div>"
        )
