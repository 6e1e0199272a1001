"""The dashboard server's command-line options (light: no Panel import, so `stratx --help` stays fast)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The dashboard's options (shared by ``stratx dashboard`` and ``python -m stratx.panel_app``)."""
    p.add_argument("--host", help="listen address (STRATX_DASHBOARD_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (STRATX_DASHBOARD_PORT, default 5006)")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.add_argument(
        "--allow-websocket-origin",
        action="append",
        default=None,
        help="extra origin allowed to embed the dashboard, host[:port]; repeatable",
    )
    p.add_argument("--refresh-ms", type=int, help="per-session refresh period (default 100)")
    p.add_argument("--replay-control", action="store_true", help="show the replay start/speed panel")
