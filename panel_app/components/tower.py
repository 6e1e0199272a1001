"""Timing tower: position, driver, gap, interval, tyre and age, pit stops, last and predicted lap."""

from __future__ import annotations

from typing import ClassVar

from stratx.panel_app import views
from stratx.panel_app.components.base import HTMLComponent, esc

COLUMNS = ("P", "Driver", "Gap", "Int", "Tyre", "Age", "Pits", "Lap", "Last lap", "Predicted next")


class TimingTower(HTMLComponent):
    """One row per driver in running order; the selected driver is highlighted."""

    sections: ClassVar[tuple[str, ...]] = ("info", "timing", "laps", "predictions", "retired")
    title: ClassVar[str] = "Timing tower"
    css: ClassVar[str] = """
tr.selected td { background: #1e293b; }
td.drv { font-weight: 700; border-left: 4px solid var(--team); }
span.tyre { display: inline-block; width: 18px; height: 18px; line-height: 18px; border-radius: 50%;
  text-align: center; font-weight: 700; font-size: 11px; color: #111; }
td.pred { color: #a78bfa; }
"""

    def html(self) -> str:
        rows = views.tower_rows(self.snapshot)
        if not rows:
            return f"<h3>{self.title}</h3><div class='note'>Waiting for timing and lap features...</div>"
        head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
        body = "".join(self._row(r) for r in rows)
        lap = max((r.lap or 0 for r in rows), default=0)
        total = (self.snapshot.info or {}).get("TotalLaps")
        lap_text = f"Lap {lap}/{total}" if total else f"Lap {lap}"
        return (
            f"<h3>{self.title} <span class='muted' data-role='lap'>{esc(lap_text)}</span></h3>"
            f"<table class='tower'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def _row(self, r: views.TowerRow) -> str:
        selected = " class='selected'" if r.number == self.driver else ""
        colour = views.COMPOUND_COLOURS.get(r.compound or "", views.UNKNOWN_COMPOUND_COLOUR)
        tyre = (
            f"<span class='tyre' style='background:{colour}' title='{esc(r.compound)}'>{esc(r.compound[0])}</span>"
            if r.compound
            else "-"
        )
        cells = (
            f"<td class='pos num'>{esc(r.position or '-')}</td>",
            f"<td class='drv' style='--team:{esc(r.colour)}'>{esc(r.code)}</td>",
            f"<td class='gap num'>{esc(r.gap)}</td>",
            f"<td class='int num'>{esc(r.interval)}</td>",
            f"<td class='tyre'>{tyre}</td>",
            f"<td class='age num'>{esc(r.tyre_age if r.tyre_age is not None else '-')}</td>",
            f"<td class='pits num'>{r.pit_stops}</td>",
            f"<td class='lapno num'>{esc(r.lap or '-')}</td>",
            f"<td class='last num'>{esc(views.fmt_lap_time(r.last_lap))}</td>",
            f"<td class='pred num' data-driver='{esc(r.number)}'>{esc(views.fmt_lap_time(r.predicted_next_lap))}</td>",
        )
        return f"<tr data-driver='{esc(r.number)}'{selected}>{''.join(cells)}</tr>"
