"""What every StratX Quix app shares: its Application settings, and decoding raw message bytes
without ever crashing on a bad record (it is marked for the dead letters instead)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quixstreams import Application

from stratx.functions.catalog import TopicSpec
from stratx.functions.settings import KafkaSettings

INVALID, RAW = "_invalid", "_raw"


def application(
    settings: KafkaSettings,
    consumer_group: str,
    state_dir: Path | str | None,
    loglevel: int = logging.WARNING,
) -> Application:
    """A Quix Streams Application as every StratX app runs it: from the earliest offset, the
    short consumer session timeout Tansu needs, short fetch waits (each hop between apps costs
    up to one) and short polls (see ``consumer_poll_timeout_s``), state (RocksDB) under ``state_dir``
    (copy n > 0 of the app, ``settings.instance``: :func:`instance_state_dir`); TLS / SASL from
    ``settings.kafka_auth()``."""
    if state_dir is not None:
        state_dir = instance_state_dir(state_dir, settings.instance)
    return Application(
        broker_address=settings.kafka_auth().connection(settings.broker_address),
        consumer_group=consumer_group,
        auto_offset_reset="earliest",
        consumer_extra_config={
            "session.timeout.ms": settings.consumer_session_timeout_ms,
            "fetch.wait.max.ms": settings.consumer_fetch_wait_ms,
        },
        consumer_poll_timeout=settings.consumer_poll_timeout_s,
        state_dir=str(state_dir) if state_dir is not None else None,
        loglevel=loglevel,
    )


def instance_state_dir(state_dir: Path | str, instance: int) -> Path:
    """Where copy ``instance`` of an app keeps its Quix state: ``state_dir`` itself for copy 0 (a single
    copy is unchanged), ``state_dir/instance-<n>`` for the others. Copies on one host in one consumer
    group then each own their RocksDB stores, as pods with their own volume do; a partition that moves
    between copies is restored from its changelog topic."""
    return Path(state_dir) / f"instance-{instance}" if instance else Path(state_dir)


def ensure_topics(settings: KafkaSettings, specs: Sequence[TopicSpec] | None = None) -> None:
    """Create the catalog's topics (or ``specs``) that the broker does not have yet: an app's first step."""
    from stratx.quix_apps.kit import admin

    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    try:
        admin.create_topics(client) if specs is None else admin.create_topics(client, specs)
    finally:
        client.close()


def run(app: Application, app_name: str, settings: KafkaSettings, idle_timeout: float = 0.0) -> int:
    """Run a consumer app with its metrics exporter and lag monitor until Ctrl-C / SIGTERM, or
    ``idle_timeout`` seconds without input (0: forever)."""
    from stratx.quix_apps.kit import metrics

    monitor = metrics.instrument_app(app_name, settings, app.config.consumer_group)
    try:
        app.run(timeout=idle_timeout)
    finally:  # an app run in-process (tests, serverless adapters) leaves no lag thread polling behind
        if monitor is not None:
            monitor.stop()
    return 0


def parse(raw: bytes | dict[str, Any] | None) -> dict[str, Any]:
    """Raw message bytes -> a dict; anything else becomes an ``INVALID`` marker with the reason.

    An already-decoded dict (``StreamingDataFrame.test`` feeds values, not bytes) passes through.
    """
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw is not None else None
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: nesting too deep
        return {INVALID: f"not JSON: {exc}", RAW: (raw or b"")[:2000].decode("utf-8", "replace")}
    if not isinstance(value, dict):
        return {INVALID: f"not a JSON object: {type(value).__name__}", RAW: json.dumps(value)}
    if INVALID in value or RAW in value:  # the markers above are reserved: a record never carries them
        return {
            INVALID: f"a JSON object with a reserved key ({INVALID} or {RAW})",
            RAW: json.dumps(value)[:2000],
        }
    return value


def is_invalid(value: dict[str, Any]) -> bool:
    return INVALID in value
