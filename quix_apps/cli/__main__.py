"""``python -m stratx.quix_apps.cli``: what the apps' processes and containers run."""

import sys

from stratx.quix_apps.cli import main

sys.exit(main())
