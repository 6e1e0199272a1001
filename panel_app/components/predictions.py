"""Live model predictions: every model's latest output for the selected driver, and the field."""

from __future__ import annotations

from typing import ClassVar

from stratx.panel_app import views
from stratx.panel_app.components.base import HTMLComponent, esc


class Predictions(HTMLComponent):
    """Cards for the selected driver (model, version, lap, Values) and a field table of headlines."""

    sections: ClassVar[tuple[str, ...]] = ("predictions", "info", "timing", "laps")
    title: ClassVar[str] = "Model predictions"
    css: ClassVar[str] = """
div.cards { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 8px; }
div.card { background: #111827; border: 1px solid #374151; border-radius: 4px; padding: 4px 8px; min-width: 150px; }
div.card .model { font-weight: 700; color: #a78bfa; }
div.card.unavailable { opacity: .6; }
div.card dl { margin: 2px 0; display: grid; grid-template-columns: auto auto; gap: 0 8px; font-size: 12px; }
div.card dt { color: #9ca3af; } div.card dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
"""

    def html(self) -> str:
        snap = self.snapshot
        if not snap.predictions:
            return f"<h3>{self.title}</h3><div class='note'>No predictions on the topics yet.</div>"
        return f"<h3>{self.title}</h3>{self._cards()}{self._field()}"

    def _cards(self) -> str:
        if self.driver is None:
            return "<div class='note'>Pick a driver to see every model's output.</div>"
        rows = views.prediction_rows(self.snapshot, self.driver)
        code = views.code_of(self.snapshot, self.driver)
        if not rows:
            return f"<div class='note'>No predictions for {esc(code)} yet.</div>"
        cards = []
        for r in rows:
            values = "".join(
                f"<dt>{esc(k)}</dt><dd>{esc(views.fmt_value(v))}</dd>" for k, v in r.values.items()
            )
            extra = f" vs {esc(views.code_of(self.snapshot, r.other_driver))}" if r.other_driver else ""
            status = "" if r.status == "ok" else f"<div class='muted'>{esc(r.status)}: {esc(r.reason)}</div>"
            cards.append(
                f"<div class='card {esc(r.status)}' data-model='{esc(r.model)}'>"
                f"<div class='model'>{esc(views.MODEL_LABELS[r.model])}{extra}</div>"
                f"<div class='muted'>{esc(code)} lap {esc(r.lap or '-')} &middot; v{esc(r.version or '?')}</div>"
                f"{status}<dl>{values}</dl></div>"
            )
        return f"<div class='cards'>{''.join(cards)}</div>"

    def _field(self) -> str:
        order = views.running_order(self.snapshot)
        rows = views.field_predictions(self.snapshot, order)
        head = "<th>Driver</th>" + "".join(
            f"<th class='num'>{esc(views.MODEL_LABELS[m])}</th>" for m in views.PRIMARY_VALUES
        )
        body = []
        for drv, per in rows:
            if all(v is None for v in per.values()):
                continue
            cells = "".join(
                f"<td class='num'>{esc(views.fmt_lap_time(v) if m == 'lap_time' else views.fmt_value(v))}</td>"
                for m, v in per.items()
            )
            body.append(
                f"<tr data-driver='{esc(drv)}'><td>{esc(views.code_of(self.snapshot, drv))}</td>{cells}</tr>"
            )
        return f"<table class='field'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
