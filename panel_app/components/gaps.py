"""Gaps and traffic: cars within DRS range of the car ahead, with the overtake model's odds."""

from __future__ import annotations

from typing import ClassVar

from stratx.panel_app import views
from stratx.panel_app.components.base import HTMLComponent, esc

HORIZONS = (
    ("OvertakeProbability1Lap", "1 lap"),
    ("OvertakeProbability2Laps", "2 laps"),
    ("OvertakeProbability3Laps", "3 laps"),
)


class GapsAndTraffic(HTMLComponent):
    """Pairs of consecutive cars under 1.0 s apart (DRS range), closest first."""

    sections: ClassVar[tuple[str, ...]] = ("timing", "laps", "predictions", "info", "retired")
    driver_sensitive: ClassVar[bool] = False
    title: ClassVar[str] = "DRS range and overtakes"

    def html(self) -> str:
        snap = self.snapshot
        found = views.pairs(snap)
        if not found:
            return f"<h3>{self.title}</h3><div class='note'>No car within {views.DRS_RANGE_S:.1f} s of the car ahead.</div>"
        head = "<th>Attacker</th><th>Ahead</th><th class='num'>Interval</th>" + "".join(
            f"<th class='num'>P(pass) {label}</th>" for _, label in HORIZONS
        )
        rows = []
        for p in found:
            odds = "".join(
                f"<td class='num'>{esc(f'{p.overtake[k]:.0%}' if k in p.overtake else '-')}</td>"
                for k, _ in HORIZONS
            )
            rows.append(
                f"<tr data-driver='{esc(p.behind)}'><td>{esc(views.code_of(snap, p.behind))}</td>"
                f"<td>{esc(views.code_of(snap, p.ahead))}</td><td class='num'>{p.interval:.3f}</td>{odds}</tr>"
            )
        return f"<h3>{self.title}</h3><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
