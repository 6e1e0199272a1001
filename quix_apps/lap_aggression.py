"""Lap-aggression app: telemetry windows + lap features -> per-lap driver-aggression features.

Both inputs, ``stratx.features.telemetry_window`` and ``stratx.features.lap``, are keyed
``<SessionKey>:<DriverNumber>``; the app ``concat``s them and keeps one state per key for
:func:`stratx.functions.features.aggression.aggression_step`. Each finalized lap goes to
``stratx.features.lap_aggression`` (same key, message timestamp = the lap end's Date). The result
does not depend on how the two topics interleave (Quix aligns them by message timestamp anyway).

Co-partitioning: Quix Streams keeps state per input partition number, so a key's windows and laps
must land on the same partition number: both topics need the same partition count and the same
partitioner (murmur2, Quix's producer default). Quix checks the count when the stateful step is
declared and raises ``TopicPartitionsMismatch`` otherwise, so this app needs FEATURES_LAP with
TELEMETRY_WINDOW's 6 partitions.

Failure policy: a record that is not JSON or fails its topic's schema, a duplicate or out-of-order
window or lap changes nothing and goes to ``stratx.dead_letter`` with the reason (Stage
``lap_aggression``); the pipeline keeps going.

Restart after a hard kill: the windows and laps after the last committed offsets are processed
again from the committed state and finalize the same laps (whatever the interleaving, see above);
those already on the output topic are not sent again (:class:`~stratx.quix_apps.kit.emitted.Emitted`,
idempotency key SessionKey, DriverNumber, LapNumber, the whole value compared). ``on_records``
still sees them (a Feast push is an upsert; the one of the killed process may have been lost).
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

from stratx.functions import catalog, dead_letters, ingest, schemas
from stratx.functions.catalog import TopicSpec
from stratx.functions.features import aggression
from stratx.functions.settings import FeatureAppSettings, KafkaSettings
from stratx.quix_apps.kit import admin, metrics, wire
from stratx.quix_apps.kit.emitted import restart_filter

LAP_AGGRESSION = catalog.LAP_AGGRESSION

CONSUMER_GROUP = "stratx-lap-aggression"
STAGE = "lap_aggression"
APP = "aggression"  # metrics app label and exporter port offset
STATE_KEY = "aggression"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def validated(value: dict[str, Any], key: Any, spec: TopicSpec) -> dict[str, Any]:
    """A parsed value of ``spec``'s topic as ``{"Record": record (JSON mode), "SourceTopic": name}``
    or ``{"DeadLetter": letter}`` (not JSON, or fails the topic's schema)."""
    if wire.is_invalid(value):
        return _letter(spec.name, key, {"raw": value.get(wire.RAW)}, value[wire.INVALID])
    checked = ingest.validate(ingest.RawRecord(spec, key, value))
    if isinstance(checked, ingest.Rejected):
        return _letter(spec.name, key, value, checked.reason)
    return {"Record": checked.model_dump(mode="json"), "SourceTopic": spec.name}


def process(
    item: dict[str, Any], key: Any, timestamp: int, headers: Any, state: State
) -> list[dict[str, Any]]:
    """Stateful callback: advance the driver's state with one window or lap.

    Returns ``{"Lap": record}`` for each lap finalized and ``{"DeadLetter": letter}`` for a
    rejected input (passed through from :func:`validated`, or duplicate / out of order).
    """
    if "DeadLetter" in item:
        return [item]
    record = item["Record"]
    old_state = state.get(STATE_KEY)
    new_state, out = aggression.aggression_step(old_state, record)
    if new_state is not old_state:  # a rejected item returns the state unchanged
        state.set(STATE_KEY, new_state)
    return [
        _letter(item["SourceTopic"], key, record, x[aggression.REJECTED])
        if aggression.is_rejected(x)
        else {"Lap": aggression.LapAggression.model_validate(x).model_dump(mode="json")}
        for x in out
    ]


def _letter(source_topic: str, key: Any, payload: dict[str, Any], reason: str) -> dict[str, Any]:
    letter = dead_letters.build(source_topic, payload, reason, stage=STAGE, key=key)
    return {"DeadLetter": letter.model_dump(mode="json")}


def lap_id(record: dict[str, Any]) -> tuple[object, ...]:
    """The idempotency key of a lap record: one per driver-lap."""
    return (record["SessionKey"], record["DriverNumber"], record["LapNumber"])


def lap_key(record: dict[str, Any]) -> str:
    return catalog.message_key(LAP_AGGRESSION, record["SessionKey"], record["DriverNumber"])


def lap_timestamp(record: dict[str, Any], key: Any, timestamp: int, headers: Any) -> int:
    """Message timestamp of a lap record: its end's Date in ms (the input's timestamp without Date)."""
    if record["Date"] is None:
        return timestamp
    return (datetime.fromisoformat(record["Date"]) - _EPOCH) // timedelta(milliseconds=1)


def build_pipeline(
    windows: StreamingDataFrame,
    laps: StreamingDataFrame,
    window_spec: TopicSpec,
    lap_spec: TopicSpec,
    out: Topic,
    dead_letters: Topic,
    on_records: Callable[[dict[str, Any]], None] | None = None,
    meter: metrics.AppMeter | None = None,
    *,
    emitted: Callable[[dict[str, Any]], bool] | None = None,
) -> StreamingDataFrame:
    """Wire: each input validated against its schema -> concat -> stateful laps -> out / dead letters.

    ``on_records`` is a side effect per LapAggression record (JSON mode), run before the record is
    produced (e.g. a Feast push); it must not modify the record. ``meter``: count records, time
    the step (none by default). ``emitted``: False for a record already on the topic, checked after
    ``on_records`` (see :func:`~stratx.quix_apps.kit.emitted.restart_filter`).
    """
    m = meter or metrics.AppMeter(APP, enabled=False)
    windows, laps = m.consumed(windows, window_spec.name), m.consumed(laps, lap_spec.name)
    w = windows.apply(wire.parse).apply(lambda v, k, t, h: validated(v, k, window_spec), metadata=True)
    lp = laps.apply(wire.parse).apply(lambda v, k, t, h: validated(v, k, lap_spec), metadata=True)
    items = w.concat(lp).apply(m.timed(process), stateful=True, metadata=True, expand=True)
    letters = items.filter(lambda item: "DeadLetter" in item).apply(lambda item: item["DeadLetter"])
    m.letters(letters).to_topic(dead_letters, key=lambda letter: letter["Key"])
    records = items.filter(lambda item: "Lap" in item).apply(lambda item: item["Lap"])
    if on_records is not None:
        records = records.update(on_records)
    if emitted is not None:
        records = records.filter(emitted)
    records = m.produced(records, out.name)
    return records.set_timestamp(lap_timestamp).to_topic(out, key=lap_key)


def build_app(
    settings: KafkaSettings,
    *,
    window_spec: TopicSpec = catalog.TELEMETRY_WINDOW,
    lap_spec: TopicSpec = catalog.FEATURES_LAP,
    out_spec: TopicSpec = LAP_AGGRESSION,
    state_dir: Path | None = None,
    consumer_group: str = CONSUMER_GROUP,
    loglevel: int = logging.INFO,
    on_records: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Application, StreamingDataFrame]:
    """The app and its dataframe; creates missing topics first and reads the output topic's
    records for the restart filter (needs the broker).

    ``on_records`` is a side effect per LapAggression record (e.g. a Feast
    ``BackgroundPusher`` for ``lap_aggression_push``), like ``lap_features.build_app``'s
    ``on_features``.

    Raises ``quixstreams.models.topics.exceptions.TopicPartitionsMismatch`` when the two input
    topics on the broker differ in partition count.
    """
    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    try:
        admin.create_topics(client, [window_spec, lap_spec, out_spec, catalog.DEAD_LETTER])
    finally:
        client.close()
    app = wire.application(settings, consumer_group, state_dir, loglevel)
    windows = app.topic(window_spec.name, value_deserializer="bytes", key_deserializer="str")
    laps = app.topic(lap_spec.name, value_deserializer="bytes", key_deserializer="str")
    out = app.topic(out_spec.name, value_serializer="json", key_serializer="str")
    dead = app.topic(catalog.DEAD_LETTER.name, value_serializer="json", key_serializer="str")
    meter = metrics.AppMeter(APP, settings.metrics_enabled)
    # a restart after a hard kill does not re-emit what is already on the topic (quix_apps/kit/emitted.py)
    emitted = restart_filter(settings.broker_address, out.name, lap_id, auth=settings.kafka_auth())
    sdf = build_pipeline(
        app.dataframe(windows),
        app.dataframe(laps),
        window_spec,
        lap_spec,
        out,
        dead,
        on_records,
        meter,
        emitted=emitted,
    )
    return app, sdf


def main(settings: FeatureAppSettings | None = None, idle_timeout: float = 0.0) -> int:
    """The deployable: topics, the Feast pusher, the app, its metrics; runs until Ctrl-C / SIGTERM or ``idle_timeout``
    seconds without input. Settings from the STRATX_* environment unless given."""
    settings = settings or FeatureAppSettings()
    wire.ensure_topics(settings)
    pusher = None
    if settings.feast_push:  # as the lap app: apply at set-up, batched pushes of the aggression family
        from stratx.quix_apps.kit import feature_store

        pusher = feature_store.BackgroundPusher(
            feature_store.setup_store(settings),
            push_source=feature_store.AGGRESSION_PUSH_SOURCE,
            model=schemas.LapAggression,
        )
    try:
        group = f"{settings.consumer_group_prefix}-lap-aggression"
        app, _ = build_app(
            settings,
            state_dir=settings.state_dir,
            consumer_group=group,
            loglevel=logging.WARNING,
            on_records=pusher,
        )
        return wire.run(app, APP, settings, idle_timeout)
    finally:
        if pusher is not None:
            pusher.close()


if __name__ == "__main__":
    sys.exit(main())
