"""Telemetry-features app: raw car telemetry -> 5 s window features per driver.

Input ``stratx.raw.car_telemetry`` is keyed ``<SessionKey>:<DriverNumber>``, so one Quix state per
driver holds the open window of :func:`stratx.functions.features.telemetry.window_update`; each
closed window goes to ``stratx.features.telemetry_window`` (same key, message timestamp = the
window end's Date). The final window of a driver stays open until a later sample arrives.

Failure policy: a sample that fails the CarTelemetry schema (the rule ingestion applies), an exact
duplicate (at-least-once redelivery), or a late / out-of-order sample changes nothing and goes to
``stratx.dead_letter`` with the reason (Stage ``telemetry_features``); the pipeline keeps going.

Restart after a hard kill: the samples after the last committed offset are processed again from
the committed window state and close the same windows; those already on the output topic are not
sent again (:class:`~stratx.quix_apps.kit.emitted.Emitted`, idempotency key SessionKey, DriverNumber,
WindowStart, the whole value compared: the state is committed with the offsets, so a window
processed again equals the one sent).

Per sample, the hot path (:class:`WindowStep`) decodes the bytes with orjson and checks them with
:func:`~stratx.functions.features.telemetry_input.sample_from_json` (the schema's rules in plain
Python; anything it does not accept goes through :func:`process`, pydantic, as before), and keeps
each key's window state decoded between samples: it is read from Quix state as bytes and decoded
again only when those bytes are not the ones it last wrote. Every sample's state is still written
to Quix state, so what is committed with the offsets is the same as before.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import Topic
from quixstreams.state import State
from quixstreams.utils.json import dumps, loads

from stratx.functions import catalog, dead_letters, ingest
from stratx.functions.features import telemetry, telemetry_input
from stratx.functions.settings import FeatureAppSettings, KafkaSettings
from stratx.quix_apps.kit import admin, metrics, wire
from stratx.quix_apps.kit.emitted import restart_filter

CONSUMER_GROUP = "stratx-telemetry-features"
STAGE = "telemetry_features"
APP = "telemetry"  # metrics app label and exporter port offset
STATE_KEY = "window"
TOPICS = catalog.ALL_TOPICS  # created up front (Tansu needs retention.ms)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def process(value: Any, key: Any, timestamp: int, headers: Any, state: State) -> list[dict[str, Any]]:
    """Stateful callback: validate one decoded sample, advance its driver's window state.

    Returns ``{"Window": record}`` for each window the sample closed and ``{"DeadLetter": letter}``
    for a rejected sample (schema, duplicate, late or out of order).
    """
    if wire.is_invalid(value):
        record = ingest.RawRecord(catalog.CAR_TELEMETRY, key, {"raw": value.get(wire.RAW)})
        return [_letter(record, value[wire.INVALID])]
    record = ingest.RawRecord(catalog.CAR_TELEMETRY, key, value)
    if telemetry_input.is_exact_sample(value):  # the schema's checks without pydantic
        sample = value
    else:
        checked = ingest.validate(record)
        if isinstance(checked, ingest.Rejected):
            return [_letter(record, checked.reason)]
        sample = checked.model_dump()
    new_state, items = telemetry.window_update(state.get(STATE_KEY), sample)
    state.set(STATE_KEY, new_state)
    return _items(record, items)


class WindowStep:
    """The pipeline's stateful callback: message bytes in, :func:`process`'s items out.

    A sample that :func:`~stratx.functions.features.telemetry_input.sample_from_json` accepts
    skips pydantic and the standard-library JSON decoder, and its key's state is taken from this
    step's cache when the bytes in Quix state are the ones the step last wrote there (else they
    are decoded, e.g. after a rebalance or a restart). Every sample that changes the state writes
    it to Quix state, as :func:`process` does. Anything else (dicts from ``sdf.test``, other bytes)
    goes through :func:`process`.
    """

    def __init__(self, max_keys: int = 1024) -> None:
        self._states: dict[Any, tuple[bytes, dict[str, Any]]] = {}  # key -> (bytes written, state)
        self._max_keys = max_keys

    def __call__(
        self, raw: Any, key: Any, timestamp: int, headers: Any, state: State
    ) -> list[dict[str, Any]]:
        sample = telemetry_input.sample_from_json(raw) if isinstance(raw, bytes) else None
        if sample is None:
            return process(wire.parse(raw), key, timestamp, headers, state)
        stored = state.get_bytes(STATE_KEY)
        cached = self._states.get(key)
        if stored is None:
            current = None
        elif cached is not None and cached[0] == stored:
            current = cached[1]
        else:
            current = loads(stored)
        new_state, items = telemetry.window_update(current, sample)
        if new_state is not current:  # a rejected sample leaves the state as it was
            data = dumps(new_state)
            state.set_bytes(STATE_KEY, data)
            if len(self._states) >= self._max_keys and key not in self._states:
                self._states.clear()
            self._states[key] = (data, new_state)
        return [
            _letter(ingest.RawRecord(catalog.CAR_TELEMETRY, key, wire.parse(raw)), item[telemetry.REJECTED])
            if telemetry.is_rejected(item)
            else {"Window": item}
            for item in items
        ]


def _items(record: ingest.RawRecord, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        _letter(record, item[telemetry.REJECTED]) if telemetry.is_rejected(item) else {"Window": item}
        for item in items
    ]


def _letter(record: ingest.RawRecord, reason: str) -> dict[str, Any]:
    letter = dead_letters.build(record.topic, record.payload, reason, stage=STAGE, key=record.key)
    return {"DeadLetter": letter.model_dump(mode="json")}


def window_id(window: dict[str, Any]) -> tuple[object, ...]:
    """The idempotency key of a window record: one per driver and window."""
    return (window["SessionKey"], window["DriverNumber"], window["WindowStart"])


def window_key(window: dict[str, Any]) -> str:
    return catalog.message_key(catalog.TELEMETRY_WINDOW, window["SessionKey"], window["DriverNumber"])


def window_timestamp(window: dict[str, Any], key: Any, timestamp: int, headers: Any) -> int:
    """Message timestamp of a window: its end's Date in ms (the input's timestamp without Date)."""
    if window["Date"] is None:
        return timestamp
    return (datetime.fromisoformat(window["Date"]) - _EPOCH) // timedelta(milliseconds=1)


def build_pipeline(
    sdf: StreamingDataFrame,
    windows: Topic,
    dead_letters: Topic,
    meter: metrics.AppMeter | None = None,
    *,
    emitted: Callable[[dict[str, Any]], bool] | None = None,
) -> StreamingDataFrame:
    """Wire the dataframe: samples -> stateful windows -> window topic / dead-letter topic
    (``meter``: count records, time the step; none by default; ``emitted``: False for a window
    already on the topic, see :func:`~stratx.quix_apps.kit.emitted.restart_filter`)."""
    m = meter or metrics.AppMeter(APP, enabled=False)
    sdf = m.consumed(sdf, catalog.CAR_TELEMETRY.name)
    items = sdf.apply(m.timed(WindowStep()), stateful=True, metadata=True, expand=True)
    letters = items.filter(lambda item: "DeadLetter" in item).apply(lambda item: item["DeadLetter"])
    m.letters(letters).to_topic(dead_letters, key=lambda letter: letter["Key"])
    closed = items.filter(lambda item: "Window" in item).apply(lambda item: item["Window"])
    if emitted is not None:
        closed = closed.filter(emitted)
    closed = m.produced(closed, windows.name)
    return closed.set_timestamp(window_timestamp).to_topic(windows, key=window_key)


def build_app(
    settings: KafkaSettings,
    *,
    state_dir: Path | None = None,
    consumer_group: str = CONSUMER_GROUP,
    loglevel: int = logging.INFO,
) -> tuple[Application, StreamingDataFrame]:
    """The app and its dataframe; creates the topics first and reads the window topic's records
    for the restart filter (needs the broker)."""
    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    try:
        admin.create_topics(client, TOPICS)
    finally:
        client.close()
    app = wire.application(settings, consumer_group, state_dir, loglevel)
    raw = app.topic(catalog.CAR_TELEMETRY.name, value_deserializer="bytes", key_deserializer="str")
    out = app.topic(catalog.TELEMETRY_WINDOW.name, value_serializer="json", key_serializer="str")
    dead = app.topic(catalog.DEAD_LETTER.name, value_serializer="json", key_serializer="str")
    meter = metrics.AppMeter(APP, settings.metrics_enabled)
    # a restart after a hard kill does not re-emit what is already on the topic (quix_apps/kit/emitted.py)
    emitted = restart_filter(settings.broker_address, out.name, window_id, auth=settings.kafka_auth())
    # with nothing on the topic the filter lets every window through: no fingerprint per window then
    keep = emitted if emitted.loaded else None
    return app, build_pipeline(app.dataframe(raw), out, dead, meter, emitted=keep)


def main(settings: FeatureAppSettings | None = None, idle_timeout: float = 0.0) -> int:
    """The deployable: topics, the app, its metrics; runs until Ctrl-C / SIGTERM or ``idle_timeout``
    seconds without input. Settings from the STRATX_* environment unless given."""
    settings = settings or FeatureAppSettings()
    wire.ensure_topics(settings)
    group = f"{settings.consumer_group_prefix}-telemetry-features"
    app, _ = build_app(settings, state_dir=settings.state_dir, consumer_group=group, loglevel=logging.WARNING)
    return wire.run(app, APP, settings, idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
