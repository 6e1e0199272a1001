"""Local OpenF1-compatible HTTP server replaying recorded real OpenF1 data (tests, benchmarks).

See README.md in this folder.
"""

from stratx.quix_apps.kit.openf1_server import (
    DEFAULT_DATA_DIR,
    ENDPOINTS,
    OPENF1_RATE_LIMIT,
    OPENF1_RATE_WINDOW_S,
    DroppedConnection,
    Faults,
    OpenF1App,
    SessionData,
    SimClock,
    create_app,
    lights_out_clock,
    serve,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "ENDPOINTS",
    "OPENF1_RATE_LIMIT",
    "OPENF1_RATE_WINDOW_S",
    "DroppedConnection",
    "Faults",
    "OpenF1App",
    "SessionData",
    "SimClock",
    "create_app",
    "lights_out_clock",
    "serve",
]
