"""What every `stratx` subcommand shares: the one-line user error, flag overrides, small printers."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic_settings import BaseSettings

from stratx.functions.settings import (
    KafkaSettings,
)
from stratx.quix_apps.kit import broker

log = logging.getLogger("stratx")
EXIT_USAGE = 2
DEMO_RACE = (2023, "Bahrain", "R")

Handler = Callable[[argparse.Namespace], int]
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class UserError(Exception):
    """An expected failure: printed as one line, exit code 2."""


def override(settings: SettingsT, **values: object) -> SettingsT:
    """The settings with the flags the user gave (None = flag not given) taking precedence."""
    update = {k: v for k, v in values.items() if v is not None}
    return settings.model_copy(update=update) if update else settings


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    return override(KafkaSettings(), broker_address=args.broker)


def print_counts(counts: dict[str, int]) -> None:
    for topic, n in sorted(counts.items()):
        print(f"  {topic:32s} {n:>9d}", file=sys.stderr)


def wait_for_signal(b: broker.EmbeddedBroker) -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while b.proc is not None and b.proc.poll() is None:
            time.sleep(0.2)
        raise UserError(f"the broker exited unexpectedly (code {b.proc.returncode if b.proc else '?'})")
    except KeyboardInterrupt:
        print("stopping broker", file=sys.stderr)
