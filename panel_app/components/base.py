"""The shared shape of every component: params ``snapshot`` and ``driver``, render on change.

A component re-renders only when the sections of the state it shows changed (e.g. the tower
ignores a new telemetry sample), or when its driver changes. Tests drive the params directly.
"""

from __future__ import annotations

import html
from typing import Any, ClassVar

import panel as pn
import param
from panel.viewable import Viewer

from stratx.panel_app.state import RaceSnapshot, empty_snapshot

BASE_CSS = """
:host { color: #e5e7eb; font-family: 'Titillium Web', 'Segoe UI', Roboto, Arial, sans-serif; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th { text-align: left; color: #9ca3af; font-weight: 600; padding: 3px 6px; border-bottom: 1px solid #374151; }
td { padding: 3px 6px; border-bottom: 1px solid #1f2937; white-space: nowrap; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #9ca3af; }
.note { color: #9ca3af; font-style: italic; padding: 6px; }
h3 { margin: 4px 0 6px 0; font-size: 14px; color: #f3f4f6; letter-spacing: .04em; text-transform: uppercase; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


class RaceComponent(Viewer):
    """Base: subclasses set ``sections`` and implement :meth:`render` (called on relevant changes)."""

    snapshot = param.ClassSelector(class_=RaceSnapshot, default=empty_snapshot(), doc="latest race state")
    driver = param.String(default=None, allow_None=True, doc="the selected DriverNumber")

    sections: ClassVar[tuple[str, ...]] = ()
    driver_sensitive: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._rendered: tuple[int, int, str | None] | None = None
        self.param.watch(self._changed, ["snapshot", "driver"])

    def _key(self) -> tuple[int, int, str | None]:
        snap = self.snapshot
        return (
            snap.session_key,
            snap.section_version(*self.sections),
            self.driver if self.driver_sensitive else None,
        )

    def _changed(self, *_: Any) -> None:
        self.refresh()

    def refresh(self, force: bool = False) -> None:
        key = self._key()
        if not force and key == self._rendered:
            return
        self._rendered = key
        self.render()

    def render(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class HTMLComponent(RaceComponent):
    """A component drawn as one HTML pane (fast to update, easy to read in the DOM)."""

    css: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._pane = pn.pane.HTML(
            "", stylesheets=[BASE_CSS + self.css], sizing_mode="stretch_width", css_classes=[self.css_class()]
        )
        self.refresh(force=True)

    @classmethod
    def css_class(cls) -> str:
        return f"stratx-{cls.__name__.lower()}"

    def render(self) -> None:
        self._pane.object = self.html()

    def html(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane
