"""Dashboard components: ``pn.viewable.Viewer`` classes driven by a snapshot and a driver param."""

from stratx.panel_app.components.alerts import AlertsFeed
from stratx.panel_app.components.base import RaceComponent
from stratx.panel_app.components.charts import RaceTrace, TyreStrategy, WearCurves
from stratx.panel_app.components.gaps import GapsAndTraffic
from stratx.panel_app.components.gauges import TelemetryGauges
from stratx.panel_app.components.inputs import SessionInputs
from stratx.panel_app.components.overlay import LowerThird
from stratx.panel_app.components.predictions import Predictions
from stratx.panel_app.components.tower import TimingTower
from stratx.panel_app.components.track_map import TrackMap

__all__ = [
    "AlertsFeed",
    "GapsAndTraffic",
    "LowerThird",
    "Predictions",
    "RaceComponent",
    "RaceTrace",
    "SessionInputs",
    "TelemetryGauges",
    "TimingTower",
    "TrackMap",
    "TyreStrategy",
    "WearCurves",
]
