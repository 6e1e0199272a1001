"""Bokeh charts: race trace (gap to leader by lap), tyre strategy (stints), wear curves."""

from __future__ import annotations

from typing import Any, ClassVar

import panel as pn
from bokeh.models import ColumnDataSource, FactorRange, Range1d
from bokeh.models.annotations import Title
from bokeh.plotting import figure

from stratx.panel_app import views
from stratx.panel_app.components.base import RaceComponent

DARK: dict[str, Any] = {
    "background_fill_color": "#0b1220",
    "border_fill_color": "#0b1220",
    "outline_line_color": None,
}


def dark_figure(**kwargs: Any) -> Any:
    fig = figure(sizing_mode="stretch_width", toolbar_location=None, tools="hover", **DARK, **kwargs)
    for axis in (fig.xaxis, fig.yaxis):
        axis.axis_label_text_color = "#9ca3af"
        axis.major_label_text_color = "#9ca3af"
        axis.axis_line_color = "#374151"
    fig.grid.grid_line_color = "#1f2937"
    if isinstance(fig.title, Title):
        fig.title.text_color = "#e5e7eb"
    return fig


class BokehComponent(RaceComponent):
    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._fig = self.build()
        self._pane = pn.pane.Bokeh(self._fig, sizing_mode="stretch_width")
        self.refresh(force=True)

    def build(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane


class RaceTrace(BokehComponent):
    """Gap to the leader at each lap end, one line per driver (lower = further behind)."""

    sections: ClassVar[tuple[str, ...]] = ("laps", "info")

    def build(self) -> Any:
        self.source = ColumnDataSource(dict(xs=[], ys=[], colour=[], code=[], width=[]))
        fig = dark_figure(title="Race trace: gap to leader (s)", height=300, x_axis_label="lap")
        fig.multi_line("xs", "ys", line_color="colour", line_width="width", source=self.source)
        fig.y_range.flipped = True
        fig.hover.tooltips = [("driver", "@code")]
        return fig

    def render(self) -> None:
        snap = self.snapshot
        labels = views.driver_labels(snap)
        data: dict[str, Any] = dict(xs=[], ys=[], colour=[], code=[], width=[])
        for drv, (xs, ys) in sorted(views.race_trace(snap).items()):
            if not xs:
                continue
            label = labels.get(drv)
            data["xs"].append(xs)
            data["ys"].append(ys)
            data["colour"].append(label.colour if label else "#888888")
            data["code"].append(label.code if label else drv)
            data["width"].append(3.5 if drv == self.driver else 1.5)
        self.source.data = data


class TyreStrategy(BokehComponent):
    """Stints by compound per driver, in running order."""

    sections: ClassVar[tuple[str, ...]] = ("laps", "info", "timing")
    driver_sensitive: ClassVar[bool] = False

    def build(self) -> Any:
        self.source = ColumnDataSource(dict(code=[], left=[], right=[], colour=[], compound=[], stint=[]))
        fig = dark_figure(
            title="Tyre strategy", height=420, y_range=FactorRange(factors=[]), x_axis_label="lap"
        )
        fig.hbar(
            y="code",
            left="left",
            right="right",
            height=0.7,
            fill_color="colour",
            line_color="#0b1220",
            source=self.source,
        )
        fig.hover.tooltips = [("driver", "@code"), ("stint", "@stint"), ("compound", "@compound")]
        return fig

    def render(self) -> None:
        snap = self.snapshot
        labels = views.driver_labels(snap)
        order = [labels[d].code for d in views.running_order(snap) if d in labels]
        data: dict[str, Any] = dict(code=[], left=[], right=[], colour=[], compound=[], stint=[])
        for bar in views.stints(snap):
            label = labels.get(bar.driver)
            data["code"].append(label.code if label else bar.driver)
            data["left"].append(bar.start_lap - 0.5)
            data["right"].append(bar.end_lap + 0.5)
            data["colour"].append(
                views.COMPOUND_COLOURS.get(bar.compound or "", views.UNKNOWN_COMPOUND_COLOUR)
            )
            data["compound"].append(bar.compound or "?")
            data["stint"].append(bar.stint)
        self._fig.y_range.factors = list(reversed(order))
        self.source.data = data


class WearCurves(BokehComponent):
    """Per stint of the selected driver: fuel-corrected clean laps by tyre life, the tyre model's falloff and 80 % band."""

    sections: ClassVar[tuple[str, ...]] = ("laps", "predictions", "info")

    def build(self) -> Any:
        self.points = ColumnDataSource(dict(x=[], y=[], colour=[], stint=[]))
        self.lines = ColumnDataSource(dict(xs=[], ys=[], colour=[]))
        self.bands = ColumnDataSource(dict(xs=[], ys=[], colour=[]))
        fig = dark_figure(
            title="Wear: fuel-corrected lap time by tyre life", height=300, x_axis_label="tyre life (laps)"
        )
        fig.patches("xs", "ys", fill_color="colour", fill_alpha=0.18, line_alpha=0, source=self.bands)
        fig.multi_line("xs", "ys", line_color="colour", line_dash="dashed", line_width=2, source=self.lines)
        fig.scatter("x", "y", color="colour", size=6, source=self.points)
        fig.hover.tooltips = [("stint", "@stint"), ("tyre life", "@x"), ("lap time", "@y{0.000}")]
        fig.x_range = Range1d(start=0, end=40)
        return fig

    def render(self) -> None:
        curves = views.wear_curves(self.snapshot, self.driver) if self.driver else []
        points: dict[str, Any] = dict(x=[], y=[], colour=[], stint=[])
        lines: dict[str, Any] = dict(xs=[], ys=[], colour=[])
        bands: dict[str, Any] = dict(xs=[], ys=[], colour=[])
        top = 10.0
        for c in curves:
            colour = views.COMPOUND_COLOURS.get(c.compound or "", views.UNKNOWN_COMPOUND_COLOUR)
            points["x"] += c.tyre_life
            points["y"] += c.fuel_corrected
            points["colour"] += [colour] * len(c.tyre_life)
            points["stint"] += [c.stint] * len(c.tyre_life)
            top = max([top, *c.tyre_life, *c.model_life])
            if c.model_life:
                lines["xs"].append(c.model_life)
                lines["ys"].append(c.model_mid)
                lines["colour"].append(colour)
                bands["xs"].append(c.model_life + c.model_life[::-1])
                bands["ys"].append(c.model_low + c.model_high[::-1])
                bands["colour"].append(colour)
        self._fig.x_range.end = top + 1
        self.points.data, self.lines.data, self.bands.data = points, lines, bands
