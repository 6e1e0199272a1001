"""Track map: every car's latest position on the circuit outline (where the race has positions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import panel as pn
import param
from bokeh.models import ColumnDataSource
from bokeh.models.annotations import LabelSet

from stratx.functions.features.track_gaps import load_track_map
from stratx.panel_app import views
from stratx.panel_app.components.charts import BokehComponent, dark_figure


class TrackMap(BokehComponent):
    """Car dots with codes over the circuit line from ``data/circuits`` (positions only where shipped)."""

    circuits_dir = param.ClassSelector(class_=Path, default=None, allow_None=True, doc="data/circuits")
    sections: ClassVar[tuple[str, ...]] = ("positions", "info")
    driver_sensitive: ClassVar[bool] = True

    def build(self) -> Any:
        self.outline = ColumnDataSource(dict(x=[], y=[]))
        self.cars = ColumnDataSource(dict(x=[], y=[], colour=[], code=[], size=[]))
        fig = dark_figure(title="Track map", height=360, match_aspect=True)
        fig.line("x", "y", source=self.outline, line_color="#4b5563", line_width=6)
        fig.scatter("x", "y", color="colour", size="size", line_color="#f9fafb", source=self.cars)
        fig.add_layout(
            LabelSet(
                x="x",
                y="y",
                text="code",
                source=self.cars,
                x_offset=6,
                y_offset=6,
                text_color="#e5e7eb",
                text_font_size="10px",
            )
        )
        fig.axis.visible = False
        fig.grid.visible = False
        self._circuit: str | None = None
        self._note = pn.pane.HTML("", styles={"color": "#9ca3af"})
        return fig

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._pane, self._note, sizing_mode="stretch_width")

    def render(self) -> None:
        snap = self.snapshot
        circuit = (snap.info or {}).get("Circuit")
        if circuit != self._circuit and self.circuits_dir is not None:
            self._circuit = circuit
            track = load_track_map(self.circuits_dir, circuit)
            xs = [*list(track.x), track.x[0]] if track is not None else []
            ys = [*list(track.y), track.y[0]] if track is not None else []
            self.outline.data = dict(x=xs, y=ys)
        available = views.has_positions(snap)
        self._note.object = "This session has no car positions: no track map." if available is False else ""
        labels = views.driver_labels(snap)
        data: dict[str, Any] = dict(x=[], y=[], colour=[], code=[], size=[])
        for drv, pos in sorted(snap.positions.items()):
            label = labels.get(drv)
            data["x"].append(pos.get("X"))
            data["y"].append(pos.get("Y"))
            data["colour"].append(label.colour if label else "#888888")
            data["code"].append(label.code if label else drv)
            data["size"].append(14 if drv == self.driver else 9)
        self.cars.data = data
