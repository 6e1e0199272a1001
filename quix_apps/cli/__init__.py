"""`stratx` command line: parse, then dispatch to the one module that runs the subcommand.

The parser (:mod:`.parser`) imports no subsystem; a subcommand's module and everything it needs are
imported only when it runs. Expected failures become one ``stratx: error: ...`` line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import warnings
from collections.abc import Callable, Sequence

from stratx.quix_apps.cli.parser import build_parser

__all__ = ["build_parser", "main"]
EXIT_USAGE = 2


def command(spec: str):
    """The function a ``"<module>:<function>"`` spec names, imported now."""
    module, _, name = spec.partition(":")
    run: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return run


# Expected failures besides ValueError / OSError: printed as one line. Only the modules already
# loaded are asked (an exception of a module that was never imported cannot have been raised), so
# a bad argument does not load Quix, Kafka or FastF1 just to be reported.
EXPECTED = (
    ("stratx.quix_apps.cli.common", "UserError"),
    ("stratx.bentos.lifecycle.sources_common", "SourceError"),
    ("stratx.quix_apps.kit.broker", "BrokerError"),
    ("stratx.quix_apps.kit.admin", "AdminError"),
    ("stratx.quix_apps.replay", "DeliveryError"),
    ("stratx.quix_apps.kit.openf1_client", "OpenF1Error"),  # a rejected token, or OpenF1 unavailable
    ("stratx.quix_apps.kit.pipeline", "AppExited"),
)


def _expected() -> tuple[type[BaseException], ...]:
    found = (getattr(sys.modules[m], name, None) for m, name in EXPECTED if m in sys.modules)
    return tuple(c for c in found if isinstance(c, type) and issubclass(c, BaseException))


def _quiet_authlib() -> None:
    """authlib (imported by quixstreams) forces its deprecation warnings to "always"; undo that."""
    try:
        from authlib.deprecate import AuthlibDeprecationWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "topics" and not any(e.startswith("-") for e in extra):
        args.names = [*args.names, *extra]  # names after an option, e.g. `describe --broker X NAME`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("fastf1", "quixstreams", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if not args.verbose:  # one line per HTTP call of the model/OpenF1 clients is debug output
        logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its retries are reported by us, once
    _quiet_authlib()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    run = command(args.func)  # the subcommand's module, and what it needs, load only now
    try:
        return int(run(args))
    except KeyboardInterrupt:
        print("stratx: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not isinstance(exc, (ValueError, OSError, *_expected())):
            raise
        print(f"stratx: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
