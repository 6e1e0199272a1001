"""``python -m stratx.panel_app [--host H] [--port P] [--broker B] ...``: the dashboard server."""

import sys

from stratx.panel_app.app import main

sys.exit(main())
