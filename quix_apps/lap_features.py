"""Lap-features app: raw laps -> per-session state -> ``stratx.features.lap`` (+ Feast push).

Laps are re-keyed by session (``group_by``) so one state holds every driver of the session; the
raw laps topic has one partition, so a session's laps arrive in event-time order and the
cross-driver features (gaps, car ahead/behind, field median) equal the offline build.

The track-status and race-control topics join the same state (:func:`track_step`): the
neutralisation periods received so far decide ``Neutralised`` / ``GreenClean`` of a lap whose
record carries no track status codes (OpenF1 laps; ``functions/scope.py``). Laps that carry codes
(FastF1, the bundled races) are decided by their own codes, so the order in which the three
topics are read cannot change a feature.

Late and duplicate policy: a lap whose LapNumber is not above the driver's last processed lap
is a duplicate or a late replay; it changes nothing and goes to the dead letters with the reason.
A lap that fails the Lap schema goes there too. The pipeline keeps going.

Restart after a hard kill: the laps after the last committed offset are processed again from the
committed state and give the same features; those already on the output topic are not sent
again (:class:`~stratx.quix_apps.kit.emitted.Emitted`, idempotency key SessionKey, DriverNumber, LapNumber).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import reduce
from typing import Any

from pydantic import ValidationError
from quixstreams import Application
from quixstreams.state import State

from stratx.functions import catalog, dead_letters, schemas
from stratx.functions.features.laps import lap_step, track_step
from stratx.functions.settings import FeatureAppSettings
from stratx.quix_apps.kit import metrics, wire
from stratx.quix_apps.kit.emitted import Emitted, read_topic
from stratx.quix_apps.kit.wire import INVALID, RAW, parse

STAGE = "lap_features"
APP = "lap"  # metrics app label and exporter port offset


def session_of(value: dict[str, Any]) -> str:
    return str(value.get("SessionKey")) if INVALID not in value else "invalid"


def step(value: dict[str, Any], state: State) -> dict[str, Any]:
    """Stateful callback: the lap's features, or a dead letter with the reason."""
    if INVALID in value:
        return _rejected({"raw": value.get(RAW)}, value[INVALID])
    if "LapNumber" not in value and ("Category" in value or "Status" in value):
        return _track(value, state)
    try:
        lap = schemas.Lap.model_validate(value).model_dump(mode="json")
    except ValidationError as exc:
        return _rejected(value, exc)
    session, out = lap_step(state.get("session"), lap)
    if isinstance(out, str):
        return _rejected(value, out)
    state.set("session", session)  # the lap was processed: later laps build on it either way
    try:
        return {"features": schemas.LapFeatures.model_validate(out).model_dump(mode="json")}
    except ValidationError as exc:  # e.g. a non-finite feature: explained, never a crash
        return _rejected(value, exc)


def _track(value: dict[str, Any], state: State) -> dict[str, Any]:
    """A TrackStatus or RaceControl record: folded into the session's neutralisation periods."""
    schema = schemas.RaceControl if "Category" in value else schemas.TrackStatus
    try:
        event = schema.model_validate(value).model_dump(mode="json")
    except ValidationError as exc:
        return {
            "track": False,
            "reason": dead_letters.error_detail(exc),
        }  # not a lap: nothing to emit or retry
    state.set("session", track_step(state.get("session"), event))
    return {"track": True}


def _rejected(value: dict[str, Any], reason: str | ValidationError) -> dict[str, Any]:
    letter = dead_letters.build(catalog.LAPS, value, reason, stage=STAGE)
    return {"dead_letter": letter.model_dump(mode="json")}


def lap_id(features: dict[str, Any]) -> tuple[object, ...]:
    """The idempotency key of a feature record: one per driver-lap."""
    return (features["SessionKey"], features["DriverNumber"], features["LapNumber"])


def driver_key(features: dict[str, Any]) -> str:
    return catalog.message_key(catalog.FEATURES_LAP, features["SessionKey"], features["DriverNumber"])


def session_key(features: dict[str, Any]) -> str:
    return catalog.message_key(catalog.FEATURES_LAP_BY_SESSION, features["SessionKey"])


def build_app(
    settings: FeatureAppSettings, on_features: Callable[[dict[str, Any]], None] | None = None
) -> Application:
    """The app, wired; ``on_features`` is a side effect per feature record (e.g. a Feast push)."""
    app = wire.application(settings, f"{settings.consumer_group_prefix}-lap-features", settings.state_dir)
    laps = app.topic(catalog.LAPS.name, value_deserializer="bytes")
    track = [
        app.topic(t.name, value_deserializer="bytes") for t in (catalog.TRACK_STATUS, catalog.RACE_CONTROL)
    ]
    out = app.topic(catalog.FEATURES_LAP.name, value_serializer="json")
    by_session = app.topic(catalog.FEATURES_LAP_BY_SESSION.name, value_serializer="json")
    dead = app.topic(catalog.DEAD_LETTER.name, value_serializer="json")

    meter = metrics.AppMeter(APP, settings.metrics_enabled)
    inputs = [meter.consumed(app.dataframe(t), t.name) for t in (laps, *track)]
    sdf = reduce(lambda a, b: a.concat(b), inputs).apply(parse).group_by(session_of, name="session")
    results = sdf.apply(meter.timed(step), stateful=True)
    features = results.filter(lambda r: "features" in r).apply(lambda r: r["features"])
    if on_features is not None:
        features = features.update(on_features)
    # each output twice: per driver (co-partitioned with the telemetry windows) and per session (in
    # line-crossing order, for the prediction app); a restart after a hard kill does not re-emit
    # what is already on either topic (quix_apps/kit/emitted.py)
    for topic, key in ((out, driver_key), (by_session, session_key)):
        seen = read_topic(settings.broker_address, topic.name, settings.kafka_auth())
        emitted = features.filter(Emitted(seen, lap_id, topic=topic.name))
        meter.produced(emitted, topic.name).to_topic(topic, key=key)
    meter.letters(results.filter(lambda r: "dead_letter" in r).apply(lambda r: r["dead_letter"])).to_topic(
        dead
    )
    return app


def main(settings: FeatureAppSettings | None = None, idle_timeout: float = 0.0) -> int:
    """The deployable: topics, the Feast pusher, the app, its metrics; runs until Ctrl-C / SIGTERM or ``idle_timeout``
    seconds without input. Settings from the STRATX_* environment unless given."""
    settings = settings or FeatureAppSettings()
    wire.ensure_topics(settings)
    pusher = None
    if settings.feast_push:  # `feast apply` is part of set-up; pushes go out in batches
        from stratx.quix_apps.kit import feature_store

        pusher = feature_store.BackgroundPusher(feature_store.setup_store(settings))
    try:
        return wire.run(build_app(settings, on_features=pusher), APP, settings, idle_timeout)
    finally:
        if pusher is not None:
            pusher.close()


if __name__ == "__main__":
    sys.exit(main())
